// Package cache serves byte ranges of objects that do not change (Synapse
// file handles) to the FUSE read path, and decides when and how much to fetch
// from S3.
//
// The cache never learns where bytes come from: each open file brings a
// Fetch. S3 pays ~20 ms per GET and limits each connection's bandwidth, so:
//   - a Reader that reads sequentially grows a window of parallel part GETs
//     ahead of itself: parallelism is what turns per-connection bandwidth
//     into throughput;
//   - a Reader that seeks fetches one small aligned block per read: a random
//     reader pays latency, not bandwidth, and anything wider is waste.
//
// Bytes live in extents: spans of one object of any length, each loaded by
// one GET (or one disk read), never overlapping. A read is served from
// whatever extents cover it and only the gaps are fetched, so small random
// blocks and big prefetch parts of one object coexist, and a byte is never
// fetched twice while it is held. A pending extent is its own single-flight:
// every reader of that span waits on the one load.
//
// One budget, Options.MaxBytes, bounds the bytes held plus the bytes being
// fetched, so memory does not grow with the number of open files. Prefetch
// only uses room that cold bytes can give up; a read that needs bytes always
// gets room, waiting for loads in flight if it must.
//
// Extent memory comes from an arena of reusable chunks (see arena.go), not
// the heap. It is never written after it is published, so Lend can hand it
// to the kernel without a copy; a chunk is reused only once no load refers
// to it, lent ones included.
//
// With Options.Dir, fetched bytes are also written behind to a disk tier
// that outlives the process (see disk.go).
package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Defaults, for S3 at ~20 ms to first byte and ~50 MB/s per connection.
// A 64 KiB block adds ~1 ms of transfer to a random read's 20 ms. 8 MiB
// parts amortise the GET's latency. 32 GETs in flight, across all readers,
// carry ~1.4 GB/s: on the 2-core machine we measure on, one reader got
// 730-775 MB/s through 32 against 470-690 through 24, and 48 gained
// nothing more, the CPUs being the limit. A 256 MiB window holds them.
const (
	DefaultMaxBytes      = 256 << 20
	DefaultBlockSize     = 64 << 10
	DefaultPartSize      = 8 << 20
	DefaultInitialWindow = 1 << 20
	DefaultMaxWindow     = 256 << 20
	DefaultMaxParallel   = 32
	DefaultDiskBytes     = 10 << 30
)

// windowParts is how many parts a full window holds at least: parts shrink
// below PartSize when the window is capped small, because throughput is
// window/(latency + part/bandwidth), so smaller parts get more from the
// same memory.
const windowParts = 32

// minParallelShare keeps every sequential reader streaming when many share
// MaxParallel: two GETs in flight hide one GET's latency behind the other.
const minParallelShare = 2

// rampDiv sets how parts grow along a sequential run: a part starting d
// bytes into the run is about d/rampDiv long. Small first parts arrive
// sooner, so the reader is not stalled behind a cold 8 MiB GET; past that
// start every small part costs a first-byte wait and a request's CPU, so
// parts reach 8 MiB 32 MiB into the run.
const rampDiv = 4

// Fetch fills dst with the bytes of one object from off on: dst's slices
// are consecutive spans of the object, to be filled in order, with one read
// where the source allows. It returns an error unless it filled them all;
// their contents are then ignored. It must not keep dst: the memory is the
// cache's. Its ctx is cancelled when a prefetch is no longer wanted.
type Fetch func(ctx context.Context, off int64, dst [][]byte) error

// Object names bytes that do not change: the same Key always means the same
// bytes, and nothing held in memory is invalidated. What a later process
// finds on disk is kept to one version of them by Cache.SetVersion.
type Object struct {
	Key  string // file handle id
	Size int64
	MD5  string // hex; may be empty; checks the disk tier's copy
}

// Options tunes a Cache. Zero values take the defaults.
type Options struct {
	// MaxBytes bounds cached bytes plus bytes being fetched. Only a single
	// read larger than MaxBytes goes past it, and its bytes are not kept.
	MaxBytes int64
	// BlockSize is the alignment and size of what a random read fetches.
	BlockSize int64
	// PartSize is the largest prefetch GET.
	PartSize int64
	// InitialWindow is a new sequential run's first window; it is also how
	// far past the furthest read's end a read may land and still count as
	// sequential (behind it: that plus the window, as the kernel sends its
	// readahead out of order).
	InitialWindow int64
	// MaxWindow bounds one reader's window. It is also capped at half of
	// MaxBytes shared among the readers that have a window.
	MaxWindow int64
	// MaxParallel bounds the prefetch GETs in flight across all readers:
	// enough connections for the throughput the FUSE crossing can take, no
	// more. Each of n sequential readers gets an equal share (at least
	// minParallelShare), so four readers do not open four times the
	// connections one reader needs and crowd the machine.
	MaxParallel int

	// Dir turns on the disk tier; DiskBytes bounds it (default 10 GiB).
	Dir       string
	DiskBytes int64
}

// Stats are cumulative counters since New, except those marked "now".
type Stats struct {
	Hits   int64 // reads served from memory without waiting
	Misses int64 // reads that waited for a fetch or a disk read

	Fetches         int64 // calls to a Fetch, failed ones included
	FetchedBytes    int64 // bytes returned by successful fetches
	DemandFetches   int64 // fetches a read asked for (random blocks, gaps)
	DemandBytes     int64
	PrefetchFetches int64 // fetches a window started
	PrefetchBytes   int64
	FetchErrors     int64
	Cancelled       int64 // prefetches cancelled because no one wanted them anymore

	Evictions int64 // extents dropped from memory to make room
	// HeapBytes were loaded into heap memory because the arena had no free
	// chunk: ones lent to the kernel not yet back, or a read larger than
	// the whole budget. Steady reading keeps it near 0.
	HeapBytes     int64
	CachedBytes   int64 // now: bytes held in memory, in whole blocks
	InflightBytes int64 // now: bytes reserved for loads in flight
	HeldBytes     int64 // now: cached bytes pinned by windows ahead of their readers
	PeakBytes     int64 // highest CachedBytes+InflightBytes seen

	WaitingReads int64 // now: reads waiting for room in the budget
	Readers      int64 // now: open Readers
	Windows      int64 // now: Readers with a prefetch window
	WindowBytes  int64 // now: sum of those windows

	DiskHits         int64 // disk reads serving memory misses
	DiskReadBytes    int64
	LocalOpens       int64 // files handed out by LocalFile
	DiskWrites       int64
	DiskWrittenBytes int64
	DiskEvictions    int64 // disk entries removed to stay within DiskBytes
	DiskErrors       int64 // failed disk reads, writes, verifications
	MD5Mismatches    int64 // whole disk entries discarded as corrupt
	DiskBytes        int64 // now: bytes in the disk tier
	DiskEntries      int64 // now: objects in the disk tier
}

type counters struct {
	hits, misses                        atomic.Int64
	fetches, fetchedBytes               atomic.Int64
	demandFetches, demandBytes          atomic.Int64
	prefetchFetches, prefetchBytes      atomic.Int64
	fetchErrors, cancelled, evictions   atomic.Int64
	heapBytes                           atomic.Int64
	diskHits, diskReadBytes, localOpens atomic.Int64
	diskWrites, diskWrittenBytes        atomic.Int64
	diskEvictions, diskErrors, md5Bad   atomic.Int64
}

// Cache holds extents of many objects under one memory budget. It is safe
// for concurrent use.
type Cache struct {
	opts Options
	mem  *arena
	disk *diskTier // nil without Options.Dir
	st   counters

	// mu guards everything below, the objects' extent lists, the extents'
	// state, the Readers' window state and the disk tier's index. It is
	// never held across a fetch, a copy of bytes or file I/O.
	mu       sync.Mutex
	objects  map[objKey]*objState
	lru      extList // resident, evictable; front = most recently used
	held     extList // resident, pinned by a window: prefetch may not evict them
	resident int64   // bytes of resident extents
	reserved int64   // bytes of loads in flight
	peak     int64
	// diskPending is resident bytes queued for the disk tier; they cannot
	// be evicted before they are written.
	diskPending int64
	// demandWaiting counts reads waiting for room; while any does,
	// prefetch takes no room.
	demandWaiting int
	room          chan struct{} // closed when room may have appeared; nil if no one waits
	windows       int
	windowBytes   int64
	readers       int
	// lost counts pinned extents dropped under memory pressure; a window
	// that sees it move re-pins what it still wants.
	lost uint64
}

// New returns an empty cache. With opts.Dir it creates the directory or
// finds the entries a previous process left there.
func New(opts Options) (*Cache, error) {
	return newCache(opts, bootID())
}

func newCache(opts Options, boot string) (*Cache, error) {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.MaxBytes, DefaultMaxBytes)
	def(&opts.BlockSize, DefaultBlockSize)
	def(&opts.PartSize, DefaultPartSize)
	def(&opts.InitialWindow, DefaultInitialWindow)
	def(&opts.MaxWindow, DefaultMaxWindow)
	def(&opts.DiskBytes, DefaultDiskBytes)
	if opts.MaxParallel <= 0 {
		opts.MaxParallel = DefaultMaxParallel
	}
	opts.PartSize = max(opts.PartSize, opts.BlockSize)
	opts.MaxWindow = max(opts.MaxWindow, opts.InitialWindow)

	var d *diskTier
	if opts.Dir != "" {
		var err error
		if d, err = openDisk(opts.Dir, opts.DiskBytes, boot); err != nil {
			return nil, fmt.Errorf("cache: disk tier in %s: %w", opts.Dir, err)
		}
	}
	mem, err := newArena(opts.MaxBytes, opts.BlockSize)
	if err != nil {
		return nil, err
	}
	c := &Cache{opts: opts, mem: mem, disk: d, objects: map[objKey]*objState{}}
	c.lru.init()
	c.held.init()
	// Everything that can point into the arena (loads, lent slices) keeps
	// the Cache reachable, so once it is not, the mapping can go.
	runtime.AddCleanup(c, (*arena).unmap, mem)
	return c, nil
}

// Open starts reading obj. Each open file handle wants its own Reader: the
// access pattern, and so the prefetch window, is per handle. Cheap; Close it.
func (c *Cache) Open(obj Object, fetch Fetch) *Reader {
	return c.open(obj, fetch, false)
}

func (c *Cache) open(obj Object, fetch Fetch, random bool) *Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := objKey{obj.Key, obj.Size}
	o := c.objects[id]
	if o == nil {
		o = &objState{id: id, md5: obj.MD5}
		c.objects[id] = o
	}
	if o.md5 == "" {
		o.md5 = obj.MD5
	}
	o.refs++
	c.readers++
	if c.disk != nil {
		c.diskEntryLocked(o) // starts a pending verification
	}
	return &Reader{c: c, obj: o, fetch: fetch, random: random, lastEnd: -1}
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	s := Stats{
		CachedBytes:   c.resident,
		InflightBytes: c.reserved,
		HeldBytes:     c.held.bytes,
		PeakBytes:     c.peak,
		WaitingReads:  int64(c.demandWaiting),
		Readers:       int64(c.readers),
		Windows:       int64(c.windows),
		WindowBytes:   c.windowBytes,
	}
	if c.disk != nil {
		s.DiskBytes = c.disk.bytes
		s.DiskEntries = int64(len(c.disk.entries))
	}
	c.mu.Unlock()
	t := &c.st
	s.Hits, s.Misses = t.hits.Load(), t.misses.Load()
	s.Fetches, s.FetchedBytes = t.fetches.Load(), t.fetchedBytes.Load()
	s.DemandFetches, s.DemandBytes = t.demandFetches.Load(), t.demandBytes.Load()
	s.PrefetchFetches, s.PrefetchBytes = t.prefetchFetches.Load(), t.prefetchBytes.Load()
	s.FetchErrors, s.Cancelled, s.Evictions = t.fetchErrors.Load(), t.cancelled.Load(), t.evictions.Load()
	s.HeapBytes = t.heapBytes.Load()
	s.DiskHits, s.DiskReadBytes, s.LocalOpens = t.diskHits.Load(), t.diskReadBytes.Load(), t.localOpens.Load()
	s.DiskWrites, s.DiskWrittenBytes = t.diskWrites.Load(), t.diskWrittenBytes.Load()
	s.DiskEvictions, s.DiskErrors, s.MD5Mismatches = t.diskEvictions.Load(), t.diskErrors.Load(), t.md5Bad.Load()
	return s
}

// objKey includes the size so that a key misused for two sizes can never
// serve one object's extents for the other.
type objKey struct {
	key  string
	size int64
}

type objState struct {
	id   objKey
	md5  string
	ext  []*extent // sorted by off, non-overlapping
	refs int       // open Readers
	disk *diskEntry
}

// search returns the index of the first extent that ends after off.
func (o *objState) search(off int64) int {
	lo, hi := 0, len(o.ext)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if o.ext[m].end <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

type extState uint8

const (
	pending extState = iota
	resident
	dead // dropped, cancelled or failed: no longer in its object's list
)

// load is what readers of an extent hold: the extent itself lets go of it
// when evicted, so a window still pointing at an evicted extent does not
// keep its bytes alive past the budget.
type load struct {
	off  int64
	n    int64
	done chan struct{} // closed once the data is filled in or err is set
	data chunked       // read only after done, and only if err is nil
	err  error
	// refs counts who may still touch data: the extent while it is in its
	// object's list, the fetch while it runs, and each read that acquired
	// it until it releases it. At zero the chunks go back to the arena.
	// Guarded by the Cache's mu.
	refs int
}

type extent struct {
	obj      *objState
	off, end int64
	charge   int64 // budget bytes it holds: its length in whole chunks
	ld       *load // nil once dead
	state    extState
	prefetch bool               // started by a window
	owner    *Reader            // the window that started it, while in flight
	demand   bool               // a read waits or waited on it: never cancelled
	pins     int                // windows that want it
	cancel   context.CancelFunc // prefetch only
	// diskPending: queued for the disk tier, not evictable until written.
	diskPending bool
	prev, next  *extent
	list        *extList
}

func (e *extent) len() int64 { return e.end - e.off }

// extList is an intrusive LRU list: no allocation on the hit path.
type extList struct {
	root  extent
	bytes int64
}

func (l *extList) init() { l.root.next, l.root.prev = &l.root, &l.root }

func (l *extList) pushFront(e *extent) {
	e.prev, e.next = &l.root, l.root.next
	l.root.next.prev = e
	l.root.next = e
	e.list = l
	l.bytes += e.charge
}

func (l *extList) remove(e *extent) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next, e.list = nil, nil, nil
	l.bytes -= e.charge
}

func (l *extList) back() *extent {
	if l.root.prev == &l.root {
		return nil
	}
	return l.root.prev
}

// relistLocked puts a resident extent on the list its state calls for.
func (c *Cache) relistLocked(e *extent) {
	if e.list != nil {
		e.list.remove(e)
	}
	if e.state != resident || e.diskPending {
		return
	}
	if e.pins > 0 {
		c.held.pushFront(e)
	} else {
		c.lru.pushFront(e)
	}
}

func (c *Cache) touchLocked(e *extent) {
	if l := e.list; l != nil {
		l.remove(e)
		l.pushFront(e)
	}
}

func (c *Cache) used() int64 { return c.resident + c.reserved }

// reserveLocked books n bytes for a load. Prefetch only takes free room or
// room cold (unpinned) extents give up, and none while a read waits. A read
// may also evict window extents; it is refused (and must wait) only while
// loads in flight or pending disk writes will free room; with nothing left
// to wait for, it overdraws rather than never progressing.
func (c *Cache) reserveLocked(n int64, demand bool) bool {
	if !demand && c.demandWaiting > 0 {
		return false
	}
	evictable := c.lru.bytes
	if demand {
		evictable += c.held.bytes
	}
	if c.used()+n-evictable > c.opts.MaxBytes && (!demand || c.reserved > 0 || c.diskPending > 0) {
		// Evicting would not make it fit: keep the bytes for now.
		return false
	}
	c.evictLocked(n, demand)
	c.reserved += n
	c.peak = max(c.peak, c.used())
	return true
}

// evictLocked drops least recently used extents until need more bytes fit,
// taking pinned ones only if pinnedToo. It reports whether they fit.
func (c *Cache) evictLocked(need int64, pinnedToo bool) bool {
	for c.used()+need > c.opts.MaxBytes {
		e := c.lru.back()
		if e == nil && pinnedToo {
			e = c.held.back()
		}
		if e == nil {
			return false
		}
		c.dropLocked(e)
		c.st.evictions.Add(1)
	}
	return true
}

// dropLocked evicts a resident extent.
func (c *Cache) dropLocked(e *extent) {
	if e.list != nil {
		e.list.remove(e)
	}
	c.resident -= e.charge
	if e.pins > 0 {
		c.lost++
	}
	c.unlinkLocked(e)
}

// unlinkLocked takes e out of its object's list for good.
func (c *Cache) unlinkLocked(e *extent) {
	o := e.obj
	if i := o.search(e.off); i < len(o.ext) && o.ext[i] == e {
		o.ext = slices.Delete(o.ext, i, i+1)
	}
	if e.ld != nil {
		c.releaseLocked(e.ld)
	}
	e.state, e.ld = dead, nil
	c.forgetObjectLocked(o)
}

// chargeOf is the budget n bytes take: chunks are not shared, so a file's
// last partial block costs a whole one.
func (c *Cache) chargeOf(n int64) int64 { return alignUp(n, c.opts.BlockSize) }

// releaseLocked drops one reference to ld's memory.
func (c *Cache) releaseLocked(ld *load) {
	ld.refs--
	if ld.refs == 0 {
		c.mem.putLocked(ld.data.bufs)
		ld.data.bufs = nil
	}
}

// releaseAll drops the references acquire took.
func (c *Cache) releaseAll(lds []*load) {
	c.mu.Lock()
	for _, ld := range lds {
		c.releaseLocked(ld)
	}
	c.mu.Unlock()
}

func (c *Cache) forgetObjectLocked(o *objState) {
	if o.refs == 0 && len(o.ext) == 0 && c.objects[o.id] == o {
		delete(c.objects, o.id)
	}
}

// roomLocked returns a channel closed when room may have appeared.
func (c *Cache) roomLocked() <-chan struct{} {
	if c.room == nil {
		c.room = make(chan struct{})
	}
	return c.room
}

func (c *Cache) signalRoomLocked() {
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

// newExtentLocked inserts a pending extent at index i of o's list (the
// caller has checked the span is free and reserved its bytes) and starts
// its load: from disk if d holds it, else with fetch. owner is the window
// that wants it, nil for a read. ctx only lends its values: a load is
// shared, so no one reader's cancellation may end it; prefetches get their
// own cancel for when no one wants them.
func (c *Cache) newExtentLocked(ctx context.Context, o *objState, i int, off, end int64, owner *Reader, d *diskEntry, fetch Fetch) *extent {
	n := end - off
	bufs, heap := c.mem.getLocked(n)
	c.st.heapBytes.Add(heap)
	// Two references: the list's and the running load's.
	ld := &load{off: off, n: n, done: make(chan struct{}), data: chunked{bufs, c.opts.BlockSize}, refs: 2}
	e := &extent{obj: o, off: off, end: end, charge: c.chargeOf(n), prefetch: owner != nil, owner: owner, ld: ld}
	o.ext = slices.Insert(o.ext, i, e)
	lctx := context.WithoutCancel(ctx)
	if owner != nil {
		owner.inflight++
		lctx, e.cancel = context.WithCancel(lctx)
	}
	if d != nil {
		d.busy++
	}
	go c.run(lctx, e, e.ld, d, fetch)
	return e
}

// cancelLocked abandons a prefetch no reader wants. Its bytes stay
// reserved until its fetch returns: the fetch writes into them until then.
func (c *Cache) cancelLocked(e *extent) {
	e.cancel()
	c.unlinkLocked(e)
	c.st.cancelled.Add(1)
}

// run fills ld. It owns ld's running reference, so its chunks are not
// reused while it writes into them, even if the extent is cancelled.
func (c *Cache) run(ctx context.Context, e *extent, ld *load, d *diskEntry, fetch Fetch) {
	var err error
	if d != nil {
		err = c.readDisk(d, ld)
	}
	fetched := d == nil || err != nil
	if fetched {
		err = c.fetchExtent(ctx, e, ld, fetch)
	}
	c.finish(e, ld, err, fetched)
}

func (c *Cache) fetchExtent(ctx context.Context, e *extent, ld *load, fetch Fetch) error {
	off, n := e.off, e.len()
	c.st.fetches.Add(1)
	if e.prefetch {
		c.st.prefetchFetches.Add(1)
	} else {
		c.st.demandFetches.Add(1)
	}
	if err := fetch(ctx, off, ld.data.bufs); err != nil {
		c.st.fetchErrors.Add(1)
		return fmt.Errorf("cache: fetch %q bytes %d-%d: %w", e.obj.id.key, off, off+n-1, err)
	}
	c.st.fetchedBytes.Add(n)
	if e.prefetch {
		c.st.prefetchBytes.Add(n)
	} else {
		c.st.demandBytes.Add(n)
	}
	return nil
}

var errCancelled = errors.New("cache: prefetch cancelled")

// finish publishes a load's outcome. A failure is not cached: the next read
// retries. A cancelled prefetch that completed anyway is kept if its span
// is still free. A finished prefetch frees a slot of its window, which is
// refilled at once: waiting for the reader's next read would leave the slot
// idle while the reader waits for an earlier part, and the GETs would come
// in bursts instead of a steady pipeline.
func (c *Cache) finish(e *extent, ld *load, err error, fetched bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.releaseLocked(ld)
	c.reserved -= e.charge
	owner := e.owner
	if owner != nil {
		owner.inflight--
		e.owner = nil
	}
	defer func() {
		if owner != nil && owner.window > 0 && !owner.closed {
			owner.fillLocked(owner.ctx, owner.front)
		}
	}()
	if err == nil && e.state == dead && !c.reviveLocked(e, ld) {
		err = errCancelled
	}
	if err != nil {
		if e.state != dead {
			c.unlinkLocked(e)
		}
		ld.err = err
	} else {
		e.state = resident
		c.resident += e.charge
		if fetched && e.charge <= c.opts.MaxBytes && c.queueDiskWriteLocked(e) {
			e.diskPending = true
			c.diskPending += e.charge
		} else {
			c.relistLocked(e)
		}
		// Only after an overdraft is there anything to evict here.
		c.evictLocked(0, true)
	}
	close(ld.done)
	c.signalRoomLocked()
}

func (c *Cache) reviveLocked(e *extent, ld *load) bool {
	o := e.obj
	if c.objects[o.id] != o {
		return false
	}
	i := o.search(e.off)
	if i < len(o.ext) && o.ext[i].off < e.end {
		return false
	}
	o.ext = slices.Insert(o.ext, i, e)
	e.ld, e.state = ld, pending
	ld.refs++ // the list's again
	return true
}
