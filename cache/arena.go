package cache

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// arena is the memory cached bytes live in: one mapping the size of the
// budget, cut into BlockSize chunks that are reused as extents come and go.
//
// Memory a process touches for the first time costs the kernel a page
// fault and a zeroed page, and on VMs that hand freed memory back to their
// host (virtio free page reporting) the host backing it again. A heap
// buffer per extent paid that for every byte cached, again each time the
// garbage collector gave the memory back; the arena pays it once. And it
// pays it ahead of use, in one goroutine: with pages faulted in one by one
// by 32 fetches writing at once, a cold 1 GiB read cost the mount 1.7 to
// 2.1 CPU s here, and 1.1 to 1.2 s with MADV_POPULATE_WRITE ahead of them
// (which alone takes 0.3 s per GiB). It stays a little ahead of the chunks
// handed out (prefaultAhead), not the whole budget: faulting 4 GiB in at
// mount took 9 s here, and an idle mount should not hold its budget.
// (Huge pages cost more, not less: 0.7 to 1.8 CPU s/GiB against 0.4 to
// 0.5 for 4 KiB pages, as the host backs each 2 MiB it had taken back.)
//
// Its free list is guarded by the Cache's mu. A chunk goes back on it only
// once no load refers to it (see load.refs), since the kernel may still be
// copying from it after a read returned.
type arena struct {
	mem   []byte // nil when the budget is under one chunk: chunks then come from the heap
	chunk int64
	free  []int32 // indices of free chunks in mem

	// Chunks are handed out from the front of the mapping first, so the
	// ones ever used are mem[:reached]. The prefaulter keeps
	// mem[:reached+prefaultAhead] faulted in.
	reached atomic.Int64
	wake    chan struct{} // a nudge to the prefaulter that reached moved
	stop    chan struct{} // closed by unmap
	stopped chan struct{} // closed by the prefaulter on its way out
}

// How far the prefaulter keeps ahead of the chunks handed out, and the
// step it wakes at. A sequential read takes up to MaxParallel parts at
// once; the rest of the time, reads take chunks a part at a time.
const (
	prefaultAhead = 64 << 20
	prefaultStep  = 8 << 20
)

func newArena(size, chunk int64) (*arena, error) {
	a := &arena{chunk: chunk}
	n := size / chunk
	if n == 0 {
		return a, nil
	}
	mem, err := unix.Mmap(-1, 0, int(n*chunk), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("cache: mapping %d bytes of memory: %w", n*chunk, err)
	}
	// 4 KiB pages, even where transparent huge pages are on for all
	// memory (THP "always"): see the figures above.
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	a.mem = mem
	a.free = make([]int32, n)
	for i := range a.free {
		// Handed out from the front of the mapping first, so a cache that
		// never fills touches only what it uses.
		a.free[i] = int32(n - 1 - int64(i))
	}
	a.wake = make(chan struct{}, 1)
	a.stop, a.stopped = make(chan struct{}), make(chan struct{})
	go a.prefault()
	return a, nil
}

// prefault faults the mapping in ahead of use until unmap stops it. A
// kernel without MADV_POPULATE_WRITE (before 5.14) stops it for good, and
// the pages are faulted in as they are written; another failure (memory
// short for now) leaves the rest to the next nudge.
func (a *arena) prefault() {
	defer close(a.stopped)
	var done int64 // mem[:done] is faulted in
	for {
		select {
		case <-a.stop:
			return
		case <-a.wake:
		}
		target := min(a.reached.Load()+prefaultAhead, int64(len(a.mem)))
		for done < target {
			select {
			case <-a.stop:
				return
			default:
			}
			end := min(done+prefaultStep, target)
			if err := unix.Madvise(a.mem[done:end], unix.MADV_POPULATE_WRITE); err == unix.EINVAL {
				return
			} else if err != nil {
				break
			}
			done = end
		}
	}
}

// unmap returns the mapping once nothing can refer to it any more.
func (a *arena) unmap() {
	if a.mem != nil {
		close(a.stop)
		<-a.stopped
		unix.Munmap(a.mem)
	}
}

// getLocked returns n bytes as chunks: all but the last are a.chunk long.
// What the arena lacks (chunks still lent to the kernel, a read larger than
// the budget) comes from the heap: heap says how many bytes.
func (a *arena) getLocked(n int64) (bufs [][]byte, heap int64) {
	bufs = make([][]byte, 0, (n+a.chunk-1)/a.chunk)
	for n > 0 {
		l := min(n, a.chunk)
		if k := len(a.free); k > 0 {
			i := int64(a.free[k-1])
			a.free = a.free[:k-1]
			bufs = append(bufs, a.mem[i*a.chunk:i*a.chunk+l:i*a.chunk+l])
			a.reachLocked((i + 1) * a.chunk)
		} else {
			bufs = append(bufs, make([]byte, l))
			heap += l
		}
		n -= l
	}
	return bufs, heap
}

// reachLocked notes that mem[:end] is in use, and nudges the prefaulter
// each time that crosses a step.
func (a *arena) reachLocked(end int64) {
	old := a.reached.Load()
	if end <= old {
		return
	}
	a.reached.Store(end)
	if old/prefaultStep != end/prefaultStep || old == 0 {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// putLocked takes back the arena's chunks among bufs; heap ones are left
// to the garbage collector.
func (a *arena) putLocked(bufs [][]byte) {
	if a.mem == nil {
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(a.mem)))
	for _, b := range bufs {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if p >= base && p < base+uintptr(len(a.mem)) {
			a.free = append(a.free, int32(int64(p-base)/a.chunk))
		}
	}
}

// chunked are one load's bytes, in arena chunks of unit bytes.
type chunked struct {
	bufs [][]byte
	unit int64
}

// copyTo copies the bytes from `from` on into p.
func (c chunked) copyTo(p []byte, from int64) {
	for i := from / c.unit; len(p) > 0; i++ {
		n := copy(p, c.bufs[i][from-i*c.unit:])
		p = p[n:]
		from += int64(n)
	}
}

// appendSlices appends slices of the bytes [from, to) to dst, with their
// capacity cut so an append by the holder cannot write into the cache.
func (c chunked) appendSlices(dst [][]byte, from, to int64) [][]byte {
	for i := from / c.unit; from < to; i++ {
		b := c.bufs[i][from-i*c.unit:]
		b = b[:min(int64(len(b)), to-from):min(int64(len(b)), to-from)]
		dst = append(dst, b)
		from += int64(len(b))
	}
	return dst
}

// readFrom fills the chunks from f at off.
func (c chunked) readFrom(f *os.File, off int64) error {
	for _, b := range c.bufs {
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}
