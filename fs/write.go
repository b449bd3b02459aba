package fs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"mime"
	"path"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/synfs/synfs/cache"
	"github.com/synfs/synfs/fs/spool"
	"github.com/synfs/synfs/s3io"
	"github.com/synfs/synfs/synapse"
)

// The write path exists only on external read-write STS folders. Bytes are
// staged in a spool file; on flush (close), fsync or recovery they are
// uploaded to <baseKey>/<uuid>/<name>, registered as an external file handle
// and made the file's new version. A staged file leaves the spool only once
// all of that succeeded: nothing closed is lost to a crash or a failure.

// synapseNameRE is the set of names Synapse can hold.
var synapseNameRE = regexp.MustCompile(`^[a-zA-Z0-9,_. \-+()']+$`)

// checkName refuses, with EINVAL, a name Synapse cannot hold (it would
// store a trimmed one, or refuse it), and says why in the log.
func (f *Filesystem) checkName(name string) syscall.Errno {
	why := ""
	switch {
	case len(name) > 256:
		why = "longer than 256 characters"
	case strings.TrimSpace(name) != name:
		why = "leading or trailing spaces (Synapse trims them)"
	case !synapseNameRE.MatchString(name):
		why = "characters outside letters, digits, space and , _ . - + ( ) '"
	default:
		return 0
	}
	f.log.Warn("name refused: Synapse cannot hold it", "name", name, "why", why)
	return syscall.EINVAL
}

// staging is a file's bytes being written: one spool entry shared by every
// open writable handle of the file, so two writers through this mount see
// one file and their uploads are serialised by fileNode.wmu.
type staging struct {
	node    *fileNode
	entry   *spool.Entry
	writers int
	dirty   bool // written since the last successful commit

	// unlinked: the file was removed while open for writing; its bytes go
	// nowhere.
	unlinked bool

	// sum hashes the staged bytes as long as they were written front to
	// back (cp, a program writing a file out), so close needs no second
	// pass over a large file; nil once a write lands elsewhere.
	sum    hash.Hash
	summed int64
}

func (st *staging) writeAt(data []byte, off int64) (int, error) {
	got, err := st.entry.File().WriteAt(data, off)
	st.dirty = true
	st.node.staleSize(off + int64(got))
	if st.sum != nil {
		if off == st.summed && err == nil {
			st.sum.Write(data)
			st.summed += int64(got)
		} else {
			st.sum = nil
		}
	}
	return got, err
}

func (st *staging) truncate(size int64) error {
	st.dirty = true
	if size != st.summed {
		st.sum = nil
	}
	if err := st.entry.File().Truncate(size); err != nil {
		return err
	}
	st.node.stagedSize.Store(size)
	st.node.stagedTime.Store(time.Now().UnixNano())
	return nil
}

// setStaged installs or clears the staging; n.wmu held. The size it
// publishes lets stat answer without waiting for n.wmu, which an upload
// holds for its whole length.
func (n *fileNode) setStaged(st *staging) {
	n.staged = st
	size := int64(-1)
	if st != nil {
		if info, err := st.entry.File().Stat(); err == nil {
			size = info.Size()
		}
	}
	n.stagedSize.Store(size)
	n.stagedTime.Store(time.Now().UnixNano())
}

// staleSize grows the published staged size to cover a write ending at end.
func (n *fileNode) staleSize(end int64) {
	for {
		cur := n.stagedSize.Load()
		if cur >= end || n.stagedSize.CompareAndSwap(cur, end) {
			break
		}
	}
	n.stagedTime.Store(time.Now().UnixNano())
}

// knownMD5 is the staged bytes' MD5 when writing computed it already.
func (st *staging) knownMD5() (int64, string, bool) {
	if st.sum == nil {
		return 0, "", false
	}
	info, err := st.entry.File().Stat()
	if err != nil || info.Size() != st.summed {
		return 0, "", false
	}
	return st.summed, hex.EncodeToString(st.sum.Sum(nil)), true
}

// stage starts staging n's bytes for writing, from its current bytes unless
// truncate. Called with n.wmu held.
func (n *fileNode) stage(ctx context.Context, truncate bool) error {
	if n.staged != nil {
		if truncate {
			return n.staged.truncate(0)
		}
		return nil
	}
	parentID, name := n.location()
	m := n.current()
	entry, err := n.fsys.spool.Create(spool.Journal{
		Root: n.fsys.opts.FolderID, ParentID: parentID, Name: name, EntityID: n.id, Created: time.Now(),
	})
	if err != nil {
		return fmt.Errorf("staging %s: %w", name, err)
	}
	st := &staging{node: n, entry: entry, dirty: truncate || n.id == "", sum: md5.New()}
	if !truncate && n.id != "" && m.size > 0 {
		// Opening without O_TRUNC starts from the current bytes.
		reader := n.fsys.blocks.Open(cache.Object{Key: m.handleID, Size: m.size, MD5: m.md5}, n.fsys.fetcher(m))
		defer reader.Close()
		r := io.NewSectionReader(readerAtFunc(func(p []byte, off int64) (int, error) {
			return reader.ReadAt(ctx, p, off)
		}), 0, m.size)
		copied, err := io.Copy(io.MultiWriter(entry.File(), st.sum), r)
		if err != nil {
			entry.Remove()
			return fmt.Errorf("copying the current bytes of %s into the spool: %w", n.id, err)
		}
		st.summed = copied
	}
	n.setStaged(st)
	return nil
}

type readerAtFunc func(p []byte, off int64) (int, error)

func (r readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return r(p, off) }

// commitStaged uploads what is staged if it changed. Called with n.wmu held.
func (n *fileNode) commitStaged(ctx context.Context) syscall.Errno {
	st := n.staged
	if st == nil || !st.dirty || st.unlinked {
		return 0
	}
	// A signal to the closing process interrupts the FUSE request; the
	// upload it started must not die with it, or close fails for nothing.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := st.entry.Update(func(j *spool.Journal) { j.Closed = true }); err != nil {
		return n.fsys.errno("stage", n.id, err)
	}
	if err := st.entry.Sync(); err != nil {
		return n.fsys.errno("stage", n.id, err)
	}
	res, err := n.fsys.commit(ctx, st.entry, st)
	if err != nil {
		st.entry.Update(func(j *spool.Journal) { j.Attempts++; j.LastError = err.Error() })
		return n.fsys.writeErrno(n.id, st.entry, err)
	}
	st.dirty = false
	// Later writes through still-open handles version this entity.
	st.entry.Update(func(j *spool.Journal) { j.EntityID, j.Closed, j.Attempts, j.LastError = res.entity.ID, false, 0, "" })
	n.committed(res)
	return 0
}

// committed installs the new version: reads go to the new handle, the
// kernel drops the old bytes, the folder listing shows the entity.
func (n *fileNode) committed(res commitResult) {
	n.mu.Lock()
	newEntity := n.id == ""
	n.id = res.entity.ID
	n.mu.Unlock()
	n.update(res.meta)
	if parent, ok := n.parentDir(); ok {
		parent.remember(res.header)
	}
	if newEntity {
		n.fsys.log.Info("created", "entity", res.entity.ID, "name", res.entity.Name, "size", res.meta.size)
	}
}

// releaseStaging drops a writer; the spool entry goes when nothing is left
// to upload. A failed upload stays in the spool for recovery.
func (n *fileNode) releaseStaging() {
	st := n.staged
	if st == nil {
		return
	}
	st.writers--
	if st.writers > 0 {
		return
	}
	if !st.dirty || st.unlinked {
		n.setStaged(nil)
		st.entry.Remove()
		return
	}
	// Not uploaded (the commit failed, or bytes came after the last flush,
	// as mmap writeback does). The staging stays on the node, so a reopen
	// continues from these bytes rather than older ones, and the mount
	// retries it; the journal says closed, so a later mount recovers it if
	// this one dies first.
	st.entry.Update(func(j *spool.Journal) { j.Closed = true })
	st.entry.Sync()
	n.fsys.failedMu.Lock()
	n.fsys.failed[n] = struct{}{}
	n.fsys.failedMu.Unlock()
	n.fsys.log.Error("staged bytes kept in the spool; the upload is retried", "entity", n.id, "spool", st.entry.ID())
}

// retryFailed uploads again what this mount's closes could not.
func (f *Filesystem) retryFailed(ctx context.Context) {
	f.failedMu.Lock()
	nodes := slices.Collect(maps.Keys(f.failed))
	f.failedMu.Unlock()
	for _, n := range nodes {
		n.wmu.Lock()
		st := n.staged
		if st != nil && st.writers == 0 && n.commitStaged(ctx) == 0 {
			n.setStaged(nil)
			st.entry.Remove()
		}
		done := n.staged == nil || n.staged.writers > 0
		n.wmu.Unlock()
		if done {
			f.failedMu.Lock()
			delete(f.failed, n)
			f.failedMu.Unlock()
		}
	}
}

// discardStaged forgets what is staged for a file that was removed.
func (n *fileNode) discardStaged() {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if n.staged != nil {
		n.staged.unlinked = true
		if n.staged.writers == 0 {
			n.staged.entry.Remove()
			n.setStaged(nil)
		}
	}
}

// commitTimeout bounds one upload; a slow link gets this long per file.
const commitTimeout = time.Hour

type commitResult struct {
	entity *synapse.Entity
	meta   fileMeta
	header synapse.EntityHeader
}

// commit uploads a spool entry's bytes and makes them the file's current
// version in Synapse. It is the whole write protocol, shared by close,
// fsync and recovery.
// st, when not nil, may know the MD5 already.
func (f *Filesystem) commit(ctx context.Context, e *spool.Entry, st *staging) (commitResult, error) {
	j := e.Journal()
	file := e.File()
	size, sum, known := int64(0), "", false
	if st != nil {
		size, sum, known = st.knownMD5()
	}
	if !known {
		var err error
		if size, sum, err = fileMD5(file); err != nil {
			return commitResult{}, fmt.Errorf("reading the spool file: %w", err)
		}
	}
	key := path.Join(f.dest.BaseKey, uuid.NewString(), j.Name)
	ctype := mime.TypeByExtension(path.Ext(j.Name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	if _, err := f.store.Upload(ctx, key, file, size, s3io.UploadOptions{ContentType: ctype}); err != nil {
		return commitResult{}, fmt.Errorf("uploading %s: %w", j.Name, err)
	}
	h, err := f.client.CreateExternalS3FileHandle(ctx, &synapse.S3FileHandle{
		StorageLocationID: f.dest.StorageLocationID, BucketName: f.store.Bucket(), Key: key,
		ContentMD5: sum, ContentSize: size, FileName: j.Name, ContentType: ctype,
	})
	if err != nil {
		return commitResult{}, fmt.Errorf("registering s3://%s/%s: %w", f.store.Bucket(), key, err)
	}
	ent, err := f.attachHandle(ctx, j, h.ID)
	if err != nil {
		return commitResult{}, err
	}
	m := fileMeta{version: ent.VersionNumber, modified: ent.ModifiedOn, handleID: h.ID, key: key, size: size, md5: sum}
	f.rememberMeta(ent.ID, m)
	hdr := synapse.EntityHeader{ID: ent.ID, Name: ent.Name, Type: synapse.TypeFile, VersionNumber: ent.VersionNumber, ModifiedOn: ent.ModifiedOn, CreatedOn: ent.CreatedOn}
	return commitResult{entity: ent, meta: m, header: hdr}, nil
}

// attachHandle makes handle the current data of the journal's file:
// a new FileEntity, or a new version of the existing one. A stale etag is
// someone else's newer version: re-read and version on top of it, so
// neither write is lost.
func (f *Filesystem) attachHandle(ctx context.Context, j spool.Journal, handleID string) (*synapse.Entity, error) {
	id := j.EntityID
	if id == "" {
		ent, err := f.client.CreateFile(ctx, j.Name, j.ParentID, handleID)
		if err == nil {
			return ent, nil
		}
		if !synapse.IsConflict(err) {
			return nil, fmt.Errorf("creating %s in %s: %w", j.Name, j.ParentID, err)
		}
		// Created meanwhile (another mount, the web UI): version it.
		if id, err = f.client.LookupChild(ctx, j.ParentID, j.Name); err != nil {
			return nil, fmt.Errorf("finding %s in %s: %w", j.Name, j.ParentID, err)
		}
	}
	for attempt := 0; ; attempt++ {
		ent, err := f.client.GetEntity(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", id, err)
		}
		ent.DataFileHandleID = handleID
		ent.VersionLabel, ent.VersionComment = "", ""
		updated, err := f.client.UpdateEntity(ctx, ent)
		if err == nil {
			return updated, nil
		}
		if !synapse.IsPreconditionFailed(err) || attempt >= 5 {
			return nil, fmt.Errorf("versioning %s: %w", id, err)
		}
	}
}

func fileMD5(file io.ReaderAt) (int64, string, error) {
	h := md5.New()
	n, err := io.Copy(h, io.NewSectionReader(file, 0, 1<<62))
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// writeErrno is what close or fsync returns when a commit failed: EACCES
// when Synapse refused (only the storage location's creator may register
// files in it), EIO otherwise. Either way the bytes stay in the spool.
func (f *Filesystem) writeErrno(id string, e *spool.Entry, err error) syscall.Errno {
	if synapse.IsForbidden(err) || errors.Is(err, s3io.ErrAccessDenied) {
		f.log.Error("Synapse refused the write; the bytes stay in the spool", "entity", id, "spool", e.ID(), "err", err)
		return syscall.EACCES
	}
	f.log.Error("upload failed; the bytes stay in the spool for synfs recover or the next mount", "entity", id, "spool", e.ID(), "err", err)
	return syscall.EIO
}

// RecoveryResult reports one staged file found from an earlier run.
type RecoveryResult struct {
	Name, ParentID, EntityID string
	Err                      error
}

// Recover finishes the uploads a killed or failed mount left in the spool
// for this folder. Entries another live mount holds are skipped.
func (f *Filesystem) Recover(ctx context.Context) ([]RecoveryResult, error) {
	if f.spool == nil {
		return nil, nil
	}
	pending, err := f.spool.Pending(f.opts.FolderID)
	if err != nil {
		return nil, err
	}
	var out []RecoveryResult
	for _, e := range pending {
		j := e.Journal()
		r := RecoveryResult{Name: j.Name, ParentID: j.ParentID}
		switch {
		case e.Damaged() != nil:
			r.Err = fmt.Errorf("the journal of spool entry %s is damaged; its bytes are kept at %s: %w", e.ID(), e.Path(), e.Damaged())
		case !j.Closed:
			// A writer died mid-write: uploading could replace a good
			// version with torn bytes. The user decides.
			r.Err = fmt.Errorf("%s was never closed (its writer stopped mid-write); the partial bytes are kept at %s", j.Name, e.Path())
		}
		if r.Err != nil {
			e.Close()
			f.log.Warn("not recovered", "name", j.Name, "err", r.Err)
			out = append(out, r)
			continue
		}
		res, err := f.commit(ctx, e, nil)
		if err != nil {
			e.Update(func(j *spool.Journal) { j.Attempts++; j.LastError = err.Error() })
			e.Close()
			r.Err = err
			f.log.Error("recovery failed; the bytes stay in the spool", "name", j.Name, "parent", j.ParentID, "err", err)
		} else {
			e.Remove()
			r.EntityID = res.entity.ID
			f.log.Info("recovered a staged file", "name", j.Name, "entity", res.entity.ID)
		}
		out = append(out, r)
	}
	return out, nil
}
