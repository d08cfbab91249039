package e2e

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is a row's verdict.
type Status string

// The verdicts of a row.
const (
	Pass       Status = "PASS"
	Fail       Status = "FAIL"
	NotBuilt   Status = "not built"
	NotApplies Status = "not applicable"
	// NotRun marks a row left out by go test -run.
	NotRun Status = "not run (-run)"
)

// Result is one row of the report.
type Result struct {
	// Row is the row's name in the suite; Matrix the row of
	// failover-notes §5 it covers.
	Row, Matrix string
	// Fault says what was injected and healed.
	Fault string
	Status
	// The checks, as the table shows them.
	Failover  string // epochs and the new master, with the times
	Writable  string // "1" or the offending count, with the masters per epoch
	Lost      string // acknowledged writes lost, and what was promised
	Digests   string // equal after the heal, or why not
	FullSyncs string // full syncs across the row, and what was promised
	// Notes explain a failure, a not-built row or a measurement.
	Notes []string
	Took  time.Duration
}

// Failf marks r failed with a note.
func (r *Result) Failf(format string, args ...any) {
	r.Status = Fail
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Notef adds a note.
func (r *Result) Notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Table writes the results as a markdown table.
func Table(w io.Writer, rs []Result, wall time.Duration) {
	pass := 0
	for _, r := range rs {
		if r.Status == Pass {
			pass++
		}
	}
	fmt.Fprintf(w, "| row | §5 | fault | result | failover | writable masters per epoch | acked writes lost | digests after heal | full syncs | time | notes |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		took := "-"
		if r.Took > 0 {
			took = r.Took.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			cell(r.Row), cell(r.Matrix), cell(r.Fault), r.Status, cell(r.Failover), cell(r.Writable),
			cell(r.Lost), cell(r.Digests), cell(r.FullSyncs), took, cell(strings.Join(r.Notes, "; ")))
	}
	fmt.Fprintf(w, "\n%d of %d rows pass (%d run); wall time %v.\n", pass, len(rs), ran(rs), wall.Round(time.Second))
}

func ran(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Status == Pass || r.Status == Fail {
			n++
		}
	}
	return n
}

// cell makes s fit in a markdown table cell.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
