package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// readyLine is what `synfs dev-server` prints once its imports are done.
type readyLine struct {
	RepoEndpoint         string            `json:"repoEndpoint"`
	FileEndpoint         string            `json:"fileEndpoint"`
	S3Endpoint           string            `json:"s3Endpoint"`
	Token                string            `json:"token"`
	AdminAccessKeyID     string            `json:"adminAccessKeyId"`
	AdminSecretAccessKey string            `json:"adminSecretAccessKey"`
	Folders              map[string]string `json:"folders"`
}

// emulator is the dev-server child: a separate process, like a real S3
// and Synapse would be, whose CPU shows up outside the systems measured.
type emulator struct {
	ready   readyLine
	dataDir string
	cmd     *exec.Cmd
	exited  chan struct{}
	s3Port  int
	http    *http.Client
}

const folderName = "data"

func startEmulator(ctx context.Context, log *slog.Logger, bin, dataDir, genDir, logPath string, cfg config) (*emulator, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("emulator log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "dev-server",
		"--data-dir", dataDir,
		"--import", folderName+"="+genDir,
		"--rest-latency", cfg.RESTLatency.String(),
		"--s3-latency", cfg.S3Latency.String(),
		"--s3-conn-mbps", strconv.FormatFloat(cfg.S3ConnMBps, 'f', -1, 64),
		"--throttle=true",
	)
	cmd.Stderr = logf
	// Its own process group: a Ctrl-C at the terminal reaches us, and we
	// stop it in order, after the mounts that use it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("emulator stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the emulator: %w", err)
	}
	e := &emulator{dataDir: dataDir, cmd: cmd, exited: make(chan struct{}), http: &http.Client{Timeout: 30 * time.Second}}
	go func() { cmd.Wait(); close(e.exited) }()

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, out)
	}()
	// Import hashes and copies the whole data set: minutes at worst.
	timer := time.NewTimer(10 * time.Minute)
	defer timer.Stop()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
		e.stop()
		return nil, ctx.Err()
	case <-timer.C:
		e.stop()
		return nil, fmt.Errorf("the emulator printed no ready line in 10 minutes; see %s", logPath)
	}
	if err := json.Unmarshal([]byte(line), &e.ready); err != nil {
		e.stop()
		return nil, fmt.Errorf("the emulator's ready line %q: %w (log: %s)", strings.TrimSpace(line), err, logPath)
	}
	u, err := url.Parse(e.ready.S3Endpoint)
	if err == nil {
		e.s3Port, err = strconv.Atoi(u.Port())
	}
	if err != nil {
		e.stop()
		return nil, fmt.Errorf("the emulator's S3 endpoint %q: %v", e.ready.S3Endpoint, err)
	}
	log.Info("emulator ready", "s3", e.ready.S3Endpoint, "repo", e.ready.RepoEndpoint, "folder", e.ready.Folders[folderName])
	return e, nil
}

// stop asks politely, then insists.
func (e *emulator) stop() {
	if e == nil || e.cmd.Process == nil {
		return
	}
	e.cmd.Process.Signal(os.Interrupt)
	select {
	case <-e.exited:
		return
	case <-time.After(10 * time.Second):
	}
	e.cmd.Process.Kill()
	<-e.exited
}

// emuStats is the part of GET /__emulator/stats that the tables need.
type emuStats struct {
	SynapseTotal int64 `json:"synapseTotal"`
	Throttled    int64 `json:"throttled"`
	S3           map[string]struct {
		Requests int64 `json:"requests"`
		BytesOut int64 `json:"bytesOut"`
	} `json:"s3"`
}

// counters is the difference of two snapshots, as one run used them.
type counters struct {
	GETs         int64
	Fetched      int64 // GetObject response bytes written to the connection
	S3Requests   int64 // every S3 operation: lists and HEADs included
	SynapseCalls int64
	Throttled    int64
}

func (a emuStats) minus(b emuStats) counters {
	var c counters
	for op, s := range a.S3 {
		c.S3Requests += s.Requests - b.S3[op].Requests
	}
	c.GETs = a.S3["GetObject"].Requests - b.S3["GetObject"].Requests
	c.Fetched = a.S3["GetObject"].BytesOut - b.S3["GetObject"].BytesOut
	c.SynapseCalls = a.SynapseTotal - b.SynapseTotal
	c.Throttled = a.Throttled - b.Throttled
	return c
}

func (e *emulator) stats(ctx context.Context) (emuStats, error) {
	var st emuStats
	base := strings.TrimSuffix(e.ready.RepoEndpoint, "/repo/v1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/__emulator/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("emulator stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("emulator stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("emulator stats: %w", err)
	}
	return st, nil
}

// adminS3 builds the client explicitly: config.LoadDefaultConfig would pick
// up the machine's AWS_* settings (a CA bundle among them) and fail.
func (e *emulator) adminS3(maxConns int) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(e.ready.S3Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(e.ready.AdminAccessKeyID, e.ready.AdminSecretAccessKey, ""),
		HTTPClient: &http.Client{Transport: &http.Transport{
			MaxIdleConns:        maxConns,
			MaxIdleConnsPerHost: maxConns,
		}},
	})
}

// object is where a file of the data set lives in S3.
type object struct {
	Bucket, Key string
}

// objectLayout finds every file of the data set in S3 by name. Keys are
// <baseKey>/<uuid>/<name>, so the peers, mounting <bucket>/<baseKey>, see
// each file one directory deeper than synfs does.
type objectLayout struct {
	Bucket, BaseKey string
	byRel           map[string]object
}

// peerPath is where the peers see rel under their mountpoint.
func (l objectLayout) peerPath(rel string) string {
	return strings.TrimPrefix(l.byRel[rel].Key, l.BaseKey+"/")
}

func (e *emulator) layout(ctx context.Context, s sizes) (objectLayout, error) {
	client := e.adminS3(4)
	buckets, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return objectLayout{}, fmt.Errorf("listing buckets with the admin key: %w", err)
	}
	byName := map[string]object{}
	for _, b := range buckets.Buckets {
		p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: b.Name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return objectLayout{}, fmt.Errorf("listing %s with the admin key: %w", aws.ToString(b.Name), err)
			}
			for _, o := range page.Contents {
				key := aws.ToString(o.Key)
				byName[path.Base(key)] = object{Bucket: aws.ToString(b.Name), Key: key}
			}
		}
	}
	l := objectLayout{byRel: map[string]object{}}
	for _, rel := range s.allRels() {
		o, ok := byName[path.Base(rel)]
		if !ok {
			return l, fmt.Errorf("no S3 object named %s after the import", path.Base(rel))
		}
		base := path.Dir(path.Dir(o.Key))
		if l.Bucket == "" {
			l.Bucket, l.BaseKey = o.Bucket, base
		}
		if o.Bucket != l.Bucket || base != l.BaseKey {
			return l, fmt.Errorf("objects under two prefixes: %s/%s and %s/%s", l.Bucket, l.BaseKey, o.Bucket, base)
		}
		l.byRel[rel] = o
	}
	if l.BaseKey == "" || l.BaseKey == "." {
		return l, errors.New("the imported objects have no common base key")
	}
	return l, nil
}
