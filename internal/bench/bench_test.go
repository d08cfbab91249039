package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// buildArbor builds the arbor binary into a temporary directory.
func buildArbor(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "arbor")
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/arbor-fabric/arbor/cmd/arbor")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build arbor: %v\n%s", err, out)
	}
	return bin
}

// children returns the pids of this process's live child processes.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Field 4, after the parenthesized name, is the parent pid.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == me {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRunSmoke runs the whole benchmark briefly and checks that it
// measured something in every phase, that the replicas match their
// masters, and that no process or directory is left behind.
// smallConfig is a Config for a run of seconds: 1 s loads at 5000
// writes/s, with this tree's arbor binary. It skips the test with -short or
// without redis-server.
func smallConfig(t *testing.T) Config {
	t.Helper()
	if testing.Short() {
		t.Skip("starts redis-server and relay processes; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("redis-server not found: %v", err)
	}
	cfg := DefaultConfig()
	cfg.RelayBin = buildArbor(t)
	cfg.Dir = t.TempDir()
	cfg.Duration = time.Second
	cfg.Rate = 5000
	cfg.LagSamples = 200
	cfg.Keyspace = 10000
	return cfg
}

// runSmall runs cfg, logging its progress; it fails the test if Run does.
func runSmall(t *testing.T, cfg Config) *Report {
	t.Helper()
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func TestRunSmoke(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Rounds = 2
	cfg.Clients = []int{2, 3}
	rep := runSmall(t, cfg)
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())
	if err := rep.Err(); err != nil {
		t.Errorf("report has correctness failures: %v", err)
	}

	th := rep.Throughput
	if th == nil {
		t.Fatal("no throughput result")
	}
	if got, want := len(th.Rounds), 2*cfg.Rounds; got != want {
		t.Errorf("throughput rounds: got %d, want %d", got, want)
	}
	if th.NativeOpsPerSec <= 0 || th.RelayOpsPerSec <= 0 || th.Ratio <= 0 {
		t.Errorf("throughput: native %v, relay %v, ratio %v; want all > 0", th.NativeOpsPerSec, th.RelayOpsPerSec, th.Ratio)
	}
	if th.RelayPeakRSS <= 0 {
		t.Errorf("throughput relay peak RSS %d, want > 0", th.RelayPeakRSS)
	}
	if len(rep.MoreThroughput) != 1 || rep.MoreThroughput[0].Clients != 3 || th.Clients != 2 {
		t.Errorf("throughput at client counts %d and %d more results, want 2 then 3", th.Clients, len(rep.MoreThroughput))
	}
	for _, r := range rep.throughputs() {
		if len(r.PairRatios) != cfg.Rounds || r.Spread.N != cfg.Rounds || r.Ratio != r.Spread.Median {
			t.Errorf("%d clients: pair ratios %v, spread %+v, ratio %v; want %d pairs and the ratio their median", r.Clients, r.PairRatios, r.Spread, r.Ratio, cfg.Rounds)
		}
		if len(r.MasterCPUPairRatios) != cfg.Rounds || r.MasterCPUSpread.N != cfg.Rounds || r.MasterCPUSpread.Median <= 0 {
			t.Errorf("%d clients: master CPU pair ratios %v, spread %+v; want %d pairs > 0", r.Clients, r.MasterCPUPairRatios, r.MasterCPUSpread, cfg.Rounds)
		}
		for _, rd := range r.Rounds {
			if m := rd.Master; m.CPUPerOpUs <= 0 || m.ReadsPerKOp <= 0 || m.WritesPerKOp <= 0 || rd.MasterCPUPerOpUs != m.CPUPerOpUs {
				t.Errorf("%d clients: round %d %s: master cost %+v, CPU per op %v; want CPU, reads and writes per SET > 0",
					r.Clients, rd.Round, rd.Config, m, rd.MasterCPUPerOpUs)
			}
			if rd.Clients != r.Clients || rd.MasterReplconfCalls <= 0 {
				t.Errorf("%d clients: round %d %s ran %d clients, master served %d REPLCONFs; want %d clients and some ACKs",
					r.Clients, rd.Round, rd.Config, rd.Clients, rd.MasterReplconfCalls, r.Clients)
			}
		}
	}

	lag := rep.Lag
	if lag == nil {
		t.Fatal("no lag result")
	}
	if lag.Probes < 10 {
		t.Errorf("lag probes: got %d, want at least 10", lag.Probes)
	}
	if lag.Native.Count != lag.Probes || lag.Relay.Count != lag.Probes {
		t.Errorf("probes received: native %d, relay %d; want %d each", lag.Native.Count, lag.Relay.Count, lag.Probes)
	}
	if lag.Native.P50 <= 0 || lag.Relay.P50 <= 0 {
		t.Errorf("lag p50: native %v ms, relay %v ms; want > 0", lag.Native.P50, lag.Relay.P50)
	}
	if min := 0.8 * float64(cfg.Rate); lag.AchievedRate < min {
		t.Errorf("achieved rate %v, want at least %v", lag.AchievedRate, min)
	}
	if lag.CPU.Uses[0].StreamBytes <= 0 {
		t.Errorf("lag stream bytes %d, want > 0", lag.CPU.Uses[0].StreamBytes)
	}
	if got, want := len(rep.Digests), 4; got != want {
		t.Errorf("digest checks: got %d, want %d", got, want)
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets checked")
	}
	if !strings.Contains(text.String(), "verdict, the master pays nothing for a relay") {
		t.Error("the text report has no master-cost verdict")
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}

	checkNothingLeft(t, cfg.Dir)
}

// TestRunFixedCount: with Config.Ops every throughput round writes that
// many SETs (rounded up to whole pipelines), and the master's cost per SET
// is measured in each. It is a control run (Config.Control): the second
// master has a native replica, and no relay target is judged.
func TestRunFixedCount(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Phases = []string{PhaseThroughput}
	cfg.Rounds = 1
	cfg.Clients = []int{3}
	cfg.Ops = 20000
	cfg.Control = true
	rep := runSmall(t, cfg)
	if len(rep.Targets) != 0 {
		t.Errorf("control run judged targets %v, want none", rep.Targets)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("report has correctness failures: %v", err)
	}
	th := rep.Throughput
	if th == nil || len(th.Rounds) != 2 {
		t.Fatalf("throughput %+v: want one pair of rounds", th)
	}
	for _, rd := range th.Rounds {
		if rd.Config != "native" && rd.Config != "control" {
			t.Errorf("round config %q, want native or control", rd.Config)
		}
		if rd.Ops < int64(cfg.Ops) || rd.Ops >= int64(cfg.Ops+cfg.Pipeline) {
			t.Errorf("round %s wrote %d SETs, want %d rounded up to whole pipelines", rd.Config, rd.Ops, cfg.Ops)
		}
		if rd.Master.CPUPerOpUs <= 0 || rd.Master.WritesPerKOp <= 0 {
			t.Errorf("round %s: master cost %+v, want CPU and writes per SET > 0", rd.Config, rd.Master)
		}
	}
	if rep.Settings.Ops != cfg.Ops {
		t.Errorf("settings ops %d, want %d", rep.Settings.Ops, cfg.Ops)
	}
	checkNothingLeft(t, cfg.Dir)
}

// lockedBuffer collects a run's progress lines, written by the run's
// goroutine and read by the test's.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitProgress polls the progress lines until one contains want (the run
// reached that point), failing if the run ends or a minute passes first.
func waitProgress(t *testing.T, progress *lockedBuffer, want string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(progress.String(), want) {
		select {
		case err := <-done:
			t.Fatalf("run ended before %q: %v\n%s", want, err, progress.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the progress after a minute:\n%s", want, progress.String())
		}
	}
}

// checkNothingLeft fails if a run left child processes or its temporary
// directory behind.
func checkNothingLeft(t *testing.T, dir string) {
	t.Helper()
	if pids := children(t); len(pids) > 0 {
		t.Errorf("child processes left running: %v", pids)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "arbor-bench-*")); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// TestRunCanceled cancels a run during its first load and checks that it
// returns promptly with the context's error and leaves no process behind.
func TestRunCanceled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and relay processes; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("redis-server not found: %v", err)
	}
	cfg := DefaultConfig()
	cfg.RelayBin = buildArbor(t)
	cfg.Dir = t.TempDir()
	cfg.Duration = time.Minute
	cfg.Keyspace = 1000
	var progress lockedBuffer
	cfg.Progress = &progress

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg)
		done <- err
	}()
	// Cancel once the first load has started.
	waitProgress(t, &progress, "prefilled", done)
	cancel()
	select {
	case err := <-done:
		if err == nil || ctx.Err() == nil {
			t.Errorf("Run after cancel: got %v, want the context's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return 30s after cancel; progress:\n%s", progress.String())
	}
	checkNothingLeft(t, cfg.Dir)
}

// TestRunLagThroughRelayHops: the lag phase through a chain of two relays
// (the second follows the first over gRPC) gets every probe to the replica
// at the chain's end, with the master's data, and checks the per-hop
// targets; its null round (two null hops, a replica behind them) gets
// every probe too, with the master's data, and sets the floor the relay
// hop is judged over.
func TestRunLagThroughRelayHops(t *testing.T) {
	cfg := smallConfig(t)
	cfg.Phases = []string{PhaseLag}
	cfg.RelayHops = 2
	cfg.NullChain = true
	cfg.HelperBin = cfg.RelayBin
	rep := runSmall(t, cfg)
	if err := rep.Err(); err != nil {
		t.Errorf("report has correctness failures: %v", err)
	}
	lag := rep.Lag
	if lag == nil {
		t.Fatal("no lag result")
	}
	if lag.RelayHops != 2 {
		t.Errorf("relay hops %d, want 2", lag.RelayHops)
	}
	if lag.Probes < 10 || lag.Relay.Count != lag.Probes || lag.Native.Count != lag.Probes {
		t.Errorf("probes %d: native got %d, relay path got %d; want all", lag.Probes, lag.Native.Count, lag.Relay.Count)
	}
	if got, want := lag.PerHopP99, lag.Paired.P99/2; got != want || got <= 0 {
		t.Errorf("p99 per relay hop %v, want %v (paired p99 / 2), above 0", got, want)
	}
	if got, want := lag.PerHopP50, lag.Paired.P50/2; got != want {
		t.Errorf("p50 per relay hop %v, want %v (paired p50 / 2)", got, want)
	}
	if len(lag.InChain) != 1 || lag.InChain[0].Relay != "relay-2" || lag.InChain[0].Frames == 0 || lag.InChain[0].P99 < lag.InChain[0].P50 {
		t.Errorf("lag inside the chain %+v: want relay-2's, over frames, p99 at least p50", lag.InChain)
	}
	f := lag.Floor
	if f == nil {
		t.Fatal("no floor with NullChain")
	}
	if f.Null.Count == 0 || f.Null.Missing != 0 || f.Native.Missing != 0 || f.Paired.Count != f.Null.Count {
		t.Errorf("null round: native got %d (missing %d), null chain got %d (missing %d), paired %d; want all",
			f.Native.Count, f.Native.Missing, f.Null.Count, f.Null.Missing, f.Paired.Count)
	}
	if f.PerHopP99 != f.Paired.P99/2 || f.NetPerHopP99 != lag.PerHopP99-f.PerHopP99 || f.NetPerHopP50 != lag.PerHopP50-f.PerHopP50 {
		t.Errorf("floor per hop p99 %v (paired %v), over the floor p50 %v p99 %v; relay hop p50 %v p99 %v",
			f.PerHopP99, f.Paired.P99, f.NetPerHopP50, f.NetPerHopP99, lag.PerHopP50, lag.PerHopP99)
	}
	if hopCPU(f.CPU) == "" {
		t.Errorf("null round CPU %+v: no null hop in it", f.CPU.Uses)
	}
	// A native and a chain replica in each round.
	if got, want := len(rep.Digests), 4; got != want {
		t.Errorf("digest checks: got %d, want %d", got, want)
	}
	var names []string
	for _, d := range rep.Digests {
		names = append(names, d.Replica)
	}
	if !slices.Contains(names, "null-replica") {
		t.Errorf("digest checks of %v: none of the null chain's replica", names)
	}
	var found int
	for _, tg := range rep.Targets {
		if strings.Contains(tg.Name, "per relay hop") {
			found++
		}
	}
	if found != 4 {
		t.Errorf("targets %v: %d per relay hop targets, want 4 (p50 and p99, raw and over the floor)", rep.Targets, found)
	}
}
