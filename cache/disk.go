package cache

// The disk tier keeps fetched bytes across restarts, per object:
//
//	<Dir>/<name[:2]>/<name>         data: sparse, bytes at their own offsets
//	<Dir>/<name[:2]>/<name>.ranges  sidecar: the ranges the data file holds
//
// name is the key when it is a plain token (file handle ids are digits),
// else "=" + hex(sha256(key)). Only bytes and ranges are stored, never
// anything about who read them or with which credentials. Anything in Dir
// but two-character directories is not the tier's and is left alone.
//
// Crash safety without fsync: a range enters the sidecar only after its
// bytes were written, and the sidecar is replaced by rename and carries a
// CRC, so a torn one is detected and its entry dropped. A power loss can
// still lose data written before its sidecar, so the sidecar records the
// boot it was written in: an entry from another boot is kept only if it is
// whole and its MD5 verifies again; when in doubt, the entry is dropped.
//
// The sidecar also records the version (S3 ETag) its bytes are of, as the
// caller gave it to SetVersion: an object in an external bucket can be
// overwritten under the same key and file handle, and a partial copy must
// then not be completed with the new version's bytes in a later process.
// Once the caller finds the object changed, the entry is marked so: this
// process goes on serving it (its reads are pinned to that version), and
// the next one deletes it at startup and fetches the new version afresh.
//
// Only the writer goroutine creates, writes and deletes files (startup
// aside), so a key's old files are never deleted under a newer entry.

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	sidecarSuffix = ".ranges"
	tmpSuffix     = ".tmp"
	// The version after the magic: an older tier's files fail to decode
	// and are deleted at startup.
	sidecarMagic = "SYNFSRG2"
	// sidecarInterval bounds how often one entry's sidecar is rewritten:
	// random reads add ranges hundreds of times a second. A crash loses at
	// most this much range metadata, never correctness.
	sidecarInterval = time.Second
	// touchInterval bounds how often a read refreshes a data file's mtime,
	// which is what orders the LRU after a restart.
	touchInterval = time.Minute
)

type diskTier struct {
	dir  string
	max  int64
	boot string
	// verifySem runs one MD5 at a time: hashing is CPU the readers need.
	verifySem chan struct{}

	// Guarded by Cache.mu.
	entries   map[string]*diskEntry
	bytes     int64
	queue     []diskJob
	running   bool                    // the writer goroutine exists
	wake      chan struct{}           // wakes a writer waiting for sidecars to fall due
	progress  chan struct{}           // closed when the writer or a verification moved on
	dirty     map[*diskEntry]struct{} // sidecars to rewrite
	forced    int                     // Flush calls waiting: sidecars are due at once
	verifying int
	deleting  map[string]bool // keys whose files a queued job will delete
	bad       map[string]bool // keys whose bytes failed their MD5: not stored again
	// versions are what SetVersion said of keys: what this process
	// stores of a key is recorded as of that version, and nothing of a
	// key told "" (changed) is stored.
	versions map[string]string
	err      error // first error since the last Flush
}

type diskEntry struct {
	key     string
	rel     string // data file, relative to dir
	size    int64
	md5     string
	version string // of the object the bytes are of; "" if never told
	ranges  []span // sorted, merged
	bytes   int64  // in ranges, plus writes in progress
	lastUse time.Time
	touched time.Time // last mtime set
	savedAt time.Time // last sidecar write

	verified   bool // whole, and the MD5 matched
	changed    bool // the object is no longer of version: deleted at the next startup
	needVerify bool // not to be served before an MD5 check
	verifying  bool
	busy       int // reads, writes, verification in progress: not evictable
	gone       bool
}

type span struct{ start, end int64 }

// diskJob writes an extent's bytes, or deletes a removed entry's files.
type diskJob struct {
	e   *extent
	del *diskEntry
}

func (d *diskEntry) whole() bool {
	return len(d.ranges) == 1 && d.ranges[0] == span{0, d.size}
}

func openDisk(dir string, maxBytes int64, boot string) (*diskTier, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	t := &diskTier{
		dir: dir, max: maxBytes, boot: boot,
		verifySem: make(chan struct{}, 1),
		entries:   map[string]*diskEntry{},
		dirty:     map[*diskEntry]struct{}{},
		deleting:  map[string]bool{},
		bad:       map[string]bool{},
		versions:  map[string]string{},
	}
	if err := t.scan(); err != nil {
		return nil, err
	}
	for _, v := range t.evictLocked(0, nil) {
		if err := t.removeFiles(v.rel); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// scan finds the entries a previous process left; whatever is incomplete,
// torn or in doubt is deleted.
func (t *diskTier) scan() error {
	subs, err := os.ReadDir(t.dir)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if !s.IsDir() || len(s.Name()) != 2 {
			continue
		}
		sub := filepath.Join(t.dir, s.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			return err
		}
		names := map[string]bool{}
		for _, f := range files {
			n := f.Name()
			switch {
			case strings.HasSuffix(n, tmpSuffix):
				_ = os.Remove(filepath.Join(sub, n))
			case strings.HasSuffix(n, sidecarSuffix):
				names[strings.TrimSuffix(n, sidecarSuffix)] = true
			case validName(n):
				names[n] = true
			}
		}
		for name := range names {
			rel := filepath.Join(s.Name(), name)
			d := t.loadEntry(s.Name(), name)
			if d == nil || t.entries[d.key] != nil {
				if err := t.removeFiles(rel); err != nil {
					return err
				}
				continue
			}
			t.entries[d.key] = d
			t.bytes += d.bytes
		}
	}
	return nil
}

func (t *diskTier) loadEntry(sub, name string) *diskEntry {
	rel := filepath.Join(sub, name)
	b, err := os.ReadFile(t.path(rel) + sidecarSuffix)
	if err != nil {
		return nil
	}
	sc, err := decodeSidecar(b)
	if err != nil || sc.changed || nameFor(sc.key) != name || subFor(name) != sub {
		return nil
	}
	fi, err := os.Stat(t.path(rel))
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if n := len(sc.ranges); n > 0 && sc.ranges[n-1].end > fi.Size() {
		return nil
	}
	d := &diskEntry{
		key: sc.key, rel: rel, size: sc.size, md5: sc.md5, version: sc.version, ranges: sc.ranges,
		lastUse: fi.ModTime(), touched: fi.ModTime(), verified: sc.verified,
	}
	for _, r := range d.ranges {
		d.bytes += r.end - r.start
	}
	if sc.boot != t.boot {
		// Written before a reboot, maybe before a power loss that took
		// unflushed data with it: only an MD5 can vouch for it.
		if !d.whole() || d.md5 == "" {
			return nil
		}
		d.verified = false
	}
	d.needVerify = d.whole() && d.md5 != "" && !d.verified
	return d
}

func (t *diskTier) path(rel string) string { return filepath.Join(t.dir, rel) }

func (t *diskTier) removeFiles(rel string) error {
	p := t.path(rel)
	var errs []error
	for _, f := range []string{p, p + sidecarSuffix, p + sidecarSuffix + tmpSuffix} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nameFor maps a key to a file name that cannot escape its directory.
func nameFor(key string) string {
	if len(key) <= 128 && plainName(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "=" + hex.EncodeToString(sum[:])
}

func subFor(name string) string {
	return (name + "__")[:2]
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if plainName(s) {
		return true
	}
	if len(s) != 65 || s[0] != '=' {
		return false
	}
	_, err := hex.DecodeString(s[1:])
	return err == nil
}

type sidecar struct {
	key, md5, version, boot string
	size                    int64
	verified, changed       bool
	ranges                  []span
}

// The sidecar's flag bits.
const (
	flagVerified = 1 << iota
	flagChanged
)

func encodeSidecar(s sidecar) []byte {
	b := make([]byte, 0, 64+len(s.key)+len(s.md5)+len(s.version)+len(s.boot)+16*len(s.ranges))
	b = append(b, sidecarMagic...)
	b = appendString(b, s.key)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.size))
	b = appendString(b, s.md5)
	b = appendString(b, s.version)
	b = appendString(b, s.boot)
	var flags byte
	if s.verified {
		flags |= flagVerified
	}
	if s.changed {
		flags |= flagChanged
	}
	b = append(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.ranges)))
	for _, r := range s.ranges {
		b = binary.LittleEndian.AppendUint64(b, uint64(r.start))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.end))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

var errBadSidecar = errors.New("cache: corrupt sidecar")

// decodeSidecar accepts only a sidecar that is exactly what encodeSidecar
// wrote: anything else may describe bytes that are not there.
func decodeSidecar(b []byte) (sidecar, error) {
	var s sidecar
	if len(b) < len(sidecarMagic)+4 || string(b[:len(sidecarMagic)]) != sidecarMagic {
		return s, errBadSidecar
	}
	body := b[:len(b)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return s, errBadSidecar
	}
	d := decoder{b: body[len(sidecarMagic):]}
	s.key = d.str()
	s.size = int64(d.u64())
	s.md5 = d.str()
	s.version = d.str()
	s.boot = d.str()
	flags := d.bytes(1)
	n := int(d.u32())
	if d.bad || len(d.b) != 16*n || len(flags) != 1 || flags[0]&^(flagVerified|flagChanged) != 0 || s.size < 0 || s.key == "" {
		return s, errBadSidecar
	}
	s.verified, s.changed = flags[0]&flagVerified != 0, flags[0]&flagChanged != 0
	s.ranges = make([]span, n)
	prev := int64(0)
	for i := range s.ranges {
		r := span{int64(d.u64()), int64(d.u64())}
		if r.start < prev || r.end <= r.start || r.end > s.size {
			return s, errBadSidecar
		}
		s.ranges[i], prev = r, r.end
	}
	return s, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) bytes(n int) []byte {
	if d.bad || len(d.b) < n {
		d.bad = true
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	if v := d.bytes(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.bytes(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) str() string {
	v := d.bytes(2)
	if v == nil {
		return ""
	}
	return string(d.bytes(int(binary.LittleEndian.Uint16(v))))
}

// subtract returns the parts of [a, b) that rs does not cover.
func subtract(rs []span, a, b int64) []span {
	var out []span
	for _, r := range rs {
		if r.end <= a {
			continue
		}
		if r.start >= b {
			break
		}
		if r.start > a {
			out = append(out, span{a, r.start})
		}
		a = max(a, r.end)
	}
	if a < b {
		out = append(out, span{a, b})
	}
	return out
}

// merge adds spans to the sorted, merged rs.
func merge(rs, add []span) []span {
	all := append(slices.Clone(rs), add...)
	slices.SortFunc(all, func(x, y span) int { return cmp.Compare(x.start, y.start) })
	out := all[:0]
	for _, r := range all {
		if n := len(out); n > 0 && r.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, r.end)
			continue
		}
		out = append(out, r)
	}
	return out
}

// diskEntryLocked returns o's disk entry if its bytes may be served.
func (c *Cache) diskEntryLocked(o *objState) *diskEntry {
	t := c.disk
	if t == nil {
		return nil
	}
	d := o.disk
	if d == nil || d.gone {
		d = t.entries[o.id.key]
		o.disk = d
	}
	// An entry without the MD5 the caller knows is not trusted either: the
	// writer replaces it. (SetVersion drops one of another version.)
	if d == nil || d.gone || d.size != o.id.size || o.md5 != "" && !strings.EqualFold(o.md5, d.md5) {
		return nil
	}
	if d.needVerify {
		c.startVerifyLocked(d)
		return nil
	}
	return d
}

// Version returns the version of key's object the cache holds bytes of:
// the one last given to SetVersion, else the one its bytes on disk were
// recorded with, else "". A caller that fetches key pins its fetches to it,
// so that they complete those bytes rather than mix in another version's.
func (c *Cache) Version(key string) string {
	t := c.disk
	if t == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, told := t.versions[key]; told {
		return v
	}
	if d := t.entries[key]; d != nil {
		return d.version
	}
	return ""
}

// SetVersion says that fetches of key return the bytes of this version of
// its object from now on (its S3 ETag, as the caller pins it); bytes on
// disk of any other version are dropped.
//
// "" says the object is no longer of the version the cache holds bytes of
// (a fetch found it changed), or that its version cannot be known. It
// stands for the rest of the process, whatever is said after (a slow fetch
// of the old version may finish after a quick one found the change): the
// disk copy is still served here, as reads stay pinned to it, but nothing
// more of key is stored, and the next process deletes the copy.
func (c *Cache) SetVersion(key, version string) {
	t := c.disk
	if t == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, told := t.versions[key]; told && (v == version || v == "") {
		return
	}
	t.versions[key] = version
	d := t.entries[key]
	switch {
	case d == nil:
	case version == "":
		d.changed = true
		t.dirty[d] = struct{}{}
		c.kickWriterLocked()
	case d.version != version:
		c.removeDiskLocked(d)
	}
}

// diskSplitLocked cuts [x, end) where o's disk ranges begin or end: it
// returns the entry to read [x, end') from, or nil if [x, end') is not on
// disk.
func (c *Cache) diskSplitLocked(o *objState, x, end int64) (*diskEntry, int64) {
	d := c.diskEntryLocked(o)
	if d == nil {
		return nil, end
	}
	i, _ := slices.BinarySearchFunc(d.ranges, x, func(r span, x int64) int {
		if r.end <= x {
			return -1
		}
		return 1
	})
	if i < len(d.ranges) {
		switch r := d.ranges[i]; {
		case r.start <= x:
			return d, min(end, r.end)
		case r.start < end:
			return nil, r.start
		}
	}
	return nil, end
}

// readDisk fills ld with a span the index says d holds. On failure the
// entry is dropped and the caller fetches instead.
func (c *Cache) readDisk(d *diskEntry, ld *load) error {
	t := c.disk
	p := t.path(d.rel)
	off, n := ld.off, ld.n
	f, err := os.Open(p)
	if err == nil {
		err = ld.data.readFrom(f, off)
		f.Close()
	}
	now := time.Now()
	c.mu.Lock()
	d.busy--
	touch := false
	if err != nil {
		err = fmt.Errorf("cache: reading %s bytes %d-%d: %w", p, off, off+n-1, err)
		c.diskFailedLocked(err)
		c.removeDiskLocked(d)
	} else {
		d.lastUse = now
		if touch = now.Sub(d.touched) > touchInterval; touch {
			d.touched = now
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.st.diskHits.Add(1)
	c.st.diskReadBytes.Add(n)
	if touch {
		_ = os.Chtimes(p, now, now)
	}
	return nil
}

func (c *Cache) diskFailedLocked(err error) {
	c.st.diskErrors.Add(1)
	if c.disk.err == nil {
		c.disk.err = err
	}
}

// removeDiskLocked drops d from the index now; the writer deletes its files.
func (c *Cache) removeDiskLocked(d *diskEntry) {
	t := c.disk
	if d.gone {
		return
	}
	t.unindexLocked(d)
	t.deleting[d.key] = true
	t.queue = append(t.queue, diskJob{del: d})
	c.kickWriterLocked()
}

func (t *diskTier) unindexLocked(d *diskEntry) {
	d.gone = true
	if t.entries[d.key] == d {
		delete(t.entries, d.key)
	}
	delete(t.dirty, d)
	t.bytes -= d.bytes
}

// evictLocked unindexes least recently used idle entries other than keep
// until need more bytes fit, and returns them for the caller to delete.
func (t *diskTier) evictLocked(need int64, keep *diskEntry) []*diskEntry {
	if t.bytes+need <= t.max {
		return nil
	}
	var idle []*diskEntry
	for _, d := range t.entries {
		if d.busy == 0 && d != keep {
			idle = append(idle, d)
		}
	}
	slices.SortFunc(idle, func(a, b *diskEntry) int { return a.lastUse.Compare(b.lastUse) })
	var out []*diskEntry
	for _, d := range idle {
		if t.bytes+need <= t.max {
			break
		}
		t.unindexLocked(d)
		out = append(out, d)
	}
	return out
}

// refusesLocked says whether bytes of key are not to be stored now: they
// failed their MD5, the key's files are being deleted, or the object's
// version is not known (SetVersion "").
func (t *diskTier) refusesLocked(key string) bool {
	v, told := t.versions[key]
	return t.bad[key] || t.deleting[key] || told && v == ""
}

// queueDiskWriteLocked queues a fetched extent for the disk tier.
func (c *Cache) queueDiskWriteLocked(e *extent) bool {
	t := c.disk
	if t == nil {
		return false
	}
	k := e.obj.id.key
	// An object larger than the tier would only flush everything else out.
	if t.refusesLocked(k) || e.obj.id.size > t.max {
		return false
	}
	t.queue = append(t.queue, diskJob{e: e})
	c.kickWriterLocked()
	return true
}

func (c *Cache) kickWriterLocked() {
	t := c.disk
	if !t.running {
		t.running = true
		go c.writeBehind()
		return
	}
	if t.wake != nil {
		close(t.wake)
		t.wake = nil
	}
}

func (t *diskTier) progressLocked() {
	if t.progress != nil {
		close(t.progress)
		t.progress = nil
	}
}

// writeBehind runs while there are jobs or sidecars to write; it lingers
// only until the last dirty sidecar falls due.
func (c *Cache) writeBehind() {
	t := c.disk
	c.mu.Lock()
	for {
		if len(t.queue) > 0 {
			j := t.queue[0]
			t.queue[0] = diskJob{}
			t.queue = t.queue[1:]
			c.mu.Unlock()
			c.runDiskJob(j)
			c.mu.Lock()
			t.progressLocked()
			continue
		}
		due, next := t.dueLocked(time.Now())
		if len(due) > 0 {
			c.mu.Unlock()
			errs := t.saveSidecars(due)
			c.mu.Lock()
			for _, err := range errs {
				c.diskFailedLocked(err)
			}
			t.progressLocked()
			continue
		}
		if next == 0 {
			t.running = false
			t.progressLocked()
			c.mu.Unlock()
			return
		}
		wake := make(chan struct{})
		t.wake = wake
		c.mu.Unlock()
		timer := time.NewTimer(next)
		select {
		case <-timer.C:
		case <-wake:
		}
		timer.Stop()
		c.mu.Lock()
		if t.wake == wake {
			t.wake = nil
		}
	}
}

type sidecarSnap struct {
	rel string
	sc  sidecar
}

// dueLocked takes the dirty sidecars that may be written now, and says how
// long until the next one may (0: none is dirty).
func (t *diskTier) dueLocked(now time.Time) ([]sidecarSnap, time.Duration) {
	var due []sidecarSnap
	var next time.Duration
	for d := range t.dirty {
		wait := d.savedAt.Add(sidecarInterval).Sub(now)
		if t.forced == 0 && wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		delete(t.dirty, d)
		d.savedAt = now
		due = append(due, sidecarSnap{d.rel, sidecar{
			key: d.key, md5: d.md5, version: d.version, boot: t.boot, size: d.size,
			verified: d.verified, changed: d.changed, ranges: slices.Clone(d.ranges),
		}})
	}
	return due, next
}

func (t *diskTier) saveSidecars(due []sidecarSnap) []error {
	var errs []error
	for _, s := range due {
		p := t.path(s.rel) + sidecarSuffix
		tmp := p + tmpSuffix
		err := os.WriteFile(tmp, encodeSidecar(s.sc), 0o600)
		if err == nil {
			err = os.Rename(tmp, p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cache: writing %s: %w", p, err))
		}
	}
	return errs
}

func (c *Cache) runDiskJob(j diskJob) {
	t := c.disk
	if j.del != nil {
		err := t.removeFiles(j.del.rel)
		c.mu.Lock()
		if err != nil {
			c.diskFailedLocked(err)
		}
		delete(t.deleting, j.del.key)
		c.mu.Unlock()
		return
	}
	e := j.e
	c.mu.Lock()
	// Queued extents are not evicted before they are written, but a
	// reference keeps the bytes whatever else changes.
	ld := e.ld
	ld.refs++
	d, victims, missing, need := c.prepareWriteLocked(e)
	c.mu.Unlock()
	defer c.releaseAll([]*load{ld})

	var errs []error
	for _, v := range victims {
		if err := t.removeFiles(v.rel); err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	if need > 0 {
		err = t.writeRanges(d, ld, missing)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, err := range errs {
		c.diskFailedLocked(err)
	}
	if need > 0 {
		c.wroteLocked(d, missing, need, err)
	}
	e.diskPending = false
	c.diskPending -= e.charge
	c.relistLocked(e)
	c.evictLocked(0, true)
	c.signalRoomLocked()
}

// prepareWriteLocked finds or creates e's entry, works out which of e's
// bytes it lacks, and makes room for them. need is 0 when there is nothing
// to write.
func (c *Cache) prepareWriteLocked(e *extent) (d *diskEntry, victims []*diskEntry, missing []span, need int64) {
	t := c.disk
	o := e.obj
	k := o.id.key
	if t.refusesLocked(k) {
		return nil, nil, nil, 0
	}
	d = t.entries[k]
	if d != nil && (d.size != o.id.size || o.md5 != "" && !strings.EqualFold(d.md5, o.md5)) {
		// Left by an object of another size or MD5 under the same key.
		if d.busy > 0 {
			return nil, nil, nil, 0
		}
		t.unindexLocked(d)
		victims = append(victims, d)
		d = nil
	}
	created := d == nil
	if created {
		name := nameFor(k)
		d = &diskEntry{key: k, rel: filepath.Join(subFor(name), name), size: o.id.size, md5: o.md5, version: t.versions[k]}
	}
	missing = subtract(d.ranges, e.off, e.end)
	for _, m := range missing {
		need += m.end - m.start
	}
	if need == 0 {
		return nil, victims, nil, 0
	}
	evicted := t.evictLocked(need, d)
	c.st.diskEvictions.Add(int64(len(evicted)))
	victims = append(victims, evicted...)
	if t.bytes+need > t.max {
		return nil, victims, nil, 0
	}
	if created {
		t.entries[k] = d
		o.disk = d
	}
	t.bytes += need
	d.bytes += need
	d.busy++
	return d, victims, missing, need
}

func (t *diskTier) writeRanges(d *diskEntry, ld *load, missing []span) error {
	p := t.path(d.rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	w, err := openDataWriter(p)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	for _, m := range missing {
		if err = w.write(ld.data.appendSlices(nil, m.start-ld.off, m.end-ld.off), m.start); err != nil {
			break
		}
	}
	if cerr := w.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache: writing %s: %w", p, err)
	}
	return nil
}

// dataWriter writes fetched bytes into a data file, straight from the
// arena to the disk (O_DIRECT) where the file system allows it and the
// bytes are aligned for it, else through the page cache. Through the page
// cache, every byte written costs a copy into memory that is newly taken
// (on this project's VMs, backed afresh by the host), competing with the
// reads for CPU: a cold 1 GiB read with --cache-dir ran at 270 to 880 MB/s
// here that way, swinging with the VM's memory state, and at 680 to 800
// MB/s with direct writes. And the page cache would hold a second copy of
// what the block cache holds, dirty until written back, so the node's
// other jobs could not reclaim it: --max-memory would not bound what a
// mount takes.
type dataWriter struct {
	f      *os.File
	direct *os.File // nil: direct writes are not possible here
	// Alignment direct writes need, of memory and of file offset and length.
	memAlign, offAlign uintptr
}

func openDataWriter(p string) (*dataWriter, error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	w := &dataWriter{f: f}
	// The file system says what direct I/O needs, or (tmpfs, kernels
	// before 6.1) that it offers none, or nothing.
	var st unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_DIOALIGN, &st) != nil ||
		st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_mem_align == 0 || st.Dio_offset_align == 0 {
		return w, nil
	}
	if d, err := os.OpenFile(p, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		w.direct, w.memAlign, w.offAlign = d, uintptr(st.Dio_mem_align), uintptr(st.Dio_offset_align)
	}
	return w, nil
}

// write writes bufs one after another at off. Arena chunks are page
// aligned, so all but a file's ragged end go direct, each run of them in
// one pwritev: one chunk per write left the disk idle between chunks
// (1 MiB writes one at a time ran at 330 MB/s here), and a read larger
// than --max-memory waits for the writes.
func (w *dataWriter) write(bufs [][]byte, off int64) error {
	for len(bufs) > 0 {
		n, end := 0, off
		for n < len(bufs) && n < maxIovecs && w.aligned(bufs[n], end) {
			end += int64(len(bufs[n]))
			n++
		}
		var wrote int64
		if n > 0 {
			var err error
			if wrote, err = w.pwritev(bufs[:n], off); err != nil {
				return err
			}
		} else {
			n = 1
		}
		// What pwritev did not take goes through the page cache: an
		// unaligned buffer, or the rest of a short direct write.
		for _, b := range bufs[:n] {
			skip := min(wrote, int64(len(b)))
			if skip < int64(len(b)) {
				if _, err := w.f.WriteAt(b[skip:], off+skip); err != nil {
					return err
				}
			}
			wrote -= skip
			off += int64(len(b))
		}
		bufs = bufs[n:]
	}
	return nil
}

// maxIovecs is Linux's IOV_MAX.
const maxIovecs = 1024

func (w *dataWriter) aligned(b []byte, off int64) bool {
	return w.direct != nil && uintptr(off)%w.offAlign == 0 && uintptr(len(b))%w.offAlign == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(b)))%w.memAlign == 0
}

func (w *dataWriter) pwritev(bufs [][]byte, off int64) (int64, error) {
	rc, err := w.direct.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Pwritev(int(fd), bufs, off)
			if werr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	return int64(n), werr
}

func (w *dataWriter) close() error {
	err := w.f.Close()
	if w.direct != nil {
		if derr := w.direct.Close(); err == nil {
			err = derr
		}
	}
	return err
}

func (c *Cache) wroteLocked(d *diskEntry, missing []span, need int64, err error) {
	t := c.disk
	d.busy--
	if d.gone {
		return // its bytes left the count when it was unindexed
	}
	if err != nil {
		t.bytes -= need
		d.bytes -= need
		c.diskFailedLocked(err)
		return
	}
	c.st.diskWrites.Add(1)
	c.st.diskWrittenBytes.Add(need)
	d.ranges = merge(d.ranges, missing)
	d.lastUse = time.Now()
	d.touched = d.lastUse
	t.dirty[d] = struct{}{}
	if d.whole() && d.md5 != "" && !d.verified {
		c.startVerifyLocked(d)
	}
}

func (c *Cache) startVerifyLocked(d *diskEntry) {
	if d.verifying || d.gone {
		return
	}
	d.verifying = true
	d.busy++
	c.disk.verifying++
	go c.verify(d)
}

// verify checks a whole entry's MD5 once. A mismatch drops the entry, and
// the key is not stored again by this process: its source disagrees with
// its MD5, and storing it again would only fail again.
func (c *Cache) verify(d *diskEntry) {
	t := c.disk
	t.verifySem <- struct{}{}
	sum, err := md5File(t.path(d.rel), d.size)
	<-t.verifySem

	c.mu.Lock()
	defer c.mu.Unlock()
	d.busy--
	d.verifying = false
	t.verifying--
	defer t.progressLocked()
	switch {
	case d.gone:
	case err != nil:
		c.diskFailedLocked(err)
		c.removeDiskLocked(d)
	case !strings.EqualFold(sum, d.md5):
		c.st.md5Bad.Add(1)
		c.diskFailedLocked(fmt.Errorf("cache: %s: MD5 %s, want %s: dropped", t.path(d.rel), sum, d.md5))
		if !d.needVerify {
			// Freshly fetched bytes that do not match: not a lost write.
			t.bad[d.key] = true
		}
		c.removeDiskLocked(d)
	default:
		d.verified, d.needVerify = true, false
		t.dirty[d] = struct{}{}
		c.kickWriterLocked()
	}
}

func md5File(p string, size int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("cache: verifying: %w", err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", fmt.Errorf("cache: verifying %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// LocalFile opens the disk tier's copy of the object when it is whole and
// its MD5 verified (or it has none to check), so that reads can go from the
// file to the kernel by splice, bypassing memory. The caller closes it; it
// stays readable even if the tier evicts the entry meanwhile.
func (r *Reader) LocalFile() (*os.File, bool) {
	c := r.c
	if c.disk == nil {
		return nil, false
	}
	c.mu.Lock()
	d := c.diskEntryLocked(r.obj)
	if d == nil || !d.whole() || !d.verified && d.md5 != "" {
		c.mu.Unlock()
		return nil, false
	}
	d.busy++
	c.mu.Unlock()

	p := c.disk.path(d.rel)
	f, err := os.Open(p)
	now := time.Now()
	c.mu.Lock()
	d.busy--
	touch := false
	if err == nil {
		d.lastUse = now
		if touch = now.Sub(d.touched) > touchInterval; touch {
			d.touched = now
		}
	}
	c.mu.Unlock()
	if err != nil {
		return nil, false
	}
	c.st.localOpens.Add(1)
	if touch {
		_ = os.Chtimes(p, now, now)
	}
	return f, true
}

// Flush waits until the bytes queued for the disk tier are written, every
// sidecar is saved and pending MD5 checks are done, and returns the first
// disk error since the last Flush. Call it before exiting so that the next
// process finds everything; without it, at most the last second of range
// metadata is lost.
func (c *Cache) Flush(ctx context.Context) error {
	t := c.disk
	if t == nil {
		return nil
	}
	c.mu.Lock()
	t.forced++
	if len(t.dirty) > 0 || len(t.queue) > 0 {
		c.kickWriterLocked()
	}
	for t.running || t.verifying > 0 {
		if t.progress == nil {
			t.progress = make(chan struct{})
		}
		ch := t.progress
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			c.mu.Lock()
			t.forced--
			c.mu.Unlock()
			return ctx.Err()
		case <-ch:
		}
		c.mu.Lock()
	}
	t.forced--
	err := t.err
	t.err = nil
	c.mu.Unlock()
	return err
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
