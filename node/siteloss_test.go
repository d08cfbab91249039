package node

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// drFabric is the three-site shape of failover-notes (DR): a 3-member etcd
// with one member per site; in site A the master am, the backup ab and
// the root relay relay-a; in B the backup bm under relay-b; in C the
// replica cr under relay-c. relay-b and relay-c are children of relay-a.
// Every relay runs with --ack-policy remote. Each site's agents and relay
// talk to their site's etcd member only.
type drFabric struct {
	t       *testing.T
	etcd    *etcdtest.Cluster
	cli     *clientv3.Client // the test's own, on the members of B and C
	cluster string
	ctx     context.Context
	log     *slog.Logger
	top     *topology.Topology
	redis   map[string]*redistest.Server   // by node id
	relays  map[string]relay.Config        // by relay id
	running map[string]func() *relay.Relay // by relay id; the relay last started
	stops   map[string]func()              // by relay or node id: stops what runs
	clients map[string]*clientv3.Client    // by site
}

var drSites = map[string]int{"A": 0, "B": 1, "C": 2} // site → etcd member

func newDRFabric(t *testing.T) *drFabric {
	t.Helper()
	f := &drFabric{t: t, etcd: etcdtest.Start(t, 3), cluster: "siteloss",
		redis: map[string]*redistest.Server{}, relays: map[string]relay.Config{}, running: map[string]func() *relay.Relay{},
		stops: map[string]func(){}, clients: map[string]*clientv3.Client{}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx
	f.log = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.cli = f.etcd.ClientOf(t, f.etcd.Members[1].ClientURL, f.etcd.Members[2].ClientURL)
	for site, m := range drSites {
		f.clients[site] = f.etcd.ClientOf(t, f.etcd.Members[m].ClientURL)
	}

	top := topology.New()
	for site := range drSites {
		top.Sites[site] = topology.Site{Name: site}
	}
	addRelay := func(id, site, upstream string) {
		cfg := testRelayConfig(t, id, site, f.log)
		cfg.AckPolicy = "remote"
		cfg.Fsync = "always" // a WAIT returns once a flush reached another site, not on the next everysec tick
		f.relays[id] = cfg
		top.Relays[id] = topology.RelaySpec{ID: id, Site: site, RedisAddr: cfg.RedisAddr, GRPCAddr: cfg.GRPCAddr, Upstream: upstream}
	}
	addRelay("relay-a", "A", topology.UpstreamMaster)
	addRelay("relay-b", "B", "relay-a")
	addRelay("relay-c", "C", "relay-a")
	addNode := func(id, site, follow string, prio int32) {
		s := redistest.Start(t, "--repl-backlog-size", "16mb")
		f.redis[id] = s
		top.Nodes[id] = topology.NodeSpec{ID: id, Site: site, RedisAddr: s.Addr, Candidate: prio > 0, Priority: prio, Follow: follow}
	}
	addNode("am", "A", "relay-a", 10)
	addNode("ab", "A", "relay-a", 5)
	addNode("bm", "B", "relay-b", 5)
	addNode("cr", "C", "relay-c", 0)
	top.Master = "am"
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}
	f.top = top
	return f
}

// startRelay runs relay id under etcd with its site's client until the
// test ends or f.stops[id] is called.
func (f *drFabric) startRelay(id string) {
	cfg := f.relays[id]
	f.running[id], f.stops[id] = runRelay(f.t, cfg, f.clients[cfg.Site], f.cluster)
}

// startAgent runs node id's agent (fast profile) with its site's client.
func (f *drFabric) startAgent(id string) {
	t := f.t
	spec := f.top.Nodes[id]
	a, err := New(electAgentConfig(id, spec.Site, f.cluster, f.redis[id].Addr, f.log), f.clients[spec.Site])
	if err != nil {
		t.Fatal(err)
	}
	f.stops[id] = runUntilStopped(t, id, a)
}

// state reads the election state (an error while etcd elects a leader
// is for the caller's poll to retry).
func (f *drFabric) state() (election.State, error) {
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
	defer cancel()
	return election.ReadState(ctx, f.cli, f.cluster)
}

// counters returns the sync counters of the relay running as id.
func (f *drFabric) counters(id string) *arborv1.SyncCounters {
	r := f.running[id]()
	if r == nil {
		f.t.Fatalf("relay %s not started", id)
	}
	return r.Status().GetCounters()
}

// boot starts every relay and agent, waits for am's bootstrap election
// and for the other nodes to stream, and loads data on am until all are in
// sync. It returns the bootstrap state.
func (f *drFabric) boot(load redistest.LoadOptions) election.State {
	t, ctx := f.t, f.ctx
	t.Helper()
	for _, id := range []string{"relay-a", "relay-b", "relay-c"} {
		f.startRelay(id)
	}
	for _, id := range []string{"am", "ab", "bm", "cr"} {
		f.startAgent(id)
	}
	var boot election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		var err error
		if boot, err = f.state(); err != nil {
			return err
		}
		if !boot.Live() || boot.Master.Node != "am" {
			return fmt.Errorf("state %+v: want am elected at bootstrap", boot)
		}
		return nil
	})
	am, ab, bm, cr := f.redis["am"], f.redis["ab"], f.redis["bm"], f.redis["cr"]
	waitLinkUp(t, ctx, ab, bm, cr)
	if err := redistest.LoadAllTypes(ctx, am.Client(), load); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 30*time.Second, am, ab, bm, cr)
	return boot
}

// loseSiteA makes site A vanish: its Redis servers are killed, its agents
// and relay stop, its etcd member is killed.
func (f *drFabric) loseSiteA() {
	f.redis["am"].Kill()
	f.redis["ab"].Kill()
	f.stops["relay-a"]()
	f.stops["am"]()
	f.stops["ab"]()
	f.etcd.Members[drSites["A"]].Kill()
}

// waitBMElected waits for bm's record, live, at an epoch after boot's and
// returns the state.
func (f *drFabric) waitBMElected(boot election.State) election.State {
	f.t.Helper()
	var after election.State
	redistest.WaitFor(f.t, 60*time.Second, func() error {
		var err error
		if after, err = f.state(); err != nil {
			return err
		}
		if after.Master == nil || after.Master.Node != "bm" || after.Master.Epoch <= boot.Master.Epoch || !after.Live() {
			return fmt.Errorf("record %+v: want bm live at an epoch after %d", after.Master, boot.Master.Epoch)
		}
		return nil
	})
	return after
}

// stepNote is the note of h's step name ("" if it has none).
func stepNote(h election.History, name string) string {
	for _, s := range h.Steps {
		if s.Name == name {
			return s.Note
		}
	}
	return ""
}

// waitWriter writes w:<i> to s (at most 100 000 writes, one every 2 ms)
// and records a write as acknowledged only once WAIT 1 says a replica has
// it: with --ack-policy remote on the root relay, that a relay of another
// site stored it.
type waitWriter struct {
	stop  context.CancelFunc
	done  chan struct{}
	acked []string // owned by the goroutine until done is closed
	tried int
	count atomic.Int64 // len(acked), for any goroutine
}

func startWaitWriter(t *testing.T, ctx context.Context, s *redistest.Server) *waitWriter {
	t.Helper()
	wctx, stop := context.WithCancel(ctx)
	w := &waitWriter{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		c := s.Client()
		for i := 0; wctx.Err() == nil && i < 100_000; i++ {
			k := "w:" + strconv.Itoa(i)
			w.tried++
			cctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			err := c.Set(cctx, k, i, 0).Err()
			var n int64
			if err == nil {
				n, err = c.Do(cctx, "WAIT", 1, 900).Int64()
			}
			cancel()
			if err == nil && n >= 1 {
				w.acked = append(w.acked, k)
				w.count.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stop(); <-w.done })
	return w
}

// missingOn returns the acknowledged writes s does not hold (or that
// could not be read), once the writer is stopped and done.
func (w *waitWriter) missingOn(ctx context.Context, s *redistest.Server) []string {
	var lost []string
	for _, k := range w.acked {
		if n, err := s.Client().Exists(ctx, k).Result(); err != nil || n != 1 {
			lost = append(lost, k)
		}
	}
	return lost
}

// waitKeys waits until key exists on s.
func waitKeys(t *testing.T, ctx context.Context, s *redistest.Server, key string) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error {
		n, err := s.Client().Exists(ctx, key).Result()
		if err != nil || n != 1 {
			return fmt.Errorf("%s not written yet (%v)", key, err)
		}
		return nil
	})
}

// TestFailoverSiteLoss: issue #9 items 5 and 6. Site A (the master, its
// backup, its root relay and its etcd member) vanishes under a writer that
// counts a write only when WAIT 1 acknowledges it (--ack-policy remote:
// a relay of another site has it). etcd keeps a quorum in B and C. The
// backup bm in B is promoted after catching up from the most advanced
// surviving relay; that relay becomes a root and the other child of
// relay-a follows it, in the one guarded transaction that publishes the
// new master; the history says why. No WAIT-acknowledged write is lost,
// no survivor full-syncs, there is one writable master. Then A comes back:
// its nodes rejoin as replicas (never a second master) and every DEBUG
// DIGEST is equal.
func TestFailoverSiteLoss(t *testing.T) {
	const minAcked = 50
	f := newDRFabric(t)
	ctx := f.ctx
	boot := f.boot(redistest.LoadOptions{SmallKeys: 500, Seed: 5})
	am, ab, bm, cr := f.redis["am"], f.redis["ab"], f.redis["bm"], f.redis["cr"]

	w := startWaitWriter(t, ctx, am)
	redistest.WaitFor(t, 60*time.Second, func() error {
		if n := w.count.Load(); n < minAcked {
			return fmt.Errorf("%d writes WAIT-acknowledged, want %d before the loss", n, minAcked)
		}
		return nil
	})
	before := map[string]*arborv1.SyncCounters{"relay-b": f.counters("relay-b"), "relay-c": f.counters("relay-c")}

	t0 := time.Now()
	f.loseSiteA()
	after := f.waitBMElected(boot)
	elected := time.Since(t0)
	w.stop()
	<-w.done

	// The topology was rewritten in the publishing transaction: the
	// anchor is a root, the other child of relay-a follows it.
	top, _, err := topology.Load(ctx, f.cli, f.cluster)
	if err != nil {
		t.Fatal(err)
	}
	anchor, other := "relay-b", "relay-c"
	if top.Relays["relay-c"].Upstream == topology.UpstreamMaster {
		anchor, other = other, anchor
	}
	if top.Master != "bm" || top.Relays[anchor].Upstream != topology.UpstreamMaster || top.Relays[other].Upstream != anchor ||
		top.Relays["relay-a"].Upstream != topology.UpstreamMaster {
		t.Fatalf("topology after the site loss: master %s, relay-a <- %s, relay-b <- %s, relay-c <- %s; want bm, master, and one of relay-b/relay-c a root with the other under it",
			top.Master, top.Relays["relay-a"].Upstream, top.Relays["relay-b"].Upstream, top.Relays["relay-c"].Upstream)
	}
	h := waitNewestHistory(t, ctx, f.cli, f.cluster, "bm")
	if h.Previous != "am" {
		t.Fatalf("history %+v: want bm taking over from am", h)
	}
	if why := stepNote(h, "site-loss"); !strings.Contains(why, "site A lost") || !strings.Contains(h.Reason, "loss of site A") {
		t.Fatalf("history %+v: want the site loss recorded in the reason and a site-loss step", h)
	}
	t.Logf("site A lost: bm elected after %v; anchor %s; %s; steps %+v", elected, anchor, h.Reason, h.Steps)

	// Every WAIT-acknowledged write is on the new master.
	if lost := w.missingOn(ctx, bm); len(lost) > 0 {
		t.Errorf("%d of %d WAIT-acknowledged writes are not on bm: %v", len(lost), len(w.acked), lost[:min(len(lost), 10)])
	}
	if len(w.acked) < minAcked {
		t.Errorf("only %d writes WAIT-acknowledged of %d: the writer did not test much", len(w.acked), w.tried)
	}
	t.Logf("writer: %d WAIT-acknowledged of %d tried, all on bm", len(w.acked), w.tried)

	// The new master takes writes and the surviving tree streams them.
	redistest.WaitFor(t, 30*time.Second, func() error { return bm.Client().Set(ctx, "after-site-loss", "1", 0).Err() })
	waitKeys(t, ctx, cr, "after-site-loss")
	redistest.WaitInSync(t, 30*time.Second, bm, cr)
	for id, b := range before {
		now := f.counters(id)
		if now.GetFullSyncsServed() != b.GetFullSyncsServed() || now.GetUpstreamFullSyncs() != b.GetUpstreamFullSyncs() {
			t.Errorf("%s full syncs: served %d -> %d, upstream %d -> %d; want no new ones", id,
				b.GetFullSyncsServed(), now.GetFullSyncsServed(), b.GetUpstreamFullSyncs(), now.GetUpstreamFullSyncs())
		}
	}
	if stats, err := bm.Info(ctx, "stats"); err != nil || stats["sync_full"] != "0" {
		t.Errorf("bm served sync_full %s (%v); want 0", stats["sync_full"], err)
	}
	checkRoles(t, ctx, bm, bm, cr)

	// Site A comes back: its etcd member, its Redis servers (empty: they
	// were killed), its relay and agents. Its nodes rejoin as replicas.
	f.etcd.Members[drSites["A"]].Start(t)
	am.Restart(t)
	ab.Restart(t)
	f.startRelay("relay-a")
	f.startAgent("am")
	f.startAgent("ab")
	waitLinkUp(t, ctx, am, ab)
	if err := bm.Client().Set(ctx, "after-return", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, bm, cr, am, ab)
	checkRoles(t, ctx, bm, bm, cr, am, ab)
	redistest.WaitFor(t, 30*time.Second, func() error {
		st, err := f.state()
		if err != nil {
			return err
		}
		if st.Master == nil || st.Master.Node != "bm" || st.Master.Epoch != after.Master.Epoch {
			t.Errorf("after A's return: record %+v, want bm at epoch %d", st.Master, after.Master.Epoch)
		}
		return nil
	})
	ra := f.counters("relay-a")
	t.Logf("A's return: relay-a upstream full syncs %d, served %d (A's Redis servers restarted empty)", ra.GetUpstreamFullSyncs(), ra.GetFullSyncsServed())
	for id, b := range before {
		now := f.counters(id)
		if now.GetUpstreamFullSyncs() != b.GetUpstreamFullSyncs() {
			t.Errorf("%s upstream full syncs %d -> %d after A's return; want none", id, b.GetUpstreamFullSyncs(), now.GetUpstreamFullSyncs())
		}
	}
}

// checkRoles checks that of servers only master says ROLE master.
func checkRoles(t *testing.T, ctx context.Context, master *redistest.Server, servers ...*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		role, err := s.Client().Do(ctx, "ROLE").Slice()
		if err != nil {
			t.Fatal(err)
		}
		want := "slave"
		if s == master {
			want = "master"
		}
		if len(role) == 0 || role[0] != want {
			t.Errorf("%s: ROLE %v, want %s", s.Addr, role, want)
		}
	}
}

// TestFailoverSiteLossAnchorElsewhere: as TestFailoverSiteLoss, but the
// relay bm follows (relay-b) is down when site A is lost, so relay-c is
// the only live, hence most advanced, surviving relay: bm catches up to
// relay-c's offset before it is promoted (following relay-c first if it
// is behind; the run-time mover may have moved it off the dead relay-b
// already), relay-c becomes the root and the dead relay-b its child; when
// relay-b returns it continues under relay-c. No WAIT-acknowledged write
// is lost, no full sync among the survivors.
func TestFailoverSiteLossAnchorElsewhere(t *testing.T) {
	const minAcked = 20
	f := newDRFabric(t)
	ctx := f.ctx
	boot := f.boot(redistest.LoadOptions{SmallKeys: 200, Seed: 7})
	am, bm, cr := f.redis["am"], f.redis["bm"], f.redis["cr"]
	before := f.counters("relay-c")

	// relay-b goes down; the writer's WAIT 1 is answered through relay-c.
	f.stops["relay-b"]()
	w := startWaitWriter(t, ctx, am)
	redistest.WaitFor(t, 60*time.Second, func() error {
		if n := w.count.Load(); n < minAcked {
			return fmt.Errorf("%d writes WAIT-acknowledged, want %d before the loss", n, minAcked)
		}
		return nil
	})
	f.loseSiteA()
	f.waitBMElected(boot)
	w.stop()
	<-w.done
	top, _, err := topology.Load(ctx, f.cli, f.cluster)
	if err != nil {
		t.Fatal(err)
	}
	if top.Relays["relay-c"].Upstream != topology.UpstreamMaster || top.Relays["relay-b"].Upstream != "relay-c" {
		t.Fatalf("topology: relay-b <- %s, relay-c <- %s; want relay-c a root and relay-b under it",
			top.Relays["relay-b"].Upstream, top.Relays["relay-c"].Upstream)
	}
	h := waitNewestHistory(t, ctx, f.cli, f.cluster, "bm")
	if catchUp := stepNote(h, "catch-up"); !strings.Contains(catchUp, "relay-c") {
		t.Errorf("catch-up step %q: want it from relay-c", catchUp)
	}
	t.Logf("history: %s; steps %+v", h.Reason, h.Steps)

	if lost := w.missingOn(ctx, bm); len(lost) > 0 {
		t.Errorf("%d of %d WAIT-acknowledged writes are not on bm: %v", len(lost), len(w.acked), lost[:min(len(lost), 10)])
	}
	t.Logf("writer: %d WAIT-acknowledged of %d tried", len(w.acked), w.tried)

	// relay-b returns under relay-c; cr and relay-b stream bm's writes.
	f.startRelay("relay-b")
	redistest.WaitFor(t, 30*time.Second, func() error { return bm.Client().Set(ctx, "after-site-loss", "1", 0).Err() })
	waitKeys(t, ctx, cr, "after-site-loss")
	redistest.WaitInSync(t, 30*time.Second, bm, cr)
	redistest.WaitFor(t, 30*time.Second, func() error {
		r := f.running["relay-b"]()
		if r == nil {
			return fmt.Errorf("relay-b not started")
		}
		if got, want := r.Status().GetStoredOffset(), masterOffset(ctx, bm); got < want {
			return fmt.Errorf("relay-b stored %d, bm at %d", got, want)
		}
		return nil
	})
	now := f.counters("relay-c")
	if now.GetFullSyncsServed() != before.GetFullSyncsServed() || now.GetUpstreamFullSyncs() != before.GetUpstreamFullSyncs() {
		t.Errorf("relay-c full syncs: served %d -> %d, upstream %d -> %d; want no new ones",
			before.GetFullSyncsServed(), now.GetFullSyncsServed(), before.GetUpstreamFullSyncs(), now.GetUpstreamFullSyncs())
	}
	if stats, err := bm.Info(ctx, "stats"); err != nil || stats["sync_full"] != "0" {
		t.Errorf("bm served sync_full %s (%v); want 0", stats["sync_full"], err)
	}
	checkRoles(t, ctx, bm, bm, cr)
}

// masterOffset is s's master_repl_offset (0 if unreadable).
func masterOffset(ctx context.Context, s *redistest.Server) int64 {
	off, _ := s.InfoInt(ctx, "replication", "master_repl_offset")
	return off
}
