package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

const testBS = 1024

// object is a fake remote object: fixed bytes, a count of fetches per block
// offset, and an optional hook that runs before a fetch returns (to block or
// fail it).
type object struct {
	data []byte

	mu    sync.Mutex
	calls map[int64]int
	total int

	// hook, if set, runs before the bytes are returned; a non-nil error is
	// returned instead of the bytes. call is 1 for the first fetch of off.
	hook func(ctx context.Context, off int64, call int) error
	// mangle, if set, may change the returned slice (short or long reads).
	mangle func(b []byte, call int) []byte
}

func newObject(size int) *object {
	data := make([]byte, size)
	for i := range data {
		// Not periodic in the block size, so a block copied to the wrong
		// place shows.
		data[i] = byte(i*7 + i/251)
	}
	return &object{data: data, calls: map[int64]int{}}
}

func (o *object) size() int64 { return int64(len(o.data)) }

func (o *object) fetch(ctx context.Context, off, length int64) ([]byte, error) {
	o.mu.Lock()
	o.calls[off]++
	o.total++
	call := o.calls[off]
	o.mu.Unlock()
	if o.hook != nil {
		if err := o.hook(ctx, off, call); err != nil {
			return nil, err
		}
	}
	b := bytes.Clone(o.data[off : off+length])
	if o.mangle != nil {
		b = o.mangle(b, call)
	}
	return b, nil
}

func (o *object) callsAt(off int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[off]
}

func (o *object) totalCalls() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total
}

// waitFor polls until cond holds; the deadline only turns a hang into a
// failure, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv receives from ch; the deadline only turns a hang into a failure.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// readCheck reads and checks the returned bytes against o, and that p past n
// is untouched.
func readCheck(t *testing.T, c *Cache, ctx context.Context, key string, o *object, off int64, length int, wantN int, wantErr error) {
	t.Helper()
	p := bytes.Repeat([]byte{0xEE}, length)
	n, err := c.ReadAt(ctx, key, o.size(), p, off, o.fetch)
	if n != wantN || !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
		t.Fatalf("ReadAt(off=%d, len=%d) = %d, %v; want %d, %v", off, length, n, err, wantN, wantErr)
	}
	if n > 0 && !bytes.Equal(p[:n], o.data[off:off+int64(n)]) {
		t.Fatalf("ReadAt(off=%d, len=%d): wrong bytes", off, length)
	}
	if err != nil && err != io.EOF {
		return // p's contents are unspecified on failure
	}
	for i := n; i < len(p); i++ {
		if p[i] != 0xEE {
			t.Fatalf("ReadAt(off=%d, len=%d): p[%d] written past n=%d", off, length, i, n)
		}
	}
}

func TestReadAtOffsets(t *testing.T) {
	const size = 10*testBS + 123 // short last block of 123 bytes
	tests := []struct {
		name        string
		size        int
		off         int64
		len         int
		wantN       int
		wantErr     error
		wantFetches int // blocks touched
	}{
		{"start", size, 0, 100, 100, nil, 1},
		{"middle of a block", size, 1500, 200, 200, nil, 1},
		{"one aligned block", size, testBS, testBS, testBS, nil, 1},
		{"crossing one boundary", size, testBS - 10, 20, 20, nil, 2},
		{"crossing several blocks", size, 500, 4000, 4000, nil, 5},
		{"whole object", size, 0, size, size, nil, 11},
		{"short last block exactly", size, 10 * testBS, 123, 123, nil, 1},
		{"past EOF inside last block", size, size - 63, 200, 63, io.EOF, 1},
		{"past EOF crossing into last block", size, size - 363, 1000, 363, io.EOF, 2},
		{"off == size", size, size, 10, 0, io.EOF, 0},
		{"off > size", size, size + 5, 10, 0, io.EOF, 0},
		{"zero-length p", size, 5, 0, 0, nil, 0},
		{"zero-length p at size", size, size, 0, 0, io.EOF, 0},
		{"empty object", 0, 0, 10, 0, io.EOF, 0},
		{"size a multiple of the block, last block", 4 * testBS, 3*testBS + 1000, 100, 24, io.EOF, 1},
		{"size smaller than a block", 300, 100, 100, 100, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := newObject(tt.size)
			c := New(Options{BlockSize: testBS, MaxBytes: 64 * testBS})

			readCheck(t, c, ctx, "k", o, tt.off, tt.len, tt.wantN, tt.wantErr)
			if got := o.totalCalls(); got != tt.wantFetches {
				t.Errorf("cold read: %d fetches, want %d", got, tt.wantFetches)
			}
			st := c.Stats()
			if st.Fetches != int64(tt.wantFetches) || st.Misses != int64(tt.wantFetches) || st.Hits != 0 {
				t.Errorf("cold read stats = %+v, want %d fetches and misses, 0 hits", st, tt.wantFetches)
			}
			if st.CachedBytes != st.FetchedBytes {
				t.Errorf("CachedBytes %d != FetchedBytes %d with a roomy budget", st.CachedBytes, st.FetchedBytes)
			}

			readCheck(t, c, ctx, "k", o, tt.off, tt.len, tt.wantN, tt.wantErr)
			if got := o.totalCalls(); got != tt.wantFetches {
				t.Errorf("warm read fetched: %d fetches in all, want %d", got, tt.wantFetches)
			}
			if st := c.Stats(); st.Hits != int64(tt.wantFetches) {
				t.Errorf("warm read: %d hits, want %d", st.Hits, tt.wantFetches)
			}
		})
	}
}

func TestReadAtRejectsNegativeOffset(t *testing.T) {
	o := newObject(100)
	c := New(Options{BlockSize: testBS})
	n, err := c.ReadAt(context.Background(), "k", o.size(), make([]byte, 10), -1, o.fetch)
	if err == nil || n != 0 {
		t.Fatalf("ReadAt(off=-1) = %d, %v; want 0 and an error", n, err)
	}
	if o.totalCalls() != 0 {
		t.Fatalf("a rejected read fetched")
	}
}

// Concurrent readers of the same range must share one fetch per block.
func TestReadAtOneFetchPerBlock(t *testing.T) {
	tests := []struct {
		name   string
		off    int64
		len    int
		blocks int
	}{
		{"one block", 100, 200, 1},
		{"four blocks", testBS - 24, 3*testBS + 24, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const readers = 32
			o := newObject(10 * testBS)
			release := make(chan struct{})
			o.hook = func(ctx context.Context, off int64, call int) error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			c := New(Options{BlockSize: testBS})

			var wg sync.WaitGroup
			errs := make(chan error, readers)
			for range readers {
				wg.Go(func() {
					p := make([]byte, tt.len)
					n, err := c.ReadAt(context.Background(), "k", o.size(), p, tt.off, o.fetch)
					switch {
					case err != nil:
						errs <- err
					case n != tt.len || !bytes.Equal(p, o.data[tt.off:tt.off+int64(tt.len)]):
						errs <- fmt.Errorf("got %d wrong bytes", n)
					}
				})
			}
			// Every reader has missed every block before any fetch returns.
			waitFor(t, "all readers to miss", func() bool {
				return c.Stats().Misses == int64(readers*tt.blocks)
			})
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := o.totalCalls(); got != tt.blocks {
				t.Errorf("%d fetches for %d readers of %d blocks, want %d", got, readers, tt.blocks, tt.blocks)
			}
			for b := int64(0); b < int64(tt.blocks); b++ {
				off := (tt.off/testBS + b) * testBS
				if got := o.callsAt(off); got != 1 {
					t.Errorf("block at %d fetched %d times, want 1", off, got)
				}
			}
		})
	}
}

func TestByteBudget(t *testing.T) {
	const size = 10*testBS + 123 // blocks 0..9 full, block 10 is 123 bytes
	tests := []struct {
		name       string
		maxBytes   int64
		sequential bool // one ReadAt per block in order, else one ReadAt of everything
		// Exact when sequential; minimums when the blocks arrive in
		// parallel, in any order.
		wantCached    int64
		wantEvictions int64
		// Fetches when everything is then re-read block by block in order.
		wantRefetches int
	}{
		// After block 9 the cache holds 6..9; block 10 pushes out 6. The
		// re-read always evicts the block it needs next: LRU order.
		{"whole blocks", 4 * testBS, true, 3*testBS + 123, 7, 11},
		// 6..9 fill 4 KiB; the 123-byte block 10 still fits in the slack.
		{"budget not a multiple of the block", 4*testBS + 500, true, 4*testBS + 123, 6, 11},
		// No full block fits; the short last one does.
		{"budget smaller than a block", testBS / 2, true, 123, 0, 10},
		// At most 4 of the 11 blocks can stay, so 7 must go.
		{"one read larger than the budget", 4 * testBS, false, 0, 7, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := newObject(size)
			c := New(Options{BlockSize: testBS, MaxBytes: tt.maxBytes})
			readBlocks := func() {
				t.Helper()
				for off := int64(0); off < size; off += testBS {
					want := min(testBS, int(size-off))
					readCheck(t, c, ctx, "k", o, off, want, want, nil)
					if st := c.Stats(); st.CachedBytes > tt.maxBytes {
						t.Fatalf("after reading %d: CachedBytes %d > MaxBytes %d", off, st.CachedBytes, tt.maxBytes)
					}
				}
			}
			if tt.sequential {
				readBlocks()
			} else {
				readCheck(t, c, ctx, "k", o, 0, size, size, nil)
			}

			st := c.Stats()
			if st.FetchedBytes != size {
				t.Errorf("FetchedBytes = %d, want %d", st.FetchedBytes, size)
			}
			if st.CachedBytes > tt.maxBytes {
				t.Errorf("CachedBytes %d > MaxBytes %d", st.CachedBytes, tt.maxBytes)
			}
			if tt.sequential && (st.CachedBytes != tt.wantCached || st.Evictions != tt.wantEvictions) {
				t.Errorf("CachedBytes, Evictions = %d, %d; want %d, %d", st.CachedBytes, st.Evictions, tt.wantCached, tt.wantEvictions)
			}
			if !tt.sequential && st.Evictions < tt.wantEvictions {
				t.Errorf("Evictions = %d, want >= %d", st.Evictions, tt.wantEvictions)
			}

			// Evicted blocks go back to the source.
			before := o.totalCalls()
			readBlocks()
			refetches := o.totalCalls() - before
			if tt.sequential && refetches != tt.wantRefetches {
				t.Errorf("re-read fetched %d blocks, want %d", refetches, tt.wantRefetches)
			}
			if tt.sequential && o.callsAt(0) != 2 {
				t.Errorf("first block fetched %d times, want 2 (evicted, then re-read)", o.callsAt(0))
			}
			if !tt.sequential && refetches < tt.wantRefetches {
				t.Errorf("re-read fetched %d blocks, want >= %d", refetches, tt.wantRefetches)
			}
		})
	}
}

var errBoom = errors.New("boom")

func TestFetchErrorIsReturnedAndNotCached(t *testing.T) {
	tests := []struct {
		name    string
		hook    func(ctx context.Context, off int64, call int) error
		mangle  func(b []byte, call int) []byte
		wantErr error
	}{
		{
			name: "fetch error",
			hook: func(_ context.Context, off int64, call int) error {
				if off == testBS && call == 1 {
					return errBoom
				}
				return nil
			},
			wantErr: errBoom,
		},
		{
			name: "short fetch",
			mangle: func(b []byte, call int) []byte {
				if call == 1 {
					return b[:len(b)-1]
				}
				return b
			},
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name: "long fetch",
			mangle: func(b []byte, call int) []byte {
				if call == 1 {
					return append(b, 0)
				}
				return b
			},
			wantErr: io.ErrUnexpectedEOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := newObject(4 * testBS)
			o.hook, o.mangle = tt.hook, tt.mangle
			c := New(Options{BlockSize: testBS})

			// Reads inside block 1 only.
			readCheck(t, c, ctx, "k", o, testBS+10, 100, 0, tt.wantErr)
			if st := c.Stats(); st.CachedBytes != 0 || st.FetchedBytes != 0 {
				t.Errorf("after a failed fetch: CachedBytes %d, FetchedBytes %d; want 0, 0", st.CachedBytes, st.FetchedBytes)
			}
			readCheck(t, c, ctx, "k", o, testBS+10, 100, 100, nil)
			if got := o.callsAt(testBS); got != 2 {
				t.Errorf("block fetched %d times, want 2 (failure, retry)", got)
			}
			readCheck(t, c, ctx, "k", o, testBS+10, 100, 100, nil)
			if got := o.callsAt(testBS); got != 2 {
				t.Errorf("block fetched %d times after success, want it cached", got)
			}
		})
	}
}

// A failure in one block of a multi-block read fails the read; the retry
// fetches only the failed block again (the others are cached or still in
// flight, and the retry joins them).
func TestFetchErrorInMultiBlockRead(t *testing.T) {
	ctx := context.Background()
	o := newObject(4 * testBS)
	o.hook = func(_ context.Context, off int64, call int) error {
		if off == 2*testBS && call == 1 {
			return errBoom
		}
		return nil
	}
	c := New(Options{BlockSize: testBS})
	readCheck(t, c, ctx, "k", o, 0, 4*testBS, 0, errBoom)
	readCheck(t, c, ctx, "k", o, 0, 4*testBS, 4*testBS, nil)
	for b := int64(0); b < 4; b++ {
		want := 1
		if b == 2 {
			want = 2
		}
		if got := o.callsAt(b * testBS); got != want {
			t.Errorf("block %d fetched %d times, want %d", b, got, want)
		}
	}
}

// Every reader waiting on a failing fetch gets its error, from one fetch.
func TestFetchErrorReachesEveryWaiter(t *testing.T) {
	const readers = 8
	o := newObject(4 * testBS)
	release := make(chan struct{})
	o.hook = func(ctx context.Context, off int64, call int) error {
		if call > 1 {
			return nil
		}
		<-release
		return errBoom
	}
	c := New(Options{BlockSize: testBS})
	errs := make(chan error, readers)
	for range readers {
		go func() {
			_, err := c.ReadAt(context.Background(), "k", o.size(), make([]byte, 10), 5, o.fetch)
			errs <- err
		}()
	}
	waitFor(t, "all readers to miss", func() bool { return c.Stats().Misses == readers })
	close(release)
	for range readers {
		if err := <-errs; !errors.Is(err, errBoom) {
			t.Errorf("waiter got %v, want %v", err, errBoom)
		}
	}
	if got := o.totalCalls(); got != 1 {
		t.Errorf("%d fetches, want 1", got)
	}
	readCheck(t, c, context.Background(), "k", o, 5, 10, 10, nil)
}

// A reader that gives up returns at once; the fetch it started goes on for
// the reader still waiting, and its block is cached.
func TestCancelledReaderDoesNotCancelSharedFetch(t *testing.T) {
	tests := []struct {
		name string
		off  int64
		len  int
	}{
		{"single block", 10, 100},
		{"several blocks", 10, 3 * testBS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newObject(4 * testBS)
			started := make(chan struct{}, 8)
			release := make(chan struct{})
			o.hook = func(ctx context.Context, off int64, call int) error {
				started <- struct{}{}
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return fmt.Errorf("fetch cancelled: %w", ctx.Err())
				}
			}
			c := New(Options{BlockSize: testBS})
			blocks := int((tt.off+int64(tt.len)-1)/testBS + 1)

			// The reader that will give up starts the fetches.
			ctxA, cancelA := context.WithCancel(context.Background())
			defer cancelA()
			doneA := make(chan error, 1)
			go func() {
				_, err := c.ReadAt(ctxA, "k", o.size(), make([]byte, tt.len), tt.off, o.fetch)
				doneA <- err
			}()
			for range blocks {
				<-started
			}

			doneB := make(chan error, 1)
			pB := make([]byte, tt.len)
			go func() {
				n, err := c.ReadAt(context.Background(), "k", o.size(), pB, tt.off, o.fetch)
				if err == nil && n != tt.len {
					err = fmt.Errorf("read %d bytes, want %d", n, tt.len)
				}
				doneB <- err
			}()
			waitFor(t, "reader B to miss", func() bool { return c.Stats().Misses == int64(2*blocks) })

			cancelA()
			// The fetch is still blocked, so A can only return by giving up.
			if err := recv(t, doneA, "the cancelled reader"); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled reader got %v, want context.Canceled", err)
			}
			close(release)
			if err := recv(t, doneB, "the waiting reader"); err != nil {
				t.Fatalf("waiting reader: %v", err)
			}
			if !bytes.Equal(pB, o.data[tt.off:tt.off+int64(tt.len)]) {
				t.Fatalf("waiting reader got wrong bytes")
			}
			if got := o.totalCalls(); got != blocks {
				t.Errorf("%d fetches, want %d", got, blocks)
			}
			readCheck(t, c, context.Background(), "k", o, tt.off, tt.len, tt.len, nil)
			if got := o.totalCalls(); got != blocks {
				t.Errorf("re-read fetched again: %d fetches, want %d", got, blocks)
			}
		})
	}
}

func TestForget(t *testing.T) {
	ctx := context.Background()
	a, b := newObject(3*testBS), newObject(2*testBS+7)
	c := New(Options{BlockSize: testBS})
	readCheck(t, c, ctx, "a", a, 0, int(a.size()), int(a.size()), nil)
	readCheck(t, c, ctx, "b", b, 0, int(b.size()), int(b.size()), nil)

	c.Forget("a")
	if st := c.Stats(); st.CachedBytes != b.size() || st.Evictions != 0 {
		t.Errorf("after Forget(a): CachedBytes %d, Evictions %d; want %d, 0", st.CachedBytes, st.Evictions, b.size())
	}
	readCheck(t, c, ctx, "a", a, 0, int(a.size()), int(a.size()), nil)
	readCheck(t, c, ctx, "b", b, 0, int(b.size()), int(b.size()), nil)
	if got := a.totalCalls(); got != 6 {
		t.Errorf("a: %d fetches, want 6 (3 blocks twice)", got)
	}
	if got := b.totalCalls(); got != 3 {
		t.Errorf("b: %d fetches, want 3 (still cached)", got)
	}
	c.Forget("never read")
	if st := c.Stats(); st.CachedBytes != a.size()+b.size() {
		t.Errorf("Forget of an unknown key changed CachedBytes to %d", st.CachedBytes)
	}
}

// A fetch in flight when Forget is called is neither shared with reads that
// start after it nor stored. The fake serves different bytes on its first
// call, as if the object had been replaced under the same key.
func TestForgetDuringFetch(t *testing.T) {
	o := newObject(2 * testBS)
	started := make(chan int, 2)
	release := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	o.hook = func(_ context.Context, _ int64, call int) error {
		started <- call
		<-release[call-1]
		return nil
	}
	o.mangle = func(b []byte, call int) []byte {
		if call == 1 {
			for i := range b {
				b[i] ^= 0xFF
			}
		}
		return b
	}
	c := New(Options{BlockSize: testBS})
	type result struct {
		p   []byte
		err error
	}
	read := func(done chan<- result) {
		p := make([]byte, 10)
		_, err := c.ReadAt(context.Background(), "k", o.size(), p, 0, o.fetch)
		done <- result{p, err}
	}
	doneA, doneB := make(chan result, 1), make(chan result, 1)
	go read(doneA)
	if call := recv(t, started, "first fetch"); call != 1 {
		t.Fatalf("first fetch is call %d", call)
	}
	c.Forget("k")
	go read(doneB)
	if call := recv(t, started, "a second fetch after Forget"); call != 2 {
		t.Fatalf("second fetch is call %d, want 2", call)
	}
	// The old fetch finishes first: it must not be stored.
	close(release[0])
	if r := recv(t, doneA, "reader A"); r.err != nil {
		t.Fatal(r.err)
	}
	close(release[1])
	if r := recv(t, doneB, "reader B"); r.err != nil || !bytes.Equal(r.p, o.data[:10]) {
		t.Fatalf("reader after Forget got %x, %v; want the new bytes", r.p, r.err)
	}
	readCheck(t, c, context.Background(), "k", o, 0, 10, 10, nil)
	if got := o.totalCalls(); got != 2 {
		t.Errorf("%d fetches, want 2", got)
	}
}

// Many readers, several objects, a budget far smaller than the data, and
// Forgets: every read returns the right bytes and the budget holds.
func TestConcurrentMixedReads(t *testing.T) {
	objs := map[string]*object{
		"a": newObject(8*testBS + 1),
		"b": newObject(5 * testBS),
		"c": newObject(300),
	}
	keys := []string{"a", "b", "c"}
	const maxBytes = 3*testBS + 100
	c := New(Options{BlockSize: testBS, MaxBytes: maxBytes})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 200 {
				key := keys[r.IntN(len(keys))]
				o := objs[key]
				off := r.Int64N(o.size() + 10)
				p := make([]byte, r.IntN(3*testBS))
				n, err := c.ReadAt(context.Background(), key, o.size(), p, off, o.fetch)
				wantN := int(max(0, min(int64(len(p)), o.size()-off)))
				if n != wantN || (err != nil && err != io.EOF) || !bytes.Equal(p[:n], o.data[min(off, o.size()):min(off, o.size())+int64(n)]) {
					errs <- fmt.Errorf("%s off=%d len=%d: n=%d err=%v, want n=%d", key, off, len(p), n, err, wantN)
					return
				}
				if st := c.Stats(); st.CachedBytes > maxBytes {
					errs <- fmt.Errorf("CachedBytes %d > %d", st.CachedBytes, maxBytes)
					return
				}
				if i%50 == 49 {
					c.Forget(key)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The all-hit path must not allocate: it runs once per read(2) at GB/s.
func TestReadAtHitDoesNotAllocate(t *testing.T) {
	o := newObject(4 * testBS)
	c := New(Options{BlockSize: testBS})
	p := make([]byte, 2*testBS)
	ctx := context.Background()
	// A method value passed as Fetch is allocated where it is made: make it
	// once, as the caller should.
	fetch := o.fetch
	if _, err := c.ReadAt(ctx, "k", o.size(), p, 100, fetch); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.ReadAt(ctx, "k", o.size(), p, 100, fetch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("cached read allocates %.1f times, want 0", allocs)
	}
}

func BenchmarkReadAtHit(b *testing.B) {
	const (
		bs   = 1 << 20
		size = 8 * bs
		read = 128 << 10
	)
	o := newObject(size)
	fetch := o.fetch
	c := New(Options{BlockSize: bs})
	ctx := context.Background()
	all := make([]byte, size)
	if _, err := c.ReadAt(ctx, "k", size, all, 0, fetch); err != nil {
		b.Fatal(err)
	}
	// Offsets step by an odd amount so some reads cross block boundaries.
	const step = read + 4096 + 1
	b.Run("serial", func(b *testing.B) {
		p := make([]byte, read)
		b.SetBytes(read)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			if _, err := c.ReadAt(ctx, "k", size, p, off, fetch); err != nil {
				b.Fatal(err)
			}
			off = (off + step) % (size - read)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(read)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			p := make([]byte, read)
			var off int64
			for pb.Next() {
				if _, err := c.ReadAt(ctx, "k", size, p, off, fetch); err != nil {
					b.Error(err)
					return
				}
				off = (off + step) % (size - read)
			}
		})
	})
	if st := c.Stats(); st.Fetches != size/bs {
		b.Fatalf("benchmark fetched during the timed loop: %d fetches", st.Fetches)
	}
}
