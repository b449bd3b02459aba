package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// synfsBlock is synfs's cache block (README: 1 MiB blocks); the random-read
// criterion allows one per read on top of twice the bytes read.
const synfsBlock = 1 << 20

const (
	kindStream = "stream" // MB/s over whole files
	kindRandom = "random" // ops/s of preads
	kindFiles  = "files"  // files/s of small files
	kindMeta   = "meta"   // entries/s of ls -l
)

type workloadSpec struct {
	Name, Title, Unit, Kind string
}

func workloadSpecs(s sizes) []workloadSpec {
	return []workloadSpec{
		{"seq1", fmt.Sprintf("one sequential reader, %s file, cold", mib(s.Big)), "MB/s", kindStream},
		{"warm", fmt.Sprintf("warm re-read of the %s file on the same mount (page cache dropped)", mib(s.Big)), "MB/s", kindStream},
		{"seq4", fmt.Sprintf("four readers on four %s files at once, cold", mib(s.Par)), "MB/s", kindStream},
		{"rand4k", fmt.Sprintf("random 4 KiB preads, %d threads, %d offsets each read once, cold", randThreads, s.Rand4kOps), "ops/s", kindRandom},
		{"rand1m", fmt.Sprintf("random 1 MiB preads, %d threads, %d offsets each read once, cold", randThreads, s.Rand1mOps), "ops/s", kindRandom},
		{"small-meta", fmt.Sprintf("ls -l of the %d small files (metadata; before each small-file run)", s.SmallN), "entries/s", kindMeta},
		{"small-serial", fmt.Sprintf("%d files of %s, one reader, after ls -l", s.SmallN, kib(s.Small)), "files/s", kindFiles},
		{"small-par", fmt.Sprintf("%d files of %s, %d readers, after ls -l", s.SmallN, kib(s.Small), smallReaders), "files/s", kindFiles},
		{"remount", fmt.Sprintf("%s file after a remount with --cache-dir (page cache dropped)", mib(s.Big)), "MB/s", kindStream},
	}
}

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func kib(n int64) string { return fmt.Sprintf("%d KiB", n>>10) }

// rate is a sample's headline number in its workload's unit.
func (w workloadSpec) rate(s sample) float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	if w.Kind == kindStream {
		return float64(s.Bytes) / 1e6 / s.Elapsed
	}
	return float64(s.Ops) / s.Elapsed
}

// row is one line of a table: the median over reps of a participant, or a
// computed bound. Peaks (RSS, connections) are the maximum over reps:
// the criterion on them is a ceiling.
type row struct {
	Name           string             `json:"name"`
	Kind           string             `json:"kind"` // system, limit, bound
	NoData         bool               `json:"noData,omitempty"`
	Rate           float64            `json:"rate"`
	Elapsed        float64            `json:"elapsedSeconds"`
	BytesRead      float64            `json:"bytesRead"`
	Ops            float64            `json:"ops"`
	GETs           float64            `json:"s3Gets"`
	Fetched        float64            `json:"bytesFetched"`
	FetchedPerRead float64            `json:"fetchedPerRead"`
	S3Requests     float64            `json:"s3Requests"`
	SynapseCalls   float64            `json:"synapseCalls"`
	Throttled      float64            `json:"synapseThrottled"`
	CPU            float64            `json:"cpuSeconds"`
	CPUPerGiB      float64            `json:"cpuSecondsPerGiB"`
	PeakRSSMiB     float64            `json:"peakRSSMiB,omitempty"`
	PeakConns      int                `json:"peakS3Conns,omitempty"`
	VsBound        float64            `json:"vsBound,omitempty"`
	VsPeers        map[string]float64 `json:"vsPeers,omitempty"`
	Note           string             `json:"note,omitempty"`
	Reps           []sample           `json:"reps,omitempty"`
}

type workloadReport struct {
	Name      string  `json:"name"`
	Title     string  `json:"title"`
	Unit      string  `json:"unit"`
	Kind      string  `json:"kind"`
	BoundName string  `json:"boundName,omitempty"`
	Bound     float64 `json:"bound,omitempty"`
	Rows      []row   `json:"rows"`
}

// limits are the machine's ceilings the criteria refer to, in MB/s and
// CPU seconds per GiB.
type limits struct {
	Direct16          float64 `json:"direct16MBps"`
	Direct64          float64 `json:"direct64MBps"`
	DirectSame        float64 `json:"directSynfsConnsMBps"`
	SynfsConns        int     `json:"synfsPeakS3Conns"`
	FUSECeiling       float64 `json:"fuseCeilingMBps"`
	Combined          float64 `json:"combinedBoundMBps"`
	Direct64CPUPerGiB float64 `json:"direct64CPUPerGiB"`
	FUSECPUPerGiB     float64 `json:"fuseCeilingCPUPerGiB"`
}

type criterion struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Target string `json:"target"`
	Status string `json:"status"` // PASS, FAIL, n/a
	Detail string `json:"detail,omitempty"`
}

type hostInfo struct {
	CPUs   int    `json:"cpus"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	// FreshMemory is freshMemoryCost at the start and at the end of the
	// run, in CPU seconds per GiB; empty where it could not be measured.
	FreshMemory []float64 `json:"freshMemorySecondsPerGiB,omitempty"`
}

type report struct {
	Started    time.Time        `json:"started"`
	Finished   time.Time        `json:"finished"`
	Host       hostInfo         `json:"host"`
	Config     config           `json:"config"`
	Synfs      string           `json:"synfs"` // version @ commit of the tree measured
	Systems    []string         `json:"systems"`
	Limits     limits           `json:"limits"`
	Workloads  []workloadReport `json:"workloads"`
	Acceptance []criterion      `json:"acceptance"`
	Notes      []string         `json:"notes,omitempty"`
}

// reportInputs is what buildReport needs besides the samples.
type reportInputs struct {
	started time.Time
	systems []string // installed and selected, in column order
	notes   []string
	synfs   string
	fresh   []float64 // freshMemoryCost at start and end
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// combinedBound is what one process that both fetches at direct MB/s and
// serves through FUSE at fuse MB/s can do when both share the CPUs: the
// times per byte add up.
func combinedBound(direct, fuse float64) float64 {
	if direct <= 0 || fuse <= 0 {
		return 0
	}
	return 1 / (1/direct + 1/fuse)
}

func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// aggregate folds a participant's samples into a row; failed runs are left
// out of the medians and said in the note.
func aggregate(w workloadSpec, name, kind string, ss []sample, note string) row {
	r := row{Name: name, Kind: kind, Reps: ss}
	var rates, el, by, ops, gets, fet, fpr, reqs, syn, thr, cpu, cpg []float64
	var failed []string
	var notes []string
	if note != "" {
		notes = append(notes, note)
	}
	partial := false
	for _, s := range ss {
		if s.Err != "" {
			failed = append(failed, s.Err)
			continue
		}
		partial = partial || s.Partial
		rates = append(rates, w.rate(s))
		el = append(el, s.Elapsed)
		by = append(by, float64(s.Bytes))
		ops = append(ops, float64(s.Ops))
		gets = append(gets, float64(s.GETs))
		fet = append(fet, float64(s.Fetched))
		if s.Bytes > 0 {
			fpr = append(fpr, float64(s.Fetched)/float64(s.Bytes))
			cpg = append(cpg, s.CPU/(float64(s.Bytes)/(1<<30)))
		}
		reqs = append(reqs, float64(s.S3Requests))
		syn = append(syn, float64(s.SynapseCalls))
		thr = append(thr, float64(s.Throttled))
		cpu = append(cpu, s.CPU)
		r.PeakRSSMiB = max(r.PeakRSSMiB, float64(s.PeakRSS)/(1<<20))
		r.PeakConns = max(r.PeakConns, s.PeakConns)
		if s.Note != "" && !slices.Contains(notes, s.Note) && !strings.HasPrefix(s.Note, "before ") {
			notes = append(notes, s.Note)
		}
	}
	r.NoData = len(rates) == 0
	r.Rate, r.Elapsed, r.BytesRead, r.Ops = median(rates), median(el), median(by), median(ops)
	r.GETs, r.Fetched, r.FetchedPerRead = median(gets), median(fet), median(fpr)
	r.S3Requests, r.SynapseCalls, r.Throttled = median(reqs), median(syn), median(thr)
	r.CPU, r.CPUPerGiB = median(cpu), median(cpg)
	if partial {
		notes = append(notes, "partial: cut at --run-timeout")
	}
	if len(failed) > 0 {
		notes = append(notes, fmt.Sprintf("%d/%d runs failed: %s", len(failed), len(ss), failed[0]))
	}
	r.Note = strings.Join(notes, "; ")
	return r
}

func isLimit(name string) bool {
	return name == direct16 || name == direct64 || name == directSame || name == fuseCeiling
}

func buildReport(cfg config, res *results, in reportInputs) *report {
	res.mu.Lock()
	defer res.mu.Unlock()
	rep := &report{
		Started: in.started, Finished: time.Now(), Config: cfg, Systems: in.systems, Notes: in.notes, Synfs: in.synfs,
		Host: hostInfo{CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Go: runtime.Version(), FreshMemory: in.fresh},
	}
	specs := workloadSpecs(cfg.Sizes)
	specOf := map[string]workloadSpec{}
	for _, w := range specs {
		specOf[w.Name] = w
	}
	seq := specOf["seq1"]
	lim := &rep.Limits
	for who, ss := range res.samples["seq1"] {
		r := aggregate(seq, who, "limit", ss, "")
		switch who {
		case direct16:
			lim.Direct16 = r.Rate
		case direct64:
			lim.Direct64, lim.Direct64CPUPerGiB = r.Rate, r.CPUPerGiB
		case directSame:
			lim.DirectSame = r.Rate
		case fuseCeiling:
			lim.FUSECeiling, lim.FUSECPUPerGiB = r.Rate, r.CPUPerGiB
		case "synfs":
			lim.SynfsConns = r.PeakConns
		}
	}
	lim.Combined = combinedBound(lim.Direct64, lim.FUSECeiling)

	lat := cfg.S3Latency.Seconds()
	for _, w := range specs {
		order := res.order[w.Name]
		if len(order) == 0 {
			continue
		}
		wr := workloadReport{Name: w.Name, Title: w.Title, Unit: w.Unit, Kind: w.Kind}
		wr.BoundName, wr.Bound = boundOf(w.Name, cfg, *lim, lat)
		rates := map[string]float64{}
		for _, who := range order {
			kind := "system"
			if isLimit(who) {
				kind = "limit"
			}
			r := aggregate(w, who, kind, res.samples[w.Name][who], res.notes[w.Name][who])
			r.NoData = len(res.samples[w.Name][who]) == 0 || r.NoData
			r.VsBound = ratio(r.Rate, wr.Bound)
			if kind == "system" {
				rates[who] = r.Rate
			}
			wr.Rows = append(wr.Rows, r)
		}
		for i := range wr.Rows {
			r := &wr.Rows[i]
			for _, peer := range in.systems {
				if v := ratio(r.Rate, rates[peer]); peer != r.Name && v > 0 {
					if r.VsPeers == nil {
						r.VsPeers = map[string]float64{}
					}
					r.VsPeers[peer] = v
				}
			}
		}
		if wr.Bound > 0 {
			wr.Rows = append(wr.Rows, row{Name: wr.BoundName, Kind: "bound", Rate: wr.Bound, Note: boundFormula(w.Name, cfg)})
		}
		rep.Workloads = append(rep.Workloads, wr)
	}
	rep.Acceptance = acceptance(rep, cfg)
	return rep
}

// boundOf names the bound a workload's "× bound" column divides by.
func boundOf(workload string, cfg config, lim limits, lat float64) (string, float64) {
	if lat <= 0 {
		lat = math.SmallestNonzeroFloat64
	}
	switch workload {
	case "seq1", "seq4":
		return "combined bound", lim.Combined
	case "warm", "remount":
		return "FUSE ceiling", lim.FUSECeiling
	case "rand4k":
		return "latency bound", randThreads / lat
	case "rand1m":
		if cfg.S3ConnMBps <= 0 {
			return "latency bound", randThreads / lat
		}
		return "latency+transfer bound", randThreads / (lat + float64(1<<20)/(cfg.S3ConnMBps*1e6))
	case "small-serial":
		return "latency bound", 1 / lat
	case "small-par":
		return "latency bound", smallReaders / lat
	}
	return "", 0
}

func boundFormula(workload string, cfg config) string {
	switch workload {
	case "seq1", "seq4":
		return "1 / (1/direct(64) + 1/FUSE ceiling)"
	case "warm", "remount":
		return "the FUSE ceiling above"
	case "rand4k":
		return fmt.Sprintf("%d threads / %v first-byte latency", randThreads, cfg.S3Latency)
	case "rand1m":
		return fmt.Sprintf("%d threads / (%v + 1 MiB at %g MB/s)", randThreads, cfg.S3Latency, cfg.S3ConnMBps)
	case "small-serial":
		return fmt.Sprintf("1 file per %v", cfg.S3Latency)
	case "small-par":
		return fmt.Sprintf("%d readers / %v", smallReaders, cfg.S3Latency)
	}
	return ""
}

func (r *report) find(workload, who string) (row, bool) {
	for _, w := range r.Workloads {
		if w.Name != workload {
			continue
		}
		for _, x := range w.Rows {
			if x.Name == who && !x.NoData {
				return x, true
			}
		}
	}
	return row{}, false
}

// acceptance evaluates the criteria for synfs, one line each; a
// criterion without the numbers it needs is n/a, never PASS.
func acceptance(rep *report, cfg config) []criterion {
	var out []criterion
	lim := rep.Limits
	lat := cfg.S3Latency.Seconds()
	status := func(pass bool) string {
		if pass {
			return "PASS"
		}
		return "FAIL"
	}
	na := func(name, target, why string) {
		out = append(out, criterion{Name: name, Value: "-", Target: target, Status: "n/a", Detail: why})
	}
	atLeast := func(name string, num, den, min float64, detail, missing string) {
		target := fmt.Sprintf(">= %.1fx", min)
		if num <= 0 || den <= 0 {
			na(name, target, missing)
			return
		}
		v := num / den
		out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.2fx", v), Target: target, Status: status(v >= min), Detail: detail})
	}
	seq1, ok1 := rep.find("seq1", "synfs")
	seq4, _ := rep.find("seq4", "synfs")
	rate := func(workload, who string) float64 {
		r, _ := rep.find(workload, who)
		return r.Rate
	}
	atLeast("seq1: one reader vs combined bound", seq1.Rate, lim.Combined, 0.8,
		fmt.Sprintf("synfs %.0f MB/s, bound %.0f MB/s", seq1.Rate, lim.Combined), "needs seq1 and limits")
	atLeast("seq1: one reader vs s3fs", seq1.Rate, rate("seq1", "s3fs"), 5,
		fmt.Sprintf("s3fs %.1f MB/s", rate("seq1", "s3fs")), "needs seq1 of synfs and s3fs")
	atLeast("seq1: one reader vs rclone", seq1.Rate, rate("seq1", "rclone"), 20,
		fmt.Sprintf("rclone %.1f MB/s", rate("seq1", "rclone")), "needs seq1 of synfs and rclone")
	atLeast("seq4: four readers vs combined bound", seq4.Rate, lim.Combined, 0.8,
		fmt.Sprintf("synfs %.0f MB/s, bound %.0f MB/s", seq4.Rate, lim.Combined), "needs seq4 and limits")
	atLeast("seq1: vs direct(N), N = synfs's peak S3 conns", seq1.Rate, lim.DirectSame, 0.9,
		fmt.Sprintf("N=%d, direct %.0f MB/s", lim.SynfsConns, lim.DirectSame), "needs seq1 and limits")

	{
		name, target := "seq1: CPU s/GiB vs direct(64) + FUSE ceiling", "<= 1.3x"
		ref := lim.Direct64CPUPerGiB + lim.FUSECPUPerGiB
		if !ok1 || ref <= 0 || seq1.CPUPerGiB <= 0 {
			na(name, target, "needs seq1 and limits")
		} else {
			v := seq1.CPUPerGiB / ref
			out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.2fx", v), Target: target, Status: status(v <= 1.3),
				Detail: fmt.Sprintf("synfs %.2f s/GiB; direct(64) %.2f + FUSE %.2f s/GiB", seq1.CPUPerGiB, lim.Direct64CPUPerGiB, lim.FUSECPUPerGiB)})
		}
	}
	for _, w := range []string{"seq1", "seq4"} {
		name, target := w+": bytes fetched / bytes read", "<= 1.10"
		r, ok := rep.find(w, "synfs")
		if !ok || r.BytesRead <= 0 {
			na(name, target, "needs "+w)
			continue
		}
		out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.3f", r.FetchedPerRead), Target: target,
			Status: status(r.FetchedPerRead <= 1.1), Detail: fmt.Sprintf("%.0f GETs", r.GETs)})
	}
	for _, w := range []string{"rand4k", "rand1m"} {
		name := w + ": fetched <= 2x read + 1 block per read"
		r, ok := rep.find(w, "synfs")
		if !ok {
			na(name, "-", "needs "+w)
			continue
		}
		allow := 2*r.BytesRead + r.Ops*synfsBlock
		out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.0f MiB", r.Fetched/(1<<20)),
			Target: fmt.Sprintf("<= %.0f MiB", allow/(1<<20)), Status: status(r.Fetched <= allow),
			Detail: fmt.Sprintf("%.0f reads of %.0f B, %.0f GETs", r.Ops, r.BytesRead/max(r.Ops, 1), r.GETs)})
	}
	{
		r, _ := rep.find("rand4k", "synfs")
		_, bound := boundOf("rand4k", cfg, lim, lat)
		atLeast("rand4k: vs latency bound (threads / first-byte latency)", r.Rate, bound, 0.9,
			fmt.Sprintf("synfs %.0f ops/s, bound %.0f ops/s", r.Rate, bound), "needs rand4k")
	}
	n := float64(cfg.Sizes.SmallN)
	{
		name := fmt.Sprintf("small-par: %d readers within 1.3x of N/%d x %v", smallReaders, smallReaders, cfg.S3Latency)
		ideal := n / smallReaders * lat
		target := fmt.Sprintf("<= %.2f s", 1.3*ideal)
		if r, ok := rep.find("small-par", "synfs"); ok {
			out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.2f s", r.Elapsed), Target: target,
				Status: status(r.Elapsed <= 1.3*ideal), Detail: fmt.Sprintf("%.2fx of %.2f s", r.Elapsed/ideal, ideal)})
		} else {
			na(name, target, "needs small")
		}
	}
	{
		name := fmt.Sprintf("small-serial: faster than N x %v", cfg.S3Latency)
		ideal := n * lat
		target := fmt.Sprintf("< %.2f s", ideal)
		if r, ok := rep.find("small-serial", "synfs"); ok {
			out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.2f s", r.Elapsed), Target: target,
				Status: status(r.Elapsed < ideal), Detail: fmt.Sprintf("%.2fx", r.Elapsed/ideal)})
		} else {
			na(name, target, "needs small")
		}
	}
	for _, w := range []string{"warm", "remount"} {
		r, ok := rep.find(w, "synfs")
		if !ok {
			why := "needs " + w
			for _, wr := range rep.Workloads {
				for _, x := range wr.Rows {
					if wr.Name == w && x.Name == "synfs" && x.Note != "" {
						why = x.Note
					}
				}
			}
			na(w+": zero S3 GETs", "0", why)
			na(w+": vs FUSE ceiling", ">= 0.8x", why)
			continue
		}
		out = append(out, criterion{Name: w + ": zero S3 GETs", Value: fmt.Sprintf("%.0f", r.GETs), Target: "0",
			Status: status(r.GETs == 0), Detail: fmt.Sprintf("%.0f MiB fetched", r.Fetched/(1<<20))})
		atLeast(w+": vs FUSE ceiling", r.Rate, lim.FUSECeiling, 0.8,
			fmt.Sprintf("synfs %.0f MB/s, ceiling %.0f MB/s", r.Rate, lim.FUSECeiling), "needs limits")
	}
	{
		budget := float64(cfg.maxMemBytes)/(1<<20) + 64
		name, target := "peak RSS <= --max-memory + 64 MiB", fmt.Sprintf("<= %.0f MiB", budget)
		peak, where := 0.0, ""
		for _, wr := range rep.Workloads {
			for _, x := range wr.Rows {
				if x.Name == "synfs" && x.PeakRSSMiB > peak {
					peak, where = x.PeakRSSMiB, wr.Name
				}
			}
		}
		if peak == 0 {
			na(name, target, "no synfs run")
		} else {
			out = append(out, criterion{Name: name, Value: fmt.Sprintf("%.0f MiB", peak), Target: target,
				Status: status(peak <= budget), Detail: "highest in " + where})
		}
	}
	return out
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func writeJSON(path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
