package fabric

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps a pool reaper until its clients are closed in
		// test cleanups.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func rec(epoch int64, node, addr string) []byte {
	return election.Master{Epoch: epoch, Node: node, RedisAddr: addr, At: time.Now()}.Marshal()
}

// TestMasterGate: the gate follows the newest epoch, refuses an older one
// and garbage (keeping the last good record), keeps its floor in the data
// directory for the same etcd cluster only; the elected master is left out
// of the snapshot sources.
func TestMasterGate(t *testing.T) {
	dir := t.TempDir()
	g := newMasterGate(dir, discardLog())
	g.offer(masterValue{Present: false, EtcdClusterID: 7})
	if m, refused := g.state(); m != nil || refused != "" {
		t.Fatalf("no record: got %+v, %q", m, refused)
	}
	g.offer(masterValue{Present: true, Value: rec(5, "b", "127.0.0.1:2"), EtcdClusterID: 7, Revision: 10})
	if m, _ := g.state(); m == nil || m.Epoch != 5 || m.Node != "b" {
		t.Fatalf("epoch 5 not followed: %+v", m)
	}
	g.offer(masterValue{Present: true, Value: rec(4, "a", "127.0.0.1:1"), EtcdClusterID: 7, Revision: 11})
	if m, refused := g.state(); m.Epoch != 5 || !strings.Contains(refused, ErrStaleEpoch.Error()) {
		t.Fatalf("epoch 4 after 5: following %d, refused %q", m.Epoch, refused)
	}
	g.offer(masterValue{Present: true, Value: []byte("{nope"), EtcdClusterID: 7, Revision: 12})
	if m, refused := g.state(); m.Epoch != 5 || !strings.Contains(refused, election.ErrBadRecord.Error()) {
		t.Fatalf("garbage: following %d, refused %q", m.Epoch, refused)
	}
	g.offer(masterValue{Present: true, Value: rec(5, "b", "127.0.0.1:3"), EtcdClusterID: 7, Revision: 13})
	if m, refused := g.state(); m.RedisAddr != "127.0.0.1:3" || refused != "" {
		t.Fatalf("same epoch, new address: %+v, refused %q", m, refused)
	}
	// The elected master is no snapshot source (an RDB from it would fork
	// it), whatever the topology's master key says.
	u := topology.RelayUpdate{SnapshotSources: []string{"127.0.0.1:3", "127.0.0.1:9"}}
	if got := snapshotSources(u, g); !slices.Equal(got, []string{"127.0.0.1:9"}) {
		t.Errorf("snapshot sources %v, want the elected master's left out", got)
	}
	if got := snapshotSources(u, newMasterGate("", discardLog())); !slices.Equal(got, u.SnapshotSources) {
		t.Errorf("snapshot sources without a record: %v", got)
	}
	g.offer(masterValue{Present: false, EtcdClusterID: 7, Revision: 14})
	if m, _ := g.state(); m == nil || m.Epoch != 5 {
		t.Fatalf("a deleted record drops the master followed: %+v", m)
	}

	// A restarted relay keeps the floor for the same etcd cluster...
	g2 := newMasterGate(dir, discardLog())
	g2.offer(masterValue{Present: true, Value: rec(4, "a", "127.0.0.1:1"), EtcdClusterID: 7, Revision: 20})
	if m, refused := g2.state(); m != nil || !strings.Contains(refused, ErrStaleEpoch.Error()) {
		t.Fatalf("after a restart, epoch 4 below the saved 5: following %+v, refused %q", m, refused)
	}
	// ...but not for another one, whose revisions started again.
	g3 := newMasterGate(dir, discardLog())
	g3.offer(masterValue{Present: true, Value: rec(4, "a", "127.0.0.1:1"), EtcdClusterID: 8, Revision: 3})
	if m, refused := g3.state(); m == nil || m.Epoch != 4 || refused != "" {
		t.Fatalf("another etcd cluster: following %+v, refused %q", m, refused)
	}
	var f epochFloor
	b, _ := os.ReadFile(filepath.Join(dir, EpochFile))
	if err := json.Unmarshal(b, &f); err != nil || f != (epochFloor{EtcdClusterID: 8, Epoch: 4}) {
		t.Fatalf("%s: %s (%v)", EpochFile, b, err)
	}
}

// TestRootRelayFollowsElectedMaster: a root relay under the control plane
// follows the master record of the newest epoch. A backup that replicated
// from the relay is promoted by hand and a record naming it is put: the
// relay moves to it with a partial resync (no new full sync anywhere) and
// a replica under the relay stays equal to the new master. A record of an
// older epoch and an unparsable one are refused (the relay stays, its
// status in etcd says why); a newer record clears the refusal; after etcd
// restarts, an older record is still refused.
func TestRootRelayFollowsElectedMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs etcd, three redis-servers and a relay")
	}
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const cluster = "fo"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	backup := redistest.Start(t, "--repl-backlog-size", "64mb")
	replica := redistest.Start(t)
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 2000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	relayPort := redistest.FreePort(t)
	relayAddr := "127.0.0.1:" + strconv.Itoa(relayPort)
	top, err := topology.ParseYAML([]byte(fmt.Sprintf(`master: M
sites: {A: {}}
relays:
  relay-a: {site: A, redis_addr: %q, upstream: master}
nodes:
  M: {site: A, redis_addr: %q, candidate: true, priority: 100, follow: relay-a}
  B: {site: A, redis_addr: %q, candidate: true, priority: 90, follow: relay-a}
  S: {site: A, redis_addr: %q, follow: relay-a}
`, relayAddr, master.Addr, backup.Addr, replica.Addr)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Apply(ctx, cli, cluster, top); err != nil {
		t.Fatal(err)
	}

	cfg := relay.DefaultConfig()
	cfg.ID, cfg.Site, cfg.DataDir, cfg.RedisAddr = "relay-a", "A", t.TempDir(), relayAddr
	cfg.Logger = discardLog()
	started := make(chan *relay.Relay, 1)
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Relay{Config: cfg, Etcd: cli, Cluster: cluster, Logger: cfg.Logger,
			Started: func(r *relay.Relay) { started <- r }}.Run(rctx)
	}()
	t.Cleanup(func() {
		rcancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	var r *relay.Relay
	select {
	case r = <-started:
	case err := <-done:
		t.Fatalf("relay ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("relay did not start")
	}
	if got, want := r.Status().GetUpstream(), "redis://"+master.Addr; got != want {
		t.Fatalf("relay upstream %q, want the topology's master %q", got, want)
	}
	for _, s := range []*redistest.Server{backup, replica} {
		if err := s.ReplicaOf(ctx, "127.0.0.1", relayPort); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitInSync(t, 60*time.Second, master, backup, replica)
	before := r.Status().GetCounters()

	// The failover, by hand: the master dies, the backup (which holds
	// everything the relay held) is promoted, and the record names it.
	master.Kill()
	if err := backup.ReplicaOfNoOne(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := backup.Info(ctx, "replication")
	if err != nil {
		t.Fatal(err)
	}
	newID := info["master_replid"]
	off, _ := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	putRecord := func(value []byte) {
		t.Helper()
		if _, err := cli.Put(ctx, election.MasterKey(cluster), string(value)); err != nil {
			t.Fatal(err)
		}
	}
	const epoch = 1000
	putRecord(election.Master{Epoch: epoch, Node: "B", RedisAddr: backup.Addr, Replid: newID, Offset: off, Reason: "test", At: time.Now()}.Marshal())
	redistest.WaitFor(t, 30*time.Second, func() error {
		st := r.Status()
		if got, want := st.GetUpstream(), "redis://"+backup.Addr; got != want {
			return fmt.Errorf("relay upstream %q, want the promoted backup %q", got, want)
		}
		if st.GetReplid() != newID {
			return fmt.Errorf("relay replid %s, want the new master's %s", st.GetReplid(), newID)
		}
		if got, want := st.GetCounters().GetUpstreamPartialSyncs(), before.GetUpstreamPartialSyncs()+1; got < want {
			return fmt.Errorf("relay upstream partial syncs %d, want %d", got, want)
		}
		return nil
	})
	if err := redistest.LoadAllTypes(ctx, backup.Client(), redistest.LoadOptions{SmallKeys: 500, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, backup, replica)
	after := r.Status().GetCounters()
	if after.GetUpstreamFullSyncs() != before.GetUpstreamFullSyncs() {
		t.Errorf("relay upstream full syncs %d -> %d: the move to the new master must be a partial resync",
			before.GetUpstreamFullSyncs(), after.GetUpstreamFullSyncs())
	}
	if after.GetFullSyncsServed() != before.GetFullSyncsServed() {
		t.Errorf("relay served %d new full syncs after the failover, want 0", after.GetFullSyncsServed()-before.GetFullSyncsServed())
	}
	if n, err := backup.InfoInt(ctx, "stats", "sync_full"); err != nil || n != 0 {
		t.Errorf("the new master served %d full syncs (%v), want 0", n, err)
	}

	// The relay's status in etcd names the epoch it follows; an older
	// record and garbage are refused while it stays on the new master.
	waitStatus := func(what string, ok func(epoch int64, node, refused string) bool) {
		t.Helper()
		redistest.WaitFor(t, 30*time.Second, func() error {
			sts, err := topology.ReadStatus(ctx, cli, cluster)
			if err != nil {
				return err
			}
			st := sts.Relays["relay-a"]
			if st == nil {
				return fmt.Errorf("no status of relay-a in etcd")
			}
			if !ok(st.GetMasterEpoch(), st.GetMasterNode(), st.GetMasterError()) {
				return fmt.Errorf("relay-a status: epoch %d node %q error %q; want %s",
					st.GetMasterEpoch(), st.GetMasterNode(), st.GetMasterError(), what)
			}
			return nil
		})
	}
	waitStatus("epoch 1000 of B", func(e int64, n, refused string) bool { return e == epoch && n == "B" && refused == "" })
	putRecord(rec(epoch-1, "M", master.Addr))
	waitStatus("the older epoch refused", func(e int64, n, refused string) bool {
		return e == epoch && strings.Contains(refused, ErrStaleEpoch.Error())
	})
	putRecord([]byte(`{"epoch": "x"`))
	waitStatus("garbage refused", func(e int64, n, refused string) bool {
		return e == epoch && strings.Contains(refused, election.ErrBadRecord.Error())
	})
	if got, want := r.Status().GetUpstream(), "redis://"+backup.Addr; got != want {
		t.Errorf("relay upstream %q after refused records, want %q kept", got, want)
	}
	putRecord(election.Master{Epoch: epoch + 1, Node: "B", RedisAddr: backup.Addr, At: time.Now()}.Marshal())
	waitStatus("epoch 1001 followed, no refusal", func(e int64, n, refused string) bool { return e == epoch+1 && refused == "" })
	if err := redistest.LoadAllTypes(ctx, backup.Client(), redistest.LoadOptions{SmallKeys: 200, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, backup, replica)
	if n := r.Status().GetCounters().GetUpstreamFullSyncs(); n != before.GetUpstreamFullSyncs() {
		t.Errorf("relay upstream full syncs %d, want %d", n, before.GetUpstreamFullSyncs())
	}

	// etcd goes away and comes back: the relay reads the record again and
	// still refuses an older epoch than the one it followed.
	etcd.Stop()
	etcd.Restart(t)
	putRecord(rec(epoch-5, "M", master.Addr))
	waitStatus("the older epoch refused after etcd came back", func(e int64, n, refused string) bool {
		return e == epoch+1 && strings.Contains(refused, ErrStaleEpoch.Error())
	})
	if got, want := r.Status().GetUpstream(), "redis://"+backup.Addr; got != want {
		t.Errorf("relay upstream %q after etcd came back, want %q kept", got, want)
	}
}
