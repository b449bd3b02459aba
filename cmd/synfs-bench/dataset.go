package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// sizes is the shape of the generated data set and of the random
// workloads; quick mode shrinks it so a smoke run takes a minute or two.
type sizes struct {
	Big       int64 `json:"big"`       // the sequential, random and warm file
	Par       int64 `json:"par"`       // each of the four parallel-reader files
	ParFiles  int   `json:"parFiles"`  // always 4: the "four readers"
	Small     int64 `json:"small"`     // each small file
	SmallN    int   `json:"smallN"`    // how many small files
	Rand4kOps int   `json:"rand4kOps"` // budget of 4 KiB preads, each offset once
	Rand1mOps int   `json:"rand1mOps"` // budget of 1 MiB preads, each offset once
}

var (
	fullSizes  = sizes{Big: 1 << 30, Par: 256 << 20, ParFiles: 4, Small: 64 << 10, SmallN: 1000, Rand4kOps: 2000, Rand1mOps: 256}
	quickSizes = sizes{Big: 128 << 20, Par: 32 << 20, ParFiles: 4, Small: 64 << 10, SmallN: 200, Rand4kOps: 400, Rand1mOps: 64}
)

// Relative paths in the imported folder. File names are unique across the
// set because the peers see each object under its own <uuid>/ directory
// and are matched by name.
const (
	bigRel   = "big/big.bin"
	smallDir = "small"
)

func parRel(i int) string   { return fmt.Sprintf("par/par-%d.bin", i) }
func smallRel(i int) string { return fmt.Sprintf("%s/s-%04d.bin", smallDir, i) }

// allRels lists every file of the data set, relative to the folder.
func (s sizes) allRels() []string {
	rels := []string{bigRel}
	for i := range s.ParFiles {
		rels = append(rels, parRel(i))
	}
	for i := range s.SmallN {
		rels = append(rels, smallRel(i))
	}
	return rels
}

func (s sizes) sizeOf(rel string) int64 {
	switch {
	case rel == bigRel:
		return s.Big
	case filepath.Dir(rel) == "par":
		return s.Par
	default:
		return s.Small
	}
}

// generate writes the data set under dir. The bytes are pseudo-random so
// nothing along the way can compress or deduplicate them.
func generate(ctx context.Context, dir string, s sizes) error {
	rng := rand.NewChaCha8([32]byte{'s', 'y', 'n', 'f', 's'})
	buf := make([]byte, 1<<20)
	for _, rel := range s.allRels() {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("generating %s: %w", rel, err)
		}
		if err := writeRandom(p, s.sizeOf(rel), rng, buf); err != nil {
			return fmt.Errorf("generating %s: %w", rel, err)
		}
	}
	return nil
}

func writeRandom(p string, size int64, rng *rand.ChaCha8, buf []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, len(buf))
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		rng.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
