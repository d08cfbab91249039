package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	arborfabric "github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// electFabric is a fabric with the election: a master M and a backup B
// (both candidates), a replica R, and one real root relay r1 run under
// etcd (internal/fabric), which every node follows.
type electFabric struct {
	etcd    *etcdtest.Cluster
	cli     *clientv3.Client
	cluster string
	ctx     context.Context
	m, b, r *redistest.Server
	relay   func() *relay.Relay
	log     *slog.Logger
	// agentCfg, if set, edits every agent's config.
	agentCfg func(*Config)
	// onAgent, if set, is called with every agent before it runs.
	onAgent func(id string, a *Agent)
}

func newElectFabric(t *testing.T, etcdMembers int, edit ...func(*topology.Topology)) *electFabric {
	t.Helper()
	etcd := etcdtest.Start(t, etcdMembers)
	f := &electFabric{etcd: etcd, cli: etcd.Client(t), cluster: "failover"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx
	f.log = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.m = redistest.Start(t, "--repl-backlog-size", "16mb")
	f.b = redistest.Start(t, "--repl-backlog-size", "16mb")
	f.r = redistest.Start(t)

	rcfg := testRelayConfig(t, "r1", "A", f.log)

	top := topology.New()
	top.Sites["A"] = topology.Site{Name: "A"}
	top.Master = "m"
	top.Nodes["m"] = topology.NodeSpec{ID: "m", Site: "A", RedisAddr: f.m.Addr, Candidate: true, Priority: 10, Follow: "r1"}
	top.Nodes["b"] = topology.NodeSpec{ID: "b", Site: "A", RedisAddr: f.b.Addr, Candidate: true, Priority: 5, Follow: "r1"}
	top.Nodes["r"] = topology.NodeSpec{ID: "r", Site: "A", RedisAddr: f.r.Addr, Follow: "r1"}
	top.Relays["r1"] = topology.RelaySpec{ID: "r1", Site: "A", RedisAddr: rcfg.RedisAddr, GRPCAddr: rcfg.GRPCAddr, Upstream: topology.UpstreamMaster}
	for _, e := range edit {
		e(top)
	}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}

	f.relay, _ = runRelay(t, rcfg, f.cli, f.cluster)
	return f
}

// testRelayConfig is the config of relay id of site, on free ports, with
// a 64 MiB backlog, for a relay run under etcd (runRelay).
func testRelayConfig(t *testing.T, id, site string, log *slog.Logger) relay.Config {
	cfg := relay.DefaultConfig()
	cfg.ID, cfg.Site = id, site
	cfg.DataDir = filepath.Join(t.TempDir(), id)
	cfg.RedisAddr = "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	cfg.GRPCAddr = "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	cfg.TLS.Plaintext = true
	cfg.BacklogSize = 64 << 20
	cfg.Logger = log.With("relay", id)
	return cfg
}

// runRelay runs cfg as a relay under etcd (internal/fabric) with cli until
// the test ends or stop is called; an error from it fails the test.
// running returns the relay it started (nil before).
func runRelay(t *testing.T, cfg relay.Config, cli *clientv3.Client, cluster string) (running func() *relay.Relay, stop func()) {
	var mu sync.Mutex
	var started *relay.Relay
	running = func() *relay.Relay { mu.Lock(); defer mu.Unlock(); return started }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fr := arborfabric.Relay{Config: cfg, Etcd: cli, Cluster: cluster, Logger: cfg.Logger,
			Started: func(r *relay.Relay) { mu.Lock(); started = r; mu.Unlock() }}
		if err := fr.Run(ctx); err != nil {
			t.Errorf("relay %s: %v", cfg.ID, err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return running, stop
}

// electAgentConfig is the config of an electing agent of node id (fast
// profile, a status every 100 ms) on the Redis at addr.
func electAgentConfig(id, site, cluster, addr string, log *slog.Logger) Config {
	cfg := DefaultConfig()
	cfg.ID, cfg.Site, cfg.Cluster = id, site, cluster
	cfg.Redis = "redis://" + addr
	cfg.StatusInterval = 100 * time.Millisecond
	cfg.StatusTTL = 2 * time.Second
	cfg.RedisTimeout = 500 * time.Millisecond
	cfg.Elect = true
	cfg.FastProfile()
	cfg.DeferStep = 500 * time.Millisecond
	cfg.Logger = log.With("agent", id)
	return cfg
}

// runAgent runs an agent with the fast profile until the test ends or
// stop is called; cli is its etcd client (nil: the fabric's).
func (f *electFabric) runAgent(t *testing.T, id string, s *redistest.Server, cli *clientv3.Client) (stop func()) {
	t.Helper()
	if cli == nil {
		cli = f.cli
	}
	cfg := electAgentConfig(id, "A", f.cluster, s.Addr, f.log)
	if f.agentCfg != nil {
		f.agentCfg(&cfg)
	}
	a, err := New(cfg, cli)
	if err != nil {
		t.Fatal(err)
	}
	if f.onAgent != nil {
		f.onAgent(id, a)
	}
	return runUntilStopped(t, id, a)
}

func (f *electFabric) state(t *testing.T) election.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
	defer cancel()
	st, err := election.ReadState(ctx, f.cli, f.cluster)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func infoOf(ctx context.Context, s *redistest.Server) (map[string]string, error) {
	return s.Info(ctx, "replication")
}

// waitLinkUp waits until each server is a replica with its master link up.
func waitLinkUp(t *testing.T, ctx context.Context, servers ...*redistest.Server) {
	t.Helper()
	for _, s := range servers {
		redistest.WaitFor(t, 30*time.Second, func() error {
			info, err := infoOf(ctx, s)
			if err != nil {
				return err
			}
			if info["role"] != "slave" || info["master_link_status"] != "up" {
				return fmt.Errorf("%s: role %s link %s", s.Addr, info["role"], info["master_link_status"])
			}
			return nil
		})
	}
}

// waitGoodReplicas waits until s, if it runs with min-replicas-to-write,
// counts at least one good replica. A master whose relay has just
// full-synced from it counts the relay only once Redis has seen the RDB
// transfer end (its cron, up to 100 ms later), so for that long after the
// election it refuses writes with NOREPLICAS: the fence at work, not a
// fault.
func waitGoodReplicas(t *testing.T, ctx context.Context, s *redistest.Server) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error {
		info, err := infoOf(ctx, s)
		if err != nil {
			return err
		}
		if good, ok := info["min_slaves_good_slaves"]; ok && good == "0" {
			return fmt.Errorf("%s: min_slaves_good_slaves 0", s.Addr)
		}
		return nil
	})
}

// start runs the three agents (m's with mcli, nil for the fabric's
// client), waits for m's bootstrap election and for b and r to stream
// from the relay, and loads data on m until all are in sync. It returns
// the bootstrap state and m's agent's stop.
func (f *electFabric) start(t *testing.T, mcli *clientv3.Client) (election.State, func()) {
	t.Helper()
	ctx := f.ctx
	stopM := f.runAgent(t, "m", f.m, mcli)
	f.runAgent(t, "b", f.b, nil)
	f.runAgent(t, "r", f.r, nil)
	var boot election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		boot = f.state(t)
		if !boot.Live() || boot.Master.Node != "m" {
			return fmt.Errorf("state %+v: want m elected at bootstrap", boot)
		}
		return nil
	})
	waitLinkUp(t, ctx, f.b, f.r)
	waitGoodReplicas(t, ctx, f.m)
	if err := redistest.LoadAllTypes(ctx, f.m.Client(), redistest.LoadOptions{SmallKeys: 500, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 30*time.Second, f.m, f.b, f.r)
	return boot, stopM
}

// waitElected waits for node id's record at an epoch after boot's and
// returns the state.
func (f *electFabric) waitElected(t *testing.T, id string, boot election.State) election.State {
	t.Helper()
	var after election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		after = f.state(t)
		if after.Master == nil || after.Master.Node != id || after.Master.Epoch <= boot.Master.Epoch {
			return fmt.Errorf("record %+v: want %s at an epoch after %d", after.Master, id, boot.Master.Epoch)
		}
		return nil
	})
	return after
}

// waitHistory waits until the newest election history entry is node id's
// and returns it. The winner publishes its record first and its history
// entry after, so a test that saw the record may not see the entry yet.
func (f *electFabric) waitHistory(t *testing.T, id string) election.History {
	t.Helper()
	return waitNewestHistory(t, f.ctx, f.cli, f.cluster, id)
}

// waitNewestHistory waits until the newest history entry of cluster is
// node id's and returns it.
func waitNewestHistory(t *testing.T, ctx context.Context, cli *clientv3.Client, cluster, id string) election.History {
	t.Helper()
	var h election.History
	redistest.WaitFor(t, 30*time.Second, func() error {
		hs, err := election.ReadHistory(ctx, cli, cluster, 1)
		if err != nil {
			return err
		}
		if len(hs) != 1 || hs[0].Node != id {
			return fmt.Errorf("newest history entry %+v: want %s's", hs, id)
		}
		h = hs[0]
		return nil
	})
	return h
}

// checkFailedOver waits for b's record after boot, a write on b and its
// arrival on r, then checks the history, that nobody full-synced since
// before (the relay's counters), equal digests and one master. It logs
// the times since t0.
func (f *electFabric) checkFailedOver(t *testing.T, boot election.State, before *arborv1.SyncCounters, t0 time.Time) {
	t.Helper()
	ctx := f.ctx
	f.waitElected(t, "b", boot)
	elected := time.Since(t0)
	var wrote time.Duration
	redistest.WaitFor(t, 30*time.Second, func() error {
		if err := f.b.Client().Set(ctx, "after-failover", "1", 0).Err(); err != nil {
			return err
		}
		wrote = time.Since(t0)
		return nil
	})
	// The relay follows b (+CONTINUE), and r gets the write through it.
	redistest.WaitFor(t, 30*time.Second, func() error {
		v, err := f.r.Client().Get(ctx, "after-failover").Result()
		if err != nil {
			return err
		}
		if v != "1" {
			return fmt.Errorf("r has %q", v)
		}
		return nil
	})
	streaming := time.Since(t0)
	redistest.WaitInSync(t, 30*time.Second, f.b, f.r)

	h := f.waitHistory(t, "b")
	if h.Previous != "m" {
		t.Fatalf("history %+v: want b taking over from m", h)
	}
	t.Logf("failover: record after %v, first write on b after %v, replica r streaming again after %v; steps %+v",
		elected, wrote, streaming, h.Steps)

	// No full sync anywhere: the relay served none and took none, and b
	// served the relay a partial resync.
	now := f.relay().Status().GetCounters()
	if now.GetFullSyncsServed() != before.GetFullSyncsServed() || now.GetUpstreamFullSyncs() != before.GetUpstreamFullSyncs() {
		t.Errorf("relay full syncs: served %d -> %d, upstream %d -> %d; want no new ones",
			before.GetFullSyncsServed(), now.GetFullSyncsServed(), before.GetUpstreamFullSyncs(), now.GetUpstreamFullSyncs())
	}
	stats, err := f.b.Info(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if stats["sync_full"] != "0" || stats["sync_partial_ok"] == "0" {
		t.Errorf("b: sync_full %s sync_partial_ok %s; want 0 and >0 (the relay continued)", stats["sync_full"], stats["sync_partial_ok"])
	}
	f.checkOneMaster(t, f.b)
}

// checkOneMaster checks that of the running Redis servers only master
// says ROLE master.
func (f *electFabric) checkOneMaster(t *testing.T, master *redistest.Server) {
	t.Helper()
	var running []*redistest.Server
	for _, s := range []*redistest.Server{f.m, f.b, f.r} {
		if s.Running() {
			running = append(running, s)
		}
	}
	checkRoles(t, f.ctx, master, running...)
}

// TestFailoverKillMasterRedis: kill -9 of the master's Redis (its agent
// lives and resigns after --down-after checks). The backup is promoted in
// a new epoch, the root relay follows it with a partial resync, writes are
// accepted on it, no full sync happens anywhere, the data is equal
// everywhere, and there is one master.
//
// The elected masters run with min-replicas-to-write 1: the root relay's
// REPLCONF ACKs count, so they take writes (the load on m, the write on b).
func TestFailoverKillMasterRedis(t *testing.T) {
	f := newElectFabric(t, 1)
	f.agentCfg = func(c *Config) { c.MinReplicas, c.MinReplicasMaxLag = 1, time.Second }
	boot, _ := f.start(t, nil)
	checkMinReplicas(t, f.ctx, f.m)
	before := f.relay().Status().GetCounters()
	f.m.Kill()
	f.checkFailedOver(t, boot, before, time.Now())
	checkMinReplicas(t, f.ctx, f.b)
}

// checkMinReplicas checks that s runs with min-replicas-to-write 1.
func checkMinReplicas(t *testing.T, ctx context.Context, s *redistest.Server) {
	t.Helper()
	got, err := s.Client().ConfigGet(ctx, "min-replicas-to-write").Result()
	if err != nil || got["min-replicas-to-write"] != "1" {
		t.Fatalf("%s: min-replicas-to-write %v (%v), want 1", s.Addr, got, err)
	}
}

// TestFailoverHostDeath: the master's agent and Redis both die (the agent
// stops without revoking its lease, as a dead one would). The backup takes
// over once the lease expires.
func TestFailoverHostDeath(t *testing.T) {
	f := newElectFabric(t, 1)
	boot, stopM := f.start(t, nil)
	before := f.relay().Status().GetCounters()
	t0 := time.Now()
	stopM()
	f.m.Kill()
	f.checkFailedOver(t, boot, before, t0)
}

// TestFailoverMasterCutFromEtcd: the master's agent loses etcd (its only
// etcd member is killed; the other two keep the quorum) while its Redis
// takes writes. The agent pauses writes and demotes its Redis at its fence
// deadline; the backup takes over once the lease expires; every write the
// old master acknowledged is on the new master.
func TestFailoverMasterCutFromEtcd(t *testing.T) {
	f := newElectFabric(t, 3)
	ctx := f.ctx
	cut := f.etcd.Members[0]
	mcli := f.etcd.ClientOf(t, cut.ClientURL)
	// Everyone else has a client of all three members: with m0 gone it
	// goes on with the other two.
	boot, _ := f.start(t, mcli)
	before := f.relay().Status().GetCounters()

	w := f.startWriter(t, f.m)
	redistest.WaitFor(t, 10*time.Second, func() error {
		n, err := f.m.Client().DBSize(ctx).Result()
		if err != nil || n < 510 {
			return fmt.Errorf("dbsize %d (%v): writer not writing yet", n, err)
		}
		return nil
	})

	t0 := time.Now()
	cut.Kill()
	// m fences itself: its Redis becomes a replica.
	redistest.WaitFor(t, 30*time.Second, func() error {
		info, err := infoOf(ctx, f.m)
		if err != nil {
			return err
		}
		if info["role"] != "slave" {
			return fmt.Errorf("m: role %s", info["role"])
		}
		return nil
	})
	fenced := time.Since(t0)
	f.checkFailedOver(t, boot, before, t0)
	n := w.checkAllOn(t, f.b)
	// The fenced old master continues as a replica (partial resync) and
	// holds what the new master holds.
	redistest.WaitInSync(t, 30*time.Second, f.b, f.m)
	if now := f.relay().Status().GetCounters(); now.GetFullSyncsServed() != before.GetFullSyncsServed() {
		t.Errorf("relay full syncs served %d -> %d: the old master did not continue", before.GetFullSyncsServed(), now.GetFullSyncsServed())
	}
	t.Logf("old master fenced (demoted) %v after its etcd member died; %d acknowledged writes, none lost", fenced, n)
}

// writer writes to one Redis and records every acknowledged write.
type writer struct {
	stop  context.CancelFunc
	done  chan struct{}
	acked []string    // owned by the writer goroutine until done is closed
	at    []time.Time // when each of acked was acknowledged
}

// startWriter writes w:<i> to s every 2 ms (at most 100 000 writes) until
// checkAllOn, and waits for the first writes.
func (f *electFabric) startWriter(t *testing.T, s *redistest.Server) *writer {
	t.Helper()
	wctx, stop := context.WithCancel(f.ctx)
	w := &writer{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		c := s.Client()
		for i := 0; wctx.Err() == nil && i < 100_000; i++ {
			k := "w:" + strconv.Itoa(i)
			cctx, cancel := context.WithTimeout(wctx, 200*time.Millisecond)
			err := c.Set(cctx, k, i, 0).Err()
			cancel()
			if err == nil {
				w.acked = append(w.acked, k)
				w.at = append(w.at, time.Now())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stop(); <-w.done })
	redistest.WaitFor(t, 10*time.Second, func() error {
		n, err := s.Client().Exists(f.ctx, "w:10").Result()
		if err != nil || n != 1 {
			return fmt.Errorf("w:10 not written yet (%v)", err)
		}
		return nil
	})
	return w
}

// checkAllOn stops the writer and checks that every acknowledged write is
// on s; it returns how many there were.
func (w *writer) checkAllOn(t *testing.T, s *redistest.Server) int {
	t.Helper()
	w.stop()
	<-w.done
	var lost []string
	for _, k := range w.acked {
		if n, err := s.Client().Exists(context.Background(), k).Result(); err != nil || n != 1 {
			lost = append(lost, k)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged writes are not on %s: %v", len(lost), len(w.acked), s.Addr, lost[:min(len(lost), 10)])
	}
	return len(w.acked)
}

// TestSwitchover: a planned switchover under a writer: every acknowledged
// write is on the new master, the old master follows its relay, no full
// sync. Then two that abort cleanly: a target that is no candidate, and
// one that cannot reach the offset in time; the master keeps taking
// writes and nothing changed.
func TestSwitchover(t *testing.T) {
	f := newElectFabric(t, 1)
	ctx := f.ctx
	boot, _ := f.start(t, nil)

	w := f.startWriter(t, f.m)
	for _, c := range []struct {
		to      string
		timeout time.Duration
		why     string
	}{
		{"r", 5 * time.Second, "not eligible"},
		{"b", time.Nanosecond, "after 1ns"},
	} {
		_, err := election.RequestSwitchover(ctx, f.cli, f.cluster, c.to, c.timeout)
		if !errors.Is(err, election.ErrSwitchover) || !strings.Contains(err.Error(), c.why) {
			t.Fatalf("switchover to %s in %v: got %v, want ErrSwitchover saying %q", c.to, c.timeout, err, c.why)
		}
		if st := f.state(t); !st.Live() || st.Master.Node != "m" || st.Master.Epoch != boot.Master.Epoch || st.Switchover != nil {
			t.Fatalf("after the aborted switchover to %s: state %+v, want m at epoch %d, no request", c.to, st, boot.Master.Epoch)
		}
		// Writes resumed at once.
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err = f.m.Client().Set(wctx, "after-abort-"+c.to, "1", 0).Err()
		cancel()
		if err != nil {
			t.Fatalf("write on m after the aborted switchover to %s: %v", c.to, err)
		}
	}

	before := f.relay().Status().GetCounters()
	t0 := time.Now()
	m, err := election.RequestSwitchover(ctx, f.cli, f.cluster, "b", 5*time.Second)
	if err != nil {
		t.Fatalf("switchover to b: %v", err)
	}
	took := time.Since(t0)
	if m.Node != "b" || m.Epoch <= boot.Master.Epoch {
		t.Fatalf("record %+v: want b after epoch %d", m, boot.Master.Epoch)
	}
	// The old master follows its relay (and is resumed).
	waitLinkUp(t, ctx, f.m)
	f.checkFailedOver(t, boot, before, t0)
	n := w.checkAllOn(t, f.b)
	redistest.WaitInSync(t, 30*time.Second, f.b, f.m)
	hs, err := election.ReadHistory(ctx, f.cli, f.cluster, 1)
	if err != nil || len(hs) == 0 {
		t.Fatalf("history: %v", err)
	}
	t.Logf("switchover: %v for the command; %d acknowledged writes, none lost; steps %+v", took, n, hs[0].Steps)
}

// TestReadOffset: a replica's catch-up counts the stream bytes it read
// (slave_read_repl_offset), so a command the old master's death cut short
// does not hold a promotion back.
func TestReadOffset(t *testing.T) {
	for _, c := range []struct {
		info string
		want int64
	}{
		{"role:slave\r\nmaster_host:h\r\nmaster_port:1\r\nmaster_repl_offset:100\r\nslave_read_repl_offset:117\r\n", 117},
		{"role:slave\r\nmaster_host:h\r\nmaster_port:1\r\nmaster_repl_offset:100\r\n", 100},
		{"role:master\r\nmaster_repl_offset:100\r\n", 100},
	} {
		r, err := parseReplInfo(c.info)
		if err != nil || r.readOffset != c.want {
			t.Errorf("%q: read offset %d (%v), want %d", c.info, r.readOffset, err, c.want)
		}
	}
}

// TestFailoverOldMasterReturns: the master's Redis shuts down (saving its
// RDB), the backup takes over, and the old master, restarted with its
// data, is made to follow its relay: it is never a second master. Redis
// 7.0 gives a master restarted from its RDB a new replication ID (only a
// replica keeps its history across a restart), so this return costs one
// full sync, of the returning node alone; a master demoted while it runs
// continues (TestFailoverMasterCutFromEtcd).
func TestFailoverOldMasterReturns(t *testing.T) {
	f := newElectFabric(t, 1)
	ctx := f.ctx
	boot, _ := f.start(t, nil)
	before := f.relay().Status().GetCounters()
	t0 := time.Now()
	f.m.StopSave()
	f.checkFailedOver(t, boot, before, t0)

	f.m.Restart(t)
	waitLinkUp(t, ctx, f.m)
	redistest.WaitInSync(t, 30*time.Second, f.b, f.m)
	f.checkOneMaster(t, f.b)
	if now := f.relay().Status().GetCounters(); now.GetFullSyncsServed() > before.GetFullSyncsServed()+1 {
		t.Errorf("relay full syncs served %d -> %d: want at most the returning node's", before.GetFullSyncsServed(), now.GetFullSyncsServed())
	}
}

// TestFailoverPriorityZeroNeverWins: the backup b, in the old master's
// site and as advanced as anyone, has priority 0 (the topology allows that
// only for a non-candidate); the replica r is a candidate with priority 1
// and is promoted instead.
func TestFailoverPriorityZeroNeverWins(t *testing.T) {
	f := newElectFabric(t, 1, func(top *topology.Topology) {
		b, r := top.Nodes["b"], top.Nodes["r"]
		b.Candidate, b.Priority = false, 0
		r.Candidate, r.Priority = true, 1
		top.Nodes["b"], top.Nodes["r"] = b, r
	})
	boot, _ := f.start(t, nil)
	f.m.Kill()
	redistest.WaitFor(t, 30*time.Second, func() error {
		st := f.state(t)
		if st.Master == nil || st.Master.Epoch <= boot.Master.Epoch {
			return fmt.Errorf("record %+v: no failover yet", st.Master)
		}
		if st.Master.Node != "r" {
			t.Fatalf("record %+v: want r (b has priority 0)", st.Master)
		}
		return nil
	})
	if rk := myRank(f.waitHistory(t, "r").Ranking, "b"); rk.Eligible() || !strings.Contains(rk.Reason, "not a candidate") {
		t.Errorf("b ranked %+v: want not eligible, not a candidate", rk)
	}
	redistest.WaitInSync(t, 30*time.Second, f.r, f.b)
	f.checkOneMaster(t, f.r)
}

// TestElectorIgnoresOlderEpoch: fencing rule (c): a record of an older
// epoch than one seen (a stale read, a restored etcd) never replaces it;
// the leader fields still update.
func TestElectorIgnoresOlderEpoch(t *testing.T) {
	e := newElector()
	e.observe(election.State{Leader: "b", LeaderEpoch: 20, Master: &election.Master{Epoch: 20, Node: "b", RedisAddr: "x:1"}})
	e.observe(election.State{Leader: "", Master: &election.Master{Epoch: 5, Node: "m", RedisAddr: "x:2"}})
	if e.state.Master.Node != "b" || e.state.Master.Epoch != 20 || e.state.Leader != "" {
		t.Fatalf("state %+v, master %+v: want b's record of epoch 20 kept, no leader", e.state, e.state.Master)
	}
	e.observe(election.State{Leader: "c", LeaderEpoch: 30, Master: &election.Master{Epoch: 30, Node: "c", RedisAddr: "x:3"}})
	if e.state.Master.Node != "c" {
		t.Fatalf("master %+v: want c's newer record", e.state.Master)
	}
	top := topology.New()
	top.Master = "m"
	top.Nodes["c"] = topology.NodeSpec{ID: "c"}
	top.Nodes["m"] = topology.NodeSpec{ID: "m"}
	if got := e.effective(top); got.Master != "c" || top.Master != "m" {
		t.Fatalf("effective master %q (topology's %q): want c, the topology untouched", got.Master, top.Master)
	}
}

// TestElectionConfigValidate: each bad election setting is named.
func TestElectionConfigValidate(t *testing.T) {
	base := DefaultConfig()
	base.ID, base.Cluster, base.Redis = "n", "c", "redis://127.0.0.1:6379"
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	fast := base
	fast.FastProfile()
	if err := fast.Validate(); err != nil {
		t.Fatalf("fast profile: %v", err)
	}
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.LeaseTTL = 1500 * time.Millisecond }, "lease-ttl"},
		{func(c *Config) { c.FenceMargin = 4 * time.Second }, "fence-margin"},
		{func(c *Config) { c.DownAfter = 0 }, "down-after"},
		{func(c *Config) { c.MaxLagBytes = -1 }, "max-lag-bytes"},
		{func(c *Config) { c.CatchUpTimeout = 0 }, "catch-up-timeout"},
		{func(c *Config) { c.MinReplicas = 1; c.MinReplicasMaxLag = 5 * time.Second }, "min-replicas-max-lag"},
	} {
		cfg := base
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error naming %s", err, c.want)
		}
	}
}
