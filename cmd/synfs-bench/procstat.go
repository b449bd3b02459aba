package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture this runs on (Go has no sysconf to ask).
const clockTicks = 100

// procCPU is the user+system CPU time a process has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15). The command name
// (field 2) may hold spaces and parentheses, so fields count from the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat %q", stat)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed utime/stime in /proc stat %q", stat)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procStatusBytes reads a "kB" line of /proc/PID/status, e.g. VmRSS.
func procStatusBytes(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusBytes(string(b), key)
}

func parseStatusBytes(status, key string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line %q", key, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed %s line %q", key, line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc status", key)
}

// connsTo counts the process's established TCP connections to port: how
// many S3 GETs it can have in flight, since an HTTP client opens a new
// connection only when every pooled one is busy.
func connsTo(pid, port int) int {
	inodes := map[uint64]bool{}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return 0
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(target, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				inodes[n] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		n += countEstablished(bufio.NewScanner(f), port, inodes)
		f.Close()
	}
	return n
}

// countEstablished reads a /proc/net/tcp table: remote address is field 2
// (hex ADDR:PORT), state field 3 (01 = ESTABLISHED), inode field 9.
func countEstablished(sc *bufio.Scanner, port int, inodes map[uint64]bool) int {
	n := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "01" {
			continue
		}
		_, hexPort, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 32)
		if err != nil || int(p) != port {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err == nil && inodes[ino] {
			n++
		}
	}
	return n
}

// watcher samples a process's RSS and S3 connections while a run goes on:
// VmHWM would only give the peak since the mount started, and a mount
// serves several runs.
type watcher struct {
	stop, done chan struct{}
	peakRSS    int64
	peakConns  int
}

func watch(pid, s3Port int, every time.Duration) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() {
		if rss, err := procStatusBytes(pid, "VmRSS"); err == nil {
			w.peakRSS = max(w.peakRSS, rss)
		}
		w.peakConns = max(w.peakConns, connsTo(pid, s3Port))
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		sample()
		for {
			select {
			case <-w.stop:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return w
}

// finish stops sampling and returns the peaks.
func (w *watcher) finish() (peakRSS int64, peakConns int) {
	close(w.stop)
	<-w.done
	return w.peakRSS, w.peakConns
}

// selfCPU is this process's CPU time so far, every thread included.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return rusageTime(ru)
}

// threadCPU is the calling OS thread's CPU time; the caller must hold its
// thread (runtime.LockOSThread) for two readings to mean anything.
func threadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD, not exported by package syscall
	var ru syscall.Rusage
	syscall.Getrusage(rusageThread, &ru)
	return rusageTime(ru)
}

func rusageTime(ru syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
