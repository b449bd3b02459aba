package s3emu

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// uploadParts starts a multipart upload of key and uploads parts, numbered
// from 1; it returns the upload id and the parts' ETags.
func uploadParts(ctx context.Context, c *s3.Client, key string, parts ...[]byte) (*string, []string, error) {
	mu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, nil, err
	}
	var etags []string
	for i, p := range parts {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mu.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			return nil, nil, err
		}
		etags = append(etags, aws.ToString(out.ETag))
	}
	return mu.UploadId, etags, nil
}

// completeAll completes a multipart upload of all parts, in order, and
// returns the ETag CompleteMultipartUpload answered.
func completeAll(ctx context.Context, c *s3.Client, key string, parts ...[]byte) (string, error) {
	id, etags, err := uploadParts(ctx, c, key, parts...)
	if err != nil {
		return "", err
	}
	var done []types.CompletedPart
	for i, et := range etags {
		done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(et)})
	}
	out, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// multipartETag is S3's ETag of an object assembled from parts.
func multipartETag(parts ...[]byte) string {
	var sums []byte
	for _, p := range parts {
		s := md5.Sum(p)
		sums = append(sums, s[:]...)
	}
	s := md5.Sum(sums)
	return fmt.Sprintf(`"%s-%d"`, hex.EncodeToString(s[:]), len(parts))
}

func plainETag(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// CompleteMultipartUpload refuses what S3 refuses; nothing is stored then.
func TestCompleteMultipartUploadChecks(t *testing.T) {
	e := newEnv(t, false)
	big, big2, small := randomBytes(minPartSize, 20), randomBytes(minPartSize, 21), []byte("the last part")
	// listed picks the parts to complete with: numbers and the index of the
	// uploaded part whose ETag goes with each, -1 for a made-up ETag.
	type listed struct{ number, etagOf int }
	cases := []struct {
		name   string
		upload [][]byte
		list   []listed // nil: every part, in order
		code   string
		want   []byte // the object, on success
	}{
		{"5 MiB then a small last part", [][]byte{big, small}, nil, "", slices.Concat(big, small)},
		{"a single small part", [][]byte{small}, nil, "", small},
		{"5 MiB parts and no small one", [][]byte{big, big2}, nil, "", slices.Concat(big, big2)},
		{"a small part first", [][]byte{small, big}, nil, "EntityTooSmall", nil},
		{"a part one byte short of 5 MiB", [][]byte{big[:minPartSize-1], small}, nil, "EntityTooSmall", nil},
		{"a small middle part", [][]byte{big, small, big2}, nil, "EntityTooSmall", nil},
		{"an uploaded part left out", [][]byte{big, big2, small}, []listed{{1, 0}, {3, 2}}, "", slices.Concat(big, small)},
		{"a small part left out", [][]byte{big, small, small}, []listed{{1, 0}, {3, 2}}, "", slices.Concat(big, small)},
		{"parts out of order", [][]byte{big, big2}, []listed{{2, 1}, {1, 0}}, "InvalidPartOrder", nil},
		{"a part listed twice", [][]byte{big, small}, []listed{{1, 0}, {1, 0}}, "InvalidPartOrder", nil},
		{"a part never uploaded", [][]byte{big, small}, []listed{{1, 0}, {2, 1}, {3, -1}}, "InvalidPart", nil},
		{"another part's ETag", [][]byte{big, small}, []listed{{1, 0}, {2, 0}}, "InvalidPart", nil},
		{"a made-up ETag", [][]byte{small}, []listed{{1, -1}}, "InvalidPart", nil},
		{"no parts", [][]byte{small}, []listed{}, "MalformedXML", nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := e.as(writeGrant)
			key := fmt.Sprintf("%s/complete-%d.bin", baseKey, i)
			id, etags, err := uploadParts(ctx, c, key, tc.upload...)
			if err != nil {
				t.Fatal(err)
			}
			var done []types.CompletedPart
			var used [][]byte
			if tc.list == nil {
				for j := range tc.upload {
					tc.list = append(tc.list, listed{j + 1, j})
				}
			}
			for _, l := range tc.list {
				et := `"0123456789abcdef0123456789abcdef"`
				if l.etagOf >= 0 {
					et = etags[l.etagOf]
					used = append(used, tc.upload[l.etagOf])
				}
				done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(l.number)), ETag: aws.String(et)})
			}
			out, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
			if code := errorCode(err); code != tc.code {
				t.Fatalf("error code %q (%v), want %q", code, err, tc.code)
			}
			got, gerr := e.srv.GetObject(ctx, bucket, key)
			if tc.code != "" {
				if !errors.Is(gerr, ErrNoSuchKey) {
					t.Fatalf("a refused completion stored the object: %v", gerr)
				}
				// S3 keeps the upload after a refused completion.
				if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id}); err != nil {
					t.Fatalf("abort after a refused completion: %v", err)
				}
				return
			}
			if gerr != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("stored %d bytes, %v; want %d bytes", len(got), gerr, len(tc.want))
			}
			if et := aws.ToString(out.ETag); et != multipartETag(used...) {
				t.Fatalf("CompleteMultipartUpload ETag %s, want %s", et, multipartETag(used...))
			}
		})
	}
}

// An object assembled from parts has S3's multipart ETag wherever an ETag
// shows, and conditional reads compare with it; single PUTs keep the MD5.
func TestMultipartETag(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	p1, p2 := randomBytes(minPartSize, 30), []byte("second and last part")
	whole := slices.Concat(p1, p2)
	key := baseKey + "/mp-etag.bin"
	mpTag, plain := multipartETag(p1, p2), plainETag(whole)
	got, err := completeAll(ctx, e.as(writeGrant), key, p1, p2)
	if err != nil {
		t.Fatal(err)
	}
	if got != mpTag || !strings.HasSuffix(got, `-2"`) {
		t.Fatalf("CompleteMultipartUpload ETag %s, want %s", got, mpTag)
	}
	c := e.as(readGrant)
	getETag := func(ctx context.Context, ifMatch, ifNoneMatch, rng string) (string, error) {
		in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
		if ifMatch != "" {
			in.IfMatch = aws.String(ifMatch)
		}
		if ifNoneMatch != "" {
			in.IfNoneMatch = aws.String(ifNoneMatch)
		}
		if rng != "" {
			in.Range = aws.String(rng)
		}
		out, err := c.GetObject(ctx, in)
		if err != nil {
			return "", err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err == nil && rng == "" && !bytes.Equal(b, whole) {
			err = errors.New("GET returned other bytes")
		}
		return aws.ToString(out.ETag), err
	}
	headETag := func(ctx context.Context, ifMatch string) (string, error) {
		in := &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
		if ifMatch != "" {
			in.IfMatch = aws.String(ifMatch)
		}
		out, err := c.HeadObject(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	cases := []struct {
		name   string
		run    func(ctx context.Context) (string, error)
		etag   string // "" when an error is wanted
		status int    // of the error
	}{
		{"HEAD", func(ctx context.Context) (string, error) { return headETag(ctx, "") }, mpTag, 0},
		{"GET", func(ctx context.Context) (string, error) { return getETag(ctx, "", "", "") }, mpTag, 0},
		{"ranged GET", func(ctx context.Context) (string, error) { return getETag(ctx, "", "", "bytes=10-19") }, mpTag, 0},
		{"GET If-Match the multipart ETag", func(ctx context.Context) (string, error) { return getETag(ctx, mpTag, "", "") }, mpTag, 0},
		{"HEAD If-Match the multipart ETag", func(ctx context.Context) (string, error) { return headETag(ctx, mpTag) }, mpTag, 0},
		{"GET If-Match the content MD5", func(ctx context.Context) (string, error) { return getETag(ctx, plain, "", "") }, "", 412},
		{"ranged GET If-Match the content MD5", func(ctx context.Context) (string, error) { return getETag(ctx, plain, "", "bytes=0-9") }, "", 412},
		{"HEAD If-Match the content MD5", func(ctx context.Context) (string, error) { return headETag(ctx, plain) }, "", 412},
		{"GET If-None-Match the multipart ETag", func(ctx context.Context) (string, error) { return getETag(ctx, "", mpTag, "") }, "", 304},
		{"GET If-None-Match the content MD5", func(ctx context.Context) (string, error) { return getETag(ctx, "", plain, "") }, mpTag, 0},
		{"ListObjectsV2", func(ctx context.Context) (string, error) {
			out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(baseKey + "/")})
			if err != nil {
				return "", err
			}
			for _, o := range out.Contents {
				if aws.ToString(o.Key) == key {
					return aws.ToString(o.ETag), nil
				}
			}
			return "", errors.New("not listed")
		}, mpTag, 0},
		{"ListObjects v1 with a delimiter", func(ctx context.Context) (string, error) {
			out, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String(bucket), Prefix: aws.String(baseKey + "/"), Delimiter: aws.String("/")})
			if err != nil {
				return "", err
			}
			var tags []string
			for _, o := range out.Contents {
				tags = append(tags, aws.ToString(o.Key)+"="+aws.ToString(o.ETag))
			}
			return strings.Join(tags, ","), nil
		}, baseKey + "/data.bin=" + plainETag(e.object) + "," + key + "=" + mpTag + "," + baseKey + "/owner.txt=" + plainETag([]byte("1234")), 0},
		{"direct HeadObject", func(ctx context.Context) (string, error) {
			_, etag, err := e.srv.HeadObject(ctx, bucket, key)
			return etag, err
		}, mpTag, 0},
		{"a single PUT keeps the content MD5", func(ctx context.Context) (string, error) {
			out, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(baseKey + "/sub/small.txt")})
			if err != nil {
				return "", err
			}
			return aws.ToString(out.ETag), nil
		}, plainETag([]byte("small")), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.run(context.Background())
			if tc.etag == "" {
				if st := httpStatus(err); st != tc.status {
					t.Fatalf("status %d (%v), want %d", st, err, tc.status)
				}
				return
			}
			if err != nil || got != tc.etag {
				t.Fatalf("ETag %s, %v; want %s", got, err, tc.etag)
			}
		})
	}
	// The error code, where there is a body to carry it.
	if _, err := getETag(ctx, plain, "", ""); errorCode(err) != "PreconditionFailed" {
		t.Errorf("GET If-Match the content MD5: %q, want PreconditionFailed", errorCode(err))
	}
}

// Every write of a key settles its ETag anew, whatever bytes it stores.
func TestMultipartETagAfterOverwrite(t *testing.T) {
	e := newEnv(t, false)
	p1, p2 := randomBytes(minPartSize, 40), []byte("tail")
	whole := slices.Concat(p1, p2)
	mpTag, plain := multipartETag(p1, p2), plainETag(whole)
	key, copied := baseKey+"/rewritten.bin", baseKey+"/copied.bin"
	w := e.as(writeGrant)
	mp := func(ctx context.Context) error { _, err := completeAll(ctx, w, key, p1, p2); return err }
	steps := []struct {
		name  string
		write func(ctx context.Context) error
		key   string
		etag  string // "" for a missing key
	}{
		{"multipart", mp, key, mpTag},
		{"PUT of the same bytes", func(ctx context.Context) error { return put(ctx, w, bucket, key, whole) }, key, plain},
		{"multipart over a PUT", mp, key, mpTag},
		{"copy of a multipart object", func(ctx context.Context) error {
			_, err := w.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(bucket), Key: aws.String(copied), CopySource: aws.String(bucket + "/" + key)})
			return err
		}, copied, plain},
		{"the source keeps its ETag", func(context.Context) error { return nil }, key, mpTag},
		{"direct PutObject of the same bytes", func(ctx context.Context) error {
			return e.srv.PutObject(ctx, bucket, key, bytes.NewReader(whole), int64(len(whole)))
		}, key, plain},
		{"multipart again", mp, key, mpTag},
		{"DeleteObject", func(ctx context.Context) error {
			_, err := w.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			return err
		}, key, ""},
		{"PUT after a delete", func(ctx context.Context) error { return put(ctx, w, bucket, key, whole) }, key, plain},
		{"multipart after a PUT", mp, key, mpTag},
		{"DeleteObjects", func(ctx context.Context) error {
			_, err := w.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: aws.String(key)}}}})
			return err
		}, key, ""},
		{"PUT after a batch delete", func(ctx context.Context) error { return put(ctx, w, bucket, key, whole) }, key, plain},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			if err := st.write(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := e.admin().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(st.key)})
			if st.etag == "" {
				if httpStatus(err) != http.StatusNotFound {
					t.Fatalf("HEAD of a deleted key: %v", err)
				}
				return
			}
			if err != nil || aws.ToString(out.ETag) != st.etag {
				t.Fatalf("HEAD ETag %s, %v; want %s", aws.ToString(out.ETag), err, st.etag)
			}
			lo, err := e.admin().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(st.key)})
			if err != nil || len(lo.Contents) != 1 || aws.ToString(lo.Contents[0].ETag) != st.etag {
				t.Fatalf("listed %+v, %v; want ETag %s", lo.Contents, err, st.etag)
			}
		})
	}
}

// PUTs and multipart uploads racing for one key: whichever wins, the ETag
// read back is the winner's.
func TestMultipartETagConcurrentWrites(t *testing.T) {
	e := newEnv(t, false)
	p1, p2 := randomBytes(minPartSize, 50), []byte("tail")
	whole := slices.Concat(p1, p2)
	single := []byte("written by a single PUT")
	key := baseKey + "/raced.bin"
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			ctx := context.Background()
			for range 2 {
				var err error
				if i%2 == 0 {
					_, err = completeAll(ctx, e.as(writeGrant), key, p1, p2)
				} else {
					err = put(ctx, e.as(writeGrant), bucket, key, single)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	out, err := e.admin().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := plainETag(single)
	if bytes.Equal(body, whole) {
		want = multipartETag(p1, p2)
	}
	if got := aws.ToString(out.ETag); got != want {
		t.Fatalf("ETag %s for %d bytes, want %s", got, len(body), want)
	}
}

// S3 tells a caller that a key is missing only if the caller may list the
// bucket; vended credentials, listing only under a prefix condition, get
// AccessDenied. Presigned requests show the raw answer.
func TestMissingKey(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	cases := []struct {
		name   string
		c      *s3.Client
		method string
		key    string
		status int
		code   string // in the body; HEAD answers have none
	}{
		{"GET with a read grant", e.as(readGrant), http.MethodGet, baseKey + "/no/such.bin", 403, "AccessDenied"},
		{"HEAD with a read grant", e.as(readGrant), http.MethodHead, baseKey + "/no/such.bin", 403, ""},
		{"GET with a write grant", e.as(writeGrant), http.MethodGet, baseKey + "/no/such.bin", 403, "AccessDenied"},
		{"HEAD with a write grant", e.as(writeGrant), http.MethodHead, baseKey + "/no/such.bin", 403, ""},
		{"GET with the admin key", e.admin(), http.MethodGet, baseKey + "/no/such.bin", 404, "NoSuchKey"},
		{"HEAD with the admin key", e.admin(), http.MethodHead, baseKey + "/no/such.bin", 404, ""},
		{"GET with a whole-bucket grant, which may list", e.as(bucketGrant), http.MethodGet, "no/such.bin", 404, "NoSuchKey"},
		{"HEAD with a whole-bucket grant", e.as(bucketGrant), http.MethodHead, "no/such.bin", 404, ""},
		{"GET of a present key with a read grant", e.as(readGrant), http.MethodGet, baseKey + "/sub/small.txt", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := s3.NewPresignClient(tc.c)
			var url string
			if tc.method == http.MethodGet {
				req, err := pc.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(tc.key)})
				if err != nil {
					t.Fatal(err)
				}
				url = req.URL
			} else {
				req, err := pc.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(tc.key)})
				if err != nil {
					t.Fatal(err)
				}
				url = req.URL
			}
			hr, _ := http.NewRequest(tc.method, url, nil)
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.code != "" && !strings.Contains(string(body), "<Code>"+tc.code+"</Code>") {
				t.Fatalf("body %s, want code %s", body, tc.code)
			}
			if tc.method == http.MethodHead && len(body) != 0 {
				t.Fatalf("HEAD answered a body: %s", body)
			}
			if tc.status != 200 && resp.Header.Get("x-amz-request-id") == "" {
				t.Fatalf("no request id: %v", resp.Header)
			}
		})
	}
}
