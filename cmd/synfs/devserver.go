package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
	"github.com/synfs/synfs/synapse/synapsetest/netem"
)

const version = synapse.Version

// importFlag collects repeated NAME=DIR flags in order.
type importFlag []namedDir

type namedDir struct{ name, dir string }

func (f *importFlag) String() string { return fmt.Sprint(*f) }

func (f *importFlag) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	if !ok || name == "" || dir == "" {
		return fmt.Errorf("want NAME=DIR, got %q", v)
	}
	*f = append(*f, namedDir{name, dir})
	return nil
}

// devServerReady is the one line dev-server prints on stdout for scripts.
type devServerReady struct {
	RepoEndpoint         string            `json:"repoEndpoint"`
	FileEndpoint         string            `json:"fileEndpoint"`
	S3Endpoint           string            `json:"s3Endpoint"`
	Token                string            `json:"token"`
	AdminAccessKeyID     string            `json:"adminAccessKeyId"`
	AdminSecretAccessKey string            `json:"adminSecretAccessKey"`
	Folders              map[string]string `json:"folders"`
}

func devServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts              synapsetest.Options
		managed, external importFlag
		mbps              float64
		throttle          bool
		faultRate         float64
		debug             bool
	)
	fs.StringVar(&opts.Listen, "listen", "127.0.0.1:0", "`HOST:PORT` of the Synapse (repo and file) endpoint")
	fs.StringVar(&opts.S3Listen, "s3-listen", "127.0.0.1:0", "`HOST:PORT` of the S3 endpoint")
	fs.StringVar(&opts.DataDir, "data-dir", "", "keep S3 objects in this `DIR` instead of memory")
	fs.Var(&managed, "import", "import `NAME=DIR` as a Synapse-managed (read-only) STS folder; repeatable")
	fs.Var(&external, "import-external", "import `NAME=DIR` as an external read-write STS folder; repeatable")
	fs.DurationVar(&opts.RESTLatency, "rest-latency", 0, "time to the first byte of each Synapse answer")
	fs.DurationVar(&opts.S3Latency, "s3-latency", 0, "time to the first byte of each S3 answer")
	fs.Float64Var(&mbps, "s3-conn-mbps", 0, "cap each S3 response at this many megabytes (10^6 bytes) per second; 0 = none")
	fs.BoolVar(&throttle, "throttle", true, "apply Synapse's per-user throttle (3 concurrent, 600 per minute)")
	fs.DurationVar(&opts.STSLifetime, "sts-lifetime", time.Hour, "lifetime of vended STS credentials")
	fs.Float64Var(&faultRate, "fault-rate", 0, "fraction of Synapse and S3 requests answered 500/503 (and 429 for Synapse)")
	fs.BoolVar(&debug, "debug", false, "log every request to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "synfs dev-server: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.DisableThrottle = !throttle
	opts.S3BytesPerSecond = int64(mbps * 1e6)

	srv, err := synapsetest.Start(opts)
	if err != nil {
		fmt.Fprintf(stderr, "synfs dev-server: %v\n", err)
		return 1
	}
	defer srv.Close()
	if faultRate > 0 {
		srv.RESTConditions().SetFaults(netem.Faults{Status500: faultRate / 3, Status503: faultRate / 3, Status429: faultRate / 3})
		srv.S3Conditions().SetFaults(netem.Faults{Status500: faultRate / 2, Status503: faultRate / 2})
	}
	ready := devServerReady{
		RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, S3Endpoint: srv.S3Endpoint,
		Token: srv.Owner.Token, AdminAccessKeyID: srv.AdminAccessKeyID, AdminSecretAccessKey: srv.AdminSecretAccessKey,
		Folders: map[string]string{},
	}
	for _, imp := range []struct {
		dirs     importFlag
		external bool
	}{{managed, false}, {external, true}} {
		for _, nd := range imp.dirs {
			res, err := srv.Import(ctx, nd.name, nd.dir, imp.external)
			if err != nil {
				fmt.Fprintf(stderr, "synfs dev-server: %v\n", err)
				return 1
			}
			ready.Folders[nd.name] = res.FolderID
		}
	}
	line, _ := json.Marshal(ready)
	fmt.Fprintf(stdout, "%s\n", line)
	<-ctx.Done()
	opts.Logger.Info("dev-server stopping")
	return 0
}
