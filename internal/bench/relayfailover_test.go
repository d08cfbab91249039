package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRelayFailoverSmoke runs the relay failover benchmark once on each
// path, the relays' binary given as a relative path (as --relay-bin
// bin/arbor; the processes run in their own directories): the children
// (and on the etcd path the node agent's replica) stream from a2 again,
// nobody moves in the steady writes before the kill or after the move
// (bounded: 1 s each, 1 ms apart), the replicas end equal to the master
// without a full sync, and nothing is left behind.
func TestRelayFailoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arbor, runs etcd, four redis-servers, four relays and a node agent")
	}
	bin := buildArbor(t)
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, bin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultRelayFailoverConfig()
	cfg.Runs, cfg.RelayBin, cfg.Dir, cfg.Steady = 1, rel, t.TempDir(), time.Second
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	paths, err := ParseRelayFailoverPaths("both")
	if err != nil {
		t.Fatal(err)
	}
	reps, err := RunRelayFailoverPaths(ctx, cfg, paths)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(reps.Paths) != 2 || reps.Paths[0].Path != RelayFailoverStatic || reps.Paths[1].Path != RelayFailoverEtcd {
		t.Fatalf("paths: %+v", reps.Paths)
	}
	for _, rep := range reps.Paths {
		if len(rep.Runs) != 1 || rep.Runs[0].StreamingMs <= 0 || rep.Streaming.Count != 1 || rep.Stall.Count != 1 {
			t.Errorf("%s report: %+v", rep.Path, rep)
		}
		if node := rep.NodeStreaming; (rep.Path == RelayFailoverEtcd) != (node != nil && node.Count == 1 && rep.Runs[0].NodeStreamingMs > 0) {
			t.Errorf("%s: node's replica streaming %+v, run %+v", rep.Path, node, rep.Runs[0])
		}
		if !rep.Digests || rep.FullSyncs != 0 {
			t.Errorf("%s: digests equal %v, %d full syncs; want equal and 0\nprogress:\n%s", rep.Path, rep.Digests, rep.FullSyncs, progress.String())
		}
		if rep.SteadyMoves != 0 || rep.AfterMoves != 0 {
			t.Errorf("%s: spurious moves %d before the kill, %d after the move; want none\nprogress:\n%s", rep.Path, rep.SteadyMoves, rep.AfterMoves, progress.String())
		}
	}
	var out bytes.Buffer
	if err := reps.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"relay failover: 1 runs", "static (--upstream lists)", "etcd (topology.Mover", "spurious moves"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report text lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())
	checkNothingLeft(t, cfg.Dir)
}
