package fabric

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// TestRelaySiteFromTopology: relays under etcd started without a site take
// their topology's, so the default compression (auto) sends s2 from
// relay-a1 to relay-a2 of its own site and zstd to relay-b of site B.
func TestRelaySiteFromTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd, a redis-server and three relays")
	}
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const cluster = "sites"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	master := redistest.Start(t)
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 200, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
	ids := []string{"relay-a1", "relay-a2", "relay-b"}
	redisAddr, grpcAddr := map[string]string{}, map[string]string{}
	for _, id := range ids {
		redisAddr[id], grpcAddr[id] = addr(), addr()
	}
	top, err := topology.ParseYAML([]byte(fmt.Sprintf(`master: M
sites: {A: {}, B: {}}
relays:
  relay-a1: {site: A, redis_addr: %q, grpc_addr: %q, upstream: master}
  relay-a2: {site: A, redis_addr: %q, grpc_addr: %q, upstream: relay-a1}
  relay-b: {site: B, redis_addr: %q, grpc_addr: %q, upstream: relay-a1}
nodes:
  M: {site: A, redis_addr: %q, candidate: true, priority: 100, follow: relay-a1}
`, redisAddr["relay-a1"], grpcAddr["relay-a1"], redisAddr["relay-a2"], grpcAddr["relay-a2"],
		redisAddr["relay-b"], grpcAddr["relay-b"], master.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Apply(ctx, cli, cluster, top); err != nil {
		t.Fatal(err)
	}
	started := map[string]chan *relay.Relay{}
	for _, id := range ids {
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.RedisAddr, cfg.GRPCAddr = id, t.TempDir(), redisAddr[id], grpcAddr[id]
		cfg.TLS.Plaintext = true
		cfg.Logger = discardLog()
		ch := make(chan *relay.Relay, 1)
		started[id] = ch
		rctx, rcancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Relay{Config: cfg, Etcd: cli, Cluster: cluster, Logger: cfg.Logger,
				Started: func(r *relay.Relay) { ch <- r }}.Run(rctx)
		}()
		t.Cleanup(func() {
			rcancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", id, err)
			}
		})
	}
	var root *relay.Relay
	select {
	case root = <-started["relay-a1"]:
	case <-time.After(60 * time.Second):
		t.Fatal("relay-a1 did not start")
	}
	if got := root.Status().GetSite(); got != "A" {
		t.Errorf("relay-a1's site %q, want the topology's A", got)
	}
	want := map[string]string{"relay-a2": "s2", "relay-b": "zstd"}
	redistest.WaitFor(t, 60*time.Second, func() error {
		got := map[string]string{}
		for _, c := range root.Status().GetChildren() {
			if c.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY && c.GetState() == arborv1.LinkState_LINK_STATE_STREAMING {
				got[c.GetId()] = c.GetCompression()
			}
		}
		for id, codec := range want {
			if got[id] != codec {
				return fmt.Errorf("relay-a1's streaming child links %v: want %s on %s", got, codec, id)
			}
		}
		return nil
	})
}
