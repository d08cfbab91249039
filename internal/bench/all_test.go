package bench

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleAllReport is a report as RunAll would make it, with made-up
// numbers that the written document must show.
func sampleAllReport() *AllReport {
	trace := func(newMasterAt float64) *LagTrace {
		tr := &LagTrace{Servers: []string{"master", "backup", "replica-1", "replica-2"}, EveryMs: 20}
		for ms := -500.0; ms <= 900; ms += 20 {
			lag := []int64{0, 34, 34, 0}
			if ms >= 0 {
				lag[0] = -1
			}
			if ms >= newMasterAt && ms < newMasterAt+100 {
				lag = []int64{-1, 0, 4321, 4321}
			}
			tr.Samples = append(tr.Samples, LagSample{Ms: ms, Lag: lag})
		}
		return tr
	}
	return &AllReport{
		Machine: Machine{CPUModel: "Test CPU 9000", CPUs: 2, GOMAXPROCS: 2, Kernel: "linux 6.1", LoadStart: [3]float64{3.5, 2, 1},
			LoadEnd: [3]float64{4.25, 3, 2}, RedisVersion: "7.0.15", GoVersion: "go1.26.0", Commit: "abc123",
			Started: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Ended: time.Date(2026, 12, 3, 12, 10, 0, 0, time.UTC)},
		Commands: map[string]string{BenchFailover: "arbor bench failover --runs 3", BenchTree: "arbor bench tree --pin",
			BenchRelayFailover: "arbor bench relay-failover --runs 2"},
		Failover: &FailoverReport{Runs: 3, Kill: "redis", Systems: []FailoverResult{
			{Name: "sentinel", Settings: "3 sentinels", WriteAccepted: Dist{Count: 3, P50: 2345, P99: 2999, Max: 2999},
				PerRun: []FailoverRun{{WriteAcceptedMs: 2345, ReplicasStreamingMs: 2600, NewMaster: "backup", Trace: trace(2345)},
					{WriteAcceptedMs: 2999, ReplicasStreamingMs: 3100, NewMaster: "backup"}, {WriteAcceptedMs: 2100, ReplicasStreamingMs: 2200, NewMaster: "backup"}}},
			{Name: "arbor", Settings: "agents", WriteAccepted: Dist{Count: 3, P50: 251, P99: 400, Max: 400},
				PerRun: []FailoverRun{{WriteAcceptedMs: 251, ReplicasStreamingMs: 305, NewMaster: "backup", Trace: trace(251)},
					{WriteAcceptedMs: 400, ReplicasStreamingMs: 450, NewMaster: "backup", Trace: trace(400)}, {WriteAcceptedMs: 200, ReplicasStreamingMs: 250, NewMaster: "backup", Trace: trace(200)}}},
		}},
		Tree: &TreeReport{
			Settings: TreeSettings{BandwidthBps: 12_500_000, LatencyMs: 10, Compression: "zstd", Mix: "profile=40"},
			Bytes: &TreeBytesResult{Rate: 20000, Seconds: 10, StreamBytes: 100 << 20,
				Sites: []SiteBytes{{Site: "B", NativePerMiB: 1 << 20, ArborPerMiB: 123 << 10, Ratio: 0.12}},
				Total: SiteBytes{Site: "total", NativePerMiB: 1 << 20, ArborPerMiB: 123 << 10, Ratio: 0.12}},
			FullSync: &FullSyncResult{DataBytes: 256 << 20, NativeSeconds: 21.5, ArborRelaySeconds: 7.25, ArborReplicaSeconds: 3.5, ArborSeconds: 10.75, Ratio: 0.5},
		},
		TreeErr: "lag probes missing",
		Ran: []BenchRun{{Name: BenchFailover, Started: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Ended: time.Date(2026, 12, 3, 12, 4, 30, 0, time.UTC),
			LoadStart: [3]float64{3.5, 2, 1}, LoadEnd: [3]float64{4, 2.5, 1.5}},
			// Measured again on its own, at another commit.
			{Name: BenchRelayFailover, Started: time.Date(2026, 12, 3, 15, 30, 0, 0, time.UTC), Ended: time.Date(2026, 12, 3, 15, 31, 0, 0, time.UTC),
				LoadStart: [3]float64{1, 1, 1}, LoadEnd: [3]float64{1.5, 1, 1}, Commit: "def456"}},
		RelayFailover: &RelayFailoverReport{MoveAfterMs: 1000, MoveAfterDownMs: 500, Digests: true, Streaming: Dist{Count: 2, P50: 1234, P99: 1500, Max: 1500},
			Stall: Dist{Count: 2, P50: 20, P99: 30, Max: 30},
			Runs:  []RelayFailoverRun{{StreamingMs: 1234, StallMs: 20, DigestsEqual: true}, {StreamingMs: 1500, StallMs: 30, DigestsEqual: true}}},
		Switchover: &FailoverReport{Runs: 2, Kill: "switchover", Systems: []FailoverResult{
			{Name: "arbor", Settings: "agents", WritePause: Dist{Count: 2, P50: 46.5, P99: 89, Max: 89},
				PerRun: []FailoverRun{{WritePauseMs: 46.5, WriteAcceptedMs: 50}, {WritePauseMs: 89, WriteAcceptedMs: 95}}}}},
	}
}

// TestWriteDoc: the document shows the machine, the commands, each
// measured benchmark's numbers, links only to figures it wrote (each a
// valid SVG drawn from the data), says what was not measured or failed,
// and keeps the data it was drawn from.
func TestWriteDoc(t *testing.T) {
	dir := t.TempDir()
	rep := sampleAllReport()
	if err := WriteDoc(dir, rep); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, DocName))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(md)
	for _, want := range []string{
		"Test CPU 9000, 2 logical CPUs", "start 3.50, 2.00, 1.00 · end 4.25, 3.00, 2.00", "7.0.15", "go1.26.0", "`abc123`",
		"arbor bench failover --runs 3", "arbor bench tree --pin",
		"| sentinel | 3 sentinels | 3 of 3 | 2345 ms |", "| arbor | agents | 3 of 3 | 251 ms |",
		"| site B |", "1024 KiB | 123 KiB | 0.120 |",
		"| seconds | 21.50 | 7.25 | 3.50 | 10.75 | 0.50 |",
		"tree: lag probes missing",
		"## One relay vs native replication\n\nNot measured in this run.",
		"The machine was shared",
		"## Planned switchover: the write pause",
		"| failover | 12:00:00 | 4m30s | 3.50, 2.00, 1.00 | 4.00, 2.50, 1.50 |",
		"| children streaming again | 1234 ms | 1500 ms | 1500 ms |", "(`--move-after 1s --move-after-down 500ms`)",
		"`relay-failover` was measured again on its own on 2026-12-03 15:30 (UTC), at commit\n`def456` (`arbor bench relay-failover --runs 2`)",
		"Measured on its own on 2026-12-03 15:30 (UTC), at commit\n`def456`, apart from the rest of this report.", "Writes refused: 0 · full syncs anywhere: 0 · digests: equal.", "| arbor | 2 of 2 | 46.50 ms | 89.00 ms |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q", want)
		}
	}
	links := regexp.MustCompile(`\]\((benchmarks/[^)]+)\)`).FindAllStringSubmatch(doc, -1)
	seen := map[string]bool{}
	for _, l := range links {
		seen[l[1]] = true
		b, err := os.ReadFile(filepath.Join(dir, l[1]))
		if err != nil {
			t.Errorf("linked %s: %v", l[1], err)
			continue
		}
		if strings.HasSuffix(l[1], ".svg") {
			if err := xml.Unmarshal(b, new(struct{})); err != nil {
				t.Errorf("%s is not XML: %v", l[1], err)
			}
		}
	}
	for _, want := range []string{"benchmarks/results.json", "benchmarks/failover-cdf.svg", "benchmarks/failover-lag-sentinel.svg",
		"benchmarks/failover-lag-arbor.svg", "benchmarks/intersite-bytes.svg", "benchmarks/fullsync.svg", "benchmarks/switchover-pause.svg", "benchmarks/relay-failover.svg"} {
		if !seen[want] {
			t.Errorf("document does not link %s (links: %v)", want, seen)
		}
	}
	if seen["benchmarks/relay-lag.svg"] || seen["benchmarks/tree-lag.svg"] {
		t.Errorf("figures of benchmarks not measured are linked: %v", seen)
	}
	// The figures come from the data: the arbor lag trace is the median
	// run's (new master at 251 ms, a lag of 4321 bytes), the full-sync
	// bars carry the measured seconds.
	lag, _ := os.ReadFile(filepath.Join(dir, "benchmarks/failover-lag-arbor.svg"))
	if !strings.Contains(string(lag), "median failover time") || !strings.Contains(string(lag), "write accepted") {
		t.Errorf("arbor lag figure lacks its title or marker:\n%s", lag)
	}
	fs, _ := os.ReadFile(filepath.Join(dir, "benchmarks/fullsync.svg"))
	for _, want := range []string{"21.50 s", "7.25 s", "10.75 s"} {
		if !strings.Contains(string(fs), want) {
			t.Errorf("full-sync figure lacks %q", want)
		}
	}
	// The saved data gives the same document again.
	back, err := ReadResults(filepath.Join(dir, "benchmarks/results.json"))
	if err != nil || back.Failover.Systems[1].PerRun[0].WriteAcceptedMs != 251 {
		t.Fatalf("results.json: %v", err)
	}
	again := t.TempDir()
	if err := WriteDoc(again, back); err != nil {
		t.Fatal(err)
	}
	if md2, _ := os.ReadFile(filepath.Join(again, DocName)); string(md2) != doc {
		t.Error("the document written from results.json differs from the first")
	}
}

func TestMedianRunAndECDF(t *testing.T) {
	tr := &LagTrace{Samples: []LagSample{{}}}
	run, ok := medianRun([]FailoverRun{{WriteAcceptedMs: 30, Trace: tr}, {WriteAcceptedMs: 10, Trace: tr}, {WriteAcceptedMs: 20, Trace: tr}, {WriteAcceptedMs: 5}})
	if !ok || run.WriteAcceptedMs != 20 {
		t.Errorf("median run: %+v %v, want the 20 ms one (the run without a trace does not count)", run, ok)
	}
	if _, ok := medianRun([]FailoverRun{{WriteAcceptedMs: 5}}); ok {
		t.Error("a median run among runs without traces")
	}
	x, y := ecdf([]float64{30, 10})
	if want := []float64{10, 10, 30, 30}; !slices.Equal(x, want) {
		t.Errorf("ecdf x %v, want %v", x, want)
	}
	if want := []float64{0, 0.5, 0.5, 1}; !slices.Equal(y, want) {
		t.Errorf("ecdf y %v, want %v", y, want)
	}
}

func TestMachineParsing(t *testing.T) {
	if got := parseLoadAvg("7.20 6.48 3.54 8/236 2771\n"); got != [3]float64{7.2, 6.48, 3.54} {
		t.Errorf("parseLoadAvg: %v", got)
	}
	info := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n"
	if got := cpuModel(info); got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpuModel: %q", got)
	}
	m := readMachine()
	if m.CPUs < 1 || m.GoVersion == "" {
		t.Errorf("readMachine: %+v", m)
	}
}
