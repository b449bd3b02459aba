package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The readers stop at the context's deadline between reads and report what
// they did so far as Partial: a slow peer still yields a rate, and a run
// cannot outlive its bound by more than one read (a read stuck in the
// kernel is the caller's to break, by aborting the mount).

// readWhole reads p from start to end with len(buf)-sized reads.
func readWhole(ctx context.Context, p string, buf []byte) (readResult, error) {
	start := time.Now()
	f, err := os.Open(p)
	if err != nil {
		return readResult{}, err
	}
	defer f.Close()
	var r readResult
	for {
		if ctx.Err() != nil {
			r.Partial = true
			break
		}
		n, err := f.Read(buf)
		r.Bytes += int64(n)
		r.Ops++
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.Elapsed = time.Since(start)
			return r, fmt.Errorf("reading %s at %d: %w", p, r.Bytes, err)
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// readAllParallel reads each path whole, all at once, one reader each.
func readAllParallel(ctx context.Context, paths []string) (readResult, error) {
	start := time.Now()
	results := make([]readResult, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = readWhole(ctx, p, make([]byte, 1<<20))
		}()
	}
	wg.Wait()
	total := readResult{Elapsed: time.Since(start)}
	for _, r := range results {
		total.Bytes += r.Bytes
		total.Ops += r.Ops
		total.Partial = total.Partial || r.Partial
	}
	return total, errors.Join(errs...)
}

// randomOffsets picks n distinct size-aligned offsets of a file in a fixed
// order, so every system reads exactly the same ones.
func randomOffsets(fileSize, size int64, n int, seed uint64) []int64 {
	slots := fileSize / size
	perm := rand.New(rand.NewPCG(seed, 0x5eed)).Perm(int(slots))
	n = min(n, len(perm))
	offs := make([]int64, n)
	for i := range n {
		offs[i] = int64(perm[i]) * size
	}
	return offs
}

// readRandom preads size bytes at each offset once, from threads readers,
// each with its own descriptor as independent processes would have.
func readRandom(ctx context.Context, p string, offsets []int64, size int64, threads int) (readResult, error) {
	return fanOut(ctx, offsets, threads, func(ctx context.Context, next <-chan int64, mine *readResult) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, size)
		for off := range next {
			if ctx.Err() != nil {
				mine.Partial = true
				return nil
			}
			n, err := f.ReadAt(buf, off)
			mine.Bytes += int64(n)
			mine.Ops++
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("pread %s at %d: %w", p, off, err)
			}
		}
		return nil
	})
}

// readFiles opens, reads and closes each path, with readers at a time.
func readFiles(ctx context.Context, paths []string, readers int) (readResult, error) {
	return fanOut(ctx, paths, readers, func(ctx context.Context, next <-chan string, mine *readResult) error {
		buf := make([]byte, 1<<20)
		for p := range next {
			if ctx.Err() != nil {
				mine.Partial = true
				return nil
			}
			r, err := readWhole(ctx, p, buf)
			mine.Bytes += r.Bytes
			mine.Ops++
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// fanOut hands items to n workers and sums what they read; each worker
// counts into its own readResult, merged when it ends.
func fanOut[T any](ctx context.Context, items []T, n int, work func(context.Context, <-chan T, *readResult) error) (readResult, error) {
	next := make(chan T, len(items))
	for _, it := range items {
		next <- it
	}
	close(next)
	var (
		mu    sync.Mutex
		total readResult
		errs  []error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range n {
		wg.Go(func() {
			var mine readResult
			err := work(ctx, next, &mine)
			mu.Lock()
			defer mu.Unlock()
			total.Bytes += mine.Bytes
			total.Ops += mine.Ops
			total.Partial = total.Partial || mine.Partial
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return total, errors.Join(errs...)
}

// listLong is `ls -l` of the small files: list their directories, then
// lstat each file. dirs are listed first, in order (for the peers the
// mount root, then each file's own <uuid>/ directory is resolved by the
// lstat); Ops counts the entries stat'ed.
func listLong(ctx context.Context, root string, dirs, files []string) (readResult, error) {
	start := time.Now()
	var r readResult
	for _, d := range dirs {
		if _, err := os.ReadDir(filepath.Join(root, d)); err != nil {
			return r, fmt.Errorf("listing %s: %w", d, err)
		}
	}
	for _, f := range files {
		if ctx.Err() != nil {
			r.Partial = true
			break
		}
		if _, err := os.Lstat(filepath.Join(root, f)); err != nil {
			r.Elapsed = time.Since(start)
			return r, fmt.Errorf("lstat %s: %w", f, err)
		}
		r.Ops++
	}
	r.Elapsed = time.Since(start)
	return r, nil
}
