// Package cache keeps recently read blocks of immutable objects in memory so
// that the FUSE read path goes to S3 once per block, not once per read(2).
//
// The cache never learns where bytes come from: every ReadAt brings its own
// Fetch. Objects are named by an opaque key whose bytes never change (a
// Synapse file handle id), so a cached block is never stale and there is no
// invalidation beyond Forget, which only frees memory or guards callers whose
// keys are not immutable.
//
// Blocks are aligned to Options.BlockSize so that readers of overlapping
// ranges share blocks, and a block is the unit of fetching, deduplication and
// eviction. A later tier (prefetch, disk) slots in behind load: it sees the
// same block ids and the same single-flight.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
)

// Defaults: 1 MiB blocks amortise S3's per-request latency without making a
// small random read pull much more than it needs; 256 MiB is a budget a
// cluster node can spare per mount.
const (
	DefaultBlockSize = 1 << 20
	DefaultMaxBytes  = 256 << 20
)

// maxParallelFetches bounds the fetches one ReadAt starts at once, so a huge
// read cannot open hundreds of S3 connections.
const maxParallelFetches = 8

// Fetch reads length bytes at off of one object. It must return exactly
// length bytes or an error. The cache keeps the returned slice as the block,
// so fetch must not reuse it, and should not hand back a slice of a much
// larger array (the budget counts len, not cap).
type Fetch func(ctx context.Context, off, length int64) ([]byte, error)

// Options tunes a Cache. Zero values take the defaults.
type Options struct {
	BlockSize int64 // default 1 MiB; blocks are aligned to multiples of it
	// MaxBytes bounds the sum of the lengths of cached blocks; it is never
	// exceeded. A block longer than MaxBytes is still returned to its
	// readers but not kept.
	MaxBytes int64 // default 256 MiB
}

// Stats are cumulative counters since New, except CachedBytes (current).
type Stats struct {
	Hits         int64 // blocks found cached when a read looked them up
	Misses       int64 // blocks not cached when a read looked them up (fetched or waited for)
	Fetches      int64 // calls to a Fetch, failed ones included
	FetchedBytes int64 // bytes returned by successful fetches
	Evictions    int64 // blocks dropped to stay within MaxBytes (Forget not included)
	CachedBytes  int64 // bytes held now
}

// blockID names one block; a struct key keeps the hit path free of string
// building.
type blockID struct {
	key string
	idx int64
}

// Cache is a byte-bounded LRU of object blocks. It is safe for concurrent use.
type Cache struct {
	blockSize int64
	maxBytes  int64

	// flight makes concurrent misses of one block share one fetch.
	flight singleflight.Group

	// epoch changes on every Forget. It is part of the single-flight key and
	// is checked before a fetched block is stored, so that after Forget
	// returns no later read is served bytes fetched before it. Written only
	// with mu held; read without it to build flight keys.
	epoch atomic.Uint64

	mu     sync.Mutex // guards lru and cached; never held during a fetch or a copy
	lru    *simplelru.LRU[blockID, []byte]
	cached int64

	hits, misses, fetches, fetchedBytes, evictions atomic.Int64
}

// New returns an empty cache.
func New(opts Options) *Cache {
	if opts.BlockSize <= 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	// The count bound is effectively off: bytes, accounted in insert, are
	// the only bound.
	l, err := simplelru.NewLRU[blockID, []byte](math.MaxInt, nil)
	if err != nil {
		// Only a non-positive size fails, and MaxInt is positive.
		panic(fmt.Sprintf("cache: simplelru.NewLRU: %v", err))
	}
	return &Cache{blockSize: opts.BlockSize, maxBytes: opts.MaxBytes, lru: l}
}

// ReadAt fills p from object key of size bytes at offset off, like
// io.ReaderAt: it returns len(p) bytes unless off+len(p) passes size, in
// which case it returns the bytes up to size and io.EOF; off >= size gives
// 0, io.EOF. On any other error it returns 0 and the contents of p are
// unspecified (some blocks may have been copied).
//
// Missing blocks are fetched in parallel (at most 8 at a time per call), one
// fetch per block however many readers want it. A fetch error is returned to
// every reader waiting for that block and is not cached: the next read
// retries.
//
// ctx bounds only this caller's wait; on cancellation ReadAt returns
// ctx.Err() at once. A fetch runs under context.WithoutCancel of the ctx of
// the reader that started it, so one reader giving up (an interrupted
// read(2)) never fails the others sharing that fetch, and the block is still
// cached for the retry that usually follows. The price: a fetch nobody waits
// for anymore runs to completion, so Fetch must bound itself (the S3 client's
// timeouts do).
//
// A read served entirely from cache allocates nothing, provided fetch is not
// a closure or method value built for this call: fetch escapes (the miss path
// hands it to another goroutine), so build it once per open file.
func (c *Cache) ReadAt(ctx context.Context, key string, size int64, p []byte, off int64, fetch Fetch) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("cache: read %q at negative offset %d", key, off)
	}
	if size < 0 {
		return 0, fmt.Errorf("cache: object %q has negative size %d", key, size)
	}
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > size-off {
		p = p[:size-off]
		eof = io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}

	bs := c.blockSize
	first, last := off/bs, (off+int64(len(p))-1)/bs
	var hits int64
	for idx := first; idx <= last; idx++ {
		b, ok := c.get(blockID{key, idx})
		if !ok {
			c.hits.Add(hits)
			if err := c.fill(ctx, key, size, p, off, idx, last, fetch); err != nil {
				return 0, err
			}
			return len(p), eof
		}
		hits++
		c.copyBlock(p, off, idx, b)
	}
	c.hits.Add(hits)
	return len(p), eof
}

// copyBlock copies the part of block idx that overlaps p (which starts at
// object offset off) straight into p.
func (c *Cache) copyBlock(p []byte, off, idx int64, b []byte) {
	start := idx * c.blockSize
	src := max(off-start, 0)
	copy(p[start+src-off:], b[src:])
}

// fill is the miss path of ReadAt: blocks from..last, of which from is known
// to be missing. It is kept out of ReadAt so the all-hit path allocates
// nothing.
func (c *Cache) fill(ctx context.Context, key string, size int64, p []byte, off, from, last int64, fetch Fetch) error {
	c.misses.Add(1)
	if from == last {
		b, err := c.load(ctx, key, size, from, fetch)
		if err != nil {
			return err
		}
		c.copyBlock(p, off, from, b)
		return nil
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallelFetches)
	var hits, misses int64
	for idx := from; idx <= last; idx++ {
		if idx != from {
			// Re-check: another reader may have brought it in meanwhile.
			if b, ok := c.get(blockID{key, idx}); ok {
				hits++
				c.copyBlock(p, off, idx, b)
				continue
			}
			misses++
		}
		g.Go(func() error {
			b, err := c.load(gctx, key, size, idx, fetch)
			if err != nil {
				return err
			}
			c.copyBlock(p, off, idx, b)
			return nil
		})
	}
	c.hits.Add(hits)
	c.misses.Add(misses)
	err := g.Wait()
	if err != nil && ctx.Err() != nil {
		// The siblings failed because of our own cancellation; say so
		// plainly rather than reporting whichever noticed first.
		return ctx.Err()
	}
	return err
}

// get looks a block up and marks it recently used.
func (c *Cache) get(id blockID) ([]byte, bool) {
	c.mu.Lock()
	b, ok := c.lru.Get(id)
	c.mu.Unlock()
	return b, ok
}

// load returns block idx of key, fetching it unless a fetch for it is already
// in flight, in which case it waits for that one.
func (c *Cache) load(ctx context.Context, key string, size, idx int64, fetch Fetch) ([]byte, error) {
	// A sibling block failed or the reader left before this one got its
	// turn: don't start a fetch nobody will wait for.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	epoch := c.epoch.Load()
	id := blockID{key, idx}
	// Numbers first: they contain no ':', so the key cannot make two
	// blocks collide.
	fk := strconv.FormatInt(idx, 10) + ":" + strconv.FormatUint(epoch, 10) + ":" + key
	ch := c.flight.DoChan(fk, func() (any, error) {
		// A flight for this block may have finished between the caller's
		// lookup and DoChan; don't fetch it twice.
		c.mu.Lock()
		b, ok := c.lru.Peek(id)
		c.mu.Unlock()
		if ok {
			return b, nil
		}
		boff := idx * c.blockSize
		n := min(c.blockSize, size-boff)
		c.fetches.Add(1)
		b, err := fetch(context.WithoutCancel(ctx), boff, n)
		if err != nil {
			return nil, fmt.Errorf("cache: fetch %q bytes %d-%d: %w", key, boff, boff+n-1, err)
		}
		if int64(len(b)) != n {
			return nil, fmt.Errorf("cache: fetch %q bytes %d-%d returned %d bytes: %w", key, boff, boff+n-1, len(b), io.ErrUnexpectedEOF)
		}
		c.fetchedBytes.Add(n)
		c.insert(id, b, epoch)
		return b, nil
	})
	select {
	case <-ctx.Done():
		// The fetch goes on for the other waiters; DoChan's channel is
		// buffered, so nothing leaks.
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		b, ok := r.Val.([]byte)
		if !ok {
			return nil, errors.New("cache: internal error: flight returned a non-block")
		}
		return b, nil
	}
}

// insert stores a fetched block and evicts least recently used blocks until
// the budget holds. A block fetched before a Forget (epoch moved on) is not
// stored: it may belong to the object's previous bytes.
func (c *Cache) insert(id blockID, b []byte, epoch uint64) {
	n := int64(len(b))
	if n > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.Load() != epoch || c.lru.Contains(id) {
		return
	}
	c.lru.Add(id, b)
	c.cached += n
	for c.cached > c.maxBytes {
		_, old, ok := c.lru.RemoveOldest()
		if !ok {
			break
		}
		c.cached -= int64(len(old))
		c.evictions.Add(1)
	}
}

// Forget drops every cached block of key, and makes sure fetches already in
// flight are neither stored nor shared with reads that start after Forget
// returns. It scans all cached blocks: fine for its use (a file replaced),
// not for a hot path. The epoch it bumps is global, so fetches of other keys
// in flight at that moment are not stored either and may be fetched a second
// time; a per-key epoch would need a map that grows with every key ever
// forgotten, and Forget is rare.
func (c *Cache) Forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	for _, id := range c.lru.Keys() {
		if id.key != key {
			continue
		}
		if b, ok := c.lru.Peek(id); ok {
			c.cached -= int64(len(b))
			c.lru.Remove(id)
		}
	}
}

// Stats returns a snapshot of the counters. The counters are read one by one,
// so under concurrent reads they may be a few operations apart.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	cached := c.cached
	c.mu.Unlock()
	return Stats{
		Hits:         c.hits.Load(),
		Misses:       c.misses.Load(),
		Fetches:      c.fetches.Load(),
		FetchedBytes: c.fetchedBytes.Load(),
		Evictions:    c.evictions.Load(),
		CachedBytes:  cached,
	}
}
