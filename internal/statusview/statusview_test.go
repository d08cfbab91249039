package statusview

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis retries a failed dial in a goroutine that sleeps a
		// second, past Close (the agent of a killed Redis).
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// TestElectionView renders a real etcd state after a failover: the record
// of B's epoch with its leader key, two history entries, a root relay on
// the new epoch and a child relay still on the old one, and the candidates
// ranked (an eligible one, one on another history, the dead old master).
func TestElectionView(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const cluster = "view"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	applyYAML(t, ctx, cli, cluster, `master: M
sites: {A: {}, B: {}}
relays:
  relay-a: {site: A, grpc_addr: "127.0.0.1:7001", redis_addr: "127.0.0.1:7002", upstream: master}
  relay-b: {site: B, grpc_addr: "127.0.0.1:7003", redis_addr: "127.0.0.1:7004", upstream: relay-a}
nodes:
  M: {site: A, redis_addr: "127.0.0.1:7010", candidate: true, priority: 100, follow: relay-a}
  B: {site: A, redis_addr: "127.0.0.1:7011", candidate: true, priority: 90, follow: relay-a}
  C: {site: B, redis_addr: "127.0.0.1:7012", candidate: true, priority: 50, follow: relay-b}
  D: {site: B, redis_addr: "127.0.0.1:7013", candidate: true, priority: 40, follow: relay-b}
  S: {site: B, redis_addr: "127.0.0.1:7014", follow: relay-b}
`)
	put := func(key string, value []byte) int64 {
		t.Helper()
		resp, err := cli.Put(ctx, key, string(value))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	status := func(kind, id string, v any) { putStatus(t, ctx, cli, cluster, kind, id, v) }
	// B's leader key: its create revision is the epoch.
	epoch := put(election.CampaignPrefix(cluster)+"694d8a", []byte("B"))
	const newID, oldID = "b000000000000000000000000000000000000000", "a000000000000000000000000000000000000000"
	since := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	put(election.MasterKey(cluster), election.Master{Epoch: epoch, Node: "B", RedisAddr: "127.0.0.1:7011",
		Replid: newID, Offset: 5000, Reason: "failover: M's redis down", At: since}.Marshal())
	put(election.HistoryKey(cluster, 1), election.History{Epoch: 1, Node: "M", Reason: "bootstrap", At: since.Add(-time.Hour)}.Marshal())
	put(election.HistoryKey(cluster, epoch), election.History{Epoch: epoch, Node: "B", Previous: "M", PreviousEpoch: 1,
		Reason: "failover: M's redis down", At: since, Steps: []election.Step{
			{Name: "campaign", Took: 12 * time.Millisecond}, {Name: "catch-up", Took: 40 * time.Millisecond, Note: "from relay-a"},
			{Name: "promote", Took: 3 * time.Millisecond}}}.Marshal())

	status(topology.KindRelay, "relay-a", &arborv1.RelayStatus{Id: "relay-a", Site: "A", Upstream: "redis://127.0.0.1:7011",
		LinkState: arborv1.LinkState_LINK_STATE_STREAMING, Replid: newID, Replid2: oldID, SecondOffset: 5000,
		MasterOffset: 6000, StoredOffset: 6000, MasterEpoch: epoch, MasterNode: "B",
		MasterError: "master record at revision 9 refused: master record of an older epoch: epoch 2 (node M) < epoch 4 already followed"})
	status(topology.KindRelay, "relay-b", &arborv1.RelayStatus{Id: "relay-b", Site: "B", Upstream: "arbor://127.0.0.1:7001",
		LinkState: arborv1.LinkState_LINK_STATE_STREAMING, Replid: oldID, MasterOffset: 4000, StoredOffset: 4000,
		MasterEpoch: 1, MasterNode: "M"})
	node := func(id string, role arborv1.NodeRole, replid string, offset int64) {
		status(topology.KindNode, id, &arborv1.NodeStatus{Id: id, Role: role, Replid: replid, Offset: offset, Healthy: true,
			LinkState: arborv1.LinkState_LINK_STATE_STREAMING})
	}
	node("B", arborv1.NodeRole_NODE_ROLE_MASTER, newID, 6000)
	node("C", arborv1.NodeRole_NODE_ROLE_REPLICA, newID, 5990)
	node("D", arborv1.NodeRole_NODE_ROLE_REPLICA, "c000000000000000000000000000000000000000", 6000)
	node("S", arborv1.NodeRole_NODE_ROLE_REPLICA, newID, 6000)

	v, err := Read(ctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	v.Render(&out)
	t.Logf("\n%s", out.String())
	for _, want := range []string{
		"election: epoch " + itoa(epoch) + " · master B (127.0.0.1:7011) since 2026-12-03 08:00:00 UTC",
		"failover: M's redis down · leader B holds the election",
		"relays on epoch " + itoa(epoch) + ": relay-a\n",
		"STALE relay relay-b (on epoch 1, newest is " + itoa(epoch) + ")",
		"relay relay-a refused: master record at revision 9 refused",
		"1.  C [B] p50 offset 5990: eligible: priority 50, site B, lag 10 bytes",
		"-   D [B] p40 offset 6000: other replication history",
		"-   M [A] p100 offset 0: agent down",
		"epoch " + itoa(epoch) + "  2026-12-03 08:00:00  M → B  failover: M's redis down  took 55ms: campaign 12ms, catch-up 40ms (from relay-a), promote 3ms",
		"epoch 1  2026-12-03 07:00:00  - → M  bootstrap\n",
		"node B [A] MASTER candidate p90",
		"relay relay-b [B] ← relay-a", "epoch 1  STALE",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "node M [A] MASTER") {
		t.Errorf("the deposed master is still shown as MASTER")
	}
	if strings.Contains(out.String(), "S [B] p0") {
		t.Errorf("a read replica is listed among the candidates")
	}

	// --json carries the same.
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back Fabric
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	e := back.Election
	if e == nil || !e.Record || e.Epoch != epoch || e.Master != "B" || !e.Live || back.Master != "B" ||
		len(e.History) != 2 || e.History[0].Epoch != epoch || len(e.Candidates) != 3 || e.Candidates[0].ID != "C" {
		t.Fatalf("JSON election: %s", b)
	}

	// One history entry asked for; garbage in the record is shown as such.
	put(election.MasterKey(cluster), []byte("{garbage"))
	v, err = ReadHistory(ctx, cli, cluster, 1)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	v.Render(&out)
	if len(v.Election.History) != 1 || !strings.Contains(out.String(), "master record REFUSED") {
		t.Errorf("after a garbage record, history 1:\n%s", out.String())
	}
}

// applyYAML applies the topology written in yaml to cluster.
func applyYAML(t *testing.T, ctx context.Context, cli *clientv3.Client, cluster, yaml string) {
	t.Helper()
	top, err := topology.ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Apply(ctx, cli, cluster, top); err != nil {
		t.Fatal(err)
	}
}

// putStatus writes v to etcd as the status of the relay or node id (kind
// topology.KindRelay or KindNode), as that relay or agent would publish it.
func putStatus(t *testing.T, ctx context.Context, cli *clientv3.Client, cluster, kind, id string, v any) {
	t.Helper()
	b, err := topology.EncodeStatus(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, topology.StatusKey(cluster, kind, id), string(b)); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
