package cache

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// arena is the memory cached bytes live in: one mapping the size of the
// budget, cut into BlockSize chunks that are reused as extents come and go.
//
// Memory a process touches for the first time costs the kernel a page
// fault and a zeroed page, and on VMs that hand freed memory back to their
// host (virtio free page reporting) the host backing it again: 0.4 to over
// 1 CPU s per GiB here, more than fetching and serving the bytes. A heap
// buffer per extent paid that for every byte cached, again each time the
// garbage collector gave the memory back. The arena pays it once, on first
// use. (Faulting it all in at mount took 9 s for 4 GiB here: a mount must
// not wait on its budget. Huge pages cost more, not less: 0.7 to 1.8 CPU
// s/GiB against 0.4 to 0.5 for 4 KiB pages, as the host backs each 2 MiB
// it had taken back.)
//
// Its free list is guarded by the Cache's mu. A chunk goes back on it only
// once no load refers to it (see load.refs), since the kernel may still be
// copying from it after a read returned.
type arena struct {
	mem   []byte // nil when the budget is under one chunk: chunks then come from the heap
	chunk int64
	free  []int32 // indices of free chunks in mem
}

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
	a.mem = mem
	a.free = make([]int32, n)
	for i := range a.free {
		// Handed out from the front of the mapping first, so a cache that
		// never fills touches only what it uses.
		a.free[i] = int32(n - 1 - int64(i))
	}
	return a, nil
}

// unmap returns the mapping once nothing can refer to it any more.
func (a *arena) unmap() {
	if a.mem != nil {
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
		} else {
			bufs = append(bufs, make([]byte, l))
			heap += l
		}
		n -= l
	}
	return bufs, heap
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

// writeTo writes the bytes [from, to) to f at off.
func (c chunked) writeTo(f *os.File, from, to, off int64) error {
	for _, b := range c.appendSlices(nil, from, to) {
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}
