package fs_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	synfs "github.com/synfs/synfs/fs"
	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
	"github.com/synfs/synfs/synapse/synapsetest/netem"
)

// outbox is an external read-write STS folder mounted for writing.
type outbox struct {
	mounted
	client *synapse.Client
	spool  string
}

func mountOutbox(t *testing.T, files map[string]string) outbox {
	t.Helper()
	requireFUSE(t)
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	imp, err := srv.Import(t.Context(), "outbox", tree(t, files), true)
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	m := mountFolder(t, srv, imp, srv.Owner.Token, synfs.Options{SpoolDir: spool})
	return outbox{mounted: m, client: ownerClient(t, srv), spool: spool}
}

func ownerClient(t *testing.T, srv *synapsetest.Server) *synapse.Client {
	t.Helper()
	c, err := synapse.NewClient(synapse.Config{RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, Token: srv.Owner.Token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

// child finds name in folder through Synapse itself, not the mount.
func (o outbox) child(t *testing.T, folder, name string) (*synapse.Entity, bool) {
	t.Helper()
	id, err := o.client.LookupChild(t.Context(), folder, name)
	if synapse.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	e, err := o.client.GetEntity(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e, true
}

// handle is the S3 file handle of an entity's current version, as Synapse
// has it.
func (o outbox) handle(t *testing.T, e *synapse.Entity) *synapse.S3FileHandle {
	t.Helper()
	// The batch call serves any version's handle, the current one included.
	res, err := o.client.BatchFileHandles(t.Context(), []synapse.FileHandleAssociation{{FileHandleID: e.DataFileHandleID, AssociateObjectID: e.ID}})
	if err != nil || len(res) != 1 || res[0].FileHandle == nil {
		t.Fatalf("handle %s of %s: %+v, %v", e.DataFileHandleID, e.ID, res, err)
	}
	return res[0].FileHandle
}

// synapseBytes reads a file's current bytes straight from S3 with the admin
// key, as any other Synapse client would get them.
func (o outbox) synapseBytes(t *testing.T, e *synapse.Entity) []byte {
	t.Helper()
	h := o.handle(t, e)
	b, err := o.srv.GetObject(t.Context(), h.BucketName, h.Key)
	if err != nil {
		t.Fatal(err)
	}
	if h.ContentSize != int64(len(b)) || h.ContentMD5 != md5hex(b) {
		t.Fatalf("handle says %d bytes md5 %s; the object has %d bytes md5 %s", h.ContentSize, h.ContentMD5, len(b), md5hex(b))
	}
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// cp copies a local file into the mount as cp(1) does and reports close's error.
func cp(src []byte, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for off := 0; off < len(src); off += 128 << 10 {
		if _, err := f.Write(src[off:min(off+128<<10, len(src))]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// TestCopyIn: cp of a small and of a 200 MiB file (multipart) lands in
// Synapse, and reads back byte-exact through this mount and a fresh one.
func TestCopyIn(t *testing.T) {
	o := mountOutbox(t, map[string]string{"existing.txt": "old"})
	small := []byte("sample,value\nA,1\n")
	big := randomBytes(200<<20, 1)
	for name, data := range map[string][]byte{"results.csv": small, "big.bin": big} {
		if err := cp(data, filepath.Join(o.dir, name)); err != nil {
			t.Fatalf("cp %s: %v", name, err)
		}
		e, ok := o.child(t, o.imp.FolderID, name)
		if !ok {
			t.Fatalf("%s is not in Synapse after close", name)
		}
		if got := o.synapseBytes(t, e); !bytes.Equal(got, data) {
			t.Fatalf("%s in S3: %d bytes, want %d equal bytes", name, len(got), len(data))
		}
		if got, err := os.ReadFile(filepath.Join(o.dir, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s read back through the mount: %d bytes, %v", name, len(got), err)
		}
	}
	if n := o.srv.Stats().S3["UploadPart"].Requests; n < 2 {
		t.Fatalf("a 200 MiB file took %d UploadPart requests, want a multipart upload", n)
	}
	fresh := mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, synfs.Options{SpoolDir: t.TempDir()})
	got, err := os.ReadFile(filepath.Join(fresh.dir, "big.bin"))
	if err != nil || md5.Sum(got) != md5.Sum(big) {
		t.Fatalf("big.bin through a fresh mount: %d bytes, %v", len(got), err)
	}
	if entries, _ := os.ReadDir(o.spool); len(entries) > 0 && countFiles(o.spool) > 0 {
		t.Fatalf("the spool still holds %d files after successful uploads", countFiles(o.spool))
	}
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestOverwriteMakesAVersion: writing an existing file makes version 2 and
// keeps version 1 in Synapse; appending starts from the current bytes.
func TestOverwriteMakesAVersion(t *testing.T) {
	o := mountOutbox(t, map[string]string{"notes.txt": "first\n"})
	p := filepath.Join(o.dir, "notes.txt")
	reader, err := os.Open(p) // a reader that was there before the write
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if got, _ := io.ReadAll(reader); string(got) != "first\n" {
		t.Fatalf("before: %q", got)
	}
	if err := os.WriteFile(p, []byte("second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 100)
	if n, _ := reader.ReadAt(got, 0); string(got[:n]) != "second\n" {
		t.Fatalf("the earlier reader sees %q after the writer's close, want the new bytes", got[:n])
	}
	e, _ := o.child(t, o.imp.FolderID, "notes.txt")
	if e.VersionNumber != 2 || e.ID != o.imp.IDs["notes.txt"] {
		t.Fatalf("after overwrite: %s version %d, want %s version 2", e.ID, e.VersionNumber, o.imp.IDs["notes.txt"])
	}
	v1, err := o.client.GetEntityVersion(t.Context(), e.ID, 1)
	if err != nil || string(o.synapseBytes(t, v1)) != "first\n" {
		t.Fatalf("version 1: %v", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("third\n")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "second\nthird\n" {
		t.Fatalf("after append: %q", got)
	}
	e, _ = o.child(t, o.imp.FolderID, "notes.txt")
	if e.VersionNumber != 3 || string(o.synapseBytes(t, e)) != "second\nthird\n" {
		t.Fatalf("after append: version %d", e.VersionNumber)
	}
}

// TestRandomWrites: writes at scattered offsets of an existing file, then a
// truncate, are what Synapse ends up with.
func TestRandomWrites(t *testing.T) {
	base := randomBytes(3<<20, 2)
	o := mountOutbox(t, map[string]string{"data.bin": string(base)})
	p := filepath.Join(o.dir, "data.bin")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(base)
	for i, off := range []int64{0, 12345, 1 << 20, 3<<20 - 10, 3 << 20} {
		patch := bytes.Repeat([]byte{byte('a' + i)}, 100)
		if _, err := f.WriteAt(patch, off); err != nil {
			t.Fatal(err)
		}
		if end := off + 100; end > int64(len(want)) {
			want = append(want, make([]byte, end-int64(len(want)))...)
		}
		copy(want[off:], patch)
	}
	if err := f.Truncate(3<<20 + 50); err != nil {
		t.Fatal(err)
	}
	want = want[:3<<20+50]
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e, _ := o.child(t, o.imp.FolderID, "data.bin")
	if got := o.synapseBytes(t, e); !bytes.Equal(got, want) {
		t.Fatalf("Synapse has %d bytes, want %d with the patches", len(got), len(want))
	}
}

// TestTreeChanges: mkdir, rename, rmdir and rm change entities as a user
// of Synapse would see them.
func TestTreeChanges(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a", "b.txt": "b", "full/x.txt": "x"})
	p := func(rel string) string { return filepath.Join(o.dir, rel) }
	ctx := t.Context()

	if err := os.Mkdir(p("2026"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, ok := o.child(t, o.imp.FolderID, "2026")
	if !ok || !dir.IsFolder() {
		t.Fatalf("mkdir: no folder 2026 in Synapse")
	}
	if err := os.Rename(p("a.txt"), p("2026/renamed.txt")); err != nil {
		t.Fatal(err)
	}
	moved, ok := o.child(t, dir.ID, "renamed.txt")
	if !ok || moved.ID != o.imp.IDs["a.txt"] {
		t.Fatalf("rename: %+v", moved)
	}
	if got, err := os.ReadFile(p("2026/renamed.txt")); err != nil || string(got) != "a" {
		t.Fatalf("read after rename: %q, %v", got, err)
	}
	// Over an existing target: the target goes to the trash.
	if err := os.Rename(p("2026/renamed.txt"), p("b.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := o.client.GetEntity(ctx, o.imp.IDs["b.txt"]); !synapse.IsNotFound(err) {
		t.Fatalf("the replaced target: %v, want it in the trash (404)", err)
	}
	if e, _ := o.child(t, o.imp.FolderID, "b.txt"); e.ID != o.imp.IDs["a.txt"] {
		t.Fatalf("b.txt is %s, want the moved %s", e.ID, o.imp.IDs["a.txt"])
	}
	if err := os.Remove(p("full")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a non-empty folder: %v, want ENOTEMPTY", err)
	}
	if err := os.Remove(p("2026")); err != nil {
		t.Fatalf("rmdir of an empty folder: %v", err)
	}
	if _, err := o.client.GetEntity(ctx, dir.ID); !synapse.IsNotFound(err) {
		t.Fatalf("rmdir: folder %v, want 404", err)
	}
	if err := os.Remove(p("b.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := o.client.GetEntity(ctx, o.imp.IDs["a.txt"]); !synapse.IsNotFound(err) {
		t.Fatalf("rm: entity %v, want it in the trash", err)
	}
	if _, err := os.Stat(p("b.txt")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat after rm: %v", err)
	}
	names, _ := os.ReadDir(o.dir)
	if len(names) != 1 || names[0].Name() != "full" {
		t.Fatalf("ls after the changes: %v", names)
	}
}

// TestRefusedChanges: what Synapse cannot hold gets the errno a user expects.
func TestRefusedChanges(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	p := func(rel string) string { return filepath.Join(o.dir, rel) }
	cases := []struct {
		name string
		op   func() error
		want syscall.Errno
	}{
		{"a name with a colon", func() error { return os.WriteFile(p("bad:name.txt"), nil, 0o644) }, syscall.EINVAL},
		{"a name with a trailing space", func() error { return os.Mkdir(p("dir "), 0o755) }, syscall.EINVAL},
		{"a name of 257 characters", func() error { return os.Mkdir(p(strings.Repeat("n", 257)), 0o755) }, syscall.EINVAL},
		{"rename to a bad name", func() error { return os.Rename(p("a.txt"), p("a?.txt")) }, syscall.EINVAL},
		{"symlink", func() error { return os.Symlink("a.txt", p("link")) }, syscall.EPERM},
		{"hard link", func() error { return os.Link(p("a.txt"), p("hard")) }, syscall.EPERM},
		{"chmod", func() error { return os.Chmod(p("a.txt"), 0o600) }, syscall.EPERM},
		{"chown", func() error { return os.Chown(p("a.txt"), 12345, 12345) }, syscall.EPERM},
		{"setxattr", func() error { return syscall.Setxattr(p("a.txt"), "user.x", []byte("1"), 0) }, syscall.EOPNOTSUPP},
	}
	for _, tc := range cases {
		if err := tc.op(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := os.Chtimes(p("a.txt"), time.Now(), time.Now()); err != nil {
		t.Errorf("touch: %v, want it accepted", err)
	}
	if kids, _ := o.client.ListChildren(t.Context(), o.imp.FolderID); len(kids) != 1 {
		t.Fatalf("Synapse has %d children after refused changes, want 1", len(kids))
	}
}

// TestManagedFolderStaysReadOnly: the same emulator's Synapse-storage folder
// mounts read-only next to a writable external one.
func TestManagedFolderStaysReadOnly(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	imp, err := o.srv.Import(t.Context(), "managed", tree(t, map[string]string{"m.txt": "m"}), false)
	if err != nil {
		t.Fatal(err)
	}
	m := mountFolder(t, o.srv, imp, o.srv.Owner.Token, synfs.Options{SpoolDir: t.TempDir()})
	if err := os.WriteFile(filepath.Join(m.dir, "new.txt"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write in the managed folder: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(o.dir, "new.txt"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write in the external folder: %v", err)
	}
}

// TestReaderGetsReadOnlyMount: a collaborator with READ+DOWNLOAD only is
// refused read_write credentials and gets a read-only mount.
func TestReaderGetsReadOnlyMount(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	reader := o.srv.AddUser("reader")
	if err := o.srv.SetAccess(o.imp.FolderID, reader, synapsetest.ReadDownload); err != nil {
		t.Fatal(err)
	}
	m := mountFolder(t, o.srv, o.imp, reader.Token, synfs.Options{SpoolDir: t.TempDir()})
	if err := os.WriteFile(filepath.Join(m.dir, "new.txt"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("reader's write: %v, want EROFS", err)
	}
	if got, err := os.ReadFile(filepath.Join(m.dir, "a.txt")); err != nil || string(got) != "a" {
		t.Fatalf("reader's read: %q, %v", got, err)
	}
}

// TestFailedUploadIsKeptAndRecovered: with S3 failing, close reports the
// error and the bytes stay in the spool; once S3 is back, recovery (the
// next mount) lands them.
func TestFailedUploadIsKeptAndRecovered(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	data := randomBytes(1<<20, 3)
	o.srv.S3Conditions().SetFaults(netem.Faults{Status500: 1})
	err := cp(data, filepath.Join(o.dir, "precious.bin"))
	o.srv.S3Conditions().SetFaults(netem.Faults{})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with S3 failing: %v, want EIO", err)
	}
	if _, ok := o.child(t, o.imp.FolderID, "precious.bin"); ok {
		t.Fatal("precious.bin is in Synapse although its upload failed")
	}
	if countFiles(o.spool) == 0 {
		t.Fatal("the spool is empty after a failed upload")
	}
	// The next mount with the same spool recovers it.
	o.unmount()
	mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, synfs.Options{SpoolDir: o.spool})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if e, ok := o.child(t, o.imp.FolderID, "precious.bin"); ok {
			if got := o.synapseBytes(t, e); !bytes.Equal(got, data) {
				t.Fatalf("recovered bytes differ: %d bytes", len(got))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("precious.bin was not recovered within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNotTheLocationsCreator: Synapse lets only the storage location's
// creator register files in it; another writer's close fails with EACCES
// and the bytes stay in the spool.
func TestNotTheLocationsCreator(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	editor := o.srv.AddUser("editor")
	if err := o.srv.SetAccess(o.imp.FolderID, editor, synapsetest.FullAccess); err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	m := mountFolder(t, o.srv, o.imp, editor.Token, synfs.Options{SpoolDir: spool})
	err := cp([]byte("mine"), filepath.Join(m.dir, "mine.txt"))
	if !errors.Is(err, syscall.EACCES) {
		t.Fatalf("close: %v, want EACCES", err)
	}
	if countFiles(spool) == 0 {
		t.Fatal("the refused bytes are not in the spool")
	}
}

// TestOtherMountSeesNewVersion: a second mount that cached the old bytes
// drops them once its metadata TTL brings the new version.
func TestOtherMountSeesNewVersion(t *testing.T) {
	o := mountOutbox(t, map[string]string{"shared.txt": "old bytes\n"})
	const ttl = 500 * time.Millisecond
	other := mountFolder(t, o.srv, o.imp, o.srv.Owner.Token, synfs.Options{SpoolDir: t.TempDir(), MetadataTTL: ttl})
	p := filepath.Join(other.dir, "shared.txt")
	reader, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if got, _ := io.ReadAll(reader); string(got) != "old bytes\n" {
		t.Fatalf("before: %q", got)
	}
	if err := os.WriteFile(filepath.Join(o.dir, "shared.txt"), []byte("new!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * ttl)
	if b, err := os.ReadFile(p); err != nil || string(b) != "new!\n" {
		t.Fatalf("the other mount reads %q, %v after its TTL; want the new version", b, err)
	}
	got := make([]byte, 100)
	if n, _ := reader.ReadAt(got, 0); string(got[:n]) != "new!\n" {
		t.Fatalf("a reader open since before reads %q; want the new bytes, not the old page cache", got[:n])
	}
}

// TestLiveMountRetries: a mount retries its own failed upload once S3 is
// back, without a remount.
func TestLiveMountRetries(t *testing.T) {
	requireFUSE(t)
	srv := synapsetest.NewServer(t, synapsetest.Options{})
	imp, err := srv.Import(t.Context(), "outbox", tree(t, map[string]string{"a.txt": "a"}), true)
	if err != nil {
		t.Fatal(err)
	}
	m := mountFolder(t, srv, imp, srv.Owner.Token, synfs.Options{SpoolDir: t.TempDir(), RetryEvery: 200 * time.Millisecond})
	o := outbox{mounted: m, client: ownerClient(t, srv)}
	srv.S3Conditions().SetFaults(netem.Faults{Status500: 1})
	err = cp([]byte("second try"), filepath.Join(m.dir, "retry.txt"))
	srv.S3Conditions().SetFaults(netem.Faults{})
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with S3 failing: %v, want EIO", err)
	}
	waitFor(t, func() bool { _, ok := o.child(t, imp.FolderID, "retry.txt"); return ok }, "the retried upload")
	e, _ := o.child(t, imp.FolderID, "retry.txt")
	if got := o.synapseBytes(t, e); string(got) != "second try" {
		t.Fatalf("retried bytes %q", got)
	}
}

// TestUnlinkWhileWriting: a file removed while open for writing leaves
// nothing behind: close succeeds, nothing is uploaded, the spool is empty.
func TestUnlinkWhileWriting(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	p := filepath.Join(o.dir, "a.txt")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("doomed")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after unlink: %v", err)
	}
	if _, ok := o.child(t, o.imp.FolderID, "a.txt"); ok {
		t.Fatal("a.txt is back in Synapse after its unlink")
	}
	waitFor(t, func() bool { return countFiles(o.spool) == 0 }, "the spool to empty")
}

// TestFailedRenameKeepsTarget: when the move fails after the target went
// to the trash, the target comes back, as rename(2) promises.
func TestFailedRenameKeepsTarget(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a", "b.txt": "b"})
	if _, err := os.ReadDir(o.dir); err != nil { // cache the listing
		t.Fatal(err)
	}
	// Someone trashes a.txt behind the mount's back.
	if err := o.client.DeleteEntity(t.Context(), o.imp.IDs["a.txt"]); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(o.dir, "a.txt"), filepath.Join(o.dir, "b.txt")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("rename of a vanished source: %v, want ENOENT", err)
	}
	if e, ok := o.child(t, o.imp.FolderID, "b.txt"); !ok || e.ID != o.imp.IDs["b.txt"] {
		t.Fatal("the target b.txt is gone after a failed rename")
	}
	if got, err := os.ReadFile(filepath.Join(o.dir, "b.txt")); err != nil || string(got) != "b" {
		t.Fatalf("b.txt through the mount: %q, %v", got, err)
	}
}

// TestStatDuringUpload: ls -l of a file whose upload is running answers
// at once with the staged size; it does not wait for the upload.
func TestStatDuringUpload(t *testing.T) {
	o := mountOutbox(t, map[string]string{"a.txt": "a"})
	o.srv.S3Conditions().SetShaping(netem.Shaping{Latency: 3 * time.Second})
	defer o.srv.S3Conditions().SetShaping(netem.Shaping{})
	p := filepath.Join(o.dir, "slow.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 12345))
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	time.Sleep(300 * time.Millisecond) // let the close start its upload
	info, err := os.Stat(p)
	select {
	case <-closed:
		t.Fatal("the upload finished before stat answered: the test did not overlap them")
	default:
	}
	if err != nil || info.Size() != 12345 {
		t.Fatalf("stat during the upload: %v, %v; want 12345 bytes", info, err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}
