package node

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	arborfabric "github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/internal/freeport"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// electFabric is a fabric with the election: a master M and a backup B
// (both candidates), a replica R, and one real root relay r1 run under
// etcd (internal/fabric), which every node follows.
type electFabric struct {
	cli     *clientv3.Client
	cluster string
	ctx     context.Context
	m, b, r *redistest.Server
	relay   func() *relay.Relay
	log     *slog.Logger
}

func newElectFabric(t *testing.T) *electFabric {
	t.Helper()
	etcd := etcdtest.Start(t, 1)
	f := &electFabric{cli: etcd.Client(t), cluster: "failover"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx
	f.log = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.m = redistest.Start(t, "--repl-backlog-size", "16mb")
	f.b = redistest.Start(t, "--repl-backlog-size", "16mb")
	f.r = redistest.Start(t)

	rport, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	gport, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	rcfg := relay.DefaultConfig()
	rcfg.ID, rcfg.Site = "r1", "A"
	rcfg.DataDir = filepath.Join(t.TempDir(), "r1")
	rcfg.RedisAddr = "127.0.0.1:" + strconv.Itoa(rport)
	rcfg.GRPCAddr = "127.0.0.1:" + strconv.Itoa(gport)
	rcfg.TLS.Plaintext = true
	rcfg.BacklogSize = 64 << 20
	rcfg.Logger = f.log.With("relay", "r1")

	top := topology.New()
	top.Sites["A"] = topology.Site{Name: "A"}
	top.Master = "m"
	top.Nodes["m"] = topology.NodeSpec{ID: "m", Site: "A", RedisAddr: f.m.Addr, Candidate: true, Priority: 10, Follow: "r1"}
	top.Nodes["b"] = topology.NodeSpec{ID: "b", Site: "A", RedisAddr: f.b.Addr, Candidate: true, Priority: 5, Follow: "r1"}
	top.Nodes["r"] = topology.NodeSpec{ID: "r", Site: "A", RedisAddr: f.r.Addr, Follow: "r1"}
	top.Relays["r1"] = topology.RelaySpec{ID: "r1", Site: "A", RedisAddr: rcfg.RedisAddr, GRPCAddr: rcfg.GRPCAddr, Upstream: topology.UpstreamMaster}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var started *relay.Relay
	f.relay = func() *relay.Relay {
		mu.Lock()
		defer mu.Unlock()
		return started
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fr := arborfabric.Relay{Config: rcfg, Etcd: f.cli, Cluster: f.cluster, Logger: rcfg.Logger,
			Started: func(r *relay.Relay) { mu.Lock(); started = r; mu.Unlock() }}
		if err := fr.Run(rctx); err != nil {
			t.Errorf("relay r1: %v", err)
		}
	}()
	t.Cleanup(func() { rcancel(); <-done })
	return f
}

func (f *electFabric) runAgent(t *testing.T, id string, s *redistest.Server) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID, cfg.Site, cfg.Cluster = id, "A", f.cluster
	cfg.Redis = "redis://" + s.Addr
	cfg.StatusInterval = 100 * time.Millisecond
	cfg.StatusTTL = 2 * time.Second
	cfg.RedisTimeout = 500 * time.Millisecond
	cfg.Elect = true
	cfg.FastProfile()
	cfg.DeferStep = 500 * time.Millisecond
	cfg.Logger = f.log.With("agent", id)
	a, err := New(cfg, f.cli)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent %s: %v", id, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
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

// waitInSync waits until every replica has the master's offset.
func waitInSync(t *testing.T, ctx context.Context, master *redistest.Server, replicas ...*redistest.Server) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error {
		want, err := master.InfoInt(ctx, "replication", "master_repl_offset")
		if err != nil {
			return err
		}
		for _, r := range replicas {
			got, err := r.InfoInt(ctx, "replication", "master_repl_offset")
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s at offset %d, master at %d", r.Addr, got, want)
			}
		}
		return nil
	})
}

// TestFailoverKillMasterRedis: kill -9 of the master's Redis. The backup
// is promoted in a new epoch, the root relay follows it with a partial
// resync, writes are accepted on it, no full sync happens anywhere, the
// data is equal everywhere, and there is one master.
func TestFailoverKillMasterRedis(t *testing.T) {
	f := newElectFabric(t)
	ctx := f.ctx
	f.runAgent(t, "m", f.m)
	f.runAgent(t, "b", f.b)
	f.runAgent(t, "r", f.r)

	var boot election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		boot = f.state(t)
		if !boot.Live() || boot.Master.Node != "m" {
			return fmt.Errorf("state %+v: want m elected at bootstrap", boot)
		}
		return nil
	})
	for _, s := range []*redistest.Server{f.b, f.r} {
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
	if err := redistest.LoadAllTypes(ctx, f.m.Client(), redistest.LoadOptions{SmallKeys: 500, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	waitInSync(t, ctx, f.m, f.b, f.r)
	before := f.relay().Status().GetCounters()

	f.m.Kill()
	killed := time.Now()

	var after election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		after = f.state(t)
		if after.Master == nil || after.Master.Node != "b" || after.Master.Epoch <= boot.Master.Epoch {
			return fmt.Errorf("record %+v: want b at an epoch after %d", after.Master, boot.Master.Epoch)
		}
		return nil
	})
	elected := time.Since(killed)
	var wrote time.Duration
	redistest.WaitFor(t, 30*time.Second, func() error {
		if err := f.b.Client().Set(ctx, "after-failover", "1", 0).Err(); err != nil {
			return err
		}
		wrote = time.Since(killed)
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
	streaming := time.Since(killed)
	waitInSync(t, ctx, f.b, f.r)

	hs, err := election.ReadHistory(ctx, f.cli, f.cluster, 1)
	if err != nil || len(hs) != 1 || hs[0].Node != "b" || hs[0].Previous != "m" {
		t.Fatalf("history %+v, %v: want b taking over from m", hs, err)
	}
	t.Logf("failover: record after %v, first write on b after %v, replica r streaming again after %v; steps %+v",
		elected, wrote, streaming, hs[0].Steps)

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
	redistest.WaitFor(t, 30*time.Second, func() error {
		db, err := f.b.Digest(ctx)
		if err != nil {
			return err
		}
		dr, err := f.r.Digest(ctx)
		if err != nil {
			return err
		}
		if db != dr {
			return fmt.Errorf("digest b %s, r %s", db, dr)
		}
		return nil
	})
	// One writable master.
	for _, s := range []*redistest.Server{f.b, f.r} {
		role, err := s.Client().Do(ctx, "ROLE").Slice()
		if err != nil {
			t.Fatal(err)
		}
		want := "slave"
		if s == f.b {
			want = "master"
		}
		if len(role) == 0 || role[0] != want {
			t.Errorf("%s: ROLE %v, want %s", s.Addr, role, want)
		}
	}
}
