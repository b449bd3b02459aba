package s3emu

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/synfs/synfs/synapse/synapsetest/netem"
)

const (
	bucket   = "synfs-data"
	other    = "synfs-other"
	baseKey  = "1234/5e0c"
	adminKey = "ADMINKEY"
	adminSec = "admin-secret"
)

// principals of the tests: the admin and one grant per policy shape.
var (
	readGrant    = Grant{AccessKeyID: "ASIAREAD", SecretAccessKey: "read-secret", SessionToken: "read-token", Bucket: bucket, BaseKey: baseKey}
	writeGrant   = Grant{AccessKeyID: "ASIAWRITE", SecretAccessKey: "write-secret", SessionToken: "write-token", Bucket: bucket, BaseKey: baseKey, Write: true}
	expiredGrant = Grant{AccessKeyID: "ASIAEXPIRED", SecretAccessKey: "old-secret", SessionToken: "old-token", Bucket: bucket, BaseKey: baseKey}
	bucketGrant  = Grant{AccessKeyID: "ASIABUCKET", SecretAccessKey: "bucket-secret", SessionToken: "bucket-token", Bucket: bucket}
)

type env struct {
	t      *testing.T
	srv    *Server
	ts     *httptest.Server
	tls    bool
	object []byte // baseKey/data.bin
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newEnv starts an endpoint with two buckets, a few objects and the grants
// above, over plain HTTP or TLS (where the SDK sends aws-chunked bodies).
func newEnv(t *testing.T, useTLS bool) *env {
	t.Helper()
	srv, err := New(Options{Backend: s3mem.New(), AdminAccessKeyID: adminKey, AdminSecretAccessKey: adminSec})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, tls: useTLS, object: randomBytes(1<<20, 1)}
	if useTLS {
		e.ts = httptest.NewTLSServer(srv)
	} else {
		e.ts = httptest.NewServer(srv)
	}
	t.Cleanup(e.ts.Close)
	ctx := context.Background()
	for _, b := range []string{bucket, other} {
		if err := srv.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.CreateBucket(bucket); err != nil { // idempotent
		t.Fatalf("second CreateBucket: %v", err)
	}
	put := func(b, k string, data []byte) {
		if err := srv.PutObject(ctx, b, k, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	put(bucket, baseKey+"/data.bin", e.object)
	put(bucket, baseKey+"/sub/small.txt", []byte("small"))
	put(bucket, baseKey+"/owner.txt", []byte("1234"))
	put(bucket, "9999/elsewhere.txt", []byte("not yours"))
	put(other, baseKey+"/data.bin", []byte("other bucket"))

	hour := time.Now().Add(time.Hour)
	for _, g := range []Grant{readGrant, writeGrant, bucketGrant} {
		g.Expiration = hour
		srv.AddGrant(g)
	}
	g := expiredGrant
	g.Expiration = time.Now().Add(-time.Minute)
	srv.AddGrant(g)
	return e
}

// client is built as synfs builds its clients. The checksum settings are
// those config.LoadDefaultConfig gives (s3.New alone sends no checksums):
// CRC32 in a header over HTTP, in an aws-chunked trailer over TLS.
func (e *env) client(ak, sk, token string) *s3.Client {
	hc := &http.Client{}
	if e.tls {
		hc = e.ts.Client()
	}
	return s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(e.ts.URL),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(ak, sk, token),
		HTTPClient:                 hc,
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenSupported,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenSupported,
	})
}

func (e *env) as(g Grant) *s3.Client {
	return e.client(g.AccessKeyID, g.SecretAccessKey, g.SessionToken)
}
func (e *env) admin() *s3.Client { return e.client(adminKey, adminSec, "") }

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return "non-API error: " + err.Error()
	}
	return ""
}

func get(ctx context.Context, c *s3.Client, b, k, rng string) ([]byte, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(b), Key: aws.String(k)}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	out, err := c.GetObject(ctx, in)
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func put(ctx context.Context, c *s3.Client, b, k string, data []byte) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String(k), Body: bytes.NewReader(data)})
	return err
}

func list(ctx context.Context, c *s3.Client, b, prefix string) ([]string, error) {
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b), Prefix: aws.String(prefix)})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys, nil
}

func multipart(ctx context.Context, c *s3.Client, b, k string, parts ...[]byte) error {
	mu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(b), Key: aws.String(k)})
	if err != nil {
		return err
	}
	var done []types.CompletedPart
	for i, p := range parts {
		n := int32(i + 1)
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b), Key: aws.String(k), UploadId: mu.UploadId, PartNumber: aws.Int32(n), Body: bytes.NewReader(p)})
		if err != nil {
			return err
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b), Key: aws.String(k), UploadId: mu.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	return err
}

// TestPolicy drives the endpoint with the SDK as synfs does, each case
// asserting the AWS error code or the exact bytes.
func TestPolicy(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "http"
		if useTLS {
			name = "https"
		}
		t.Run(name, func(t *testing.T) { testPolicy(t, useTLS) })
	}
}

func testPolicy(t *testing.T, useTLS bool) {
	e := newEnv(t, useTLS)
	in := baseKey + "/new/file.bin"
	part1, part2 := randomBytes(5<<20, 2), randomBytes(5<<20, 3)
	big := randomBytes(9<<20, 4) // beyond the in-memory spool
	cases := []struct {
		name string
		run  func(ctx context.Context) ([]byte, error)
		code string // "" for success
		want []byte // checked on success when not nil
	}{
		{"ranged GET in scope", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(readGrant), bucket, baseKey+"/data.bin", "bytes=1000-1999")
		}, "", e.object[1000:2000]},
		{"GET outside prefix", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(readGrant), bucket, "9999/elsewhere.txt", "")
		}, "AccessDenied", nil},
		{"GET sibling prefix sharing the first characters", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(readGrant), bucket, baseKey+"x/data.bin", "")
		}, "AccessDenied", nil},
		{"HEAD in scope", func(ctx context.Context) ([]byte, error) {
			out, err := e.as(readGrant).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/sub/small.txt")})
			if err != nil {
				return nil, err
			}
			return []byte(aws.ToString(out.ETag)), nil
		}, "", []byte(`"` + md5hex("small") + `"`)},
		{"ranged GET guarded by the right ETag", func(ctx context.Context) ([]byte, error) {
			out, err := e.as(readGrant).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/sub/small.txt"),
				Range: aws.String("bytes=1-3"), IfMatch: aws.String(`"` + md5hex("small") + `"`)})
			if err != nil {
				return nil, err
			}
			defer out.Body.Close()
			return io.ReadAll(out.Body)
		}, "", []byte("mal")},
		{"GET guarded by a stale ETag", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(readGrant).GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/data.bin"),
				Range: aws.String("bytes=0-99"), IfMatch: aws.String(`"` + md5hex("small") + `"`)})
			return nil, err
		}, "PreconditionFailed", nil},
		{"HEAD guarded by a stale ETag", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(readGrant).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/data.bin"),
				IfMatch: aws.String(`"0123"`)})
			return nil, err
		}, "PreconditionFailed", nil},
		{"list with prefix baseKey/", func(ctx context.Context) ([]byte, error) {
			keys, err := list(ctx, e.as(readGrant), bucket, baseKey+"/")
			return []byte(strings.Join(keys, ",")), err
		}, "", []byte(baseKey + "/data.bin," + baseKey + "/owner.txt," + baseKey + "/sub/small.txt")},
		{"list with prefix baseKey", func(ctx context.Context) ([]byte, error) {
			_, err := list(ctx, e.as(readGrant), bucket, baseKey)
			return nil, err
		}, "", nil},
		{"list with empty prefix", func(ctx context.Context) ([]byte, error) {
			_, err := list(ctx, e.as(readGrant), bucket, "")
			return nil, err
		}, "AccessDenied", nil},
		{"list with a prefix outside", func(ctx context.Context) ([]byte, error) {
			_, err := list(ctx, e.as(readGrant), bucket, "9999/")
			return nil, err
		}, "AccessDenied", nil},
		{"list of the whole bucket with a whole-bucket grant", func(ctx context.Context) ([]byte, error) {
			keys, err := list(ctx, e.as(bucketGrant), bucket, "")
			return []byte(strings.Join(keys, ",")), err
		}, "", []byte("1234/5e0c/data.bin,1234/5e0c/owner.txt,1234/5e0c/sub/small.txt,9999/elsewhere.txt")},
		{"PUT with read grant", func(ctx context.Context) ([]byte, error) {
			return nil, put(ctx, e.as(readGrant), bucket, in, []byte("x"))
		}, "AccessDenied", nil},
		{"PUT of 3 MiB with read grant (Expect: 100-continue)", func(ctx context.Context) ([]byte, error) {
			return nil, put(ctx, e.as(readGrant), bucket, in, big[:3<<20])
		}, "AccessDenied", nil},
		{"PUT with write grant, read back", func(ctx context.Context) ([]byte, error) {
			if err := put(ctx, e.as(writeGrant), bucket, in, part1[:12345]); err != nil {
				return nil, err
			}
			return get(ctx, e.as(readGrant), bucket, in, "")
		}, "", part1[:12345]},
		{"PUT of 9 MiB with write grant, read back", func(ctx context.Context) ([]byte, error) {
			if err := put(ctx, e.as(writeGrant), bucket, baseKey+"/big.bin", big); err != nil {
				return nil, err
			}
			return get(ctx, e.admin(), bucket, baseKey+"/big.bin", "")
		}, "", big},
		{"PUT of an empty object", func(ctx context.Context) ([]byte, error) {
			if err := put(ctx, e.as(writeGrant), bucket, baseKey+"/empty", nil); err != nil {
				return nil, err
			}
			return get(ctx, e.as(writeGrant), bucket, baseKey+"/empty", "")
		}, "", []byte{}},
		{"PUT outside prefix with write grant", func(ctx context.Context) ([]byte, error) {
			return nil, put(ctx, e.as(writeGrant), bucket, "9999/x", []byte("x"))
		}, "AccessDenied", nil},
		{"multipart 2 x 5 MiB with write grant", func(ctx context.Context) ([]byte, error) {
			if err := multipart(ctx, e.as(writeGrant), bucket, baseKey+"/mp.bin", part1, part2); err != nil {
				return nil, err
			}
			return get(ctx, e.as(readGrant), bucket, baseKey+"/mp.bin", "")
		}, "", append(slices.Clone(part1), part2...)},
		{"multipart with a small part before the last", func(ctx context.Context) ([]byte, error) {
			return nil, multipart(ctx, e.as(writeGrant), bucket, baseKey+"/mp-small.bin", part1[:1<<20], part2)
		}, "EntityTooSmall", nil},
		{"multipart with read grant", func(ctx context.Context) ([]byte, error) {
			return nil, multipart(ctx, e.as(readGrant), bucket, baseKey+"/mp2.bin", part1)
		}, "AccessDenied", nil},
		{"GET owner.txt with write grant", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(writeGrant), bucket, baseKey+"/owner.txt", "")
		}, "AccessDenied", nil},
		{"PUT owner.txt with write grant", func(ctx context.Context) ([]byte, error) {
			return nil, put(ctx, e.as(writeGrant), bucket, baseKey+"/owner.txt", []byte("evil"))
		}, "AccessDenied", nil},
		{"GET owner.txt at the root with a whole-bucket grant", func(ctx context.Context) ([]byte, error) {
			if err := e.srv.PutObject(ctx, bucket, "owner.txt", strings.NewReader("1"), 1); err != nil {
				return nil, err
			}
			return get(ctx, e.as(bucketGrant), bucket, "owner.txt", "")
		}, "AccessDenied", nil},
		{"copy within scope", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/copy.txt"),
				CopySource: aws.String(bucket + "/" + baseKey + "/sub/small.txt")})
			if err != nil {
				return nil, err
			}
			return get(ctx, e.as(readGrant), bucket, baseKey+"/copy.txt", "")
		}, "", []byte("small")},
		{"copy from outside the prefix", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/stolen.txt"),
				CopySource: aws.String(bucket + "/9999/elsewhere.txt")})
			return nil, err
		}, "AccessDenied", nil},
		{"copy of owner.txt", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/o.txt"),
				CopySource: aws.String(bucket + "/" + baseKey + "/owner.txt")})
			return nil, err
		}, "AccessDenied", nil},
		{"delete batch with one key outside", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
				{Key: aws.String(baseKey + "/sub/small.txt")}, {Key: aws.String("9999/elsewhere.txt")}}}})
			return nil, err
		}, "AccessDenied", nil},
		{"delete batch in scope", func(ctx context.Context) ([]byte, error) {
			if err := put(ctx, e.as(writeGrant), bucket, baseKey+"/gone.txt", []byte("x")); err != nil {
				return nil, err
			}
			if _, err := e.as(writeGrant).DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
				{Key: aws.String(baseKey + "/gone.txt")}}}}); err != nil {
				return nil, err
			}
			return get(ctx, e.admin(), bucket, baseKey+"/gone.txt", "")
		}, "NoSuchKey", nil},
		{"delete with read grant", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(readGrant).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/data.bin")})
			return nil, err
		}, "AccessDenied", nil},
		{"object ACL with write grant", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).PutObjectAcl(ctx, &s3.PutObjectAclInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/sub/small.txt"),
				ACL: types.ObjectCannedACLBucketOwnerFullControl})
			if err != nil {
				return nil, err
			}
			return get(ctx, e.as(readGrant), bucket, baseKey+"/sub/small.txt", "") // the ACL must not replace the object
		}, "", []byte("small")},
		{"GetBucketLocation with a grant", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(readGrant).GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
			return nil, err
		}, "AccessDenied", nil},
		{"ListBuckets with a grant", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).ListBuckets(ctx, &s3.ListBucketsInput{})
			return nil, err
		}, "AccessDenied", nil},
		{"tagging with a grant is denied before it is unsupported", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/data.bin")})
			return nil, err
		}, "AccessDenied", nil},
		{"expired grant", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(expiredGrant), bucket, baseKey+"/data.bin", "")
		}, "ExpiredToken", nil},
		{"wrong secret", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.client(readGrant.AccessKeyID, "not-the-secret", readGrant.SessionToken), bucket, baseKey+"/data.bin", "")
		}, "SignatureDoesNotMatch", nil},
		{"unknown key", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.client("ASIANOBODY", "x", "y"), bucket, baseKey+"/data.bin", "")
		}, "InvalidAccessKeyId", nil},
		{"wrong session token", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.client(readGrant.AccessKeyID, readGrant.SecretAccessKey, "forged"), bucket, baseKey+"/data.bin", "")
		}, "InvalidToken", nil},
		{"missing session token", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.client(readGrant.AccessKeyID, readGrant.SecretAccessKey, ""), bucket, baseKey+"/data.bin", "")
		}, "InvalidToken", nil},
		{"other bucket", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(readGrant), other, baseKey+"/data.bin", "")
		}, "AccessDenied", nil},
		{"GET of a missing key in scope with a grant", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.as(readGrant), bucket, baseKey+"/no/such.bin", "")
		}, "AccessDenied", nil},
		{"GET of a missing key with the admin key", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.admin(), bucket, baseKey+"/no/such.bin", "")
		}, "NoSuchKey", nil},
		{"admin reads outside any prefix", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.admin(), bucket, "9999/elsewhere.txt", "")
		}, "", []byte("not yours")},
		{"admin reads owner.txt", func(ctx context.Context) ([]byte, error) {
			return get(ctx, e.admin(), bucket, baseKey+"/owner.txt", "")
		}, "", []byte("1234")},
		{"admin lists the other bucket", func(ctx context.Context) ([]byte, error) {
			keys, err := list(ctx, e.admin(), other, "")
			return []byte(strings.Join(keys, ",")), err
		}, "", []byte(baseKey + "/data.bin")},
		{"admin lists buckets", func(ctx context.Context) ([]byte, error) {
			out, err := e.admin().ListBuckets(ctx, &s3.ListBucketsInput{})
			if err != nil {
				return nil, err
			}
			var names []string
			for _, b := range out.Buckets {
				names = append(names, aws.ToString(b.Name))
			}
			return []byte(strings.Join(names, ",")), nil
		}, "", []byte(bucket + "," + other)},
		{"admin bucket location", func(ctx context.Context) ([]byte, error) {
			out, err := e.admin().GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
			if err != nil {
				return nil, err
			}
			return []byte(out.LocationConstraint), nil
		}, "", []byte("")},
		{"admin tagging is not implemented", func(ctx context.Context) ([]byte, error) {
			_, err := e.admin().GetObjectTagging(ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/data.bin")})
			return nil, err
		}, "NotImplemented", nil},
		{"a wrong checksum is refused and nothing stored", func(ctx context.Context) ([]byte, error) {
			_, err := e.as(writeGrant).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/bad.bin"),
				Body: bytes.NewReader([]byte("payload")), ChecksumCRC32: aws.String("AAAAAA==")})
			if err == nil {
				return nil, errors.New("a wrong CRC32 was accepted")
			}
			if _, _, herr := e.srv.HeadObject(ctx, bucket, baseKey+"/bad.bin"); !errors.Is(herr, ErrNoSuchKey) {
				return nil, errors.New("an object with a bad checksum was stored")
			}
			return nil, err
		}, "BadDigest", nil},
		{"wrong region", func(ctx context.Context) ([]byte, error) {
			c := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(e.ts.URL), UsePathStyle: true, HTTPClient: e.ts.Client(), RetryMaxAttempts: 1,
				Credentials: credentials.NewStaticCredentialsProvider(adminKey, adminSec, "")})
			return get(ctx, c, bucket, baseKey+"/data.bin", "")
		}, "AuthorizationHeaderMalformed", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := tc.run(ctx)
			if code := errorCode(err); code != tc.code {
				t.Fatalf("error code %q (%v), want %q", code, err, tc.code)
			}
			if tc.code == "" && tc.want != nil && !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes %.40q, want %d bytes %.40q", len(got), got, len(tc.want), tc.want)
			}
		})
	}
}

// Every SDK checksum algorithm must round-trip, in a header over HTTP and
// in an aws-chunked trailer over TLS.
func TestChecksumAlgorithms(t *testing.T) {
	data := randomBytes(300_000, 9)
	for _, useTLS := range []bool{false, true} {
		e := newEnv(t, useTLS)
		for _, algo := range []types.ChecksumAlgorithm{
			types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c, types.ChecksumAlgorithmCrc64nvme,
			types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256,
		} {
			t.Run(string(algo)+map[bool]string{false: "/http", true: "/https"}[useTLS], func(t *testing.T) {
				ctx := context.Background()
				key := baseKey + "/sum-" + string(algo)
				_, err := e.as(writeGrant).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
					Body: bytes.NewReader(data), ChecksumAlgorithm: algo})
				if err != nil {
					t.Fatalf("put: %v", err)
				}
				got, err := get(ctx, e.admin(), bucket, key, "")
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read back %d bytes, %v", len(got), err)
				}
			})
		}
	}
}

func TestPresignedGET(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	presign := s3.NewPresignClient(e.as(readGrant))
	cases := []struct {
		key    string
		status int
		want   []byte
	}{
		{baseKey + "/sub/small.txt", 200, []byte("small")},
		{"9999/elsewhere.txt", 403, nil},
	}
	for _, tc := range cases {
		req, err := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(tc.key)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(req.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || tc.want != nil && !bytes.Equal(body, tc.want) {
			t.Errorf("%s: %d %q, want %d %q", tc.key, resp.StatusCode, body, tc.status, tc.want)
		}
	}
	// Presigned PUTs carry UNSIGNED-PAYLOAD; the policy still applies.
	for _, tc := range []struct {
		g      Grant
		status int
	}{{readGrant, 403}, {writeGrant, 200}} {
		req, err := s3.NewPresignClient(e.as(tc.g)).PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/presigned.txt")})
		if err != nil {
			t.Fatal(err)
		}
		hr, _ := http.NewRequest(http.MethodPut, req.URL, strings.NewReader("via URL"))
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("presigned PUT as %s: %d, want %d", tc.g.AccessKeyID, resp.StatusCode, tc.status)
		}
	}
	if b, err := e.srv.GetObject(ctx, bucket, baseKey+"/presigned.txt"); err != nil || string(b) != "via URL" {
		t.Errorf("presigned PUT stored %q, %v", b, err)
	}

	// A presigned URL signs its query: changing it breaks the signature.
	req, _ := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/sub/small.txt")})
	resp, err := http.Get(strings.Replace(req.URL, "small.txt", "data.bin", 1))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "<Code>SignatureDoesNotMatch</Code>") {
		t.Errorf("tampered URL: %d %s", resp.StatusCode, body)
	}
}

// Error answers must be S3's XML with the request id and, when the request
// names a bucket, the bucket's region: clients learn the region from it.
func TestErrorShapeAndHeaders(t *testing.T) {
	e := newEnv(t, false)
	resp, err := http.Get(e.ts.URL + "/" + bucket + "/" + baseKey + "/data.bin")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("anonymous GET: status %d", resp.StatusCode)
	}
	for _, want := range []string{`<?xml version="1.0" encoding="UTF-8"?>`, "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>",
		"<Resource>/" + bucket + "/" + baseKey + "/data.bin</Resource>", "<RequestId>" + resp.Header.Get("x-amz-request-id") + "</RequestId>", "<HostId>"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body %s lacks %s", body, want)
		}
	}
	if got := resp.Header.Get("Content-Type"); got != "application/xml" {
		t.Errorf("Content-Type %q", got)
	}
	if resp.Header.Get("x-amz-bucket-region") != "us-east-1" || resp.Header.Get("x-amz-request-id") == "" {
		t.Errorf("headers %v", resp.Header)
	}

	// The same through the SDK, from a grant denied by policy.
	_, err = get(context.Background(), e.as(readGrant), bucket, "9999/elsewhere.txt", "")
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("no HTTP response in %v", err)
	}
	if got := re.Response.Header.Get("x-amz-bucket-region"); got != "us-east-1" {
		t.Errorf("x-amz-bucket-region %q on AccessDenied", got)
	}

	// A large body refused without Expect: 100-continue: the client must
	// still read the answer, not a broken pipe.
	resp, err = http.Post(e.ts.URL+"/"+bucket+"/"+baseKey+"/x?uploads", "application/octet-stream", bytes.NewReader(make([]byte, 3<<20)))
	if err != nil {
		t.Fatalf("refused large POST: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("refused large POST: %d", resp.StatusCode)
	}

	// HEAD errors have no body; successful answers carry our request id.
	out, err := e.admin().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/data.bin")})
	if err != nil || aws.ToInt64(out.ContentLength) != int64(len(e.object)) {
		t.Fatalf("admin HEAD: %v", err)
	}
	req, _ := http.NewRequest(http.MethodHead, e.ts.URL+"/"+bucket+"/x", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("x-amz-request-id") == "" {
		t.Errorf("anonymous HEAD: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestStatsCountRangedRead(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	c := e.as(readGrant)
	if _, err := get(ctx, c, bucket, baseKey+"/data.bin", ""); err != nil { // before the reset: not counted
		t.Fatal(err)
	}
	e.srv.ResetStats()
	got, err := get(ctx, c, bucket, baseKey+"/data.bin", "bytes=4096-8191")
	if err != nil || !bytes.Equal(got, e.object[4096:8192]) {
		t.Fatalf("ranged read: %v", err)
	}
	if st := e.srv.Stats(); st.Ops["GetObject"] != (OpStats{Requests: 1, BytesOut: 4096}) || len(st.Ops) != 1 {
		t.Fatalf("after one ranged read of 4096 bytes: %+v", st.Ops)
	}

	if err := put(ctx, e.as(writeGrant), bucket, baseKey+"/s.txt", []byte("12345")); err != nil {
		t.Fatal(err)
	}
	_, _ = get(ctx, c, bucket, "9999/elsewhere.txt", "")
	_, _ = get(ctx, e.as(expiredGrant), bucket, baseKey+"/data.bin", "")
	st := e.srv.Stats()
	if p := st.Ops["PutObject"]; p.Requests != 1 || p.BytesIn != 5 {
		t.Errorf("PutObject stats %+v", p)
	}
	if g := st.Ops["GetObject"]; g.Requests != 3 || g.BytesOut <= 4096 {
		t.Errorf("GetObject stats %+v: refused requests and their error bodies must count", g)
	}
	if st.Denied["AccessDenied"] != 1 || st.Denied["ExpiredToken"] != 1 || len(st.Denied) != 2 {
		t.Errorf("Denied %v", st.Denied)
	}

	// The snapshot is a copy, and ResetStats zeroes.
	st.Ops["GetObject"] = OpStats{}
	if e.srv.Stats().Ops["GetObject"].Requests != 3 {
		t.Error("Stats returned the live map")
	}
	e.srv.ResetStats()
	if st := e.srv.Stats(); len(st.Ops) != 0 || len(st.Denied) != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Faults injected by netem reach SDK clients as S3 error codes.
func TestInjectedFaults(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	cases := []struct {
		faults netem.Faults
		code   string
	}{
		{netem.Faults{Status500: 1}, "InternalError"},
		{netem.Faults{Status503: 1}, "SlowDown"},
		{netem.Faults{Status429: 1}, "SlowDown"},
	}
	for _, tc := range cases {
		e.srv.Conditions().SetFaults(tc.faults)
		_, err := get(ctx, e.as(readGrant), bucket, baseKey+"/data.bin", "")
		if code := errorCode(err); code != tc.code {
			t.Errorf("%+v: code %q, want %q", tc.faults, code, tc.code)
		}
	}
	e.srv.Conditions().SetFaults(netem.Faults{Truncate: 1})
	if _, err := get(ctx, e.as(readGrant), bucket, baseKey+"/data.bin", ""); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body: %v, want io.ErrUnexpectedEOF", err)
	}
	e.srv.Conditions().SetFaults(netem.Faults{})
	if got, err := get(ctx, e.as(readGrant), bucket, baseKey+"/data.bin", ""); err != nil || !bytes.Equal(got, e.object) {
		t.Errorf("after clearing faults: %v", err)
	}
	if st := e.srv.Stats().Ops["GetObject"]; st.Requests != 5 {
		t.Errorf("faulted requests not counted: %+v", st)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Backend: s3mem.New(), AdminAccessKeyID: "only-the-key"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestDirectAccess(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	size, etag, err := e.srv.HeadObject(ctx, bucket, baseKey+"/sub/small.txt")
	if err != nil || size != 5 || etag != `"`+md5hex("small")+`"` {
		t.Fatalf("HeadObject: %d %s %v", size, etag, err)
	}
	if _, _, err := e.srv.HeadObject(ctx, bucket, "missing"); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("HeadObject of a missing key: %v", err)
	}
	if _, err := e.srv.GetObject(ctx, "no-such-bucket", "k"); !errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("GetObject in a missing bucket: %v", err)
	}
	b, err := e.srv.GetObject(ctx, bucket, baseKey+"/owner.txt")
	if err != nil || string(b) != "1234" {
		t.Errorf("GetObject: %q %v", b, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.srv.PutObject(cctx, bucket, "k", strings.NewReader("x"), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("PutObject with a cancelled context: %v", err)
	}
	if err := e.srv.CreateBucket("Not_Valid"); err == nil {
		t.Error("CreateBucket accepted an invalid name")
	}
}
