package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestLagAfterFullSyncAtLowerOffset: a relay that full-syncs from another
// master, whose history stands at lower offsets than the one it held (a
// master restarted without persistence, or another one), times its
// replicas' lag by the new history's bytes, not by the old history's that
// stood at the same offsets. The relay's first master takes writes that
// are then at least old seconds old; under a steady writer on the second
// master a healthy replica's lag_ms (acks once a second) stays well below
// that.
func TestLagAfterFullSyncAtLowerOffset(t *testing.T) {
	const old = 4 * time.Second
	first, second := redistest.Start(t), redistest.Start(t)
	r := startRelay(t, newRelayConfig(t, upstreamOf(first)))
	load(t, first, redistest.LoadOptions{SmallKeys: 20_000, Seed: 1})
	firstEnd := masterInt(t, first, "replication", "master_repl_offset")
	redistest.WaitFor(t, 30*time.Second, func() error {
		if got := r.relay().Status().GetStoredOffset(); got != firstEnd {
			return fmt.Errorf("relay stored %d of the first master's %d", got, firstEnd)
		}
		return nil
	})
	firstDone := time.Now()
	r.setUpstream(t, upstreamOf(second))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, second, rep)
	if off := masterInt(t, second, "replication", "master_repl_offset"); off >= firstEnd/2 {
		t.Fatalf("the second master is at offset %d, not well below the first's %d", off, firstEnd)
	}

	// A steady, bounded writer on the second master.
	defer writeSteadily(second, func(i int) string { return fmt.Sprintf("lag:%d", i%100) })()

	// Samples where the replica has not acked everything yet (lag_ms is
	// timed only then), once the first master's bytes are old.
	var samples int
	var worst time.Duration
	redistest.WaitFor(t, 30*time.Second, func() error {
		if time.Since(firstDone) < old {
			return fmt.Errorf("the first master's bytes are only %v old", time.Since(firstDone))
		}
		for _, c := range r.relay().Status().GetChildren() {
			if c.GetLagBytes() > 0 {
				samples++
				worst = max(worst, time.Duration(c.GetLagMs())*time.Millisecond)
			}
		}
		if samples < 10 {
			return fmt.Errorf("%d samples of a lagging replica, want 10", samples)
		}
		return nil
	})
	t.Logf("%d samples, worst lag %v; the first master's bytes were %v old", samples, worst, time.Since(firstDone))
	if worst >= old-time.Second {
		t.Errorf("the replica's lag_ms reached %v, want below %v: timed by the first master's bytes", worst, old-time.Second)
	}
}

// writeSteadily starts a steady, bounded writer on srv: a SET of key(i) every
// 10 ms, at most 6000 of them and for at most a minute; it stops at the
// first error. The returned func stops it and waits for it to end.
func writeSteadily(srv *redistest.Server, key func(i int) string) (stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 6000; i++ {
			if srv.Client().Set(ctx, key(i), i, 0).Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}
