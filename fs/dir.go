package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/synfs/synfs/synapse"
)

// dirNode is a Synapse Folder. Its children are listed on first use and
// trusted for the metadata TTL.
type dirNode struct {
	gofs.Inode
	fsys  *Filesystem
	id    string
	name  string
	mtime time.Time

	mu      sync.Mutex // held across a listing so that one directory is listed once at a time
	listed  time.Time
	entries map[string]synapse.EntityHeader
	order   []string // names in Synapse's order (by name)
}

var (
	_ gofs.NodeLookuper  = (*dirNode)(nil)
	_ gofs.NodeReaddirer = (*dirNode)(nil)
	_ gofs.NodeGetattrer = (*dirNode)(nil)
	_ gofs.NodeMkdirer   = (*dirNode)(nil)
	_ gofs.NodeCreater   = (*dirNode)(nil)
	_ gofs.NodeUnlinker  = (*dirNode)(nil)
	_ gofs.NodeRmdirer   = (*dirNode)(nil)
	_ gofs.NodeRenamer   = (*dirNode)(nil)
	_ gofs.NodeSymlinker = (*dirNode)(nil)
	_ gofs.NodeLinker    = (*dirNode)(nil)
	_ gofs.NodeMknoder   = (*dirNode)(nil)
	_ gofs.NodeSetattrer = (*dirNode)(nil)
	_ gofs.NodeStatfser  = (*dirNode)(nil)
)

// children returns the listing, from Synapse when it is older than the TTL.
func (d *dirNode) children(ctx context.Context) (map[string]synapse.EntityHeader, []string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.entries != nil && time.Since(d.listed) < d.fsys.opts.MetadataTTL {
		return d.entries, d.order, nil
	}
	kids, err := d.fsys.client.ListChildren(ctx, d.id)
	if err != nil {
		return nil, nil, err
	}
	entries := make(map[string]synapse.EntityHeader, len(kids))
	order := make([]string, 0, len(kids))
	for _, k := range kids {
		entries[k.Name] = k
		order = append(order, k.Name)
	}
	d.entries, d.order, d.listed = entries, order, time.Now()
	d.fsys.prefetchFiles(kids)
	return entries, order, nil
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	entries, _, err := d.children(ctx)
	if err != nil {
		return nil, d.fsys.errno("lookup", d.id, err)
	}
	h, ok := entries[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	ino, ok := inodeOf(h.ID)
	if !ok {
		return nil, syscall.ENOENT
	}
	if h.IsFolder() {
		if c := d.GetChild(name); c != nil && c.StableAttr().Ino == ino {
			if dn, ok := c.Operations().(*dirNode); ok {
				dn.fill(&out.Attr)
				return c, 0
			}
		}
		dn := &dirNode{fsys: d.fsys, id: h.ID, name: h.Name, mtime: h.ModifiedOn}
		dn.fill(&out.Attr)
		return d.NewInode(ctx, dn, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino}), 0
	}
	meta, err := d.fsys.fileMeta(ctx, h)
	if err != nil {
		return nil, d.fsys.errno("lookup", h.ID, err)
	}
	if c := d.GetChild(name); c != nil && c.StableAttr().Ino == ino {
		if fn, ok := c.Operations().(*fileNode); ok {
			fn.update(meta)
			fn.fill(&out.Attr)
			return c, 0
		}
	}
	fn := &fileNode{fsys: d.fsys, id: h.ID, meta: meta}
	fn.fill(&out.Attr)
	return d.NewInode(ctx, fn, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: ino}), 0
}

func (d *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	entries, order, err := d.children(ctx)
	if err != nil {
		return nil, d.fsys.errno("readdir", d.id, err)
	}
	list := make([]fuse.DirEntry, 0, len(order)+2)
	self := d.StableAttr().Ino
	parent := self
	if _, p := d.Parent(); p != nil {
		parent = p.StableAttr().Ino
	}
	list = append(list, fuse.DirEntry{Name: ".", Ino: self, Mode: fuse.S_IFDIR}, fuse.DirEntry{Name: "..", Ino: parent, Mode: fuse.S_IFDIR})
	for _, name := range order {
		h := entries[name]
		ino, _ := inodeOf(h.ID)
		mode := uint32(fuse.S_IFREG)
		if h.IsFolder() {
			mode = fuse.S_IFDIR
		}
		list = append(list, fuse.DirEntry{Name: name, Ino: ino, Mode: mode})
	}
	return gofs.NewListDirStream(list), 0
}

func (d *dirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	return 0
}

func (d *dirNode) fill(a *fuse.Attr) {
	f := d.fsys
	a.Mode = fuse.S_IFDIR | f.dirMode()
	a.Nlink = 2
	a.Size = 4096
	a.Blocks = 8
	a.Blksize = 4096
	a.Uid, a.Gid = f.opts.Owner.UID, f.opts.Owner.GID
	setTimes(a, d.mtime)
}

// The changes a read-only mount refuses. The kernel already refuses them on
// an "ro" mount; these answer for anything that slips past it.
func (d *dirNode) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *dirNode) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (d *dirNode) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }
func (d *dirNode) Rmdir(context.Context, string) syscall.Errno  { return syscall.EROFS }
func (d *dirNode) Rename(context.Context, string, gofs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}

func (d *dirNode) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *dirNode) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *dirNode) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (d *dirNode) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func setTimes(a *fuse.Attr, t time.Time) {
	a.SetTimes(&t, &t, &t)
}

// Statfs answers df and the tools that check a filesystem before using it:
// Synapse has no fixed capacity, so only the name limit is meaningful.
func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = blockSize
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}
