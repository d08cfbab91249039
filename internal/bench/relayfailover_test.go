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

// TestRelayFailoverSmoke runs the relay failover benchmark once, the
// relays' binary given as a relative path (as --relay-bin bin/arbor; the
// processes run in their own directories): the children stream from a2
// again, the replicas end equal to the master without a full sync, and
// nothing is left behind.
func TestRelayFailoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds arbor, runs three redis-servers and four relays")
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
	cfg.Runs, cfg.RelayBin, cfg.Dir = 1, rel, t.TempDir()
	var progress bytes.Buffer
	cfg.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunRelayFailover(ctx, cfg)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Runs) != 1 || rep.Runs[0].StreamingMs <= 0 || rep.Streaming.Count != 1 || rep.Stall.Count != 1 {
		t.Errorf("report: %+v", rep)
	}
	if !rep.Digests || rep.FullSyncs != 0 {
		t.Errorf("digests equal %v, %d full syncs; want equal and 0\nprogress:\n%s", rep.Digests, rep.FullSyncs, progress.String())
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "relay failover: 1 runs") || !strings.Contains(out.String(), "digests equal") {
		t.Errorf("report text:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
	checkNothingLeft(t, cfg.Dir)
}
