package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/topology"
)

// TestRelaysFollowTopology: relays started with only --etcd and --cluster
// take their upstream from the topology; an etcdctl edit re-parents
// relay-c within a second with a partial resync; a bad edit (a cycle) is
// refused, relay-c keeps its upstream and says why; each relay's status is
// on a lease in etcd.
func TestRelaysFollowTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, runs etcd, redis and three relay processes")
	}
	bin := buildArbor(t)
	etcd := etcdtest.Start(t, 1)
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 2000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	type relayAddrs struct{ redis, grpc string }
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
	relays := map[string]relayAddrs{}
	for _, id := range []string{"relay-a", "relay-b", "relay-c"} {
		relays[id] = relayAddrs{redis: addr(), grpc: addr()}
	}
	spec := func(site, upstream string, a relayAddrs) string {
		return fmt.Sprintf(`{"site":%q,"grpc_addr":%q,"redis_addr":%q,"upstream":%q}`, site, a.grpc, a.redis, upstream)
	}
	yaml := fmt.Sprintf(`master: A-Master
sites: {A: {}, B: {}, C: {}}
relays:
  relay-a: {site: A, grpc_addr: %q, redis_addr: %q, upstream: master}
  relay-b: {site: B, grpc_addr: %q, redis_addr: %q, upstream: relay-a}
  relay-c: {site: C, grpc_addr: %q, redis_addr: %q, upstream: relay-a}
nodes:
  A-Master: {site: A, redis_addr: %q, candidate: true, priority: 100, follow: relay-a}
`, relays["relay-a"].grpc, relays["relay-a"].redis, relays["relay-b"].grpc, relays["relay-b"].redis,
		relays["relay-c"].grpc, relays["relay-c"].redis, master.Addr)
	file := filepath.Join(t.TempDir(), "topology.yaml")
	os.WriteFile(file, []byte(yaml), 0o644)
	eflags := []string{"--etcd", strings.Join(etcd.Endpoints(), ","), "--cluster", "live"}
	if out, err := arbor(ctx, append([]string{"topology", "apply", "-f", file}, eflags...)...); err != nil {
		t.Fatalf("topology apply: %v\n%s", err, out)
	}
	sites := map[string]string{"relay-a": "A", "relay-b": "B", "relay-c": "C"}
	for id, a := range relays {
		startRelayProcess(t, bin, append([]string{"relay", "--id", id, "--site", sites[id], "--data-dir", t.TempDir(),
			"--redis-addr", a.redis, "--grpc-addr", a.grpc, "--plaintext"}, eflags...)...)
	}
	var reps []*redistest.Server
	for _, id := range []string{"relay-a", "relay-b", "relay-c"} {
		rep := redistest.Start(t)
		port, _ := strconv.Atoi(relays[id].redis[strings.LastIndex(relays[id].redis, ":")+1:])
		redistest.WaitFor(t, 20*time.Second, func() error { _, err := relayInfoInt(relays[id].redis, "master_repl_offset"); return err })
		if err := rep.ReplicaOf(ctx, "127.0.0.1", port); err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	redistest.WaitInSync(t, 60*time.Second, master, reps...)
	upstreamOf := func(id string) string {
		v, _ := relayInfo(relays[id].redis, "arbor_upstream")
		return v
	}
	if got, want := upstreamOf("relay-c"), "arbor://"+relays["relay-a"].grpc; got != want {
		t.Fatalf("relay-c upstream %q, want %q from the topology", got, want)
	}

	// A live edit with the real etcdctl re-parents relay-c.
	partial, _ := relayInfoInt(relays["relay-c"].redis, "arbor_upstream_partial_syncs")
	began := time.Now()
	etcd.Etcdctl(t, "put", topology.RelayKey("live", "relay-c"), spec("C", "relay-b", relays["relay-c"]))
	redistest.WaitFor(t, 10*time.Second, func() error {
		if got, want := upstreamOf("relay-c"), "arbor://"+relays["relay-b"].grpc; got != want {
			return fmt.Errorf("relay-c upstream %q, want %q", got, want)
		}
		if n, _ := relayInfoInt(relays["relay-c"].redis, "arbor_upstream_partial_syncs"); n != partial+1 {
			return fmt.Errorf("relay-c partial syncs %d, want %d", n, partial+1)
		}
		return nil
	})
	t.Logf("relay-c re-parented and resumed %v after the etcdctl put", time.Since(began))
	if n, _ := relayInfoInt(relays["relay-c"].redis, "arbor_upstream_full_syncs"); n != 1 {
		t.Errorf("relay-c full syncs %d, want 1 (re-parenting needs none)", n)
	}

	// A bad edit: relay-b following relay-c, which follows relay-b.
	etcd.Etcdctl(t, "put", topology.RelayKey("live", "relay-b"), spec("B", "relay-c", relays["relay-b"]))
	redistest.WaitFor(t, 10*time.Second, func() error {
		if v, _ := relayInfo(relays["relay-b"].redis, "arbor_topology_error"); !strings.Contains(v, "cycle") {
			return fmt.Errorf("relay-b topology error %q, want the refused cycle", v)
		}
		return nil
	})
	if got, want := upstreamOf("relay-b"), "arbor://"+relays["relay-a"].grpc; got != want {
		t.Errorf("relay-b upstream %q after a refused edit, want %q kept", got, want)
	}
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 500, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, master, reps...)

	// etcd stops: the relays go on with the topology in force; when etcd is
	// back, they watch again and follow the next edit.
	etcd.Stop()
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 500, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, master, reps...)
	etcd.Restart(t)
	etcd.Etcdctl(t, "put", topology.RelayKey("live", "relay-b"), spec("B", "relay-a", relays["relay-b"]))
	etcd.Etcdctl(t, "put", topology.RelayKey("live", "relay-c"), spec("C", "relay-a", relays["relay-c"]))
	redistest.WaitFor(t, 30*time.Second, func() error {
		if got, want := upstreamOf("relay-c"), "arbor://"+relays["relay-a"].grpc; got != want {
			return fmt.Errorf("relay-c upstream %q after etcd came back, want %q", got, want)
		}
		if v, _ := relayInfo(relays["relay-b"].redis, "arbor_topology_error"); v != "" {
			return fmt.Errorf("relay-b still reports a refused edit: %s", v)
		}
		return nil
	})
	redistest.WaitInSync(t, 60*time.Second, master, reps...)

	// Each relay's status is in etcd, readable with etcdctl.
	redistest.WaitFor(t, 20*time.Second, func() error {
		out := etcd.Etcdctl(t, "get", "--prefix", "--keys-only", topology.StatusPrefix("live")+"relay/")
		for id := range relays {
			if !strings.Contains(out, id) {
				return fmt.Errorf("no status of %s in etcd:\n%s", id, out)
			}
		}
		return nil
	})
}

// relayInfo reads one INFO field of a relay.
func relayInfo(addr, key string) (string, error) {
	n, err := relayInfoRaw(addr)
	if err != nil {
		return "", err
	}
	v, ok := infoValue(n, key)
	if !ok {
		return "", fmt.Errorf("INFO has no %s", key)
	}
	return v, nil
}
