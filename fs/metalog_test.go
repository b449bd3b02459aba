package fs

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMetaLogReopens: what one mount records, the next one finds; the
// latest record of an entity wins, torn and foreign lines are skipped, and
// a log of mostly superseded lines is compacted.
func TestMetaLogReopens(t *testing.T) {
	mod := time.Date(2026, 12, 4, 10, 0, 0, 123e6, time.UTC)
	meta := func(size int64) fileMeta {
		return fileMeta{version: 2, modified: mod, handleID: fmt.Sprint(1000 + size), key: "base/uuid/f.txt", size: size, md5: "0123456789abcdef0123456789abcdef"}
	}
	tests := []struct {
		name      string
		record    map[string][]int64 // sizes recorded per entity, in order
		append    string             // raw bytes after the records
		want      map[string]int64   // size found on reopening
		wantLines int                // lines in the log after reopening
	}{
		{"empty", nil, "", map[string]int64{}, 0},
		{"latest wins", map[string][]int64{"syn1": {5, 7}, "syn2": {9}}, "", map[string]int64{"syn1": 7, "syn2": 9}, 3},
		{"torn last line", map[string][]int64{"syn1": {5}}, `{"id":"syn2","v":1,"fh":"12`, map[string]int64{"syn1": 5}, 2},
		{"foreign lines", map[string][]int64{"syn1": {5}}, "not json\n{}\n" + `{"id":"syn3","size":4}` + "\n", map[string]int64{"syn1": 5}, 4},
		{"compacted", map[string][]int64{"syn1": make([]int64, 1500), "syn2": {3}}, "", map[string]int64{"syn1": 0, "syn2": 3}, 2},
	}
	check := func(t *testing.T, metas map[string]fileMeta, want map[string]int64) {
		t.Helper()
		if len(metas) != len(want) {
			t.Fatalf("%d entries; want %d", len(metas), len(want))
		}
		for id, size := range want {
			got, w := metas[id], meta(size)
			if !got.modified.Equal(w.modified) {
				t.Errorf("%s: modified %v; want %v", id, got.modified, w.modified)
			}
			got.modified = w.modified
			if got != w {
				t.Errorf("%s: %+v; want %+v", id, got, w)
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, metas, err := openMetaLog(dir, "syn9", slog.Default())
			if err != nil || len(metas) != 0 {
				t.Fatalf("new log: %v, %d entries", err, len(metas))
			}
			for id, sizes := range tc.record {
				for _, s := range sizes {
					l.record(id, meta(s))
				}
			}
			if err := l.close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "metadata", "syn9.jsonl")
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tc.append)
			f.Close()

			l, metas, err = openMetaLog(dir, "syn9", slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			check(t, metas, tc.want)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })); n != tc.wantLines {
				t.Errorf("the log has %d lines; want %d", n, tc.wantLines)
			}

			// What this mount records, the next one finds too.
			l.record("syn5", meta(11))
			l.close()
			_, metas, err = openMetaLog(dir, "syn9", slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			tc.want["syn5"] = 11
			check(t, metas, tc.want)
		})
	}
}

// TestMetaLogIsPrivate: the names and keys of a user's files are theirs
// alone to read.
func TestMetaLogIsPrivate(t *testing.T) {
	dir := t.TempDir()
	l, _, err := openMetaLog(dir, "syn9", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	l.record("syn1", fileMeta{handleID: "7", key: "base/k", size: 1})
	l.close()
	for _, p := range []string{filepath.Join(dir, "metadata"), filepath.Join(dir, "metadata", "syn9.jsonl")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %o; want no access for group or others", p, perm)
		}
	}
}
