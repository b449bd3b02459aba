package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
	"github.com/synfs/synfs/synapse/synapsetest/netem"
)

// synfsBin is the command built once for the tests that run it as a user
// would (the background mode re-executes itself).
var synfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "synfs-bin-")
	if err != nil {
		panic(err)
	}
	synfsBin = filepath.Join(dir, "synfs")
	build := exec.Command("go", "build", "-o", synfsBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building synfs: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// world is an emulator holding every kind of thing a user might try to mount.
type world struct {
	srv                  *synapsetest.Server
	imp                  *synapsetest.Imported
	plainFolder          string
	stranger, noDownload synapsetest.User
	endpoints            []string
}

func newWorld(t *testing.T, opts synapsetest.Options) *world {
	t.Helper()
	srv := synapsetest.NewServer(t, opts)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello synfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	imp, err := srv.Import(t.Context(), "study", src, false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := synapse.NewClient(synapse.Config{RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, Token: srv.Owner.Token})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.CreateFolder(t.Context(), "no-sts", imp.ProjectID)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{srv: srv, imp: imp, plainFolder: plain.ID, stranger: srv.AddUser("stranger"), noDownload: srv.AddUser("viewer")}
	if err := srv.SetAccess(imp.FolderID, w.noDownload, synapsetest.Read); err != nil {
		t.Fatal(err)
	}
	w.endpoints = []string{"--repo-endpoint", srv.RepoEndpoint, "--file-endpoint", srv.FileEndpoint, "--s3-endpoint", srv.S3Endpoint}
	return w
}

// synfs runs the command with a token (none when empty) and a home without
// ~/.synapseConfig; it returns the exit code and stderr.
func (w *world) synfs(t *testing.T, token string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), synfsBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CACHE_HOME="+t.TempDir(), "SYNAPSE_AUTH_TOKEN="+token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String()
}

func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	mounted, err := isMountpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	return mounted
}

// TestMountRefusals: each bad input gives one clear line, a non-zero exit,
// and leaves nothing mounted.
func TestMountRefusals(t *testing.T) {
	requireFUSE(t)
	w := newWorld(t, synapsetest.Options{})
	notEmpty := t.TempDir()
	os.WriteFile(filepath.Join(notEmpty, "x"), nil, 0o644)
	aFile := filepath.Join(t.TempDir(), "file")
	os.WriteFile(aFile, nil, 0o644)
	owner := w.srv.Owner.Token
	cases := []struct {
		name, token, id, mountpoint, want string
		code                              int
	}{
		{"no token", "", w.imp.FolderID, "", "no Synapse token", 1},
		{"rejected token", "synfs-pat-forged", w.imp.FolderID, "", "rejected the token", 1},
		{"not a syn id", owner, "12345", "", "is not a Synapse id", 2},
		{"missing entity", owner, "syn999999999", "", "does not exist", 1},
		{"hidden entity", w.stranger.Token, w.imp.FolderID, "", "is not visible", 1},
		{"a project", owner, w.imp.ProjectID, "", "is a Project", 1},
		{"a file", owner, w.imp.IDs["a.txt"], "", "is not a Folder", 1},
		{"no STS location", owner, w.plainFolder, "", "no STS-enabled storage location", 1},
		{"no DOWNLOAD", w.noDownload.Token, w.imp.FolderID, "", "may not download", 1},
		{"missing mountpoint", owner, w.imp.FolderID, "/nonexistent/synfs-mnt", "does not exist", 1},
		{"mountpoint not empty", owner, w.imp.FolderID, notEmpty, "is not empty", 1},
		{"mountpoint is a file", owner, w.imp.FolderID, aFile, "is not a directory", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mp := tc.mountpoint
			if mp == "" {
				mp = t.TempDir()
			}
			code, stderr := w.synfs(t, tc.token, append(append([]string{"mount"}, w.endpoints...), tc.id, mp)...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != tc.code || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line with %q", code, stderr, tc.code, tc.want)
			}
			if strings.Contains(stderr, w.srv.Owner.Token) {
				t.Fatalf("the token is printed: %q", stderr)
			}
			if st, err := os.Stat(mp); err == nil && st.IsDir() && isMounted(t, mp) {
				syscall.Unmount(mp, syscall.MNT_DETACH)
				t.Fatalf("%s was left mounted", mp)
			}
		})
	}

	t.Run("already mounted", func(t *testing.T) {
		mp := t.TempDir()
		if code, stderr := w.synfs(t, owner, append(append([]string{"mount"}, w.endpoints...), w.imp.FolderID, mp)...); code != 0 {
			t.Fatalf("first mount: exit %d: %s", code, stderr)
		}
		defer exec.Command("fusermount3", "-u", mp).Run()
		code, stderr := w.synfs(t, owner, append(append([]string{"mount"}, w.endpoints...), w.imp.FolderID, mp)...)
		if code != 1 || !strings.Contains(stderr, "already mounted") {
			t.Fatalf("second mount: exit %d, %q", code, stderr)
		}
	})
}

// TestMountInBackground: the command returns once the mount is ready and
// both fusermount3 -u and umount take it down.
func TestMountInBackground(t *testing.T) {
	requireFUSE(t)
	w := newWorld(t, synapsetest.Options{})
	for _, unmount := range [][]string{{"fusermount3", "-u"}, {"umount"}} {
		t.Run(unmount[0], func(t *testing.T) {
			if _, err := exec.LookPath(unmount[0]); err != nil {
				t.Skipf("%s not installed", unmount[0])
			}
			mp := t.TempDir()
			args := append(append([]string{"mount"}, w.endpoints...), "-o", "uid=4321,file-mode=0440", w.imp.FolderID, mp)
			code, stderr := w.synfs(t, w.srv.Owner.Token, args...)
			if code != 0 || !strings.Contains(stderr, "mounted "+w.imp.FolderID) || !strings.Contains(stderr, "read-only") {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			got, err := os.ReadFile(filepath.Join(mp, "a.txt"))
			if err != nil || string(got) != "hello synfs\n" {
				t.Fatalf("read a.txt = %q, %v", got, err)
			}
			st, err := os.Stat(filepath.Join(mp, "a.txt"))
			if err != nil || st.Mode().Perm() != 0o440 || st.Sys().(*syscall.Stat_t).Uid != 4321 {
				t.Fatalf("stat a.txt = %v, %v; want mode 0440 and uid 4321 from -o", st.Mode(), err)
			}
			if out, err := exec.Command(unmount[0], append(unmount[1:], mp)...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v %s", unmount, err, out)
			}
			if isMounted(t, mp) {
				t.Fatalf("still mounted after %v", unmount)
			}
		})
	}
}

// TestForegroundSignal: -f serves until SIGTERM, then unmounts and exits 0.
func TestForegroundSignal(t *testing.T) {
	requireFUSE(t)
	w := newWorld(t, synapsetest.Options{})
	mp := t.TempDir()
	cmd := exec.Command(synfsBin, append(append([]string{"mount", "-f"}, w.endpoints...), w.imp.FolderID, mp)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "SYNAPSE_AUTH_TOKEN="+w.srv.Owner.Token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(t, mp) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("not mounted after 20s: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.ReadFile(filepath.Join(mp, "a.txt")); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if isMounted(t, mp) {
		t.Fatal("still mounted after SIGTERM")
	}
}

func TestOptionParsing(t *testing.T) {
	cases := []struct {
		opts    string
		wantErr bool
	}{
		{"ro,allow_other,uid=10,gid=20,file-mode=0640,dir_mode=0750,metadata-ttl=5s,max-memory=1G,nodev,nosuid", false},
		{"bogus", true},
		{"uid", true},
		{"file-mode=999", true},
		{"max-memory=lots", true},
	}
	for _, tc := range cases {
		fset := newMountFlagSet()
		var o optionList
		o.Set(tc.opts)
		err := o.apply(fset.FlagSet)
		if (err != nil) != tc.wantErr {
			t.Errorf("-o %s: err = %v, want error %v", tc.opts, err, tc.wantErr)
		}
		if tc.opts[0] == 'r' && err == nil {
			m := fset.m
			if !m.readOnly || !m.allowOther || m.uid != 10 || m.gid != 20 || m.fileMode != 0o640 || m.dirMode != 0o750 || m.metadataTTL != 5*time.Second || m.maxMemory != 1<<30 {
				t.Errorf("-o %s parsed to %+v", tc.opts, m)
			}
		}
	}
}

// TestKilledMountLosesNoClosedFile: SIGKILL while a close is uploading;
// synfs recover lands the bytes, and the files closed before are in
// Synapse already.
func TestKilledMountLosesNoClosedFile(t *testing.T) {
	requireFUSE(t)
	w := newWorld(t, synapsetest.Options{})
	imp, err := w.srv.Import(t.Context(), "outbox", t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	spool, mp := t.TempDir(), t.TempDir()
	args := append(append([]string{"mount", "-f", "--spool-dir", spool}, w.endpoints...), imp.FolderID, mp)
	cmd := exec.Command(synfsBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "SYNAPSE_AUTH_TOKEN="+w.srv.Owner.Token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(20 * time.Second); !isMounted(t, mp); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not mounted: %s", stderr.String())
		}
	}
	defer exec.Command("umount", "-l", mp).Run()
	for _, name := range []string{"one.txt", "two.txt"} {
		if err := os.WriteFile(filepath.Join(mp, name), []byte("closed "+name), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	// Slow S3 answers down so that the next close is mid-upload when the
	// mount dies.
	w.srv.S3Conditions().SetShaping(netem.Shaping{Latency: 5 * time.Second})
	closing := make(chan error, 1)
	go func() { closing <- os.WriteFile(filepath.Join(mp, "three.txt"), []byte("closing three"), 0o644) }()
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	<-closing
	exec.Command("umount", "-l", mp).Run()
	w.srv.S3Conditions().SetShaping(netem.Shaping{})

	c := ownerClient(t, w.srv)
	for _, name := range []string{"one.txt", "two.txt"} {
		if _, err := c.LookupChild(t.Context(), imp.FolderID, name); err != nil {
			t.Fatalf("%s, closed before the kill: %v", name, err)
		}
	}
	rec := exec.Command(synfsBin, append(append([]string{"recover", "--spool-dir", spool}, w.endpoints...), imp.FolderID)...)
	rec.Env = cmd.Env
	out, err := rec.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "uploaded three.txt") {
		t.Fatalf("synfs recover: %v\n%s", err, out)
	}
	id, err := c.LookupChild(t.Context(), imp.FolderID, "three.txt")
	if err != nil {
		t.Fatalf("three.txt after recover: %v", err)
	}
	e, _ := c.GetEntity(t.Context(), id)
	h, err := c.DataFileHandle(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := w.srv.GetObject(t.Context(), h.BucketName, h.Key); err != nil || string(b) != "closing three" {
		t.Fatalf("three.txt bytes = %q, %v", b, err)
	}
}

func ownerClient(t *testing.T, srv *synapsetest.Server) *synapse.Client {
	t.Helper()
	c, err := synapse.NewClient(synapse.Config{RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, Token: srv.Owner.Token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
