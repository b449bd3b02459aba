package spool_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synfs/synfs/fs/spool"
)

func open(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func journal(root, name string, created time.Time) spool.Journal {
	return spool.Journal{Root: root, ParentID: "syn900", Name: name, Created: created}
}

// stage creates an entry holding data; closed marks it as close() would.
func stage(t *testing.T, s *spool.Spool, j spool.Journal, data []byte, closed bool) *spool.Entry {
	t.Helper()
	e, err := s.Create(j)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.File().Write(data); err != nil {
		t.Fatal(err)
	}
	if closed {
		if err := e.Update(func(j *spool.Journal) { j.Closed = true }); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func contents(t *testing.T, e *spool.Entry) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(e.File(), 0, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pending(t *testing.T, s *spool.Spool, root string) []*spool.Entry {
	t.Helper()
	es, err := s.Pending(root)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func names(es []*spool.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Journal().Name)
	}
	return out
}

func closeAll(t *testing.T, es []*spool.Entry) {
	t.Helper()
	for _, e := range es {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	created := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	want := spool.Journal{Root: "syn1", ParentID: "syn2", Name: "a b.txt", EntityID: "syn3", BaseEtag: "etag-1", Created: created}
	e, err := s.Create(want)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.File().Write([]byte("hello, ")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.File().WriteAt([]byte("world"), 7); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := e.Update(func(j *spool.Journal) { j.Closed, j.Attempts, j.LastError = true, 2, "EIO: 503" }); err != nil {
		t.Fatal(err)
	}
	want.Closed, want.Attempts, want.LastError = true, 2, "EIO: 503"
	if got := e.Journal(); !reflect.DeepEqual(got, want) {
		t.Errorf("Journal() = %+v, want %+v", got, want)
	}
	if got := contents(t, e); string(got) != "hello, world" {
		t.Errorf("data %q", got)
	}
	if err := e.Update(func(j *spool.Journal) { j.Name = "" }); err == nil {
		t.Error("Update accepted a journal without a name")
	}

	// What a new process reads back.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	es := pending(t, open(t, dir), "syn1")
	if len(es) != 1 {
		t.Fatalf("Pending = %d entries, want 1", len(es))
	}
	e = es[0]
	got := e.Journal()
	if !got.Created.Equal(want.Created) {
		t.Errorf("created %v after restart, want %v", got.Created, want.Created)
	}
	if got.Created = want.Created; got != want {
		t.Errorf("journal after restart %+v, want %+v", got, want)
	}
	if got := contents(t, e); string(got) != "hello, world" || e.Damaged() != nil {
		t.Errorf("after restart: data %q, damaged %v", got, e.Damaged())
	}

	if err := e.Remove(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left after Remove: %v", left)
	}
	if err := e.Update(func(*spool.Journal) {}); err == nil {
		t.Error("Update after Remove succeeded")
	}
	if es := pending(t, s, "syn1"); len(es) != 0 {
		t.Errorf("Pending after Remove: %v", names(es))
	}
}

func TestCreateRefusesIncompleteJournal(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	now := time.Now()
	for _, j := range []spool.Journal{
		{ParentID: "syn2", Name: "x", Created: now},
		{Root: "syn1", Name: "x", Created: now},
		{Root: "syn1", ParentID: "syn2", Created: now},
	} {
		if e, err := s.Create(j); err == nil {
			t.Errorf("Create(%+v) = %v, want an error", j, e.ID())
		}
	}
	if left, _ := os.ReadDir(s.Dir()); len(left) != 0 {
		t.Errorf("refused creates left files: %v", left)
	}
}

func TestPendingAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := open(t, dir)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	staged := []struct {
		root   string
		name   string
		age    time.Duration // before base
		closed bool
	}{
		{"syn1", "newest", 1 * time.Hour, true},
		{"syn2", "other root", 10 * time.Hour, true},
		{"syn1", "oldest", 9 * time.Hour, true},
		{"syn1", "partial write", 5 * time.Hour, false},
		{"syn1", "middle", 3 * time.Hour, true},
	}
	for _, st := range staged {
		e := stage(t, first, journal(st.root, st.name, base.Add(-st.age)), []byte("bytes of "+st.name), st.closed)
		if err := e.Close(); err != nil { // the process ends
			t.Fatal(err)
		}
	}

	restarted := open(t, dir)
	tests := []struct {
		root   string
		want   []string
		closed []bool
	}{
		{"syn1", []string{"oldest", "partial write", "middle", "newest"}, []bool{true, false, true, true}},
		{"syn2", []string{"other root"}, []bool{true}},
		{"syn3", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.root, func(t *testing.T) {
			es := pending(t, restarted, tc.root)
			defer closeAll(t, es)
			if got := names(es); !slices.Equal(got, tc.want) {
				t.Fatalf("Pending(%s) = %q, want %q (oldest first)", tc.root, got, tc.want)
			}
			for i, e := range es {
				j := e.Journal()
				if j.Root != tc.root || j.Closed != tc.closed[i] {
					t.Errorf("%s: root %s closed %v, want %s %v", j.Name, j.Root, j.Closed, tc.root, tc.closed[i])
				}
				if got := contents(t, e); string(got) != "bytes of "+j.Name {
					t.Errorf("%s: data %q", j.Name, got)
				}
			}
			// While this process holds them, another mount gets none.
			if got := pending(t, open(t, dir), tc.root); len(got) != 0 {
				t.Errorf("a second Spool claimed %q while they were held", names(got))
			}
		})
	}
}

func TestLockedEntryIsSkipped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := open(t, dir), open(t, dir)
	e := stage(t, a, journal("syn1", "busy", time.Now()), []byte("x"), true)
	for _, s := range []*spool.Spool{a, b} {
		if es := pending(t, s, "syn1"); len(es) != 0 {
			t.Errorf("Pending claimed %q, owned by a live entry", names(es))
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	es := pending(t, b, "syn1")
	if len(es) != 1 {
		t.Fatalf("after Close, Pending = %q, want [busy]", names(es))
	}
	defer closeAll(t, es)
	if es2 := pending(t, a, "syn1"); len(es2) != 0 {
		t.Errorf("claimed twice: %q", names(es2))
	}
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(dir string) error
	}{
		{"new directory", func(string) error { return nil }},
		{"new nested directory", func(string) error { return nil }},
		{"existing 0755", func(dir string) error { return os.Mkdir(dir, 0o755) }},
		{"existing 0777", func(dir string) error { return os.Mkdir(dir, 0o777) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "spool")
			if tc.name == "new nested directory" {
				dir = filepath.Join(dir, "a", "b")
			}
			if err := tc.prepare(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			s := open(t, dir)
			e := stage(t, s, journal("syn1", "f", time.Now()), []byte("secret science"), true)
			defer e.Close()
			check := func(path string, want os.FileMode) {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != want {
					t.Errorf("%s: mode %o, want %o", filepath.Base(path), got, want)
				}
			}
			check(dir, 0o700)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 2 {
				t.Errorf("spool holds %d files, want data and journal", len(entries))
			}
			for _, d := range entries {
				check(filepath.Join(dir, d.Name()), 0o600)
			}
		})
	}
}

func TestOpenRefusesAFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := spool.Open(p); err == nil {
		t.Error("Open of a regular file succeeded")
	}
}

// TestDamage covers crash debris: damaged journals are reported with
// their data kept; leftovers that hold no bytes are cleaned up silently.
func TestDamage(t *testing.T) {
	t.Parallel()
	journalOf := func(dir string, e *spool.Entry) string { return filepath.Join(dir, e.ID()+".json") }
	tests := []struct {
		name     string
		data     string
		damage   func(dir string, e *spool.Entry) error
		reported bool   // Pending returns it as damaged; otherwise it is gone
		root     string // who looks: damage is reported to every root
	}{
		{"torn journal", "payload", func(dir string, e *spool.Entry) error {
			b, err := os.ReadFile(journalOf(dir, e))
			if err != nil {
				return err
			}
			return os.WriteFile(journalOf(dir, e), b[:len(b)/2], 0o600)
		}, true, "syn7"},
		{"garbage journal", "payload", func(dir string, e *spool.Entry) error {
			return os.WriteFile(journalOf(dir, e), []byte("\x00\x00\x00"), 0o600)
		}, true, "syn7"},
		{"empty journal file", "payload", func(dir string, e *spool.Entry) error {
			return os.WriteFile(journalOf(dir, e), nil, 0o600)
		}, true, "syn7"},
		{"journal without its fields", "payload", func(dir string, e *spool.Entry) error {
			return os.WriteFile(journalOf(dir, e), []byte(`{"format":1}`), 0o600)
		}, true, "syn7"},
		{"journal from a newer synfs", "payload", func(dir string, e *spool.Entry) error {
			return os.WriteFile(journalOf(dir, e), []byte(`{"format":99,"root":"syn1","parentId":"syn2","name":"f"}`), 0o600)
		}, true, "syn7"},
		{"data without journal", "payload", func(dir string, e *spool.Entry) error {
			return os.Remove(journalOf(dir, e))
		}, true, "syn7"},
		{"empty data without journal (Create cut short)", "", func(dir string, e *spool.Entry) error {
			return os.Remove(journalOf(dir, e))
		}, false, "syn7"},
		{"journal without data (Remove cut short)", "payload", func(dir string, e *spool.Entry) error {
			return os.Remove(e.Path())
		}, false, "syn1"}, // its root's mount: others do not touch it
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := open(t, dir)
			e := stage(t, s, journal("syn1", "f", time.Now()), []byte(tc.data), true)
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(dir, e); err != nil {
				t.Fatal(err)
			}
			es := pending(t, open(t, dir), tc.root)
			defer closeAll(t, es)
			if !tc.reported {
				if len(es) != 0 {
					t.Errorf("Pending = %d entries, want none", len(es))
				}
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("debris left: %v", left)
				}
				return
			}
			if len(es) != 1 {
				t.Fatalf("Pending = %d entries, want the damaged one", len(es))
			}
			d := es[0]
			if err := d.Damaged(); !errors.Is(err, spool.ErrDamaged) || !strings.Contains(err.Error(), d.Path()) {
				t.Errorf("Damaged() = %v, want ErrDamaged naming %s", err, d.Path())
			}
			if got := contents(t, d); string(got) != tc.data {
				t.Errorf("data %q, want %q kept", got, tc.data)
			}
			if d.Journal().Created.IsZero() {
				t.Error("a damaged entry has no time to sort by")
			}
			// The user says where it belongs: the repaired entry is whole.
			if err := d.Update(func(j *spool.Journal) { j.Root, j.ParentID, j.Name = "syn7", "syn8", "repaired" }); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			es = pending(t, open(t, dir), "syn7")
			if len(es) != 1 || es[0].Damaged() != nil || es[0].Journal().Name != "repaired" || string(contents(t, es[0])) != tc.data {
				t.Errorf("after repair: %d entries %q", len(es), names(es))
			}
		})
	}
}

// TestUnopenableDataIsReported: a data file Pending cannot open comes back
// as a damaged entry with what its journal says, and cannot be changed.
func TestUnopenableDataIsReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	e := stage(t, s, journal("syn1", "f", time.Now()), []byte("payload"), true)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// A directory where the data should be: open fails even for root.
	if err := os.Remove(e.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	es := pending(t, s, "syn1")
	if len(es) != 1 {
		t.Fatalf("Pending = %d entries, want the unopenable one", len(es))
	}
	d := es[0]
	if !errors.Is(d.Damaged(), spool.ErrDamaged) || d.File() != nil || d.Journal().Name != "f" {
		t.Errorf("Damaged() = %v, File() = %v, name %q; want ErrDamaged, nil, f", d.Damaged(), d.File(), d.Journal().Name)
	}
	if err := d.Update(func(*spool.Journal) {}); !errors.Is(err, spool.ErrDamaged) {
		t.Errorf("Update = %v, want ErrDamaged", err)
	}
	if err := d.Remove(); err == nil {
		t.Error("Remove of an entry it could not lock succeeded")
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(dir, d.ID()+".json")); err != nil {
		t.Errorf("journal gone: %v", err)
	}
}

func TestInterruptedUpdateKeepsTheOldJournal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	e := stage(t, s, journal("syn1", "f", time.Now()), []byte("payload"), true)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash between writing the new journal and renaming it.
	tmp := filepath.Join(dir, e.ID()+".json.tmp")
	if err := os.WriteFile(tmp, []byte(`{"format":1,"root":"syn1","par`), 0o600); err != nil {
		t.Fatal(err)
	}
	es := pending(t, open(t, dir), "syn1")
	defer closeAll(t, es)
	if len(es) != 1 || es[0].Damaged() != nil || !es[0].Journal().Closed {
		t.Fatalf("Pending = %d entries (damaged %v), want the entry with its old journal", len(es), es[0].Damaged())
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the torn temp journal is still there (%v)", err)
	}
}

// TestJournalHoldsNoSecrets pins the journal's fields: a new one must be
// added here on purpose, after checking it is no secret.
func TestJournalHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[spool.Journal]()
	for f := range typ.Fields() {
		l := strings.ToLower(f.Name)
		for _, bad := range []string{"token", "secret", "key", "cred", "password", "auth", "session"} {
			if strings.Contains(l, bad) {
				t.Errorf("Journal.%s looks like a secret", f.Name)
			}
		}
	}
	dir := t.TempDir()
	e := stage(t, open(t, dir), spool.Journal{Root: "syn1", ParentID: "syn2", Name: "n", EntityID: "syn3", BaseEtag: "e"}, nil, true)
	defer e.Close()
	b, err := os.ReadFile(filepath.Join(dir, e.ID()+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"baseEtag", "closed", "created", "entityId", "format", "name", "parentId", "root"}
	if !slices.Equal(keys, want) {
		t.Errorf("journal keys %q, want %q", keys, want)
	}
}

// childEnv makes the test binary act as a writing mount that gets killed.
const childEnv = "SPOOL_TEST_KILLED_WRITER_DIR"

func killedWriterData(name string) []byte {
	return bytes.Repeat([]byte(name+"\n"), 50_000)
}

// TestKilledWriterLosesNoClosedFile runs a writer in another process,
// checks its live entries are off limits, SIGKILLs it and checks that a
// new Spool finds every closed file whole and the unclosed one reported.
func TestKilledWriterLosesNoClosedFile(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		runKilledWriter(dir)
		return
	}
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterLosesNoClosedFile$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child said %q, %v", line, err)
	}

	s := open(t, dir)
	if es := pending(t, s, "syn1"); len(es) != 0 {
		t.Fatalf("claimed %q from a live writer", names(es))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	_ = cmd.Wait()

	es := pending(t, s, "syn1")
	defer closeAll(t, es)
	want := map[string]bool{"closed-1": true, "closed-2": true, "open": false}
	if len(es) != len(want) {
		t.Fatalf("after the kill, Pending = %q, want %d entries", names(es), len(want))
	}
	for _, e := range es {
		j := e.Journal()
		closed, ok := want[j.Name]
		if !ok || j.Closed != closed || e.Damaged() != nil {
			t.Errorf("%s: closed %v, damaged %v; want closed %v", j.Name, j.Closed, e.Damaged(), closed)
		}
		if got := contents(t, e); !bytes.Equal(got, killedWriterData(j.Name)) {
			t.Errorf("%s: %d bytes, want %d", j.Name, len(got), len(killedWriterData(j.Name)))
		}
	}
}

func runKilledWriter(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	s, err := spool.Open(dir)
	if err != nil {
		fail(err)
	}
	for i, name := range []string{"closed-1", "open", "closed-2"} {
		e, err := s.Create(spool.Journal{Root: "syn1", ParentID: "syn2", Name: name, Created: time.Now().Add(time.Duration(i) * time.Second)})
		if err != nil {
			fail(err)
		}
		if _, err := e.File().Write(killedWriterData(name)); err != nil {
			fail(err)
		}
		if name != "open" {
			if err := e.Update(func(j *spool.Journal) { j.Closed = true }); err != nil {
				fail(err)
			}
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour) // killed here, holding every entry
}
