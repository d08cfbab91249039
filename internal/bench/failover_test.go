package bench

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestFailoverSentinelSmoke runs the failover benchmark once with real
// redis-sentinel processes: the backup is promoted, a write is accepted on
// it, both replicas stream from it again, and the report says so.
func TestFailoverSentinelSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four redis-servers and three redis-sentinels")
	}
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Skip("redis-sentinel is not installed (Debian: apt-get install redis-sentinel)")
	}
	rep := runFailoverOnce(t, 3*time.Minute, "sentinel", nil)
	s := rep.Systems[0]
	run := s.PerRun[0]
	if run.WriteAcceptedMs <= 0 || run.ReplicasStreamingMs <= 0 || run.NewMaster == "" || run.Acked == 0 {
		t.Errorf("run: %+v", run)
	}
	if s.WriteAccepted.Count != 1 || s.ReplicasStreaming.Count != 1 {
		t.Errorf("distributions: %+v %+v", s.WriteAccepted, s.ReplicasStreaming)
	}
	checkTrace(t, run)
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	for _, want := range []string{"sentinel  3 sentinels, quorum 2, down-after-milliseconds 1000"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// checkTrace checks a run's lag trace: every server named, the old master
// first; samples before and after the kill; the old master answering
// before it and never after; every sample's lags relative to its furthest
// server (some server at 0).
func checkTrace(t *testing.T, run FailoverRun) {
	t.Helper()
	tr := run.Trace
	if tr == nil || len(tr.Servers) != 4 || tr.Servers[0] != "master" {
		t.Fatalf("trace: %+v", tr)
	}
	var before, after int
	for _, s := range tr.Samples {
		if len(s.Lag) != len(tr.Servers) {
			t.Fatalf("sample %+v: %d lags for %d servers", s, len(s.Lag), len(tr.Servers))
		}
		if s.Ms < 0 {
			before++
		} else {
			after++
			if s.Lag[0] >= 0 && s.Ms > run.WriteAcceptedMs {
				t.Errorf("sample %+v: the killed master answered", s)
			}
		}
		if slices.Max(s.Lag) >= 0 && !slices.Contains(s.Lag, 0) {
			t.Errorf("sample %+v: no server at lag 0", s)
		}
	}
	if before == 0 || after == 0 || tr.Samples[len(tr.Samples)-1].Ms < run.ReplicasStreamingMs {
		t.Errorf("trace: %d samples before the kill, %d after, the last at %v ms (replicas streaming at %v ms)",
			before, after, tr.Samples[len(tr.Samples)-1].Ms, run.ReplicasStreamingMs)
	}
}

func TestLagsOf(t *testing.T) {
	if got := lagsOf([]int64{100, -1, 90, 100}); !slices.Equal(got, []int64{0, -1, 10, 0}) {
		t.Errorf("lagsOf: %v", got)
	}
	if got := lagsOf([]int64{-1, -1}); !slices.Equal(got, []int64{-1, -1}) {
		t.Errorf("lagsOf with no answer: %v", got)
	}
}

// runFailoverOnce runs the failover benchmark once for one system, its
// config edited by edit (if not nil), within timeout. It fails the test,
// with the benchmark's progress, unless the report holds that system's one
// run and nothing that could not run.
func runFailoverOnce(t *testing.T, timeout time.Duration, system string, edit func(*FailoverConfig)) *FailoverReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg := DefaultFailoverConfig()
	cfg.Runs = 1
	cfg.Systems = []string{system}
	var progress bytes.Buffer
	cfg.Progress = &progress
	if edit != nil {
		edit(&cfg)
	}
	rep, err := RunFailover(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Systems) != 1 || len(rep.Systems[0].PerRun) != 1 || len(rep.NotRun) != 0 {
		t.Fatalf("report: %+v\nprogress:\n%s", rep, progress.String())
	}
	return rep
}

func TestFailoverNoSentinel(t *testing.T) {
	cfg := DefaultFailoverConfig()
	cfg.RedisSentinel = "no-such-redis-sentinel"
	cfg.Systems = []string{"sentinel"}
	if _, err := RunFailover(context.Background(), cfg); !errors.Is(err, ErrNoSentinel) {
		t.Fatalf("without redis-sentinel: %v, want ErrNoSentinel", err)
	}
}

// TestFailoverArborSmoke runs the Arbor side once: node agents with
// --elect, a root relay under etcd, kill -9 of the master's Redis: the
// backup is promoted, a write is accepted on it, both replicas stream its
// history through the relay, with no full sync anywhere.
func TestFailoverArborSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arbor, runs etcd, four redis-servers, a relay and four node agents")
	}
	bin := buildArbor(t)
	rep := runFailoverOnce(t, 5*time.Minute, "arbor", func(cfg *FailoverConfig) { cfg.ArborBin = bin })
	run := rep.Systems[0].PerRun[0]
	if run.WriteAcceptedMs <= 0 || run.ReplicasStreamingMs <= 0 || run.NewMaster == "" || run.Acked == 0 {
		t.Errorf("run: %+v", run)
	}
	if run.FullSyncs != 0 {
		t.Errorf("%d full syncs after the failover, want 0", run.FullSyncs)
	}
	checkTrace(t, run)
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
}

// TestFailoverArborHostSmoke runs the Arbor side once with the fast
// profile, killing the master's host (its redis-server and its agent): the
// election learns it by lease expiry and the backup is promoted.
func TestFailoverArborHostSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arbor, runs etcd, four redis-servers, a relay and four node agents")
	}
	bin := buildArbor(t)
	rep := runFailoverOnce(t, 5*time.Minute, "arbor-fast", func(cfg *FailoverConfig) { cfg.ArborBin, cfg.KillHost = bin, true })
	if rep.Kill != "host" {
		t.Fatalf("report: kill %q, want host", rep.Kill)
	}
	if run := rep.Systems[0].PerRun[0]; run.NewMaster == "" || run.FullSyncs != 0 {
		t.Errorf("run: %+v", run)
	}
}

// TestFailoverArborSwitchoverSmoke runs the Arbor side once with a
// planned switchover instead of a kill: the backup is master, no
// acknowledged write is lost, no full sync, and the write pause is
// measured.
func TestFailoverArborSwitchoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arbor, runs etcd, four redis-servers, a relay and four node agents")
	}
	bin := buildArbor(t)
	rep := runFailoverOnce(t, 5*time.Minute, "arbor", func(cfg *FailoverConfig) { cfg.ArborBin, cfg.Switchover = bin, true })
	if rep.Kill != "switchover" {
		t.Fatalf("report: kill %q, want switchover", rep.Kill)
	}
	s := rep.Systems[0]
	run := s.PerRun[0]
	if run.NewMaster == "" || run.Acked == 0 || run.WritePauseMs <= 0 || s.WritePause.Count != 1 {
		t.Errorf("run: %+v, write pause %+v", run, s.WritePause)
	}
	if run.Lost != 0 || run.FullSyncs != 0 {
		t.Errorf("%d acknowledged writes lost, %d full syncs; want 0 and 0", run.Lost, run.FullSyncs)
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "planned switchover") {
		t.Errorf("report does not say it is a switchover:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}

// TestFailoverSentinelSwitchoverSmoke runs Sentinel once with SENTINEL
// FAILOVER instead of a kill: the backup is master, the writer reaches it,
// and the write pause is measured (acknowledged writes the old master
// took after the promotion may be lost: Sentinel does not pause it).
func TestFailoverSentinelSwitchoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four redis-servers and three redis-sentinels")
	}
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		t.Skip("redis-sentinel is not installed (Debian: apt-get install redis-sentinel)")
	}
	rep := runFailoverOnce(t, 3*time.Minute, "sentinel", func(cfg *FailoverConfig) { cfg.Switchover = true })
	s := rep.Systems[0]
	if run := s.PerRun[0]; run.NewMaster == "" || run.Acked == 0 || run.WritePauseMs <= 0 || s.WritePause.Count != 1 {
		t.Errorf("run: %+v, write pause %+v", run, s.WritePause)
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
}
