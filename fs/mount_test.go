package fs_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	synfs "github.com/synfs/synfs/fs"
	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
)

// requireFUSE skips where FUSE cannot work at all; CI (root, /dev/fuse)
// always runs these.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// dataset is a study's folder: sizes chosen around block boundaries, an
// empty file, nested folders, names with spaces.
func dataset(t *testing.T) (dir string, files map[string][]byte) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	sizes := map[string]int{
		"empty.txt":                  0,
		"one.txt":                    1,
		"page.bin":                   4095,
		"block.bin":                  1 << 20,
		"block plus one.bin":         1<<20 + 1,
		"big/five.bin":               5<<20 + 123,
		"nested/a/b/c/deep.csv":      777,
		"nested/a/sibling (1).txt":   10,
		"many/f000.txt":              3,
		"many/f001.txt":              3,
		"many/sub/another_file.data": 65536,
	}
	dir = t.TempDir()
	files = map[string][]byte{}
	for rel, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files[rel] = b
	}
	return dir, files
}

type mounted struct {
	dir string
	srv *synapsetest.Server
	imp *synapsetest.Imported
	// unmount ends the mount before the test does (and saves the caches);
	// otherwise the test's cleanup unmounts.
	unmount func()
}

// mount imports the dataset into a fresh emulator and mounts it for the test.
func mount(t *testing.T, emu synapsetest.Options, opts synfs.Options, src string) mounted {
	t.Helper()
	requireFUSE(t)
	srv := synapsetest.NewServer(t, emu)
	imp, err := srv.Import(t.Context(), "study", src, false)
	if err != nil {
		t.Fatal(err)
	}
	return mountFolder(t, srv, imp, srv.Owner.Token, opts)
}

func mountFolder(t *testing.T, srv *synapsetest.Server, imp *synapsetest.Imported, token string, opts synfs.Options) mounted {
	t.Helper()
	c, err := synapse.NewClient(synapse.Config{RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	opts.Client, opts.FolderID, opts.S3Endpoint = c, imp.FolderID, srv.S3Endpoint
	fsys, err := synfs.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	server, err := fsys.Mount(dir, synfs.MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unmount := func() {
		once.Do(func() {
			if err := server.Unmount(); err != nil {
				t.Errorf("unmount: %v", err)
			}
			if err := fsys.Close(context.Background()); err != nil {
				t.Errorf("closing the caches: %v", err)
			}
		})
	}
	t.Cleanup(unmount)
	return mounted{dir: dir, srv: srv, imp: imp, unmount: unmount}
}

// TestTreeReadsBack: every file's bytes, size and name equal the source,
// nested folders included, and nothing else appears.
func TestTreeReadsBack(t *testing.T) {
	src, files := dataset(t)
	m := mount(t, synapsetest.Options{}, synfs.Options{}, src)

	var seen []string
	err := filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(m.dir, p)
		seen = append(seen, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		want, ok := files[filepath.ToSlash(rel)]
		if !ok {
			t.Errorf("unexpected file %s", rel)
			return nil
		}
		if info.Size() != int64(len(want)) {
			t.Errorf("%s: ls size %d, want %d", rel, info.Size(), len(want))
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if md5.Sum(got) != md5.Sum(want) {
			t.Errorf("%s: md5 differs from the source (%d bytes read, want %d)", rel, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(files) {
		t.Fatalf("saw %d files, want %d: %v", len(seen), len(files), seen)
	}
	out, err := exec.Command("ls", "-a1", filepath.Join(m.dir, "nested", "a")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSpace(string(out)), "\n"); !slices.Equal(got, []string{".", "..", "b", "sibling (1).txt"}) {
		t.Fatalf("ls -a nested/a = %v", got)
	}
}

// TestAttributes: what `ls -l` and `stat` show.
func TestAttributes(t *testing.T) {
	src, files := dataset(t)
	m := mount(t, synapsetest.Options{}, synfs.Options{}, src)
	cases := []struct {
		rel  string
		mode fs.FileMode
		size int64
	}{
		{"", fs.ModeDir | 0o555, 4096},
		{"big", fs.ModeDir | 0o555, 4096},
		{"big/five.bin", 0o444, int64(len(files["big/five.bin"]))},
		{"empty.txt", 0o444, 0},
	}
	for _, tc := range cases {
		info, err := os.Stat(filepath.Join(m.dir, tc.rel))
		if err != nil {
			t.Fatal(err)
		}
		st := info.Sys().(*syscall.Stat_t)
		id := m.imp.FolderID
		if tc.rel != "" {
			id = m.imp.IDs[tc.rel]
		}
		if info.Mode() != tc.mode || info.Size() != tc.size {
			t.Errorf("%q: mode %v size %d, want %v %d", tc.rel, info.Mode(), info.Size(), tc.mode, tc.size)
		}
		if want, _ := strconv.ParseUint(strings.TrimPrefix(id, "syn"), 10, 64); st.Ino != want {
			t.Errorf("%q: inode %d, want %d (the Synapse id)", tc.rel, st.Ino, want)
		}
		if st.Uid != uint32(os.Getuid()) || st.Gid != uint32(os.Getgid()) {
			t.Errorf("%q: owner %d:%d, want the mounting user", tc.rel, st.Uid, st.Gid)
		}
		if !info.Mode().IsDir() && st.Blocks != (tc.size+511)/512 {
			t.Errorf("%q: st_blocks %d, want %d", tc.rel, st.Blocks, (tc.size+511)/512)
		}
		if age := time.Since(info.ModTime()); age < 0 || age > time.Hour {
			t.Errorf("%q: mtime %v is not the Synapse modifiedOn of this test's import", tc.rel, info.ModTime())
		}
	}
}

// TestRandomReads: reads at random offsets and lengths, from many readers at
// once, equal the source; short reads happen only at EOF.
func TestRandomReads(t *testing.T) {
	src, files := dataset(t)
	m := mount(t, synapsetest.Options{}, synfs.Options{MaxMemory: 2 << 20}, src)
	want := files["big/five.bin"]
	f, err := os.Open(filepath.Join(m.dir, "big", "five.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	for r := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			for range 40 {
				off := rng.Int64N(int64(len(want)) + 10)
				n := 1 + rng.IntN(3<<20)
				buf := make([]byte, n)
				got, err := f.ReadAt(buf, off)
				end := min(off+int64(n), int64(len(want)))
				wantN := max(0, int(end-off))
				if got != wantN || (got < n && !errors.Is(err, io.EOF)) || (got == n && err != nil) {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, wantN)
					return
				}
				if !bytes.Equal(buf[:got], want[off:off+int64(got)]) {
					t.Errorf("ReadAt(%d bytes at %d): bytes differ from the source", n, off)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMissingNameIsENOENT(t *testing.T) {
	src, _ := dataset(t)
	m := mount(t, synapsetest.Options{}, synfs.Options{}, src)
	for _, rel := range []string{"nope.txt", "nested/nope", "nested/a/b/c/deep.csv/under-a-file"} {
		_, err := os.Stat(filepath.Join(m.dir, rel))
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("stat %s: %v, want ENOENT", rel, err)
		}
	}
}

// TestChangesAreEROFS: a read-only mount refuses every change with EROFS and
// says "ro" in the mount table.
func TestChangesAreEROFS(t *testing.T) {
	src, _ := dataset(t)
	m := mount(t, synapsetest.Options{}, synfs.Options{}, src)
	p := func(rel string) string { return filepath.Join(m.dir, rel) }
	cases := map[string]func() error{
		"create": func() error { _, err := os.Create(p("new.txt")); return err },
		"write":  func() error { _, err := os.OpenFile(p("one.txt"), os.O_WRONLY, 0); return err },
		"truncate": func() error {
			return os.Truncate(p("one.txt"), 0)
		},
		"mkdir":   func() error { return os.Mkdir(p("newdir"), 0o755) },
		"rm":      func() error { return os.Remove(p("one.txt")) },
		"rmdir":   func() error { return os.Remove(p("many/sub")) },
		"rename":  func() error { return os.Rename(p("one.txt"), p("two.txt")) },
		"chmod":   func() error { return os.Chmod(p("one.txt"), 0o600) },
		"symlink": func() error { return os.Symlink("one.txt", p("link")) },
	}
	for name, op := range cases {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == m.dir {
			if !slices.Contains(strings.Split(f[3], ","), "ro") {
				t.Fatalf("mount options %q lack ro", f[3])
			}
			return
		}
	}
	t.Fatalf("%s is not in /proc/self/mounts", m.dir)
}

// TestOutlivesCredentials: a mount keeps reading across three lifetimes of
// its STS credentials, refreshing them as they expire.
func TestOutlivesCredentials(t *testing.T) {
	src, files := dataset(t)
	const lifetime = 2 * time.Second
	m := mount(t, synapsetest.Options{STSLifetime: lifetime}, synfs.Options{MaxMemory: 1 << 20}, src)
	want := files["big/five.bin"]
	f, err := os.Open(filepath.Join(m.dir, "big", "five.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	for block := int64(0); time.Since(start) < 3*lifetime+time.Second; block++ {
		off := (block % 5) << 20
		buf := make([]byte, 4096)
		// A new offset each round, so neither cache can answer.
		off += (block / 5) * 4096
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("read after %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		if !bytes.Equal(buf, want[off:off+4096]) {
			t.Fatalf("read after %v: bytes differ", time.Since(start))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := m.srv.Stats().Synapse["GET /repo/v1/entity/{id}/sts"]; n < 4 {
		t.Fatalf("%d credential requests over 3+ lifetimes, want at least 4", n)
	}
}

// TestHiddenChildren: a collaborator's mount shows only what is shared
// with them.
func TestHiddenChildren(t *testing.T) {
	requireFUSE(t)
	src, _ := dataset(t)
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	imp, err := srv.Import(t.Context(), "study", src, false)
	if err != nil {
		t.Fatal(err)
	}
	reader := srv.AddUser("reader")
	if err := srv.SetAccess(imp.FolderID, reader, synapsetest.ReadDownload); err != nil {
		t.Fatal(err)
	}
	if err := srv.SetAccess(imp.IDs["big"], reader, 0); err != nil {
		t.Fatal(err)
	}
	m := mountFolder(t, srv, imp, reader.Token, synfs.Options{})
	if _, err := os.Stat(filepath.Join(m.dir, "big")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat big: %v, want ENOENT (not shared)", err)
	}
	if b, err := os.ReadFile(filepath.Join(m.dir, "one.txt")); err != nil || len(b) != 1 {
		t.Fatalf("read one.txt = %d bytes, %v", len(b), err)
	}
}
