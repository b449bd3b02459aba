package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	synfs "github.com/synfs/synfs/fs"
	"github.com/synfs/synfs/synapse"
	"github.com/synfs/synfs/synapse/synapsetest"
)

// demoCmd shows synfs working with no account: it starts the emulator with
// a generated dataset, mounts it, and waits for Ctrl-C.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("demo", flag.ContinueOnError)
	fset.SetOutput(stderr)
	bigMiB := fset.Int("big-mib", 100, "size of the large binary file in MiB")
	debug := fset.Bool("debug", false, "log every FUSE request")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: synfs demo [flags] [MOUNTPOINT]\n\nMounts a generated sample folder served by the built-in emulator.\n\nflags:")
		fset.PrintDefaults()
	}
	pos, err := parseInterleaved(fset, args)
	if err != nil || len(pos) > 1 {
		return 2
	}
	level := slog.LevelWarn
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fail := func(err error) int { fmt.Fprintf(stderr, "synfs demo: %v\n", err); return 1 }

	mountpoint := ""
	if len(pos) == 1 {
		mountpoint = pos[0]
		if err := checkMountpoint(mountpoint); err != nil {
			return fail(err)
		}
	} else {
		if mountpoint, err = os.MkdirTemp("", "synfs-demo-"); err != nil {
			return fail(err)
		}
		defer os.Remove(mountpoint)
	}
	src, err := os.MkdirTemp("", "synfs-demo-data-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(src)
	fmt.Fprintln(stdout, "synfs demo: generating the sample dataset...")
	bigMD5, err := writeDemoData(src, int64(*bigMiB)<<20)
	if err != nil {
		return fail(err)
	}

	srv, err := synapsetest.Start(synapsetest.Options{Logger: log})
	if err != nil {
		return fail(err)
	}
	defer srv.Close()
	imp, err := srv.Import(ctx, "demo-dataset", src, false)
	if err != nil {
		return fail(err)
	}
	client, err := synapse.NewClient(synapse.Config{RepoEndpoint: srv.RepoEndpoint, FileEndpoint: srv.FileEndpoint, Token: srv.Owner.Token, Logger: log})
	if err != nil {
		return fail(err)
	}
	fsys, err := synfs.Open(ctx, synfs.Options{Client: client, FolderID: imp.FolderID, S3Endpoint: srv.S3Endpoint, Logger: log})
	if err != nil {
		return fail(err)
	}
	server, err := fsys.Mount(mountpoint, synfs.MountOptions{Debug: *debug})
	if err != nil {
		return fail(err)
	}
	mp := mountpoint
	fmt.Fprintf(stdout, `
synfs demo: %s ("demo-dataset") from the emulator at %s is mounted read-only at
  %s

Try, in another terminal:
  ls -l %s
  head %s/samples.csv
  ls -lR %s | head -40
  md5sum %s/big/reads.bin      # expect %s
  grep synfs /proc/mounts

Press Ctrl-C here to unmount and stop.
`, imp.FolderID, srv.RepoEndpoint, mp, mp, mp, mp, mp, bigMD5)
	return waitUnmount(ctx, server, mountpoint, log)
}

// writeDemoData lays out what a small study looks like: a sample sheet, a
// large binary, batches of small files and a deep folder. It returns the
// md5 of the large file so the user can check what they read.
func writeDemoData(dir string, bigSize int64) (string, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	write := func(rel, content string) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, []byte(content), 0o644)
	}
	if err := write("README.txt", "A sample dataset served by the synfs emulator.\nsamples.csv: one row per sample; big/: a large binary; batches/: many small files.\n"); err != nil {
		return "", err
	}
	var csv strings.Builder
	csv.WriteString("sample_id,tissue,age,expression\n")
	tissues := []string{"brain", "liver", "heart", "lung", "kidney"}
	for i := range 5000 {
		fmt.Fprintf(&csv, "S%05d,%s,%d,%.4f\n", i, tissues[rng.IntN(len(tissues))], 20+rng.IntN(60), rng.Float64()*100)
	}
	if err := write("samples.csv", csv.String()); err != nil {
		return "", err
	}
	for b := range 6 {
		for f := range 50 {
			line := fmt.Sprintf("batch %d, record %d: %x\n", b, f, rng.Uint64())
			if err := write(fmt.Sprintf("batches/batch_%02d/record_%03d.txt", b, f), strings.Repeat(line, 1+rng.IntN(40))); err != nil {
				return "", err
			}
		}
	}
	if err := write("nested/level1/level2/level3/deep.txt", "found me\n"); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(dir, "big"), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(filepath.Join(dir, "big", "reads.bin"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	chacha := rand.NewChaCha8([32]byte{'s', 'y', 'n', 'f', 's'})
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(chacha, bigSize)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}
