package statusview

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// TestMoveView: a1 is dead; b1 and node as1 moved from it to a2. The view
// shows a2 and its live children, the children that moved away from a1
// and why, and which relays ack the master.
func TestMoveView(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const cluster = "moves"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	applyYAML(t, ctx, cli, cluster, `master: M
sites: {A: {}, B: {}}
relays:
  a1: {site: A, grpc_addr: "127.0.0.1:7001", redis_addr: "127.0.0.1:7002", upstream: master}
  a2: {site: A, grpc_addr: "127.0.0.1:7003", redis_addr: "127.0.0.1:7004", upstream: master}
  b1: {site: B, grpc_addr: "127.0.0.1:7005", redis_addr: "127.0.0.1:7006", upstream: a1}
nodes:
  M: {site: A, redis_addr: "127.0.0.1:7010", candidate: true, priority: 100, follow: a1}
  as1: {site: A, redis_addr: "127.0.0.1:7011", follow: a1}
`)
	at := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC).UnixMilli()
	streaming := arborv1.LinkState_LINK_STATE_STREAMING
	putStatus(t, ctx, cli, cluster, topology.KindRelay, "a2", &arborv1.RelayStatus{Id: "a2", Site: "A", LinkState: streaming,
		EffectiveUpstream: "master", Children: []*arborv1.ChildStatus{
			{Id: "b1", Kind: arborv1.ChildKind_CHILD_KIND_RELAY, State: streaming},
			{Id: "127.0.0.1:7011", Kind: arborv1.ChildKind_CHILD_KIND_REDIS, State: streaming},
		}})
	putStatus(t, ctx, cli, cluster, topology.KindRelay, "b1", &arborv1.RelayStatus{Id: "b1", Site: "B", LinkState: streaming,
		EffectiveUpstream: "a2", Move: &arborv1.ParentMove{From: "a1", To: "a2", Reason: "link to a1 down for 1s; a1 unhealthy: same site relay a2", AtUnixMs: at}})
	putStatus(t, ctx, cli, cluster, topology.KindNode, "as1", &arborv1.NodeStatus{Id: "as1", Site: "A", Role: arborv1.NodeRole_NODE_ROLE_REPLICA,
		LinkState: streaming, Healthy: true, EffectiveFollow: "a2",
		Move: &arborv1.ParentMove{From: "a1", To: "a2", Reason: "status lease of a1 gone", AtUnixMs: at}})

	v, err := Read(ctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	rel := map[string]Relay{}
	for _, r := range v.Relays {
		rel[r.ID] = r
	}
	if got := rel["a1"].MovedAway; len(got) != 2 || got[0].ID != "b1" || got[0].To != "a2" || got[1].ID != "as1" || got[1].Kind != "node" {
		t.Errorf("a1 moved away: %+v, want b1 (relay) and as1 (node) to a2", got)
	}
	if !rel["a2"].AckingMaster || rel["a1"].AckingMaster || rel["b1"].AckingMaster {
		t.Errorf("acking the master: a1 %v a2 %v b1 %v, want a2 only", rel["a1"].AckingMaster, rel["a2"].AckingMaster, rel["b1"].AckingMaster)
	}
	if m := rel["b1"].Move; m == nil || m.From != "a1" || m.At.UnixMilli() != at {
		t.Errorf("b1 move %+v", m)
	}
	var out bytes.Buffer
	v.Render(&out)
	for _, want := range []string{
		"acking the master: a2",
		"live children: b1, as1",
		"moved away: relay b1 → a2 (link to a1 down for 1s",
		"moved away: node as1 → a2 (status lease of a1 gone)",
		"relay b1 [B] ← a1  link streaming",
		"MOVED to a2",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("view lacks %q:\n%s", want, out.String())
		}
	}
}
