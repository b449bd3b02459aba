package metalog

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReopen: what one mount records, the next one finds; the latest
// record of an entity wins, torn, over-long and foreign lines are skipped,
// and a log of mostly superseded lines is compacted.
func TestReopen(t *testing.T) {
	mod := time.Date(2026, 12, 4, 10, 0, 0, 123e6, time.UTC)
	entry := func(size int64) Entry {
		return Entry{Version: 2, Modified: mod, HandleID: fmt.Sprint(1000 + size), Key: "base/uuid/f.txt", Size: size, MD5: "0123456789abcdef0123456789abcdef"}
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
		{"over-long line", map[string][]int64{"syn1": {5}}, strings.Repeat("x", 3*maxLine) + "\n", map[string]int64{"syn1": 5}, 2},
		{"over-long torn line", map[string][]int64{"syn1": {5}}, strings.Repeat("x", 3*maxLine), map[string]int64{"syn1": 5}, 2},
		{"compacted", map[string][]int64{"syn1": make([]int64, 1500), "syn2": {3}}, "", map[string]int64{"syn1": 0, "syn2": 3}, 2},
	}
	check := func(t *testing.T, entries map[string]Entry, want map[string]int64) {
		t.Helper()
		if len(entries) != len(want) {
			t.Fatalf("%d entries; want %d", len(entries), len(want))
		}
		for id, size := range want {
			got, w := entries[id], entry(size)
			if !got.Modified.Equal(w.Modified) {
				t.Errorf("%s: modified %v; want %v", id, got.Modified, w.Modified)
			}
			got.Modified = w.Modified
			if got != w {
				t.Errorf("%s: %+v; want %+v", id, got, w)
			}
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, entries := Open(dir, "syn9", slog.Default())
			if l == nil || len(entries) != 0 {
				t.Fatalf("new log: %v, %d entries", l, len(entries))
			}
			for id, sizes := range tc.record {
				for _, s := range sizes {
					l.Record(id, entry(s))
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "syn9.jsonl")
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tc.append)
			f.Close()

			l, entries = Open(dir, "syn9", slog.Default())
			if l == nil {
				t.Fatal("reopening gave no log to append to")
			}
			check(t, entries, tc.want)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })); n != tc.wantLines {
				t.Errorf("the log has %d lines; want %d", n, tc.wantLines)
			}

			// What this mount records, the next one finds too.
			l.Record("syn5", entry(11))
			l.Close()
			_, entries = Open(dir, "syn9", slog.Default())
			tc.want["syn5"] = 11
			check(t, entries, tc.want)
		})
	}
}

// TestCapped: a log keeps the MaxEntries most recently recorded entries.
func TestCapped(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir, "syn9", slog.Default())
	for i := range MaxEntries + 10 {
		l.Record(fmt.Sprintf("syn%d", i), Entry{Version: 1, HandleID: "1", Size: int64(i)})
	}
	l.Close()
	_, entries := Open(dir, "syn9", slog.Default())
	if len(entries) != MaxEntries {
		t.Fatalf("%d entries; want %d", len(entries), MaxEntries)
	}
	if _, ok := entries["syn9"]; ok {
		t.Error("kept one of the oldest entries")
	}
	if e, ok := entries[fmt.Sprintf("syn%d", MaxEntries+9)]; !ok || e.Size != MaxEntries+9 {
		t.Errorf("lost the newest entry: %+v", e)
	}
	// The dropped lines leave the file too, or it would grow by every
	// mount that meets new files.
	b, err := os.ReadFile(filepath.Join(dir, "syn9.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != MaxEntries {
		t.Errorf("log has %d lines after capping; want %d", n, MaxEntries)
	}
}

// TestFull: a mount that meets more files than a log may hold stops
// recording rather than grow the file without bound.
func TestFull(t *testing.T) {
	dir := t.TempDir()
	l, _ := Open(dir, "syn9", slog.New(slog.DiscardHandler))
	for i := range maxLines + 10 {
		l.Record(fmt.Sprintf("syn%d", i), Entry{Version: 1, HandleID: "1", Size: int64(i)})
	}
	l.Close()
	b, err := os.ReadFile(filepath.Join(dir, "syn9.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != maxLines {
		t.Errorf("log has %d lines; want the %d it may hold", n, maxLines)
	}
	_, entries := Open(dir, "syn9", slog.New(slog.DiscardHandler))
	if e, ok := entries[fmt.Sprintf("syn%d", maxLines-1)]; len(entries) != MaxEntries || !ok || e.Size != maxLines-1 {
		t.Errorf("reopened with %d entries, the last recorded %+v (%v); want %d, syn%d", len(entries), e, ok, MaxEntries, maxLines-1)
	}
}

// TestUnusableDirectory: a log that cannot be kept costs the next mount
// its saving, never the mount itself.
func TestUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, entries := Open(filepath.Join(file, "metadata"), "syn9", slog.Default())
	if l != nil || len(entries) != 0 {
		t.Fatalf("Open under a file: %v, %d entries; want no log", l, len(entries))
	}
	l.Record("syn1", Entry{HandleID: "1"}) // a nil Log records nothing
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPrivate: the names and keys of a user's files are theirs alone to
// read.
func TestPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metadata")
	l, _ := Open(dir, "syn9", slog.Default())
	l.Record("syn1", Entry{HandleID: "7", Key: "base/k", Size: 1})
	l.Close()
	for _, p := range []string{dir, filepath.Join(dir, "syn9.jsonl")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %o; want no access for group or others", p, perm)
		}
	}
}
