package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// mountOpts are the per-mount choices a workload makes.
type mountOpts struct {
	cacheDir string // synfs --cache-dir; "" for none
}

// system is one filesystem under test: how to mount it in the foreground
// (so that its pid is ours to watch) and where a data-set file appears.
type system struct {
	name string
	// dataCache: the process keeps file data across opens, so a cold read
	// needs a fresh mount, not just a dropped page cache.
	dataCache bool
	command   func(mp string, o mountOpts) (*exec.Cmd, error)
	path      func(rel string) string
}

// mountProc is one live mount and the foreground process serving it.
type mountProc struct {
	system string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	logf   string
	once   sync.Once
	log    *slog.Logger
}

func (m *mountProc) pid() int { return m.cmd.Process.Pid }

// liveMounts tracks what must be unmounted if the bench stops early.
type liveMounts struct {
	mu sync.Mutex
	m  map[*mountProc]bool
}

func (l *liveMounts) add(m *mountProc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[*mountProc]bool{}
	}
	l.m[m] = true
}

func (l *liveMounts) remove(m *mountProc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, m)
}

func (l *liveMounts) closeAll() {
	l.mu.Lock()
	ms := make([]*mountProc, 0, len(l.m))
	for m := range l.m {
		ms = append(ms, m)
	}
	l.mu.Unlock()
	for _, m := range ms {
		m.close()
		l.remove(m)
	}
}

// startMount runs cmd and waits until probe (a path under the mount)
// answers stat, so that no run times a mount still setting up.
func startMount(ctx context.Context, log *slog.Logger, sys *system, mp, logPath, probe string, o mountOpts, live *liveMounts) (*mountProc, error) {
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return nil, fmt.Errorf("mountpoint: %w", err)
	}
	cmd, err := sys.command(mp, o)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("mount log: %w", err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Out of our process group: the terminal's Ctrl-C must not kill a
	// mount before we unmount it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", sys.name, err)
	}
	m := &mountProc{system: sys.name, dir: mp, cmd: cmd, exited: make(chan struct{}), logf: logPath, log: log}
	go func() { cmd.Wait(); close(m.exited) }()
	live.add(m)

	deadline := time.Now().Add(2 * time.Minute)
	target := filepath.Join(mp, probe)
	for {
		if _, err := os.Stat(target); err == nil && isMountpoint(mp) {
			return m, nil
		}
		select {
		case <-m.exited:
			live.remove(m)
			m.close()
			return nil, fmt.Errorf("%s exited before the mount was ready (%v): %s", sys.name, cmd.ProcessState, logTail(logPath))
		case <-ctx.Done():
			live.remove(m)
			m.close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			live.remove(m)
			m.close()
			return nil, fmt.Errorf("%s: %s did not appear within 2m: %s", sys.name, probe, logTail(logPath))
		}
	}
}

// close unmounts (fusermount3 -u, then umount, then lazily) and waits for
// the serving process to exit, killing it if it does not.
func (m *mountProc) close() {
	m.once.Do(func() {
		if isMountpoint(m.dir) {
			if out, err := exec.Command("fusermount3", "-u", m.dir).CombinedOutput(); err != nil {
				m.log.Debug("fusermount3 -u failed; trying umount", "dir", m.dir, "err", err, "out", strings.TrimSpace(string(out)))
				if err := syscall.Unmount(m.dir, 0); err != nil {
					m.log.Warn("unmount busy; detaching lazily", "dir", m.dir, "err", err)
					syscall.Unmount(m.dir, syscall.MNT_DETACH)
				}
			}
		}
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			m.log.Warn("mount process still running after unmount; stopping it", "system", m.system, "pid", m.pid())
			m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(5 * time.Second):
				m.cmd.Process.Kill()
				<-m.exited
			}
		}
		if isMountpoint(m.dir) {
			syscall.Unmount(m.dir, syscall.MNT_DETACH)
		}
		os.Remove(m.dir)
	})
}

// abort breaks a mount that a stuck run is blocked in: reads then fail
// with ENOTCONN instead of hanging the bench.
func (m *mountProc) abort() {
	m.log.Warn("aborting the mount of a stuck run", "system", m.system, "dir", m.dir)
	syscall.Unmount(m.dir, syscall.MNT_DETACH)
	m.cmd.Process.Kill()
}

// isMountpoint looks dir up in the mount table.
func isMountpoint(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.ReplaceAll(f[4], `\040`, " ") == abs {
			return true
		}
	}
	return false
}

func logTail(p string) string {
	b, _ := os.ReadFile(p)
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	if s == "" {
		return "(empty log " + p + ")"
	}
	return s + " (log: " + p + ")"
}

// withoutAWSEnv drops the machine's AWS_* settings: AWS_CA_BUNDLE and the
// like send a peer looking for real AWS instead of the emulator.
func withoutAWSEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}

func synfsSystem(bin string, e *emulator, cfg config) *system {
	return &system{
		name:      "synfs",
		dataCache: true,
		command: func(mp string, o mountOpts) (*exec.Cmd, error) {
			args := []string{"mount", "-f",
				"--repo-endpoint", e.ready.RepoEndpoint,
				"--file-endpoint", e.ready.FileEndpoint,
				"--s3-endpoint", e.ready.S3Endpoint,
				"--max-memory", cfg.MaxMemory,
				"--metadata-ttl", cfg.MetadataTTL.String(),
			}
			if o.cacheDir != "" {
				args = append(args, "--cache-dir", o.cacheDir, "--cache-size", cfg.CacheSize)
			}
			args = append(args, e.ready.Folders[folderName], mp)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), "SYNAPSE_AUTH_TOKEN="+e.ready.Token)
			return cmd, nil
		},
		path: func(rel string) string { return rel },
	}
}

func rcloneSystem(bin string, e *emulator, l objectLayout) *system {
	return &system{
		name: "rclone",
		command: func(mp string, o mountOpts) (*exec.Cmd, error) {
			cmd := exec.Command(bin, "mount", "--read-only", "--vfs-cache-mode", "off",
				"emu:"+l.Bucket+"/"+l.BaseKey, mp)
			cmd.Env = append(withoutAWSEnv(),
				"RCLONE_CONFIG=/dev/null",
				"RCLONE_CONFIG_EMU_TYPE=s3",
				"RCLONE_CONFIG_EMU_PROVIDER=Other",
				"RCLONE_CONFIG_EMU_ENDPOINT="+e.ready.S3Endpoint,
				"RCLONE_CONFIG_EMU_ACCESS_KEY_ID="+e.ready.AdminAccessKeyID,
				"RCLONE_CONFIG_EMU_SECRET_ACCESS_KEY="+e.ready.AdminSecretAccessKey,
				"RCLONE_CONFIG_EMU_FORCE_PATH_STYLE=true",
				"RCLONE_CONFIG_EMU_REGION=us-east-1",
			)
			return cmd, nil
		},
		path: l.peerPath,
	}
}

func s3fsSystem(bin string, e *emulator, l objectLayout, passwdFile string) *system {
	return &system{
		name: "s3fs",
		command: func(mp string, o mountOpts) (*exec.Cmd, error) {
			if _, err := os.Stat(passwdFile); errors.Is(err, os.ErrNotExist) {
				key := e.ready.AdminAccessKeyID + ":" + e.ready.AdminSecretAccessKey + "\n"
				if err := os.WriteFile(passwdFile, []byte(key), 0o600); err != nil {
					return nil, fmt.Errorf("s3fs password file: %w", err)
				}
			}
			// -f keeps it a child we can watch; the defaults otherwise, as a
			// user installing the Debian package would run it.
			cmd := exec.Command(bin, l.Bucket+":/"+l.BaseKey, mp, "-f", "-o",
				"url="+e.ready.S3Endpoint+",use_path_request_style,passwd_file="+passwdFile+",ro,endpoint=us-east-1,sigv4")
			cmd.Env = withoutAWSEnv()
			return cmd, nil
		},
		path: l.peerPath,
	}
}

// synfsHasFlag asks the binary's own usage text, so the bench picks up a
// flag another engineer is adding without a rebuild of the bench.
func synfsHasFlag(bin, flagName string) bool {
	out, _ := exec.Command(bin, "mount", "-h").CombinedOutput()
	return usageHasFlag(string(out), flagName)
}

// usageHasFlag reads package flag's usage text: "  -name type" or "  -name"
// at the start of a line.
func usageHasFlag(usage, name string) bool {
	for _, line := range strings.Split(usage, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "-"+name || f[0] == "--"+name) {
			return true
		}
	}
	return false
}
