// Command synfs-bench measures synfs against rclone mount, s3fs and the
// limits of this machine (direct S3 GETs, the FUSE crossing) in one run,
// against the emulator with a realistic S3 profile, and prints the tables
// and acceptance checks the team reads off. It needs root (drop_caches,
// mounts) and /dev/fuse. Nothing here asserts timings in tests: the numbers
// are for people.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/synfs/synfs/cmd/internal/bytesize"
)

const usage = `usage: synfs-bench [flags]

Starts the emulator (synfs dev-server) with the S3 profile of the issue
(first-byte latency, per-connection bandwidth, REST latency, Synapse
throttle), imports a generated data set, and measures synfs, rclone mount
and s3fs (the peers only when installed) on the same objects, next to the
limits of this machine:

  direct(N)      aws-sdk-go-v2 ranged GETs of 8 MiB parts, N in parallel (16, 64,
                 and the number of connections synfs held during its run)
  FUSE ceiling   a go-fuse mount with synfs's options serving 1 file from memory
  combined bound 1 / (1/direct(64) + 1/FUSE ceiling)

Workloads (--workloads, comma-separated; default all):
  limits         direct(16), direct(64), direct(same conns as synfs), FUSE ceiling
  seq1           one reader, whole big file, 1 MiB reads, cold
  warm           the big file again on the same mount (page cache dropped)
  seq4           four readers on four files at once, cold
  rand4k rand1m  random aligned preads, 4 threads, each offset once, cold
  small          N small files, metadata first (ls -l, its own row), then read
                 serially, then with 16 readers (synfs on a fresh mount, as it
                 caches data; the peers keep none: page cache dropped)
  remount        synfs with --cache-dir: fill, remount, read again (n/a when the
                 flag is missing from 'synfs mount -h')

Systems alternate within each workload (A B C A B C ...) so drift hits all
alike; cold runs drop the page cache and re-warm the emulator's own files
first. Each reported number is the median over --reps (peak RSS: the
maximum). MB = 10^6 bytes; MiB = 2^20. Tables go to stdout, progress to
stderr, everything to --json.

flags:
`

// config is everything a run depends on; it goes into the JSON as is.
type config struct {
	Systems     []string      `json:"systems"`
	Workloads   []string      `json:"workloads"`
	Reps        int           `json:"reps"`
	Quick       bool          `json:"quick"`
	MaxMemory   string        `json:"maxMemory"`
	CacheSize   string        `json:"cacheSize"`
	RESTLatency time.Duration `json:"restLatency"`
	S3Latency   time.Duration `json:"s3Latency"`
	S3ConnMBps  float64       `json:"s3ConnMBps"`
	RunTimeout  time.Duration `json:"runTimeout"`
	MetadataTTL time.Duration `json:"metadataTTL"`
	SynfsBin    string        `json:"synfsBin"`
	WorkDir     string        `json:"workDir"`
	JSONPath    string        `json:"jsonPath"`
	Keep        bool          `json:"keep"`
	Sizes       sizes         `json:"sizes"`
	maxMemBytes int64
	cacheBytes  int64
}

// MarshalJSON writes durations as "20ms" rather than nanoseconds.
func (c config) MarshalJSON() ([]byte, error) {
	type plain config
	return json.Marshal(struct {
		plain
		RESTLatency string `json:"restLatency"`
		S3Latency   string `json:"s3Latency"`
		RunTimeout  string `json:"runTimeout"`
		MetadataTTL string `json:"metadataTTL"`
	}{plain(c), c.RESTLatency.String(), c.S3Latency.String(), c.RunTimeout.String(), c.MetadataTTL.String()})
}

var (
	allSystems   = []string{"synfs", "rclone", "s3fs"}
	allWorkloads = []string{"limits", "seq1", "warm", "seq4", "rand4k", "rand1m", "small", "remount"}
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "synfs-bench: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second Ctrl-C should kill us outright if cleanup hangs.
		<-ctx.Done()
		stop()
	}()
	rep, err := runBench(ctx, cfg, log)
	if rep != nil {
		if werr := writeMarkdown(stdout, rep); werr != nil {
			log.Error("writing tables", "err", werr)
		}
		if werr := writeJSON(cfg.JSONPath, rep); werr != nil {
			log.Error("writing JSON", "err", werr)
		} else {
			log.Info("results written", "json", cfg.JSONPath)
		}
	}
	if err != nil {
		log.Error("bench failed", "err", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("synfs-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var (
		cfg                config
		systems, workloads string
	)
	fs.StringVar(&systems, "systems", strings.Join(allSystems, ","), "systems to measure, comma-separated")
	fs.StringVar(&workloads, "workloads", strings.Join(allWorkloads, ","), "workloads to run, comma-separated (see above)")
	// Three, so the median drops one outlier: a run's first rep on a VM
	// that hands freed memory back to its host is often half as fast, and
	// the median of two is their mean.
	fs.IntVar(&cfg.Reps, "reps", 3, "repetitions of each workload per system (default 1 with --quick)")
	fs.BoolVar(&cfg.Quick, "quick", false, "small data set (128 MiB big file) for a smoke run of a minute or two")
	fs.StringVar(&cfg.MaxMemory, "max-memory", "1G", "synfs --max-memory; also the RSS criterion's budget")
	fs.StringVar(&cfg.CacheSize, "cache-size", "4G", "synfs --cache-size for the remount workload")
	fs.DurationVar(&cfg.RESTLatency, "rest-latency", 50*time.Millisecond, "emulator --rest-latency")
	fs.DurationVar(&cfg.S3Latency, "s3-latency", 20*time.Millisecond, "emulator --s3-latency; also the latency bounds")
	fs.Float64Var(&cfg.S3ConnMBps, "s3-conn-mbps", 50, "emulator --s3-conn-mbps (10^6 bytes/s per S3 response)")
	fs.DurationVar(&cfg.RunTimeout, "run-timeout", 3*time.Minute, "bound of one measured run; a sequential run cut short reports its partial rate")
	fs.DurationVar(&cfg.MetadataTTL, "metadata-ttl", 10*time.Minute, "synfs --metadata-ttl, long enough that the listing resolved by ls -l outlives the read that follows")
	fs.StringVar(&cfg.SynfsBin, "synfs-bin", "", "synfs binary to test (default: go build ./cmd/synfs from the current directory)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "where to make the scratch directory for data (~4 GiB at peak), mounts and logs, removed at exit (default $TMPDIR)")
	fs.StringVar(&cfg.JSONPath, "json", "/tmp/synfs-bench-results.json", "where to write the results as JSON")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the scratch directory (logs, emulator data) at exit")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	repsSet := false
	fs.Visit(func(f *flag.Flag) { repsSet = repsSet || f.Name == "reps" })
	if cfg.Quick && !repsSet {
		cfg.Reps = 1
	}
	if cfg.Reps < 1 {
		return cfg, fmt.Errorf("--reps must be at least 1")
	}
	var err error
	if cfg.Systems, err = pickList(systems, allSystems, "system"); err != nil {
		return cfg, err
	}
	if cfg.Workloads, err = pickList(workloads, allWorkloads, "workload"); err != nil {
		return cfg, err
	}
	if cfg.maxMemBytes, err = bytesize.Parse(cfg.MaxMemory); err != nil {
		return cfg, fmt.Errorf("--max-memory: %w", err)
	}
	if cfg.cacheBytes, err = bytesize.Parse(cfg.CacheSize); err != nil {
		return cfg, fmt.Errorf("--cache-size: %w", err)
	}
	cfg.Sizes = fullSizes
	if cfg.Quick {
		cfg.Sizes = quickSizes
	}
	return cfg, nil
}

// pickList parses a comma-separated selection, keeping the canonical order
// so tables read the same whatever order the flag was given in.
func pickList(v string, known []string, what string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, s, strings.Join(known, ","))
		}
		want[s] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s selected", what)
	}
	return out, nil
}
