package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestUpstreamCoalesceDelivers: with --upstream-coalesce the relay still
// takes every byte of a master's stream, however little comes: single
// writes far under the 32 KiB mark reach the relay's replica one by one
// (none waits for more to come), a master's REPLCONF GETACK is answered
// (WAIT returns), and a burst arrives whole.
func TestUpstreamCoalesceDelivers(t *testing.T) {
	master := redistest.Start(t)
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.UpstreamCoalesce = 100 * time.Millisecond
	r := startRelay(t, cfg)
	replica := redistest.Start(t)
	replicaOf(t, replica, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, replica)

	ctx := context.Background()
	for i := range 10 {
		if err := master.Client().Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		redistest.WaitInSync(t, syncTimeout, master, replica)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := master.Client().Set(ctx, "w", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := master.Client().Do(wctx, "WAIT", 1, 20000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 20000 through a coalescing relay: %d, %v; want 1", n, err)
	}
	load(t, master, redistest.LoadOptions{SmallKeys: 5000, Seed: 1})
	redistest.WaitInSync(t, syncTimeout, master, replica)
}
