package main

import (
	"fmt"
	"io"
	"strings"
)

// column is one table column: a header and how a row fills it.
type column struct {
	head string
	cell func(r row) string
}

// fnum prints a rate with the precision that matters at its size.
func fnum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fx(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// columnsFor picks the columns that mean something for a kind of
// workload; peers are the systems measured, one ratio column each.
func columnsFor(kind, unit string, peers []string) []column {
	measured := func(f func(r row) string) func(r row) string {
		return func(r row) string {
			if r.Kind == "bound" || r.NoData {
				return "-"
			}
			return f(r)
		}
	}
	name := column{"", func(r row) string {
		if r.Kind == "bound" {
			return "*" + r.Name + "*"
		}
		return r.Name
	}}
	rate := column{unit, func(r row) string {
		if r.NoData {
			return "-"
		}
		return fnum(r.Rate)
	}}
	secs := column{"s", measured(func(r row) string { return fmt.Sprintf("%.2f", r.Elapsed) })}
	gets := column{"S3 GETs", measured(func(r row) string { return fmt.Sprintf("%.0f", r.GETs) })}
	fetched := column{"fetched MiB", measured(func(r row) string { return fmt.Sprintf("%.0f", r.Fetched/(1<<20)) })}
	fpr := column{"fetched/read", measured(func(r row) string { return fmt.Sprintf("%.2f", r.FetchedPerRead) })}
	rss := column{"peak RSS MiB", measured(func(r row) string {
		if r.PeakRSSMiB == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", r.PeakRSSMiB)
	})}
	cpu := column{"CPU s", measured(func(r row) string { return fmt.Sprintf("%.2f", r.CPU) })}
	cpg := column{"CPU s/GiB", measured(func(r row) string { return fmt.Sprintf("%.2f", r.CPUPerGiB) })}
	conns := column{"S3 conns", measured(func(r row) string {
		if r.PeakConns == 0 {
			return "-"
		}
		return fmt.Sprint(r.PeakConns)
	})}
	reqs := column{"S3 reqs", measured(func(r row) string { return fmt.Sprintf("%.0f", r.S3Requests) })}
	syn := column{"Synapse calls", measured(func(r row) string { return fmt.Sprintf("%.0f", r.SynapseCalls) })}
	thr := column{"429s", measured(func(r row) string { return fmt.Sprintf("%.0f", r.Throttled) })}
	bound := column{"× bound", func(r row) string {
		if r.Kind == "bound" {
			return "1.00x"
		}
		return fx(r.VsBound)
	}}
	var vs []column
	for _, p := range peers {
		vs = append(vs, column{"× " + p, func(r row) string {
			if r.Name == p {
				return "-"
			}
			return fx(r.VsPeers[p])
		}})
	}
	note := column{"note", func(r row) string { return r.Note }}

	var cols []column
	switch kind {
	case kindStream:
		cols = []column{name, rate, secs, gets, fetched, fpr, rss, cpu, cpg, conns, bound}
	case kindRandom:
		cols = []column{name, rate, secs, gets, fetched, fpr, rss, cpu, conns, bound}
	case kindFiles:
		cols = []column{name, rate, secs, gets, fetched, fpr, reqs, syn, rss, cpu, conns, bound}
	default:
		cols = []column{name, rate, secs, syn, thr, reqs, rss, cpu}
	}
	cols = append(cols, vs...)
	return append(cols, note)
}

// rowTable lays rows out under cols.
func rowTable(cols []column, rows []row) (head []string, body [][]string) {
	for _, c := range cols {
		head = append(head, c.head)
	}
	for _, r := range rows {
		line := make([]string, len(cols))
		for j, c := range cols {
			line[j] = c.cell(r)
		}
		body = append(body, line)
	}
	return head, body
}

// renderTable writes a markdown table padded for reading in a terminal:
// names, criteria and notes (first, "criterion" and last columns)
// left-aligned, numbers right.
func renderTable(w io.Writer, head []string, body [][]string) error {
	width := make([]int, len(head))
	for _, line := range append([][]string{head}, body...) {
		for j, s := range line {
			width[j] = max(width[j], len([]rune(s)), 3)
		}
	}
	left := func(j int) bool { return j == 0 || j == len(head)-1 || head[j] == "criterion" }
	var b strings.Builder
	writeLine := func(line []string) {
		b.WriteString("|")
		for j, s := range line {
			s = strings.ReplaceAll(s, "|", "/")
			pad := strings.Repeat(" ", width[j]-len([]rune(s)))
			if left(j) {
				fmt.Fprintf(&b, " %s%s |", s, pad)
			} else {
				fmt.Fprintf(&b, " %s%s |", pad, s)
			}
		}
		b.WriteString("\n")
	}
	writeLine(head)
	b.WriteString("|")
	for j := range head {
		if left(j) {
			b.WriteString(" " + strings.Repeat("-", width[j]) + " |")
		} else {
			b.WriteString(" " + strings.Repeat("-", width[j]-1) + ": |")
		}
	}
	b.WriteString("\n")
	for _, line := range body {
		writeLine(line)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeMarkdown(w io.Writer, rep *report) error {
	var b strings.Builder
	c := rep.Config
	fmt.Fprintf(&b, "## synfs-bench\n\n")
	fmt.Fprintf(&b, "synfs %s. %d CPUs, Linux %s, %s. Emulator: S3 first byte %v, %g MB/s per connection, REST %v, Synapse throttle on. "+
		"synfs --max-memory %s. %d rep(s), alternating systems; medians (peak RSS, S3 conns: max). MB = 10^6 B, MiB = 2^20 B. "+
		"CPU s: the mount process (limits: this process; FUSE ceiling: its server side).\n\n",
		rep.Synfs, rep.Host.CPUs, rep.Host.Kernel, rep.Host.Go, c.S3Latency, c.S3ConnMBps, c.RESTLatency, c.MaxMemory, c.Reps)
	if f := rep.Host.FreshMemory; len(f) == 2 {
		fmt.Fprintf(&b, "First writes to fresh memory cost %.2f CPU s/GiB at the start of the run and %.2f at its end: "+
			"a fresh mount pays that for the memory its cache first takes, and every cold read through FUSE (the FUSE ceiling's too) "+
			"for the page cache it fills; direct(N), which reuses its buffers, does not.\n\n", f[0], f[1])
	}
	for _, wr := range rep.Workloads {
		fmt.Fprintf(&b, "### %s: %s\n\n", wr.Name, wr.Title)
		if wr.Bound > 0 {
			fmt.Fprintf(&b, "× bound: against the %s, %s %s.\n\n", wr.BoundName, fnum(wr.Bound), wr.Unit)
		}
		head, body := rowTable(columnsFor(wr.Kind, wr.Unit, rep.Systems), wr.Rows)
		if err := renderTable(&b, head, body); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	b.WriteString("### Acceptance (synfs)\n\n")
	var body [][]string
	for _, cr := range rep.Acceptance {
		body = append(body, []string{cr.Status, cr.Name, cr.Value, cr.Target, cr.Detail})
	}
	if err := renderTable(&b, []string{"result", "criterion", "value", "target", "detail"}, body); err != nil {
		return err
	}
	if len(rep.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
