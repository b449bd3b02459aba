package s3io_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/synfs/synfs/s3io"
	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
	"github.com/synfs/synfs/synapse/synapsetest/netem"
	"github.com/synfs/synfs/synapse/synapsetest/s3emu"
)

// synapseVendor is the adapter the fs layer will have: STS credentials
// from the Synapse client. claim, when set, replaces the lifetime the
// service reported, to make the emulator's S3 answer ExpiredToken while
// the Store still believes its credentials are fresh.
type synapseVendor struct {
	c      *synapse.Client
	folder string
	claim  time.Duration

	mu    sync.Mutex
	vends []vendRecord
}

type vendRecord struct{ at, expiration time.Time }

func (v *synapseVendor) history() []vendRecord {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]vendRecord(nil), v.vends...)
}

func (v *synapseVendor) Vend(ctx context.Context, write bool) (s3io.Credentials, error) {
	perm := synapse.ReadOnly
	if write {
		perm = synapse.ReadWrite
	}
	cr, err := v.c.StsCredentials(ctx, v.folder, perm)
	if err != nil {
		return s3io.Credentials{}, err
	}
	exp := cr.Expiration
	if v.claim > 0 {
		exp = time.Now().Add(v.claim)
	}
	v.mu.Lock()
	v.vends = append(v.vends, vendRecord{at: time.Now(), expiration: cr.Expiration})
	v.mu.Unlock()
	return s3io.Credentials{
		AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey, SessionToken: cr.SessionToken,
		Expiration: exp, Bucket: cr.Bucket, BaseKey: cr.BaseKey,
	}, nil
}

// vendorFunc adapts a function for tests that need no Synapse.
type vendorFunc func(ctx context.Context, write bool) (s3io.Credentials, error)

func (f vendorFunc) Vend(ctx context.Context, write bool) (s3io.Credentials, error) {
	return f(ctx, write)
}

// fixture is an emulator with one imported STS folder and what it holds.
type fixture struct {
	srv    *synapsetest.Server
	imp    *synapsetest.Imported
	client *synapse.Client
	data   map[string][]byte // path -> bytes
	keys   map[string]string // path -> S3 key
}

// files of every fixture: sizes chosen to cover one-byte-short, odd and
// multi-megabyte reads.
var files = map[string]int{
	"big.bin":        3<<20 + 123,
	"small.txt":      13,
	"sub/nested.bin": 64 << 10,
	"empty.dat":      0,
}

func newFixture(t *testing.T, opts synapsetest.Options, external bool) *fixture {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	f := &fixture{data: map[string][]byte{}, keys: map[string]string{}}
	rnd := rand.New(rand.NewPCG(1, 2))
	for p, size := range files {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		f.data[p] = b
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.srv = synapsetest.NewServer(t, opts)
	var err error
	if f.imp, err = f.srv.Import(ctx, "data", dir, external); err != nil {
		t.Fatal(err)
	}
	f.client, err = synapse.NewClient(synapse.Config{RepoEndpoint: f.srv.RepoEndpoint, FileEndpoint: f.srv.FileEndpoint, Token: f.srv.Owner.Token})
	if err != nil {
		t.Fatal(err)
	}
	for p := range files {
		e, err := f.client.GetEntity(ctx, f.imp.IDs[p])
		if err != nil {
			t.Fatal(err)
		}
		fh, err := f.client.DataFileHandle(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		f.keys[p] = fh.Key
	}
	return f
}

func (f *fixture) vendor() *synapseVendor {
	return &synapseVendor{c: f.client, folder: f.imp.FolderID}
}

// store opens a Store on the fixture's folder; edit adjusts the options.
func (f *fixture) store(t *testing.T, v s3io.Vendor, edit func(*s3io.Options)) *s3io.Store {
	t.Helper()
	opts := s3io.Options{
		Vendor:   v,
		Endpoint: f.srv.S3Endpoint,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if edit != nil {
		edit(&opts)
	}
	s, err := s3io.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkRead reads want's span and fails unless the bytes are exactly the
// object's.
func checkRead(ctx context.Context, s *s3io.Store, key string, data []byte, off int64, size int) error {
	return checkReadv(ctx, s, key, data, off, size, 1)
}

// checkReadv is checkRead through ReadvAt into pieces buffers of uneven
// sizes (ReadAt when pieces is 1).
func checkReadv(ctx context.Context, s *s3io.Store, key string, data []byte, off int64, size, pieces int) error {
	p := make([]byte, size)
	var n int
	var err error
	if pieces == 1 {
		n, err = s.ReadAt(ctx, key, p, off, nil)
	} else {
		// Halves: 1/2, 1/4, ... and the rest.
		var bufs [][]byte
		rest := p
		for range pieces - 1 {
			bufs, rest = append(bufs, rest[:len(rest)/2]), rest[len(rest)/2:]
		}
		bufs = append(bufs, rest)
		n, err = s.ReadvAt(ctx, key, bufs, off, nil)
	}
	end := min(off+int64(size), int64(len(data)))
	wantN := int(max(end-off, 0))
	var wantErr error
	if wantN < size {
		wantErr = io.EOF
	}
	if n != wantN || err != wantErr {
		return fmt.Errorf("ReadAt(%s, off %d, len %d) = %d, %v; want %d, %v", key, off, size, n, err, wantN, wantErr)
	}
	if wantN > 0 && !bytes.Equal(p[:n], data[off:end]) {
		return fmt.Errorf("ReadAt(%s, off %d, len %d): wrong bytes", key, off, size)
	}
	return nil
}

func TestReadAt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, false)
	s := f.store(t, f.vendor(), nil)
	if s.Bucket() != f.imp.Bucket || s.BaseKey() != f.imp.BaseKey {
		t.Fatalf("root = s3://%s/%s, want s3://%s/%s", s.Bucket(), s.BaseKey(), f.imp.Bucket, f.imp.BaseKey)
	}
	big := int64(len(f.data["big.bin"]))
	tests := []struct {
		name string
		file string
		off  int64
		size int
		gets int64 // GETs the read should cost
	}{
		{"start", "big.bin", 0, 4096, 1},
		{"middle unaligned", "big.bin", 1<<20 + 7, 200_001, 1},
		{"whole object", "big.bin", 0, int(big), 1},
		{"ends exactly at the end", "big.bin", big - 1000, 1000, 1},
		{"last byte", "big.bin", big - 1, 1, 1},
		{"runs past the end", "big.bin", big - 100, 1000, 1},
		{"starts at the end", "big.bin", big, 10, 1},
		{"starts past the end", "big.bin", big + 5000, 10, 1},
		{"small object, big buffer", "small.txt", 0, 4096, 1},
		{"nested", "sub/nested.bin", 1000, 30_000, 1},
		{"empty object", "empty.dat", 0, 10, 1},
		{"empty buffer costs nothing", "big.bin", 10, 0, 0},
	}
	for _, tc := range tests {
		for _, pieces := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/%d buffers", tc.name, pieces), func(t *testing.T) {
				before := s.Stats()
				if err := checkReadv(t.Context(), s, f.keys[tc.file], f.data[tc.file], tc.off, tc.size, pieces); err != nil {
					t.Fatal(err)
				}
				after := s.Stats()
				if got := after.Gets - before.Gets; got != tc.gets {
					t.Errorf("cost %d GETs, want %d", got, tc.gets)
				}
				if got, want := after.BytesRead-before.BytesRead, int64(max(min(tc.off+int64(tc.size), int64(len(f.data[tc.file])))-tc.off, 0)); got != want {
					t.Errorf("BytesRead grew by %d, want %d", got, want)
				}
			})
		}
	}
	if _, err := s.ReadAt(t.Context(), f.keys["big.bin"], make([]byte, 1), -1, nil); err == nil {
		t.Error("negative offset: no error")
	}
}

func TestHeadAndETag(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, true)
	s := f.store(t, f.vendor(), nil)
	ctx := t.Context()
	key, data := f.keys["big.bin"], f.data["big.bin"]

	size, etag, err := s.Head(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	if size != int64(len(data)) || etag != hex.EncodeToString(sum[:]) {
		t.Fatalf("Head = %d, %q; want %d, %q (the MD5, unquoted)", size, etag, len(data), hex.EncodeToString(sum[:]))
	}
	for _, tag := range []string{etag, `"` + etag + `"`} {
		p := make([]byte, 1000)
		n, err := s.ReadAt(ctx, key, p, 5000, s3io.PinTo(tag))
		if n != len(p) || err != nil || !bytes.Equal(p, data[5000:6000]) {
			t.Errorf("ReadAt with If-Match %s = %d, %v (bytes equal: %v)", tag, n, err, bytes.Equal(p, data[5000:6000]))
		}
	}
}

// TestPinKeepsOneVersion: reads through one Pin keep to the version the
// first one saw. An object overwritten in between (an external bucket's
// owner can) fails them with ErrChanged rather than mixing two versions'
// bytes; a new Pin reads the new version.
func TestPinKeepsOneVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, true)
	s := f.store(t, f.vendor(), nil)
	ctx := t.Context()
	key, data := f.keys["big.bin"], f.data["big.bin"]
	pin := new(s3io.Pin)
	p := make([]byte, 100)
	if n, err := s.ReadAt(ctx, key, p, 0, pin); n != len(p) || err != nil || !bytes.Equal(p, data[:100]) {
		t.Fatalf("first read: %d, %v", n, err)
	}
	if pin.ETag() == "" {
		t.Fatal("the first answer pinned no ETag")
	}
	changed := bytes.Repeat([]byte("v2"), len(data)/2)
	if err := f.srv.PutObject(ctx, f.imp.Bucket, key, changed); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadAt(ctx, key, p, 1000, pin); !errors.Is(err, s3io.ErrChanged) {
		t.Fatalf("read through the pin after an overwrite: %v; want ErrChanged", err)
	}
	if n, err := s.ReadAt(ctx, key, p, 1000, new(s3io.Pin)); n != len(p) || err != nil || !bytes.Equal(p, changed[1000:1100]) {
		t.Fatalf("read through a new pin: %d, %v, new bytes: %v", n, err, bytes.Equal(p, changed[1000:1100]))
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, true)
	s := f.store(t, f.vendor(), nil)
	base := f.imp.BaseKey
	if err := f.srv.PutObject(t.Context(), f.imp.Bucket, "elsewhere/secret.bin", []byte("not yours")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  string
		etag string
		want error
		head bool // Head answers the same way (no etag involved)
	}{
		{"key outside the prefix", "elsewhere/secret.bin", "", s3io.ErrAccessDenied, true},
		{"missing key outside the prefix", "elsewhere/nothing", "", s3io.ErrAccessDenied, true},
		{"owner.txt is denied", base + "/owner.txt", "", s3io.ErrAccessDenied, true},
		// S3 says 404 only to callers with s3:ListBucket on the whole
		// bucket; STS credentials have it for the prefix only, so 403.
		{"missing key under the prefix", base + "/no/such/object", "", s3io.ErrAccessDenied, true},
		{"wrong etag", f.keys["big.bin"], "0123456789abcdef0123456789abcdef", s3io.ErrChanged, false},
	}
	sentinels := []error{s3io.ErrAccessDenied, s3io.ErrNotFound, s3io.ErrChanged}
	check := func(t *testing.T, op string, err, want error) {
		t.Helper()
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == want) {
				t.Errorf("%s: errors.Is(%v, %v) = %v", op, err, s, !(s == want))
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.ReadAt(t.Context(), tc.key, make([]byte, 100), 0, s3io.PinTo(tc.etag))
			if n != 0 {
				t.Errorf("ReadAt returned %d bytes", n)
			}
			check(t, "ReadAt", err, tc.want)
			if tc.head {
				_, _, err := s.Head(t.Context(), tc.key)
				check(t, "Head", err, tc.want)
			}
		})
	}
	if st := s.Stats(); st.ExpiredRetries != 0 || st.Vends != 1 {
		t.Errorf("refusals cost vends or refreshes: %+v", st)
	}
}

func TestCredentialsRefreshAcrossLifetimes(t *testing.T) {
	t.Parallel()
	const lifetime = 3 * time.Second
	f := newFixture(t, synapsetest.Options{STSLifetime: lifetime}, false)
	v := f.vendor()
	s := f.store(t, v, nil) // default RefreshBefore: capped at half the lifetime
	key, data := f.keys["big.bin"], f.data["big.bin"]
	start := time.Now()
	reads := 0
	for ; time.Since(start) < 3*lifetime+300*time.Millisecond; reads++ {
		if err := checkRead(t.Context(), s, key, data, int64(reads)*100_003%int64(len(data)), 50_000); err != nil {
			t.Fatalf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(700 * time.Millisecond)
	}
	st := s.Stats()
	if st.Vends < 3 || st.Vends > int64(reads)/2 {
		t.Errorf("%d vends for %d reads across 3 lifetimes, want >= 3 but not one per read", st.Vends, reads)
	}
	if st.ExpiredRetries != 0 {
		t.Errorf("%d ExpiredToken retries: credentials were not refreshed before expiry", st.ExpiredRetries)
	}
	// Reads come every 0.7 s and the refresh window is 1.5 s, so each
	// refresh must come while the previous credentials were still valid.
	h := v.history()
	for i := 1; i < len(h); i++ {
		if !h[i].at.Before(h[i-1].expiration) {
			t.Errorf("vend %d came %v after the previous credentials expired", i, h[i].at.Sub(h[i-1].expiration))
		}
	}
}

func TestExpiredTokenRefreshesOnce(t *testing.T) {
	t.Parallel()
	const lifetime = time.Second
	f := newFixture(t, synapsetest.Options{}, false)
	v := f.vendor()
	v.claim = time.Hour // the Store believes in an hour; S3 says otherwise
	var s *s3io.Store   // one per case, so each starts on expiring credentials
	key, data := f.keys["big.bin"], f.data["big.bin"]

	tests := []struct {
		name    string
		readers int
		op      func(context.Context) error
	}{
		{"ReadAt", 1, func(ctx context.Context) error { return checkRead(ctx, s, key, data, 777, 10_000) }},
		{"Head (no error code in the answer)", 1, func(ctx context.Context) error {
			size, _, err := s.Head(ctx, key)
			if err == nil && size != int64(len(data)) {
				err = fmt.Errorf("Head size %d, want %d", size, len(data))
			}
			return err
		}},
		{"16 concurrent readers", 16, func(ctx context.Context) error { return checkRead(ctx, s, key, data, 1<<20, 4096) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh Store holds credentials that really last a second.
			// The refresh then brings ones that outlive the reads, so
			// exactly one vend is right however slow the machine is.
			f.srv.SetSTSLifetime(lifetime)
			s = f.store(t, v, nil)
			if err := checkRead(t.Context(), s, key, data, 0, 1); err != nil {
				t.Fatal(err)
			}
			f.srv.SetSTSLifetime(time.Hour)
			time.Sleep(lifetime + 300*time.Millisecond) // past the real expiry
			before := s.Stats()
			errs := make(chan error, tc.readers)
			var wg sync.WaitGroup
			for range tc.readers {
				wg.Go(func() { errs <- tc.op(t.Context()) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			after := s.Stats()
			if got := after.Vends - before.Vends; got != 1 {
				t.Errorf("%d vends, want exactly 1 refresh", got)
			}
			if got := after.ExpiredRetries - before.ExpiredRetries; got < 1 || got > int64(tc.readers) {
				t.Errorf("%d ExpiredToken retries, want 1..%d", got, tc.readers)
			}
		})
	}
}

func TestReadsSurviveFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, false)
	// At 40% faults per request, 5 attempts fail one read in ~2000; 10 keep
	// this test from flaking while still exercising every path. The 503s
	// are SlowDown, which the SDK backs off from by seconds: keep reads few.
	s := f.store(t, f.vendor(), func(o *s3io.Options) { o.MaxAttempts = 10 })
	f.srv.S3Conditions().SetFaults(netem.Faults{Status503: 0.2, Reset: 0.1, Truncate: 0.1})
	defer f.srv.S3Conditions().SetFaults(netem.Faults{})

	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 36 {
		file := []string{"big.bin", "big.bin", "sub/nested.bin", "small.txt"}[i%4]
		data := f.data[file]
		off := rnd.Int64N(int64(len(data)))
		size := 1 + rnd.IntN(256<<10)
		// Half into several buffers: a body resumed mid-buffer or between
		// two must land where it belongs.
		if err := checkReadv(t.Context(), s, f.keys[file], data, off, size, 1+i%2*4); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if i%6 == 0 {
			if size, _, err := s.Head(t.Context(), f.keys[file]); err != nil || size != int64(len(data)) {
				t.Fatalf("Head %s = %d, %v", file, size, err)
			}
		}
	}
	st := s.Stats()
	if st.Resumes == 0 {
		t.Errorf("no body was resumed; faults not exercised? %+v", st)
	}
	if st.Attempts <= st.Gets+st.Heads {
		t.Errorf("the SDK never retried; faults not exercised? %+v", st)
	}
	t.Logf("stats under faults: %+v", st)
}

func TestConcurrentReadersShareCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture(t, synapsetest.Options{}, false)
	s := f.store(t, f.vendor(), nil)
	key, data := f.keys["big.bin"], f.data["big.bin"]
	const readers, reads = 16, 20
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(r), 5))
			for range reads {
				if err := checkRead(t.Context(), s, key, data, rnd.Int64N(int64(len(data))), 1+rnd.IntN(128<<10)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Vends != 1 || st.Gets != readers*reads {
		t.Errorf("stats %+v, want 1 vend and %d GETs", st, readers*reads)
	}
}

// TestRegionFromErrorAnswer runs against a bare S3 emulator in eu-west-1:
// a Store that starts in us-east-1 must learn the region from the first
// refusal and keep working.
func TestRegionFromErrorAnswer(t *testing.T) {
	t.Parallel()
	emu, err := s3emu.New(s3emu.Options{Backend: s3mem.New(), Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	if err := emu.CreateBucket("euro"); err != nil {
		t.Fatal(err)
	}
	data := []byte("bonjour, le monde")
	if err := emu.PutObject(t.Context(), "euro", "root/f.txt", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	g := s3emu.Grant{AccessKeyID: "ASIAEUROPE", SecretAccessKey: "secret", SessionToken: "token", Bucket: "euro", BaseKey: "root", Expiration: time.Now().Add(time.Hour)}
	emu.AddGrant(g)
	v := vendorFunc(func(context.Context, bool) (s3io.Credentials, error) {
		return s3io.Credentials{AccessKeyID: g.AccessKeyID, SecretAccessKey: g.SecretAccessKey, SessionToken: g.SessionToken,
			Expiration: g.Expiration, Bucket: g.Bucket, BaseKey: g.BaseKey}, nil
	})
	s, err := s3io.New(t.Context(), s3io.Options{Vendor: v, Endpoint: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRead(t.Context(), s, "root/f.txt", data, 9, 100); err != nil {
		t.Fatal(err)
	}
	if err := checkRead(t.Context(), s, "root/f.txt", data, 0, 7); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); s.Region() != "eu-west-1" || st.RegionSwitches != 1 {
		t.Errorf("region %q after %d switches, want eu-west-1 after 1", s.Region(), st.RegionSwitches)
	}
}

func TestNewFailsAtMountTime(t *testing.T) {
	t.Parallel()
	refused := errors.New("entity must have an STS-enabled storage location")
	good := vendorFunc(func(context.Context, bool) (s3io.Credentials, error) {
		return s3io.Credentials{AccessKeyID: "A", SecretAccessKey: "S", Bucket: "b", Expiration: time.Now().Add(time.Hour)}, nil
	})
	var asked []bool
	var mu sync.Mutex
	tests := []struct {
		name string
		opts s3io.Options
		want error // nil: any error
	}{
		{"vendor refuses", s3io.Options{Vendor: vendorFunc(func(_ context.Context, write bool) (s3io.Credentials, error) {
			mu.Lock()
			asked = append(asked, write)
			mu.Unlock()
			return s3io.Credentials{}, refused
		}), Write: true}, refused},
		{"no vendor", s3io.Options{}, nil},
		{"incomplete credentials", s3io.Options{Vendor: vendorFunc(func(context.Context, bool) (s3io.Credentials, error) {
			return s3io.Credentials{AccessKeyID: "A"}, nil
		})}, nil},
		{"endpoint is not a URL", s3io.Options{Vendor: good, Endpoint: "localhost:9000"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := s3io.New(t.Context(), tc.opts)
			if err == nil || s != nil {
				t.Fatalf("New = %v, %v; want an error", s, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("New error %v does not wrap %v", err, tc.want)
			}
		})
	}
	if len(asked) != 1 || !asked[0] {
		t.Errorf("vendor asked with write=%v, want one call with write=true", asked)
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	c := s3io.Credentials{AccessKeyID: "ASIAKEY", SecretAccessKey: "SUPERSECRET", SessionToken: "TOKEN", Bucket: "b", BaseKey: "k"}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "creds", c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), buf.String()} {
		for _, secret := range []string{"ASIAKEY", "SUPERSECRET", "TOKEN"} {
			if bytes.Contains([]byte(out), []byte(secret)) {
				t.Errorf("%q leaks %s", out, secret)
			}
		}
	}
}
