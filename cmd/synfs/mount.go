package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	synfs "github.com/synfs/synfs/fs"
	"github.com/synfs/synfs/synapse"
)

// readyFDEnv names the file descriptor on which a backgrounded mount tells
// its parent "ok" or the reason it failed.
const readyFDEnv = "SYNFS_READY_FD"

type mountFlags struct {
	token, repoEndpoint, fileEndpoint, s3Endpoint string
	foreground, readOnly, allowOther, debug       bool
	uid, gid                                      int
	fileMode, dirMode                             octalFlag
	metadataTTL                                   time.Duration
	maxMemory, cacheSize                          sizeFlag
	logFile, spoolDir, cacheDir                   string
}

func (m *mountFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.token, "token", "", "Synapse personal access `token` (default: $SYNAPSE_AUTH_TOKEN, then ~/.synapseConfig)")
	fs.StringVar(&m.repoEndpoint, "repo-endpoint", os.Getenv("SYNFS_REPO_ENDPOINT"), "Synapse repo `URL` (env SYNFS_REPO_ENDPOINT)")
	fs.StringVar(&m.fileEndpoint, "file-endpoint", os.Getenv("SYNFS_FILE_ENDPOINT"), "Synapse file `URL` (env SYNFS_FILE_ENDPOINT)")
	fs.StringVar(&m.s3Endpoint, "s3-endpoint", os.Getenv("SYNFS_S3_ENDPOINT"), "S3 `URL` overriding the storage location's (env SYNFS_S3_ENDPOINT)")
	fs.BoolVar(&m.foreground, "foreground", false, "stay in the foreground and log to stderr")
	fs.BoolVar(&m.foreground, "f", false, "short for --foreground")
	fs.BoolVar(&m.readOnly, "read-only", false, "mount read-only even where writes are possible")
	fs.BoolVar(&m.allowOther, "allow-other", false, "let other users see the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	fs.BoolVar(&m.debug, "debug", false, "log every FUSE request and Synapse retry")
	fs.IntVar(&m.uid, "uid", -1, "owner `uid` shown for every file (default: the mounting user)")
	fs.IntVar(&m.gid, "gid", -1, "group `gid` shown for every file (default: the mounting user's)")
	fs.Var(&m.fileMode, "file-mode", "permission bits of files, octal (default 0444 read-only, 0644 read-write)")
	fs.Var(&m.dirMode, "dir-mode", "permission bits of directories, octal (default 0555 read-only, 0755 read-write)")
	fs.DurationVar(&m.metadataTTL, "metadata-ttl", time.Minute, "how long listings and attributes are trusted before asking Synapse again")
	m.maxMemory = 512 << 20
	fs.Var(&m.maxMemory, "max-memory", "memory budget of the block cache and prefetch windows together, e.g. 512M or 2G")
	fs.StringVar(&m.cacheDir, "cache-dir", "", "keep read bytes and file metadata in this `DIR` across mounts (bytes content-addressed by file handle)")
	m.cacheSize = 10 << 30
	fs.Var(&m.cacheSize, "cache-size", "size bound of --cache-dir, e.g. 50G")
	fs.StringVar(&m.spoolDir, "spool-dir", "", "where written bytes wait until Synapse has them (default ~/.cache/synfs/spool)")
	fs.StringVar(&m.logFile, "log-file", "", "where a backgrounded mount logs (default ~/.cache/synfs/SYN_ID.log)")
}

const mountUsage = `usage: synfs mount [flags] SYN_ID MOUNTPOINT

Mounts a Synapse Folder with an STS storage location at MOUNTPOINT. Returns
once the mount is ready; unmount with 'fusermount3 -u MOUNTPOINT' or 'umount'.
Flags may also be given as -o name[=value],... (e.g. -o ro,allow_other,uid=1000).

flags:
`

// mountFlagSet is the mount command's flags, -o included.
type mountFlagSet struct {
	*flag.FlagSet
	m mountFlags
	o optionList
}

func newMountFlagSet() *mountFlagSet {
	f := &mountFlagSet{FlagSet: flag.NewFlagSet("mount", flag.ContinueOnError)}
	f.m.register(f.FlagSet)
	f.Var(&f.o, "o", "comma-separated `options`, as the flags above")
	return f
}

// parse reads args (flags anywhere, -o included) and returns the
// positional arguments, or the exit code of a usage error.
func (fset *mountFlagSet) parse(args []string, usage string, stderr io.Writer) ([]string, int) {
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, usage); fset.PrintDefaults() }
	pos, err := parseInterleaved(fset.FlagSet, args)
	if err != nil {
		return nil, 2
	}
	if err := fset.o.apply(fset.FlagSet); err != nil {
		fmt.Fprintf(stderr, "synfs: %v\n", err)
		return nil, 2
	}
	return pos, 0
}

func mountCmd(ctx context.Context, args []string, stderr io.Writer) int {
	fset := newMountFlagSet()
	pos, code := fset.parse(args, mountUsage, stderr)
	if code != 0 {
		return code
	}
	m := &fset.m
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "synfs: want SYN_ID and MOUNTPOINT, got %d arguments (synfs mount -h for help)\n", len(pos))
		return 2
	}
	id, mountpoint := pos[0], pos[1]
	if !synIDRE.MatchString(id) {
		fmt.Fprintf(stderr, "synfs: %q is not a Synapse id: want syn followed by digits, e.g. syn12345\n", id)
		return 2
	}
	if err := checkMountpoint(mountpoint); err != nil {
		fmt.Fprintf(stderr, "synfs: %v\n", err)
		return 1
	}
	if !m.foreground {
		return background(ctx, args, id, m.logFile, stderr)
	}
	return serveMount(ctx, m, id, mountpoint, stderr)
}

var synIDRE = regexp.MustCompile(`^syn[0-9]+$`)

// serveMount mounts and serves until unmounted or interrupted. When started
// by background, it reports readiness on the inherited descriptor.
func serveMount(ctx context.Context, m *mountFlags, id, mountpoint string, stderr io.Writer) int {
	ready := readyReporter()
	fail := func(code int, err error) int {
		line := "synfs: " + err.Error()
		fmt.Fprintln(stderr, line)
		ready(line)
		return code
	}
	log := m.logger(stderr)
	fsys, code, err := m.open(ctx, id, log)
	if err != nil {
		return fail(code, err)
	}
	server, err := fsys.Mount(mountpoint, synfs.MountOptions{AllowOther: m.allowOther, Debug: m.debug})
	if err != nil {
		return fail(1, err)
	}
	ro, why := fsys.ReadOnly()
	mode := "read-write"
	if ro {
		mode = "read-only: " + why
	}
	msg := fmt.Sprintf("mounted %s (%q) at %s, %s", id, fsys.RootName(), mountpoint, mode)
	log.Info(msg)
	ready("ok " + msg)
	exit := waitUnmount(ctx, server, mountpoint, log)
	closeCtx, cancelClose := context.WithTimeout(context.Background(), time.Minute)
	defer cancelClose()
	if err := fsys.Close(closeCtx); err != nil {
		log.Error("saving the disk cache", "err", err)
	}
	return exit
}

func (m *mountFlags) logger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if m.debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// open signs in and resolves the folder as the flags say; the int is the
// exit code a failure deserves.
func (m *mountFlags) open(ctx context.Context, id string, log *slog.Logger) (*synfs.Filesystem, int, error) {
	home, _ := os.UserHomeDir()
	token, source, err := synapse.FindToken(m.token, os.Getenv, home)
	if err != nil {
		return nil, 1, err
	}
	if token == "" {
		return nil, 1, errors.New("no Synapse token: pass --token, set SYNAPSE_AUTH_TOKEN, or put authtoken in ~/.synapseConfig")
	}
	log.Debug("using token", "from", source)
	client, err := synapse.NewClient(synapse.Config{RepoEndpoint: m.repoEndpoint, FileEndpoint: m.fileEndpoint, Token: token, Logger: log})
	if err != nil {
		return nil, 2, err
	}
	opts := synfs.Options{
		Client: client, FolderID: id, S3Endpoint: m.s3Endpoint, ReadOnly: m.readOnly, SpoolDir: m.spoolDir,
		FileMode: uint32(m.fileMode), DirMode: uint32(m.dirMode), MetadataTTL: m.metadataTTL,
		MaxMemory: int64(m.maxMemory), CacheDir: m.cacheDir, CacheSize: int64(m.cacheSize), Logger: log,
	}
	if m.uid >= 0 || m.gid >= 0 {
		opts.Owner = &synfs.Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
		if m.uid >= 0 {
			opts.Owner.UID = uint32(m.uid)
		}
		if m.gid >= 0 {
			opts.Owner.GID = uint32(m.gid)
		}
	}
	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	fsys, err := synfs.Open(setupCtx, opts)
	if err != nil {
		return nil, 1, err
	}
	return fsys, 0, nil
}

// waitUnmount serves until the mount goes away (fusermount3 -u, umount) or
// a signal arrives, which unmounts.
func waitUnmount(ctx context.Context, server *fuse.Server, mountpoint string, log *slog.Logger) int {
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("unmounted", "mountpoint", mountpoint)
		return 0
	case <-ctx.Done():
	}
	if err := server.Unmount(); err != nil {
		// Busy (a shell sits in it): detach now, the kernel finishes when
		// the last user leaves.
		log.Warn("unmount failed; detaching lazily", "err", err)
		if err := syscall.Unmount(mountpoint, syscall.MNT_DETACH); err != nil {
			log.Error("lazy unmount failed", "err", err)
			return 1
		}
	}
	<-done
	log.Info("unmounted", "mountpoint", mountpoint)
	return 0
}

// background re-runs this command in the foreground as a detached child and
// returns when the child reports the mount ready, or its error.
func background(ctx context.Context, args []string, id, logFile string, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "synfs: %v\n", err)
		return 1
	}
	if logFile == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		logFile = filepath.Join(dir, "synfs", id+".log")
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o700); err != nil {
		fmt.Fprintf(stderr, "synfs: log directory: %v\n", err)
		return 1
	}
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(stderr, "synfs: log file: %v\n", err)
		return 1
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "synfs: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, append([]string{"mount", "--foreground"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw} // fd 3
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "synfs: starting the mount process: %v\n", err)
		return 1
	}
	pw.Close()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	line = strings.TrimSpace(line)
	if msg, ok := strings.CutPrefix(line, "ok "); ok {
		cmd.Process.Release()
		fmt.Fprintf(stderr, "synfs: %s (logs: %s)\n", msg, logFile)
		return 0
	}
	cmd.Wait()
	if line == "" {
		line = "synfs: the mount process exited before the mount was ready; see " + logFile
	}
	fmt.Fprintln(stderr, line)
	return 1
}

// readyReporter returns how to tell a waiting parent the outcome; a no-op
// when there is no parent waiting.
func readyReporter() func(string) {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil {
		return func(string) {}
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(uintptr(fd), "ready")
	return func(line string) {
		if f == nil {
			return
		}
		fmt.Fprintln(f, line)
		f.Close()
		f = nil
	}
}

// checkMountpoint refuses what would surprise a user: a missing path, a
// file, a directory with contents (they would be hidden) or a mount.
func checkMountpoint(p string) error {
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist", p)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %v", p, err)
	case !st.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", p)
	}
	if mounted, err := isMountpoint(p); err == nil && mounted {
		return fmt.Errorf("mountpoint %s is already mounted", p)
	}
	d, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %v", p, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("mountpoint %s is not empty", p)
	}
	return nil
}

// isMountpoint looks the path up in this process's mount table.
func isMountpoint(p string) (bool, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMountinfo(f[4]) == abs {
			return true, nil
		}
	}
	return false, nil
}

func unescapeMountinfo(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
