package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/synfs/synfs/cache"
	"github.com/synfs/synfs/fs/metalog"
	"github.com/synfs/synfs/s3io"
	"github.com/synfs/synfs/synapse"
)

// fileMeta is what reading a file needs: its current file handle. A handle's
// bytes are not meant to change, so the handle id is the cache key; an
// external bucket's owner can still overwrite its object, which the reads'
// Pin (pinFor) turns into EIO rather than a file of two versions.
type fileMeta struct {
	version  int64
	modified time.Time
	handleID string
	key      string
	size     int64
	md5      string
}

// fileNode is a Synapse FileEntity, or a file being created (id "" until
// its first upload makes the entity).
type fileNode struct {
	gofs.Inode
	fsys *Filesystem

	mu   sync.Mutex // guards id and meta
	id   string
	meta fileMeta

	// wmu serialises writers of this file: staging, writes and commits.
	wmu    sync.Mutex
	staged *staging
	// The staged file's size (-1: nothing staged) and last write, readable
	// without wmu.
	stagedSize atomic.Int64
	stagedTime atomic.Int64
}

func newFileNode(f *Filesystem, id string, m fileMeta) *fileNode {
	n := &fileNode{fsys: f, id: id, meta: m}
	n.stagedSize.Store(-1)
	return n
}

var (
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeOpener    = (*fileNode)(nil)
	_ gofs.NodeReader    = (*fileNode)(nil)
	_ gofs.NodeWriter    = (*fileNode)(nil)
	_ gofs.NodeFlusher   = (*fileNode)(nil)
	_ gofs.NodeFsyncer   = (*fileNode)(nil)
	_ gofs.NodeReleaser  = (*fileNode)(nil)
	_ gofs.NodeSetattrer = (*fileNode)(nil)
)

// fileHandle is one open(2) of a file. A read handle has its own cache
// reader, so each open file gets its own sequential detection and prefetch
// window.
type fileHandle struct {
	write bool

	mu     sync.Mutex
	meta   fileMeta // the version reader reads
	reader *cache.Reader
	// local is the disk tier's whole, verified copy: reads splice from it.
	local *os.File
	// Readers and local files of versions replaced while the file was
	// open; a read may still be using one, so they are closed at release.
	old      []*cache.Reader
	oldLocal []*os.File
}

// source is what a read of n goes to: the current version's bytes, as on a
// local filesystem, where an open file sees what a writer wrote.
func (h *fileHandle) source(n *fileNode) (*cache.Reader, *os.File, int64) {
	m := n.current()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reader == nil || h.meta.handleID != m.handleID {
		if h.reader != nil {
			h.old = append(h.old, h.reader)
		}
		if h.local != nil {
			h.oldLocal = append(h.oldLocal, h.local)
			h.local = nil
		}
		h.meta = m
		h.reader = n.fsys.blocks.Open(cache.Object{Key: m.handleID, Size: m.size, MD5: m.md5}, n.fsys.fetcher(m))
		if local, ok := h.reader.LocalFile(); ok {
			h.local = local
		}
	}
	return h.reader, h.local, h.meta.size
}

// PassthroughFd lets the kernel read a file that is whole in the disk cache
// straight from the local copy (FUSE passthrough), without a round trip
// through synfs per read. go-fuse asks once, at open; where the kernel
// cannot, reads splice from the same file instead.
func (h *fileHandle) PassthroughFd() (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.write || h.local == nil {
		return 0, false
	}
	return int(h.local.Fd()), true
}

func (h *fileHandle) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range append(h.old, h.reader) {
		if r != nil {
			r.Close()
		}
	}
	for _, l := range append(h.oldLocal, h.local) {
		if l != nil {
			l.Close()
		}
	}
}

func (n *fileNode) current() fileMeta {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta
}

func (n *fileNode) entityID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

// update installs fresher metadata; a new handle means new bytes, so the
// kernel's page cache of the old ones is dropped.
func (n *fileNode) update(m fileMeta) {
	n.mu.Lock()
	changed := n.meta.handleID != m.handleID
	n.meta = m
	n.mu.Unlock()
	if changed {
		// Asynchronously: the kernel may hold this inode's lock while it
		// waits for the request that got us here (a close, a lookup).
		go n.NotifyContent(0, 0)
	}
}

// parentDir is the folder the file is in now (renames move it).
func (n *fileNode) parentDir() (*dirNode, bool) {
	_, p := n.Parent()
	if p == nil {
		return nil, false
	}
	d, ok := p.Operations().(*dirNode)
	return d, ok
}

// location is where an upload of the file goes in Synapse.
func (n *fileNode) location() (parentID, name string) {
	name, _ = n.Parent()
	if d, ok := n.parentDir(); ok {
		parentID = d.id
	}
	return parentID, name
}

func (n *fileNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	return 0
}

// fill reports a file being written with its staged size. It takes no
// lock a writer holds: stat must not wait for an upload.
func (n *fileNode) fill(a *fuse.Attr) {
	m := n.current()
	size, mtime := m.size, m.modified
	if staged := n.stagedSize.Load(); staged >= 0 {
		size, mtime = staged, time.Unix(0, n.stagedTime.Load())
	}
	f := n.fsys
	a.Mode = fuse.S_IFREG | f.fileMode()
	a.Nlink = 1
	a.Size = uint64(size)
	a.Blocks = (uint64(size) + 511) / 512
	a.Blksize = blockSize
	a.Uid, a.Gid = f.opts.Owner.UID, f.opts.Owner.GID
	setTimes(a, mtime)
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) == 0 {
		h := &fileHandle{}
		h.source(n)
		if d, ok := n.parentDir(); ok {
			name, _ := n.Parent()
			d.opened(name)
		}
		// The page cache stays valid across opens: update drops it when the
		// file gets a new handle.
		return h, fuse.FOPEN_KEEP_CACHE, 0
	}
	if n.fsys.readOnly {
		return nil, 0, syscall.EROFS
	}
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if err := n.stage(ctx, flags&syscall.O_TRUNC != 0); err != nil {
		return nil, 0, n.fsys.errno("open", n.entityID(), err)
	}
	n.staged.writers++
	return &fileHandle{write: true}, 0, 0
}

func (n *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if got, ok, err := n.readStaged(dest, off); ok {
		if err != nil {
			return nil, n.fsys.errno("read", n.entityID(), err)
		}
		return fuse.ReadResultData(dest[:got]), 0
	}
	h, ok := fh.(*fileHandle)
	if !ok || h.write {
		return nil, syscall.EBADF
	}
	reader, local, size := h.source(n)
	if off >= size {
		return fuse.ReadResultData(nil), 0
	}
	if local != nil {
		// Whole on disk: the kernel splices from the local file.
		return fuse.ReadResultFd(local.Fd(), off, int(min(int64(len(dest)), size-off))), 0
	}
	loan, err := reader.Lend(ctx, off, len(dest))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, n.fsys.errno("read", n.entityID(), err)
	}
	return newLentResult(loan), 0
}

// lentResult answers a read with the cache's own memory: go-fuse writes
// the slices to the kernel with one writev (its Slices path), then calls
// Done, which lets the cache reuse them.
type lentResult struct {
	loan *cache.Loan
	size int
}

func newLentResult(loan *cache.Loan) *lentResult {
	r := &lentResult{loan: loan, size: loan.Len()}
	// go-fuse skips Done when it drops a reply (an interrupted read on a
	// dying connection); the memory must come back all the same.
	runtime.AddCleanup(r, (*cache.Loan).Release, loan)
	return r
}

func (r *lentResult) Size() int { return r.size }

func (r *lentResult) Slices() ([][]byte, fuse.Status) { return r.loan.Slices, fuse.OK }

func (r *lentResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, s := range r.loan.Slices {
		buf = append(buf, s...)
	}
	return buf, fuse.OK
}

func (r *lentResult) Done() { r.loan.Release() }

// readStaged reads a file being written from its spool file, so a writer
// reads back what it wrote.
func (n *fileNode) readStaged(dest []byte, off int64) (int, bool, error) {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if n.staged == nil {
		return 0, false, nil
	}
	got, err := n.staged.entry.File().ReadAt(dest, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return got, true, err
}

func (n *fileNode) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if h, ok := fh.(*fileHandle); !ok || !h.write || n.staged == nil {
		return 0, syscall.EBADF
	}
	got, err := n.staged.writeAt(data, off)
	if err != nil {
		return uint32(got), n.fsys.errno("write", n.entityID(), err)
	}
	return uint32(got), 0
}

// Flush runs at every close(2): what was written is uploaded now, and a
// failure reaches the application as close's error.
func (n *fileNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	if h, ok := fh.(*fileHandle); !ok || !h.write {
		return 0
	}
	n.wmu.Lock()
	defer n.wmu.Unlock()
	return n.commitStaged(ctx)
}

// Fsync makes what is staged so far a version in Synapse.
func (n *fileNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return n.Flush(ctx, fh)
}

func (n *fileNode) Release(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	h, ok := fh.(*fileHandle)
	if !ok {
		return 0
	}
	h.close()
	if h.write {
		n.wmu.Lock()
		n.releaseStaging()
		n.wmu.Unlock()
	}
	return 0
}

// Setattr: truncate is a write; touch (times) is accepted and has no
// effect, since Synapse keeps its own modifiedOn; owners and modes other
// than the mount's cannot be stored: EPERM.
func (n *fileNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	if mode, ok := in.GetMode(); ok && mode&0o7777 != n.fsys.fileMode() {
		return syscall.EPERM
	}
	if uid, ok := in.GetUID(); ok && uid != n.fsys.opts.Owner.UID {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != n.fsys.opts.Owner.GID {
		return syscall.EPERM
	}
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(ctx, fh, int64(size)); errno != 0 {
			return errno
		}
	}
	n.fill(&out.Attr)
	return 0
}

// truncate while the file is open for writing changes the staged bytes; a
// truncate(2) of a file nobody writes is a whole write of its own, uploaded
// at once.
func (n *fileNode) truncate(ctx context.Context, fh gofs.FileHandle, size int64) syscall.Errno {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if n.staged != nil {
		// Part of a write in progress (ftruncate, or open's O_TRUNC): it
		// is uploaded when the writers close.
		if err := n.staged.truncate(size); err != nil {
			return n.fsys.errno("truncate", n.entityID(), err)
		}
		return 0
	}
	if err := n.stage(ctx, size == 0); err != nil {
		return n.fsys.errno("truncate", n.entityID(), err)
	}
	n.staged.writers++
	defer n.releaseStaging()
	if err := n.staged.truncate(size); err != nil {
		return n.fsys.errno("truncate", n.entityID(), err)
	}
	return n.commitStaged(ctx)
}

// fetcher reads one span of a file's object from S3 into the block
// cache's memory.
func (f *Filesystem) fetcher(m fileMeta) cache.Fetch {
	pin := f.pinFor(m.handleID)
	return func(ctx context.Context, off int64, dst [][]byte) error {
		// ReadvAt fills dst or says why not: io.EOF if the object ended
		// first, which the cache, knowing its size, never asks past.
		_, err := f.store.ReadvAt(ctx, m.key, dst, off, pin)
		switch {
		case err == nil:
			// Before the cache writes these bytes to disk, which records
			// them as of this version. (An answer without an ETag, which
			// S3 always sends, could not be pinned: "" keeps it off disk.)
			f.blocks.SetVersion(m.handleID, pin.ETag())
		case errors.Is(err, s3io.ErrChanged):
			// What is on disk is of the old version: the next mount starts
			// afresh with the new one, not with EIO.
			f.blocks.SetVersion(m.handleID, "")
		case errors.Is(err, io.EOF):
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("reading %s at %d: %w", m.key, off, err)
		}
		return nil
	}
}

// pinFor returns the Pin all reads of a handle's object share in this
// mount, whichever open or resolution they come through: the cache keeps
// its bytes under the handle id, so they must all be of one version. A
// mount starts from the version the disk cache holds bytes of, so that
// it completes them rather than mix in another version's.
func (f *Filesystem) pinFor(handleID string) *s3io.Pin {
	f.metaMu.Lock()
	defer f.metaMu.Unlock()
	p := f.pins[handleID]
	if p == nil {
		p = s3io.PinTo(f.blocks.Version(handleID))
		f.pins[handleID] = p
	}
	return p
}

// fileMeta resolves a file's handle, reusing what is known while the
// entity's version and modification time are unchanged. One Synapse call per
// file: listings carry neither size nor handle.
func (f *Filesystem) fileMeta(ctx context.Context, h synapse.EntityHeader) (fileMeta, error) {
	if m, ok := f.knownMeta(h); ok {
		return m, nil
	}
	v, err, _ := f.handles.Do(h.ID, func() (any, error) {
		if m, ok := f.knownMeta(h); ok {
			return m, nil // resolved by a call that ended as this one began
		}
		// Shared by every waiter: not cancelled when the first one gives up.
		handles, err := f.client.EntityFileHandles(context.WithoutCancel(ctx), h.ID)
		if err != nil {
			return fileMeta{}, err
		}
		for _, fh := range handles {
			if fh.IsPreview {
				continue
			}
			m := fileMeta{version: h.VersionNumber, modified: h.ModifiedOn, handleID: fh.ID, key: fh.Key, size: fh.ContentSize, md5: fh.ContentMD5}
			f.rememberMeta(h.ID, m)
			return m, nil
		}
		return fileMeta{}, fmt.Errorf("%s has no data file handle", h.ID)
	})
	if err != nil {
		return fileMeta{}, err
	}
	return v.(fileMeta), nil
}

// knownMeta returns what is known of the file h lists, if it still holds:
// the same version, modified at the same time. A listing without either
// cannot vouch for anything.
func (f *Filesystem) knownMeta(h synapse.EntityHeader) (fileMeta, bool) {
	f.metaMu.Lock()
	defer f.metaMu.Unlock()
	m, ok := f.metas[h.ID]
	ok = ok && h.VersionNumber > 0 && !h.ModifiedOn.IsZero() &&
		m.version == h.VersionNumber && m.modified.Equal(h.ModifiedOn)
	return m, ok
}

// rememberMeta keeps a file's resolved metadata for this mount and, with a
// cache directory, for the next; under metaMu, so that the log's last line
// for an entity is the map's.
func (f *Filesystem) rememberMeta(id string, m fileMeta) {
	f.metaMu.Lock()
	defer f.metaMu.Unlock()
	f.metas[id] = m
	f.metaLog.Record(id, metalog.Entry{Version: m.version, Modified: m.modified, HandleID: m.handleID, Key: m.key, Size: m.size, MD5: m.md5})
}

func metaOf(e metalog.Entry) fileMeta {
	return fileMeta{version: e.Version, modified: e.Modified, handleID: e.HandleID, key: e.Key, size: e.Size, md5: e.MD5}
}

// prefetchFiles resolves the handles of a listing's files in the background,
// since `ls -l` or a scan will ask for each of them next. The Synapse
// client's limiter keeps this inside the service's throttle.
func (f *Filesystem) prefetchFiles(kids []synapse.EntityHeader) {
	go func() {
		for _, k := range kids {
			if !k.IsFile() {
				continue
			}
			f.prefetch <- struct{}{}
			go func() {
				defer func() { <-f.prefetch }()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				if _, err := f.fileMeta(ctx, k); err != nil {
					f.log.Debug("prefetching file metadata", "entity", k.ID, "err", err)
				}
			}()
		}
	}()
}

func (f *Filesystem) fileMode() uint32 {
	if f.opts.FileMode != 0 {
		return f.opts.FileMode & 0o7777
	}
	if f.readOnly {
		return 0o444
	}
	return 0o644
}

func (f *Filesystem) dirMode() uint32 {
	if f.opts.DirMode != 0 {
		return f.opts.DirMode & 0o7777
	}
	if f.readOnly {
		return 0o555
	}
	return 0o755
}
