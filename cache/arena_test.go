package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Reading many times the budget, sequentially and at random, reuses the
// arena's memory: nothing is loaded into heap memory, and whatever the
// reuse, every read gets its own bytes.
func TestArenaIsReused(t *testing.T) {
	const budget = 32 * testBS
	for _, mode := range []string{"sequential", "random"} {
		t.Run(mode, func(t *testing.T) {
			opts := seqOpts()
			opts.MaxBytes = budget
			c := mustNew(t, opts)
			for i := range 4 {
				o := newObject(3*budget + 100)
				r := c.Open(Object{Key: fmt.Sprint(i), Size: o.size()}, o.fetch)
				if mode == "sequential" {
					readAll(t, r, o, 0, 3*testBS)
				} else {
					for k := int64(0); k < 3*budget/testBS; k++ {
						off := (k * 37 % (3 * budget / testBS)) * testBS
						readRange(t, r, o, off, off+testBS, testBS)
					}
				}
				r.Close()
			}
			st := c.Stats()
			if st.FetchedBytes < 4*3*budget || st.Evictions == 0 {
				t.Fatalf("test setup: fetched %d bytes, %d evictions; want several budgets' worth", st.FetchedBytes, st.Evictions)
			}
			if st.HeapBytes != 0 {
				t.Errorf("%d bytes were loaded into heap memory, want all in the arena", st.HeapBytes)
			}
		})
	}
}

// Lent memory is not reused while the loan is out, even once its extent
// is evicted: the kernel may still be copying from it. After Release it is.
func TestLentMemoryIsNotReusedUntilReleased(t *testing.T) {
	const budget = 4 * testBS
	c := mustNew(t, Options{BlockSize: testBS, MaxBytes: budget})
	ctx := context.Background()
	a, b := newObject(testBS), newObject(16*testBS)
	ra := c.Open(Object{Key: "a", Size: a.size()}, a.fetch)
	defer ra.Close()
	loan, err := ra.Lend(ctx, 0, testBS)
	if err != nil {
		t.Fatal(err)
	}
	lent := loan.Slices

	// Read eight budgets of other bytes: a's block is evicted, and every
	// other chunk is reused several times over.
	rb := c.Open(Object{Key: "b", Size: b.size()}, b.fetch)
	defer rb.Close()
	readRange(t, rb, b, 0, b.size(), testBS)
	readRange(t, rb, b, 0, b.size(), testBS)
	if st := c.Stats(); st.Evictions < 12 {
		t.Fatalf("test setup: %d evictions, want a's block and many of b's evicted", st.Evictions)
	}
	if got := bytes.Join(lent, nil); !bytes.Equal(got, a.data) {
		t.Fatal("lent bytes changed while the loan was out: the memory was reused")
	}
	heap := c.Stats().HeapBytes
	loan.Release()
	loan.Release() // a second Release does nothing
	readRange(t, rb, b, 0, b.size(), testBS)
	if st := c.Stats(); st.HeapBytes != heap {
		t.Errorf("after Release: %d more bytes from the heap, want the returned chunk reused", st.HeapBytes-heap)
	}
}

// The arena's memory is faulted in ahead of the chunks handed out, so the
// fetches writing into them do not each take page faults, but only
// prefaultAhead ahead: an idle mount does not hold its whole budget.
func TestArenaFaultsInAheadOfUse(t *testing.T) {
	const chunk = 1 << 20
	probe, err := unix.Mmap(-1, 0, 1<<16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(probe)
	if err := unix.Madvise(probe, unix.MADV_POPULATE_WRITE); err != nil {
		t.Skipf("this kernel cannot populate memory ahead (%v): the arena leaves faults to the writes", err)
	}
	a, err := newArena(4*prefaultAhead, chunk)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		chunks int64 // handed out in all, from the front
	}{
		{"first chunk", 1},
		{"a window's worth", prefaultAhead / chunk},
		{"nearly all", 3*prefaultAhead/chunk + 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.getLocked(tc.chunks*chunk - a.reached.Load())
			want := min(tc.chunks*chunk+prefaultAhead, int64(len(a.mem)))
			var got int64
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if got = residentPrefix(t, a.mem); got >= want {
					break
				}
			}
			if got != want {
				t.Errorf("after %d chunks handed out: mem[:%d MiB] resident, want mem[:%d MiB]", tc.chunks, got>>20, want>>20)
			}
			if beyond := residentBytes(t, a.mem[want:]); beyond != 0 {
				t.Errorf("%d bytes beyond the prefault window are resident", beyond)
			}
		})
	}
	done := make(chan struct{})
	go func() { a.unmap(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("unmap did not return: the prefaulter was not stopped")
	}
}

// residentPrefix is how long the run of resident pages at mem's start is.
func residentPrefix(t *testing.T, mem []byte) int64 {
	vec := mincore(t, mem)
	page := int64(os.Getpagesize())
	for i, v := range vec {
		if v&1 == 0 {
			return int64(i) * page
		}
	}
	return int64(len(mem))
}

func residentBytes(t *testing.T, mem []byte) int64 {
	var n int64
	for _, v := range mincore(t, mem) {
		n += int64(v & 1)
	}
	return n * int64(os.Getpagesize())
}

func mincore(t *testing.T, mem []byte) []byte {
	t.Helper()
	if len(mem) == 0 {
		return nil
	}
	vec := make([]byte, (len(mem)+os.Getpagesize()-1)/os.Getpagesize())
	// x/sys/unix has no Mincore for Linux.
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	return vec
}
