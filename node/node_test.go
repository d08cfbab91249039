package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// deadManTestEnv makes the test binary run as a dead-man switch process
// (see TestFailoverDeadManSwitch).
const deadManTestEnv = "ARBOR_TEST_DEAD_MAN_SWITCH"

func TestMain(m *testing.M) {
	if os.Getenv(deadManTestEnv) == "1" {
		if err := RunDeadManSwitch(context.Background(), os.Stdin, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// go-redis retries a failed dial in a goroutine that sleeps a
		// second, past Close (the agent of a killed Redis).
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fabric is a small real fabric: a master M, two Redis replicas of it
// standing in for two relays' Redis sides (R1, R2), and a node N whose
// agent the test runs.
type fabric struct {
	etcd      *etcdtest.Cluster
	cli       *clientv3.Client
	cluster   string
	m, r1, r2 *redistest.Server
	n         *redistest.Server
	topology  *topology.Topology
	ctx       context.Context
}

func newFabric(t *testing.T, members int) *fabric {
	f := &fabric{etcd: etcdtest.Start(t, members), cluster: "nodetest"}
	f.cli = f.etcd.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx
	f.m = redistest.Start(t)
	f.r1 = redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(f.m.Port))
	f.r2 = redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(f.m.Port))
	f.n = redistest.Start(t)
	top := topology.New()
	top.Sites["A"] = topology.Site{Name: "A"}
	top.Master = "m"
	top.Nodes["m"] = topology.NodeSpec{ID: "m", Site: "A", RedisAddr: f.m.Addr, Candidate: true, Priority: 10, Follow: "r1"}
	top.Nodes["n"] = topology.NodeSpec{ID: "n", Site: "A", RedisAddr: f.n.Addr, Follow: "r1"}
	top.Relays["r1"] = topology.RelaySpec{ID: "r1", Site: "A", RedisAddr: f.r1.Addr, GRPCAddr: "127.0.0.1:1", Upstream: "master"}
	top.Relays["r2"] = topology.RelaySpec{ID: "r2", Site: "A", RedisAddr: f.r2.Addr, GRPCAddr: "127.0.0.1:2", Upstream: "master"}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}
	f.topology = top
	return f
}

// runAgent runs an agent for node id until the test ends (or stop is
// called); edit, if given, changes its config first.
func (f *fabric) runAgent(t *testing.T, id string, redis *redistest.Server, edit ...func(*Config)) (a *Agent, stop func()) {
	cfg := DefaultConfig()
	cfg.ID, cfg.Site, cfg.Cluster = id, "A", f.cluster
	cfg.Redis = "redis://" + redis.Addr
	cfg.StatusInterval = 200 * time.Millisecond
	cfg.StatusTTL = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("agent", id)
	for _, e := range edit {
		e(&cfg)
	}
	a, err := New(cfg, f.cli)
	if err != nil {
		t.Fatal(err)
	}
	return a, runUntilStopped(t, id, a)
}

// runUntilStopped runs the agent until the test ends or stop is called;
// an error from Run fails the test.
func runUntilStopped(t *testing.T, id string, a *Agent) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent %s: %v", id, err)
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// masterPort returns the port the Redis replicates from, or 0 for a
// master.
func masterPort(ctx context.Context, s *redistest.Server) (int, error) {
	info, err := s.Info(ctx, "replication")
	if err != nil {
		return 0, err
	}
	if info["role"] == "master" {
		return 0, nil
	}
	return strconv.Atoi(info["master_port"])
}

func waitFollows(t *testing.T, ctx context.Context, s, upstream *redistest.Server, timeout time.Duration) {
	t.Helper()
	redistest.WaitFor(t, timeout, func() error {
		p, err := masterPort(ctx, s)
		if err != nil {
			return err
		}
		if p != upstream.Port {
			return fmt.Errorf("%s replicates from port %d, want %d", s.Addr, p, upstream.Port)
		}
		return nil
	})
}

func (f *fabric) waitStatus(t *testing.T, id string, timeout time.Duration, check func(*arborv1.NodeStatus) error) {
	t.Helper()
	redistest.WaitFor(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
		defer cancel()
		st, err := topology.ReadStatus(ctx, f.cli, f.cluster)
		if err != nil {
			return err
		}
		return check(st.Nodes[id])
	})
}

func (f *fabric) putNode(t *testing.T, spec topology.NodeSpec) {
	t.Helper()
	f.etcd.Etcdctl(t, "put", topology.NodeKey(f.cluster, spec.ID),
		fmt.Sprintf(`{"site":%q,"redis_addr":%q,"follow":%q}`, spec.Site, spec.RedisAddr, spec.Follow))
}

func TestAgentFollowsTopology(t *testing.T) {
	f := newFabric(t, 1)
	ctx := f.ctx
	f.runAgent(t, "m", f.m)
	f.runAgent(t, "n", f.n)

	// Bring-up: N (a fresh master) is pointed at R1; M stays the master.
	waitFollows(t, ctx, f.n, f.r1, 10*time.Second)
	if p, err := masterPort(ctx, f.m); err != nil || p != 0 {
		t.Fatalf("the master node replicates from port %d (%v)", p, err)
	}
	if err := redistest.LoadAllTypes(ctx, f.m.Client(), redistest.LoadOptions{SmallKeys: 100, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 20*time.Second, f.m, f.r1, f.r2, f.n)
	f.waitStatus(t, "n", 10*time.Second, func(st *arborv1.NodeStatus) error {
		want := fmt.Sprintf("role:%v link:%v healthy:true err:", arborv1.NodeRole_NODE_ROLE_REPLICA, arborv1.LinkState_LINK_STATE_STREAMING)
		got := fmt.Sprintf("role:%v link:%v healthy:%v err:%s", st.GetRole(), st.GetLinkState(), st.GetHealthy(), st.GetLastError())
		if got != want || st.GetOffset() == 0 || st.GetLagBytes() != 0 {
			return fmt.Errorf("n status %v, want %s, an offset and no lag", st, want)
		}
		return nil
	})
	f.waitStatus(t, "m", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if st.GetRole() != arborv1.NodeRole_NODE_ROLE_MASTER || !st.GetHealthy() || st.GetLastError() != "" {
			return fmt.Errorf("m status %v", st)
		}
		return nil
	})

	// An etcdctl edit of n's follow re-points its Redis.
	start := time.Now()
	f.putNode(t, topology.NodeSpec{ID: "n", Site: "A", RedisAddr: f.n.Addr, Follow: "r2"})
	waitFollows(t, ctx, f.n, f.r2, 10*time.Second)
	t.Logf("N re-pointed to R2 %v after the etcdctl put started (etcdctl run included)", time.Since(start))
	if err := f.m.Client().Set(ctx, "after-move", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 20*time.Second, f.m, f.n)

	// A bad edit is refused: N stays on R2, the reason is in the status.
	f.putNode(t, topology.NodeSpec{ID: "n", Site: "A", RedisAddr: f.n.Addr, Follow: "r9"})
	f.waitStatus(t, "n", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if !strings.Contains(st.GetLastError(), `follow "r9": no such relay or node`) {
			return fmt.Errorf("n last_error %q", st.GetLastError())
		}
		return nil
	})
	if p, _ := masterPort(ctx, f.n); p != f.r2.Port {
		t.Fatalf("N moved to port %d on a refused edit", p)
	}
	// Chaining: N follows a node (here the master node itself); the fix
	// also clears the refusal.
	f.putNode(t, topology.NodeSpec{ID: "n", Site: "A", RedisAddr: f.n.Addr, Follow: "m"})
	waitFollows(t, ctx, f.n, f.m, 10*time.Second)
	f.waitStatus(t, "n", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if st.GetLastError() != "" {
			return fmt.Errorf("n last_error %q after the fix", st.GetLastError())
		}
		return nil
	})
}

// TestAgentSafety checks what the agent refuses to do: promote a replica
// designated master, demote a live master whose designation moved, and
// touch a Redis not in the topology.
func TestAgentSafety(t *testing.T) {
	f := newFabric(t, 1)
	ctx := f.ctx
	f.runAgent(t, "m", f.m)
	f.runAgent(t, "n", f.n)
	waitFollows(t, ctx, f.n, f.r1, 10*time.Second)

	f.etcd.Etcdctl(t, "put", topology.MasterKey(f.cluster), `{"node":"n"}`)
	f.waitStatus(t, "n", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if !strings.Contains(st.GetLastError(), "not promoting") {
			return fmt.Errorf("n last_error %q", st.GetLastError())
		}
		return nil
	})
	f.waitStatus(t, "m", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if !strings.Contains(st.GetLastError(), "not demoting") {
			return fmt.Errorf("m last_error %q", st.GetLastError())
		}
		return nil
	})
	if p, _ := masterPort(ctx, f.m); p != 0 {
		t.Fatalf("M was demoted (replicates from port %d)", p)
	}
	if p, _ := masterPort(ctx, f.n); p != f.r1.Port {
		t.Fatalf("N was moved (replicates from port %d)", p)
	}

	// A node the topology does not know: its Redis is left alone.
	other := redistest.Start(t)
	f.runAgent(t, "stranger", other)
	f.waitStatus(t, "stranger", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if !strings.Contains(st.GetLastError(), "not in the topology") || !st.GetHealthy() {
			return fmt.Errorf("stranger status %v", st)
		}
		return nil
	})
	if p, _ := masterPort(ctx, other); p != 0 {
		t.Fatalf("a Redis outside the topology was pointed at port %d", p)
	}
}

// TestAgentSurvivesEtcdRestart: with etcd stopped the node keeps
// replicating on the last good topology; once etcd is back, an edit is
// applied and the status is published again.
func TestAgentSurvivesEtcdRestart(t *testing.T) {
	f := newFabric(t, 1)
	ctx := f.ctx
	f.runAgent(t, "n", f.n)
	waitFollows(t, ctx, f.n, f.r1, 10*time.Second)

	f.etcd.Members[0].Stop()
	for i := range 50 {
		if err := f.m.Client().Set(ctx, "during-outage-"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitInSync(t, 20*time.Second, f.m, f.r1, f.n)
	if p, _ := masterPort(ctx, f.n); p != f.r1.Port {
		t.Fatalf("N moved to port %d while etcd was down", p)
	}

	f.etcd.Members[0].Start(t)
	f.putNode(t, topology.NodeSpec{ID: "n", Site: "A", RedisAddr: f.n.Addr, Follow: "r2"})
	waitFollows(t, ctx, f.n, f.r2, 15*time.Second)
	f.waitStatus(t, "n", 15*time.Second, func(st *arborv1.NodeStatus) error {
		if st.GetRole() != arborv1.NodeRole_NODE_ROLE_REPLICA || st.GetLastError() != "" {
			return fmt.Errorf("n status %v", st)
		}
		return nil
	})
}

// TestAgentStatusLifecycle: a Redis that dies makes the node unhealthy; a
// graceful stop withdraws the status at once.
func TestAgentStatusLifecycle(t *testing.T) {
	f := newFabric(t, 1)
	_, stop := f.runAgent(t, "n", f.n)
	waitFollows(t, f.ctx, f.n, f.r1, 10*time.Second)
	f.n.Kill()
	f.waitStatus(t, "n", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if st.GetHealthy() || !strings.Contains(st.GetLastError(), f.n.Addr) {
			return fmt.Errorf("n status %v, want unhealthy with the redis error", st)
		}
		return nil
	})
	f.n.Restart(t)
	f.waitStatus(t, "n", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if !st.GetHealthy() || st.GetRole() != arborv1.NodeRole_NODE_ROLE_REPLICA {
			return fmt.Errorf("n status %v, want a healthy replica again", st)
		}
		return nil
	})
	stop()
	out := f.etcd.Etcdctl(t, "get", "--keys-only", topology.StatusKey(f.cluster, topology.KindNode, "n"))
	if strings.TrimSpace(out) != "" {
		t.Fatalf("status still there after a graceful stop: %q", out)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.ID, good.Cluster, good.Redis = "n1", "c", "redis://u:p@127.0.0.1:6379"
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no id", func(c *Config) { c.ID = "" }, "id"},
		{"bad redis", func(c *Config) { c.Redis = "127.0.0.1:6379" }, "redis"},
		{"redis db", func(c *Config) { c.Redis = "redis://127.0.0.1:6379/2" }, "database"},
		{"no cluster", func(c *Config) { c.Cluster = "" }, "cluster"},
		{"negative priority", func(c *Config) { c.Priority = -1 }, "priority"},
		{"tiny interval", func(c *Config) { c.CheckInterval = time.Millisecond }, "check-interval"},
		{"fractional ttl", func(c *Config) { c.StatusTTL = 1500 * time.Millisecond }, "status-ttl"},
		{"move-after below the minimum silence", func(c *Config) { c.MoveAfter = 200 * time.Millisecond }, "move-after"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.edit(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %s", err, c.want)
			}
		})
	}
	for _, c := range []struct{ url, user, pass string }{
		{"redis://127.0.0.1:1", "", ""},
		{"redis://secret@127.0.0.1:1", "", "secret"},
		{"redis://:secret@127.0.0.1:1", "", "secret"},
		{"redis://alice:secret@127.0.0.1:1", "alice", "secret"},
	} {
		r, err := parseRedisURL(c.url)
		if err != nil || r.user != c.user || r.password != c.pass || r.addr != "127.0.0.1:1" {
			t.Errorf("parseRedisURL(%s): got %+v, %v", c.url, r, err)
		}
	}
}

func TestOffsetsLag(t *testing.T) {
	o := newOffsets(nil, "c", slog.Default())
	t0 := time.Now()
	if _, _, ok := o.lag("m", 10, t0); ok {
		t.Fatal("lag known with no samples")
	}
	o.record("m", []byte(`{"replid":"x","offset":100}`), t0)
	o.record("m", []byte(`{"replid":"x","offset":200}`), t0.Add(time.Second))
	o.record("m", []byte(`{"replid":"x","offset":300}`), t0.Add(2*time.Second))
	now := t0.Add(3 * time.Second)
	for _, c := range []struct {
		offset    int64
		wantBytes int64
		wantLag   time.Duration
	}{
		{300, 0, 0},
		{400, 0, 0},
		{250, 50, time.Second},
		{150, 150, 2 * time.Second},
		{50, 250, 3 * time.Second},
	} {
		b, d, ok := o.lag("m", c.offset, now)
		if !ok || b != c.wantBytes || d != c.wantLag {
			t.Errorf("lag(%d): got %d bytes, %v, %v; want %d, %v", c.offset, b, d, ok, c.wantBytes, c.wantLag)
		}
	}
	// A new replication ID starts a new history.
	o.record("m", []byte(`{"replid":"y","offset":5}`), now)
	if b, _, _ := o.lag("m", 1, now); b != 4 {
		t.Errorf("after a replid change: got %d bytes, want 4", b)
	}
	o.forget("m")
	if _, _, ok := o.lag("m", 1, now); ok {
		t.Error("lag known after forget")
	}
}

func TestParseReplInfo(t *testing.T) {
	r, err := parseReplInfo("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7100\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nmaster_replid:abc\r\nmaster_repl_offset:42\r\nconnected_slaves:2\r\n# Persistence\r\nloading:0\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.role != "slave" || r.masterAddr != "127.0.0.1:7100" || !r.linkUp || r.syncing || r.replid != "abc" || r.offset != 42 || r.replicas != 2 || r.loading {
		t.Fatalf("got %+v", r)
	}
	if _, err := parseReplInfo("role:sentinel\r\n"); err == nil {
		t.Fatal("role sentinel accepted")
	}
}

// TestAgentRestartKeepsLiveMaster: the "never demote a live master" rule
// survives an agent restart, because it is read from the Redis and not
// remembered. M's agent runs while M is the designated master and stops;
// M takes more writes; the designation moves to N; a new agent for M
// must leave it a master with its writes and report the conflict. X, a
// standalone master with keys but no replica (master_repl_offset 0), is
// live too. E, a freshly started empty redis-server, is still pointed at
// the relay it follows.
func TestAgentRestartKeepsLiveMaster(t *testing.T) {
	f := newFabric(t, 1)
	ctx := f.ctx
	_, stop := f.runAgent(t, "m", f.m)
	f.waitStatus(t, "m", 10*time.Second, func(st *arborv1.NodeStatus) error {
		if st.GetRole() != arborv1.NodeRole_NODE_ROLE_MASTER || st.GetLastError() != "" {
			return fmt.Errorf("m status %v", st)
		}
		return nil
	})
	stop() // the agent process exits

	if err := redistest.LoadAllTypes(ctx, f.m.Client(), redistest.LoadOptions{SmallKeys: 100, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	mKeys, err := f.m.Client().DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	x := redistest.Start(t)
	for i := range 20 {
		if err := x.Client().Set(ctx, "x-"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if off, err := x.InfoInt(ctx, "replication", "master_repl_offset"); err != nil || off != 0 {
		t.Fatalf("x: master_repl_offset %d (%v), want 0: the keys must be what marks it live", off, err)
	}
	e := redistest.Start(t)
	f.putNode(t, topology.NodeSpec{ID: "x", Site: "A", RedisAddr: x.Addr, Follow: "r1"})
	f.putNode(t, topology.NodeSpec{ID: "e", Site: "A", RedisAddr: e.Addr, Follow: "r1"})
	f.etcd.Etcdctl(t, "put", topology.MasterKey(f.cluster), `{"node":"n"}`)

	f.runAgent(t, "m", f.m) // the restarted agent
	f.runAgent(t, "x", x)
	f.runAgent(t, "e", e)

	waitFollows(t, ctx, e, f.r1, 15*time.Second)
	for _, id := range []string{"m", "x"} {
		f.waitStatus(t, id, 15*time.Second, func(st *arborv1.NodeStatus) error {
			if !strings.Contains(st.GetLastError(), "live master") || !strings.Contains(st.GetLastError(), "not demoting") {
				return fmt.Errorf("%s last_error %q, want the live-master conflict", id, st.GetLastError())
			}
			return nil
		})
	}
	for _, c := range []struct {
		s    *redistest.Server
		keys int64
	}{{f.m, mKeys}, {x, 20}} {
		role, err := c.s.Client().Do(ctx, "ROLE").Slice()
		if err != nil {
			t.Fatal(err)
		}
		if len(role) == 0 || role[0] != "master" {
			t.Fatalf("%s: ROLE %v, want master", c.s.Addr, role)
		}
		if n, err := c.s.Client().DBSize(ctx).Result(); err != nil || n != c.keys {
			t.Fatalf("%s: DBSIZE %d (%v), want %d: writes lost", c.s.Addr, n, err, c.keys)
		}
	}
}
