package statusview

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/internal/freeport"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/node"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// TestStatusAfterFailover: a real failover (node agents electing, a root
// relay under the control plane, kill -9 of the master's Redis) reaches
// arbor status: the new epoch and master, the relay on it, the history
// entry with its steps, and the candidates ranked for the next failure.
func TestStatusAfterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd, three redis-servers, a relay and three node agents")
	}
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const cluster = "fo-view"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := redistest.Start(t, "--repl-backlog-size", "16mb")
	b := redistest.Start(t, "--repl-backlog-size", "16mb")
	r := redistest.Start(t)
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	rcfg := relay.DefaultConfig()
	rcfg.ID, rcfg.Site, rcfg.DataDir = "r1", "A", filepath.Join(t.TempDir(), "r1")
	rcfg.RedisAddr = "127.0.0.1:" + strconv.Itoa(port)
	rcfg.Logger = log
	top := topology.New()
	top.Sites["A"] = topology.Site{Name: "A"}
	top.Master = "m"
	top.Relays["r1"] = topology.RelaySpec{ID: "r1", Site: "A", RedisAddr: rcfg.RedisAddr, Upstream: topology.UpstreamMaster}
	top.Nodes["m"] = topology.NodeSpec{ID: "m", Site: "A", RedisAddr: m.Addr, Candidate: true, Priority: 10, Follow: "r1"}
	top.Nodes["b"] = topology.NodeSpec{ID: "b", Site: "A", RedisAddr: b.Addr, Candidate: true, Priority: 5, Follow: "r1"}
	top.Nodes["r"] = topology.NodeSpec{ID: "r", Site: "A", RedisAddr: r.Addr, Follow: "r1"}
	if _, err := topology.Apply(ctx, cli, cluster, top); err != nil {
		t.Fatal(err)
	}
	run := func(name string, fn func(context.Context) error) {
		rctx, rcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := fn(rctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
		t.Cleanup(func() { rcancel(); <-done })
	}
	run("relay", fabric.Relay{Config: rcfg, Etcd: cli, Cluster: cluster, Logger: log}.Run)
	for id, s := range map[string]*redistest.Server{"m": m, "b": b, "r": r} {
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Site, cfg.Cluster, cfg.Redis = id, "A", cluster, "redis://"+s.Addr
		cfg.StatusInterval, cfg.StatusTTL, cfg.RedisTimeout = 100*time.Millisecond, 2*time.Second, 500*time.Millisecond
		cfg.Elect = true
		cfg.FastProfile()
		cfg.Logger = log
		a, err := node.New(cfg, cli)
		if err != nil {
			t.Fatal(err)
		}
		run("agent "+id, a.Run)
	}
	var boot election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		if boot, err = election.ReadState(ctx, cli, cluster); err != nil {
			return err
		}
		if !boot.Live() || boot.Master.Node != "m" {
			return fmt.Errorf("state %+v: want m elected at bootstrap", boot)
		}
		return nil
	})
	if err := redistest.LoadAllTypes(ctx, m.Client(), redistest.LoadOptions{SmallKeys: 300, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, m, b, r)

	m.Kill()
	var v *Fabric
	redistest.WaitFor(t, 30*time.Second, func() error {
		if v, err = Read(ctx, cli, cluster); err != nil {
			return err
		}
		e := v.Election
		switch {
		case !e.Record || e.Master != "b" || e.Epoch <= boot.Master.Epoch || !e.Live:
			return fmt.Errorf("election %+v: want b elected after epoch %d", e, boot.Master.Epoch)
		case len(e.Relays) != 1 || e.Relays[0].Stale != "" || e.Relays[0].Epoch != e.Epoch:
			return fmt.Errorf("relays %+v: want r1 on epoch %d", e.Relays, e.Epoch)
		case len(e.History) == 0 || e.History[0].Node != "b" || e.History[0].Previous != "m":
			return fmt.Errorf("history %+v: want b taking over from m first", e.History)
		}
		return nil
	})
	var out bytes.Buffer
	v.Render(&out)
	t.Logf("\n%s", out.String())
	e := v.Election
	for _, want := range []string{
		fmt.Sprintf("election: epoch %d · master b (%s) since", e.Epoch, b.Addr),
		"leader b holds the election",
		fmt.Sprintf("relays on epoch %d: r1\n", e.Epoch),
		fmt.Sprintf("epoch %d  ", e.Epoch), "m → b", "took ",
		fmt.Sprintf("epoch %d  ", boot.Master.Epoch), "- → m",
		"candidates if the master failed now:", "m [A] p10",
		"node b [A] MASTER",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q", want)
		}
	}
}
