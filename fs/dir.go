package fs

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/synfs/synfs/cache"
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

	// Where a reader walking the folder is, for fetching small files ahead.
	lastOpened int // index in order of the last file opened; -1 none
	aheadUntil int // files before this index were fetched ahead already
}

func newDirNode(f *Filesystem, id, name string, mtime time.Time) *dirNode {
	return &dirNode{fsys: f, id: id, name: name, mtime: mtime, lastOpened: -1}
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
	d.lastOpened, d.aheadUntil = -1, 0
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
		// A file created here and not yet uploaded is in no listing.
		if c := d.GetChild(name); c != nil {
			if fn, isFile := c.Operations().(*fileNode); isFile && fn.entityID() == "" {
				fn.fill(&out.Attr)
				return c, 0
			}
		}
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
		dn := newDirNode(d.fsys, h.ID, h.Name, h.ModifiedOn)
		dn.fill(&out.Attr)
		return d.NewInode(ctx, dn, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino}), 0
	}
	meta, err := d.fsys.fileMeta(ctx, h)
	if err != nil {
		return nil, d.fsys.errno("lookup", h.ID, err)
	}
	if c := d.GetChild(name); c != nil {
		// The same entity: created here (a temporary inode) or seen before.
		if fn, ok := c.Operations().(*fileNode); ok && (c.StableAttr().Ino == ino || fn.entityID() == h.ID) {
			fn.update(meta)
			fn.fill(&out.Attr)
			return c, 0
		}
	}
	fn := newFileNode(d.fsys, h.ID, meta)
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

// remember puts a header into the cached listing after a change made
// through this mount, so it shows before the TTL brings a fresh listing.
//
// Listings are copied on write: children hands the map and slice out to
// readers that hold no lock.
func (d *dirNode) remember(h synapse.EntityHeader) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.entries == nil {
		return
	}
	entries := maps.Clone(d.entries)
	if _, ok := entries[h.Name]; !ok {
		i, _ := slices.BinarySearch(d.order, h.Name)
		d.order = slices.Insert(slices.Clone(d.order), i, h.Name)
	}
	entries[h.Name] = h
	d.entries = entries
}

// forget drops a name from the cached listing (copy on write too).
func (d *dirNode) forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.entries[name]; !ok {
		return
	}
	entries := maps.Clone(d.entries)
	delete(entries, name)
	d.entries = entries
	if i, found := slices.BinarySearch(d.order, name); found {
		d.order = slices.Delete(slices.Clone(d.order), i, i+1)
	}
}

// entry looks a name up in the listing.
func (d *dirNode) entry(ctx context.Context, name string) (synapse.EntityHeader, bool, error) {
	entries, _, err := d.children(ctx)
	if err != nil {
		return synapse.EntityHeader{}, false, err
	}
	h, ok := entries[name]
	return h, ok, nil
}

// Create makes a new file. Its entity exists once the first close uploads
// it; until then its inode number is a temporary one.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	f := d.fsys
	if f.readOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if errno := f.checkName(name); errno != 0 {
		return nil, nil, 0, errno
	}
	if _, exists, err := d.entry(ctx, name); err != nil {
		return nil, nil, 0, f.errno("create", d.id, err)
	} else if exists {
		// The kernel asked to create from a stale negative entry: without
		// O_EXCL, open(O_CREAT) opens what is there.
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		child, errno := d.Lookup(ctx, name, out)
		if errno != 0 {
			return nil, nil, 0, errno
		}
		fn, ok := child.Operations().(*fileNode)
		if !ok {
			return nil, nil, 0, syscall.EISDIR
		}
		fh, fuseFlags, errno := fn.Open(ctx, flags)
		return child, fh, fuseFlags, errno
	}
	fn := newFileNode(f, "", fileMeta{})
	child := d.NewInode(ctx, fn, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: f.tempIno.Add(1)})
	d.AddChild(name, child, true)
	fn.wmu.Lock()
	defer fn.wmu.Unlock()
	if err := fn.stage(ctx, true); err != nil {
		d.RmChild(name)
		return nil, nil, 0, f.errno("create", d.id, err)
	}
	fn.staged.writers++
	fn.fill(&out.Attr)
	return child, &fileHandle{write: true}, 0, 0
}

func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := d.fsys
	if f.readOnly {
		return nil, syscall.EROFS
	}
	if errno := f.checkName(name); errno != 0 {
		return nil, errno
	}
	ent, err := f.client.CreateFolder(ctx, name, d.id)
	if synapse.IsConflict(err) {
		return nil, syscall.EEXIST
	}
	if err != nil {
		return nil, f.errno("mkdir", d.id, err)
	}
	d.remember(synapse.EntityHeader{ID: ent.ID, Name: ent.Name, Type: synapse.TypeFolder, CreatedOn: ent.CreatedOn, ModifiedOn: ent.ModifiedOn})
	ino, _ := inodeOf(ent.ID)
	dn := newDirNode(f, ent.ID, ent.Name, ent.ModifiedOn)
	dn.entries, dn.listed = map[string]synapse.EntityHeader{}, time.Now() // new: known empty
	dn.fill(&out.Attr)
	return d.NewInode(ctx, dn, gofs.StableAttr{Mode: fuse.S_IFDIR, Ino: ino}), 0
}

// Unlink moves the file to Synapse's trash can; its S3 object stays, so
// a restore from the trash brings it back whole.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	f := d.fsys
	if f.readOnly {
		return syscall.EROFS
	}
	h, ok, err := d.entry(ctx, name)
	switch {
	case err != nil:
		return f.errno("unlink", d.id, err)
	case !ok:
		return syscall.ENOENT
	case h.IsFolder():
		return syscall.EISDIR
	}
	if err := f.client.DeleteEntity(ctx, h.ID); err != nil && !synapse.IsNotFound(err) {
		return f.errno("unlink", h.ID, err)
	}
	d.forget(name)
	d.discardChild(name)
	return 0
}

// discardChild drops what is staged for a file that no longer exists, so
// its close does not try to version an entity in the trash.
func (d *dirNode) discardChild(name string) {
	if c := d.GetChild(name); c != nil {
		if fn, ok := c.Operations().(*fileNode); ok {
			fn.discardStaged()
		}
	}
}

// Rmdir trashes an empty folder; emptiness is asked of Synapse, not of
// the cached listing, so files added elsewhere are not trashed with it.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	f := d.fsys
	if f.readOnly {
		return syscall.EROFS
	}
	h, ok, err := d.entry(ctx, name)
	switch {
	case err != nil:
		return f.errno("rmdir", d.id, err)
	case !ok:
		return syscall.ENOENT
	case !h.IsFolder():
		return syscall.ENOTDIR
	}
	if errno := f.checkEmpty(ctx, h.ID); errno != 0 {
		return errno
	}
	if err := f.client.DeleteEntity(ctx, h.ID); err != nil && !synapse.IsNotFound(err) {
		return f.errno("rmdir", h.ID, err)
	}
	d.forget(name)
	return 0
}

func (f *Filesystem) checkEmpty(ctx context.Context, folderID string) syscall.Errno {
	for _, err := range f.client.Children(ctx, folderID) {
		if err != nil {
			return f.errno("rmdir", folderID, err)
		}
		return syscall.ENOTEMPTY
	}
	return 0
}

// Rename changes the entity's name and parent. An existing target goes to
// the trash first, as rename(2) replaces it. Synapse refuses moves across
// storage locations: EXDEV, so mv falls back to copy and delete.
func (d *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := d.fsys
	if f.readOnly {
		return syscall.EROFS
	}
	np, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if flags&unix_RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	if errno := f.checkName(newName); errno != 0 {
		return errno
	}
	src, ok, err := d.entry(ctx, name)
	if err != nil {
		return f.errno("rename", d.id, err)
	}
	if !ok {
		return syscall.ENOENT
	}
	dst, exists, err := np.entry(ctx, newName)
	if err != nil {
		return f.errno("rename", np.id, err)
	}
	if exists {
		switch {
		case dst.ID == src.ID:
			return 0
		case flags&unix_RENAME_NOREPLACE != 0:
			return syscall.EEXIST
		case dst.IsFolder() && !src.IsFolder():
			return syscall.EISDIR
		case !dst.IsFolder() && src.IsFolder():
			return syscall.ENOTDIR
		}
		if dst.IsFolder() {
			if errno := f.checkEmpty(ctx, dst.ID); errno != 0 {
				return errno
			}
		}
		if err := f.client.DeleteEntity(ctx, dst.ID); err != nil && !synapse.IsNotFound(err) {
			return f.errno("rename", dst.ID, err)
		}
		np.forget(newName)
	}
	moved, err := f.moveEntity(ctx, src.ID, newName, np.id)
	if err != nil && exists {
		// rename(2) failed, so the target must still be there.
		if rerr := f.client.RestoreEntity(context.WithoutCancel(ctx), dst.ID); rerr != nil {
			f.log.Error("rename failed and the replaced target could not be restored from the trash", "target", dst.ID, "err", rerr)
		} else {
			np.remember(dst)
		}
	}
	if synapse.IsBadRequest(err) {
		f.log.Warn("Synapse refused the move", "entity", src.ID, "to", np.id, "err", err)
		return syscall.EXDEV
	}
	if err != nil {
		return f.errno("rename", src.ID, err)
	}
	if exists {
		np.discardChild(newName)
	}
	d.forget(name)
	src.Name, src.ModifiedOn = moved.Name, moved.ModifiedOn
	np.remember(src)
	return 0
}

// moveEntity renames and re-parents, re-reading on a stale etag.
func (f *Filesystem) moveEntity(ctx context.Context, id, name, parentID string) (*synapse.Entity, error) {
	for attempt := 0; ; attempt++ {
		ent, err := f.client.GetEntity(ctx, id)
		if err != nil {
			return nil, err
		}
		ent.Name, ent.ParentID = name, parentID
		moved, err := f.client.UpdateEntity(ctx, ent)
		if !synapse.IsPreconditionFailed(err) || attempt >= 5 {
			return moved, err
		}
	}
}

// The renameat2 flags (linux/fs.h).
const (
	unix_RENAME_NOREPLACE = 1 << 0
	unix_RENAME_EXCHANGE  = 1 << 1
)

// Synapse has no symbolic or hard links and no device files.
func (d *dirNode) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.fsys.notWritableOr(syscall.EPERM)
}

func (d *dirNode) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.fsys.notWritableOr(syscall.EPERM)
}

func (d *dirNode) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.fsys.notWritableOr(syscall.EPERM)
}

// Setattr on a folder: times are accepted (Synapse keeps its own), owners
// and modes other than the mount's cannot be stored.
func (d *dirNode) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	f := d.fsys
	if f.readOnly {
		return syscall.EROFS
	}
	if mode, ok := in.GetMode(); ok && mode&0o7777 != f.dirMode() {
		return syscall.EPERM
	}
	if uid, ok := in.GetUID(); ok && uid != f.opts.Owner.UID {
		return syscall.EPERM
	}
	if gid, ok := in.GetGID(); ok && gid != f.opts.Owner.GID {
		return syscall.EPERM
	}
	d.fill(&out.Attr)
	return 0
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

// A process that reads a folder's files one after another (cat *, a
// loader walking a dataset) pays S3's first-byte latency per file; fetching
// the next few small files while it reads one hides it. Bounded in count
// and size, and only while the opens follow the listing's order.
const (
	smallFilesAhead = 8
	smallFileMax    = 4 << 20
)

// opened notes that name was opened for reading and, when the opens walk
// the listing in order, fetches the next small files ahead.
func (d *dirNode) opened(name string) {
	d.mu.Lock()
	i, found := slices.BinarySearch(d.order, name)
	if !found {
		d.mu.Unlock()
		return
	}
	inOrder := d.lastOpened >= 0 && (i == d.lastOpened+1 || i == d.lastOpened)
	d.lastOpened = i
	var next []synapse.EntityHeader
	if inOrder {
		from := max(i+1, d.aheadUntil)
		for j := from; j < min(len(d.order), i+1+smallFilesAhead); j++ {
			if h := d.entries[d.order[j]]; h.IsFile() {
				next = append(next, h)
			}
			d.aheadUntil = j + 1
		}
	}
	d.mu.Unlock()
	for _, h := range next {
		d.fsys.fetchAhead(h)
	}
}

// fetchAhead reads a small file into the cache in the background, at most
// smallFilesAhead at a time; opened queues each file once per listing.
func (f *Filesystem) fetchAhead(h synapse.EntityHeader) {
	m, ok := f.knownMeta(h)
	if !ok || m.size > smallFileMax || m.size == 0 {
		return
	}
	go func() {
		f.ahead <- struct{}{}
		defer func() { <-f.ahead }()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r := f.blocks.Open(cache.Object{Key: m.handleID, Size: m.size, MD5: m.md5}, f.fetcher(m))
		defer r.Close()
		loan, err := r.Lend(ctx, 0, int(m.size))
		loan.Release()
		if err != nil && !errors.Is(err, io.EOF) {
			f.log.Debug("fetching a small file ahead", "entity", h.ID, "err", err)
		}
	}()
}
