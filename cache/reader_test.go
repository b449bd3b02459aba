package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// seqOpts: 1 KiB blocks, 8 KiB parts, windows from 4 KiB to 256 KiB, so a
// full window holds 32 parts as with the defaults; up to 64 in flight.
func seqOpts() Options {
	return Options{BlockSize: testBS, PartSize: 8 * testBS, InitialWindow: 4 * testBS, MaxWindow: 256 * testBS, MaxParallel: 64, MaxBytes: 4 << 20}
}

// readAll reads o through r in chunks of n from start to the end, checking
// every byte and the final io.EOF.
func readAll(t *testing.T, r *Reader, o *object, start int64, n int) {
	t.Helper()
	p := make([]byte, n)
	for off := start; ; off += int64(n) {
		got, err := r.ReadAt(context.Background(), p, off)
		want := int(max(0, min(int64(n), o.size()-off)))
		if got != want || !bytes.Equal(p[:got], o.data[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d right bytes", off, n, got, err, want)
		}
		if want < n {
			if err != io.EOF {
				t.Fatalf("ReadAt(%d, %d) at the end: err %v, want io.EOF", off, n, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
		}
	}
}

// A whole-object scan fetches every byte once, mostly by prefetch, in parts
// no larger than PartSize; however it is chunked or where it starts.
func TestSequentialScanFetchesEachByteOnce(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		start int64
		chunk int
	}{
		{"aligned chunks from 0", 1<<20 + 333, 0, 4 * testBS},
		{"odd chunks from 0", 1<<20 + 333, 0, 3000},
		{"chunks larger than a part", 1<<20 + 333, 0, 20 * testBS},
		{"from the middle", 1<<20 + 333, 300*testBS + 17, 4 * testBS},
		{"object smaller than the first window", 3000, 0, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newObject(tt.size)
			c := mustNew(t, seqOpts())
			r := c.Open(Object{Key: "k", Size: o.size()}, o.fetch)
			readAll(t, r, o, tt.start, tt.chunk)

			log := o.fetched()
			checkNoOverlap(t, log)
			read := o.size() - tt.start
			st := c.Stats()
			// The only bytes fetched but not read: the start's block.
			if st.FetchedBytes < read || st.FetchedBytes > read+testBS {
				t.Errorf("fetched %d bytes to read %d", st.FetchedBytes, read)
			}
			if st.PrefetchBytes*10 < st.FetchedBytes*9 {
				t.Errorf("prefetch fetched %d of %d bytes, want most", st.PrefetchBytes, st.FetchedBytes)
			}
			for _, s := range log {
				if s.end-s.start > 8*testBS {
					t.Errorf("fetch %v is larger than PartSize", s)
				}
			}
			r.Close()
			if st := c.Stats(); st.HeldBytes != 0 || st.Windows != 0 || st.WindowBytes != 0 || st.Readers != 0 {
				t.Errorf("after Close: %+v", st)
			}
		})
	}
}

// gatedObject blocks fetches that start at or past a limit the test moves,
// and counts the fetches that saw their context cancelled.
type gatedObject struct {
	*object
	mu        sync.Mutex
	limit     int64
	upTo      int64 // fetches starting at or past this are not gated
	release   chan struct{}
	cancelled atomic.Int64
	atGate    atomic.Int64 // fetches held at the gate now
}

func newGated(size int, limit, upTo int64) *gatedObject {
	g := &gatedObject{object: newObject(size), limit: limit, upTo: upTo, release: make(chan struct{})}
	g.hook = func(ctx context.Context, off, _ int64, _ int) error {
		g.mu.Lock()
		gated, ch := off >= g.limit && off < g.upTo, g.release
		g.mu.Unlock()
		if !gated {
			return nil
		}
		g.atGate.Add(1)
		defer g.atGate.Add(-1)
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			g.cancelled.Add(1)
			return ctx.Err()
		}
	}
	return g
}

// moveTo lets every gated fetch go and gates those at or past limit.
func (g *gatedObject) moveTo(limit int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.release)
	g.release, g.limit = make(chan struct{}), limit
}

// settle waits until every load in flight is a gated fetch, and returns
// how many there are and their bytes.
func settle(t *testing.T, c *Cache, g *gatedObject) (int, int64) {
	t.Helper()
	var n int
	var b int64
	waitFor(t, "loads in flight to be the gated fetches", func() bool {
		n, b = g.inHook()
		return b == c.Stats().InflightBytes
	})
	return n, b
}

func readRange(t *testing.T, r *Reader, o *object, from, to int64, chunk int) {
	t.Helper()
	p := make([]byte, chunk)
	for off := from; off < to; off += int64(chunk) {
		n, err := r.ReadAt(context.Background(), p, off)
		if err != nil && err != io.EOF || !bytes.Equal(p[:n], o.data[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d): %d, %v, or wrong bytes", off, n, err)
		}
	}
}

// The window doubles with every read and the parts ahead are fetched in
// parallel: with the reader stopped at a limit past which fetches block,
// the fetches in flight are the whole window's.
func TestWindowGrowsIntoParallelParts(t *testing.T) {
	const size = 2 << 20
	g := newGated(size, 16*testBS, size)
	c := mustNew(t, seqOpts())
	r := c.Open(Object{Key: "k", Size: size}, g.fetch)
	defer r.Close()

	steps := []struct {
		limit      int64
		wantWindow int64
		wantAhead  int // fetches in flight, all past the limit
	}{
		// 4 reads of 4 KiB: window 4, 8, 16, 32 KiB from the last read at
		// 12 KiB, so up to 44 KiB: parts of 4 KiB (InitialWindow) to 32
		// KiB, then of 8 KiB (PartSize) as the run gets long.
		{16 * testBS, 32 * testBS, 4 + 2},
		// 8 reads: capped at 256 KiB, up to 284 KiB: 8 KiB parts from 32
		// KiB; the first two were started, and let go, in the step before.
		{32 * testBS, 256 * testBS, 32 - 2},
		// At full size the window keeps ~32 parts in flight.
		{512 * testBS, 256 * testBS, 32},
	}
	pos := int64(0)
	for _, s := range steps {
		g.moveTo(s.limit)
		readRange(t, r, g.object, pos, s.limit, 4*testBS)
		pos = s.limit
		n, b := settle(t, c, g)
		if got := r.Window(); got != s.wantWindow {
			t.Errorf("read to %d: window %d, want %d", s.limit, got, s.wantWindow)
		}
		if n != s.wantAhead {
			t.Errorf("read to %d: %d parallel fetches in flight (%d bytes), want %d", s.limit, n, b, s.wantAhead)
		}
	}
	g.moveTo(size)
	readAll(t, r, g.object, pos, 4*testBS)
	log := g.fetched()
	checkNoOverlap(t, log)
	if st := c.Stats(); st.FetchedBytes != size {
		t.Errorf("fetched %d bytes of %d", st.FetchedBytes, size)
	}
	if first, largest := log[0], slices.MaxFunc(log, func(a, b span) int { return int((a.end - a.start) - (b.end - b.start)) }); first != (span{0, 4 * testBS}) || largest.end-largest.start != 8*testBS {
		t.Errorf("first part %v, largest %v; want 4 KiB then up to 8 KiB", first, largest)
	}
}

func TestSequentialDetection(t *testing.T) {
	const k = 4 * testBS // the read size and InitialWindow
	tests := []struct {
		name        string
		offs        []int64
		wantWindows []int64
	}{
		{"from zero", []int64{0, k, 2 * k, 3 * k}, []int64{k, 2 * k, 4 * k, 8 * k}},
		{"elsewhere it takes two reads in a row", []int64{100 * k, 101 * k, 102 * k, 103 * k}, []int64{0, 0, k, 2 * k}},
		{"out of order inside the window", []int64{0, 2 * k, k, 3 * k}, []int64{k, 2 * k, 2 * k, 4 * k}},
		{"small forward gaps", []int64{0, k + 100, 2*k + 3000}, []int64{k, 2 * k, 4 * k}},
		{"a seek resets", []int64{0, k, 2 * k, 150 * k, 151 * k, 152 * k, 153 * k}, []int64{k, 2 * k, 4 * k, 0, 0, k, 2 * k}},
		{"random", []int64{75 * k, 25 * k, 175 * k, 5 * k, 120 * k}, []int64{0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newObject(200 * k)
			c := mustNew(t, seqOpts())
			r := c.Open(Object{Key: "k", Size: o.size()}, o.fetch)
			defer r.Close()
			p := make([]byte, k)
			for i, off := range tt.offs {
				if _, err := r.ReadAt(context.Background(), p, off); err != nil || !bytes.Equal(p, o.data[off:off+k]) {
					t.Fatalf("ReadAt(%d): %v or wrong bytes", off, err)
				}
				if got := r.Window(); got != tt.wantWindows[i] {
					t.Errorf("after reading at %d: window %d, want %d", off, got, tt.wantWindows[i])
				}
			}
			if st := c.Stats(); slices.Max(tt.wantWindows) == 0 && st.PrefetchFetches != 0 {
				t.Errorf("random reads prefetched %d times", st.PrefetchFetches)
			}
		})
	}
}

// A reader never has more than MaxParallel parts in flight, and a part
// that completes frees its slot for the next at once, without waiting for
// the reader's next read.
func TestWindowRefillsAsPartsComplete(t *testing.T) {
	const size = 2 << 20
	g := newGated(size, 64*testBS, size)
	opts := seqOpts()
	opts.MaxParallel = 4
	c := mustNew(t, opts)
	r := c.Open(Object{Key: "k", Size: size}, g.fetch)
	defer r.Close()
	readRange(t, r, g.object, 0, 64*testBS, 4*testBS)
	if n, _ := settle(t, c, g); n != 4 {
		t.Fatalf("%d parts in flight, want MaxParallel 4", n)
	}
	// Let every part through: the window fills to its end, 256 KiB past
	// the last read (at 60 KiB), with no further read.
	g.moveTo(size)
	want := int64(60*testBS + 256*testBS)
	waitFor(t, "the window to fill", func() bool {
		got := g.fetched()
		return len(got) > 0 && slices.MaxFunc(got, func(a, b span) int { return int(a.end - b.end) }).end >= want
	})
	waitFor(t, "loads to finish", func() bool { return c.Stats().InflightBytes == 0 })
	if got := slices.MaxFunc(g.fetched(), func(a, b span) int { return int(a.end - b.end) }).end; got > want+8*testBS {
		t.Errorf("fetched up to %d, past the window's end %d", got, want)
	}
	checkNoOverlap(t, g.fetched())
	g.object.mu.Lock()
	defer g.object.mu.Unlock()
	if g.maxIn > 4 {
		t.Errorf("%d fetches in flight at once, want at most 4", g.maxIn)
	}
}

// Sequential readers share MaxParallel: a second window gets half, and the
// first drops to half as its parts complete, so two readers hold no more
// connections than one.
func TestReadersShareMaxParallel(t *testing.T) {
	const size = 2 << 20
	opts := seqOpts()
	opts.MaxParallel = 4
	c := mustNew(t, opts)
	g1, g2 := newGated(size, 64*testBS, size), newGated(size, 64*testBS, size)
	inFlight := func() (int, int) {
		t.Helper()
		var n1, n2 int
		waitFor(t, "loads in flight to be the gated fetches", func() bool {
			var b1, b2 int64
			n1, b1 = g1.inHook()
			n2, b2 = g2.inHook()
			return b1+b2 == c.Stats().InflightBytes
		})
		return n1, n2
	}

	r1 := c.Open(Object{Key: "one", Size: size}, g1.fetch)
	defer r1.Close()
	readRange(t, r1, g1.object, 0, 64*testBS, 4*testBS)
	if n1, _ := inFlight(); n1 != 4 {
		t.Fatalf("one reader: %d parts in flight, want MaxParallel 4", n1)
	}

	r2 := c.Open(Object{Key: "two", Size: size}, g2.fetch)
	defer r2.Close()
	readRange(t, r2, g2.object, 0, 64*testBS, 4*testBS)
	if _, n2 := inFlight(); n2 != 2 {
		t.Fatalf("second reader: %d parts in flight, want its share 2", n2)
	}

	// The first reader's parts complete and it refills up to the next gate,
	// well inside its window: it may only keep its share in flight now.
	g1.moveTo(96 * testBS)
	waitFor(t, "the first window to refill up to the gate", func() bool {
		n, _ := g1.inHook()
		reached := slices.ContainsFunc(g1.fetched(), func(s span) bool { return s.end == 96*testBS })
		return reached && int64(n) == g1.atGate.Load()
	})
	if n1, n2 := inFlight(); n1 != 2 || n2 != 2 {
		t.Errorf("parts in flight: %d and %d, want 2 each", n1, n2)
	}
}

// A seek stops the window: parts in flight that no one waits for are
// cancelled and their budget freed; the seek fetches one block; the next
// run starts from the initial window again.
func TestSeekCancelsTheWindow(t *testing.T) {
	const size = 4 << 20
	g := newGated(size, 64*testBS, 1<<20)
	c := mustNew(t, seqOpts())
	r := c.Open(Object{Key: "k", Size: size}, g.fetch)
	defer r.Close()
	readRange(t, r, g.object, 0, 64*testBS, 4*testBS)
	ahead, _ := settle(t, c, g)
	if ahead < 16 {
		t.Fatalf("%d parts in flight before the seek, want a full window", ahead)
	}
	fetchesBefore := c.Stats().Fetches

	const seekTo = 3 << 20
	readRange(t, r, g.object, seekTo, seekTo+100, 100)
	if got := r.Window(); got != 0 {
		t.Errorf("window after a seek: %d, want 0", got)
	}
	waitFor(t, "cancelled fetches to return", func() bool { return c.Stats().InflightBytes == 0 })
	st := c.Stats()
	if st.Cancelled != int64(ahead) || g.cancelled.Load() != int64(ahead) {
		t.Errorf("Cancelled %d, fetches that saw their ctx cancelled %d; want %d", st.Cancelled, g.cancelled.Load(), ahead)
	}
	if log := g.fetchLog(); st.Fetches != fetchesBefore+1 || log[len(log)-1] != (span{seekTo, seekTo + testBS}) {
		t.Errorf("the seek fetched %v (%d fetches), want one block at %d", log[len(log)-1], st.Fetches-fetchesBefore, seekTo)
	}

	readRange(t, r, g.object, seekTo+100, seekTo+100+2*4*testBS, 4*testBS)
	if got := r.Window(); got != 4*testBS {
		t.Errorf("window after two more sequential reads: %d, want the initial %d", got, 4*testBS)
	}
	// The cancelled parts are fetched again when wanted, once.
	g.moveTo(size)
	readRange(t, r, g.object, 64*testBS, 1<<20, 4*testBS)
	checkNoOverlap(t, g.fetched())
}

// Random readers fetch the aligned block(s) around each read in one GET,
// and nothing more, however many read at once.
func TestRandomReadsFetchOnlyTheirBlock(t *testing.T) {
	const bs = 4 * testBS
	tests := []struct {
		name    string
		threads int
		readLen int
	}{
		{"one thread, small reads", 1, 100},
		{"four threads, 4 KiB reads", 4, 4 * testBS},
		{"four threads, odd reads", 4, 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newObject(8 << 20)
			opts := seqOpts()
			opts.BlockSize = bs
			c := mustNew(t, opts)
			const reads = 300
			var wg sync.WaitGroup
			for th := range tt.threads {
				wg.Go(func() {
					r := c.Open(Object{Key: "k", Size: o.size()}, o.fetch)
					defer r.Close()
					rng := rand.New(rand.NewPCG(uint64(th), 7))
					p := make([]byte, tt.readLen)
					for range reads {
						off := 1 + rng.Int64N(o.size()-int64(tt.readLen)-1)
						if _, err := r.ReadAt(context.Background(), p, off); err != nil || !bytes.Equal(p, o.data[off:off+int64(len(p))]) {
							t.Errorf("ReadAt(%d): %v or wrong bytes", off, err)
							return
						}
					}
				})
			}
			wg.Wait()
			st := c.Stats()
			n := int64(tt.threads * reads)
			if st.PrefetchFetches != 0 || st.Fetches > n {
				t.Errorf("%d fetches (%d prefetch) for %d random reads", st.Fetches, st.PrefetchFetches, n)
			}
			if limit := n * (2*int64(tt.readLen) + bs); st.FetchedBytes > limit {
				t.Errorf("fetched %d bytes for %d reads of %d, limit %d", st.FetchedBytes, n, tt.readLen, limit)
			}
			for _, s := range o.fetchLog() {
				if s.start%bs != 0 || s.end-s.start > 2*bs {
					t.Fatalf("fetch %v: not the aligned block(s) of one read", s)
				}
			}
		})
	}
}

// Small random blocks, then prefetch parts around them: a read is served
// from whichever extents cover it, every byte is fetched once, and reads
// across every kind of extent boundary return the right bytes.
func TestMixedExtentSizes(t *testing.T) {
	const size = 200*testBS + 777
	o := newObject(size)
	c := mustNew(t, seqOpts())
	ctx := context.Background()
	// Random blocks and spans: aligned, crossing, inside the last block.
	for _, rd := range []struct{ off, n int64 }{
		{5 * testBS, 10}, {9*testBS - 3, 6}, {40*testBS + 1, testBS}, {41 * testBS, 2 * testBS},
		{63*testBS + 500, 1}, {100 * testBS, 8 * testBS}, {size - 5, 5}, {130*testBS - 1, 2},
	} {
		readCheck(t, c, ctx, "k", o, rd.off, int(rd.n), int(rd.n), nil)
	}
	randomLog := o.fetchLog()

	r := c.Open(Object{Key: "k", Size: size}, o.fetch)
	readAll(t, r, o, 0, 3000)
	r.Close()
	log := o.fetched()
	checkNoOverlap(t, log)
	if st := c.Stats(); st.FetchedBytes != size {
		t.Fatalf("fetched %d bytes, want each of %d once", st.FetchedBytes, size)
	}

	// Every extent edge, and a byte either side, through both read forms.
	fetches := c.Stats().Fetches
	r = c.Open(Object{Key: "k", Size: size}, o.fetch)
	defer r.Close()
	for _, s := range log {
		for _, edge := range []int64{s.start, s.end} {
			for _, rd := range []struct{ off, n int64 }{{edge - 1, 2}, {edge - 700, 1400}, {edge, 1}, {edge - 1, 1}} {
				if rd.off < 0 || rd.off+rd.n > size {
					continue
				}
				p := make([]byte, rd.n)
				n, err := r.ReadAt(ctx, p, rd.off)
				checkRead(t, o, p, rd.off, n, err, int(rd.n), nil)
				l, err := r.Lend(ctx, rd.off, int(rd.n))
				if err != nil || !bytes.Equal(bytes.Join(l.Slices, nil), o.data[rd.off:rd.off+rd.n]) {
					t.Fatalf("Lend(%d, %d): %v or wrong bytes", rd.off, rd.n, err)
				}
				l.Release()
			}
		}
	}
	if st := c.Stats(); st.Fetches != fetches {
		t.Errorf("re-reading cached bytes fetched %d times", st.Fetches-fetches)
	}
	if len(randomLog) == 0 || len(log) <= len(randomLog) {
		t.Fatalf("test setup: %d random fetches, %d in all", len(randomLog), len(log))
	}
}

// Lend hands out the cached memory itself: no copy, and capacity cut so
// that an append cannot write into the cache.
func TestLendAliasesTheCache(t *testing.T) {
	o := newObject(10*testBS + 10)
	c := mustNew(t, Options{BlockSize: testBS})
	r := c.Open(Object{Key: "k", Size: o.size()}, o.fetch)
	defer r.Close()
	ctx := context.Background()
	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
		slices  int
	}{
		{"inside one block", 100, 200, 200, nil, 1},
		{"across two fetched spans", testBS - 10, 20, 20, nil, 2},                          // [0,1K) is cached by the first case
		{"across chunks of one span", 4*testBS - 10, 2*testBS + 20, 2*testBS + 20, nil, 4}, // one fetch of [3K,7K)
		{"past the end", 10*testBS + 5, 100, 5, io.EOF, 1},
		{"at the end", 10*testBS + 10, 100, 0, io.EOF, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			la, err := r.Lend(ctx, tt.off, tt.n)
			defer la.Release()
			a := la.Slices
			if err != tt.wantErr || len(a) != tt.slices {
				t.Fatalf("Lend = %d slices, %v; want %d, %v", len(a), err, tt.slices, tt.wantErr)
			}
			if got := bytes.Join(a, nil); len(got) != tt.wantN || la.Len() != tt.wantN || !bytes.Equal(got, o.data[tt.off:tt.off+int64(tt.wantN)]) {
				t.Fatalf("Lend returned %d wrong bytes", len(got))
			}
			lb, _ := r.Lend(ctx, tt.off, tt.n)
			defer lb.Release()
			b := lb.Slices
			for i := range a {
				if &a[i][0] != &b[i][0] || cap(a[i]) != len(a[i]) {
					t.Fatalf("slice %d: not the cached memory with its capacity cut", i)
				}
			}
		})
	}
}

// However many readers on however many objects, cached plus in-flight bytes
// never pass the budget, and everything comes back when they are done.
func TestBudgetHoldsUnderManyReaders(t *testing.T) {
	for _, maxBytes := range []int64{64 * testBS, 256 * testBS} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			opts := seqOpts()
			opts.MaxBytes = maxBytes
			c := mustNew(t, opts)
			objs := make([]*object, 8)
			for i := range objs {
				objs[i] = newObject(256*testBS + i*100)
			}
			var wg sync.WaitGroup
			for i := range 16 {
				o := objs[i%len(objs)]
				key := fmt.Sprint(i % len(objs))
				wg.Go(func() {
					r := c.Open(Object{Key: key, Size: o.size()}, o.fetch)
					defer r.Close()
					if i < 8 {
						readAll(t, r, o, 0, 4*testBS)
						return
					}
					rng := rand.New(rand.NewPCG(uint64(i), 3))
					p := make([]byte, 3000)
					for range 200 {
						off := rng.Int64N(o.size() - 3000)
						if _, err := r.ReadAt(context.Background(), p, off); err != nil || !bytes.Equal(p, o.data[off:off+3000]) {
							t.Errorf("ReadAt(%d): %v or wrong bytes", off, err)
							return
						}
					}
				})
			}
			wg.Wait()
			waitFor(t, "loads to finish", func() bool { return c.Stats().InflightBytes == 0 })
			st := c.Stats()
			if st.PeakBytes > maxBytes || st.CachedBytes > maxBytes {
				t.Errorf("PeakBytes %d, CachedBytes %d; budget %d", st.PeakBytes, st.CachedBytes, maxBytes)
			}
			if st.HeldBytes != 0 || st.Windows != 0 || st.WindowBytes != 0 || st.Readers != 0 || st.WaitingReads != 0 {
				t.Errorf("after every reader closed: %+v", st)
			}
		})
	}
}

// A tight budget caps the window instead of being exceeded, and the scan
// still fetches each byte once.
func TestTightBudgetShrinksTheWindow(t *testing.T) {
	const maxBytes = 32 * testBS
	opts := seqOpts()
	opts.MaxBytes = maxBytes
	c := mustNew(t, opts)
	o := newObject(1 << 20)
	r := c.Open(Object{Key: "k", Size: o.size()}, o.fetch)
	defer r.Close()
	readAll(t, r, o, 0, 4*testBS)
	st := c.Stats()
	if w := r.Window(); w > maxBytes/2 {
		t.Errorf("window %d, want at most half the budget", w)
	}
	if st.PeakBytes > maxBytes || st.FetchedBytes != o.size() {
		t.Errorf("PeakBytes %d (budget %d), FetchedBytes %d (size %d)", st.PeakBytes, maxBytes, st.FetchedBytes, o.size())
	}
	checkNoOverlap(t, o.fetched())
}

// Close cancels the prefetches only its window wanted, unpins what it held,
// and fails later reads; parts another reader's window wants go on.
func TestCloseReleasesTheWindow(t *testing.T) {
	const size = 2 << 20
	g := newGated(size, 64*testBS, size)
	c := mustNew(t, seqOpts())
	r1 := c.Open(Object{Key: "k", Size: size}, g.fetch)
	r2 := c.Open(Object{Key: "k", Size: size}, g.fetch)
	readRange(t, r1, g.object, 0, 64*testBS, 4*testBS)
	readRange(t, r2, g.object, 0, 64*testBS, 4*testBS)
	ahead, _ := settle(t, c, g)
	if st := c.Stats(); ahead < 16 || st.HeldBytes == 0 || st.Windows != 2 {
		t.Fatalf("before Close: %d parts ahead, %+v", ahead, st)
	}

	r1.Close()
	if st := c.Stats(); st.Cancelled != 0 || st.Windows != 1 {
		t.Errorf("closing one of two readers of the same parts: Cancelled %d, Windows %d; want 0, 1", st.Cancelled, st.Windows)
	}
	r2.Close()
	waitFor(t, "cancelled fetches to return", func() bool { return c.Stats().InflightBytes == 0 })
	st := c.Stats()
	if st.Cancelled != int64(ahead) || st.HeldBytes != 0 || st.Windows != 0 || st.WindowBytes != 0 || st.Readers != 0 {
		t.Errorf("after Close: Cancelled %d (want %d), %+v", st.Cancelled, ahead, st)
	}
	if _, err := r1.ReadAt(context.Background(), make([]byte, 1), 0); !errors.Is(err, errClosed) {
		t.Errorf("ReadAt after Close: %v, want an error", err)
	}
	// What was fetched stays cached for the next open, which only
	// prefetches past it.
	r3 := c.Open(Object{Key: "k", Size: size}, g.fetch)
	defer r3.Close()
	before := len(g.fetchLog())
	readRange(t, r3, g.object, 0, 64*testBS, 4*testBS)
	for _, s := range g.fetchLog()[before:] {
		if s.start < 64*testBS {
			t.Errorf("re-open fetched %v again", s)
		}
	}
}

// A read served from memory allocates nothing in either mode, and a loan
// only itself: they run once per read(2) at GB/s.
func TestCachedReadDoesNotAllocate(t *testing.T) {
	o := newObject(256 * testBS)
	c := mustNew(t, seqOpts())
	ctx := context.Background()
	r := c.Open(Object{Key: "k", Size: o.size()}, o.fetch)
	defer r.Close()
	readAll(t, r, o, 0, 4*testBS) // all cached; a window is open
	p := make([]byte, 2*testBS)
	for _, mode := range []string{"sequential", "random"} {
		var off int64
		step := int64(len(p))
		if mode == "random" {
			step = 37 * testBS
		}
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := r.ReadAt(ctx, p, off); err != nil {
				t.Fatal(err)
			}
			off = (off + step) % (o.size() - step)
		})
		if allocs != 0 {
			t.Errorf("%s cached read allocates %.1f times, want 0", mode, allocs)
		}
		allocs = testing.AllocsPerRun(100, func() {
			l, err := r.Lend(ctx, off, len(p))
			if err != nil {
				t.Fatal(err)
			}
			l.Release()
			off = (off + step) % (o.size() - step)
		})
		if allocs > 3 {
			t.Errorf("%s loan allocates %.1f times, want its Loan, slices and loads only", mode, allocs)
		}
	}
	if st := c.Stats(); st.FetchedBytes != o.size() {
		t.Errorf("fetched %d bytes, want %d once", st.FetchedBytes, o.size())
	}
}

func BenchmarkReadHit(b *testing.B) {
	const (
		size = 64 << 20
		read = 128 << 10
	)
	o := newObject(size)
	c := mustNew(b, Options{MaxBytes: 2 * size})
	ctx := context.Background()
	warm := c.Open(Object{Key: "k", Size: size}, o.fetch)
	if _, err := warm.ReadAt(ctx, make([]byte, size), 0); err != nil {
		b.Fatal(err)
	}
	warm.Close()
	// Offsets step by an odd amount so some reads cross extent boundaries.
	const step = read + 4096 + 1
	b.Run("ReadAt", func(b *testing.B) {
		r := c.Open(Object{Key: "k", Size: size}, o.fetch)
		defer r.Close()
		p := make([]byte, read)
		b.SetBytes(read)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			if _, err := r.ReadAt(ctx, p, off); err != nil {
				b.Fatal(err)
			}
			off = (off + step) % (size - read)
		}
	})
	b.Run("Lend", func(b *testing.B) {
		r := c.Open(Object{Key: "k", Size: size}, o.fetch)
		defer r.Close()
		b.SetBytes(read)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			l, err := r.Lend(ctx, off, read)
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
			off = (off + step) % (size - read)
		}
	})
	b.Run("ReadAt/parallel", func(b *testing.B) {
		b.SetBytes(read)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := c.Open(Object{Key: "k", Size: size}, o.fetch)
			defer r.Close()
			p := make([]byte, read)
			var off int64
			for pb.Next() {
				if _, err := r.ReadAt(ctx, p, off); err != nil {
					b.Error(err)
					return
				}
				off = (off + step) % (size - read)
			}
		})
	})
	if st := c.Stats(); st.FetchedBytes != size {
		b.Fatalf("benchmark fetched during the timed loop: %d bytes", st.FetchedBytes)
	}
}

// BenchmarkSequentialScan reads a 256 MiB object cold through one Reader in
// 128 KiB reads (the FUSE size) with the default options, from a fetch
// that copies from memory: the cache's own cost per byte.
func BenchmarkSequentialScan(b *testing.B) {
	const (
		size = 256 << 20
		read = 128 << 10
	)
	src := newObject(size).data
	fetch := func(_ context.Context, off int64, dst [][]byte) error {
		for _, b := range dst {
			off += int64(copy(b, src[off:]))
		}
		return nil
	}
	for _, form := range []string{"ReadAt", "Lend"} {
		b.Run(form, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			var fetches int64
			p := make([]byte, read)
			for b.Loop() {
				c := mustNew(b, Options{MaxBytes: 512 << 20})
				r := c.Open(Object{Key: "k", Size: size}, fetch)
				for off := int64(0); off < size; off += read {
					var err error
					if form == "ReadAt" {
						_, err = r.ReadAt(context.Background(), p, off)
					} else {
						var l *Loan
						l, err = r.Lend(context.Background(), off, read)
						l.Release()
					}
					if err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
				r.Close()
				st := c.Stats()
				if st.FetchedBytes != size {
					b.Fatalf("fetched %d bytes of %d", st.FetchedBytes, size)
				}
				fetches += st.Fetches
			}
			b.ReportMetric(float64(fetches)/float64(b.N), "fetches/op")
		})
	}
}
