package relay_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestSnapshotRefreshIgnoresAnnouncedReplica: an address a replica
// announces is never a snapshot source. A real redis-server replicates
// from the relay, in sync, and announces (replica-announce-port) the port
// of another one: a writable replica of the master holding planted keys,
// which would serve an RDB with the master's replication ID and a fitting
// offset. With no snapshot source configured, the relay refreshes its
// snapshot from the master; it never connects to the planted server, and
// a replica that full-syncs from the relay afterwards has the master's
// data.
func TestSnapshotRefreshIgnoresAnnouncedReplica(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	planted := redistest.Start(t, "--replica-read-only", "no")
	replicaOf(t, planted, master.Port)
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.BacklogSize = 1 << 20
	r := startRelay(t, cfg)
	announcer := redistest.Start(t, "--replica-announce-port", strconv.Itoa(planted.Port))
	replicaOf(t, announcer, r.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	redistest.WaitInSync(t, syncTimeout, master, planted, announcer)
	for i := range 50 {
		if err := planted.Client().Set(ctx, "planted:"+strconv.Itoa(i), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := strconv.ParseInt(r.Info(t, "arbor")["arbor_snapshot_offset"], 10, 64)
	outgrowBacklog(t, master, r, first, 2)
	expectEq(t, "planted server's sync_full (the relay asked it for an RDB)", masterInt(t, planted, "stats", "sync_full"), 0)

	late := redistest.Start(t)
	replicaOf(t, late, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, late, announcer)
	if n, err := late.Client().Exists(ctx, "planted:0").Result(); err != nil || n != 0 {
		t.Fatalf("a replica of the relay has the planted key (exists %d, %v)", n, err)
	}
}
