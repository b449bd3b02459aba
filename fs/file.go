package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/synfs/synfs/synapse"
)

// fileMeta is what reading a file needs: its current file handle. A handle's
// bytes never change, so the handle id is the cache key.
type fileMeta struct {
	version  int64
	modified time.Time
	handleID string
	key      string
	size     int64
	md5      string
}

// fileNode is a Synapse FileEntity.
type fileNode struct {
	gofs.Inode
	fsys *Filesystem
	id   string

	mu   sync.Mutex
	meta fileMeta
}

var (
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.NodeOpener    = (*fileNode)(nil)
	_ gofs.NodeReader    = (*fileNode)(nil)
	_ gofs.NodeSetattrer = (*fileNode)(nil)
)

func (n *fileNode) current() fileMeta {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.meta
}

// update installs fresher metadata; a new handle means new bytes, so the
// kernel's page cache of the old ones is dropped.
func (n *fileNode) update(m fileMeta) {
	n.mu.Lock()
	changed := n.meta.handleID != m.handleID
	n.meta = m
	n.mu.Unlock()
	if changed {
		n.NotifyContent(0, 0)
	}
}

func (n *fileNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	return 0
}

func (n *fileNode) fill(a *fuse.Attr) {
	m := n.current()
	f := n.fsys
	a.Mode = fuse.S_IFREG | f.fileMode()
	a.Nlink = 1
	a.Size = uint64(m.size)
	a.Blocks = (uint64(m.size) + 511) / 512
	a.Blksize = blockSize
	a.Uid, a.Gid = f.opts.Owner.UID, f.opts.Owner.GID
	setTimes(a, m.modified)
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	// The page cache stays valid across opens: it is dropped in update when
	// the file gets a new handle.
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	m := n.current()
	got, err := n.fsys.blocks.ReadAt(ctx, m.handleID, m.size, dest, off, n.fsys.fetcher(m))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, n.fsys.errno("read", n.id, err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

func (n *fileNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// fetcher reads one span of a file's object from S3 for the block cache.
func (f *Filesystem) fetcher(m fileMeta) func(ctx context.Context, off, length int64) ([]byte, error) {
	return func(ctx context.Context, off, length int64) ([]byte, error) {
		buf := make([]byte, length)
		got, err := f.store.ReadAt(ctx, m.key, buf, off, "")
		if int64(got) == length {
			return buf, nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading %s at %d: %w", m.key, off, err)
	}
}

// fileMeta resolves a file's handle, reusing what is known while the
// entity's version and modification time are unchanged. One Synapse call per
// file: listings carry neither size nor handle.
func (f *Filesystem) fileMeta(ctx context.Context, h synapse.EntityHeader) (fileMeta, error) {
	f.metaMu.Lock()
	m, ok := f.metas[h.ID]
	f.metaMu.Unlock()
	if ok && m.version == h.VersionNumber && m.modified.Equal(h.ModifiedOn) {
		return m, nil
	}
	v, err, _ := f.handles.Do(h.ID, func() (any, error) {
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
			f.metaMu.Lock()
			f.metas[h.ID] = m
			f.metaMu.Unlock()
			return m, nil
		}
		return fileMeta{}, fmt.Errorf("%s has no data file handle", h.ID)
	})
	if err != nil {
		return fileMeta{}, err
	}
	return v.(fileMeta), nil
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
