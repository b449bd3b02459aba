package s3io_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/synfs/synfs/s3io"
	"github.com/synfs/synfs/synapse/synapsetest"
	"github.com/synfs/synfs/synapse/synapsetest/netem"
	"github.com/synfs/synfs/synapse/synapsetest/s3emu"
)

// spoolFile writes data to a temp file and opens it, as the fs layer's
// spool hands files to Upload.
func spoolFile(t *testing.T, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func writeStore(t *testing.T, f *fixture, edit func(*s3io.Options)) *s3io.Store {
	t.Helper()
	return f.store(t, f.vendor(), func(o *s3io.Options) {
		o.Write = true
		if edit != nil {
			edit(o)
		}
	})
}

func TestUpload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, true)
	s := writeStore(t, f, nil)
	tests := []struct {
		name  string
		size  int
		opts  s3io.UploadOptions
		puts  int64 // PutObject calls the upload should cost
		parts int64 // UploadPart calls
	}{
		{"empty", 0, s3io.UploadOptions{}, 1, 0},
		{"small", 13, s3io.UploadOptions{ContentType: "text/plain"}, 1, 0},
		{"one byte below the threshold", 6<<20 - 1, s3io.UploadOptions{Threshold: 6 << 20}, 1, 0},
		{"at the threshold", 6 << 20, s3io.UploadOptions{Threshold: 6 << 20, PartSize: 5 << 20}, 0, 2},
		{"40 MiB, defaults", 40 << 20, s3io.UploadOptions{}, 0, 3},
		{"20 MiB and a bit, small parts, 3 in flight", 20<<20 + 123, s3io.UploadOptions{PartSize: 5 << 20, Concurrency: 3}, 0, 5},
		{"parts exactly fill it", 15 << 20, s3io.UploadOptions{PartSize: 5 << 20, Threshold: 1}, 0, 3},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(uint64(i), tc.size)
			key := fmt.Sprintf("%s/upload-%d/file.bin", f.imp.BaseKey, i)
			before, emuBefore := s.Stats(), f.srv.Stats()
			etag, err := s.Upload(t.Context(), key, spoolFile(t, data), int64(tc.size), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.srv.GetObject(t.Context(), f.imp.Bucket, key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("object holds %d bytes (md5 %s), want %d (md5 %s)", len(got), md5Hex(got), len(data), md5Hex(data))
			}
			after, emuAfter := s.Stats(), f.srv.Stats()
			if p, q := after.Puts-before.Puts, after.Parts-before.Parts; p != tc.puts || q != tc.parts {
				t.Errorf("cost %d PUTs and %d parts, want %d and %d", p, q, tc.puts, tc.parts)
			}
			if got := emuAfter.S3["UploadPart"].Requests - emuBefore.S3["UploadPart"].Requests; got != tc.parts {
				t.Errorf("emulator saw %d UploadPart requests, want %d", got, tc.parts)
			}
			if got := after.BytesUploaded - before.BytesUploaded; got != int64(tc.size) {
				t.Errorf("BytesUploaded grew by %d, want %d", got, tc.size)
			}
			// Bodies go unsigned (no SHA-256 of the data), so what reaches
			// the server is the data alone, with no aws-chunked framing.
			sent := emuAfter.S3["UploadPart"].BytesIn + emuAfter.S3["PutObject"].BytesIn -
				emuBefore.S3["UploadPart"].BytesIn - emuBefore.S3["PutObject"].BytesIn
			if sent != int64(tc.size) {
				t.Errorf("sent %d body bytes for %d bytes of data", sent, tc.size)
			}
			wantETag := md5Hex(data)
			if tc.parts > 0 {
				wantETag = fmt.Sprintf("-%d", tc.parts) // S3's md5-of-parts form
			}
			if !strings.HasSuffix(etag, wantETag) || strings.Contains(etag, `"`) {
				t.Errorf("ETag %q, want it unquoted and ending in %q", etag, wantETag)
			}
		})
	}
}

func TestUploadRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, true)
	rw := writeStore(t, f, nil)
	ro := f.store(t, f.vendor(), nil)
	// A vendor that hands out read-only credentials whatever it is asked:
	// the Store cannot tell, S3 refuses.
	lying := f.store(t, vendorFunc(func(ctx context.Context, _ bool) (s3io.Credentials, error) {
		return f.vendor().Vend(ctx, false)
	}), func(o *s3io.Options) { o.Write = true })
	base := f.imp.BaseKey
	small, big := randomBytes(1, 1000), randomBytes(2, 6<<20)
	multi := s3io.UploadOptions{PartSize: 5 << 20, Threshold: 5 << 20}
	tests := []struct {
		name  string
		s     *s3io.Store
		key   string
		data  []byte
		opts  s3io.UploadOptions
		want  error // nil: any error
		sends bool  // whether any request may reach S3
	}{
		{"read-only store, PutObject", ro, base + "/a/x", small, s3io.UploadOptions{}, s3io.ErrReadOnly, false},
		{"read-only store, multipart", ro, base + "/a/y", big, multi, s3io.ErrReadOnly, false},
		{"read-only credentials, PutObject", lying, base + "/b/x", small, s3io.UploadOptions{}, s3io.ErrAccessDenied, true},
		{"read-only credentials, multipart", lying, base + "/b/y", big, multi, s3io.ErrAccessDenied, true},
		{"outside the base key, PutObject", rw, "elsewhere/x", small, s3io.UploadOptions{}, s3io.ErrAccessDenied, true},
		{"outside the base key, multipart", rw, "elsewhere/y", big, multi, s3io.ErrAccessDenied, true},
		{"owner.txt", rw, base + "/owner.txt", small, s3io.UploadOptions{}, s3io.ErrAccessDenied, true},
		{"part size below S3's minimum", rw, base + "/c/x", big, s3io.UploadOptions{PartSize: 1 << 20}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, emuBefore := tc.s.Stats(), f.srv.Stats()
			etag, err := tc.s.Upload(t.Context(), tc.key, bytes.NewReader(tc.data), int64(len(tc.data)), tc.opts)
			if err == nil || etag != "" {
				t.Fatalf("Upload = %q, %v; want an error", etag, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
			for _, other := range []error{s3io.ErrReadOnly, s3io.ErrAccessDenied, s3io.ErrNotFound} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v wraps %v too", err, other)
				}
			}
			after, emuAfter := tc.s.Stats(), f.srv.Stats()
			if !tc.sends && after.Attempts != before.Attempts {
				t.Errorf("%d requests sent", after.Attempts-before.Attempts)
			}
			if got := after.Parts - before.Parts; got != 0 {
				t.Errorf("%d parts sent after the upload was refused", got)
			}
			if got := emuAfter.S3["CompleteMultipartUpload"].Requests - emuBefore.S3["CompleteMultipartUpload"].Requests; got != 0 {
				t.Errorf("%d CompleteMultipartUpload requests", got)
			}
			if _, err := f.srv.GetObject(t.Context(), f.imp.Bucket, tc.key); !errors.Is(err, s3emu.ErrNoSuchKey) && tc.key != base+"/owner.txt" {
				t.Errorf("object exists after a refused upload (%v)", err)
			}
		})
	}
}

func TestUploadExpiredTokenRefreshesOnce(t *testing.T) {
	t.Parallel()
	const lifetime = time.Second
	f := newFixture(t, synapsetest.Options{}, true)
	v := f.vendor()
	v.claim = time.Hour // the Store believes in an hour; S3 says otherwise
	tests := []struct {
		name string
		size int
		opts s3io.UploadOptions
	}{
		{"PutObject", 4096, s3io.UploadOptions{}},
		{"multipart", 11 << 20, s3io.UploadOptions{PartSize: 5 << 20, Threshold: 5 << 20}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh Store holds credentials that really last a second.
			// The refresh then brings ones that outlive the upload, so
			// exactly one vend is right however slow the machine is.
			f.srv.SetSTSLifetime(lifetime)
			s := f.store(t, v, func(o *s3io.Options) { o.Write = true })
			prime := fmt.Sprintf("%s/expired-%d/prime", f.imp.BaseKey, i)
			if _, err := s.Upload(t.Context(), prime, bytes.NewReader([]byte("x")), 1, s3io.UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			f.srv.SetSTSLifetime(time.Hour)
			time.Sleep(lifetime + 300*time.Millisecond) // past the real expiry

			data := randomBytes(uint64(10+i), tc.size)
			key := fmt.Sprintf("%s/expired-%d/f", f.imp.BaseKey, i)
			before := s.Stats()
			if _, err := s.Upload(t.Context(), key, bytes.NewReader(data), int64(len(data)), tc.opts); err != nil {
				t.Fatal(err)
			}
			if got, err := f.srv.GetObject(t.Context(), f.imp.Bucket, key); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back: %d bytes, %v", len(got), err)
			}
			after := s.Stats()
			if got := after.Vends - before.Vends; got != 1 {
				t.Errorf("%d vends, want exactly 1 refresh", got)
			}
			if got := after.ExpiredRetries - before.ExpiredRetries; got < 1 {
				t.Errorf("%d ExpiredToken retries, want at least 1", got)
			}
		})
	}
}

func TestUploadSurvivesFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, true)
	s := writeStore(t, f, func(o *s3io.Options) { o.MaxAttempts = 10 })
	f.srv.S3Conditions().SetFaults(netem.Faults{Status503: 0.2, Reset: 0.1})
	defer f.srv.S3Conditions().SetFaults(netem.Faults{})

	sizes := []int{100, 3 << 20, 12<<20 + 7, 16 << 20, 5 << 20}
	opts := s3io.UploadOptions{PartSize: 5 << 20, Threshold: 5 << 20, Concurrency: 2}
	errs := make([]error, len(sizes))
	var wg sync.WaitGroup
	for i, size := range sizes {
		wg.Go(func() {
			data := randomBytes(uint64(20+i), size)
			key := fmt.Sprintf("%s/faults-%d/f", f.imp.BaseKey, i)
			_, err := s.Upload(t.Context(), key, bytes.NewReader(data), int64(size), opts)
			got, gerr := f.srv.GetObject(context.Background(), f.imp.Bucket, key)
			switch {
			case err == nil && (gerr != nil || !bytes.Equal(got, data)):
				errs[i] = fmt.Errorf("upload %d succeeded but the object is wrong: %d bytes, %v", i, len(got), gerr)
			case err != nil && gerr == nil && !bytes.Equal(got, data):
				errs[i] = fmt.Errorf("upload %d failed (%v) and left wrong bytes behind", i, err)
			case err != nil:
				t.Logf("upload %d of %d bytes failed cleanly: %v", i, size, err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	st := s.Stats()
	if st.Attempts <= st.Puts+st.Parts+3*2 {
		t.Errorf("the SDK never retried; faults not exercised? %+v", st)
	}
	t.Logf("stats under faults: %+v", st)
}

// aclBucket is a bare S3 emulator behind a filter that records upload
// requests and can refuse ACLs or damage the first part, as real buckets
// and networks do.
type aclBucket struct {
	emu    *s3emu.Server
	refuse string // "": accept ACLs; else the error code to refuse them with
	damage bool   // flip a byte in the body of part 1
	// loseComplete completes the first CompleteMultipartUpload, then cuts
	// the connection before the answer, as a network failure would.
	loseComplete bool

	mu   sync.Mutex
	seen []request
	lost bool
}

type request struct{ op, acl, payloadHash, crc32 string }

func (b *aclBucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	op := "other"
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		op = "UploadPart"
	case r.Method == http.MethodPut:
		op = "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		op = "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		op = "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		op = "AbortMultipartUpload"
	}
	b.mu.Lock()
	b.seen = append(b.seen, request{op, r.Header.Get("X-Amz-Acl"), r.Header.Get("X-Amz-Content-Sha256"), r.Header.Get("X-Amz-Checksum-Crc32")})
	lose := op == "CompleteMultipartUpload" && b.loseComplete && !b.lost
	b.lost = b.lost || lose
	b.mu.Unlock()
	if lose {
		b.emu.ServeHTTP(httptest.NewRecorder(), r)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	damage := op == "UploadPart" && b.damage && q.Get("partNumber") == "1"

	if b.refuse != "" && r.Header.Get("X-Amz-Acl") != "" {
		_, _ = io.Copy(io.Discard, r.Body)
		msg := map[string]string{
			"AccessControlListNotSupported": "The bucket does not allow ACLs",
			"InvalidArgument":               "ACLs are not supported by this bucket",
		}[b.refuse]
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>1</RequestId></Error>`, b.refuse, msg)
		return
	}
	if damage {
		body, _ := io.ReadAll(r.Body)
		body[len(body)/2] ^= 0xff
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	b.emu.ServeHTTP(w, r)
}

func (b *aclBucket) requests(op string) []request {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []request
	for _, r := range b.seen {
		if r.op == op {
			out = append(out, r)
		}
	}
	return out
}

func newACLBucket(t *testing.T, b *aclBucket) *s3io.Store {
	t.Helper()
	emu, err := s3emu.New(s3emu.Options{Backend: s3mem.New()})
	if err != nil {
		t.Fatal(err)
	}
	b.emu = emu
	hs := httptest.NewServer(b)
	t.Cleanup(hs.Close)
	if err := emu.CreateBucket("lab"); err != nil {
		t.Fatal(err)
	}
	g := s3emu.Grant{AccessKeyID: "ASIAWRITER", SecretAccessKey: "secret", SessionToken: "token", Bucket: "lab", BaseKey: "root", Write: true, Expiration: time.Now().Add(time.Hour)}
	emu.AddGrant(g)
	v := vendorFunc(func(context.Context, bool) (s3io.Credentials, error) {
		return s3io.Credentials{AccessKeyID: g.AccessKeyID, SecretAccessKey: g.SecretAccessKey, SessionToken: g.SessionToken,
			Expiration: g.Expiration, Bucket: g.Bucket, BaseKey: g.BaseKey}, nil
	})
	s, err := s3io.New(t.Context(), s3io.Options{Vendor: v, Endpoint: hs.URL, Write: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUploadACLAndChecksums(t *testing.T) {
	t.Parallel()
	small, big := randomBytes(3, 3000), randomBytes(4, 11<<20)
	multi := s3io.UploadOptions{PartSize: 5 << 20, Threshold: 5 << 20}
	// Each case uploads small, big, small, big: two PUTs and two creates
	// succeed. A refusal is remembered: only the first request pays for it.
	type count struct{ requests, withACL int }
	tests := []struct {
		name          string
		refuse        string
		puts, creates count
	}{
		{"bucket takes ACLs", "", count{2, 2}, count{2, 2}},
		{"AccessControlListNotSupported", "AccessControlListNotSupported", count{3, 1}, count{2, 0}},
		{"InvalidArgument about ACLs", "InvalidArgument", count{3, 1}, count{2, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &aclBucket{refuse: tc.refuse}
			s := newACLBucket(t, b)
			for i, data := range [][]byte{small, big, small, big} {
				key := fmt.Sprintf("root/%d/f", i)
				if _, err := s.Upload(t.Context(), key, bytes.NewReader(data), int64(len(data)), multi); err != nil {
					t.Fatalf("upload %d: %v", i, err)
				}
				got, err := b.emu.GetObject(t.Context(), "lab", key)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("upload %d read back: %d bytes, %v", i, len(got), err)
				}
			}
			for op, want := range map[string]count{"PutObject": tc.puts, "CreateMultipartUpload": tc.creates} {
				got := count{}
				for _, r := range b.requests(op) {
					got.requests++
					switch r.acl {
					case "bucket-owner-full-control":
						got.withACL++
					case "":
					default:
						t.Errorf("%s sent ACL %q", op, r.acl)
					}
				}
				if got != want {
					t.Errorf("%s: %d requests, %d with the ACL; want %d, %d", op, got.requests, got.withACL, want.requests, want.withACL)
				}
			}
			for _, op := range []string{"PutObject", "UploadPart"} {
				for _, r := range b.requests(op) {
					if r.payloadHash != "UNSIGNED-PAYLOAD" || r.crc32 == "" {
						t.Errorf("%s: x-amz-content-sha256 %q, x-amz-checksum-crc32 %q; want UNSIGNED-PAYLOAD and a CRC32", op, r.payloadHash, r.crc32)
					}
				}
			}
		})
	}
}

func TestUploadDamagedPartFails(t *testing.T) {
	t.Parallel()
	b := &aclBucket{damage: true}
	s := newACLBucket(t, b)
	data := randomBytes(5, 11<<20)
	_, err := s.Upload(t.Context(), "root/damaged/f", bytes.NewReader(data), int64(len(data)), s3io.UploadOptions{PartSize: 5 << 20, Threshold: 5 << 20, Concurrency: 1})
	if err == nil {
		t.Fatal("upload with a damaged part succeeded")
	}
	if _, gerr := b.emu.GetObject(t.Context(), "lab", "root/damaged/f"); !errors.Is(gerr, s3emu.ErrNoSuchKey) {
		t.Errorf("an object exists after the failed upload (%v)", gerr)
	}
	if st := s.Stats(); st.Aborts != 1 || len(b.requests("AbortMultipartUpload")) != 1 {
		t.Errorf("%d aborts counted, %d sent; want 1", st.Aborts, len(b.requests("AbortMultipartUpload")))
	}
	// BadDigest is not retried: the spool may have changed under the
	// upload, and a fresh checksum would bless a mix of old and new bytes.
	// With one part in flight, nothing follows the failed part either.
	if n := len(b.requests("UploadPart")); n != 1 {
		t.Errorf("%d UploadPart requests, want 1", n)
	}
	t.Logf("error: %v", err)
}

// TestUploadLostCompletion: the answer to CompleteMultipartUpload is lost,
// the SDK asks again and S3 no longer knows the upload. The object is
// there, whole: Upload must see that and succeed.
func TestUploadLostCompletion(t *testing.T) {
	t.Parallel()
	b := &aclBucket{loseComplete: true}
	s := newACLBucket(t, b)
	data := randomBytes(6, 11<<20)
	etag, err := s.Upload(t.Context(), "root/lost/f", bytes.NewReader(data), int64(len(data)), s3io.UploadOptions{PartSize: 5 << 20, Threshold: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.requests("CompleteMultipartUpload")); n != 2 {
		t.Errorf("%d CompleteMultipartUpload requests, want 2 (the lost one and the retry)", n)
	}
	if got, err := b.emu.GetObject(t.Context(), "lab", "root/lost/f"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	if _, head, err := s.Head(t.Context(), "root/lost/f"); err != nil || head != etag || !strings.HasSuffix(etag, "-3") {
		t.Errorf("Upload returned ETag %q, HEAD says %q (%v); want the same multipart ETag", etag, head, err)
	}
	if st := s.Stats(); st.Aborts != 0 {
		t.Errorf("%d aborts after a successful upload", st.Aborts)
	}
}
