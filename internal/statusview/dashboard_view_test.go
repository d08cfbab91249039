package statusview

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// TestLinksAndSiteAcks: the view carries each relay's links (named as the
// relay names its children) and compression, and per site the furthest
// acked offset and the bytes a loss of the site would cost, over the whole
// fabric; its JSON has the names the dashboard reads.
func TestLinksAndSiteAcks(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const cluster = "links"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	applyYAML(t, ctx, cli, cluster, `master: M
sites: {A: {}, B: {}, C: {}}
relays:
  ra: {site: A, grpc_addr: "127.0.0.1:7001", redis_addr: "127.0.0.1:7002", upstream: master}
  rb: {site: B, grpc_addr: "127.0.0.1:7003", redis_addr: "127.0.0.1:7004", upstream: ra}
nodes:
  M: {site: A, redis_addr: "127.0.0.1:7010", follow: ra}
  N: {site: B, redis_addr: "127.0.0.1:7011", follow: rb}
`)
	status := func(id string, v *arborv1.RelayStatus) { putStatus(t, ctx, cli, cluster, topology.KindRelay, id, v) }
	status("ra", &arborv1.RelayStatus{Id: "ra", Site: "A", Upstream: "master", LinkState: arborv1.LinkState_LINK_STATE_STREAMING,
		MasterOffset: 1000, StoredOffset: 1000,
		Compression: &arborv1.CompressionStats{RawBytes: 9000, WireBytes: 3000},
		Children: []*arborv1.ChildStatus{{Id: "rb", Kind: arborv1.ChildKind_CHILD_KIND_RELAY, Site: "B", AckedOffset: 900,
			LagBytes: 100, LagMs: 40, State: arborv1.LinkState_LINK_STATE_STREAMING, Compression: "zstd",
			Bytes: &arborv1.CompressionStats{RawBytes: 9000, WireBytes: 3000}}},
		SiteAcks: []*arborv1.SiteAck{{Site: "A", AckedOffset: 1000, BytesAtRisk: 100}, {Site: "B", AckedOffset: 900}}})
	// rb sees only its own site: its bytes at risk for B is all of it,
	// which the fabric's view must not take over.
	status("rb", &arborv1.RelayStatus{Id: "rb", Site: "B", Upstream: "ra", LinkState: arborv1.LinkState_LINK_STATE_STREAMING,
		MasterOffset: 1000, StoredOffset: 950, TopologyError: "relay rb: upstream nope: no such relay",
		Children: []*arborv1.ChildStatus{{Id: "127.0.0.1:7011", Kind: arborv1.ChildKind_CHILD_KIND_REDIS, Addr: "127.0.0.1:7011",
			Site: "B", AckedOffset: 940, LagBytes: 10, LagMs: 5, State: arborv1.LinkState_LINK_STATE_STREAMING}},
		SiteAcks: []*arborv1.SiteAck{{Site: "B", AckedOffset: 950, BytesAtRisk: 1000}}})

	v, err := Read(ctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"links":[{"id":"rb","kind":"relay"`, `"compression":"zstd","raw_bytes":9000,"wire_bytes":3000`,
		`{"id":"127.0.0.1:7011","kind":"redis","node":"N","addr":"127.0.0.1:7011","site":"B","acked_offset":940,"lag_bytes":10,"lag_ms":5,"state":"streaming"`,
		`"topology_error":"relay rb: upstream nope: no such relay"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back Fabric
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	sites := map[string]Site{}
	for _, s := range back.Sites {
		sites[s.Name] = s
	}
	// A: acked 1000; lost if A vanished: 1000 - 950 (B's best). B: acked
	// 950 (rb's durable store beats ra's view of 900); nothing lost (A has
	// it all). C: no acks.
	if s := sites["A"]; !s.Acked || s.AckedOffset != 1000 || s.BytesAtRisk != 50 {
		t.Errorf("site A: %+v", s)
	}
	if s := sites["B"]; !s.Acked || s.AckedOffset != 950 || s.BytesAtRisk != 0 {
		t.Errorf("site B: %+v", s)
	}
	if s := sites["C"]; s.Acked {
		t.Errorf("site C: %+v", s)
	}
	if r := back.Relays[0]; r.ID != "ra" || r.RawBytes != 9000 || r.WireBytes != 3000 || len(r.Links) != 1 || r.Links[0].LagMs != 40 {
		t.Errorf("relay ra: %+v", r)
	}
}
