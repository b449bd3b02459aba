package cache

import (
	"bytes"
	"context"
	"fmt"
	"testing"
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
