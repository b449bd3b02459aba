package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// directPart is the ranged-GET size of direct(N): large enough that the
// per-request latency is a small share, as a tuned client would choose.
const directPart = 8 << 20

// readResult is what a reader saw; the rest of a sample comes from the
// emulator's counters and /proc.
type readResult struct {
	Bytes   int64
	Ops     int64
	Elapsed time.Duration
	Partial bool // stopped at the run's deadline before the end
	// ReaderCPU is CPU spent by the reading thread itself, where it could
	// be measured apart from the server (FUSE ceiling only).
	ReaderCPU time.Duration
}

// directRead is direct(N): the fastest a client could pull the object
// through the emulator's per-connection cap, with no filesystem at all.
func directRead(ctx context.Context, client *s3.Client, o object, size int64, n int) (readResult, error) {
	parts := make(chan int64)
	go func() {
		defer close(parts)
		for off := int64(0); off < size; off += directPart {
			select {
			case parts <- off:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		mu    sync.Mutex
		total int64
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for off := range parts {
				end := min(off+directPart, size) - 1
				got, err := getRange(ctx, client, o, off, end, buf)
				mu.Lock()
				total += got
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	r := readResult{Bytes: total, Ops: (size + directPart - 1) / directPart, Elapsed: time.Since(start)}
	if first != nil && ctx.Err() != nil && total > 0 {
		r.Partial = true
		return r, nil
	}
	return r, first
}

func getRange(ctx context.Context, client *s3.Client, o object, off, end int64, buf []byte) (int64, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(o.Bucket), Key: aws.String(o.Key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
	})
	if err != nil {
		return 0, fmt.Errorf("GET %s bytes %d-%d: %w", o.Key, off, end, err)
	}
	defer out.Body.Close()
	n, err := drain(out.Body, buf)
	if err != nil {
		return n, fmt.Errorf("GET %s bytes %d-%d: %w", o.Key, off, end, err)
	}
	if want := end - off + 1; n != want {
		return n, fmt.Errorf("GET %s bytes %d-%d: %d bytes, want %d", o.Key, off, end, n, want)
	}
	return n, nil
}

// drain discards r through buf: io.Copy to io.Discard would use Discard's
// own small buffers and its ReadFrom, not the one we size.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// memFile serves one preallocated buffer: the cheapest possible Read, so
// what is left is the cost of the kernel crossing itself.
type memFile struct {
	gofs.Inode
	data []byte
}

var (
	_ gofs.NodeGetattrer = (*memFile)(nil)
	_ gofs.NodeOpener    = (*memFile)(nil)
	_ gofs.NodeReader    = (*memFile)(nil)
)

func (f *memFile) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFREG | 0o444
	out.Size = uint64(len(f.data))
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = 1 << 20
	return 0
}

func (f *memFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *memFile) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(f.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(f.data)))
	return fuse.ReadResultData(f.data[off:end]), 0
}

type memRoot struct {
	gofs.Inode
	data []byte
}

func (r *memRoot) OnAdd(ctx context.Context) {
	child := r.NewPersistentInode(ctx, &memFile{data: r.data}, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: 2})
	r.AddChild("mem.bin", child, false)
}

// ceilingData is the FUSE ceiling's file; filled once, with bytes that are
// not the zero page, so that copies cost what real data costs.
func ceilingData(size int64) []byte {
	b := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{'c', 'e', 'i', 'l'})
	rng.Read(b)
	return b
}

// mountCeiling mounts the in-memory file with the FUSE options synfs uses
// (fs.Filesystem.Mount), so the ceiling is the one synfs runs under.
func mountCeiling(dir string, data []byte) (*fuse.Server, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	ttl := time.Minute
	server, err := gofs.Mount(dir, &memRoot{data: data}, &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:           "synfs-bench-ceiling",
			Name:             "synfs",
			DirectMount:      true,
			MaxWrite:         1 << 20,
			MaxReadAhead:     1 << 20,
			MaxBackground:    64,
			DisableXAttrs:    true,
			Options:          []string{"ro"},
			DirectMountFlags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY,
		},
		EntryTimeout: &ttl,
		AttrTimeout:  &ttl,
	})
	if err != nil {
		return nil, "", fmt.Errorf("mounting the FUSE ceiling at %s: %w", dir, err)
	}
	return server, filepath.Join(dir, "mem.bin"), nil
}

// lockedSeqRead reads p sequentially on one locked OS thread and reports
// that thread's CPU, so the ceiling's CPU can be the server's alone, as
// for the mounts, whose CPU is that of their own process.
func lockedSeqRead(ctx context.Context, p string) (readResult, error) {
	type out struct {
		r   readResult
		err error
	}
	ch := make(chan out, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0 := threadCPU()
		r, err := readWhole(ctx, p, make([]byte, 1<<20))
		r.ReaderCPU = threadCPU() - c0
		ch <- out{r, err}
	}()
	o := <-ch
	return o.r, o.err
}

// freshMemoryProbe is how much anonymous memory freshMemoryCost touches.
const freshMemoryProbe = 256 << 20

// freshMemoryCost is the CPU seconds per GiB this machine spends the first
// time a process writes to anonymous memory (page faults, zeroing; in some
// VMs the host backing the page again). A fresh mount pays it for the
// memory its cache first takes, and every cold read through FUSE for the
// page cache it fills; direct(N) reuses its buffers and does not. It
// varies with what ran before, so the report shows it at the start and at
// the end of the run.
func freshMemoryCost() (float64, error) {
	mem, err := syscall.Mmap(-1, 0, freshMemoryProbe, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return 0, fmt.Errorf("mmap: %w", err)
	}
	defer syscall.Munmap(mem)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0 := threadCPU()
	for i := 0; i < len(mem); i += os.Getpagesize() {
		mem[i] = 1
	}
	return (threadCPU() - c0).Seconds() * float64(1<<30) / float64(len(mem)), nil
}
