package cache

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

const testBS = 1024

// object is a fake remote object: fixed bytes, a log of fetches, and an
// optional hook that runs before a fetch returns (to block or fail it).
type object struct {
	data []byte

	mu       sync.Mutex
	calls    map[int64]int
	log      []span // every fetch, in call order
	okLog    []span // successful fetches
	total    int
	inflight int // fetches inside the hook now
	maxIn    int
	blocked  int64

	// hook, if set, runs before the bytes are returned; a non-nil error is
	// returned instead of the bytes. call is 1 for the first fetch of off.
	hook func(ctx context.Context, off, length int64, call int) error
	// garble, if set, may fail a fetch after it has written wrong bytes
	// into its buffers, as a body that breaks off would.
	garble func(call int) error
}

func newObject(size int) *object {
	data := make([]byte, size)
	for i := range data {
		// Not periodic in any block size, so bytes copied to the wrong
		// place show.
		data[i] = byte(i*7 + i/251)
	}
	return &object{data: data, calls: map[int64]int{}}
}

func (o *object) size() int64 { return int64(len(o.data)) }

func (o *object) fetch(ctx context.Context, off int64, dst [][]byte) error {
	var length int64
	for _, b := range dst {
		length += int64(len(b))
	}
	o.mu.Lock()
	o.calls[off]++
	o.total++
	o.log = append(o.log, span{off, off + length})
	call := o.calls[off]
	o.inflight++
	o.maxIn = max(o.maxIn, o.inflight)
	o.blocked += length
	o.mu.Unlock()
	var err error
	if o.hook != nil {
		err = o.hook(ctx, off, length, call)
	}
	o.mu.Lock()
	o.inflight--
	o.blocked -= length
	o.mu.Unlock()
	if err != nil {
		return err
	}
	if o.garble != nil {
		if err := o.garble(call); err != nil {
			for _, b := range dst {
				for i := range b {
					b[i] = 0xee
				}
			}
			return err
		}
	}
	o.mu.Lock()
	o.okLog = append(o.okLog, span{off, off + length})
	o.mu.Unlock()
	src := o.data[off:]
	for _, b := range dst {
		src = src[copy(b, src):]
	}
	return nil
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

func (o *object) fetchLog() []span {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.log)
}

// fetched returns the successful fetches, in call order.
func (o *object) fetched() []span {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.okLog)
}

// inHook returns how many fetches, and how many bytes, are inside the hook.
func (o *object) inHook() (int, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.inflight, o.blocked
}

// checkNoOverlap fails if any byte was fetched twice (pass fetched()).
func checkNoOverlap(t *testing.T, log []span) {
	t.Helper()
	s := slices.Clone(log)
	slices.SortFunc(s, func(a, b span) int { return int(a.start - b.start) })
	for i := 1; i < len(s); i++ {
		if s[i].start < s[i-1].end {
			t.Fatalf("fetches %v and %v overlap: bytes fetched twice", s[i-1], s[i])
		}
	}
}

func mustNew(t testing.TB, opts Options) *Cache {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
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

// readCheck reads with Cache.ReadAt and checks the returned bytes against
// o, and that p past n is untouched.
func readCheck(t *testing.T, c *Cache, ctx context.Context, key string, o *object, off int64, length int, wantN int, wantErr error) {
	t.Helper()
	p := bytes.Repeat([]byte{0xEE}, length)
	n, err := readOnce(c, ctx, key, o.size(), p, off, o.fetch)
	checkRead(t, o, p, off, n, err, wantN, wantErr)
}

func checkRead(t *testing.T, o *object, p []byte, off int64, n int, err error, wantN int, wantErr error) {
	t.Helper()
	if n != wantN || !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
		t.Fatalf("ReadAt(off=%d, len=%d) = %d, %v; want %d, %v", off, len(p), n, err, wantN, wantErr)
	}
	if n > 0 && !bytes.Equal(p[:n], o.data[off:off+int64(n)]) {
		t.Fatalf("ReadAt(off=%d, len=%d): wrong bytes", off, len(p))
	}
	if err != nil && err != io.EOF {
		return // p's contents are unspecified on failure
	}
	for i := n; i < len(p); i++ {
		if p[i] != 0xEE {
			t.Fatalf("ReadAt(off=%d, len=%d): p[%d] written past n=%d", off, len(p), i, n)
		}
	}
}

// A read with no open file fetches the aligned blocks it touches, in one
// GET, and nothing more.
func TestReadAtOffsets(t *testing.T) {
	const size = 10*testBS + 123 // short last block of 123 bytes
	tests := []struct {
		name      string
		size      int
		off       int64
		len       int
		wantN     int
		wantErr   error
		wantFetch span // the one GET; none if empty
	}{
		{"start", size, 0, 100, 100, nil, span{0, testBS}},
		{"middle of a block", size, 1500, 200, 200, nil, span{testBS, 2 * testBS}},
		{"one aligned block", size, testBS, testBS, testBS, nil, span{testBS, 2 * testBS}},
		{"crossing one boundary", size, testBS - 10, 20, 20, nil, span{0, 2 * testBS}},
		{"crossing several blocks", size, 500, 4000, 4000, nil, span{0, 5 * testBS}},
		{"whole object", size, 0, size, size, nil, span{0, size}},
		{"short last block exactly", size, 10 * testBS, 123, 123, nil, span{10 * testBS, size}},
		{"past EOF inside last block", size, size - 63, 200, 63, io.EOF, span{10 * testBS, size}},
		{"past EOF crossing into last block", size, size - 363, 1000, 363, io.EOF, span{9 * testBS, size}},
		{"off == size", size, size, 10, 0, io.EOF, span{}},
		{"off > size", size, size + 5, 10, 0, io.EOF, span{}},
		{"zero-length p", size, 5, 0, 0, nil, span{}},
		{"zero-length p at size", size, size, 0, 0, io.EOF, span{}},
		{"empty object", 0, 0, 10, 0, io.EOF, span{}},
		{"size a multiple of the block, last block", 4 * testBS, 3*testBS + 1000, 100, 24, io.EOF, span{3 * testBS, 4 * testBS}},
		{"size smaller than a block", 300, 100, 100, 100, nil, span{0, 300}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := newObject(tt.size)
			c := mustNew(t, Options{BlockSize: testBS, MaxBytes: 64 * testBS})

			readCheck(t, c, ctx, "k", o, tt.off, tt.len, tt.wantN, tt.wantErr)
			var want []span
			if tt.wantFetch != (span{}) {
				want = []span{tt.wantFetch}
			}
			if got := o.fetchLog(); !slices.Equal(got, want) {
				t.Errorf("cold read fetched %v, want %v", got, want)
			}
			reads := int64(len(want)) // reads that got past the bounds
			st := c.Stats()
			if st.Fetches != reads || st.DemandFetches != reads || st.Misses != reads || st.Hits != 0 {
				t.Errorf("cold read stats = %+v, want %d fetches and misses, 0 hits", st, reads)
			}
			// A partial last block takes a whole chunk of memory.
			if want := tt.wantFetch.end - tt.wantFetch.start; st.FetchedBytes != want || st.CachedBytes != alignUp(want, testBS) {
				t.Errorf("CachedBytes %d, FetchedBytes %d; want %d in whole blocks, %d", st.CachedBytes, st.FetchedBytes, alignUp(want, testBS), want)
			}

			readCheck(t, c, ctx, "k", o, tt.off, tt.len, tt.wantN, tt.wantErr)
			if got := o.totalCalls(); got != len(want) {
				t.Errorf("warm read fetched: %d fetches in all, want %d", got, len(want))
			}
			if st := c.Stats(); st.Hits != reads {
				t.Errorf("warm read: %d hits, want %d", st.Hits, reads)
			}
		})
	}
}

func TestReadAtRejectsNegativeOffset(t *testing.T) {
	o := newObject(100)
	c := mustNew(t, Options{BlockSize: testBS})
	n, err := readOnce(c, context.Background(), "k", o.size(), make([]byte, 10), -1, o.fetch)
	if err == nil || n != 0 {
		t.Fatalf("ReadAt(off=-1) = %d, %v; want 0 and an error", n, err)
	}
	if o.totalCalls() != 0 {
		t.Fatalf("a rejected read fetched")
	}
}

// Concurrent readers of the same range share one fetch.
func TestConcurrentReadersShareFetch(t *testing.T) {
	tests := []struct {
		name string
		off  int64
		len  int
		want span
	}{
		{"one block", 100, 200, span{0, testBS}},
		{"four blocks", testBS - 24, 3*testBS + 24, span{0, 4 * testBS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const readers = 32
			o := newObject(10 * testBS)
			release := make(chan struct{})
			o.hook = func(ctx context.Context, _, _ int64, _ int) error {
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			c := mustNew(t, Options{BlockSize: testBS})

			var wg sync.WaitGroup
			errs := make(chan error, readers)
			for range readers {
				wg.Go(func() {
					p := make([]byte, tt.len)
					n, err := readOnce(c, context.Background(), "k", o.size(), p, tt.off, o.fetch)
					switch {
					case err != nil:
						errs <- err
					case n != tt.len || !bytes.Equal(p, o.data[tt.off:tt.off+int64(tt.len)]):
						errs <- fmt.Errorf("got %d wrong bytes", n)
					}
				})
			}
			// Every reader has missed before the fetch returns.
			waitFor(t, "all readers to miss", func() bool { return c.Stats().Misses == readers })
			close(release)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := o.fetchLog(); !slices.Equal(got, []span{tt.want}) {
				t.Errorf("fetched %v for %d readers, want one fetch of %v", got, readers, tt.want)
			}
		})
	}
}

// A reader whose range overlaps a fetch in flight waits for that one and
// fetches only the rest.
func TestOverlappingReadersFetchOnlyTheMissingRest(t *testing.T) {
	o := newObject(10 * testBS)
	started := make(chan span, 4)
	release := make(chan struct{})
	o.hook = func(_ context.Context, off, length int64, _ int) error {
		started <- span{off, off + length}
		<-release
		return nil
	}
	c := mustNew(t, Options{BlockSize: testBS})
	done := make(chan error, 2)
	read := func(off int64, n int) {
		p := make([]byte, n)
		got, err := readOnce(c, context.Background(), "k", o.size(), p, off, o.fetch)
		if err == nil && (got != n || !bytes.Equal(p, o.data[off:off+int64(n)])) {
			err = fmt.Errorf("read at %d: wrong bytes", off)
		}
		done <- err
	}
	go read(10, 2*testBS-20) // blocks 0-1
	if got := recv(t, started, "first fetch"); got != (span{0, 2 * testBS}) {
		t.Fatalf("first fetch %v", got)
	}
	go read(testBS+10, 2*testBS) // blocks 1-3: block 1 is in flight
	if got := recv(t, started, "second fetch"); got != (span{2 * testBS, 4 * testBS}) {
		t.Fatalf("second fetch %v, want only the blocks not in flight", got)
	}
	close(release)
	for range 2 {
		if err := recv(t, done, "readers"); err != nil {
			t.Fatal(err)
		}
	}
	if got := o.totalCalls(); got != 2 {
		t.Errorf("%d fetches, want 2", got)
	}
}

func TestByteBudget(t *testing.T) {
	const size = 10*testBS + 123 // blocks 0..9 full, block 10 is 123 bytes
	tests := []struct {
		name       string
		maxBytes   int64
		sequential bool // one ReadAt per block in order, else one ReadAt of everything
		// Exact when sequential; bounds otherwise.
		wantCached    int64
		wantEvictions int64
		// Fetches when everything is then re-read block by block in order.
		wantRefetches int
		partSize      int64 // 0: 4 blocks
	}{
		// After block 9 the cache holds 6..9; block 10 pushes out 6. The
		// re-read always evicts the block it needs next: LRU order.
		// The 123-byte block 10 costs a whole block of memory.
		{"whole blocks", 4 * testBS, true, 4 * testBS, 7, 11, 0},
		// 6..9 fill 4 KiB; the slack holds no whole block.
		{"budget not a multiple of the block", 4*testBS + 500, true, 4 * testBS, 7, 11, 0},
		// No block fits: each is returned, then dropped, and makes room
		// for itself first.
		{"budget smaller than a block", testBS / 2, true, 0, 11, 11, 0},
		// At most 4 of the 11 KiB can stay.
		{"one read larger than the budget", 4 * testBS, false, 4 * testBS, 1, 7, 0},
		// Seven parts of 1500 bytes or less, each in two blocks of memory:
		// the read reserves what its parts take, not what its bytes do.
		{"parts not a multiple of the block", 16 * testBS, false, 14 * testBS, 0, 0, 1500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := newObject(size)
			c := mustNew(t, Options{BlockSize: testBS, PartSize: cmp.Or(tt.partSize, 4*testBS), MaxBytes: tt.maxBytes})
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
			if !tt.sequential && (st.CachedBytes > tt.wantCached || st.Evictions < tt.wantEvictions) {
				t.Errorf("CachedBytes, Evictions = %d, %d; want <= %d, >= %d", st.CachedBytes, st.Evictions, tt.wantCached, tt.wantEvictions)
			}
			if st.InflightBytes != 0 {
				t.Errorf("InflightBytes = %d after all reads returned", st.InflightBytes)
			}

			// Evicted blocks go back to the source.
			before := o.totalCalls()
			readBlocks()
			refetches := o.totalCalls() - before
			if tt.sequential && refetches != tt.wantRefetches {
				t.Errorf("re-read fetched %d blocks, want %d", refetches, tt.wantRefetches)
			}
			if !tt.sequential && refetches < tt.wantRefetches {
				t.Errorf("re-read fetched %d blocks, want >= %d", refetches, tt.wantRefetches)
			}
		})
	}
}

// With the budget taken by fetches in flight, a read waits for room rather
// than going past the budget, and goes on once there is room.
func TestReadWaitsForRoom(t *testing.T) {
	objs := []*object{newObject(4 * testBS), newObject(4 * testBS), newObject(4 * testBS)}
	release := make(chan struct{})
	for _, o := range objs[:2] {
		o.hook = func(context.Context, int64, int64, int) error { <-release; return nil }
	}
	c := mustNew(t, Options{BlockSize: testBS, MaxBytes: 2 * testBS})
	done := make(chan error, 3)
	for i, o := range objs {
		if i == 2 {
			waitFor(t, "two fetches in flight", func() bool { return c.Stats().InflightBytes == 2*testBS })
		}
		go func() {
			p := make([]byte, 10)
			_, err := readOnce(c, context.Background(), fmt.Sprint(i), o.size(), p, 0, o.fetch)
			if err == nil && !bytes.Equal(p, o.data[:10]) {
				err = errors.New("wrong bytes")
			}
			done <- err
		}()
	}
	waitFor(t, "the third read to wait for room", func() bool { return c.Stats().WaitingReads == 1 })
	if got := objs[2].totalCalls(); got != 0 {
		t.Fatalf("third object fetched %d times while the budget was full", got)
	}
	close(release)
	for range objs {
		if err := recv(t, done, "reads"); err != nil {
			t.Fatal(err)
		}
	}
	if st := c.Stats(); st.PeakBytes > 2*testBS || st.WaitingReads != 0 {
		t.Errorf("PeakBytes %d (budget %d), WaitingReads %d", st.PeakBytes, 2*testBS, st.WaitingReads)
	}
}

var errBoom = errors.New("boom")

func TestFetchErrorIsReturnedAndNotCached(t *testing.T) {
	tests := []struct {
		name    string
		hook    func(ctx context.Context, off, length int64, call int) error
		garble  func(call int) error
		wantErr error
	}{
		{
			name: "fetch error",
			hook: func(_ context.Context, off, _ int64, call int) error {
				if off == testBS && call == 1 {
					return errBoom
				}
				return nil
			},
			wantErr: errBoom,
		},
		{
			name: "fetch that breaks off after writing",
			garble: func(call int) error {
				if call == 1 {
					return io.ErrUnexpectedEOF
				}
				return nil
			},
			wantErr: io.ErrUnexpectedEOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := newObject(4 * testBS)
			o.hook, o.garble = tt.hook, tt.garble
			c := mustNew(t, Options{BlockSize: testBS})

			// Reads inside block 1 only.
			readCheck(t, c, ctx, "k", o, testBS+10, 100, 0, tt.wantErr)
			if st := c.Stats(); st.CachedBytes != 0 || st.FetchedBytes != 0 || st.FetchErrors != 1 || st.InflightBytes != 0 {
				t.Errorf("after a failed fetch: %+v; want nothing cached or in flight, one error", st)
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

// A failure in one part of a multi-part read fails the read; the retry
// fetches only the failed part again.
func TestFetchErrorInMultiPartRead(t *testing.T) {
	ctx := context.Background()
	o := newObject(4 * testBS)
	o.hook = func(_ context.Context, off, _ int64, call int) error {
		if off == 2*testBS && call == 1 {
			return errBoom
		}
		return nil
	}
	c := mustNew(t, Options{BlockSize: testBS, PartSize: testBS})
	readCheck(t, c, ctx, "k", o, 0, 4*testBS, 0, errBoom)
	readCheck(t, c, ctx, "k", o, 0, 4*testBS, 4*testBS, nil)
	for b := int64(0); b < 4; b++ {
		want := 1
		if b == 2 {
			want = 2
		}
		if got := o.callsAt(b * testBS); got != want {
			t.Errorf("part %d fetched %d times, want %d", b, got, want)
		}
	}
}

// Every reader waiting on a failing fetch gets its error, from one fetch.
func TestFetchErrorReachesEveryWaiter(t *testing.T) {
	const readers = 8
	o := newObject(4 * testBS)
	release := make(chan struct{})
	o.hook = func(_ context.Context, _, _ int64, call int) error {
		if call > 1 {
			return nil
		}
		<-release
		return errBoom
	}
	c := mustNew(t, Options{BlockSize: testBS})
	errs := make(chan error, readers)
	for range readers {
		go func() {
			_, err := readOnce(c, context.Background(), "k", o.size(), make([]byte, 10), 5, o.fetch)
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
// the reader still waiting, and its bytes are cached.
func TestCancelledReaderDoesNotCancelSharedFetch(t *testing.T) {
	tests := []struct {
		name  string
		off   int64
		len   int
		parts int
	}{
		{"single part", 10, 100, 1},
		{"several parts", 10, 3 * testBS, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newObject(4 * testBS)
			started := make(chan struct{}, 8)
			release := make(chan struct{})
			o.hook = func(ctx context.Context, _, _ int64, _ int) error {
				started <- struct{}{}
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return fmt.Errorf("fetch cancelled: %w", ctx.Err())
				}
			}
			c := mustNew(t, Options{BlockSize: testBS, PartSize: testBS})

			// The reader that will give up starts the fetches.
			ctxA, cancelA := context.WithCancel(context.Background())
			defer cancelA()
			doneA := make(chan error, 1)
			go func() {
				_, err := readOnce(c, ctxA, "k", o.size(), make([]byte, tt.len), tt.off, o.fetch)
				doneA <- err
			}()
			for range tt.parts {
				recv(t, started, "fetches")
			}

			doneB := make(chan error, 1)
			pB := make([]byte, tt.len)
			go func() {
				n, err := readOnce(c, context.Background(), "k", o.size(), pB, tt.off, o.fetch)
				if err == nil && n != tt.len {
					err = fmt.Errorf("read %d bytes, want %d", n, tt.len)
				}
				doneB <- err
			}()
			waitFor(t, "reader B to miss", func() bool { return c.Stats().Misses == 2 })

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
			if got := o.totalCalls(); got != tt.parts {
				t.Errorf("%d fetches, want %d", got, tt.parts)
			}
			readCheck(t, c, context.Background(), "k", o, tt.off, tt.len, tt.len, nil)
			if got := o.totalCalls(); got != tt.parts {
				t.Errorf("re-read fetched again: %d fetches, want %d", got, tt.parts)
			}
		})
	}
}

// Many readers, several objects, a budget far smaller than the data: every
// read returns the right bytes and the budget holds, in flight included.
func TestConcurrentMixedReads(t *testing.T) {
	objs := map[string]*object{
		"a": newObject(8*testBS + 1),
		"b": newObject(5 * testBS),
		"c": newObject(300),
	}
	keys := []string{"a", "b", "c"}
	const maxBytes = 3*testBS + 100
	c := mustNew(t, Options{BlockSize: testBS, MaxBytes: maxBytes})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				key := keys[r.IntN(len(keys))]
				o := objs[key]
				off := r.Int64N(o.size() + 10)
				// At most 3 blocks aligned: within the budget.
				p := make([]byte, r.IntN(2*testBS))
				n, err := readOnce(c, context.Background(), key, o.size(), p, off, o.fetch)
				wantN := int(max(0, min(int64(len(p)), o.size()-off)))
				if n != wantN || (err != nil && err != io.EOF) || !bytes.Equal(p[:n], o.data[min(off, o.size()):min(off, o.size())+int64(n)]) {
					errs <- fmt.Errorf("%s off=%d len=%d: n=%d err=%v, want n=%d", key, off, len(p), n, err, wantN)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Stats(); st.PeakBytes > maxBytes || st.CachedBytes > maxBytes || st.Readers != 0 {
		t.Errorf("PeakBytes %d, CachedBytes %d (budget %d), Readers %d", st.PeakBytes, st.CachedBytes, maxBytes, st.Readers)
	}
}

// readOnce is one read through a Reader that never prefetches: the
// random-read path, which these tests were written against.
func readOnce(c *Cache, ctx context.Context, key string, size int64, p []byte, off int64, fetch Fetch) (int, error) {
	r := c.open(Object{Key: key, Size: size}, fetch, true)
	defer r.Close()
	return r.ReadAt(ctx, p, off)
}
