package main

import (
	"bufio"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// Quick unit tests of the arithmetic and formatting only: no mounts, no
// emulator, and never a timing assertion.

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{4, 1}, 2.5},
		{[]float64{5, 1, 3}, 3},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCombinedBound(t *testing.T) {
	// 1 / (1/3000 + 1/2000) = 1200: the times per byte add.
	if got := combinedBound(3000, 2000); math.Abs(got-1200) > 1e-9 {
		t.Errorf("combinedBound(3000, 2000) = %v, want 1200", got)
	}
	if got := combinedBound(0, 2000); got != 0 {
		t.Errorf("combinedBound without direct = %v, want 0 (unknown)", got)
	}
}

func TestBoundOf(t *testing.T) {
	cfg := config{S3Latency: 20 * time.Millisecond, S3ConnMBps: 50}
	lim := limits{Combined: 1200, FUSECeiling: 2000}
	for _, tc := range []struct {
		workload string
		want     float64
	}{
		{"seq1", 1200},
		{"warm", 2000},
		{"rand4k", 200}, // 4 threads / 20 ms
		{"rand1m", 4 / (0.02 + float64(1<<20)/50e6)}, // plus the transfer at 50 MB/s
		{"small-serial", 50},                         // one file per 20 ms
		{"small-par", 800},                           // 16 readers / 20 ms
		{"small-meta", 0},                            // no bound
	} {
		_, got := boundOf(tc.workload, cfg, lim, cfg.S3Latency.Seconds())
		if math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("boundOf(%s) = %v, want %v", tc.workload, got, tc.want)
		}
	}
}

func TestAggregateSkipsFailuresAndTakesPeaks(t *testing.T) {
	w := workloadSpec{Name: "seq1", Unit: "MB/s", Kind: kindStream}
	ss := []sample{
		{Rep: 1, Elapsed: 2, Bytes: 1 << 30, Fetched: 1 << 30, GETs: 128, CPU: 1, PeakRSS: 100 << 20, PeakConns: 8},
		{Rep: 2, Elapsed: 1, Bytes: 1 << 30, Fetched: 3 << 29, GETs: 192, CPU: 2, PeakRSS: 300 << 20, PeakConns: 4},
		{Rep: 3, Err: "mount: boom"},
	}
	r := aggregate(w, "synfs", "system", ss, "")
	wantRate := (float64(1<<30)/1e6/2 + float64(1<<30)/1e6) / 2
	if math.Abs(r.Rate-wantRate) > 1e-6 {
		t.Errorf("rate = %v, want the median %v", r.Rate, wantRate)
	}
	if r.FetchedPerRead != 1.25 || r.GETs != 160 || r.CPUPerGiB != 1.5 {
		t.Errorf("fetched/read %v, GETs %v, CPU/GiB %v; want 1.25, 160, 1.5", r.FetchedPerRead, r.GETs, r.CPUPerGiB)
	}
	if r.PeakRSSMiB != 300 || r.PeakConns != 8 {
		t.Errorf("peaks = %v MiB, %d conns; want the maxima 300, 8", r.PeakRSSMiB, r.PeakConns)
	}
	if !strings.Contains(r.Note, "1/3 runs failed: mount: boom") {
		t.Errorf("note %q does not say a run failed", r.Note)
	}
}

// fakeResults is a run where synfs meets some criteria and misses others.
func fakeResults() *results {
	res := newResults()
	gib := int64(1 << 30)
	add := func(w, who string, s sample) { s.Rep = 1; res.add(w, who, s) }
	add("seq1", direct64, sample{Elapsed: 1, Bytes: gib, CPU: 0.5})      // 1074 MB/s
	add("seq1", fuseCeiling, sample{Elapsed: 0.5, Bytes: gib, CPU: 0.5}) // 2147 MB/s
	add("seq1", "synfs", sample{Elapsed: 1.5, Bytes: gib, Fetched: gib, GETs: 128, CPU: 1, PeakRSS: 900 << 20, PeakConns: 16})
	add("seq1", directSame, sample{Elapsed: 1.4, Bytes: gib})
	add("seq1", "rclone", sample{Elapsed: 21, Bytes: gib, Fetched: gib})
	add("seq1", "s3fs", sample{Elapsed: 6, Bytes: gib, Fetched: gib})
	add("rand4k", "synfs", sample{Elapsed: 10, Ops: 2000, Bytes: 2000 * 4096, Fetched: 3000 << 20})
	add("small-par", "synfs", sample{Elapsed: 1.5, Ops: 1000, Bytes: 1000 << 16})
	res.note("remount", "synfs", "n/a (flag missing)")
	return res
}

func fakeConfig() config {
	return config{Reps: 1, S3Latency: 20 * time.Millisecond, S3ConnMBps: 50, MaxMemory: "1G", maxMemBytes: 1 << 30, Sizes: fullSizes}
}

func TestAcceptance(t *testing.T) {
	rep := buildReport(fakeConfig(), fakeResults(), reportInputs{systems: []string{"synfs", "rclone", "s3fs"}})
	got := map[string]criterion{}
	for _, c := range rep.Acceptance {
		got[c.Name] = c
	}
	for name, want := range map[string]string{
		"seq1: one reader vs combined bound":                      "PASS", // 716 MB/s = the bound
		"seq1: one reader vs s3fs":                                "FAIL", // 6 s / 1.5 s = 4x < 5x
		"seq1: one reader vs rclone":                              "FAIL", // 21 s / 1.5 s = 14x < 20x
		"seq1: vs direct(N), N = synfs's peak S3 conns":           "PASS", // 1.4 s / 1.5 s = 0.93x
		"seq1: bytes fetched / bytes read":                        "PASS",
		"seq1: CPU s/GiB vs direct(64) + FUSE ceiling":            "PASS", // 1 / (0.5 + 0.5) = 1.0x
		"rand4k: fetched <= 2x read + 1 block per read":           "FAIL", // 3000 MiB > 2 x 7.8 + 2000 MiB
		"rand4k: vs latency bound (threads / first-byte latency)": "PASS", // 200 ops/s = 1.0x
		"small-par: 16 readers within 1.3x of N/16 x 20ms":        "PASS", // 1.5 s <= 1.625 s
		"peak RSS <= --max-memory + 64 MiB":                       "PASS", // 900 <= 1088 MiB
		"remount: zero S3 GETs":                                   "n/a",
		"seq4: four readers vs combined bound":                    "n/a",
	} {
		c, ok := got[name]
		if !ok {
			t.Errorf("no criterion %q", name)
			continue
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s, target %s), want %s", name, c.Status, c.Value, c.Target, want)
		}
	}
	if got["remount: zero S3 GETs"].Detail != "n/a (flag missing)" {
		t.Errorf("remount n/a detail = %q, want the row's note", got["remount: zero S3 GETs"].Detail)
	}
}

func TestReportRowsAndRatios(t *testing.T) {
	rep := buildReport(fakeConfig(), fakeResults(), reportInputs{systems: []string{"synfs", "rclone", "s3fs"}})
	if rep.Limits.Combined <= 0 || math.Abs(rep.Limits.Combined-combinedBound(rep.Limits.Direct64, rep.Limits.FUSECeiling)) > 1e-9 {
		t.Fatalf("combined bound %v from %+v", rep.Limits.Combined, rep.Limits)
	}
	synfs, ok := rep.find("seq1", "synfs")
	if !ok {
		t.Fatal("no synfs row in seq1")
	}
	if v := synfs.VsPeers["rclone"]; math.Abs(v-14) > 1e-9 {
		t.Errorf("synfs vs rclone = %v, want 14 (21 s / 1.5 s)", v)
	}
	if _, self := synfs.VsPeers["synfs"]; self {
		t.Error("a row has a ratio to itself")
	}
	if math.Abs(synfs.VsBound-synfs.Rate/rep.Limits.Combined) > 1e-9 {
		t.Errorf("vs bound %v, want rate/combined", synfs.VsBound)
	}
	last := rep.Workloads[0].Rows[len(rep.Workloads[0].Rows)-1]
	if last.Kind != "bound" || last.Rate != rep.Limits.Combined {
		t.Errorf("seq1's last row = %+v, want the combined bound", last)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not encode: %v", err)
	}
}

func TestMarkdown(t *testing.T) {
	rep := buildReport(fakeConfig(), fakeResults(), reportInputs{systems: []string{"synfs", "rclone", "s3fs"}, fresh: []float64{0.55, 1.6}})
	var b strings.Builder
	if err := writeMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"### seq1:", "× rclone", "*combined bound*", "### Acceptance (synfs)", "| FAIL ", "n/a (flag missing)",
		"fresh memory cost 0.55 CPU s/GiB at the start of the run and 1.60 at its end"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	// Every line of a table has as many cells as its header.
	var cells int
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			cells = 0
			continue
		}
		n := strings.Count(line, "|")
		if cells == 0 {
			cells = n
		} else if n != cells {
			t.Errorf("ragged table line (%d bars, header %d): %s", n, cells, line)
		}
	}
}

func TestRenderTableAligns(t *testing.T) {
	var b strings.Builder
	if err := renderTable(&b, []string{"name", "MB/s", "note"}, [][]string{{"synfs", "1200", "a|b"}, {"s3fs", "9.5", ""}}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"| name  | MB/s | note |\n" +
		"| ----- | ---: | ---- |\n" +
		"| synfs | 1200 | a/b  |\n" +
		"| s3fs  |  9.5 |      |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestPickList(t *testing.T) {
	got, err := pickList("s3fs, synfs", allSystems, "system")
	if err != nil || strings.Join(got, ",") != "synfs,s3fs" {
		t.Errorf("pickList = %v, %v; want canonical order synfs,s3fs", got, err)
	}
	if _, err := pickList("nfs", allSystems, "system"); err == nil {
		t.Error("an unknown system is accepted")
	}
}

func TestParseProc(t *testing.T) {
	// A command name with spaces and a parenthesis must not shift fields.
	stat := "4242 (rclone (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 12 0 100 0 0"
	if got, err := parseStatCPU(stat); err != nil || got != 3800*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.8s (380 ticks)", got, err)
	}
	status := "Name:\tsynfs\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
	if got, err := parseStatusBytes(status, "VmRSS"); err != nil || got != 100<<20 {
		t.Errorf("VmRSS = %d, %v; want 100 MiB", got, err)
	}
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A1B2 0100007F:2328 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0 20 4 30 10 -1
   1: 0100007F:A1B3 0100007F:2328 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:A1B4 0100007F:2328 06 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:A1B5 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 20 4 30 10 -1
`
	inodes := map[uint64]bool{111: true, 333: true, 444: true}
	// Port 0x2328 = 9000: 111 counts; 222 is another process's; 333 is
	// TIME_WAIT; 444 goes elsewhere.
	if got := countEstablished(bufio.NewScanner(strings.NewReader(tcp)), 9000, inodes); got != 1 {
		t.Errorf("countEstablished = %d, want 1", got)
	}
}

func TestRandomOffsetsDistinctAligned(t *testing.T) {
	offs := randomOffsets(1<<30, 4096, 2000, 4096)
	if len(offs) != 2000 {
		t.Fatalf("%d offsets, want 2000", len(offs))
	}
	seen := map[int64]bool{}
	for _, o := range offs {
		if o%4096 != 0 || o < 0 || o+4096 > 1<<30 || seen[o] {
			t.Fatalf("offset %d: misaligned, out of range or repeated", o)
		}
		seen[o] = true
	}
	again := randomOffsets(1<<30, 4096, 2000, 4096)
	for i := range offs {
		if offs[i] != again[i] {
			t.Fatal("offsets differ between calls: systems would read different ones")
		}
	}
}

func TestUsageHasFlag(t *testing.T) {
	usage := "usage: synfs mount [flags] SYN_ID MOUNTPOINT\n\nflags:\n  -cache-dir DIR\n    \tdisk tier of the block cache\n  -f\tshort for --foreground\n  -max-memory value\n"
	for name, want := range map[string]bool{"cache-dir": true, "f": true, "max-memory": true, "cache-size": false, "cache": false} {
		if got := usageHasFlag(usage, name); got != want {
			t.Errorf("usageHasFlag(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestFreshMemoryCostIsMeasured(t *testing.T) {
	s, err := freshMemoryCost()
	if err != nil {
		t.Fatal(err)
	}
	// Touching 256 MiB takes some CPU everywhere; zero means the thread's
	// CPU was not read, and minutes per GiB means a unit went wrong.
	if s <= 0 || s > 60 {
		t.Fatalf("fresh memory costs %v CPU s/GiB", s)
	}
}
