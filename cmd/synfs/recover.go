package main

import (
	"context"
	"fmt"
	"io"
)

const recoverUsage = `usage: synfs recover [flags] SYN_ID

Uploads the files a killed or failed mount of SYN_ID left in the spool and
makes them Synapse versions, as the next mount would. Prints one line per
file; exits 1 if any is still not uploaded (its bytes stay in the spool).

flags:
`

func recoverCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := newMountFlagSet()
	pos, code := fset.parse(args, recoverUsage, stderr)
	if code != 0 {
		return code
	}
	if len(pos) != 1 || !synIDRE.MatchString(pos[0]) {
		fmt.Fprintln(stderr, "synfs: want one SYN_ID (synfs recover -h for help)")
		return 2
	}
	m := &fset.m
	fsys, code, err := m.open(ctx, pos[0], m.logger(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "synfs: %v\n", err)
		return code
	}
	if ro, why := fsys.ReadOnly(); ro {
		fmt.Fprintf(stderr, "synfs: cannot upload to %s: %s\n", pos[0], why)
		return 1
	}
	results, err := fsys.Recover(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "synfs: %v\n", err)
		return 1
	}
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "NOT UPLOADED %s in %s: %v\n", r.Name, r.ParentID, r.Err)
			continue
		}
		fmt.Fprintf(stdout, "uploaded %s in %s as %s\n", r.Name, r.ParentID, r.EntityID)
	}
	if len(results) == 0 {
		fmt.Fprintf(stdout, "nothing to recover for %s\n", pos[0])
	}
	if failed > 0 {
		return 1
	}
	return 0
}
