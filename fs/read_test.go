package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	synfs "github.com/synfs/synfs/fs"
	"github.com/synfs/synfs/synapse/synapsetest"
)

// What reading costs in S3 requests and bytes: counted by the emulator,
// never timed (timing belongs to make bench).

func getObjects(srv *synapsetest.Server) (requests, bytes int64) {
	op := srv.Stats().S3["GetObject"]
	return op.Requests, op.BytesOut
}

func dropPageCache(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Skipf("cannot drop the page cache: %v", err)
	}
}

// TestSequentialReadFetchesOnce: a whole-file sequential read fetches each
// byte about once, in few large requests.
func TestSequentialReadFetchesOnce(t *testing.T) {
	const size = 48 << 20
	data := randomBytes(size, 11)
	m := mount(t, synapsetest.Options{}, synfs.Options{MaxMemory: 256 << 20}, tree(t, map[string]string{"big.bin": string(data)}))
	dropPageCache(t)
	r0, b0 := getObjects(m.srv)
	got, err := os.ReadFile(filepath.Join(m.dir, "big.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the file", len(got), err)
	}
	reqs, fetched := getObjects(m.srv)
	reqs, fetched = reqs-r0, fetched-b0
	if fetched > size*11/10 {
		t.Errorf("fetched %d bytes for a %d-byte file: more than 1.1x", fetched, size)
	}
	if reqs > size/(1<<20) {
		t.Errorf("%d GETs for %d MiB: the read was not served by large prefetched parts", reqs, size>>20)
	}
}

// TestRandomReadsFetchLittle: scattered small reads fetch small blocks, not
// whole parts.
func TestRandomReadsFetchLittle(t *testing.T) {
	const size = 64 << 20
	data := randomBytes(size, 12)
	m := mount(t, synapsetest.Options{}, synfs.Options{}, tree(t, map[string]string{"big.bin": string(data)}))
	f, err := os.Open(filepath.Join(m.dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dropPageCache(t)
	r0, b0 := getObjects(m.srv)
	rng := rand.New(rand.NewPCG(1, 2))
	const reads = 50
	buf := make([]byte, 4096)
	for range reads {
		off := rng.Int64N(size/4096) * 4096
		if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+4096]) {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
	}
	reqs, fetched := getObjects(m.srv)
	reqs, fetched = reqs-r0, fetched-b0
	// The kernel may read ahead 128 KiB around a read; allow one 256 KiB
	// block per read.
	if limit := int64(reads) * (2*4096 + 256<<10); fetched > limit {
		t.Errorf("fetched %d bytes in %d GETs for %d random 4 KiB reads; want at most %d", fetched, reqs, reads, limit)
	}
}

// TestSmallFilesFetchedAhead: reading a folder's small files one after
// another fetches the next ones in the background, each exactly once.
func TestSmallFilesFetchedAhead(t *testing.T) {
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("f%03d.dat", i)] = string(randomBytes(16<<10, uint64(i)))
	}
	m := mount(t, synapsetest.Options{}, synfs.Options{}, tree(t, files))
	if _, err := os.ReadDir(m.dir); err != nil { // the ls that resolves metadata
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := os.Stat(filepath.Join(m.dir, fmt.Sprintf("f%03d.dat", i))); err != nil {
			t.Fatal(err)
		}
	}
	dropPageCache(t)
	r0, _ := getObjects(m.srv)
	for i := range 3 {
		name := fmt.Sprintf("f%03d.dat", i)
		if got, err := os.ReadFile(filepath.Join(m.dir, name)); err != nil || string(got) != files[name] {
			t.Fatalf("%s: %v", name, err)
		}
	}
	waitFor(t, func() bool { r, _ := getObjects(m.srv); return r-r0 >= 3+8 }, "the next files to be fetched ahead")
	for i := range 40 {
		name := fmt.Sprintf("f%03d.dat", i)
		if got, err := os.ReadFile(filepath.Join(m.dir, name)); err != nil || string(got) != files[name] {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if r, _ := getObjects(m.srv); r-r0 != 40 {
		t.Fatalf("%d GETs for 40 small files read in order; want one each", r-r0)
	}
}

// TestDiskCacheAcrossMounts: with --cache-dir, a second mount reads what the
// first one read without asking S3 again.
func TestDiskCacheAcrossMounts(t *testing.T) {
	requireFUSE(t)
	data := randomBytes(9<<20+7, 13)
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	imp, err := srv.Import(t.Context(), "study", tree(t, map[string]string{"data.bin": string(data)}), false)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	first := mountFolder(t, srv, imp, srv.Owner.Token, synfs.Options{CacheDir: cacheDir})
	if got, err := os.ReadFile(filepath.Join(first.dir, "data.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first mount: %v", err)
	}
	first.unmount()

	second := mountFolder(t, srv, imp, srv.Owner.Token, synfs.Options{CacheDir: cacheDir})
	dropPageCache(t)
	r0, _ := getObjects(srv)
	if got, err := os.ReadFile(filepath.Join(second.dir, "data.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second mount: %d bytes, %v", len(got), err)
	}
	if r, _ := getObjects(srv); r != r0 {
		t.Fatalf("the second mount made %d GETs; want all bytes from the disk cache", r-r0)
	}
}

// TestMetadataAcrossMounts: with --cache-dir, a remount lists a folder
// with the sizes earlier mounts resolved or wrote, asking Synapse again
// only for a file that changed in between.
func TestMetadataAcrossMounts(t *testing.T) {
	files := map[string]string{}
	for i := range 12 {
		files[fmt.Sprintf("f%02d.txt", i)] = strings.Repeat("x", 100*i+1)
	}
	o := mountOutbox(t, files)
	cacheDir := t.TempDir()
	remount := func(readOnly bool) mounted {
		return mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, synfs.Options{CacheDir: cacheDir, ReadOnly: readOnly, SpoolDir: t.TempDir()})
	}
	const handleCalls = "GET /repo/v1/entity/{id}/filehandles"
	// lsl checks what `ls -l` shows and returns the handle calls it took.
	lsl := func(m mounted) int64 {
		t.Helper()
		before := o.srv.Stats().Synapse[handleCalls]
		ents, err := os.ReadDir(m.dir)
		if err != nil {
			t.Fatal(err)
		}
		got, want := map[string]int64{}, map[string]int64{}
		for _, e := range ents {
			fi, err := os.Lstat(filepath.Join(m.dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got[e.Name()] = fi.Size()
		}
		for name, content := range files {
			want[name] = int64(len(content))
		}
		if !maps.Equal(got, want) {
			t.Fatalf("ls -l shows %v; want %v", got, want)
		}
		return o.srv.Stats().Synapse[handleCalls] - before
	}

	first := remount(true)
	if calls := lsl(first); calls != int64(len(files)) {
		t.Fatalf("the first mount asked for %d files' handles; want %d", calls, len(files))
	}
	first.unmount()

	// A new version, of another size, written by a mount without the cache.
	files["f03.txt"] = "a new version, longer than the first\n"
	if err := os.WriteFile(filepath.Join(o.dir, "f03.txt"), []byte(files["f03.txt"]), 0o644); err != nil {
		t.Fatal(err)
	}
	second := remount(false)
	if calls := lsl(second); calls != 1 {
		t.Fatalf("the second mount asked for %d files' handles; want 1, the changed file's", calls)
	}
	if b, err := os.ReadFile(filepath.Join(second.dir, "f03.txt")); err != nil || string(b) != files["f03.txt"] {
		t.Fatalf("second mount reads %q, %v; want the new version", b, err)
	}
	// What a mount writes, it knows without asking.
	files["f05.txt"] = "written through a cached mount\n"
	if err := os.WriteFile(filepath.Join(second.dir, "f05.txt"), []byte(files["f05.txt"]), 0o644); err != nil {
		t.Fatal(err)
	}
	second.unmount()

	third := remount(true)
	if calls := lsl(third); calls != 0 {
		t.Fatalf("the third mount asked for %d files' handles; want none", calls)
	}
	if b, err := os.ReadFile(filepath.Join(third.dir, "f05.txt")); err != nil || string(b) != files["f05.txt"] {
		t.Fatalf("third mount reads %q, %v; want what the second wrote", b, err)
	}
}

// waitFor polls cond for up to 10 s: background work has no other signal.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// TestKernelReadahead: the mount asks the kernel for a readahead deep
// enough to keep several 1 MiB requests in flight.
func TestKernelReadahead(t *testing.T) {
	m := mount(t, synapsetest.Options{}, synfs.Options{}, tree(t, map[string]string{"a": "a"}))
	var st syscall.Stat_t
	if err := syscall.Stat(m.dir, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Skipf("no sysfs entry for the mount: %v", err)
	}
	if got := strings.TrimSpace(string(b)); got != fmt.Sprint(synfs.ReadaheadKB) {
		t.Fatalf("read_ahead_kb = %s, want %d", got, synfs.ReadaheadKB)
	}
}

// overwrite replaces a file's object in the external bucket in place, as
// its owner can with the bucket's own keys, behind Synapse's back.
func (o outbox) overwrite(t *testing.T, name string, data []byte) {
	t.Helper()
	e, _ := o.child(t, o.imp.FolderID, name)
	h := o.handle(t, e)
	if err := o.srv.PutObject(t.Context(), h.BucketName, h.Key, data); err != nil {
		t.Fatal(err)
	}
}

// readAt reads len(want) bytes at off of an open file and says whether
// they are want's; EIO is the one error expected.
func readAt(t *testing.T, f *os.File, off int64, want []byte) (same bool, err error) {
	t.Helper()
	got := make([]byte, len(want))
	n, err := f.ReadAt(got, off)
	if err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatalf("read at %d: %v", off, err)
	}
	return err == nil && n == len(want) && bytes.Equal(got, want), err
}

// openIn opens name in a mount, closed before the mount is unmounted even
// when the test fails.
func openIn(t *testing.T, m mounted, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join(m.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The owner of an external bucket overwrites an object in place: a mount
// that read some of the old version fails to read the rest (EIO) rather
// than return bytes of two versions.
const overSize, overTail = 16 << 20, 16<<20 - 8192

// TestOverwrittenBehindSynapseIsEIO: within one mount.
func TestOverwrittenBehindSynapseIsEIO(t *testing.T) {
	old, replaced := randomBytes(overSize, 21), randomBytes(overSize, 22)
	o := mountOutbox(t, map[string]string{"big.bin": string(old)})
	f := openIn(t, o.mounted, "big.bin")
	if same, err := readAt(t, f, 0, old[:4096]); !same {
		t.Fatalf("the first read did not return the file's bytes: %v", err)
	}
	o.overwrite(t, "big.bin", replaced)
	if _, err := readAt(t, f, overTail, old[overTail:overTail+4096]); err == nil {
		t.Fatal("the mount read past the change; want EIO")
	}
	// The cache holds the old head under the file's handle for every
	// open: a new one is pinned to the old version too.
	f.Close()
	f = openIn(t, o.mounted, "big.bin")
	if _, err := readAt(t, f, overTail-(1<<20), old[overTail-(1<<20):][:4096]); err == nil {
		t.Fatal("a new open read past the change; want EIO")
	}
}

// TestOverwrittenBetweenMounts: with --cache-dir the old version's bytes
// on disk count as read: the next mount serves them and fails on the rest;
// it drops them, so the mount after reads the new version whole.
func TestOverwrittenBetweenMounts(t *testing.T) {
	old, replaced := randomBytes(overSize, 23), randomBytes(overSize, 24)
	o := mountOutbox(t, map[string]string{"big.bin": string(old)})
	opts := synfs.Options{CacheDir: t.TempDir(), ReadOnly: true}
	first := mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, opts)
	f := openIn(t, first, "big.bin")
	if same, err := readAt(t, f, 0, old[:4096]); !same {
		t.Fatalf("the first read did not return the file's bytes: %v", err)
	}
	f.Close()
	first.unmount()
	o.overwrite(t, "big.bin", replaced)

	second := mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, opts)
	f = openIn(t, second, "big.bin")
	if same, err := readAt(t, f, 0, old[:4096]); !same {
		t.Fatalf("the second mount does not serve the old head from disk: %v", err)
	}
	if _, err := readAt(t, f, overTail, old[overTail:overTail+4096]); err == nil {
		t.Fatal("the second mount served the old head from disk, then read the tail; want EIO")
	}
	f.Close()
	second.unmount()

	third := mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, opts)
	f = openIn(t, third, "big.bin")
	for _, off := range []int{0, overTail} {
		if same, err := readAt(t, f, int64(off), replaced[off:off+4096]); !same {
			t.Fatalf("the third mount at %d: not the new version's bytes: %v", off, err)
		}
	}
}
