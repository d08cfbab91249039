package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	arborfabric "github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/internal/freeport"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/statusview"
	"github.com/arbor-fabric/arbor/node"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis redials a dead server (the killed master) once a second
		// in a goroutine that outlives its client's Close by that second.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// screenshotEnv, if set, is where TestDashboardInBrowser saves its
// screenshot (else the test's temporary directory).
const screenshotEnv = "ARBOR_DASHBOARD_SCREENSHOT"

// testFabric is a small real fabric under etcd: master m in site A, root
// relay ra (A), relay rb (B) under ra, replica a1 following ra and b1
// following rb, a node agent beside each redis-server (running the
// election if elect).
type testFabric struct {
	cli     *clientv3.Client
	cluster string
	m, a1   *redistest.Server
	top     *topology.Topology
	stopRB  func() // stops relay rb
}

func startFabric(t *testing.T, ctx context.Context, elect bool) *testFabric {
	t.Helper()
	etcd := etcdtest.Start(t, 1)
	f := &testFabric{cli: etcd.Client(t), cluster: "dash"}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.m = redistest.Start(t)
	a1, b1 := redistest.Start(t), redistest.Start(t)
	f.a1 = a1

	top := topology.New()
	top.Sites["A"] = topology.Site{Name: "A"}
	top.Sites["B"] = topology.Site{Name: "B"}
	top.Master = "m"
	cfgs := map[string]relay.Config{}
	for _, r := range []struct{ id, site, upstream string }{{"ra", "A", topology.UpstreamMaster}, {"rb", "B", "ra"}} {
		rport, err := freeport.Get()
		if err != nil {
			t.Fatal(err)
		}
		gport, err := freeport.Get()
		if err != nil {
			t.Fatal(err)
		}
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.Site = r.id, r.site
		cfg.DataDir = filepath.Join(t.TempDir(), r.id)
		cfg.RedisAddr = "127.0.0.1:" + strconv.Itoa(rport)
		cfg.GRPCAddr = "127.0.0.1:" + strconv.Itoa(gport)
		cfg.TLS.Plaintext = true
		cfg.Logger = log
		cfgs[r.id] = cfg
		top.Relays[r.id] = topology.RelaySpec{ID: r.id, Site: r.site, RedisAddr: cfg.RedisAddr, GRPCAddr: cfg.GRPCAddr, Upstream: r.upstream}
	}
	top.Nodes["m"] = topology.NodeSpec{ID: "m", Site: "A", RedisAddr: f.m.Addr, Candidate: true, Priority: 10, Follow: "ra"}
	top.Nodes["a1"] = topology.NodeSpec{ID: "a1", Site: "A", RedisAddr: a1.Addr, Candidate: true, Priority: 8, Follow: "ra"}
	top.Nodes["b1"] = topology.NodeSpec{ID: "b1", Site: "B", RedisAddr: b1.Addr, Candidate: true, Priority: 5, Follow: "rb"}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}
	f.top = top

	run := func(name string, fn func(context.Context) error) func() {
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := fn(rctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	for _, id := range []string{"ra", "rb"} {
		fr := arborfabric.Relay{Config: cfgs[id], Etcd: f.cli, Cluster: f.cluster, Logger: log}
		stop := run("relay "+id, fr.Run)
		if id == "rb" {
			f.stopRB = stop
		}
	}
	for id, s := range map[string]*redistest.Server{"m": f.m, "a1": a1, "b1": b1} {
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Site, cfg.Cluster = id, top.Nodes[id].Site, f.cluster
		cfg.Redis = "redis://" + s.Addr
		cfg.StatusInterval = 200 * time.Millisecond
		cfg.StatusTTL = 2 * time.Second
		cfg.Logger = log
		if elect {
			if os.Getenv("ARBOR_TEST_LOG") != "" {
				cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("agent", id)
			}
			cfg.Elect = true
			cfg.FastProfile()
			cfg.RedisTimeout = 500 * time.Millisecond
			cfg.DeferStep = 500 * time.Millisecond
		}
		a, err := node.New(cfg, f.cli)
		if err != nil {
			t.Fatal(err)
		}
		run("agent "+id, a.Run)
	}
	return f
}

// serve runs the dashboard on a loopback port until the test ends; opts
// adjust its Config (actions, token).
func serve(t *testing.T, f *testFabric, opts ...func(*Config)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Etcd: f.cli, Cluster: f.cluster, Every: 200 * time.Millisecond, Refresh: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dashboard: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// chromiumPath is the browser's path, "" when none is installed.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// waitErr polls f until it returns nil or d passes, and returns its last
// error.
func waitErr(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// browser starts a headless Chromium with a fresh profile and no
// background traffic; it skips the test when Chromium is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); acancel() })
	return ctx
}

// pageNode is one node of the tree as the page shows it.
type pageNode struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Health string `json:"health"`
	Title  string `json:"title"` // the box's tooltip: the id and what is wrong
}

func pageNodes(ctx context.Context) (map[string]pageNode, error) {
	list, err := chromedp.Run(ctx, chromedp.Evaluate[[]pageNode](`[...document.querySelectorAll('#tree g.node')].map(g => ({id: g.dataset.id, kind: g.dataset.kind, health: g.dataset.health, title: g.querySelector('title').textContent}))`))
	out := map[string]pageNode{}
	for _, n := range list {
		out[n.ID] = n
	}
	return out, err
}

func pageLabels(ctx context.Context) (map[string]string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll('#tree text.lag')].map(t => [t.dataset.edge, t.textContent]))`))
}

// TestDashboardInBrowser drives a real headless Chromium against the
// dashboard of a real fabric: every node of the topology is shown and
// healthy, a screenshot is not blank, lag labels move under writes, a
// refused topology edit is shown, and a stopped relay turns down.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	bctx := browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := startFabric(t, ctx, false)
	url := serve(t, f)
	if err := chromedp.Do(bctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatal(err)
	}

	want := []string{"a1", "b1", "m", "ra", "rb"}
	redistest.WaitFor(t, 60*time.Second, func() error {
		nodes, err := pageNodes(bctx)
		if err != nil {
			return err
		}
		var ids []string
		for id, n := range nodes {
			ids = append(ids, id)
			if n.Health != "ok" {
				return fmt.Errorf("%s is %s", id, n.Health)
			}
		}
		sort.Strings(ids)
		if !slices.Equal(ids, want) {
			return fmt.Errorf("page shows %v, want %v", ids, want)
		}
		return nil
	})

	// The screenshot of the seed topology: a PNG of some size, not of one
	// colour.
	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv(screenshotEnv)
	if path == "" {
		path = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	checkNotBlank(t, shot)

	// Writes flow: some lag label changes.
	before, err := pageLabels(bctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 40*time.Second)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		c := f.m.Client()
		val := strings.Repeat("v", 2048)
		for i := 0; i < 200_000 && wctx.Err() == nil; i++ {
			c.Set(wctx, "k"+strconv.Itoa(i%5000), val, 0)
		}
	}()
	// Both a relay's edge and a replica's (the relay's measure of its
	// acks, its link named by the address it announces) move.
	moved := map[string]bool{}
	redistest.WaitFor(t, 30*time.Second, func() error {
		now, err := pageLabels(bctx)
		if err != nil {
			return err
		}
		for id, l := range now {
			if b, ok := before[id]; ok && b != l && !moved[id] {
				t.Logf("lag label of %s: %q → %q", id, b, l)
				moved[id] = true
			}
		}
		if !moved["rb"] || !(moved["a1"] || moved["b1"]) {
			return fmt.Errorf("lag labels unchanged: %v", now)
		}
		return nil
	})
	wcancel()
	<-wdone

	// A refused edit: rb re-parented under a relay that does not exist.
	bad := topology.New()
	rb := f.top.Relays["rb"]
	rb.Upstream = "no-such-relay"
	bad.Relays["rb"] = rb
	vals, err := topology.Encode(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.Put(ctx, topology.RelayKey(f.cluster, "rb"), string(vals["relays/rb"])); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('refused').hidden ? '' : document.getElementById('refused-list').textContent`))
		if err != nil {
			return err
		}
		if !strings.Contains(text, "no-such-relay") {
			return fmt.Errorf("refused edit not shown: %q", text)
		}
		return nil
	})

	// A relay stopped: its node turns down.
	f.stopRB()
	redistest.WaitFor(t, 30*time.Second, func() error {
		nodes, err := pageNodes(bctx)
		if err != nil {
			return err
		}
		if h := nodes["rb"].Health; h != "down" {
			return fmt.Errorf("rb is %q", h)
		}
		return nil
	})
}

// TestDashboardShowsFailover: with the election running, the page shows
// the bootstrap in the timeline, then, after a kill -9 of the master's
// Redis, the failover to a1 with its steps and the new epoch's master.
func TestDashboardShowsFailover(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	bctx := browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := startFabric(t, ctx, true)
	url := serve(t, f)
	if err := chromedp.Do(bctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatal(err)
	}
	history := func() ([]string, error) {
		return chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#history li[data-epoch]')].map(li => li.textContent)`))
	}
	redistest.WaitFor(t, 60*time.Second, func() error {
		h, err := history()
		if err != nil {
			return err
		}
		if len(h) == 0 || !strings.Contains(h[0], "→ m") {
			return fmt.Errorf("timeline %q: want the bootstrap of m", h)
		}
		return nil
	})
	// The replicas stream before the master dies, so a1 is eligible.
	redistest.WaitFor(t, 60*time.Second, func() error {
		nodes, err := pageNodes(bctx)
		if err != nil {
			return err
		}
		for _, id := range []string{"a1", "b1"} {
			if nodes[id].Health != "ok" {
				return fmt.Errorf("%s is %q: %q", id, nodes[id].Health, nodes[id].Title)
			}
		}
		return nil
	})
	// A history to continue: writes that reached a1.
	c := f.m.Client()
	for i := range 100 {
		if err := c.Set(ctx, "k"+strconv.Itoa(i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		want, err := f.m.InfoInt(ctx, "replication", "master_repl_offset")
		if err != nil {
			return err
		}
		if got, err := f.a1.InfoInt(ctx, "replication", "master_repl_offset"); err != nil || got < want {
			return fmt.Errorf("a1 at %d, master at %d (%v)", got, want, err)
		}
		return nil
	})
	f.m.Kill()
	redistest.WaitFor(t, 60*time.Second, func() error {
		h, err := history()
		if err != nil {
			return err
		}
		if len(h) < 2 || !strings.Contains(h[0], "m → a1") || !strings.Contains(h[0], "took") {
			return fmt.Errorf("timeline %q: want the failover m → a1 with its steps", h)
		}
		election, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('election').textContent`))
		if err != nil {
			return err
		}
		if !strings.Contains(election, "master a1") {
			return fmt.Errorf("election panel: %q", election)
		}
		t.Logf("timeline: %q; election: %q", h[0], election)
		return nil
	})
}

// checkNotBlank fails unless png is a PNG over 10 KB with many colours.
func checkNotBlank(t *testing.T, b []byte) {
	t.Helper()
	if len(b) < 10<<10 {
		t.Fatalf("screenshot of %d bytes: blank?", len(b))
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	colours := map[[4]uint32]bool{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 3 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 8 || bounds.Dx() < 400 {
		t.Fatalf("screenshot %v with %d colours: blank?", bounds.Size(), len(colours))
	}
}

// TestAPI checks the JSON endpoints: /api/view is the statusview object,
// /api/events streams it, anything but GET is refused.
func TestAPI(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	f := &testFabric{cli: etcd.Client(t), cluster: "api"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	top, err := topology.ParseYAML([]byte(`master: M
sites: {A: {}}
relays:
  r1: {site: A, grpc_addr: "127.0.0.1:7001", redis_addr: "127.0.0.1:7002", upstream: master}
nodes:
  M: {site: A, redis_addr: "127.0.0.1:7010", follow: r1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}
	url := serve(t, f)

	resp, err := http.Get(url + "/api/view")
	if err != nil {
		t.Fatal(err)
	}
	var v statusview.Fabric
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil || v.Cluster != "api" || len(v.Relays) != 1 || v.Relays[0].ID != "r1" || v.Master != "M" {
		t.Fatalf("/api/view: %+v, %v", v, err)
	}

	// The event stream: a first view at once.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for !strings.Contains(buf.String(), "\n\n{") && !strings.Contains(buf.String(), "data: {") {
		n, err := resp.Body.Read(chunk)
		buf.Write(chunk[:n])
		if err != nil {
			t.Fatalf("events: %v after %q", err, buf.String())
		}
	}
	resp.Body.Close()
	if !strings.Contains(buf.String(), "event: view\n") {
		t.Errorf("events: %q", buf.String())
	}

	for _, c := range []struct {
		method, path string
		code         int
	}{
		{http.MethodPost, "/api/switchover", http.StatusForbidden},
		{http.MethodPost, "/api/view", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/api/view", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/nope", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/static/app.js", http.StatusOK},
	} {
		req, err := http.NewRequestWithContext(ctx, c.method, url+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.code)
		}
	}
}

// TestHundredNodes: a fabric of 100 components (3 sites, 6 relays, 94
// nodes, statuses as published) renders every box, none overlapping, and
// its screenshot is saved next to the other one.
func TestHundredNodes(t *testing.T) {
	bctx := browser(t)
	etcd := etcdtest.Start(t, 1)
	f := &testFabric{cli: etcd.Client(t), cluster: "big"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	top := topology.New()
	top.Master = "A-n00"
	port := 20000
	addr := func() string { port++; return "127.0.0.1:" + strconv.Itoa(port) }
	relays := map[string][]string{"A": {"ra1", "ra2"}, "B": {"rb1", "rb2"}, "C": {"rc1", "rc2"}}
	for _, site := range []string{"A", "B", "C"} {
		top.Sites[site] = topology.Site{Name: site}
		for i, id := range relays[site] {
			up := topology.UpstreamMaster
			if site != "A" {
				up = "ra1"
			}
			if i == 1 {
				up = relays[site][0]
			}
			top.Relays[id] = topology.RelaySpec{ID: id, Site: site, RedisAddr: addr(), GRPCAddr: addr(), Upstream: up}
		}
	}
	var nodeIDs []string
	for i := range 94 {
		site := []string{"A", "B", "C"}[i%3]
		id := fmt.Sprintf("%s-n%02d", site, i)
		nodeIDs = append(nodeIDs, id)
		top.Nodes[id] = topology.NodeSpec{ID: id, Site: site, RedisAddr: addr(), Follow: relays[site][i%2]}
	}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}
	put := func(kind, id string, v any) {
		b, err := topology.EncodeStatus(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.cli.Put(ctx, topology.StatusKey(f.cluster, kind, id), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	for id, r := range top.Relays {
		put(topology.KindRelay, id, &arborv1.RelayStatus{Id: id, Site: r.Site, Upstream: r.Upstream,
			LinkState: arborv1.LinkState_LINK_STATE_STREAMING, MasterOffset: 5000, StoredOffset: 4990})
	}
	for i, id := range nodeIDs {
		role := arborv1.NodeRole_NODE_ROLE_REPLICA
		if id == top.Master {
			role = arborv1.NodeRole_NODE_ROLE_MASTER
		}
		put(topology.KindNode, id, &arborv1.NodeStatus{Id: id, Role: role, Offset: int64(4900 + i), Healthy: i%17 != 5,
			LinkState: arborv1.LinkState_LINK_STATE_STREAMING, LagBytes: int64(i * 1000), LagMs: int64(i * 20)})
	}
	url := serve(t, f)
	if err := chromedp.Do(bctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		nodes, err := pageNodes(bctx)
		if err != nil {
			return err
		}
		if len(nodes) != 100 {
			return fmt.Errorf("%d boxes, want 100", len(nodes))
		}
		return nil
	})
	// No two boxes overlap (screen rectangles of their rects).
	overlaps, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`(() => {
		const r = [...document.querySelectorAll('#tree g.node')].map(g => [g.dataset.id, g.querySelector('rect').getBoundingClientRect()]);
		const out = [];
		for (let i = 0; i < r.length; i++) for (let j = i + 1; j < r.length; j++) {
			const a = r[i][1], b = r[j][1];
			if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) out.push(r[i][0] + "/" + r[j][0]);
		}
		return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(overlaps) > 0 {
		t.Errorf("overlapping boxes: %v", overlaps)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-100.png")
	if p := os.Getenv(screenshotEnv); p != "" {
		path = strings.TrimSuffix(p, ".png") + "-100.png"
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	checkNotBlank(t, shot)
}

// actionToken is the token of the dashboards with actions in the tests.
const actionToken = "s3cret-token"

func withActions(c *Config) { c.AllowActions, c.ActionToken = true, actionToken }

// postSwitchover posts body to url's /api/switchover with token (none if
// "") and returns the status and the decoded answer.
func postSwitchover(t *testing.T, ctx context.Context, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/switchover", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST /api/switchover %s: %d with no JSON: %v", body, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func getConfig(t *testing.T, ctx context.Context, url string) map[string]bool {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/config", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]bool
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSwitchoverAction: on a real fabric with the election running, POST
// /api/switchover is refused without --allow-actions (403) and with a
// missing or wrong token (401), and nothing changes (same epoch, no
// request in etcd); bad bodies and unknown nodes are 400; with the token
// a real switchover to a1 happens and its record is the answer.
func TestSwitchoverAction(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := startFabric(t, ctx, true)
	readOnly := serve(t, f)
	actions := serve(t, f, withActions)
	if c := getConfig(t, ctx, readOnly); c["actions"] {
		t.Errorf("read-only /api/config: %v", c)
	}
	if c := getConfig(t, ctx, actions); !c["actions"] {
		t.Errorf("/api/config with actions: %v", c)
	}

	// The election is live with m as master and a1 eligible.
	var epoch int64
	redistest.WaitFor(t, 60*time.Second, func() error {
		st, err := election.ReadState(ctx, f.cli, f.cluster)
		if err != nil {
			return err
		}
		if !st.Live() || st.Master.Node != "m" {
			return fmt.Errorf("election not live on m: leader %q master %+v", st.Leader, st.Master)
		}
		epoch = st.Master.Epoch
		v, err := statusview.ReadHistory(ctx, f.cli, f.cluster, 0)
		if err != nil {
			return err
		}
		for _, c := range v.Election.Candidates {
			if c.ID == "a1" && c.Eligible() {
				return nil
			}
		}
		return fmt.Errorf("a1 not eligible: %+v", v.Election.Candidates)
	})
	unchanged := func(what string) {
		t.Helper()
		st, err := election.ReadState(ctx, f.cli, f.cluster)
		if err != nil {
			t.Fatal(err)
		}
		if st.Master == nil || st.Master.Epoch != epoch || st.Master.Node != "m" || st.Switchover != nil {
			t.Fatalf("after %s: master %+v, switchover %+v; want m at epoch %d, no request", what, st.Master, st.Switchover, epoch)
		}
	}

	for _, c := range []struct {
		name, url, token, body string
		code                   int
		msg                    string
	}{
		{"read-only", readOnly, actionToken, `{"to": "a1"}`, http.StatusForbidden, "start with --allow-actions"},
		{"no token", actions, "", `{"to": "a1"}`, http.StatusUnauthorized, "token"},
		{"wrong token", actions, "s3cret-tokem", `{"to": "a1"}`, http.StatusUnauthorized, "token"},
		{"token prefix", actions, "s3cret", `{"to": "a1"}`, http.StatusUnauthorized, "token"},
		{"bad JSON", actions, actionToken, `{"to": `, http.StatusBadRequest, "body"},
		{"unknown field", actions, actionToken, `{"node": "a1"}`, http.StatusBadRequest, "body"},
		{"bad timeout", actions, actionToken, `{"to": "a1", "timeout_ms": -5}`, http.StatusBadRequest, "timeout_ms"},
		{"unknown node", actions, actionToken, `{"to": "zz"}`, http.StatusBadRequest, "no node"},
		{"to the master", actions, actionToken, `{"to": "m"}`, http.StatusConflict, "master already"},
	} {
		code, out := postSwitchover(t, ctx, c.url, c.token, c.body)
		if msg, _ := out["error"].(string); code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %v, want %d with %q", c.name, code, out, c.code, c.msg)
		}
		unchanged(c.name)
	}

	// In a browser (if Chromium is installed), the page offers the
	// switchover to a1 only when actions are allowed.
	if chromiumPath() == "" {
		t.Log("chromium is not installed: the switchover buttons were not checked in a browser (apt-get install chromium; .ci/run installs it)")
	} else {
		bctx := browser(t)
		buttons := func(url string) ([]string, int, error) {
			if err := chromedp.Do(bctx, chromedp.Navigate(url+"/")); err != nil {
				return nil, 0, err
			}
			var ids []string
			var rows int
			err := waitErr(30*time.Second, func() error {
				var err error
				rows, err = chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#candidates tbody tr').length`))
				if err != nil || rows == 0 {
					return fmt.Errorf("no candidates shown (%v)", err)
				}
				ids, err = chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('button[data-switchover]')].map(b => b.dataset.switchover)`))
				if err == nil && url == actions && !slices.Contains(ids, "a1") {
					return fmt.Errorf("buttons %v: want one for a1", ids)
				}
				return err
			})
			return ids, rows, err
		}
		if ids, rows, err := buttons(readOnly); err != nil || len(ids) != 0 {
			t.Errorf("read-only page: switchover buttons %v over %d candidates (%v), want none", ids, rows, err)
		}
		ids, _, err := buttons(actions)
		if err != nil || slices.Contains(ids, "m") {
			t.Errorf("page with actions: switchover buttons %v (%v), want a1's and not the master's", ids, err)
		}
		t.Logf("page with actions: switchover buttons %v", ids)
	}

	// The right token: a real switchover. The leader's agent may not have
	// read the relays' statuses yet (a1 "not eligible", 409, nothing
	// changed), so ask again until it does.
	var out map[string]any
	redistest.WaitFor(t, 60*time.Second, func() error {
		var code int
		code, out = postSwitchover(t, ctx, actions, actionToken, `{"to": "a1", "timeout_ms": 10000}`)
		switch {
		case code == http.StatusConflict:
			unchanged("a refused switchover")
			return fmt.Errorf("switchover refused: %v", out)
		case code != http.StatusOK || out["node"] != "a1":
			t.Fatalf("switchover: %d %v", code, out)
		}
		return nil
	})
	st, err := election.ReadState(ctx, f.cli, f.cluster)
	if err != nil {
		t.Fatal(err)
	}
	if st.Master == nil || st.Master.Node != "a1" || st.Master.Epoch <= epoch {
		t.Fatalf("after the switchover: master %+v, want a1 past epoch %d", st.Master, epoch)
	}
	if got, _ := out["epoch"].(float64); int64(got) != st.Master.Epoch {
		t.Errorf("answer's epoch %v, record's %d", out["epoch"], st.Master.Epoch)
	}
	t.Logf("switched over: epoch %d → %d, master a1", epoch, st.Master.Epoch)
}

// TestActionsNeedToken: a dashboard with actions allowed and no token
// does not start.
func TestActionsNeedToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{AllowActions: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.Serve(context.Background(), ln); !errors.Is(err, ErrNoActionToken) {
		t.Fatalf("Serve: %v, want ErrNoActionToken", err)
	}
}
