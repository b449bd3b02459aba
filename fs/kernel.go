package fs

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReadaheadKB is the kernel readahead synfs asks for on its mounts. The
// FUSE default (128 KiB) makes a reader with small buffers wait for one
// 128 KiB request at a time; a few MiB lets the kernel keep several 1 MiB
// requests in flight, which the block cache answers from its prefetch
// window.
const ReadaheadKB = 4096

// SetReadahead sets the kernel readahead of the filesystem mounted at
// mountpoint, through its backing device's sysfs entry. It needs root (or
// a writable sysfs); callers treat failure as a lost optimisation.
func SetReadahead(mountpoint string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return err
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(path, []byte(fmt.Sprint(kb)), 0)
}
