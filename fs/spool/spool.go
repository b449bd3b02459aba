// Package spool is the local staging area for writes: the bytes of a file
// being written live in a spool file until they are uploaded to S3 and
// registered in Synapse, so that neither a failed upload nor a killed
// mount loses them.
//
// Each entry is two files in one private directory (0700, files 0600):
//
//	<id>.data  the bytes, written by the fs layer through File()
//	<id>.json  the journal: what is needed to finish the job after a crash
//	           (root folder, parent, name, entity to version), never a
//	           secret; rewritten atomically (tmp, fsync, rename, fsync dir)
//
// An entry belongs to one process at a time: its owner holds an exclusive
// flock on the data file (the journal is replaced on each update, so it
// cannot carry the lock). The kernel drops the lock when the owner dies,
// however it dies, so Pending in a later or concurrent mount sees exactly
// the entries nobody is working on. Two mounts of the same folder may share
// a directory; flock works across NFS clients on Linux too.
//
// Durability: Update flushes the data before it writes the journal, so a
// journal saying Closed never survives a crash that its bytes did not.
// With that, a mount killed by SIGKILL, or a power loss, after a file's
// close reached Update(Closed) loses none of its bytes.
//
// Entries that were never closed (the writer crashed mid-write) are kept
// and returned by Pending with Closed false. They are the application's
// partial writes: uploading them over the entity could replace a good
// version with torn bytes, so recovery should report them (Path tells the
// user where the bytes are) and leave the choice to the user; the spool
// never deletes them on its own. Only Remove deletes an entry.
//
// Damage is reported, never dropped: an entry whose journal is unreadable
// (torn JSON, missing fields), or missing while its data file has bytes,
// or whose data file cannot be opened or locked, comes back from Pending,
// for every root, with Damaged() wrapping ErrDamaged and its data untouched. Only the leftovers of an interrupted
// Create (no journal, no bytes) or Remove (journal without data) are
// cleaned up silently, since they hold nothing.
package spool

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrDamaged is wrapped by Entry.Damaged when an entry cannot be finished
// as it stands (journal unreadable, data file unopenable): the bytes are
// kept, and a person has to decide where they belong.
var ErrDamaged = errors.New("spool: journal damaged")

// ErrNotPrivate: the spool directory belongs to another user, who could
// read or replace staged bytes.
var ErrNotPrivate = errors.New("spool: directory is not private")

// Journal is what is needed to finish an upload after a crash. It must
// never hold secrets (tokens, STS keys): it sits on disk.
type Journal struct {
	Root     string `json:"root"`     // the mounted STS folder, e.g. "syn123": recovery handles its own entries only
	ParentID string `json:"parentId"` // folder the file goes in
	Name     string `json:"name"`
	EntityID string `json:"entityId,omitempty"` // existing entity to version; "" = create
	BaseEtag string `json:"baseEtag,omitempty"` // entity etag when the write started; "" if new

	Created time.Time `json:"created"`
	// Closed is set once close or fsync asked for the upload; the bytes
	// are then complete. An entry left with Closed false is a partial write.
	Closed    bool   `json:"closed"`
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// format is the journal's on-disk version; bump it when fields change
// meaning, so an older synfs reports a newer journal instead of misreading it.
const format = 1

type record struct {
	Format int `json:"format"`
	Journal
}

func (j Journal) validate() error {
	switch {
	case j.Root == "":
		return errors.New("no root")
	case j.ParentID == "":
		return errors.New("no parent")
	case j.Name == "":
		return errors.New("no name")
	}
	return nil
}

// Spool is one staging directory. Safe for concurrent use.
type Spool struct {
	dir string
}

// Open makes dir (0700) if needed and tightens it to 0700 if it exists
// looser: staged files are users' data. It refuses a directory owned by
// another user.
func Open(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("spool: %s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("spool: %s belongs to uid %d: %w", dir, st.Uid, ErrNotPrivate)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("spool: tighten %s to 0700: %w", dir, err)
		}
	}
	return &Spool{dir: dir}, nil
}

// DefaultDir is the spool directory when --spool-dir is not given: under
// the user's cache directory, which, unlike /tmp, survives the reboot that
// may be what interrupted an upload.
func DefaultDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	return filepath.Join(d, "synfs", "spool"), nil
}

// Dir is the directory the spool lives in.
func (s *Spool) Dir() string { return s.dir }

// Entry is one staged file, owned (locked) by this process until Remove or
// Close.
type Entry struct {
	s  *Spool
	id string
	f  *os.File // the data file; holds the flock

	mu      sync.Mutex
	j       Journal
	damaged error
	done    bool
}

func (s *Spool) dataPath(id string) string    { return filepath.Join(s.dir, id+".data") }
func (s *Spool) journalPath(id string) string { return filepath.Join(s.dir, id+".json") }

// Create stages a new, empty file described by j (Created defaults to
// now). The journal is durable when Create returns.
func (s *Spool) Create(j Journal) (*Entry, error) {
	if err := j.validate(); err != nil {
		return nil, fmt.Errorf("spool: create: %w", err)
	}
	if j.Created.IsZero() {
		j.Created = time.Now().UTC()
	}
	var err error
	for range 3 {
		var e *Entry
		if e, err = s.create(j); !errors.Is(err, errRaced) {
			return e, err
		}
		// Another process's Pending took the new, empty file for the
		// leftover of a crash: try again under a new id.
	}
	return nil, fmt.Errorf("spool: create: %w", err)
}

var errRaced = errors.New("lost a race with another process for a new entry")

func (s *Spool) create(j Journal) (*Entry, error) {
	id, err := newID()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.dataPath(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: create: %w", err)
	}
	// Data first, then journal: a crash in between leaves an empty data
	// file without journal, which Pending knows to be harmless. Until the
	// lock is taken, another Pending may take it for such a leftover and
	// delete it; lock, then check the file is still there.
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errRaced
		}
		return nil, fmt.Errorf("spool: create: lock: %w", err)
	}
	if same, err := stillAt(f, s.dataPath(id)); err != nil || !same {
		release(f)
		if err != nil {
			return nil, fmt.Errorf("spool: create: %w", err)
		}
		return nil, errRaced
	}
	e := &Entry{s: s, id: id, f: f, j: j}
	if err := e.writeJournal(j); err != nil {
		os.Remove(s.dataPath(id))
		release(f)
		return nil, fmt.Errorf("spool: create: %w", err)
	}
	return e, nil
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("spool: new id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// lock takes the entry's exclusive lock without waiting: a held lock means
// a live process owns the entry.
func lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			return err
		}
	}
}

// release unlocks before closing. Closing alone would leave the lock to
// any copy of the descriptor a fork made (os/exec, fusermount) until that
// child execs, and Pending elsewhere would find the entry busy meanwhile.
func release(f *os.File) error {
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return f.Close()
}

// stillAt says whether path still names f: a Remove may have deleted it
// between our open and our lock.
func stillAt(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// ID names the entry in logs and in the spool directory.
func (e *Entry) ID() string { return e.id }

// Path is the data file, for telling users where unrecovered bytes are.
func (e *Entry) Path() string { return e.s.dataPath(e.id) }

// Journal is a copy of the entry's journal.
func (e *Entry) Journal() Journal {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.j
}

// Damaged is non-nil, wrapping ErrDamaged, when Pending could not read the
// entry: its journal is unreadable (Journal is then zero but for Created,
// the data file's time; the entry is still locked and Update may repair
// it) or its data file could not be opened or locked (File is then nil and
// Update and Remove refuse: the entry is not ours).
func (e *Entry) Damaged() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.damaged
}

// File is the data file, open read-write; nil for a damaged entry whose
// data could not be opened. The Entry owns it (and its lock): do not
// close it; Remove or Close do.
func (e *Entry) File() *os.File { return e.f }

// Update changes the journal and makes the change durable. It flushes the
// data first, so the journal never describes bytes the disk does not hold.
// On a damaged entry it writes a fresh journal (a repair) from fn's edits
// of an empty one.
func (e *Entry) Update(fn func(*Journal)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return fmt.Errorf("spool: update %s: %w", e.id, err)
	}
	j := e.j
	fn(&j)
	if err := j.validate(); err != nil {
		return fmt.Errorf("spool: update %s: %w", e.id, err)
	}
	if err := e.f.Sync(); err != nil {
		return fmt.Errorf("spool: update %s: flush data: %w", e.id, err)
	}
	if err := e.writeJournal(j); err != nil {
		return fmt.Errorf("spool: update %s: %w", e.id, err)
	}
	e.j, e.damaged = j, nil
	return nil
}

// usable says why the entry can no longer be changed, if it cannot.
func (e *Entry) usable() error {
	switch {
	case e.done:
		return os.ErrClosed
	case e.f == nil:
		return e.damaged
	}
	return nil
}

// Sync flushes the data to disk. The journal needs no flush here: every
// Create and Update leaves it durable.
func (e *Entry) Sync() error {
	e.mu.Lock()
	err := e.usable()
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("spool: sync %s: %w", e.id, err)
	}
	if err := e.f.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", e.id, err)
	}
	return nil
}

// writeJournal replaces the journal atomically: a crash leaves the old one
// or the new one, never a mix.
func (e *Entry) writeJournal(j Journal) error {
	b, err := json.MarshalIndent(record{Format: format, Journal: j}, "", "  ")
	if err != nil {
		return err
	}
	path := e.s.journalPath(e.id)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(e.s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write journal: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Remove deletes the entry, after its upload and registration succeeded.
// The data goes first: a crash in between leaves a journal without data,
// which Pending recognises as a finished job.
func (e *Entry) Remove() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable(); err != nil {
		return fmt.Errorf("spool: remove %s: %w", e.id, err)
	}
	e.done = true
	defer release(e.f) // drops the lock last, once nothing is left to claim
	err := os.Remove(e.s.dataPath(e.id))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		err = os.Remove(e.s.journalPath(e.id))
	}
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		err = syncDir(e.s.dir)
	}
	if err != nil {
		return fmt.Errorf("spool: remove %s: %w", e.id, err)
	}
	return nil
}

// Close gives the entry up without deleting it (an upload failed and the
// mount is ending): the next Pending, in any process, can claim it.
func (e *Entry) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done || e.f == nil {
		e.done = true
		return nil
	}
	e.done = true
	if err := release(e.f); err != nil {
		return fmt.Errorf("spool: close %s: %w", e.id, err)
	}
	return nil
}

// Pending claims the entries of root that no live process owns, closed or
// not, oldest first, plus every damaged entry (whose root may be unknown).
// The caller owns what it gets: Remove each once its upload succeeded,
// Close the rest. Trouble with one entry makes it a damaged entry, never
// an error that would hide the others: the error is for an unreadable
// directory only.
func (s *Spool) Pending(root string) ([]*Entry, error) {
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: pending: %w", err)
	}
	ids := map[string]bool{}
	for _, d := range names {
		name := d.Name()
		for _, ext := range []string{".data", ".json"} {
			if id, ok := strings.CutSuffix(name, ext); ok && validID(id) {
				ids[id] = true
			}
		}
	}
	var out []*Entry
	for id := range ids {
		if e := s.claim(id, root); e != nil {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *Entry) int {
		if c := a.j.Created.Compare(b.j.Created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return out, nil
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// claim locks entry id if it belongs to root (or is damaged) and no one
// holds it. nil: another root's, owned by a live process, or debris that
// holds no bytes (removed).
func (s *Spool) claim(id, root string) *Entry {
	// A cheap look first, without the lock, so that entries of other roots
	// are never locked and another mount never finds them busy. The
	// journal is replaced by rename, so this read sees a whole version.
	j, jerr := s.readJournal(id)
	if jerr == nil && j.Root != root {
		return nil
	}
	e := &Entry{s: s, id: id, j: j}
	damaged := func(what string, err error) *Entry {
		if e.f != nil {
			release(e.f)
			e.f = nil // not ours: Update and Remove refuse
		}
		if e.j.Created.IsZero() {
			if fi, err := os.Stat(e.Path()); err == nil {
				e.j.Created = fi.ModTime().UTC()
			}
		}
		e.damaged = fmt.Errorf("%w: entry %s (data at %s): %s: %w", ErrDamaged, id, e.Path(), what, err)
		return e
	}

	f, err := os.OpenFile(s.dataPath(id), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// A journal without data: a Remove was interrupted after the data
		// went. The job was done; the journal is debris.
		os.Remove(s.journalPath(id))
		return nil
	}
	if err != nil {
		return damaged("open data", err)
	}
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil // a live process owns it
		}
		return damaged("lock", err)
	}
	e.f = f
	if same, err := stillAt(f, s.dataPath(id)); err != nil {
		return damaged("stat data", err)
	} else if !same {
		release(f) // removed between our open and our lock
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return damaged("stat data", err)
	}
	os.Remove(s.journalPath(id) + ".tmp") // an update cut short; the journal it was replacing stands

	e.j, jerr = s.readJournal(id) // again, now that nobody else can change it
	switch {
	case jerr == nil && e.j.Root != root:
		release(f)
		return nil
	case jerr == nil:
		return e
	case errors.Is(jerr, fs.ErrNotExist) && fi.Size() == 0:
		// A Create cut short before its journal: nothing was ever written.
		os.Remove(s.dataPath(id))
		release(f)
		return nil
	}
	// Keep the lock: the bytes are someone's, and only one process should
	// be reporting (or repairing) them at a time.
	e.j = Journal{Created: fi.ModTime().UTC()}
	e.damaged = fmt.Errorf("%w: entry %s (%d bytes kept at %s): %w", ErrDamaged, id, fi.Size(), e.Path(), jerr)
	return e
}

// readJournal reads and checks one journal; errors other than a missing
// file mean damage.
func (s *Spool) readJournal(id string) (Journal, error) {
	b, err := os.ReadFile(s.journalPath(id))
	if err != nil {
		return Journal{}, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Journal{}, fmt.Errorf("unreadable journal: %w", err)
	}
	if r.Format != format {
		return Journal{}, fmt.Errorf("journal format %d, this synfs reads %d", r.Format, format)
	}
	if err := r.Journal.validate(); err != nil {
		return Journal{}, fmt.Errorf("incomplete journal: %w", err)
	}
	return r.Journal, nil
}
