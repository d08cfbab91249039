package topology

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
)

// testLogger sends logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// runWatcher runs a Watcher until the test ends.
func runWatcher(t *testing.T, cli *clientv3.Client, cluster string) *Watcher {
	w := NewWatcher(cli, cluster, testLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitCurrent waits until the Watcher's topology in force satisfies ok.
func waitCurrent(t *testing.T, w *Watcher, timeout time.Duration, ok func(*Topology) error) {
	t.Helper()
	redistest.WaitFor(t, timeout, func() error {
		top, _ := w.Current()
		if top == nil {
			return fmt.Errorf("no topology in force")
		}
		return ok(top)
	})
}

func TestApplyLoadRoundTrip(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxFor(t, 30*time.Second)
	top := seed(t)

	rev, err := Apply(ctx, cli, "rt", top)
	if err != nil {
		t.Fatal(err)
	}
	got, lrev, err := Load(ctx, cli, "rt")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(top) || lrev != rev {
		t.Fatalf("Load after Apply: equal %v, revision %d, want %d", got.Equal(top), lrev, rev)
	}
	// The values are what a person reads with etcdctl.
	v := c.Etcdctl(t, "get", "--print-value-only", RelayKey("rt", "relay-c"))
	if want := `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"relay-a1"}`; strings.TrimSpace(v) != want {
		t.Fatalf("etcdctl get relay-c: got %s, want %s", v, want)
	}
	if v := c.Etcdctl(t, "get", "--print-value-only", MasterKey("rt")); strings.TrimSpace(v) != `{"node":"A-Master"}` {
		t.Fatalf("etcdctl get master: got %s", v)
	}

	// Applying the same topology writes nothing.
	if again, err := Apply(ctx, cli, "rt", top); err != nil || again != rev {
		t.Fatalf("Apply unchanged: revision %d, %v; want %d", again, err, rev)
	}

	// A smaller, changed topology: one transaction, so a watcher sees one
	// revision with every put and delete.
	wch := cli.Watch(ctx, Prefix("rt"), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	small := top.Clone()
	delete(small.Nodes, "C-S-2")
	delete(small.Nodes, "C-S-1")
	delete(small.Relays, "relay-c")
	delete(small.Sites, "C")
	setUpstream(small, "relay-b", "relay-a2")
	rev2, err := Apply(ctx, cli, "rt", small)
	if err != nil {
		t.Fatal(err)
	}
	resp := <-wch
	if got, want := len(resp.Events), 5; got != want || resp.Header.Revision != rev2 {
		t.Fatalf("watch after Apply: %d events at revision %d, want %d at %d", got, resp.Header.Revision, want, rev2)
	}
	got, _, err = Load(ctx, cli, "rt")
	if err != nil || !got.Equal(small) {
		t.Fatalf("Load after the second Apply: %v, equal %v", err, got.Equal(small))
	}
	if out := c.Etcdctl(t, "get", "--prefix", "--keys-only", Prefix("rt")+"nodes/C-"); strings.TrimSpace(out) != "" {
		t.Fatalf("deleted nodes still there: %s", out)
	}

	// An invalid topology is refused and nothing is written.
	bad := small.Clone()
	setUpstream(bad, "relay-b", "relay-x")
	if _, err := Apply(ctx, cli, "rt", bad); err == nil || !strings.Contains(err.Error(), "no such relay") {
		t.Fatalf("Apply of an invalid topology: got %v", err)
	}
	if _, rev3, _ := Load(ctx, cli, "rt"); rev3 != rev2 {
		t.Fatalf("revision moved from %d to %d after a refused Apply", rev2, rev3)
	}
	// Another cluster's prefix is untouched.
	if got, _, err := Load(ctx, cli, "other"); err != nil || len(got.Relays) != 0 {
		t.Fatalf("Load of an empty cluster: %v, %d relays", err, len(got.Relays))
	}
}

// TestWatcherRefusesBadEdits makes each kind of bad edit with the real
// etcdctl and checks the last good topology stays in force with the reason
// visible, then that a fix and a good edit are taken.
func TestWatcherRefusesBadEdits(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxFor(t, 60*time.Second)
	const cluster = "edits"
	good := seed(t)
	if _, err := Apply(ctx, cli, cluster, good); err != nil {
		t.Fatal(err)
	}
	w := runWatcher(t, cli, cluster)
	waitCurrent(t, w, 10*time.Second, func(top *Topology) error {
		if !top.Equal(good) {
			return fmt.Errorf("not the seed yet")
		}
		return nil
	})
	relayC := RelayKey(cluster, "relay-c")
	relayA1 := RelayKey(cluster, "relay-a1")
	goodC := strings.TrimSpace(c.Etcdctl(t, "get", "--print-value-only", relayC))
	goodA1 := strings.TrimSpace(c.Etcdctl(t, "get", "--print-value-only", relayA1))

	for _, e := range []struct {
		name       string
		args       []string // the bad edit
		fix        []string // the edit that undoes it
		wantReason string
	}{
		{"not json", []string{"put", relayC, "not json"}, []string{"put", relayC, goodC}, "relays/relay-c: invalid value"},
		{"unknown field", []string{"put", relayC, `{"site":"C","redis_addr":"127.0.0.1:7120","upstream":"relay-a1","upstrem":"relay-b"}`}, []string{"put", relayC, goodC}, `unknown field "upstrem"`},
		{"unknown relay", []string{"put", relayC, `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"relay-x"}`}, []string{"put", relayC, goodC}, `relays/relay-c: upstream "relay-x": no such relay`},
		{"cycle", []string{"put", relayA1, `{"site":"A","grpc_addr":"127.0.0.1:7500","redis_addr":"127.0.0.1:7100","upstream":"relay-c"}`}, []string{"put", relayA1, goodA1}, "cycle in relay upstreams: relay-a1 → relay-c → relay-a1"},
		{"two roots", []string{"put", relayC, `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"redis://127.0.0.1:6999"}`}, []string{"put", relayC, goodC}, "two roots"},
		{"deleted parent", []string{"del", relayA1}, []string{"put", relayA1, goodA1}, `upstream "relay-a1": no such relay`},
		{"unknown master", []string{"put", MasterKey(cluster), `{"node":"Z"}`}, []string{"put", MasterKey(cluster), `{"node":"A-Master"}`}, `master: node "Z": no such node`},
		{"node follows unknown relay", []string{"put", NodeKey(cluster, "C-S-1"), `{"site":"C","redis_addr":"127.0.0.1:7020","follow":"relay-z"}`}, []string{"put", NodeKey(cluster, "C-S-1"), `{"site":"C","redis_addr":"127.0.0.1:7020","follow":"relay-c"}`}, `follow "relay-z"`},
	} {
		t.Run(e.name, func(t *testing.T) {
			c.Etcdctl(t, e.args...)
			redistest.WaitFor(t, 10*time.Second, func() error {
				rej := w.Rejected()
				if rej == nil || !strings.Contains(rej.Err.Error(), e.wantReason) {
					return fmt.Errorf("rejection %v, want one containing %q", rej, e.wantReason)
				}
				return nil
			})
			t.Logf("refused: %v", w.Rejected())
			if top, _ := w.Current(); !top.Equal(good) {
				t.Fatalf("the topology in force changed after a bad edit")
			}
			c.Etcdctl(t, e.fix...)
			redistest.WaitFor(t, 10*time.Second, func() error {
				if rej := w.Rejected(); rej != nil {
					return fmt.Errorf("still refused after the fix: %v", rej)
				}
				return nil
			})
		})
	}

	// A good edit is in force well within a second (measured, not
	// asserted beyond a generous deadline).
	start := time.Now()
	c.Etcdctl(t, "put", relayC, `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"relay-b"}`)
	waitCurrent(t, w, 10*time.Second, func(top *Topology) error {
		if up, _ := top.RelayUpstream("relay-c"); up != "arbor://127.0.0.1:7510" {
			return fmt.Errorf("relay-c upstream %s", up)
		}
		return nil
	})
	t.Logf("good edit in force %v after etcdctl put started (etcdctl run included)", time.Since(start))
}

// TestWatcherSurvivesEtcdRestart stops the only etcd member under a
// running Watcher (gracefully: etcd then waits about 5 s for the open watch
// stream before it exits), checks the topology stays in force, starts it
// again and checks an edit made after the restart is taken.
func TestWatcherSurvivesEtcdRestart(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxFor(t, 60*time.Second)
	const cluster = "restart"
	if _, err := Apply(ctx, cli, cluster, seed(t)); err != nil {
		t.Fatal(err)
	}
	w := runWatcher(t, cli, cluster)
	waitCurrent(t, w, 10*time.Second, func(top *Topology) error {
		if len(top.Relays) != 4 {
			return fmt.Errorf("%d relays", len(top.Relays))
		}
		return nil
	})
	c.Members[0].Stop()
	if top, _ := w.Current(); top == nil || len(top.Relays) != 4 {
		t.Fatal("topology lost while etcd is down")
	}
	c.Members[0].Start(t)
	t.Log("etcd started again", time.Now().Format("15:04:05.000"))
	c.Etcdctl(t, "put", RelayKey(cluster, "relay-c"), `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"relay-a2"}`)
	t.Log("edited", time.Now().Format("15:04:05.000"))
	waitCurrent(t, w, 15*time.Second, func(top *Topology) error {
		if top.Relays["relay-c"].Upstream != "relay-a2" {
			return fmt.Errorf("relay-c upstream %s", top.Relays["relay-c"].Upstream)
		}
		return nil
	})
}

// TestWatcherRelistsAfterCompaction runs a Watcher whose client knows only
// one member of three. That member is killed; the others take edits and
// compact past the Watcher's revision; when the member is back the watch
// resumes at a compacted revision and the Watcher must read everything
// again.
func TestWatcherRelistsAfterCompaction(t *testing.T) {
	c := etcdtest.Start(t, 3)
	all := c.Client(t)
	ctx := ctxFor(t, 90*time.Second)
	const cluster = "compact"
	if _, err := Apply(ctx, all, cluster, seed(t)); err != nil {
		t.Fatal(err)
	}
	m0 := c.Members[0]
	one := c.ClientOf(t, m0.ClientURL)
	w := runWatcher(t, one, cluster)
	waitCurrent(t, w, 10*time.Second, func(top *Topology) error {
		if len(top.Relays) != 4 {
			return fmt.Errorf("%d relays", len(top.Relays))
		}
		return nil
	})

	m0.Kill()
	c.WaitHealthy(t, 20*time.Second)
	put := func(k, v string) {
		t.Helper()
		redistest.WaitFor(t, 10*time.Second, func() error {
			_, err := all.Put(ctx, k, v)
			return err
		})
	}
	put(RelayKey(cluster, "relay-c"), `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"relay-b"}`)
	for i := range 5 {
		put(fmt.Sprintf("/unrelated/%d", i), "x")
	}
	resp, err := all.Get(ctx, "/unrelated/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := all.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	m0.Start(t)
	waitCurrent(t, w, 20*time.Second, func(top *Topology) error {
		if top.Relays["relay-c"].Upstream != "relay-b" {
			return fmt.Errorf("relay-c upstream %s", top.Relays["relay-c"].Upstream)
		}
		return nil
	})
}

// TestWatcherKeepsQuorum kills the raft leader of three members; the
// Watcher, whose client knows all three, takes an edit made afterwards.
func TestWatcherKeepsQuorum(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli := c.Client(t)
	ctx := ctxFor(t, 60*time.Second)
	const cluster = "quorum"
	if _, err := Apply(ctx, cli, cluster, seed(t)); err != nil {
		t.Fatal(err)
	}
	w := runWatcher(t, cli, cluster)
	waitCurrent(t, w, 10*time.Second, func(top *Topology) error {
		if len(top.Relays) != 4 {
			return fmt.Errorf("%d relays", len(top.Relays))
		}
		return nil
	})
	leader := c.Leader(t)
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.Kill()
	redistest.WaitFor(t, 15*time.Second, func() error {
		defer func(s time.Time) { t.Log("etcdctl put took", time.Since(s)) }(time.Now())
		_, err := c.EtcdctlErr("put", RelayKey(cluster, "relay-b"), `{"site":"B","grpc_addr":"127.0.0.1:7510","redis_addr":"127.0.0.1:7110","upstream":"relay-a2"}`)
		return err
	})
	waitCurrent(t, w, 15*time.Second, func(top *Topology) error {
		if top.Relays["relay-b"].Upstream != "relay-a2" {
			return fmt.Errorf("relay-b upstream %s", top.Relays["relay-b"].Upstream)
		}
		return nil
	})
}

func TestWatchRelay(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxFor(t, 60*time.Second)
	const cluster = "wr"
	if _, err := Apply(ctx, cli, cluster, seed(t)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var updates []RelayUpdate
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- WatchRelay(wctx, cli, cluster, "relay-c", testLogger(t), func(u RelayUpdate) {
			mu.Lock()
			updates = append(updates, u)
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchRelay: %v", err)
		}
	}()
	waitUpdate := func(n int, check func(RelayUpdate) error) {
		t.Helper()
		redistest.WaitFor(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(updates) < n {
				return fmt.Errorf("%d updates, want %d", len(updates), n)
			}
			return check(updates[n-1])
		})
	}
	waitUpdate(1, func(u RelayUpdate) error {
		if !u.Found || u.Upstream != "arbor://127.0.0.1:7500" || u.Rejected != nil {
			return fmt.Errorf("first update %+v", u)
		}
		return nil
	})
	// An edit of another relay changes nothing for relay-c: no call.
	c.Etcdctl(t, "put", RelayKey(cluster, "relay-b"), `{"site":"B","grpc_addr":"127.0.0.1:7510","redis_addr":"127.0.0.1:7110","upstream":"relay-a2"}`)
	// Re-parenting relay-c.
	c.Etcdctl(t, "put", RelayKey(cluster, "relay-c"), `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"relay-b"}`)
	waitUpdate(2, func(u RelayUpdate) error {
		if u.Upstream != "arbor://127.0.0.1:7510" {
			return fmt.Errorf("second update %+v", u)
		}
		return nil
	})
	// A bad edit: same upstream, with the rejection.
	c.Etcdctl(t, "put", RelayKey(cluster, "relay-c"), `{"site":"C","upstream":"relay-q"}`)
	waitUpdate(3, func(u RelayUpdate) error {
		if u.Rejected == nil || u.Upstream != "arbor://127.0.0.1:7510" {
			return fmt.Errorf("third update %+v", u)
		}
		return nil
	})
	// Following the master, which moves.
	c.Etcdctl(t, "put", RelayKey(cluster, "relay-c"), `{"site":"C","grpc_addr":"127.0.0.1:7520","redis_addr":"127.0.0.1:7120","upstream":"master"}`)
	waitUpdate(4, func(u RelayUpdate) error {
		if u.Rejected != nil || u.Upstream != "redis://127.0.0.1:7000" {
			return fmt.Errorf("fourth update %+v", u)
		}
		return nil
	})
	c.Etcdctl(t, "put", MasterKey(cluster), `{"node":"A-M-Backup"}`)
	waitUpdate(5, func(u RelayUpdate) error {
		if u.Upstream != "redis://127.0.0.1:7001" {
			return fmt.Errorf("fifth update %+v", u)
		}
		return nil
	})
	mu.Lock()
	n := len(updates)
	mu.Unlock()
	if n != 5 {
		t.Fatalf("%d updates, want 5", n)
	}
}

func TestPublishStatus(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx := ctxFor(t, 60*time.Second)
	const cluster = "st"

	// A graceful stop revokes the lease: the value goes at once.
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var offset int64 = 1
	var mu sync.Mutex
	go func() {
		done <- PublishStatus(pctx, cli, cluster, KindNode, "n1", 50*time.Millisecond, func() any {
			mu.Lock()
			defer mu.Unlock()
			return map[string]any{"id": "n1", "offset": offset}
		})
	}()
	waitStatus := func(check func(*Statuses) error) {
		t.Helper()
		redistest.WaitFor(t, 10*time.Second, func() error {
			st, err := ReadStatus(ctx, cli, cluster)
			if err != nil {
				return err
			}
			return check(st)
		})
	}
	waitStatus(func(st *Statuses) error {
		if n := st.Nodes["n1"]; n == nil || n.Offset != 1 {
			return fmt.Errorf("n1 status %v", n)
		}
		return nil
	})
	mu.Lock()
	offset = 42
	mu.Unlock()
	waitStatus(func(st *Statuses) error {
		if n := st.Nodes["n1"]; n == nil || n.Offset != 42 {
			return fmt.Errorf("n1 status %v", n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out := c.Etcdctl(t, "get", StatusKey(cluster, KindNode, "n1")); out != "" {
		t.Fatalf("status still there after a graceful stop: %s", out)
	}

	// A publisher that dies (its client gone, so no revoke and no
	// keepalive) leaves its value until the lease expires.
	dying, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop(), DialOptions: DialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	p := NewStatusPublisher(dying, StatusConfig{Cluster: cluster, Kind: KindRelay, ID: "r1", Interval: 100 * time.Millisecond, TTL: 2 * time.Second,
		Value: func() any { return rawJSON(`{"id":"r1","stored_offset":7}`) }, Logger: testLogger(t)})
	pctx, cancel = context.WithCancel(ctx)
	go func() { done <- p.Run(pctx) }()
	waitStatus(func(st *Statuses) error {
		if r := st.Relays["r1"]; r == nil || r.StoredOffset != 7 {
			return fmt.Errorf("r1 status %v", r)
		}
		return nil
	})
	dying.Close()
	cancel()
	<-done
	if out := c.Etcdctl(t, "get", "--print-value-only", StatusKey(cluster, KindRelay, "r1")); !strings.Contains(out, "stored_offset") {
		t.Fatalf("status gone before its lease expired: %q", out)
	}
	start := time.Now()
	waitStatus(func(st *Statuses) error {
		if r := st.Relays["r1"]; r != nil {
			return fmt.Errorf("r1 status still there")
		}
		return nil
	})
	t.Logf("status of a dead publisher gone %v after its death (TTL 2s)", time.Since(start))
}

type rawJSON string

func (j rawJSON) MarshalJSON() ([]byte, error) { return []byte(j), nil }
