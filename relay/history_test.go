package relay_test

import (
	"context"
	"strings"
	"testing"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestUpstreamPromotedContinuesWithNewID: the relay follows a replica that
// is then promoted. The promoted server answers the relay's PSYNC with
// +CONTINUE <newid>; the relay shifts its IDs (replid2), drops its Redis
// replica, which comes back through the replid2 rule with a partial resync,
// and writes to the new master flow through.
func TestUpstreamPromotedContinuesWithNewID(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	backup := redistest.Start(t, "--repl-backlog-size", "64mb")
	replicaOf(t, backup, master.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	redistest.WaitInSync(t, syncTimeout, master, backup)

	r := startRelay(t, newRelayConfig(t, upstreamOf(backup)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, backup, rep)
	oldID := r.Info(t, "replication")["master_replid"]

	if err := backup.ReplicaOfNoOne(ctx); err != nil {
		t.Fatal(err)
	}
	load(t, backup, redistest.LoadOptions{SmallKeys: 500, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, backup, rep)

	info := r.Info(t, "replication")
	newInfo, _ := backup.Info(ctx, "replication")
	expectEq(t, "relay master_replid", info["master_replid"], newInfo["master_replid"])
	expectEq(t, "relay master_replid2", info["master_replid2"], oldID)
	expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	if n := r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"); n < 1 {
		t.Errorf("relay arbor_upstream_partial_syncs: got %d, want at least 1", n)
	}
	expectEq(t, "relay sync_full (the replica came back with a partial resync)", r.InfoInt(t, "stats", "sync_full"), 1)
	if n := r.InfoInt(t, "stats", "sync_partial_ok"); n < 1 {
		t.Errorf("relay sync_partial_ok: got %d, want at least 1", n)
	}
	repInfo, _ := rep.Info(ctx, "replication")
	expectEq(t, "replica master_replid", repInfo["master_replid"], newInfo["master_replid"])
	expectEq(t, "backup sync_full (the relay never forced a full sync)", masterInt(t, backup, "stats", "sync_full"), 1)
}

// TestUpstreamFullResyncMidLife: the relay's upstream is moved under another
// master and gets a new history; the relay's PSYNC is answered with
// FULLRESYNC, it replaces its store and its replica follows with a full
// sync of the new data.
func TestUpstreamFullResyncMidLife(t *testing.T) {
	ctx := context.Background()
	upstream := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, upstream, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	r := startRelay(t, newRelayConfig(t, upstreamOf(upstream)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, upstream, rep)

	other := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, other, redistest.LoadOptions{SmallKeys: 700, Seed: 9})
	replicaOf(t, upstream, other.Port)
	load(t, other, redistest.LoadOptions{SmallKeys: 200, Seed: 10})
	redistest.WaitInSync(t, syncTimeout, other, upstream, rep)

	expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 2)
	expectEq(t, "relay sync_full", r.InfoInt(t, "stats", "sync_full"), 2)
	oinfo, _ := other.Info(ctx, "replication")
	expectEq(t, "relay master_replid", r.Info(t, "replication")["master_replid"], oinfo["master_replid"])
}

// TestTreeFollowsPromotionAndNewHistory: below a relay whose upstream is
// promoted (+CONTINUE <newid>), the child relay switches IDs at the exact
// offset (ReplidSwitch) and its replica resumes with a partial resync; when
// the upstream later gets a new history (FULLRESYNC), the child relay is
// told its history is unknown and takes a full sync.
func TestTreeFollowsPromotionAndNewHistory(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	backup := redistest.Start(t, "--repl-backlog-size", "64mb")
	replicaOf(t, backup, master.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	redistest.WaitInSync(t, syncTimeout, master, backup)

	a := treeRelay(t, "relay-a", "A", upstreamOf(backup))
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	oldID := b.status(t).GetReplid()

	if err := backup.ReplicaOfNoOne(ctx); err != nil {
		t.Fatal(err)
	}
	load(t, backup, redistest.LoadOptions{SmallKeys: 500, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, backup, rep)
	newInfo, _ := backup.Info(ctx, "replication")
	st := b.status(t)
	expectEq(t, "relay-b replid", st.GetReplid(), newInfo["master_replid"])
	expectEq(t, "relay-b replid2", st.GetReplid2(), oldID)
	expectEq(t, "relay-b full syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay-b's replica full syncs", b.InfoInt(t, "stats", "sync_full"), 1)
	if !strings.Contains(b.logBuf.String(), "parent switched replication id") {
		t.Error("relay-b did not get the switch as a ReplidSwitch frame")
	}

	// A new history upstream: relay-a full-syncs, relay-b follows.
	other := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, other, redistest.LoadOptions{SmallKeys: 700, Seed: 9})
	replicaOf(t, backup, other.Port)
	redistest.WaitInSync(t, syncTimeout, other, backup, rep)
	expectEq(t, "relay-b full syncs after the new history", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 2)
	if !strings.Contains(b.logBuf.String(), "does not know this relay's history") {
		t.Error("relay-b did not log the unknown-history refusal")
	}
}
