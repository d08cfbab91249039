package relay_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// treeRelay starts a relay with a gRPC service; upstream is redis://… or
// arbor://….
func treeRelay(t *testing.T, id, site, upstream string, mod ...func(*relay.Config)) *testRelay {
	t.Helper()
	cfg := newRelayConfig(t, upstream)
	cfg.ID, cfg.Site = id, site
	cfg.GRPCAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	cfg.TLS.Plaintext = true
	for _, m := range mod {
		m(&cfg)
	}
	return startRelay(t, cfg)
}

func (tr *testRelay) arborURL() string { return "arbor://" + tr.cfg.GRPCAddr }

// status calls the Status RPC.
func (tr *testRelay) status(t *testing.T) *arborv1.RelayStatus {
	t.Helper()
	conn, err := grpc.NewClient(tr.cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := arborv1.NewRelayServiceClient(conn).Status(ctx, &arborv1.StatusRequest{})
	if err != nil {
		t.Fatalf("Status of %s: %v", tr.cfg.ID, err)
	}
	return resp.GetRelay()
}

// threeSites is the seed shape: relay-a next to the master, relay-b and
// relay-c following it over gRPC, two stock replicas per site.
type threeSites struct {
	master         *redistest.Server
	a, b, c        *testRelay
	replicas       []*redistest.Server
	replicasBySite map[string][]*redistest.Server
}

func startThreeSites(t *testing.T, mod ...func(*relay.Config)) *threeSites {
	t.Helper()
	ts := &threeSites{master: redistest.Start(t, "--repl-backlog-size", "64mb"), replicasBySite: map[string][]*redistest.Server{}}
	load(t, ts.master, redistest.LoadOptions{SmallKeys: 3000, Seed: 1})
	ts.a = treeRelay(t, "relay-a", "A", upstreamOf(ts.master), mod...)
	ts.b = treeRelay(t, "relay-b", "B", ts.a.arborURL(), mod...)
	ts.c = treeRelay(t, "relay-c", "C", ts.a.arborURL(), mod...)
	for _, r := range []*testRelay{ts.a, ts.b, ts.c} {
		for range 2 {
			rep := redistest.Start(t)
			replicaOf(t, rep, r.Port)
			ts.replicas = append(ts.replicas, rep)
			ts.replicasBySite[r.cfg.Site] = append(ts.replicasBySite[r.cfg.Site], rep)
		}
	}
	redistest.WaitInSync(t, syncTimeout, ts.master, ts.replicas...)
	return ts
}

// TestTreeThreeSites: the seed's three sites with mixed load; every relay
// killed (stopped) and restarted, and relay-c re-parented from relay-a to
// relay-b under load. Full syncs: exactly one per relay, at the start.
func TestTreeThreeSites(t *testing.T) {
	ts := startThreeSites(t)
	for _, r := range []*testRelay{ts.a, ts.b, ts.c} {
		expectEq(t, r.cfg.ID+" arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	}
	expectEq(t, "relay-a sync_full served (relays and replicas)", r64(ts.a.status(t).GetCounters().GetFullSyncsServed()), 4)

	// Restart each relay in turn, with writes while it is down.
	for _, r := range []*testRelay{ts.b, ts.a, ts.c} {
		r.Stop()
		load(t, ts.master, redistest.LoadOptions{SmallKeys: 500, Seed: 10})
		r.start()
		redistest.WaitInSync(t, syncTimeout, ts.master, ts.replicas...)
		expectEq(t, r.cfg.ID+" full syncs after its restart", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 0)
		expectEq(t, r.cfg.ID+" partial syncs after its restart", r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 1)
		expectEq(t, r.cfg.ID+" replicas resumed (no full sync)", r.InfoInt(t, "stats", "sync_full"), 0)
	}
	expectEq(t, "master sync_full", masterInt(t, ts.master, "stats", "sync_full"), 1)
	expectEq(t, "relay-b full syncs (relay-a restarted under it)", ts.b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 0)

	// Both child relays keep up, so relay-a compresses the stream once for
	// the two of them (its fanout) rather than once per link.
	seed := int64(20)
	redistest.WaitFor(t, syncTimeout, func() error {
		load(t, ts.master, redistest.LoadOptions{SmallKeys: 200, Seed: seed})
		seed++
		for _, c := range ts.a.status(t).GetChildren() {
			if c.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY && c.GetBytes().GetSharedRawBytes() == 0 {
				return fmt.Errorf("%s: no stream bytes from shared frames yet (raw %d)", c.GetId(), c.GetBytes().GetRawBytes())
			}
		}
		return nil
	})
	redistest.WaitInSync(t, syncTimeout, ts.master, ts.replicas...)

	// Re-parent relay-c to relay-b under load.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	loaded := make(chan error, 1)
	go func() {
		_, err := redistest.WriteLoad(ctx, ts.master.Client(), 60000)
		loaded <- err
	}()
	partial := ts.c.InfoInt(t, "stats", "arbor_upstream_partial_syncs")
	ts.c.setUpstream(t, ts.b.arborURL())
	if err := <-loaded; err != nil {
		t.Fatalf("write load: %v", err)
	}
	redistest.WaitInSync(t, syncTimeout, ts.master, ts.replicas...)
	expectEq(t, "relay-c full syncs after re-parenting", ts.c.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 0)
	expectEq(t, "relay-c partial syncs after re-parenting", ts.c.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), partial+1)
	if up := ts.c.status(t).GetUpstream(); up != ts.b.arborURL() {
		t.Errorf("relay-c upstream %q, want %q", up, ts.b.arborURL())
	}

	// Acks flow up: the root sees relay-b, relay-c below it and every site.
	redistest.WaitFor(t, 10*time.Second, func() error {
		st := ts.a.status(t)
		sites := map[string]*arborv1.SiteAck{}
		for _, s := range st.GetSiteAcks() {
			sites[s.GetSite()] = s
		}
		for _, s := range []string{"A", "B", "C"} {
			if sa := sites[s]; sa == nil || sa.GetAckedOffset() != st.GetStoredOffset() {
				return fmt.Errorf("site %s ack %v, want %d", s, sa, st.GetStoredOffset())
			}
		}
		if sites["A"].GetBytesAtRisk() != 0 {
			return fmt.Errorf("site A bytes at risk %d with every site in sync", sites["A"].GetBytesAtRisk())
		}
		return nil
	})
	st := ts.a.status(t)
	var kids []string
	for _, c := range st.GetChildren() {
		if c.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY {
			kids = append(kids, c.GetId())
		}
	}
	if strings.Join(kids, ",") != "relay-b" {
		t.Errorf("relay-a's child relays %v, want [relay-b] (relay-c moved under relay-b)", kids)
	}
	if c := st.GetCompression(); c.GetWireBytes() == 0 || c.GetRawBytes() < 2*c.GetWireBytes() {
		t.Errorf("zstd on relay links: raw %d, wire %d bytes; want a ratio above 2", c.GetRawBytes(), c.GetWireBytes())
	}
}

func r64(v uint64) int64 { return int64(v) }

func (tr *testRelay) setUpstream(t *testing.T, up string) {
	t.Helper()
	tr.cfg.Upstream = up
	if err := tr.relay().SetUpstream(up); err != nil {
		t.Fatalf("SetUpstream(%s): %v", up, err)
	}
}

// TestChildBacklogStaysBounded: a child relay's backlog is pinned by the
// snapshot it got from its parent; it fetches the parent's fresher snapshot
// (snapshot_only) so its backlog stays bounded too, and a late replica of
// the child still converges.
func TestChildBacklogStaysBounded(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	small := func(c *relay.Config) { c.BacklogSize = 1 << 20 }
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), small)
	b := treeRelay(t, "relay-b", "B", a.arborURL(), small)
	early := redistest.Start(t)
	replicaOf(t, early, b.Port)
	for seed := int64(1); seed <= 5; seed++ {
		load(t, master, redistest.LoadOptions{SmallKeys: 20000, Seed: seed})
	}
	redistest.WaitFor(t, syncTimeout, func() error {
		st := b.status(t)
		if st.GetSnapshot().GetOffset() == 0 || st.GetBacklog().GetSizeBytes() > 3<<20 {
			return fmt.Errorf("relay-b snapshot offset %d, backlog %d bytes: want a refreshed snapshot and at most 3 MiB",
				st.GetSnapshot().GetOffset(), st.GetBacklog().GetSizeBytes())
		}
		return nil
	})
	late := redistest.Start(t)
	replicaOf(t, late, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, early, late)
	expectEq(t, "relay-b arbor_upstream_full_syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
}

// TestDepthAndFanOut: a root with three child relays, one of which heads a
// chain three relays deep; replicas at the leaves converge and the root
// sees every relay of the tree in its acks.
func TestDepthAndFanOut(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 1})
	root := treeRelay(t, "relay-a", "A", upstreamOf(master))
	b1 := treeRelay(t, "relay-b1", "B", root.arborURL())
	b2 := treeRelay(t, "relay-b2", "B", root.arborURL(), func(c *relay.Config) { c.Compression = "s2" })
	b3 := treeRelay(t, "relay-b3", "B", root.arborURL())
	c := treeRelay(t, "relay-c", "C", b1.arborURL())
	d := treeRelay(t, "relay-d", "D", c.arborURL())
	var reps []*redistest.Server
	for _, r := range []*testRelay{b2, b3, d} {
		rep := redistest.Start(t)
		replicaOf(t, rep, r.Port)
		reps = append(reps, rep)
	}
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, reps...)
	redistest.WaitFor(t, 10*time.Second, func() error {
		seen := map[string]bool{}
		for _, s := range root.status(t).GetSiteAcks() {
			seen[s.GetSite()] = true
		}
		if !seen["A"] || !seen["B"] || !seen["C"] || !seen["D"] {
			return fmt.Errorf("root's site acks cover %v, want A, B, C and D", seen)
		}
		return nil
	})
	for _, r := range []*testRelay{b1, b2, b3, c, d} {
		expectEq(t, r.cfg.ID+" arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	}
	// The chain below relay-b1 knows its ancestry: relay-d cannot be made
	// relay-b1's parent.
	b1.setUpstream(t, d.arborURL())
	redistest.WaitFor(t, 10*time.Second, func() error {
		if e := b1.status(t).GetLastError(); !strings.Contains(e, "CYCLE") {
			return fmt.Errorf("relay-b1 last error %q, want a CYCLE refusal", e)
		}
		return nil
	})
	b1.setUpstream(t, root.arborURL())
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 3})
	redistest.WaitInSync(t, syncTimeout, master, reps...)
}

// TestChildWaitsForParentData: a child relay that subscribes while its
// parent has no data yet (the master delays the parent's first RDB) waits
// on the stream for it, instead of being refused into its reconnect
// backoff, and a replica below it converges.
func TestChildWaitsForParentData(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "2")
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 1})
	// relay-a waits for its data far longer than the master's 2 s delay
	// can last, even on a busy machine.
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.FutureOffsetWait = time.Minute })
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	if !strings.Contains(a.logBuf.String(), "full sync to child relay") {
		t.Error("relay-a's log shows no full sync to relay-b")
	}
	if logs := b.logBuf.String(); strings.Contains(logs, "holds no data yet") {
		t.Errorf("relay-b was refused while relay-a waited for its first RDB; want it to wait:\n%s", logs)
	}
	expectEq(t, "relay-b arbor_upstream_full_syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
}

// TestCompressionLevelsOnLinks: each zstd level a relay may compress its
// child links at (--compression-level) carries the full sync and the
// stream through a chain, also across a child's restart mid-stream (its
// link resumes on a new compression stream at the offset it stored).
func TestCompressionLevelsOnLinks(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 1})
	level := func(l string) func(*relay.Config) { return func(c *relay.Config) { c.CompressionLevel = l } }
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), level("best"))
	b := treeRelay(t, "relay-b", "B", a.arborURL(), level("fastest"))
	c := treeRelay(t, "relay-c", "C", b.arborURL(), level("better"))
	d := treeRelay(t, "relay-d", "D", c.arborURL())
	rep := redistest.Start(t)
	replicaOf(t, rep, d.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)

	c.Stop()
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 3})
	c.start()
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 4})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay-c partial syncs after its restart", c.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 1)
	for _, r := range []*testRelay{a, b, c} {
		// The load's values compress about 2x even at the fastest level.
		if z := r.status(t).GetCompression(); z.GetWireBytes() == 0 || 2*z.GetRawBytes() < 3*z.GetWireBytes() {
			t.Errorf("%s at level %s: raw %d, wire %d bytes; want a ratio above 1.5", r.cfg.ID, r.cfg.CompressionLevel, z.GetRawBytes(), z.GetWireBytes())
		}
	}
}
