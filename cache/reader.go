package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync/atomic"
)

// Reader reads one object for one open file handle and watches its access
// pattern. A read that starts near where the furthest one ended (within
// InitialWindow ahead; behind, within that plus the window, since the
// kernel's readahead arrives out of order) continues a run. After two such
// reads in a row, or from a first read at offset 0, the Reader keeps a
// window of prefetched parts ahead of itself, doubling it on every read that
// moves forward, up to its limit. Any other read is a seek: the window
// stops, parts no one else wants are cancelled, and the next run starts
// small again.
//
// A Reader is safe for concurrent use, as FUSE issues reads of one handle
// concurrently.
type Reader struct {
	c      *Cache
	obj    *objState
	fetch  Fetch
	random bool // never prefetch (the random-read path, in tests)

	// Guarded by c.mu.
	closed   bool
	lastEnd  int64 // furthest end of the current run; -1 before the first read
	streak   int   // reads in a row that continued the run
	window   int64 // bytes kept loaded ahead of the read; 0: no window
	runStart int64 // parts grow with the distance from here
	front    int64 // start of the furthest read: the window runs from here
	// ctx is the furthest read's, lending its values to the parts started
	// when earlier ones complete, between reads. Deriving those from the
	// completed part's context instead would chain contexts without end.
	ctx      context.Context
	filledTo int64 // the window has extents (pinned) up to here
	pinned   []*extent
	lostSeen uint64
	inflight int // prefetch GETs this reader started that have not returned
}

var errClosed = errors.New("cache: read after Close")

// ReadAt reads like io.ReaderAt: len(p) bytes, or fewer and io.EOF at the end
// of the object. On any other error it returns 0 and p's contents are
// unspecified. ctx bounds this call's wait only: loads are shared, so a
// cancelled read leaves them running for the others and for its retry.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, eof, err := r.clip(off, int64(len(p)))
	if n == 0 || err != nil {
		return 0, err
	}
	// Room for the extents of a typical read, on the stack: a cached read
	// allocates nothing.
	var buf [8]*load
	lds, err := r.acquire(ctx, off, off+n, buf[:0])
	if err != nil {
		return 0, err
	}
	defer r.c.releaseAll(lds)
	p = p[:n]
	for _, ld := range lds {
		if ld.off <= off {
			ld.data.copyTo(p[:min(n, ld.off+ld.n-off)], off-ld.off)
		} else {
			ld.data.copyTo(p[ld.off-off:min(n, ld.off+ld.n-off)], 0)
		}
	}
	return int(n), eof
}

// Loan is cached memory lent to a caller: the bytes of one read, as
// slices, for a writev to the kernel without a copy. The slices must not
// be written to, and must not be used after Release, which lets the cache
// reuse the memory. Release it exactly once.
type Loan struct {
	Slices   [][]byte
	c        *Cache
	lds      []*load
	released atomic.Bool
}

// Len is the number of bytes lent.
func (l *Loan) Len() int {
	n := 0
	for _, s := range l.Slices {
		n += len(s)
	}
	return n
}

// Release hands the memory back. Later calls do nothing.
func (l *Loan) Release() {
	if l.c != nil && !l.released.Swap(true) {
		l.c.releaseAll(l.lds)
	}
}

// Lend is ReadAt without the copy: the n bytes at off (fewer and io.EOF at
// the end) as slices of cached memory, held for the caller until it
// releases the Loan, whatever the cache evicts meanwhile.
func (r *Reader) Lend(ctx context.Context, off int64, n int) (*Loan, error) {
	m, eof, err := r.clip(off, int64(n))
	if m == 0 || err != nil {
		return &Loan{}, err
	}
	lds, err := r.acquire(ctx, off, off+m, nil)
	if err != nil {
		return &Loan{}, err
	}
	l := &Loan{c: r.c, lds: lds, Slices: make([][]byte, 0, m/r.c.opts.BlockSize+2)}
	end := off + m
	for _, ld := range lds {
		l.Slices = ld.data.appendSlices(l.Slices, max(off, ld.off)-ld.off, min(end, ld.off+ld.n)-ld.off)
	}
	return l, eof
}

// Window returns the bytes this reader keeps prefetched ahead of it; 0 when
// it is not reading sequentially.
func (r *Reader) Window() int64 {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return r.window
}

// Close stops the window: prefetches no other reader or read waits for are
// cancelled, and the bytes it pinned become ordinary cached bytes, evictable.
// Reads after Close fail.
func (r *Reader) Close() {
	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.stopLocked()
	r.obj.refs--
	c.readers--
	c.forgetObjectLocked(r.obj)
}

// clip bounds a read to the object: n bytes are to be read, and eof is
// what to return with them. err is set, and n is 0, when nothing is to be
// read: io.EOF at or past the end, or a bad request.
func (r *Reader) clip(off, n int64) (m int64, eof, err error) {
	size := r.obj.id.size
	switch {
	case off < 0:
		return 0, nil, fmt.Errorf("cache: read %q at negative offset %d", r.obj.id.key, off)
	case size < 0:
		return 0, nil, fmt.Errorf("cache: object %q has negative size %d", r.obj.id.key, size)
	case off >= size:
		return 0, io.EOF, io.EOF
	case n > size-off:
		return size - off, io.EOF, nil
	}
	return n, nil, nil
}

// acquire returns the loads covering [off, end), in order, all complete,
// each with a reference the caller must release (releaseAll).
func (r *Reader) acquire(ctx context.Context, off, end int64, buf []*load) ([]*load, error) {
	c := r.c
	c.mu.Lock()
	if r.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	r.observeLocked(ctx, off, end)
	waiting := false
	var lds []*load
	var wait bool
	for {
		var ok bool
		if lds, wait, ok = r.planLocked(ctx, off, end, buf); ok {
			break
		}
		if !waiting {
			waiting = true
			c.demandWaiting++
		}
		room := c.roomLocked()
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			c.mu.Lock()
			c.demandWaiting--
			c.mu.Unlock()
			return nil, ctx.Err()
		case <-room:
		}
		c.mu.Lock()
	}
	if waiting {
		c.demandWaiting--
	}
	if wait {
		c.st.misses.Add(1)
	} else {
		c.st.hits.Add(1)
	}
	c.mu.Unlock()
	if !wait {
		return lds, nil
	}
	for _, ld := range lds {
		select {
		case <-ld.done:
		case <-ctx.Done():
			c.releaseAll(lds)
			return nil, ctx.Err()
		}
		if ld.err != nil {
			c.releaseAll(lds)
			return nil, ld.err
		}
	}
	return lds, nil
}

// planLocked makes sure extents cover [off, end) and collects their loads.
// Each gap the read touches is fetched whole between its neighbours within
// the read's aligned blocks: one GET per contiguous missing span. ok is
// false when there is no room yet for those bytes.
func (r *Reader) planLocked(ctx context.Context, off, end int64, buf []*load) (lds []*load, wait, ok bool) {
	c, o := r.c, r.obj
	bs := c.opts.BlockSize
	a, b := alignDown(off, bs), min(alignUp(end, bs), o.id.size)
	// Make what the read already has the last thing room is made from.
	for i := o.search(off); i < len(o.ext) && o.ext[i].off < end; i++ {
		c.touchLocked(o.ext[i])
	}
	for {
		need := r.gapBytesLocked(a, b, off, end)
		if need == 0 {
			break
		}
		if !c.reserveLocked(need, true) {
			return buf, false, false
		}
		if r.gapBytesLocked(a, b, off, end) != need {
			// Making room evicted part of this very read: plan again.
			c.reserved -= need
			continue
		}
		for x := a; ; {
			gs, ge := o.gap(x, b)
			if gs >= b {
				break
			}
			if gs < end && ge > off {
				r.fillGapLocked(ctx, gs, ge)
			}
			x = ge
		}
		break
	}
	for i := o.search(off); i < len(o.ext) && o.ext[i].off < end; i++ {
		e := o.ext[i]
		if e.state == pending {
			e.demand, wait = true, true
		}
		e.ld.refs++
		buf = append(buf, e.ld)
	}
	return buf, wait, true
}

func (r *Reader) gapBytesLocked(a, b, off, end int64) int64 {
	var need int64
	for x := a; ; {
		gs, ge := r.obj.gap(x, b)
		if gs >= b {
			return need
		}
		if gs < end && ge > off {
			// Each piece holds whole chunks, so the charge is the pieces'.
			r.gapPiecesLocked(gs, ge, func(x, end int64, _ *diskEntry) { need += r.c.chargeOf(end - x) })
		}
		x = ge
	}
}

// fillGapLocked starts demand loads for the free span [gs, ge), whose bytes
// are reserved.
func (r *Reader) fillGapLocked(ctx context.Context, gs, ge int64) {
	c, o := r.c, r.obj
	r.gapPiecesLocked(gs, ge, func(x, end int64, d *diskEntry) {
		c.newExtentLocked(ctx, o, o.search(x), x, end, nil, d, r.fetch)
	})
}

// gapPiecesLocked cuts the free span [gs, ge) into the loads a demand read
// makes of it: one GET unless the span is longer than PartSize, so a large
// read is fetched in parallel; split where the disk tier's ranges begin and
// end (d is the entry to read a piece from, nil to fetch it).
func (r *Reader) gapPiecesLocked(gs, ge int64, each func(x, end int64, d *diskEntry)) {
	for x := gs; x < ge; {
		d, end := r.c.diskSplitLocked(r.obj, x, min(x+r.c.opts.PartSize, ge))
		each(x, end, d)
		x = end
	}
}

// gap returns the first span in [x, limit) no extent covers, or limit, limit.
func (o *objState) gap(x, limit int64) (int64, int64) {
	i := o.search(x)
	for i < len(o.ext) && o.ext[i].off <= x {
		x = o.ext[i].end
		i++
	}
	if x >= limit {
		return limit, limit
	}
	ge := limit
	if i < len(o.ext) {
		ge = min(ge, o.ext[i].off)
	}
	return x, ge
}

// observeLocked classifies a read and moves the window. With a window, a
// read may also land anywhere behind the furthest read back to the window's
// size: the kernel sends a batch of readahead at once and it arrives in any
// order. Only reads that move the front forward grow the window.
func (r *Reader) observeLocked(ctx context.Context, off, end int64) {
	if r.random {
		return
	}
	c := r.c
	slack := c.opts.InitialWindow
	first := r.lastEnd < 0
	near := (first && off == 0) ||
		(!first && off >= r.lastEnd-slack-r.window && off <= r.lastEnd+slack) ||
		(r.window > 0 && off >= r.lastEnd && off < r.filledTo)
	if !near {
		r.stopLocked()
		r.streak = 0
		r.lastEnd = end
		return
	}
	r.streak++
	forward := end > r.lastEnd
	r.lastEnd = max(r.lastEnd, end)
	switch {
	case r.window > 0:
		if !forward {
			return
		}
		r.front, r.ctx = off, ctx
		r.setWindowLocked(min(2*r.window, c.windowLimitLocked()))
	case first || r.streak >= 2:
		// Two reads in a row: one could be chance for a random reader.
		c.windows++
		r.runStart = alignDown(off, c.opts.BlockSize)
		r.filledTo = r.runStart
		r.front, r.ctx = off, ctx
		r.lostSeen = c.lost
		r.setWindowLocked(min(c.opts.InitialWindow, c.windowLimitLocked()))
	default:
		return
	}
	r.consumeLocked(off)
	r.fillLocked(ctx, off)
}

// windowLimitLocked shares half the budget among the windows, so that a new
// sequential reader finds room and random readers keep some cache.
func (c *Cache) windowLimitLocked() int64 {
	lim := min(c.opts.MaxWindow, c.opts.MaxBytes/2/int64(max(c.windows, 1)))
	return max(lim, c.opts.BlockSize)
}

// parallelShareLocked is how many prefetch GETs one window may have in
// flight: MaxParallel split among the windows. A window shrinks to its
// share as its parts complete, and grows back when others close.
func (c *Cache) parallelShareLocked() int {
	return max(c.opts.MaxParallel/max(c.windows, 1), minParallelShare)
}

func (r *Reader) setWindowLocked(w int64) {
	r.c.windowBytes += w - r.window
	r.window = w
}

// stopLocked ends the run's window.
func (r *Reader) stopLocked() {
	if r.window == 0 {
		return
	}
	r.c.windows--
	r.setWindowLocked(0)
	r.ctx = nil
	for _, e := range r.pinned {
		r.unpinLocked(e, true)
	}
	clear(r.pinned)
	r.pinned = r.pinned[:0]
}

// consumeLocked unpins the extents the reader has passed. It lags by the
// slack so that reads arriving out of order still find theirs pinned.
func (r *Reader) consumeLocked(off int64) {
	lim := off - r.c.opts.InitialWindow
	k := 0
	for k < len(r.pinned) && r.pinned[k].end <= lim {
		r.unpinLocked(r.pinned[k], true)
		k++
	}
	if k > 0 {
		n := copy(r.pinned, r.pinned[k:])
		clear(r.pinned[n:])
		r.pinned = r.pinned[:n]
	}
}

func (r *Reader) pinLocked(e *extent) {
	e.pins++
	r.pinned = append(r.pinned, e)
	if e.pins == 1 && e.state == resident {
		r.c.relistLocked(e)
	}
}

// unpinLocked lets go of e; a prefetch no one wants anymore is cancelled if
// cancelIdle.
func (r *Reader) unpinLocked(e *extent, cancelIdle bool) {
	e.pins--
	if e.pins > 0 {
		return
	}
	switch e.state {
	case resident:
		r.c.relistLocked(e)
	case pending:
		if cancelIdle && e.prefetch && !e.demand {
			r.c.cancelLocked(e)
		}
	}
}

// fillLocked extends the window's extents to off+window, starting the
// missing parts while the budget has room for them; what does not fit is
// tried again at the next read.
func (r *Reader) fillLocked(ctx context.Context, off int64) {
	c, o := r.c, r.obj
	if c.lost != r.lostSeen {
		// Some pinned extent was evicted under pressure: pin afresh.
		r.lostSeen = c.lost
		for _, e := range r.pinned {
			r.unpinLocked(e, false)
		}
		clear(r.pinned)
		r.pinned = r.pinned[:0]
		r.filledTo = 0
	}
	size := o.id.size
	target := min(size, off+r.window)
	maxUnit := min(max(prevPow2(c.windowLimitLocked()/windowParts), c.opts.BlockSize), c.opts.PartSize)
	minUnit := min(c.opts.InitialWindow, maxUnit)
	x := max(r.filledTo, alignDown(off, c.opts.BlockSize))
	for x < target {
		i := o.search(x)
		if i < len(o.ext) && o.ext[i].off <= x {
			e := o.ext[i]
			r.pinLocked(e)
			x = e.end
			continue
		}
		ge := size
		if i < len(o.ext) {
			ge = o.ext[i].off
		}
		u := min(max(prevPow2((x-r.runStart)/rampDiv), minUnit), maxUnit)
		d, end := c.diskSplitLocked(o, x, min(alignUp(x+1, u), ge))
		if r.inflight >= c.parallelShareLocked() && d == nil || !c.reserveLocked(c.chargeOf(end-x), false) {
			break
		}
		// Room was made by evicting only: [x, end) is still free.
		r.pinLocked(c.newExtentLocked(ctx, o, o.search(x), x, end, r, d, r.fetch))
		x = end
	}
	r.filledTo = x
}

func alignDown(x, a int64) int64 { return x - x%a }

func alignUp(x, a int64) int64 { return (x + a - 1) / a * a }

// prevPow2 returns the largest power of two <= x, or 0.
func prevPow2(x int64) int64 {
	if x <= 0 {
		return 0
	}
	return 1 << (63 - bits.LeadingZeros64(uint64(x)))
}
