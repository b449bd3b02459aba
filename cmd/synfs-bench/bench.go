package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Participant names of the limits; systems go by their own names.
const (
	direct16     = "direct(16)"
	direct64     = "direct(64)"
	directSame   = "direct(synfs conns)"
	fuseCeiling  = "FUSE ceiling"
	randThreads  = 4
	smallReaders = 16
	// sampleEvery is how often RSS and connections are sampled: the
	// issue's 20 ms, fine enough to catch a buffer burst.
	sampleEvery = 20 * time.Millisecond
)

// sample is one measured run of one participant on one workload.
type sample struct {
	Rep          int     `json:"rep"`
	Elapsed      float64 `json:"elapsedSeconds"`
	Bytes        int64   `json:"bytesRead"`
	Ops          int64   `json:"ops"`
	GETs         int64   `json:"s3Gets"`
	Fetched      int64   `json:"bytesFetched"`
	S3Requests   int64   `json:"s3Requests"`
	SynapseCalls int64   `json:"synapseCalls"`
	Throttled    int64   `json:"synapseThrottled"`
	CPU          float64 `json:"cpuSeconds"`
	PeakRSS      int64   `json:"peakRSSBytes,omitempty"`
	PeakConns    int     `json:"peakS3Conns,omitempty"`
	Partial      bool    `json:"partial,omitempty"`
	Err          string  `json:"error,omitempty"`
	Note         string  `json:"note,omitempty"`
}

// results collects samples in the order participants first ran.
type results struct {
	mu      sync.Mutex
	order   map[string][]string
	samples map[string]map[string][]sample
	notes   map[string]map[string]string
}

func newResults() *results {
	return &results{order: map[string][]string{}, samples: map[string]map[string][]sample{}, notes: map[string]map[string]string{}}
}

func (r *results) see(workload, who string) {
	if !slices.Contains(r.order[workload], who) {
		r.order[workload] = append(r.order[workload], who)
	}
}

func (r *results) add(workload, who string, s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.see(workload, who)
	if r.samples[workload] == nil {
		r.samples[workload] = map[string][]sample{}
	}
	r.samples[workload][who] = append(r.samples[workload][who], s)
}

// note marks a row that has no numbers, and why (n/a, not installed).
func (r *results) note(workload, who, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.see(workload, who)
	if r.notes[workload] == nil {
		r.notes[workload] = map[string]string{}
	}
	r.notes[workload][who] = why
}

// bench is one run: the emulator, the systems, and what was measured.
type bench struct {
	cfg      config
	log      *slog.Logger
	work     string
	emu      *emulator
	layout   objectLayout
	systems  []*system
	live     liveMounts
	res      *results
	notes    []string
	cacheDir bool // synfs mount knows --cache-dir
	// synfsVersion says which synfs was measured: results are compared
	// across other engineers' changes.
	synfsVersion string

	mounts       int
	ceiling      []byte
	synfsConns   int // peak S3 connections of synfs's latest seq1 run
	dropFailed   bool
	peersMissing []string
}

func (b *bench) selected(w string) bool { return slices.Contains(b.cfg.Workloads, w) }

// runBench sets everything up, runs the workloads and returns the report
// of whatever was measured, also when it stops early.
func runBench(ctx context.Context, cfg config, log *slog.Logger) (*report, error) {
	started := time.Now()
	b := &bench{cfg: cfg, log: log, res: newResults()}
	// Always a new directory of our own, even under --work-dir: it is
	// removed at exit.
	if cfg.WorkDir != "" {
		if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
	}
	var err error
	b.work, err = os.MkdirTemp(cfg.WorkDir, "synfs-bench-*")
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	defer b.cleanup()
	if os.Geteuid() != 0 {
		b.addNote("not root: page-cache drops and direct FUSE mounts will likely fail")
	}

	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	var fresh []float64
	probe := func() {
		if s, err := freshMemoryCost(); err != nil {
			b.addNote("fresh memory cost not measured: " + err.Error())
		} else {
			fresh = append(fresh, s)
		}
	}
	probe()
	err = b.runAll(ctx)
	probe()
	return buildReport(cfg, b.res, reportInputs{
		started: started, systems: b.systemNames(), notes: b.notes, synfs: b.synfsVersion, fresh: fresh,
	}), err
}

func (b *bench) addNote(s string) {
	b.log.Warn(s)
	b.notes = append(b.notes, s)
}

func (b *bench) systemNames() []string {
	var names []string
	for _, s := range b.systems {
		names = append(names, s.name)
	}
	return names
}

func (b *bench) cleanup() {
	b.live.closeAll()
	b.emu.stop()
	if b.cfg.Keep {
		b.log.Info("kept the work dir", "dir", b.work)
		return
	}
	if err := os.RemoveAll(b.work); err != nil {
		b.log.Warn("removing the work dir", "dir", b.work, "err", err)
	}
}

func (b *bench) setup(ctx context.Context) error {
	bin := b.cfg.SynfsBin
	if bin == "" {
		bin = filepath.Join(b.work, "synfs")
		b.log.Info("building synfs", "out", bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/synfs")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/synfs (run from the module root, or pass --synfs-bin): %w\n%s", err, out)
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	b.cacheDir = synfsHasFlag(bin, "cache-dir")
	b.synfsVersion = describeSynfs(ctx, bin)
	if parts := (b.cfg.Sizes.Big + directPart - 1) / directPart; parts < 64 && b.selected("limits") {
		b.addNote(fmt.Sprintf("the big file has only %d parts of 8 MiB: direct(64) has at most %d GETs in flight", parts, parts))
	}

	gen := filepath.Join(b.work, "gen")
	b.log.Info("generating the data set", "dir", gen, "big", b.cfg.Sizes.Big, "smallFiles", b.cfg.Sizes.SmallN)
	if err := generate(ctx, gen, b.cfg.Sizes); err != nil {
		return err
	}
	b.log.Info("starting the emulator and importing")
	b.emu, err = startEmulator(ctx, b.log, bin, filepath.Join(b.work, "s3"), gen, filepath.Join(b.work, "emulator.log"), b.cfg)
	if err != nil {
		return err
	}
	// The emulator has its own copy now; ours would only crowd the page cache.
	if err := os.RemoveAll(gen); err != nil {
		b.log.Warn("removing the generated data", "err", err)
	}
	if b.layout, err = b.emu.layout(ctx, b.cfg.Sizes); err != nil {
		return err
	}
	b.log.Info("objects", "bucket", b.layout.Bucket, "baseKey", b.layout.BaseKey)

	for _, name := range b.cfg.Systems {
		switch name {
		case "synfs":
			b.systems = append(b.systems, synfsSystem(bin, b.emu, b.cfg))
		case "rclone", "s3fs":
			p, err := exec.LookPath(name)
			if err != nil {
				b.addNote(fmt.Sprintf("%s is not installed (apt-get install -y %s): its column is skipped", name, name))
				b.peersMissing = append(b.peersMissing, name)
				continue
			}
			if name == "rclone" {
				b.systems = append(b.systems, rcloneSystem(p, b.emu, b.layout))
			} else {
				b.systems = append(b.systems, s3fsSystem(p, b.emu, b.layout, filepath.Join(b.work, "s3fs.passwd")))
			}
		}
	}
	return nil
}

// runAll runs each workload for every participant in turn, rep after rep
// (A B C A B C), so that drift of the machine hits all alike.
func (b *bench) runAll(ctx context.Context) error {
	type step struct {
		who string
		run func(ctx context.Context, rep int)
	}
	var groups [][]step
	limits := b.selected("limits")
	if b.selected("seq1") || b.selected("warm") || limits {
		var g []step
		if limits {
			g = append(g,
				step{direct16, func(ctx context.Context, rep int) { b.direct(ctx, rep, direct16, 16) }},
				step{direct64, func(ctx context.Context, rep int) { b.direct(ctx, rep, direct64, 64) }},
				step{fuseCeiling, b.fuseCeiling})
		}
		if b.selected("seq1") || b.selected("warm") {
			for _, s := range b.systems {
				g = append(g, step{s.name, func(ctx context.Context, rep int) { b.seq(ctx, rep, s) }})
				if s.name == "synfs" && limits && b.selected("seq1") {
					g = append(g, step{directSame, func(ctx context.Context, rep int) {
						if b.synfsConns > 0 {
							b.direct(ctx, rep, directSame, b.synfsConns)
						}
					}})
				}
			}
		}
		groups = append(groups, g)
	}
	perSystem := func(f func(ctx context.Context, rep int, s *system)) []step {
		var g []step
		for _, s := range b.systems {
			g = append(g, step{s.name, func(ctx context.Context, rep int) { f(ctx, rep, s) }})
		}
		return g
	}
	if b.selected("seq4") {
		groups = append(groups, perSystem(b.seq4))
	}
	if b.selected("rand4k") {
		groups = append(groups, perSystem(func(ctx context.Context, rep int, s *system) {
			b.random(ctx, rep, s, "rand4k", 4<<10, b.cfg.Sizes.Rand4kOps)
		}))
	}
	if b.selected("rand1m") {
		groups = append(groups, perSystem(func(ctx context.Context, rep int, s *system) {
			b.random(ctx, rep, s, "rand1m", 1<<20, b.cfg.Sizes.Rand1mOps)
		}))
	}
	if b.selected("small") {
		groups = append(groups, perSystem(b.small))
	}
	if b.selected("remount") {
		groups = append(groups, perSystem(b.remount))
	}
	for _, g := range groups {
		for rep := 1; rep <= b.cfg.Reps; rep++ {
			for _, st := range g {
				if err := ctx.Err(); err != nil {
					return err
				}
				st.run(ctx, rep)
			}
		}
	}
	return ctx.Err()
}

// describeSynfs is the binary's version plus, when it was built in the
// current source tree, that tree's commit ("+dirty" with changes); best effort.
func describeSynfs(ctx context.Context, bin string) string {
	out, _ := exec.CommandContext(ctx, bin, "version").Output()
	v := strings.TrimSpace(string(out))
	if wd, err := os.Getwd(); err != nil || !strings.HasPrefix(bin, wd+string(filepath.Separator)) {
		return v
	}
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return v
	}
	v += " @ " + strings.TrimSpace(string(head))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		v += "+dirty"
	}
	return v
}

// mount starts a fresh mount of s: every cold run gets its own, so that no
// cache of the system, and no peak RSS, carries over from the last run.
func (b *bench) mount(ctx context.Context, s *system, o mountOpts) (*mountProc, error) {
	b.mounts++
	mp := filepath.Join(b.work, "mnt", fmt.Sprintf("%s-%d", s.name, b.mounts))
	logPath := filepath.Join(b.work, fmt.Sprintf("%s-%d.log", s.name, b.mounts))
	return startMount(ctx, b.log, s, mp, logPath, s.path(bigRel), o, &b.live)
}

func (b *bench) unmount(m *mountProc) {
	m.close()
	b.live.remove(m)
}

// What dropCaches drops, as written to /proc/sys/vm/drop_caches.
const (
	dropAll       = "3" // page cache, dentries and inodes: a cold start
	dropPageCache = "1" // file data only: resolved metadata stays resolved
)

// dropCaches empties the page cache so a run reads through the system,
// then reads the emulator's objects back in: the S3 server's disk is not
// what is measured, and a real S3 serves from memory at this scale.
func (b *bench) dropCaches(what string) {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte(what), 0); err != nil && !b.dropFailed {
		b.dropFailed = true
		b.addNote(fmt.Sprintf("could not drop the page cache (%v): cold runs may be warm", err))
	}
	buf := make([]byte, 1<<20)
	filepath.WalkDir(b.emu.dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if f, err := os.Open(p); err == nil {
			drain(f, buf)
			f.Close()
		}
		return nil
	})
}

// bounded runs fn with the run's deadline; if fn is still stuck in the
// kernel well after it, abort breaks the mount under it.
func (b *bench) bounded(ctx context.Context, abort func(), fn func(ctx context.Context) (readResult, error)) (readResult, error) {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.RunTimeout)
	defer cancel()
	type out struct {
		r   readResult
		err error
	}
	ch := make(chan out, 1)
	go func() {
		r, err := fn(rctx)
		ch <- out{r, err}
	}()
	select {
	case o := <-ch:
		return o.r, o.err
	case <-rctx.Done():
	}
	select {
	case o := <-ch:
		return o.r, o.err
	case <-time.After(15 * time.Second):
	}
	if abort != nil {
		abort()
	}
	o := <-ch
	return o.r, errors.Join(o.err, errors.New("stuck past the run's deadline; mount aborted"))
}

// measureMount runs fn against a mount and adds what the emulator and
// /proc saw of the mount process meanwhile.
func (b *bench) measureMount(ctx context.Context, m *mountProc, rep int, fn func(ctx context.Context) (readResult, error)) sample {
	st0, err0 := b.emu.stats(ctx)
	cpu0, _ := procCPU(m.pid())
	w := watch(m.pid(), b.emu.s3Port, sampleEvery)
	r, err := b.bounded(ctx, m.abort, fn)
	rss, conns := w.finish()
	cpu1, cerr := procCPU(m.pid())
	s := b.finishSample(ctx, rep, r, err, st0, err0)
	if cerr == nil {
		s.CPU = (cpu1 - cpu0).Seconds()
	}
	s.PeakRSS, s.PeakConns = rss, conns
	return s
}

// finishSample waits for GETs still in flight (prefetch) to land in the
// counters, then fills in the emulator's side of the run.
func (b *bench) finishSample(ctx context.Context, rep int, r readResult, err error, st0 emuStats, err0 error) sample {
	time.Sleep(100 * time.Millisecond)
	s := sample{Rep: rep, Elapsed: r.Elapsed.Seconds(), Bytes: r.Bytes, Ops: r.Ops, Partial: r.Partial}
	if err != nil {
		s.Err = err.Error()
	}
	if ctx.Err() != nil {
		// Ctrl-C, not the run's bound: a cut-short run says nothing.
		s.Err = "interrupted"
	}
	st1, err1 := b.emu.stats(ctx)
	if err0 == nil && err1 == nil {
		c := st1.minus(st0)
		s.GETs, s.Fetched, s.S3Requests, s.SynapseCalls, s.Throttled = c.GETs, c.Fetched, c.S3Requests, c.SynapseCalls, c.Throttled
	}
	return s
}

func (b *bench) logSample(workload, who string, s sample) {
	attrs := []any{"workload", workload, "system", who, "rep", s.Rep, "seconds", fmt.Sprintf("%.2f", s.Elapsed),
		"MB/s", fmt.Sprintf("%.1f", float64(s.Bytes)/1e6/max(s.Elapsed, 1e-9)), "ops", s.Ops, "gets", s.GETs,
		"fetchedMiB", s.Fetched >> 20, "cpu", fmt.Sprintf("%.2f", s.CPU), "rssMiB", s.PeakRSS >> 20, "conns", s.PeakConns}
	if s.Err != "" {
		b.log.Warn("run failed", append(attrs, "err", s.Err)...)
		return
	}
	b.log.Info("run", attrs...)
}

func (b *bench) record(workload, who string, s sample) {
	b.logSample(workload, who, s)
	b.res.add(workload, who, s)
}

// mountFailed records why a system has no numbers in this rep.
func (b *bench) mountFailed(workloads []string, who string, rep int, err error) {
	for _, w := range workloads {
		b.record(w, who, sample{Rep: rep, Err: "mount: " + err.Error()})
	}
}

// seq is seq1 and, on the same mount, the warm re-read.
func (b *bench) seq(ctx context.Context, rep int, s *system) {
	m, err := b.mount(ctx, s, mountOpts{})
	if err != nil {
		var ws []string
		for _, w := range []string{"seq1", "warm"} {
			if b.selected(w) {
				ws = append(ws, w)
			}
		}
		b.mountFailed(ws, s.name, rep, err)
		return
	}
	defer b.unmount(m)
	p := filepath.Join(m.dir, s.path(bigRel))
	read := func(ctx context.Context) (readResult, error) { return readWhole(ctx, p, make([]byte, 1<<20)) }
	b.dropCaches(dropAll)
	cold := b.measureMount(ctx, m, rep, read)
	if b.selected("seq1") {
		b.record("seq1", s.name, cold)
	}
	if s.name == "synfs" {
		b.synfsConns = 0
		if cold.Err == "" {
			b.synfsConns = cold.PeakConns
		}
	}
	if b.selected("warm") && ctx.Err() == nil {
		b.dropCaches(dropPageCache)
		b.record("warm", s.name, b.measureMount(ctx, m, rep, read))
	}
}

func (b *bench) seq4(ctx context.Context, rep int, s *system) {
	m, err := b.mount(ctx, s, mountOpts{})
	if err != nil {
		b.mountFailed([]string{"seq4"}, s.name, rep, err)
		return
	}
	defer b.unmount(m)
	var paths []string
	for i := range b.cfg.Sizes.ParFiles {
		paths = append(paths, filepath.Join(m.dir, s.path(parRel(i))))
	}
	b.dropCaches(dropAll)
	b.record("seq4", s.name, b.measureMount(ctx, m, rep, func(ctx context.Context) (readResult, error) {
		return readAllParallel(ctx, paths)
	}))
}

func (b *bench) random(ctx context.Context, rep int, s *system, workload string, size int64, ops int) {
	m, err := b.mount(ctx, s, mountOpts{})
	if err != nil {
		b.mountFailed([]string{workload}, s.name, rep, err)
		return
	}
	defer b.unmount(m)
	p := filepath.Join(m.dir, s.path(bigRel))
	offs := randomOffsets(b.cfg.Sizes.Big, size, ops, uint64(size))
	b.dropCaches(dropAll)
	b.record(workload, s.name, b.measureMount(ctx, m, rep, func(ctx context.Context) (readResult, error) {
		return readRandom(ctx, p, offs, size, randThreads)
	}))
}

// small reads the small files serially, then with 16 readers, each time
// after their metadata is resolved (ls -l, its own row) and with a cold
// page cache. A system with a data cache of its own (synfs) gets a fresh
// mount, and so a second ls -l, for the second read; the peers as measured
// keep no data, so dropping the page cache (not the dentries) suffices and
// spares a second minute-long ls -l.
func (b *bench) small(ctx context.Context, rep int, s *system) {
	var rels []string
	for i := range b.cfg.Sizes.SmallN {
		rels = append(rels, s.path(smallRel(i)))
	}
	// synfs lists the folder; the peers list their root and then each
	// file's own <uuid>/ directory as the lstat walks into it.
	dirs := []string{smallDir}
	if s.name != "synfs" {
		dirs = []string{"."}
	}
	var m *mountProc
	defer func() {
		if m != nil {
			b.unmount(m)
		}
	}()
	for _, phase := range []struct {
		workload string
		readers  int
	}{{"small-serial", 1}, {"small-par", smallReaders}} {
		if ctx.Err() != nil {
			return
		}
		if m != nil && !s.dataCache {
			b.dropCaches(dropPageCache)
		} else {
			if m != nil {
				b.unmount(m)
			}
			var err error
			if m, err = b.mount(ctx, s, mountOpts{}); err != nil {
				b.mountFailed([]string{"small-meta", phase.workload}, s.name, rep, err)
				continue
			}
			b.dropCaches(dropAll)
			meta := b.measureMount(ctx, m, rep, func(ctx context.Context) (readResult, error) {
				return listLong(ctx, m.dir, dirs, rels)
			})
			meta.Note = "before " + phase.workload
			b.record("small-meta", s.name, meta)
			if meta.Err != "" {
				b.record(phase.workload, s.name, sample{Rep: rep, Err: "metadata step failed"})
				b.unmount(m)
				m = nil
				continue
			}
		}
		paths := make([]string, len(rels))
		for i, rel := range rels {
			paths[i] = filepath.Join(m.dir, rel)
		}
		b.record(phase.workload, s.name, b.measureMount(ctx, m, rep, func(ctx context.Context) (readResult, error) {
			return readFiles(ctx, paths, phase.readers)
		}))
	}
}

// remount is synfs with --cache-dir: a read fills the cache, the mount
// goes away, and a new mount reads again, ideally without S3.
func (b *bench) remount(ctx context.Context, rep int, s *system) {
	switch {
	case s.name != "synfs":
		b.res.note("remount", s.name, "n/a (no cache dir in the configuration measured)")
		return
	case !b.cacheDir:
		b.res.note("remount", s.name, "n/a (flag missing: synfs mount has no --cache-dir yet)")
		return
	}
	dir := filepath.Join(b.work, fmt.Sprintf("cache-%d", rep))
	defer os.RemoveAll(dir)
	read := func(m *mountProc) func(ctx context.Context) (readResult, error) {
		p := filepath.Join(m.dir, s.path(bigRel))
		return func(ctx context.Context) (readResult, error) { return readWhole(ctx, p, make([]byte, 1<<20)) }
	}
	m, err := b.mount(ctx, s, mountOpts{cacheDir: dir})
	if err != nil {
		b.mountFailed([]string{"remount"}, s.name, rep, err)
		return
	}
	b.dropCaches(dropAll)
	fill := b.measureMount(ctx, m, rep, read(m))
	b.unmount(m)
	b.log.Info("remount: cache filled", "seconds", fmt.Sprintf("%.2f", fill.Elapsed), "gets", fill.GETs, "err", fill.Err)
	if fill.Err != "" || ctx.Err() != nil {
		b.record("remount", s.name, sample{Rep: rep, Err: "filling the cache: " + fill.Err})
		return
	}
	m, err = b.mount(ctx, s, mountOpts{cacheDir: dir})
	if err != nil {
		b.mountFailed([]string{"remount"}, s.name, rep, err)
		return
	}
	defer b.unmount(m)
	b.dropCaches(dropAll)
	b.record("remount", s.name, b.measureMount(ctx, m, rep, read(m)))
}

// direct is direct(n) on the big object; its CPU is this process's.
func (b *bench) direct(ctx context.Context, rep int, who string, n int) {
	client := b.emu.adminS3(n)
	o := b.layout.byRel[bigRel]
	b.dropCaches(dropAll)
	st0, err0 := b.emu.stats(ctx)
	cpu0 := selfCPU()
	r, err := b.bounded(ctx, nil, func(ctx context.Context) (readResult, error) {
		return directRead(ctx, client, o, b.cfg.Sizes.Big, n)
	})
	cpu := selfCPU() - cpu0
	s := b.finishSample(ctx, rep, r, err, st0, err0)
	s.CPU, s.PeakConns = cpu.Seconds(), n
	s.Note = fmt.Sprintf("N=%d", n)
	b.record("seq1", who, s)
}

// fuseCeiling reads an in-memory file through a go-fuse mount in this
// process. Its CPU is the process's minus the reading thread's, to match
// the mounts, whose CPU excludes the reader.
func (b *bench) fuseCeiling(ctx context.Context, rep int) {
	if b.ceiling == nil {
		b.ceiling = ceilingData(b.cfg.Sizes.Big)
	}
	b.mounts++
	server, p, err := mountCeiling(filepath.Join(b.work, "mnt", fmt.Sprintf("ceiling-%d", b.mounts)), b.ceiling)
	if err != nil {
		b.record("seq1", fuseCeiling, sample{Rep: rep, Err: err.Error()})
		return
	}
	defer func() {
		if err := server.Unmount(); err != nil {
			b.log.Warn("unmounting the FUSE ceiling", "err", err)
		}
	}()
	b.dropCaches(dropAll)
	cpu0 := selfCPU()
	r, err := b.bounded(ctx, func() { server.Unmount() }, func(ctx context.Context) (readResult, error) {
		return lockedSeqRead(ctx, p)
	})
	cpu := selfCPU() - cpu0
	s := sample{Rep: rep, Elapsed: r.Elapsed.Seconds(), Bytes: r.Bytes, Ops: r.Ops, Partial: r.Partial,
		CPU: (cpu - r.ReaderCPU).Seconds(), Note: "CPU: server side (the reading thread's own CPU is left out)"}
	if err != nil {
		s.Err = err.Error()
	}
	b.record("seq1", fuseCeiling, s)
}
