package s3io

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/errgroup"
)

// Upload defaults, and the S3 limits they must respect.
const (
	DefaultPartSize          = 16 << 20
	DefaultUploadThreshold   = 16 << 20
	DefaultUploadConcurrency = 8
	// MinPartSize is S3's floor for every part but the last.
	MinPartSize = 5 << 20

	maxPartSize   = 5 << 30
	maxParts      = 10_000
	maxPutSize    = 5 << 30 // one PutObject
	maxObjectSize = 5 << 40

	// abortTimeout bounds the clean-up of a failed multipart upload, which
	// runs even when the caller's ctx is what failed it.
	abortTimeout = time.Minute
)

// UploadOptions tune Upload; the zero value means the defaults.
type UploadOptions struct {
	PartSize    int64 // default 16 MiB; at least MinPartSize; grown if the object would need more than 10,000 parts
	Threshold   int64 // objects smaller than this go in one PutObject; default 16 MiB
	Concurrency int   // parts in flight; default 8
	ContentType string
}

func (o UploadOptions) resolve(size int64) (UploadOptions, error) {
	if size < 0 || size > maxObjectSize {
		return o, fmt.Errorf("size %d is outside S3's range (0 to 5 TiB)", size)
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize || o.PartSize > maxPartSize {
		return o, fmt.Errorf("part size %d is outside S3's range (5 MiB to 5 GiB)", o.PartSize)
	}
	if o.Threshold <= 0 {
		o.Threshold = DefaultUploadThreshold
	}
	o.Threshold = min(o.Threshold, maxPutSize+1)
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultUploadConcurrency
	}
	if parts := ceilDiv(size, o.PartSize); parts > maxParts {
		o.PartSize = ceilDiv(ceilDiv(size, maxParts), 1<<20) << 20
	}
	return o, nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// Upload writes size bytes read from r (a spool file) to key and returns
// the object's ETag, unquoted. Below opts.Threshold it is one PutObject;
// above, a multipart upload whose parts go up in parallel and that is
// aborted (best effort) if anything fails, so a failed Upload never leaves
// an object at key made of the wrong bytes. r must not change meanwhile: a
// part whose bytes differ from those checksummed fails the upload.
//
// Each body carries its CRC32, which S3 verifies; that, not the SigV4
// payload hash, guards the bytes, so even over plain HTTP no SHA-256 of the
// data is computed. Objects are written with the bucket-owner-full-control
// ACL that external buckets of other accounts need, unless the bucket
// refuses ACLs (object ownership "bucket owner enforced"): then the Store
// writes without from then on.
//
// Errors wrap ErrReadOnly (the Store was opened without Options.Write:
// nothing was sent) or ErrAccessDenied (e.g. key outside the STS prefix).
func (s *Store) Upload(ctx context.Context, key string, r io.ReaderAt, size int64, opts UploadOptions) (etag string, err error) {
	bucket := s.Bucket()
	if !s.prov.write {
		return "", fmt.Errorf("s3io: upload s3://%s/%s: %w (opened without Options.Write)", bucket, key, ErrReadOnly)
	}
	o, err := opts.resolve(size)
	if err != nil {
		return "", fmt.Errorf("s3io: upload s3://%s/%s: %w", bucket, key, err)
	}
	start := time.Now()
	if size < o.Threshold {
		etag, err = s.putObject(ctx, bucket, key, r, size, o)
	} else {
		etag, err = s.multipart(ctx, bucket, key, r, size, o)
	}
	if err == nil {
		s.log.Debug("s3io: uploaded", "bucket", bucket, "key", key, "size", size, "etag", etag, "duration", time.Since(start))
	}
	return etag, err
}

// Writable says whether the Store holds read_write credentials.
func (s *Store) Writable() bool { return s.prov.write }

func (s *Store) putObject(ctx context.Context, bucket, key string, r io.ReaderAt, size int64, o UploadOptions) (string, error) {
	what := fmt.Sprintf("s3io: PUT s3://%s/%s", bucket, key)
	sum, err := crc32Of(r, 0, size)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	var out *s3.PutObjectOutput
	err = s.withACL(func(acl types.ObjectCannedACL) error {
		return s.call(ctx, false, func(c *s3.Client) error {
			s.stats.puts.Add(1)
			var err error
			out, err = c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: &bucket, Key: &key, ACL: acl, ContentType: optString(o.ContentType),
				Body: io.NewSectionReader(r, 0, size), ContentLength: &size, ChecksumCRC32: &sum,
			}, withUnsignedPayload)
			return err
		})
	})
	if err != nil {
		return "", classifyWrite(err, what)
	}
	s.stats.bytesUploaded.Add(size)
	return unquoteETag(aws.ToString(out.ETag)), nil
}

func (s *Store) multipart(ctx context.Context, bucket, key string, r io.ReaderAt, size int64, o UploadOptions) (etag string, err error) {
	what := fmt.Sprintf("s3io: multipart upload to s3://%s/%s", bucket, key)
	var id string
	err = s.withACL(func(acl types.ObjectCannedACL) error {
		return s.call(ctx, false, func(c *s3.Client) error {
			out, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
				Bucket: &bucket, Key: &key, ACL: acl, ContentType: optString(o.ContentType),
				// S3 refuses part checksums of an algorithm the upload did not announce.
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
			})
			if err == nil {
				id = aws.ToString(out.UploadId)
			}
			return err
		})
	})
	if err != nil {
		return "", classifyWrite(err, what+": create")
	}
	defer func() {
		if err != nil {
			s.abort(ctx, bucket, key, id)
		}
	}()

	n := ceilDiv(size, o.PartSize)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for i := range n {
		if gctx.Err() != nil {
			break // a part failed: do not read and send the rest
		}
		g.Go(func() error {
			off := i * o.PartSize
			p, err := s.uploadPart(gctx, bucket, key, id, int32(i+1), r, off, min(o.PartSize, size-off))
			parts[i] = p
			return err
		})
	}
	if err = g.Wait(); err == nil {
		err = ctx.Err() // cancelled before any part started
	}
	if err != nil {
		return "", err
	}

	var out *s3.CompleteMultipartUploadOutput
	err = s.call(ctx, false, func(c *s3.Client) error {
		var err error
		out, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &bucket, Key: &key, UploadId: &id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		return err
	})
	if err != nil && errorCode(err) == "NoSuchUpload" {
		// The SDK retries a Complete whose answer was lost, and S3 then no
		// longer knows the upload: find out whether the first one won.
		if etag, ok := s.completedBefore(ctx, bucket, key, size, parts); ok {
			return etag, nil
		}
	}
	if err != nil {
		return "", classifyWrite(err, what+": complete")
	}
	return unquoteETag(aws.ToString(out.ETag)), nil
}

func (s *Store) uploadPart(ctx context.Context, bucket, key, id string, num int32, r io.ReaderAt, off, n int64) (types.CompletedPart, error) {
	what := fmt.Sprintf("s3io: UploadPart s3://%s/%s part %d", bucket, key, num)
	sum, err := crc32Of(r, off, n)
	if err != nil {
		return types.CompletedPart{}, fmt.Errorf("%s: %w", what, err)
	}
	var out *s3.UploadPartOutput
	err = s.call(ctx, false, func(c *s3.Client) error {
		s.stats.parts.Add(1)
		var err error
		out, err = c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &bucket, Key: &key, UploadId: &id, PartNumber: &num,
			Body: io.NewSectionReader(r, off, n), ContentLength: &n, ChecksumCRC32: &sum,
		}, withUnsignedPayload)
		return err
	})
	if err != nil {
		return types.CompletedPart{}, classifyWrite(err, what)
	}
	s.stats.bytesUploaded.Add(n)
	return types.CompletedPart{PartNumber: &num, ETag: out.ETag, ChecksumCRC32: &sum}, nil
}

// completedBefore reports whether key already holds the object these parts
// make, by S3's multipart ETag (MD5 of the parts' MD5s, "-", part count).
// Keys are unique per upload, so that and the size identify it.
func (s *Store) completedBefore(ctx context.Context, bucket, key string, size int64, parts []types.CompletedPart) (string, bool) {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(unquoteETag(aws.ToString(p.ETag)))
		if err != nil {
			return "", false
		}
		h.Write(b)
	}
	want := hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts))
	got, etag, err := s.Head(ctx, key)
	ok := err == nil && got == size && etag == want
	s.log.Info("s3io: multipart upload vanished before its completion was confirmed", "bucket", bucket, "key", key,
		"completed", ok, "etag", etag, "wantETag", want, "headError", err)
	return etag, ok
}

// abort drops a failed multipart upload's parts, which S3 would otherwise
// keep (and bill) invisibly until a lifecycle rule removes them.
func (s *Store) abort(ctx context.Context, bucket, key, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	s.stats.aborts.Add(1)
	err := s.call(ctx, false, func(c *s3.Client) error {
		_, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: &id})
		return err
	})
	if err != nil && errorCode(err) != "NoSuchUpload" {
		s.log.Warn("s3io: could not abort a failed multipart upload; its parts stay in the bucket until a lifecycle rule removes them",
			"bucket", bucket, "key", key, "uploadId", id, "cause", err)
	}
}

// withACL runs op with the bucket-owner-full-control canned ACL, then
// without it if the bucket refuses ACLs. The refusal is remembered, so
// later uploads to that bucket cost one request, not two.
func (s *Store) withACL(op func(types.ObjectCannedACL) error) error {
	if s.noACL.Load() {
		return op("")
	}
	err := op(types.ObjectCannedACLBucketOwnerFullControl)
	if err == nil || !isACLRefused(err) {
		return err
	}
	if !s.noACL.Swap(true) {
		s.log.Info("s3io: bucket refuses ACLs; uploading without bucket-owner-full-control", "bucket", s.Bucket(), "cause", err)
	}
	return op("")
}

// withUnsignedPayload makes the signature cover UNSIGNED-PAYLOAD instead
// of the body's SHA-256. Over HTTPS the SDK does so by itself; over plain
// HTTP (emulators, S3-compatible stores on a LAN) it would hash every byte
// once more, the costliest step of an upload. The CRC32 header, which the
// signature covers and S3 checks, still catches damaged bodies.
func withUnsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		// First in Finalize: the checksum and payload-hash steps skip
		// hashing when a payload hash is already set.
		return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("s3io.UnsignedPayload",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				return next.HandleFinalize(v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD"), in)
			}), middleware.Before)
	})
}

// crc32Of returns the base64 CRC32 of n bytes of r at off, as the
// x-amz-checksum-crc32 header wants it.
func crc32Of(r io.ReaderAt, off, n int64) (string, error) {
	h := crc32.NewIEEE()
	got, err := io.CopyBuffer(h, io.NewSectionReader(r, off, n), make([]byte, 256<<10))
	if err != nil {
		return "", fmt.Errorf("read source at %d: %w", off+got, err)
	}
	if got != n {
		return "", fmt.Errorf("source ends at %d, before %d: %w", off+got, off+n, io.ErrUnexpectedEOF)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// isACLRefused says whether the bucket refused the canned ACL itself, as
// opposed to the request: AccessControlListNotSupported from buckets with
// ACLs disabled, InvalidArgument naming ACLs from S3-compatible stores.
func isACLRefused(err error) bool {
	switch errorCode(err) {
	case "AccessControlListNotSupported":
		return true
	case "InvalidArgument":
		msg := errorMessage(err)
		return strings.Contains(msg, "ACL") || strings.Contains(strings.ToLower(msg), "access control list")
	}
	return false
}

// classifyWrite is classify for writes: only AccessDenied maps to a
// sentinel. A 404 there (NoSuchUpload, NoSuchBucket) is no missing file,
// and must not surface as ENOENT from close().
func classifyWrite(err error, what string) error {
	if errorCode(err) == "AccessDenied" || httpStatus(err) == http.StatusForbidden {
		return fmt.Errorf("%s: %w: %w", what, ErrAccessDenied, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
