package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestLoadingReplicaIsKept: a real replica that takes longer to load its
// RDB than repl-timeout, and reads nothing meanwhile while the stream piles
// up, is kept as Redis keeps it (it sends newlines while loading) and
// continues without a reconnect; a replica that goes silent (SIGSTOP)
// beyond repl-timeout is dropped, and comes back with a partial resync.
func TestLoadingReplicaIsKept(t *testing.T) {
	ctx := context.Background()
	// The relay's upstream link must not look silent with a 3 s timeout.
	master := redistest.Start(t, "--repl-ping-replica-period", "1")
	if err := master.Client().Do(ctx, "DEBUG", "POPULATE", 40000, "key", 10).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.ReplTimeout = 3 * time.Second
	r := startRelay(t, cfg)
	// The replica loads each key 100 µs (4 s or more for the set, longer
	// than repl-timeout), from disk, saying it is alive every second.
	rep := redistest.Start(t, "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024", "--repl-diskless-load", "disabled")
	replicaOf(t, rep, r.Port)
	redistest.WaitFor(t, 30*time.Second, func() error {
		if n, err := rep.InfoInt(ctx, "persistence", "loading"); err != nil || n != 1 {
			return errors.New("replica not loading yet")
		}
		return nil
	})
	// 24 MiB while it loads: more than the socket buffers hold, so the
	// relay's writes to it block for longer than repl-timeout.
	big := strings.Repeat("x", 1<<20)
	for i := range 24 {
		if err := master.Client().Set(ctx, fmt.Sprintf("big:%d", i), big, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitInSync(t, syncTimeout, master, rep)
	if r.logLine("replica link closed") != "" {
		t.Fatal("the loading replica's link was closed")
	}
	expectEq(t, "relay full syncs", r.InfoInt(t, "stats", "sync_full"), 1)
	expectEq(t, "relay partial syncs", r.InfoInt(t, "stats", "sync_partial_ok"), 0)

	// Silent beyond repl-timeout: dropped, as Redis drops it.
	rep.Pause()
	redistest.WaitFor(t, 20*time.Second, func() error {
		if r.logLine("replica link closed", "no ACK from replica") == "" {
			return errors.New("the stopped replica is still attached")
		}
		return nil
	})
	rep.Resume()
	load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 3})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay full syncs", r.InfoInt(t, "stats", "sync_full"), 1)
}
