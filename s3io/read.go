package s3io

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// A Pin keeps the reads of one object to one version of it. An external
// bucket's owner can overwrite an object behind Synapse's back; reads
// through one Pin then fail with ErrChanged instead of mixing the bytes of
// two versions in one file. Its ETag is the first answer's, or the one it
// was made with; it is safe for concurrent use.
type Pin struct {
	mu   sync.Mutex
	etag string
}

// PinTo returns a Pin to the version with this ETag (as Head returns it;
// not Synapse's MD5, which differs for multipart uploads).
func PinTo(etag string) *Pin { return &Pin{etag: unquoteETag(etag)} }

// ETag returns the pinned ETag, "" before the first answer.
func (p *Pin) ETag() string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.etag
}

// settle pins etag if nothing is pinned yet, and returns what is pinned.
func (p *Pin) settle(etag string) string {
	if p == nil {
		return etag
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.etag == "" {
		p.etag = etag
	}
	return p.etag
}

// ReadAt fills p with the bytes of the object key at off, with one ranged
// GET when nothing goes wrong. Like io.ReaderAt, it returns n < len(p) only
// with an error, io.EOF (unwrapped) when the object ends first.
//
// The GET is conditional (If-Match) on pin's ETag once it has one, so the
// bytes are that version's or the error wraps ErrChanged. A nil pin
// still pins the GETs of this one call to its first answer's ETag.
//
// The SDK retries failed requests but not bodies that break off mid-read
// (reset, truncation); ReadAt asks again for the missing bytes only, at
// most Options.MaxAttempts times. Bytes go straight into p.
func (s *Store) ReadAt(ctx context.Context, key string, p []byte, off int64, pin *Pin) (int, error) {
	return s.ReadvAt(ctx, key, [][]byte{p}, off, pin)
}

// ReadvAt is ReadAt into consecutive buffers: the bytes at off fill bufs
// in order, with one GET, so a caller that keeps memory in fixed-size
// pieces (the block cache) needs no copy.
func (s *Store) ReadvAt(ctx context.Context, key string, bufs [][]byte, off int64, pin *Pin) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("s3io: read s3://%s/%s: negative offset %d", s.Bucket(), key, off)
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total == 0 {
		return 0, nil
	}
	n, failures := 0, 0
	etag := pin.ETag()
	for {
		r, err := s.fetch(ctx, key, skipBytes(bufs, n), total-n, off+int64(n), etag)
		n += r.n
		if etag == "" && r.etag != "" {
			// The first answer: another read may have pinned another
			// version meanwhile, and these bytes are not that one's.
			if etag = pin.settle(r.etag); etag != r.etag {
				return n, fmt.Errorf("s3io: GET s3://%s/%s: %w: pinned ETag %s, got %s", s.Bucket(), key, ErrChanged, etag, r.etag)
			}
		}
		switch {
		case err != nil:
			var be *bodyError
			if !errors.As(err, &be) || ctx.Err() != nil {
				return n, err
			}
		case r.eof:
			if n == total {
				return n, nil
			}
			return n, io.EOF
		case n == total:
			return n, nil
		default:
			// A complete but short answer, not at the end of the object:
			// the server capped the range. Ask for the rest.
			err = fmt.Errorf("s3io: GET s3://%s/%s: %d of %d bytes at %d: %w", s.Bucket(), key, n, total, off, io.ErrUnexpectedEOF)
		}
		failures++
		if failures >= s.maxAttempts {
			return n, err
		}
		s.stats.resumes.Add(1)
		s.log.Debug("s3io: resuming a broken read", "key", key, "off", off, "have", n, "want", total, "cause", err)
	}
}

// skipBytes returns bufs without their first n bytes.
func skipBytes(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if n > 0 {
		rest := make([][]byte, len(bufs))
		copy(rest, bufs)
		rest[0] = rest[0][n:]
		return rest
	}
	return bufs
}

// bodyError marks a body that broke off: resumable, unlike a refused GET.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

type fetched struct {
	n    int    // bytes copied into the buffers
	eof  bool   // the object ends at off+n
	etag string // unquoted ETag of the answer
}

// fetch issues one GET for the n bytes at off and copies what arrives into
// bufs, which hold at least n.
func (s *Store) fetch(ctx context.Context, key string, bufs [][]byte, n int, off int64, etag string) (fetched, error) {
	bucket := s.Bucket()
	rng := "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+int64(n)-1, 10)
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: &rng}
	if etag != "" {
		in.IfMatch = aws.String(quoteETag(etag))
	}
	var out *s3.GetObjectOutput
	err := s.call(ctx, false, func(c *s3.Client) error {
		s.stats.gets.Add(1)
		var err error
		out, err = c.GetObject(ctx, in)
		return err
	})
	what := func() string { return fmt.Sprintf("s3io: GET s3://%s/%s %s", bucket, key, rng) }
	if err != nil {
		if isRangeNotSatisfiable(err) {
			return fetched{eof: true}, nil
		}
		return fetched{}, classify(err, what())
	}
	defer out.Body.Close()

	got := fetched{etag: unquoteETag(aws.ToString(out.ETag))}
	if etag != "" && got.etag != "" && got.etag != unquoteETag(etag) {
		// A server that ignores If-Match must not get to mix versions either.
		return got, fmt.Errorf("%s: %w: asked for ETag %s, got %s", what(), ErrChanged, unquoteETag(etag), got.etag)
	}
	start, size, err := contentRange(out)
	if err != nil {
		return got, fmt.Errorf("%s: %w", what(), err)
	}
	if start != off {
		if start != 0 || out.ContentRange != nil {
			return got, fmt.Errorf("%s: answer starts at byte %d", what(), start)
		}
		// The whole object came back (Range ignored): skip to off.
		if _, err := io.CopyN(io.Discard, out.Body, off); err != nil {
			return got, &bodyError{fmt.Errorf("%s: skipping to %d: %w", what(), off, err)}
		}
	}
	want := int64(n)
	if size >= 0 {
		want = max(min(want, size-off), 0)
	}
	if cl := aws.ToInt64(out.ContentLength); out.ContentRange != nil && cl >= 0 && cl < want {
		want = cl
	}
	m, err := readFull(out.Body, bufs, int(want))
	s.stats.bytesRead.Add(int64(m))
	got.n = m
	if err != nil {
		return got, &bodyError{fmt.Errorf("%s: body broke off after %d of %d bytes: %w", what(), m, want, err)}
	}
	got.eof = size >= 0 && off+int64(m) >= size
	return got, nil
}

// readFull reads n bytes from r into bufs, in order.
func readFull(r io.Reader, bufs [][]byte, n int) (int, error) {
	got := 0
	for _, b := range bufs {
		if got == n {
			break
		}
		k, err := io.ReadFull(r, b[:min(len(b), n-got)])
		got += k
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// contentRange returns where the answer's body starts in the object and
// the object's size (-1 if the server does not say).
func contentRange(out *s3.GetObjectOutput) (start, size int64, err error) {
	if out.ContentRange == nil {
		// 200: the whole object.
		return 0, aws.ToInt64(out.ContentLength), nil
	}
	cr := *out.ContentRange // "bytes 0-99/1000" or "bytes 0-99/*"
	spec, ok := strings.CutPrefix(cr, "bytes ")
	span, total, ok2 := strings.Cut(spec, "/")
	first, _, ok3 := strings.Cut(span, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, fmt.Errorf("unparsable Content-Range %q", cr)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("unparsable Content-Range %q", cr)
	}
	size = -1
	if total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("unparsable Content-Range %q", cr)
		}
	}
	return start, size, nil
}

// Head returns the object's size and its ETag without quotes (for an object
// uploaded in one part, its hex MD5: comparable with Synapse's contentMd5).
func (s *Store) Head(ctx context.Context, key string) (size int64, etag string, err error) {
	bucket := s.Bucket()
	var out *s3.HeadObjectOutput
	err = s.call(ctx, true, func(c *s3.Client) error {
		s.stats.heads.Add(1)
		var err error
		out, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		return err
	})
	if err != nil {
		return 0, "", classify(err, fmt.Sprintf("s3io: HEAD s3://%s/%s", bucket, key))
	}
	return aws.ToInt64(out.ContentLength), unquoteETag(aws.ToString(out.ETag)), nil
}

// quoteETag makes an ETag fit for If-Match, which wants the quoted form;
// callers may hold it bare (from Head, or an MD5 from Synapse).
func quoteETag(e string) string {
	if e == "*" || strings.HasPrefix(e, `"`) || strings.HasPrefix(e, "W/") {
		return e
	}
	return `"` + e + `"`
}

func unquoteETag(e string) string {
	return strings.Trim(strings.TrimPrefix(e, "W/"), `"`)
}
