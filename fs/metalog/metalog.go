// Package metalog keeps the file metadata a mount resolved, in its cache
// directory, for the next mount of the same folder. A Synapse listing
// carries no size or file handle, so without it a remount pays one
// Synapse call per file again (about 100 s for 1000 files at the
// service's 600 calls a minute), even when every byte is on disk. The
// caller uses an entry only while the entity's version and modification
// time in a fresh listing match the recorded ones; any change to an
// entity moves its modification time.
//
// A log is a file of JSON lines, one per resolution, appended with one
// write each; the last line for an entity wins. Torn, over-long and
// foreign lines are skipped. Opening compacts the file when most lines
// are superseded. A mount that has the log open while another compacts it
// goes on appending to the replaced file: what it records from then on is
// lost to later mounts, which ask Synapse again.
//
// Nothing here may stop a mount: the log is only a saving. Whatever goes
// wrong is logged once and the mount goes on with what could be read.
// It holds object keys, sizes and digests, never a token or credentials;
// files are 0600 in a 0700 directory.
package metalog

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Entry is what a mount resolved about one file entity.
type Entry struct {
	Version  int64     `json:"v"`
	Modified time.Time `json:"mod"`
	HandleID string    `json:"fh"`
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	MD5      string    `json:"md5,omitempty"`
}

type record struct {
	ID string `json:"id"`
	Entry
}

// MaxEntries bounds one log: about 25 MiB of disk, and as much memory
// while the mount runs, for trees ten times Synapse's 10,000 children
// per folder. The least recently recorded entries go first.
const MaxEntries = 100_000

// maxLines bounds the file while a mount appends to it: a mount that
// meets more files than that stops recording, and the next compacts.
const maxLines = 2*MaxEntries + 1000

// maxLine is the longest line read; a record is a few hundred bytes.
const maxLine = 64 << 10

// Log appends a mount's resolutions. A nil *Log records nothing.
type Log struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	f     *os.File // nil once a write failed or the log is full
	lines int      // in the file
}

// Open opens the log of the folder rootID in dir and returns the entries
// it holds, by entity id. It does not fail: on trouble it warns and
// returns what it could read, and a nil Log when it cannot append.
func Open(dir, rootID string, log *slog.Logger) (*Log, map[string]Entry) {
	l := &Log{path: filepath.Join(dir, rootID+".jsonl"), log: log}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		l.warn("creating its directory", err)
		return nil, map[string]Entry{}
	}
	entries, order, lines, torn, err := l.load()
	if err != nil {
		l.warn("reading it", err)
		return nil, entries
	}
	capped := len(order) > MaxEntries
	if capped {
		for _, id := range order[:len(order)-MaxEntries] {
			delete(entries, id)
		}
		order = order[len(order)-MaxEntries:]
	}
	if capped || lines > 2*len(order)+1000 || lines >= maxLines {
		if err := l.compact(entries, order); err != nil {
			l.warn("compacting it", err)
			return nil, entries
		}
		torn, lines = false, len(order)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		l.warn("opening it", err)
		return nil, entries
	}
	if torn {
		// End the torn line, or the next record would join it and be lost.
		if _, err := f.WriteString("\n"); err != nil {
			f.Close()
			l.warn("ending a torn line", err)
			return nil, entries
		}
	}
	l.f, l.lines = f, lines
	return l, entries
}

func (l *Log) warn(doing string, err error) {
	l.log.Warn("metadata log: "+doing+" failed; mounts will ask Synapse for file metadata again", "path", l.path, "err", err)
}

// load reads the log: the entries, their ids from least to most recently
// recorded, how many lines it has, and whether the last one is torn (a
// writer stopped halfway). On a read error it returns the entries so far.
func (l *Log) load() (entries map[string]Entry, order []string, lines int, torn bool, err error) {
	entries = map[string]Entry{}
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return entries, nil, 0, false, nil
	}
	if err != nil {
		return entries, nil, 0, false, err
	}
	defer f.Close()
	seq := map[string]int{}
	br := bufio.NewReaderSize(f, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		long := false
		for errors.Is(err, bufio.ErrBufferFull) {
			long = true
			_, err = br.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return entries, nil, 0, false, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		lines++
		torn = err == io.EOF
		var r record
		if !long && json.Unmarshal(line, &r) == nil && r.ID != "" && r.HandleID != "" && r.Size >= 0 {
			entries[r.ID] = r.Entry
			seq[r.ID] = lines
		}
		if err == io.EOF {
			break
		}
	}
	order = make([]string, 0, len(seq))
	for id := range seq {
		order = append(order, id)
	}
	slices.SortFunc(order, func(a, b string) int { return seq[a] - seq[b] })
	return entries, order, lines, torn, nil
}

// compact rewrites the log with one line per entry, in order.
func (l *Log) compact(entries map[string]Entry, order []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(l.path), filepath.Base(l.path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	for _, id := range order {
		if b, err := marshal(id, entries[id]); err == nil {
			w.Write(b)
		}
	}
	if err := errors.Join(w.Flush(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), l.path)
}

func marshal(id string, e Entry) ([]byte, error) {
	b, err := json.Marshal(record{ID: id, Entry: e})
	return append(b, '\n'), err
}

// Record appends one resolution. A failed write stops the log, with one
// warning: the mount works as well without it, only remounts pay again.
func (l *Log) Record(id string, e Entry) {
	if l == nil {
		return
	}
	b, err := marshal(id, e)
	if err != nil {
		return // a time JSON cannot hold: this entry is not kept
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if l.lines >= maxLines {
		l.log.Warn("metadata log: full; files met from now on are not kept for the next mount", "path", l.path, "lines", l.lines)
		l.f.Close()
		l.f = nil
		return
	}
	if _, err := l.f.Write(b); err != nil {
		l.warn("appending to it", err)
		l.f.Close()
		l.f = nil
		return
	}
	l.lines++
}

// Close closes the file; later Records do nothing.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
