package cache

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const testBoot = "boot-1"

func diskOpts(dir string) Options {
	o := seqOpts()
	o.Dir, o.DiskBytes = dir, 16<<20
	return o
}

// newDiskCache opens a cache as if in boot, and flushes it before the test's
// directories are removed.
func newDiskCache(t *testing.T, opts Options, boot string) *Cache {
	t.Helper()
	c, err := newCache(opts, boot)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Flush(context.Background()) })
	return c
}

func flush(t *testing.T, c *Cache) {
	t.Helper()
	if err := c.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// readWhole reads all of o through a new Reader of c.
func readWhole(t *testing.T, c *Cache, obj Object, o *object) {
	t.Helper()
	r := c.Open(obj, o.fetch)
	defer r.Close()
	readAll(t, r, o, 0, 4*testBS)
}

func dataPath(dir, key string) string {
	n := nameFor(key)
	return filepath.Join(dir, subFor(n), n)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Bytes read through memory reach the disk; a new cache on the same
// directory serves them without a single fetch, whole or in pieces.
func TestDiskSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	a, b := newObject(300*testBS+5), newObject(100*testBS)
	objA := Object{Key: "123", Size: a.size(), MD5: md5hex(a.data)}
	objB := Object{Key: "456", Size: b.size()}

	c1 := newDiskCache(t, diskOpts(dir), testBoot)
	readWhole(t, c1, objA, a)
	for _, off := range []int64{10 * testBS, 50*testBS + 7} {
		readCheck(t, c1, context.Background(), objB.Key, b, off, 100, 100, nil)
	}
	flush(t, c1)
	if st := c1.Stats(); st.DiskWrittenBytes != a.size()+2*testBS || st.DiskBytes != st.DiskWrittenBytes || st.DiskEntries != 2 {
		t.Errorf("after write-behind: %+v", st)
	}
	for p, want := range map[string]fs.FileMode{
		dir:                                  0o700,
		filepath.Dir(dataPath(dir, "123")):   0o700,
		dataPath(dir, "123"):                 0o600,
		dataPath(dir, "123") + sidecarSuffix: 0o600,
		dataPath(dir, "456"):                 0o600,
	} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %v", p, err, fi.Mode().Perm(), want)
		}
	}

	c2 := newDiskCache(t, diskOpts(dir), testBoot)
	a2, b2 := newObject(int(a.size())), newObject(int(b.size())) // same bytes, fresh counts
	r := c2.Open(objA, a2.fetch)
	f, ok := r.LocalFile()
	if !ok {
		t.Fatal("LocalFile of a whole, verified object: not ok")
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, a.data) {
		t.Fatalf("LocalFile contents: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, a.data))
	}
	readAll(t, r, a2, 0, 4*testBS)
	r.Close()
	for _, off := range []int64{10 * testBS, 50*testBS + 7} {
		readCheck(t, c2, context.Background(), objB.Key, b2, off, 100, 100, nil)
	}
	if n := a2.totalCalls() + b2.totalCalls(); n != 0 {
		t.Errorf("after restart: %d fetches, want 0", n)
	}
	st := c2.Stats()
	if st.DiskReadBytes != a.size()+2*testBS || st.DiskWrittenBytes != 0 || st.LocalOpens != 1 {
		t.Errorf("after restart: %+v", st)
	}
	// A range that was never read still comes from the source.
	readCheck(t, c2, context.Background(), objB.Key, b2, 70*testBS, 100, 100, nil)
	if got := b2.fetchLog(); len(got) != 1 || got[0] != (span{70 * testBS, 71 * testBS}) {
		t.Errorf("new range fetched %v, want its block", got)
	}
}

// The disk tier stays within DiskBytes by evicting the least recently used
// entries, in the order file times give after a restart.
func TestDiskEvictsLeastRecentlyUsed(t *testing.T) {
	const size = 64 * testBS
	dir := t.TempDir()
	objs := map[string]*object{"1": newObject(size), "2": newObject(size + 1), "3": newObject(size + 2), "4": newObject(size + 3)}
	obj := func(k string) Object { return Object{Key: k, Size: objs[k].size()} }
	opts := diskOpts(dir)
	opts.DiskBytes = 3*size + 10

	c1 := newDiskCache(t, opts, testBoot)
	for _, k := range []string{"1", "2", "3"} {
		readWhole(t, c1, obj(k), objs[k])
	}
	flush(t, c1)
	// Last use: 2, then 3, then 1.
	base := time.Now().Add(-time.Hour)
	for k, age := range map[string]time.Duration{"2": 0, "3": time.Minute, "1": 2 * time.Minute} {
		if err := os.Chtimes(dataPath(dir, k), base.Add(age), base.Add(age)); err != nil {
			t.Fatal(err)
		}
	}

	c2 := newDiskCache(t, opts, testBoot)
	readWhole(t, c2, obj("4"), objs["4"])
	flush(t, c2)
	st := c2.Stats()
	if st.DiskEvictions != 1 || st.DiskEntries != 3 || st.DiskBytes > opts.DiskBytes {
		t.Errorf("after writing a fourth object: %+v", st)
	}
	for k, want := range map[string]bool{"1": true, "2": false, "3": true, "4": true} {
		if got := exists(dataPath(dir, k)) && exists(dataPath(dir, k)+sidecarSuffix); got != want {
			t.Errorf("object %s on disk: %v, want %v", k, got, want)
		}
	}

	// A smaller tier evicts at startup, oldest first: 3 (1 and 4 are newer).
	opts.DiskBytes = 2*size + 10
	c3 := newDiskCache(t, opts, testBoot)
	if st := c3.Stats(); st.DiskEntries != 2 || exists(dataPath(dir, "3")) || !exists(dataPath(dir, "1")) {
		t.Errorf("startup eviction: %+v; 3 on disk %v, 1 on disk %v", st, exists(dataPath(dir, "3")), exists(dataPath(dir, "1")))
	}
}

// A whole object whose bytes do not match its MD5 is dropped, never handed
// out as a local file, and not written again.
func TestDiskMD5(t *testing.T) {
	tests := []struct {
		name      string
		md5       func(data []byte) string
		wantLocal bool
	}{
		{"matching", md5hex, true},
		{"matching, upper case", func(b []byte) string { return strings.ToUpper(md5hex(b)) }, true},
		{"none to check", func([]byte) string { return "" }, true},
		{"mismatch", func([]byte) string { return strings.Repeat("0", 32) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := newObject(100*testBS + 1)
			obj := Object{Key: "9", Size: o.size(), MD5: tt.md5(o.data)}
			c := newDiskCache(t, diskOpts(dir), testBoot)
			readWhole(t, c, obj, o)
			err := c.Flush(context.Background())
			if (err != nil) == tt.wantLocal {
				t.Errorf("Flush: %v", err)
			}
			r := c.Open(obj, o.fetch)
			f, ok := r.LocalFile()
			if ok {
				f.Close()
			}
			r.Close()
			st := c.Stats()
			if ok != tt.wantLocal || exists(dataPath(dir, "9")) != tt.wantLocal || (st.MD5Mismatches == 1) == tt.wantLocal {
				t.Errorf("LocalFile %v, on disk %v, %+v", ok, exists(dataPath(dir, "9")), st)
			}
			// Read again by a new process: from disk, or from the source.
			c2 := newDiskCache(t, diskOpts(dir), testBoot)
			o2 := newObject(int(o.size()))
			readWhole(t, c2, obj, o2)
			if fetched := o2.totalCalls() > 0; fetched == tt.wantLocal {
				t.Errorf("second process fetched %d times", o2.totalCalls())
			}
		})
	}
}

// Whatever is torn, mismatched or in doubt on disk is dropped, and the
// bytes come from the source instead: never wrong bytes.
func TestDiskDropsDoubtfulEntries(t *testing.T) {
	whole, part := newObject(50*testBS+3), newObject(40*testBS)
	objW := Object{Key: "77", Size: whole.size(), MD5: md5hex(whole.data)}
	objP := Object{Key: "88", Size: part.size()}
	sidecarW := func(dir string) string { return dataPath(dir, "77") + sidecarSuffix }
	tests := []struct {
		name   string
		boot   string
		mutate func(t *testing.T, dir string)
		// Whether each object is still served from disk.
		wantWhole, wantPart bool
		// Whether opening it finds an MD5 mismatch.
		wantMismatch bool
	}{
		{"untouched", testBoot, func(*testing.T, string) {}, true, true, false},
		{"torn sidecar", testBoot, func(t *testing.T, dir string) {
			b, _ := os.ReadFile(sidecarW(dir))
			write(t, sidecarW(dir), b[:len(b)/2])
		}, false, true, false},
		{"flipped byte in the sidecar", testBoot, func(t *testing.T, dir string) {
			b, _ := os.ReadFile(sidecarW(dir))
			b[len(b)/2] ^= 1
			write(t, sidecarW(dir), b)
		}, false, true, false},
		{"no sidecar", testBoot, func(t *testing.T, dir string) { rm(t, sidecarW(dir)) }, false, true, false},
		{"data shorter than its ranges", testBoot, func(t *testing.T, dir string) {
			if err := os.Truncate(dataPath(dir, "77"), 100); err != nil {
				t.Fatal(err)
			}
		}, false, true, false},
		{"sidecar of another key", testBoot, func(t *testing.T, dir string) {
			b, _ := os.ReadFile(dataPath(dir, "88") + sidecarSuffix)
			write(t, sidecarW(dir), b)
		}, false, true, false},
		{"leftover temporary sidecar", testBoot, func(t *testing.T, dir string) {
			write(t, sidecarW(dir)+tmpSuffix, []byte("half"))
		}, true, true, false},
		{"another boot: whole and intact is verified again", "boot-2", func(*testing.T, string) {}, true, false, false},
		{"another boot: whole but bytes lost", "boot-2", func(t *testing.T, dir string) {
			f, err := os.OpenFile(dataPath(dir, "77"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, testBS), 10*testBS); err != nil {
				t.Fatal(err)
			}
		}, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c1 := newDiskCache(t, diskOpts(dir), testBoot)
			readWhole(t, c1, objW, whole)
			readCheck(t, c1, context.Background(), objP.Key, part, 5*testBS, 3*testBS, 3*testBS, nil)
			flush(t, c1)
			tt.mutate(t, dir)

			c2 := newDiskCache(t, diskOpts(dir), tt.boot)
			if exists(sidecarW(dir) + tmpSuffix) {
				t.Error("temporary sidecar left behind")
			}
			// Opening starts the check of an entry in doubt; Flush waits for it.
			c2.Open(objW, whole.fetch).Close()
			if err := c2.Flush(context.Background()); (err != nil) != tt.wantMismatch {
				t.Errorf("Flush after open: %v", err)
			}
			w2, p2 := newObject(int(whole.size())), newObject(int(part.size()))
			readWhole(t, c2, objW, w2) // checks every byte
			readCheck(t, c2, context.Background(), objP.Key, p2, 5*testBS, 3*testBS, 3*testBS, nil)
			if fromDisk := w2.totalCalls() == 0; fromDisk != tt.wantWhole {
				t.Errorf("whole object: %d fetches; want from disk: %v", w2.totalCalls(), tt.wantWhole)
			}
			if fromDisk := p2.totalCalls() == 0; fromDisk != tt.wantPart {
				t.Errorf("partial object: %d fetches; want from disk: %v", p2.totalCalls(), tt.wantPart)
			}
			// Whatever was dropped is written again.
			flush(t, c2)
			c3 := newDiskCache(t, diskOpts(dir), tt.boot)
			w3 := newObject(int(whole.size()))
			readWhole(t, c3, objW, w3)
			if w3.totalCalls() != 0 {
				t.Errorf("third process fetched the whole object %d times", w3.totalCalls())
			}
		})
	}
}

// A data file that vanished behind the cache's back costs a fetch, not an
// error.
func TestDiskReadFailureFallsBackToFetch(t *testing.T) {
	dir := t.TempDir()
	o := newObject(20 * testBS)
	obj := Object{Key: "5", Size: o.size()}
	c := newDiskCache(t, diskOpts(dir), testBoot)
	readWhole(t, c, obj, o)
	flush(t, c)
	c2 := newDiskCache(t, diskOpts(dir), testBoot)
	rm(t, dataPath(dir, "5"))
	o2 := newObject(int(o.size()))
	readWhole(t, c2, obj, o2)
	if st := c2.Stats(); st.DiskErrors == 0 || st.FetchedBytes == 0 {
		t.Errorf("%+v: want a disk error and a fetch", st)
	}
}

func TestLocalFile(t *testing.T) {
	o := newObject(30*testBS + 9)
	tests := []struct {
		name string
		dir  bool
		obj  Object
		read func(t *testing.T, c *Cache, obj Object)
		want bool
	}{
		{"no disk tier", false, Object{Key: "1", Size: o.size()}, func(t *testing.T, c *Cache, obj Object) { readWhole(t, c, obj, o) }, false},
		{"partial", true, Object{Key: "1", Size: o.size()}, func(t *testing.T, c *Cache, obj Object) {
			readCheck(t, c, context.Background(), obj.Key, o, 0, 10*testBS, 10*testBS, nil)
		}, false},
		{"whole, no MD5", true, Object{Key: "1", Size: o.size()}, func(t *testing.T, c *Cache, obj Object) { readWhole(t, c, obj, o) }, true},
		{"whole, MD5 verified", true, Object{Key: "1", Size: o.size(), MD5: md5hex(o.data)}, func(t *testing.T, c *Cache, obj Object) { readWhole(t, c, obj, o) }, true},
		{"whole, MD5 mismatch", true, Object{Key: "1", Size: o.size(), MD5: md5hex(nil)}, func(t *testing.T, c *Cache, obj Object) { readWhole(t, c, obj, o) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := seqOpts()
			if tt.dir {
				opts = diskOpts(t.TempDir())
			}
			c := newDiskCache(t, opts, testBoot)
			tt.read(t, c, tt.obj)
			_ = c.Flush(context.Background())
			r := c.Open(tt.obj, o.fetch)
			defer r.Close()
			f, ok := r.LocalFile()
			if ok != tt.want {
				t.Fatalf("LocalFile ok = %v, want %v", ok, tt.want)
			}
			if ok {
				defer f.Close()
				got := make([]byte, o.size())
				if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, o.data) {
					t.Errorf("local file: %v, or wrong bytes", err)
				}
			}
		})
	}
}

// Keys are file names only when they are plain tokens: anything else is
// hashed, so no key can reach outside the directory.
func TestDiskKeyNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	o := newObject(3 * testBS)
	obj := Object{Key: "../../escape me", Size: o.size()}
	c := newDiskCache(t, diskOpts(dir), testBoot)
	readWhole(t, c, obj, o)
	flush(t, c)
	var files []string
	_ = filepath.WalkDir(filepath.Dir(dir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	for _, f := range files {
		if !strings.HasPrefix(f, dir+string(filepath.Separator)) || strings.Contains(f, "escape") {
			t.Errorf("file %s", f)
		}
	}
	if len(files) != 2 {
		t.Errorf("files %v, want a data file and its sidecar", files)
	}
	c2 := newDiskCache(t, diskOpts(dir), testBoot)
	o2 := newObject(int(o.size()))
	readWhole(t, c2, obj, o2)
	if o2.totalCalls() != 0 {
		t.Errorf("hashed key not found after restart")
	}
}

// Bytes waiting to be written to disk count against the memory budget.
func TestDiskWriteBehindStaysInBudget(t *testing.T) {
	const maxBytes = 64 * testBS
	opts := diskOpts(t.TempDir())
	opts.MaxBytes = maxBytes
	c := newDiskCache(t, opts, testBoot)
	o := newObject(1 << 20)
	readWhole(t, c, Object{Key: "1", Size: o.size()}, o)
	flush(t, c)
	if st := c.Stats(); st.PeakBytes > maxBytes || st.DiskWrittenBytes != o.size() || st.FetchedBytes != o.size() {
		t.Errorf("%+v", st)
	}
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

// Fetched bytes go from the block cache to the disk without a second copy
// in the page cache, where the file system takes direct writes: only the
// object's ragged end, too short for one, goes through it. (That the bytes
// on disk are right, TestDiskSurvivesRestart shows.)
func TestDiskWritesBypassPageCache(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, probe, 0, unix.STATX_DIOALIGN, &st); err != nil || st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 {
		t.Skipf("%s takes no direct writes (statx: %v)", dir, err)
	}
	if testBS%int64(st.Dio_offset_align) != 0 {
		t.Skipf("direct writes here need %d-byte alignment, more than the test's %d-byte blocks", st.Dio_offset_align, testBS)
	}
	o := newObject(100*testBS + 1)
	obj := Object{Key: "7", Size: o.size()} // no MD5: verifying would read the file back in
	c := newDiskCache(t, diskOpts(dir), testBoot)
	readWhole(t, c, obj, o)
	flush(t, c)
	if st := c.Stats(); st.DiskWrittenBytes != o.size() {
		t.Fatalf("test setup: %d bytes written to disk, want %d", st.DiskWrittenBytes, o.size())
	}

	f, err := os.Open(dataPath(dir, "7"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(o.size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if got, page := residentBytes(t, mem), int64(os.Getpagesize()); got > page {
		t.Errorf("%d bytes of the data file are in the page cache after writing, want at most the last page", got)
	}
}

// A disk copy records the version of the object its bytes are of: a later
// process that fetches that version completes it; one that fetches another
// drops it; one that finds the object changed keeps serving it but no
// longer adds to it, and the process after deletes it.
func TestDiskKeepsOneVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	ctx := context.Background()
	obj := Object{Key: "789", Size: 100 * testBS}
	steps := []struct {
		found       string   // the version a new process finds on disk
		tell        []string // SetVersion calls, in order
		wantFetches int      // for the range every process reads
	}{
		{found: "", tell: []string{"v1"}, wantFetches: 1},
		{found: "v1", tell: []string{"v1"}, wantFetches: 0},
		{found: "v1", tell: []string{"v2"}, wantFetches: 1},
		// A fetch finds the change; a slower one of the old version ends
		// after it and must not undo it.
		{found: "v2", tell: []string{"", "v2"}, wantFetches: 0},
		{found: "", tell: []string{"v3"}, wantFetches: 1},
		{found: "v3", tell: nil, wantFetches: 0},
	}
	for i, s := range steps {
		c := newDiskCache(t, diskOpts(dir), testBoot)
		if got, onDisk := c.Version(obj.Key), exists(dataPath(dir, obj.Key)); got != s.found || onDisk != (s.found != "") {
			t.Fatalf("process %d found version %q, data file %v; want %q", i, got, onDisk, s.found)
		}
		for _, v := range s.tell {
			c.SetVersion(obj.Key, v)
		}
		if len(s.tell) > 0 {
			if got := c.Version(obj.Key); got != s.tell[0] {
				t.Errorf("process %d: Version after SetVersion %q = %q; want %q", i, s.tell, got, s.tell[0])
			}
		}
		// Another version's files are gone before new bytes come, so that
		// they are stored; else whether they are is a race.
		flush(t, c)
		o := newObject(int(obj.Size))
		readCheck(t, c, ctx, obj.Key, o, 10*testBS, 100, 100, nil)
		if got := o.totalCalls(); got != s.wantFetches {
			t.Errorf("process %d, told %q: %d fetches; want %d", i, s.tell, got, s.wantFetches)
		}
		flush(t, c)
	}
}
