package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseSchedstat(t *testing.T) {
	got, err := parseSchedstat([]byte("1034331 1124987 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1034331 * time.Nanosecond; got != want {
		t.Errorf("parseSchedstat = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "12 34\n", "x 1 2\n"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q): got nil error, want one", bad)
		}
	}
}

// TestParseKeyValue reads the counters of /proc/<pid>/io and
// /proc/<pid>/status as they are laid out, and names a missing one.
func TestParseKeyValue(t *testing.T) {
	io := "rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 42\nread_bytes: 0\n"
	status := "Name:\tredis-server\nVmHWM:\t   20480 kB\nvoluntary_ctxt_switches:\t1500\nnonvoluntary_ctxt_switches:\t37\n"
	for _, c := range []struct {
		text, key string
		want      int64
	}{
		{io, "syscr", 10}, {io, "syscw", 42},
		{status, "voluntary_ctxt_switches", 1500}, {status, "nonvoluntary_ctxt_switches", 37},
	} {
		got, err := parseKeyValue([]byte(c.text), c.key)
		if err != nil || got != c.want {
			t.Errorf("%s = %d, %v; want %d", c.key, got, err, c.want)
		}
	}
	if _, err := parseKeyValue([]byte(io), "syscx"); err == nil {
		t.Error("missing key: got nil error, want one")
	}
	if _, err := parseKeyValue([]byte(status), "VmHWM"); err == nil {
		t.Error("a kB value: got nil error, want one")
	}
}

// TestReadProcCounters reads this process's counters: they exist, and run
// time and syscalls only grow.
func TestReadProcCounters(t *testing.T) {
	a, err := readProcCounters(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		os.ReadFile("/proc/self/stat")
	}
	b, err := readProcCounters(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	d := b.sub(a)
	if a.runtime <= 0 || d.runtime <= 0 || d.syscr < 20 || d.ticks < 0 {
		t.Errorf("counters %+v then %+v: want run time > 0 and growing, at least 20 more reads", a, b)
	}
}

func TestMasterCost(t *testing.T) {
	d := procCounters{runtime: 2500 * time.Millisecond, ticks: 2500 * time.Millisecond, syscr: 50_000, syscw: 70_000, volCS: 1000, involCS: 200}
	got := masterCost(d, 1_000_000)
	want := MasterCost{CPUPerOpUs: 2.5, TicksPerOpUs: 2.5, ReadsPerKOp: 50, WritesPerKOp: 70, VoluntaryCSPerKOp: 1, InvoluntaryCSPerKOp: 0.2}
	if got != want {
		t.Errorf("masterCost = %+v, want %+v", got, want)
	}
	if got := masterCost(d, 0); got != (MasterCost{}) {
		t.Errorf("no ops: %+v, want zero", got)
	}
	med := medianCost([]MasterCost{{CPUPerOpUs: 3, WritesPerKOp: 1}, {CPUPerOpUs: 1, WritesPerKOp: 9}, {CPUPerOpUs: 2, WritesPerKOp: 5}})
	if med.CPUPerOpUs != 2 || med.WritesPerKOp != 5 {
		t.Errorf("medianCost: %+v, want CPU 2 and writes 5 (per field)", med)
	}
}

// TestBatchesPerClient: a fixed count is spread over the clients in whole
// pipelines, at least the count in all; without one, every client gets the
// time-based cap.
func TestBatchesPerClient(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Pipeline = 16
	cfg.Ops = 1000 // 62.5 pipelines: 63
	got := batchesPerClient(&cfg, 4)
	var sum int64
	for _, n := range got {
		sum += n
	}
	if sum != 63 || got[0] != 16 || got[3] != 15 {
		t.Errorf("batches %v: want 63 in all, 16, 16, 16, 15", got)
	}
	cfg.Ops = 0
	cfg.Duration = time.Second
	for _, n := range batchesPerClient(&cfg, 4) {
		if n != maxOpsPerSecond/16/4 {
			t.Errorf("by time: %d batches, want %d", n, maxOpsPerSecond/16/4)
		}
	}
}

// TestMasterCostTarget: the verdict passes only when the interval of the
// master's CPU per SET is resolved within 1/0.98, says why when it does
// not, and older reports keep their throughput target.
func TestMasterCostTarget(t *testing.T) {
	noisy := Spread{N: 10, Min: 0.8, Median: 0.96, Max: 1.2, CILow: 0.90, CIHigh: 1.03}
	for _, c := range []struct {
		name string
		cpu  Spread
		pass bool
		why  string
	}{
		{"resolved equal", Spread{N: 10, Min: 0.97, Median: 0.996, Max: 1.03, CILow: 0.988, CIHigh: 1.006}, true, "within"},
		{"resolved cost", Spread{N: 10, Min: 1.02, Median: 1.05, Max: 1.09, CILow: 1.03, CIHigh: 1.07}, false, "costs the master more"},
		{"not resolved", Spread{N: 3, Min: 0.9, Median: 1.0, Max: 1.1, CILow: 0.9, CIHigh: 1.1}, false, "not resolved"},
	} {
		tr := &ThroughputResult{Clients: 50, Spread: noisy, Ratio: noisy.Median, MasterCPUSpread: c.cpu}
		tg := masterCostTarget(tr)
		if tg.Pass != c.pass || tg.Value != c.cpu.CIHigh || tg.Limit != TargetMasterCPURatio || !strings.Contains(tg.Name, "CPU per SET") {
			t.Errorf("%s: target %+v, want pass %v on the interval's upper end %v", c.name, tg, c.pass, c.cpu.CIHigh)
		}
		lines := verdictLines(tr)
		verdict := "MISS"
		if c.pass {
			verdict = "PASS"
		}
		if len(lines) != 2 || !strings.Contains(lines[0], verdict) || !strings.Contains(lines[0], c.why) || !strings.Contains(lines[1], "cannot tell 0.98 from 1") {
			t.Errorf("%s: verdict lines %q, want %s, %q, and why not ops/s", c.name, lines, verdict, c.why)
		}
	}
	old := masterCostTarget(&ThroughputResult{Clients: 4, Ratio: 0.99, Spread: noisy})
	if !old.Pass || old.Op != ">=" || old.Limit != TargetThroughputRatio || old.Value != 0.99 {
		t.Errorf("a report without the CPU measure: %+v, want the throughput ratio judged against 0.98", old)
	}
}
