package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// writeStats is what a steady writer saw.
type writeStats struct {
	ok, errs int
	lastErr  error
	longest  time.Duration // longest time between two accepted writes
}

// steadyWriter writes to the master (SET, one at a time) until stopped, at
// most maxOps writes or until ctx ends, and counts refused writes and the
// longest stall between two accepted ones.
type steadyWriter struct {
	cancel   context.CancelFunc
	done     chan writeStats
	accepted atomic.Int64 // writes accepted so far, for waitAccepted
}

func startWriter(ctx context.Context, c *redis.Client, maxOps int) *steadyWriter {
	ctx, cancel := context.WithCancel(ctx)
	w := &steadyWriter{cancel: cancel, done: make(chan writeStats, 1)}
	go func() {
		var s writeStats
		last := time.Now()
		for i := 0; i < maxOps && ctx.Err() == nil; i++ {
			err := c.Set(ctx, "w:"+strconv.Itoa(i%2000), i, 0).Err()
			now := time.Now()
			if err != nil {
				if ctx.Err() == nil {
					s.errs++
					s.lastErr = err
				}
				time.Sleep(5 * time.Millisecond) // bounded: the loop is bounded by maxOps and ctx
				continue
			}
			s.ok++
			w.accepted.Add(1)
			if d := now.Sub(last); d > s.longest {
				s.longest = d
			}
			last = now
			time.Sleep(time.Millisecond)
		}
		w.done <- s
	}()
	return w
}

// waitAccepted waits until the writer has had n more writes accepted
// than when it was called: writes are flowing, not just started.
func (w *steadyWriter) waitAccepted(t *testing.T, n int64) {
	t.Helper()
	from := w.accepted.Load()
	redistest.WaitFor(t, 30*time.Second, func() error {
		if got := w.accepted.Load() - from; got < n {
			return fmt.Errorf("%d writes accepted, want %d", got, n)
		}
		return nil
	})
}

func (w *steadyWriter) stop() writeStats {
	w.cancel()
	return <-w.done
}

// haCluster is the relay tree of the HA tests: etcd, a master with
// min-replicas-to-write 1, relays as `arbor relay --etcd` processes, and a
// Redis replica under each relay (attached directly, no node agent).
type haCluster struct {
	t        *testing.T
	bin      string
	etcd     *etcdtest.Cluster
	cluster  string
	master   *redistest.Server
	relays   map[string]*haRelay
	replicas map[string]*redistest.Server // by the relay they hang off
	eflags   []string
}

// nodeOf names the node (and its replica) under each relay, with nodes.
var nodeOf = map[string]string{"a1": "as1", "a2": "as2", "b1": "bs1", "b2": "bs2"}

type haRelay struct {
	id, site, upstream string
	redis, grpc        string
	dataDir            string
	proc               *relayProcess
}

func (h *haRelay) port() int {
	p, _ := strconv.Atoi(h.redis[strings.LastIndex(h.redis, ":")+1:])
	return p
}

// startHACluster starts relays a1, a2 (following the master) and b1, b2
// (declared under a1), with a replica under each: attached by REPLICAOF,
// or with nodes, declared in the topology as following that relay and
// steered there by an `arbor node` process.
func startHACluster(t *testing.T, holdDown time.Duration, nodes bool) *haCluster {
	ctx := context.Background()
	h := &haCluster{t: t, bin: buildArbor(t), etcd: etcdtest.Start(t, 1), cluster: "ha",
		relays: map[string]*haRelay{}, replicas: map[string]*redistest.Server{}}
	h.master = redistest.Start(t, "--repl-backlog-size", "64mb")
	if err := redistest.LoadAllTypes(ctx, h.master.Client(), redistest.LoadOptions{SmallKeys: 2000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
	for _, r := range []struct{ id, site, up string }{
		{"a1", "A", "master"}, {"a2", "A", "master"}, {"b1", "B", "a1"}, {"b2", "B", "a1"},
	} {
		h.relays[r.id] = &haRelay{id: r.id, site: r.site, upstream: r.up, redis: addr(), grpc: addr(), dataDir: t.TempDir()}
	}
	var b strings.Builder
	b.WriteString("master: A-Master\nsites: {A: {}, B: {}}\nrelays:\n")
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		r := h.relays[id]
		fmt.Fprintf(&b, "  %s: {site: %s, grpc_addr: %q, redis_addr: %q, upstream: %s}\n", id, r.site, r.grpc, r.redis, r.upstream)
	}
	fmt.Fprintf(&b, "nodes:\n  A-Master: {site: A, redis_addr: %q, candidate: true, priority: 100, follow: a1}\n", h.master.Addr)
	if nodes {
		for _, id := range []string{"a1", "a2", "b1", "b2"} {
			h.replicas[id] = redistest.Start(t)
			fmt.Fprintf(&b, "  %s: {site: %s, redis_addr: %q, follow: %s}\n", nodeOf[id], h.relays[id].site, h.replicas[id].Addr, id)
		}
	}
	file := filepath.Join(t.TempDir(), "topology.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	h.eflags = []string{"--etcd", strings.Join(h.etcd.Endpoints(), ","), "--cluster", h.cluster}
	if out, err := arbor(ctx, append([]string{"topology", "apply", "-f", file}, h.eflags...)...); err != nil {
		t.Fatalf("topology apply: %v\n%s", err, out)
	}
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		r := h.relays[id]
		r.proc = startRelayProcess(t, h.bin, append([]string{"relay", "--id", id, "--site", r.site, "--data-dir", r.dataDir,
			"--redis-addr", r.redis, "--grpc-addr", r.grpc, "--plaintext", "--log-level", "debug",
			"--move-after", "1s", "--hold-down", holdDown.String()}, h.eflags...)...)
	}
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		r := h.relays[id]
		if nodes {
			startRelayProcess(t, h.bin, append([]string{"node", "--elect=false", "--id", nodeOf[id], "--site", r.site,
				"--redis", "redis://" + h.replicas[id].Addr, "--log-level", "debug",
				"--move-after", "1s", "--hold-down", holdDown.String()}, h.eflags...)...)
			continue
		}
		rep := redistest.Start(t)
		redistest.WaitFor(t, 30*time.Second, func() error { _, err := relayInfoInt(r.redis, "master_repl_offset"); return err })
		if err := rep.ReplicaOf(ctx, "127.0.0.1", r.port()); err != nil {
			t.Fatal(err)
		}
		h.replicas[id] = rep
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		info, _ := h.master.Info(ctx, "replication")
		t.Logf("master %s: offset %s replid %s", h.master.Addr, info["master_repl_offset"], info["master_replid"])
		for _, id := range []string{"a1", "a2", "b1", "b2"} {
			info, _ := h.replicas[id].Info(ctx, "replication")
			t.Logf("replica under %s (%s, %s): master_port %s link %s offset %s replid %s replid2 %s", id, nodeOf[id], h.replicas[id].Addr,
				info["master_port"], info["master_link_status"], info["master_repl_offset"], info["master_replid"], info["master_replid2"])
		}
	})
	redistest.WaitInSync(t, 90*time.Second, h.master, h.allReplicas()...)
	// Writes need one acking relay from now on: with a1 and a2 both
	// following the master, either one's death must not stop them.
	for _, kv := range [][2]string{{"min-replicas-to-write", "1"}, {"min-replicas-max-lag", "3"}} {
		if err := h.master.Client().ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *haCluster) allReplicas() []*redistest.Server {
	var out []*redistest.Server
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		out = append(out, h.replicas[id])
	}
	return out
}

// upstream is the upstream the relay follows now (INFO arbor_upstream).
func (h *haCluster) upstream(id string) string {
	v, _ := relayInfo(h.relays[id].redis, "arbor_upstream")
	return v
}

func (h *haCluster) grpcURL(id string) string { return "arbor://" + h.relays[id].grpc }

// counters reads the sync counters that must not move in a failover: each
// relay's full syncs from its upstream and full syncs served to replicas.
func (h *haCluster) counters(ids ...string) map[string]int64 {
	out := map[string]int64{}
	for _, id := range ids {
		for _, k := range []string{"arbor_upstream_full_syncs", "sync_full"} {
			n, err := relayInfoInt(h.relays[id].redis, k)
			if err != nil {
				h.t.Fatalf("%s %s: %v", id, k, err)
			}
			out[id+" "+k] = n
		}
	}
	return out
}

func (h *haCluster) checkCounters(before map[string]int64) {
	h.t.Helper()
	for k, v := range before {
		id, key, _ := strings.Cut(k, " ")
		if n, _ := relayInfoInt(h.relays[id].redis, key); n != v {
			h.t.Errorf("%s %s: %d, was %d: a move must not cost a full sync", id, key, n, v)
		}
	}
}

// waitUpstream waits until each relay in want follows the relay named.
func (h *haCluster) waitUpstream(timeout time.Duration, want map[string]string) {
	h.t.Helper()
	redistest.WaitFor(h.t, timeout, func() error {
		for id, parent := range want {
			if got := h.upstream(id); got != h.grpcURL(parent) {
				return fmt.Errorf("%s follows %s, want %s (%s)", id, got, parent, h.grpcURL(parent))
			}
			if st, _ := relayInfo(h.relays[id].redis, "master_link_status"); st != "up" {
				return fmt.Errorf("%s: link %s", id, st)
			}
		}
		return nil
	})
}

// moveOf reads the move a relay published in etcd.
func (h *haCluster) moveOf(id string) (from, to, reason string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli := h.etcd.Client(h.t)
	sts, err := topology.ReadStatus(ctx, cli, h.cluster)
	if err != nil {
		return "", "", "", err
	}
	st, ok := sts.Relays[id]
	if !ok {
		return "", "", "", errors.New("no status of " + id)
	}
	m := st.GetMove()
	return m.GetFrom(), m.GetTo(), m.GetReason(), nil
}

// TestRelayHAMoveAfterFloor: --move-after below topology.MinSilence is
// refused: a parent heartbeats an idle link every 250 ms, so a bound
// near that made a relay on an idle stream move between its parents
// every half second ("link silent for 231ms" with --move-after 200ms).
func TestRelayHAMoveAfterFloor(t *testing.T) {
	for _, c := range []struct {
		moveAfter string
		ok        bool
	}{{"100ms", false}, {"200ms", false}, {"499ms", false}, {"500ms", true}, {"1s", true}} {
		fs := newRelayCmd().Flags()
		if err := fs.Set("move-after", c.moveAfter); err != nil {
			t.Fatal(err)
		}
		if _, err := relayHAConfig(fs); (err == nil) != c.ok {
			t.Errorf("--move-after %s: err %v, want ok %v", c.moveAfter, err, c.ok)
		}
	}
}

// TestRelayHAMoveAfterDownFloor: --move-after-down below topology.MinDown
// is refused, naming the flag (a relay judges its link every 100 ms and
// redials a cut link after 100 ms); it is not bounded by --move-after.
func TestRelayHAMoveAfterDownFloor(t *testing.T) {
	for _, c := range []struct {
		down string
		ok   bool
	}{{"0s", false}, {"100ms", false}, {"199ms", false}, {"200ms", true}, {"500ms", true}, {"5s", true}} {
		fs := newRelayCmd().Flags()
		if err := fs.Set("move-after-down", c.down); err != nil {
			t.Fatal(err)
		}
		ha, err := relayHAConfig(fs)
		if (err == nil) != c.ok {
			t.Errorf("--move-after-down %s: err %v, want ok %v", c.down, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "move-after-down "+c.down) {
			t.Errorf("--move-after-down %s: error %q does not name the flag and value", c.down, err)
		}
		if err == nil && ha.moveAfterDown.String() != c.down {
			t.Errorf("--move-after-down %s: got %v", c.down, ha.moveAfterDown)
		}
	}
}

// TestRelayHAKillAndPause: two relays in site A follow the master (which
// needs one acking replica to take writes), two in site B are declared
// under a1. a1 is killed with SIGKILL under steady writes: the writes keep
// being accepted, b1 and b2 move to a2 within the bound with a partial
// resync (no full sync anywhere), their status says so, every replica
// stays equal to the master. a1 restarts: b1 and b2 return only after the
// hold-down. Then a1 is paused with SIGSTOP past the bound: b1 and b2
// move again, stay on a2 after SIGCONT until the hold-down, then return;
// digests equal throughout.
func TestRelayHAKillAndPause(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, runs etcd, five redis-servers and four relay processes")
	}
	const holdDown = 8 * time.Second
	h := startHACluster(t, holdDown, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h.waitUpstream(20*time.Second, map[string]string{"b1": "a1", "b2": "a1"})
	before := h.counters("a2", "b1", "b2")

	// 1. SIGKILL of a1 under steady writes.
	w := startWriter(ctx, h.master.Client(), 200000)
	redistest.WaitFor(t, 10*time.Second, func() error {
		if n, _ := h.master.InfoInt(ctx, "replication", "master_repl_offset"); n == 0 {
			return errors.New("no writes yet")
		}
		return nil
	})
	w.waitAccepted(t, 100) // writes flow before the kill
	h.relays["a1"].proc.signal(syscall.SIGKILL)
	killed := time.Now()
	h.waitUpstream(20*time.Second, map[string]string{"b1": "a2", "b2": "a2"})
	t.Logf("b1 and b2 streaming from a2 %v after a1's SIGKILL", time.Since(killed).Round(time.Millisecond))
	w.waitAccepted(t, 100) // writes flow after the move
	ws := w.stop()
	t.Logf("writer: %d accepted, %d refused (last: %v), longest stall %v", ws.ok, ws.errs, ws.lastErr, ws.longest.Round(time.Millisecond))
	if ws.errs != 0 {
		t.Errorf("writes refused while a2 was healthy: %d (last: %v)", ws.errs, ws.lastErr)
	}
	for _, id := range []string{"b1", "b2"} {
		from, to, reason, err := h.moveOf(id)
		if err != nil || from != "a1" || to != "a2" || reason == "" {
			t.Errorf("%s status move: from %q to %q why %q (%v), want a1 -> a2 with a reason", id, from, to, reason, err)
		}
	}
	live := []*redistest.Server{h.replicas["a2"], h.replicas["b1"], h.replicas["b2"]}
	redistest.WaitInSync(t, 60*time.Second, h.master, live...)
	h.checkCounters(before)

	// a1 comes back: no return before the hold-down, then back.
	h.relays["a1"].proc.start()
	back := time.Now()
	redistest.WaitFor(t, 30*time.Second, func() error {
		if st, _ := relayInfo(h.relays["a1"].redis, "master_link_status"); st != "up" {
			return fmt.Errorf("a1 link %q", st)
		}
		return nil
	})
	h.waitUpstream(holdDown+30*time.Second, map[string]string{"b1": "a1", "b2": "a1"})
	if d := time.Since(back); d < holdDown {
		t.Errorf("b1 and b2 back on a1 %v after it restarted, before the hold-down %v", d, holdDown)
	}
	redistest.WaitInSync(t, 60*time.Second, h.master, h.allReplicas()...)
	before = h.counters("a2", "b1", "b2")

	// 2. SIGSTOP of a1 past the bound, then SIGCONT.
	w = startWriter(ctx, h.master.Client(), 200000)
	h.relays["a1"].proc.cmd.Process.Signal(syscall.SIGSTOP)
	paused := time.Now()
	t.Cleanup(func() {
		if p := h.relays["a1"].proc.cmd; p != nil {
			p.Process.Signal(syscall.SIGCONT)
		}
	})
	h.waitUpstream(20*time.Second, map[string]string{"b1": "a2", "b2": "a2"})
	t.Logf("b1 and b2 streaming from a2 %v after a1's SIGSTOP", time.Since(paused).Round(time.Millisecond))
	for _, id := range []string{"b1", "b2"} {
		if _, _, reason, _ := h.moveOf(id); !strings.Contains(reason, "a1") {
			t.Errorf("%s move reason %q does not name a1", id, reason)
		}
	}
	time.Sleep(2 * time.Second) // a1 stays paused past the bound
	h.relays["a1"].proc.cmd.Process.Signal(syscall.SIGCONT)
	resumed := time.Now()
	// Nobody flaps back within the hold-down: watch until it ends.
	for time.Since(resumed) < holdDown-time.Second {
		for _, id := range []string{"b1", "b2"} {
			if got := h.upstream(id); got != h.grpcURL("a2") {
				t.Fatalf("%s follows %s %v after a1's SIGCONT, within the hold-down %v", id, got, time.Since(resumed), holdDown)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.waitUpstream(holdDown+30*time.Second, map[string]string{"b1": "a1", "b2": "a1"})
	ws = w.stop()
	t.Logf("writer: %d accepted, %d refused (last: %v), longest stall %v", ws.ok, ws.errs, ws.lastErr, ws.longest.Round(time.Millisecond))
	if ws.errs != 0 {
		t.Errorf("writes refused while a2 was healthy: %d (last: %v)", ws.errs, ws.lastErr)
	}
	redistest.WaitInSync(t, 60*time.Second, h.master, h.allReplicas()...)
	if err := redistest.CompareDigests(ctx, h.master, h.allReplicas()...); err != nil {
		t.Error(err)
	}
	h.checkCounters(before)
}

// waitFollows waits until the replica of each node follows the relay
// named, with its link up.
func (h *haCluster) waitFollows(timeout time.Duration, want map[string]string) {
	h.t.Helper()
	ctx := context.Background()
	redistest.WaitFor(h.t, timeout, func() error {
		for under, relay := range want {
			info, err := h.replicas[under].Info(ctx, "replication")
			if err != nil {
				return err
			}
			if got := info["master_port"]; got != strconv.Itoa(h.relays[relay].port()) || info["master_link_status"] != "up" {
				return fmt.Errorf("%s replicates from port %s (link %s), want %s on %d", nodeOf[under], got, info["master_link_status"], relay, h.relays[relay].port())
			}
		}
		return nil
	})
}

// nodeMove reads the move a node agent published in etcd.
func (h *haCluster) nodeMove(id string) (follow, from, to, reason string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts, err := topology.ReadStatus(ctx, h.etcd.Client(h.t), h.cluster)
	if err != nil {
		return "", "", "", "", err
	}
	st, ok := sts.Nodes[id]
	if !ok {
		return "", "", "", "", errors.New("no status of " + id)
	}
	m := st.GetMove()
	return st.GetEffectiveFollow(), m.GetFrom(), m.GetTo(), m.GetReason(), nil
}

// TestNodeHASiteLoss: node agents steer a replica under each of a1, a2,
// b1, b2. a1 is killed with SIGKILL under writes: its replica moves to a2
// (the same site) with a partial resync, and its status says so. a1 is
// back; then both relays of site B are killed: their replicas fall back
// to a relay of site A with a partial resync; b2 comes back: both return
// to site B after the hold-down, not before (bs2 to its declared b2,
// bs1 to b2 as the relay of its site), again without a full sync; every
// replica ends equal to the master.
func TestNodeHASiteLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, runs etcd, five redis-servers, four relay and four node processes")
	}
	const holdDown = 6 * time.Second
	h := startHACluster(t, holdDown, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h.waitFollows(60*time.Second, map[string]string{"a1": "a1", "a2": "a2", "b1": "b1", "b2": "b2"})
	redistest.WaitInSync(t, 90*time.Second, h.master, h.allReplicas()...)
	a2full, _ := relayInfoInt(h.relays["a2"].redis, "sync_full")

	// SIGKILL of a1 under writes: as1 moves to a2.
	w := startWriter(ctx, h.master.Client(), 200000)
	w.waitAccepted(t, 100) // writes flow before the kill
	h.relays["a1"].proc.signal(syscall.SIGKILL)
	killed := time.Now()
	h.waitFollows(20*time.Second, map[string]string{"a1": "a2"})
	t.Logf("as1 streaming from a2 %v after a1's SIGKILL", time.Since(killed).Round(time.Millisecond))
	redistest.WaitFor(t, 10*time.Second, func() error {
		follow, from, to, reason, err := h.nodeMove("as1")
		if err != nil || follow != "a2" || from != "a1" || to != "a2" || !strings.Contains(reason, "same site") {
			return fmt.Errorf("as1 status: follows %q, moved %q -> %q: %q (%v)", follow, from, to, reason, err)
		}
		return nil
	})
	ws := w.stop()
	t.Logf("writer: %d accepted, %d refused (last: %v), longest stall %v", ws.ok, ws.errs, ws.lastErr, ws.longest.Round(time.Millisecond))
	if ws.errs != 0 {
		t.Errorf("writes refused while a2 was healthy: %d (last: %v)", ws.errs, ws.lastErr)
	}
	redistest.WaitInSync(t, 60*time.Second, h.master, h.replicas["a1"], h.replicas["a2"], h.replicas["b1"], h.replicas["b2"])

	// a1 is back (b1 and b2 return to it after the hold-down).
	h.relays["a1"].proc.start()
	h.waitUpstream(holdDown+30*time.Second, map[string]string{"b1": "a1", "b2": "a1"})
	h.waitFollows(holdDown+30*time.Second, map[string]string{"a1": "a1"})

	// Site B loses both relays: its replicas fall back to site A.
	w = startWriter(ctx, h.master.Client(), 200000)
	h.relays["b1"].proc.signal(syscall.SIGKILL)
	h.relays["b2"].proc.signal(syscall.SIGKILL)
	killed = time.Now()
	redistest.WaitFor(t, 20*time.Second, func() error {
		for _, under := range []string{"b1", "b2"} {
			follow, _, _, reason, err := h.nodeMove(nodeOf[under])
			if err != nil || (follow != "a1" && follow != "a2") || !strings.Contains(reason, "parent site") {
				return fmt.Errorf("%s follows %q (%q, %v), want a relay of site A", nodeOf[under], follow, reason, err)
			}
			info, err := h.replicas[under].Info(ctx, "replication")
			if err != nil || info["master_link_status"] != "up" {
				return fmt.Errorf("%s link %q (%v)", nodeOf[under], info["master_link_status"], err)
			}
		}
		return nil
	})
	t.Logf("site B's replicas streaming from site A %v after its relays' SIGKILL", time.Since(killed).Round(time.Millisecond))

	// b2 comes back: both return to it, after the hold-down.
	h.relays["b2"].proc.start()
	back := time.Now()
	redistest.WaitFor(t, 30*time.Second, func() error {
		if st, _ := relayInfo(h.relays["b2"].redis, "master_link_status"); st != "up" {
			return fmt.Errorf("b2 link %q", st)
		}
		return nil
	})
	h.waitFollows(holdDown+30*time.Second, map[string]string{"b1": "b2", "b2": "b2"})
	if d := time.Since(back); d < holdDown {
		t.Errorf("site B's replicas back on b2 %v after it restarted, before the hold-down %v", d, holdDown)
	}
	ws = w.stop()
	t.Logf("writer: %d accepted, %d refused (last: %v), longest stall %v", ws.ok, ws.errs, ws.lastErr, ws.longest.Round(time.Millisecond))
	redistest.WaitInSync(t, 60*time.Second, h.master, h.allReplicas()...)
	if err := redistest.CompareDigests(ctx, h.master, h.allReplicas()...); err != nil {
		t.Error(err)
	}
	if n, _ := relayInfoInt(h.relays["a2"].redis, "sync_full"); n != a2full {
		t.Errorf("a2 sync_full %d, was %d: the moves to it must be partial", n, a2full)
	}
	if n, _ := relayInfoInt(h.relays["a1"].redis, "sync_full"); n != 0 {
		t.Errorf("a1 (restarted) sync_full %d: the moves to it must be partial", n)
	}
	if n, _ := relayInfoInt(h.relays["b2"].redis, "sync_full"); n != 0 {
		t.Errorf("b2 (restarted) sync_full %d: the returns to it must be partial", n)
	}
}

// TestRelayHAUpstreamList: without etcd, relay b follows
// "arbor://a1,arbor://a2". a1 is killed with SIGKILL under writes (the
// master needs one acking relay): b moves to a2 within the bound with a
// partial resync, its replica too; a1 restarts and b returns to it after
// the hold-down, not before; digests equal. A bad list is refused with an
// error naming the element.
func TestRelayHAUpstreamList(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, runs two redis-servers and three relay processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, bad := range []struct{ list, says string }{
		{"arbor://127.0.0.1:1,,arbor://127.0.0.1:2", "upstream 2"},
		{"arbor://127.0.0.1:1,arbor://127.0.0.1:1", "the same as upstream 1"},
		{"arbor://127.0.0.1:1,ftp://127.0.0.1:2", "upstream 2 (ftp://127.0.0.1:2)"},
	} {
		out, err := arbor(ctx, "relay", "--id", "x", "--data-dir", t.TempDir(), "--upstream", bad.list, "--plaintext")
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("--upstream %s: %v (%s), want an error saying %q", bad.list, err, out, bad.says)
		}
	}

	const holdDown = 6 * time.Second
	bin := buildArbor(t)
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	if err := redistest.LoadAllTypes(ctx, master.Client(), redistest.LoadOptions{SmallKeys: 2000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) }
	type rel struct {
		redis, grpc string
		proc        *relayProcess
	}
	rs := map[string]*rel{}
	for _, id := range []string{"a1", "a2", "b"} {
		rs[id] = &rel{redis: addr(), grpc: addr()}
	}
	start := func(id, upstream string) {
		rs[id].proc = startRelayProcess(t, bin, "relay", "--id", id, "--site", "A", "--data-dir", t.TempDir(),
			"--redis-addr", rs[id].redis, "--grpc-addr", rs[id].grpc, "--plaintext", "--log-level", "debug",
			"--upstream", upstream, "--move-after", "1s", "--hold-down", holdDown.String())
	}
	start("a1", "redis://"+master.Addr)
	start("a2", "redis://"+master.Addr)
	start("b", "arbor://"+rs["a1"].grpc+",arbor://"+rs["a2"].grpc)
	rep := redistest.Start(t)
	redistest.WaitFor(t, 30*time.Second, func() error { _, err := relayInfoInt(rs["b"].redis, "master_repl_offset"); return err })
	port, _ := strconv.Atoi(rs["b"].redis[strings.LastIndex(rs["b"].redis, ":")+1:])
	if err := rep.ReplicaOf(ctx, "127.0.0.1", port); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, master, rep)
	for _, kv := range [][2]string{{"min-replicas-to-write", "1"}, {"min-replicas-max-lag", "3"}} {
		if err := master.Client().ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	follows := func(id string, timeout time.Duration) {
		t.Helper()
		redistest.WaitFor(t, timeout, func() error {
			if got, _ := relayInfo(rs["b"].redis, "arbor_upstream"); got != "arbor://"+rs[id].grpc {
				return fmt.Errorf("b follows %s, want %s (arbor://%s)", got, id, rs[id].grpc)
			}
			if st, _ := relayInfo(rs["b"].redis, "master_link_status"); st != "up" {
				return fmt.Errorf("b link %s", st)
			}
			return nil
		})
	}
	follows("a1", 20*time.Second)
	// The Status RPC (what grpcurl shows) says where b streams from and
	// why it moved, as a relay under etcd says it.
	parent := func(id string, moved bool) {
		t.Helper()
		want := "arbor://" + rs[id].grpc
		redistest.WaitFor(t, 20*time.Second, func() error {
			st, err := grpcRelayStatus(ctx, rs["b"].grpc)
			if err != nil {
				return err
			}
			if got := st.GetEffectiveUpstream(); got != want {
				return fmt.Errorf("b's Status: effective_upstream %q, want %q", got, want)
			}
			m := st.GetMove()
			switch {
			case !moved && m != nil:
				return fmt.Errorf("b's Status: move %v on its first upstream", m)
			case moved && (m.GetFrom() != "arbor://"+rs["a1"].grpc || m.GetTo() != want || m.GetReason() == "" || m.GetAtUnixMs() == 0):
				return fmt.Errorf("b's Status: move %v, want from a1 to %s with a reason and a time", m, id)
			}
			return nil
		})
	}
	parent("a1", false)
	moves := func(want int64) {
		t.Helper()
		if n, err := relayInfoInt(rs["b"].redis, "arbor_parent_moves"); err != nil || n != want {
			t.Errorf("b's arbor_parent_moves %d (%v), want %d", n, err, want)
		}
	}
	moves(0)
	fullUp, _ := relayInfoInt(rs["b"].redis, "arbor_upstream_full_syncs")
	fullServed, _ := relayInfoInt(rs["b"].redis, "sync_full")

	w := startWriter(ctx, master.Client(), 200000)
	w.waitAccepted(t, 100) // writes flow before the kill
	rs["a1"].proc.signal(syscall.SIGKILL)
	killed := time.Now()
	follows("a2", 20*time.Second)
	t.Logf("b streaming from a2 %v after a1's SIGKILL", time.Since(killed).Round(time.Millisecond))
	parent("a2", true)
	moves(1)

	rs["a1"].proc.start()
	back := time.Now()
	follows("a1", holdDown+30*time.Second)
	if d := time.Since(back); d < holdDown {
		t.Errorf("b back on a1 %v after it restarted, before the hold-down %v", d, holdDown)
	}
	parent("a1", false)
	moves(2)
	ws := w.stop()
	t.Logf("writer: %d accepted, %d refused (last: %v), longest stall %v", ws.ok, ws.errs, ws.lastErr, ws.longest.Round(time.Millisecond))
	if ws.errs != 0 {
		t.Errorf("writes refused while a2 was healthy: %d (last: %v)", ws.errs, ws.lastErr)
	}
	redistest.WaitInSync(t, 60*time.Second, master, rep)
	if err := redistest.CompareDigests(ctx, master, rep); err != nil {
		t.Error(err)
	}
	if n, _ := relayInfoInt(rs["b"].redis, "arbor_upstream_full_syncs"); n != fullUp {
		t.Errorf("b upstream full syncs %d, was %d: moving must be partial", n, fullUp)
	}
	if n, _ := relayInfoInt(rs["b"].redis, "sync_full"); n != fullServed {
		t.Errorf("b sync_full %d, was %d: its replica must continue", n, fullServed)
	}
}

// grpcRelayStatus asks the relay at addr (plaintext gRPC) for its Status.
func grpcRelayStatus(ctx context.Context, addr string) (*arborv1.RelayStatus, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := arborv1.NewRelayServiceClient(conn).Status(ctx, &arborv1.StatusRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetRelay(), nil
}
