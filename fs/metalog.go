package fs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// metaLog keeps resolved file metadata in --cache-dir across mounts. A
// listing carries no size or handle, so without it a remount pays one
// Synapse call per file again (about 100 s for 1000 files at the
// service's 600 calls a minute), even when every byte is on disk. An
// entry is used only while the entity's version and modification time in
// a fresh listing match the recorded ones, and any change to an entity
// moves its modification time, so a stale entry is never served.
//
// The log is a file of JSON lines, one per resolution, appended with one
// write each; the last line for an entity wins. A torn or foreign line is
// skipped. Opening compacts it when most lines are superseded; two mounts
// may share a log, and what one appends while the other compacts is lost,
// which costs only calls. It holds names of objects, sizes and digests
// only: no token, no credentials.
type metaLog struct {
	path string
	log  *slog.Logger

	mu sync.Mutex
	f  *os.File // nil after a failed write: the log stops, the mount goes on
}

// metaRecord is one line of the log.
type metaRecord struct {
	ID       string    `json:"id"`
	Version  int64     `json:"v"`
	Modified time.Time `json:"mod"`
	HandleID string    `json:"fh"`
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	MD5      string    `json:"md5,omitempty"`
}

// metaLogMaxEntries bounds what one log keeps: at about 200 bytes a line,
// 50 MB of disk and somewhat more of memory at open, for trees far larger
// than Synapse's 10,000 children per folder.
const metaLogMaxEntries = 250_000

// openMetaLog opens the log of the folder rootID under cacheDir and returns
// the metadata it holds, by entity id.
func openMetaLog(cacheDir, rootID string, log *slog.Logger) (*metaLog, map[string]fileMeta, error) {
	dir := filepath.Join(cacheDir, "metadata")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	l := &metaLog{path: filepath.Join(dir, rootID+".jsonl"), log: log}
	metas, order, lines, torn, err := l.load()
	if err != nil {
		return nil, nil, err
	}
	if len(order) > metaLogMaxEntries {
		for _, id := range order[:len(order)-metaLogMaxEntries] {
			delete(metas, id)
		}
		order = order[len(order)-metaLogMaxEntries:]
	}
	if lines > 2*len(order)+1000 || lines > metaLogMaxEntries {
		if err := l.compact(metas, order); err != nil {
			return nil, nil, err
		}
	}
	if l.f, err = os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
		return nil, nil, err
	}
	if torn {
		// End the torn line, or the next record would join it and be lost.
		if _, err := l.f.WriteString("\n"); err != nil {
			l.f.Close()
			return nil, nil, err
		}
	}
	return l, metas, nil
}

// load reads the log: the entries, their ids from least to most recently
// written, how many lines it has, and whether the last one is torn (a
// writer stopped halfway).
func (l *metaLog) load() (metas map[string]fileMeta, order []string, lines int, torn bool, err error) {
	metas = map[string]fileMeta{}
	b, err := os.ReadFile(l.path)
	if os.IsNotExist(err) {
		return metas, nil, 0, false, nil
	}
	if err != nil {
		return nil, nil, 0, false, err
	}
	seq := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines++
		var r metaRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.ID == "" || r.HandleID == "" || r.Size < 0 {
			continue
		}
		metas[r.ID] = fileMeta{version: r.Version, modified: r.Modified, handleID: r.HandleID, key: r.Key, size: r.Size, md5: r.MD5}
		seq[r.ID] = lines
	}
	if err := sc.Err(); err != nil {
		return nil, nil, 0, false, fmt.Errorf("reading %s: %w", l.path, err)
	}
	order = make([]string, 0, len(seq))
	for id := range seq {
		order = append(order, id)
	}
	slices.SortFunc(order, func(a, b string) int { return seq[a] - seq[b] })
	return metas, order, lines, len(b) > 0 && b[len(b)-1] != '\n', nil
}

// compact rewrites the log with one line per entry, in order.
func (l *metaLog) compact(metas map[string]fileMeta, order []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(l.path), filepath.Base(l.path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	for _, id := range order {
		if err := writeRecord(w, id, metas[id]); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), l.path)
}

func writeRecord(w io.Writer, id string, m fileMeta) error {
	b, err := json.Marshal(metaRecord{ID: id, Version: m.version, Modified: m.modified, HandleID: m.handleID, Key: m.key, Size: m.size, MD5: m.md5})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// record appends one resolution. A failed write stops the log, with one
// warning: the mount works as well without it, only remounts pay again.
func (l *metaLog) record(id string, m fileMeta) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	if err := writeRecord(l.f, id, m); err != nil {
		l.log.Warn("metadata log: writing failed; remounts will ask Synapse for file metadata again", "path", l.path, "err", err)
		l.f.Close()
		l.f = nil
		return
	}
}

func (l *metaLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
