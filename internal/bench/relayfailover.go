package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// Relay failover paths: how the child relays learn their parents.
const (
	// RelayFailoverStatic runs the children on --upstream lists, no etcd
	// (the static mover, fabric.StaticRelay).
	RelayFailoverStatic = "static"
	// RelayFailoverEtcd runs every relay with --etcd, its parent from the
	// topology, so the children move through topology.Mover; a replica
	// under the killed relay is run by a node agent, which moves it.
	RelayFailoverEtcd = "etcd"
)

// ErrRelayFailoverPath is returned (wrapped) for a path that is neither
// RelayFailoverStatic nor RelayFailoverEtcd.
var ErrRelayFailoverPath = errors.New("relay failover path: want static or etcd")

// RelayFailoverConfig configures RunRelayFailover.
type RelayFailoverConfig struct {
	// Runs is how many times a root relay is killed (fresh processes each).
	Runs int
	// Path is RelayFailoverStatic ("" too) or RelayFailoverEtcd.
	Path string
	// MoveAfter, MoveAfterDown and HoldDown are the child relays'
	// --move-after, --move-after-down and --hold-down (and the node
	// agent's --move-after and --hold-down).
	MoveAfter, MoveAfterDown, HoldDown time.Duration
	// Steady is how long the writer runs with no kill before it, and
	// again once the children stream from the survivor: no child may
	// move in either (spurious moves).
	Steady time.Duration
	// RedisServer and RelayBin are the binaries; Dir the parent of the
	// temporary directory ("" for the system's); Keep keeps it.
	RedisServer, RelayBin, Dir string
	Keep                       bool
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// DefaultRelayFailoverConfig returns the defaults: 20 runs on the static
// path at the relays' own defaults, 2 s of steady writes around the kill.
func DefaultRelayFailoverConfig() RelayFailoverConfig {
	return RelayFailoverConfig{Runs: 20, Path: RelayFailoverStatic, MoveAfter: topology.DefaultSilence, MoveAfterDown: topology.DefaultDown,
		HoldDown: topology.DefaultHoldDown, Steady: 2 * time.Second, RedisServer: "redis-server"}
}

// RelayFailoverRun is one kill of a root relay.
type RelayFailoverRun struct {
	// StreamingMs is the time from the SIGKILL of a1 to both child
	// relays streaming from a2.
	StreamingMs float64 `json:"streaming_ms"`
	// NodeStreamingMs is, on the etcd path, the time from the kill to the
	// replica that followed a1 (moved by its node agent) streaming from
	// a2; 0 on the static path.
	NodeStreamingMs float64 `json:"node_streaming_ms,omitempty"`
	// StallMs is the longest time between two writes the master accepted
	// around the kill (the writer writes one at a time, 1 ms apart).
	StallMs float64 `json:"stall_ms"`
	// WriteErrors counts writes the master refused.
	WriteErrors int `json:"write_errors"`
	// FullSyncs counts full syncs anywhere: the master's, the surviving
	// relays' from their upstream and to their replicas.
	FullSyncs int64 `json:"full_syncs"`
	// SteadyMoves counts moves of the children (and, on the etcd path,
	// of the node agent's replica) in the steady writes before the kill.
	SteadyMoves int64 `json:"steady_moves"`
	// AfterMoves counts moves after the kill beyond the one of each
	// child off a1, up to the end of the steady writes after it.
	AfterMoves int64 `json:"after_moves"`
	// DigestsEqual says the replicas ended equal to the master.
	DigestsEqual bool `json:"digests_equal"`
}

// RelayFailoverReport is what RunRelayFailover measured on one path.
type RelayFailoverReport struct {
	// Path is RelayFailoverStatic or RelayFailoverEtcd; empty in reports
	// from before the etcd path (static).
	Path        string  `json:"path,omitempty"`
	MoveAfterMs float64 `json:"move_after_ms"`
	// MoveAfterDownMs is the children's --move-after-down; 0 in reports
	// from before the flag, when --move-after bounded a down link too.
	MoveAfterDownMs float64 `json:"move_after_down_ms,omitempty"`
	HoldDownMs      float64 `json:"hold_down_ms,omitempty"`
	// SteadyMs is RelayFailoverConfig.Steady; 0 in reports from before it.
	SteadyMs float64            `json:"steady_ms,omitempty"`
	Runs     []RelayFailoverRun `json:"runs"`
	// Streaming is the children's time to stream again; NodeStreaming the
	// node agent's replica's (etcd path only).
	Streaming     Dist  `json:"streaming"`
	NodeStreaming *Dist `json:"node_streaming,omitempty"`
	Stall         Dist  `json:"stall"`
	WriteErrors   int   `json:"write_errors"`
	FullSyncs     int64 `json:"full_syncs"`
	// SteadyMoves and AfterMoves sum the runs' spurious moves.
	SteadyMoves int64 `json:"steady_moves"`
	AfterMoves  int64 `json:"after_moves"`
	Digests     bool  `json:"digests_equal"`
}

// Relay failover targets.
const (
	relayFailoverStreamingTarget = time.Second
	relayFailoverStallTarget     = time.Second
)

// RunRelayFailover measures relay failover on cfg.Path: a master with
// min-replicas-to-write 1 and two relays following it (a1, a2), two child
// relays b1, b2 under a1 (on the static path following the --upstream list
// "arbor://a1,arbor://a2"; on the etcd path declared under a1 in the
// topology), a replica under each child (and on the etcd path one under a1,
// run by a node agent). Under steady writes, first with no kill (no move
// may happen), then a1 is SIGKILLed: it measures the time until both
// children stream from a2 (and the node's replica does), the longest
// write stall, refused writes, full syncs, moves beyond the one expected
// of each child, and checks digests.
func RunRelayFailover(ctx context.Context, cfg RelayFailoverConfig) (*RelayFailoverReport, error) {
	if cfg.Runs < 1 {
		return nil, errors.New("runs: at least 1")
	}
	if cfg.Path == "" {
		cfg.Path = RelayFailoverStatic
	}
	if cfg.Path != RelayFailoverStatic && cfg.Path != RelayFailoverEtcd {
		return nil, fmt.Errorf("%q: %w", cfg.Path, ErrRelayFailoverPath)
	}
	w, err := newWorkspace(cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, nil, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer w.close()
	var etcd *arborEtcd
	if cfg.Path == RelayFailoverEtcd {
		if etcd, err = w.startArborEtcd(ctx); err != nil {
			return nil, err
		}
		defer etcd.close()
	}
	rep := &RelayFailoverReport{Path: cfg.Path, MoveAfterMs: ms(cfg.MoveAfter), MoveAfterDownMs: ms(cfg.MoveAfterDown),
		HoldDownMs: ms(cfg.HoldDown), SteadyMs: ms(cfg.Steady), Digests: true}
	var streaming, nodes, stalls []time.Duration
	for i := range cfg.Runs {
		e := w.newEnv(cfg.Path + "-run-" + strconv.Itoa(i+1))
		var set *failoverTree
		if etcd != nil {
			set, err = etcdFailoverTree(ctx, cfg, e, etcd, "rf-"+strconv.Itoa(i+1))
		} else {
			set, err = staticFailoverTree(ctx, cfg, e)
		}
		var run RelayFailoverRun
		if err == nil {
			run, err = relayFailoverOnce(ctx, cfg, set)
		}
		e.close()
		if err != nil {
			return nil, fmt.Errorf("%s path, run %d: %w", cfg.Path, i+1, err)
		}
		w.progress("%s run %d: children streaming %.0f ms after the kill (node's replica %.0f ms), longest write stall %.0f ms, %d refused writes, %d full syncs, %d+%d spurious moves",
			cfg.Path, i+1, run.StreamingMs, run.NodeStreamingMs, run.StallMs, run.WriteErrors, run.FullSyncs, run.SteadyMoves, run.AfterMoves)
		rep.Runs = append(rep.Runs, run)
		streaming = append(streaming, time.Duration(run.StreamingMs*float64(time.Millisecond)))
		nodes = append(nodes, time.Duration(run.NodeStreamingMs*float64(time.Millisecond)))
		stalls = append(stalls, time.Duration(run.StallMs*float64(time.Millisecond)))
		rep.WriteErrors += run.WriteErrors
		rep.FullSyncs += run.FullSyncs
		rep.SteadyMoves += run.SteadyMoves
		rep.AfterMoves += run.AfterMoves
		rep.Digests = rep.Digests && run.DigestsEqual
	}
	rep.Streaming, rep.Stall = summarize(streaming), summarize(stalls)
	if etcd != nil {
		d := summarize(nodes)
		rep.NodeStreaming = &d
	}
	return rep, nil
}

// failoverTree is one run's processes: what relayFailoverOnce kills,
// watches and checks.
type failoverTree struct {
	master   *server
	a1, a2   *relayServer
	children []*server // b1, b2
	replicas []*server // under b1, b2 (and the node's)
	// node is the replica under a1 moved by its node agent (etcd path);
	// nil on the static path.
	node *server
}

// staticFailoverTree starts the static path's tree: b1 and b2 on the
// --upstream list "arbor://a1,arbor://a2".
func staticFailoverTree(ctx context.Context, cfg RelayFailoverConfig, e *env) (*failoverTree, error) {
	master, err := e.startRedis(ctx, "master", "", "--repl-backlog-size", "64mb")
	if err != nil {
		return nil, err
	}
	t := &failoverTree{master: master}
	if t.a1, err = e.startRelayWith(ctx, "a1", relaySpec{upstream: "redis://" + master.addr, site: "A", grpc: true}); err != nil {
		return nil, err
	}
	if t.a2, err = e.startRelayWith(ctx, "a2", relaySpec{upstream: "redis://" + master.addr, site: "A", grpc: true}); err != nil {
		return nil, err
	}
	list := "arbor://" + t.a1.grpcAddr + ",arbor://" + t.a2.grpcAddr
	for _, id := range []string{"b1", "b2"} {
		b, err := e.startRelayWith(ctx, id, relaySpec{upstream: list, site: "B", args: moverArgs(cfg)})
		if err != nil {
			return nil, err
		}
		t.children = append(t.children, b.server)
		r, err := e.startRedis(ctx, "replica-"+id, b.addr)
		if err != nil {
			return nil, err
		}
		t.replicas = append(t.replicas, r)
	}
	return t, nil
}

// moverArgs are the child relays' bounds.
func moverArgs(cfg RelayFailoverConfig) []string {
	return []string{"--move-after", cfg.MoveAfter.String(), "--move-after-down", cfg.MoveAfterDown.String(), "--hold-down", cfg.HoldDown.String()}
}

// etcdFailoverTree starts the etcd path's tree under cluster: the
// topology declares a1 and a2 following the master, b1 and b2 (site B)
// following a1, and node n-a1 (site A) following a1; every relay runs
// with --etcd and no --upstream, n-a1's Redis is steered by an `arbor
// node --elect=false` agent. It returns once the relays' statuses say they
// stream (a child's Mover chooses among relays with a status).
func etcdFailoverTree(ctx context.Context, cfg RelayFailoverConfig, e *env, etcd *arborEtcd, cluster string) (*failoverTree, error) {
	master, err := e.startRedis(ctx, "master", "", "--repl-backlog-size", "64mb")
	if err != nil {
		return nil, err
	}
	node, err := e.startRedis(ctx, "replica-a1", "")
	if err != nil {
		return nil, err
	}
	t := &failoverTree{master: master, node: node}
	top := topology.New()
	top.Sites["A"], top.Sites["B"] = topology.Site{Name: "A"}, topology.Site{Name: "B"}
	addrs := map[string][2]string{} // redis, grpc
	for _, r := range []struct{ id, site, up string }{{"a1", "A", topology.UpstreamMaster}, {"a2", "A", topology.UpstreamMaster}, {"b1", "B", "a1"}, {"b2", "B", "a1"}} {
		var pair [2]string
		for i := range pair {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			pair[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		}
		addrs[r.id] = pair
		top.Relays[r.id] = topology.RelaySpec{ID: r.id, Site: r.site, RedisAddr: pair[0], GRPCAddr: pair[1], Upstream: r.up}
	}
	top.Master = arborNodeID("master")
	top.Nodes[top.Master] = topology.NodeSpec{ID: top.Master, Site: "A", RedisAddr: master.addr, Candidate: true, Priority: 10, Follow: "a1"}
	nodeID := arborNodeID("a1")
	top.Nodes[nodeID] = topology.NodeSpec{ID: nodeID, Site: "A", RedisAddr: node.addr, Follow: "a1"}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = topology.Apply(actx, etcd.cli, cluster, top)
	cancel()
	if err != nil {
		return nil, err
	}
	etcdArgs := []string{"--etcd", etcd.url, "--cluster", cluster, "--log-level", "warn"}
	relays := map[string]*relayServer{}
	var all []*server
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		a := []string{"relay", "--id", id, "--site", top.Relays[id].Site, "--data-dir", "data",
			"--redis-addr", addrs[id][0], "--grpc-addr", addrs[id][1], "--plaintext"}
		if top.Relays[id].Upstream != topology.UpstreamMaster {
			a = append(a, moverArgs(cfg)...)
		}
		p, err := e.start(id, filepath.Join(e.dir, id), e.relayBin, append(append(a, e.relayArg...), etcdArgs...))
		if err != nil {
			return nil, err
		}
		relays[id] = &relayServer{server: &server{process: p, addr: addrs[id][0]}, grpcAddr: addrs[id][1]}
		all = append(all, relays[id].server)
	}
	for _, s := range all {
		if err := waitReady(ctx, s); err != nil {
			return nil, err
		}
	}
	t.a1, t.a2 = relays["a1"], relays["a2"]
	for _, id := range []string{"b1", "b2"} {
		b := relays[id]
		t.children = append(t.children, b.server)
		r, err := e.startRedis(ctx, "replica-"+id, b.addr)
		if err != nil {
			return nil, err
		}
		t.replicas = append(t.replicas, r)
	}
	if _, err := e.start("agent-a1", filepath.Join(e.dir, "agent-a1"), e.relayBin, append([]string{"node", "--elect=false", "--id", nodeID,
		"--site", "A", "--redis", "redis://" + node.addr, "--move-after", cfg.MoveAfter.String(), "--hold-down", cfg.HoldDown.String()}, etcdArgs...)); err != nil {
		return nil, err
	}
	t.replicas = append(t.replicas, node)
	err = poll(ctx, arborReadyTimeout, slowPoll, "relays' statuses not streaming", append(all, master, node), func() (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		sts, err := topology.ReadStatus(rctx, etcd.cli, cluster)
		if err != nil {
			return false, err
		}
		for _, id := range []string{"a1", "a2", "b1", "b2"} {
			if ls := sts.Relays[id].GetLinkState(); ls != arborv1.LinkState_LINK_STATE_STREAMING {
				return false, fmt.Errorf("relay %s: status link %v", id, ls)
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func relayFailoverOnce(ctx context.Context, cfg RelayFailoverConfig, t *failoverTree) (RelayFailoverRun, error) {
	var run RelayFailoverRun
	if _, err := waitStreaming(ctx, linkTimeout, t.master.addr, t.replicas); err != nil {
		return run, err
	}
	if err := t.following(ctx, t.a1, true); err != nil {
		return run, fmt.Errorf("before the kill: %w", err)
	}
	for _, kv := range [][2]string{{"min-replicas-to-write", "1"}, {"min-replicas-max-lag", "3"}} {
		if _, err := query(ctx, t.master.addr, "CONFIG", "SET", kv[0], kv[1]); err != nil {
			return run, err
		}
	}
	before, err := t.fullSyncs(ctx)
	if err != nil {
		return run, err
	}
	moves0, err := t.moves(ctx)
	if err != nil {
		return run, err
	}

	wctx, stopWriter := context.WithCancel(ctx)
	done := make(chan stallWriter, 1)
	go func() { done <- writeSteadily(wctx, t.master.addr, 500000) }()
	stop := func() stallWriter { stopWriter(); return <-done }
	// Steady writes with no kill: nobody may move.
	time.Sleep(cfg.Steady)
	movesKill, err := t.moves(ctx)
	if err != nil {
		stop()
		return run, err
	}
	run.SteadyMoves = movesKill - moves0
	if err := t.following(ctx, t.a1, false); err != nil {
		run.SteadyMoves++ // the node's replica left a1
	}
	t.a1.kill()
	killed := time.Now()
	nodeDone := t.node == nil
	err = poll(ctx, linkTimeout, pollInterval, "not streaming from a2", t.children, func() (bool, error) {
		if !nodeDone {
			if err := t.nodeFollows(ctx, t.a2); err == nil {
				run.NodeStreamingMs, nodeDone = ms(time.Since(killed)), true
			}
		}
		if run.StreamingMs == 0 {
			if err := t.childrenFollow(ctx, t.a2); err != nil {
				return false, err
			}
			run.StreamingMs = ms(time.Since(killed))
		}
		if !nodeDone {
			return false, errors.New("the node's replica does not stream from a2")
		}
		return true, nil
	})
	if err != nil {
		stop()
		return run, err
	}
	// Steady writes after the move: nobody may move again.
	time.Sleep(cfg.Steady)
	w := stop()
	run.StallMs, run.WriteErrors = ms(w.longest), w.errs
	movesEnd, err := t.moves(ctx)
	if err != nil {
		return run, err
	}
	if movesEnd-movesKill < int64(len(t.children)) {
		// Each child moved to a2 (polled above): the counter missed one.
		return run, fmt.Errorf("%d moves counted after the kill, want at least %d", movesEnd-movesKill, len(t.children))
	}
	run.AfterMoves = movesEnd - movesKill - int64(len(t.children))
	if err := t.following(ctx, t.a2, false); err != nil {
		run.AfterMoves++
	}
	if err := waitFlowing(ctx, t.master.addr, t.replicas); err != nil {
		return run, err
	}
	after, err := t.fullSyncs(ctx)
	if err != nil {
		return run, err
	}
	run.FullSyncs = after - before
	checks, err := compareDigests(ctx, "relay failover", t.master, t.replicas...)
	if err != nil {
		return run, err
	}
	run.DigestsEqual = true
	for _, c := range checks {
		run.DigestsEqual = run.DigestsEqual && c.Match
	}
	return run, nil
}

// childrenFollow checks that both children stream from parent.
func (t *failoverTree) childrenFollow(ctx context.Context, parent *relayServer) error {
	want := "arbor://" + parent.grpcAddr
	for _, c := range t.children {
		m, err := infoOn(ctx, c.addr, "all")
		if err != nil {
			return err
		}
		if m["arbor_upstream"] != want || m["master_link_status"] != "up" {
			return fmt.Errorf("%s follows %s, link %s", c.name, m["arbor_upstream"], m["master_link_status"])
		}
	}
	return nil
}

// nodeFollows checks that the node's replica streams from parent.
func (t *failoverTree) nodeFollows(ctx context.Context, parent *relayServer) error {
	m, err := infoOn(ctx, t.node.addr, "replication")
	if err != nil {
		return err
	}
	if got := net.JoinHostPort(m["master_host"], m["master_port"]); got != parent.addr || m["master_link_status"] != "up" {
		return fmt.Errorf("the node's replica follows %s, link %s; want %s", got, m["master_link_status"], parent.addr)
	}
	return nil
}

// following checks that the children and the node's replica stream from
// parent; wait polls for it (a tree coming up), else it is checked once.
func (t *failoverTree) following(ctx context.Context, parent *relayServer, wait bool) error {
	check := func() error {
		if err := t.childrenFollow(ctx, parent); err != nil {
			return err
		}
		if t.node != nil {
			return t.nodeFollows(ctx, parent)
		}
		return nil
	}
	if !wait {
		return check()
	}
	return poll(ctx, linkTimeout, slowPoll, "not streaming from "+parent.name, t.children, func() (bool, error) {
		err := check()
		return err == nil, err
	})
}

// moves sums the children's moves (INFO arbor_parent_moves).
func (t *failoverTree) moves(ctx context.Context) (int64, error) {
	var n int64
	for _, c := range t.children {
		m, err := infoOn(ctx, c.addr, "stats")
		if err != nil {
			return 0, err
		}
		v, err := infoInt(m, "arbor_parent_moves")
		if err != nil {
			return 0, fmt.Errorf("%s: %w", c.name, err)
		}
		n += v
	}
	return n, nil
}

// fullSyncs sums the full syncs of the master (served), of each child
// relay and of a2 (received from its upstream and served to its replicas).
func (t *failoverTree) fullSyncs(ctx context.Context) (int64, error) {
	return treeFullSyncs(ctx, t.master, append([]*server{t.a2.server}, t.children...))
}

// treeFullSyncs sums the full syncs of the master (served), and of each child
// relay (received from its upstream and served to its replica).
func treeFullSyncs(ctx context.Context, master *server, children []*server) (int64, error) {
	m, err := infoOn(ctx, master.addr, "stats")
	if err != nil {
		return 0, err
	}
	n, err := infoInt(m, "sync_full")
	if err != nil {
		return 0, err
	}
	for _, c := range children {
		ci, err := infoOn(ctx, c.addr, "all")
		if err != nil {
			return 0, err
		}
		for _, k := range []string{"sync_full", "arbor_upstream_full_syncs"} {
			v, err := infoInt(ci, k)
			if err != nil {
				return 0, err
			}
			n += v
		}
	}
	return n, nil
}

// stallWriter is what writeSteadily saw.
type stallWriter struct {
	longest time.Duration
	errs    int
}

// writeSteadily SETs one key at a time, 1 ms apart, until ctx ends or
// maxOps writes, and measures the longest time between two accepted ones.
func writeSteadily(ctx context.Context, addr string, maxOps int) stallWriter {
	var s stallWriter
	last := time.Now()
	var c *conn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for i := 0; i < maxOps && ctx.Err() == nil; i++ {
		if c == nil {
			var err error
			if c, err = dial(ctx, addr); err != nil {
				s.errs++
				time.Sleep(5 * time.Millisecond)
				continue
			}
		}
		_, err := c.do("SET", "rf:"+strconv.Itoa(i%5000), strconv.Itoa(i))
		if err != nil {
			if ctx.Err() == nil {
				s.errs++
			}
			c.close()
			c = nil
			time.Sleep(5 * time.Millisecond)
			continue
		}
		now := time.Now()
		s.longest = max(s.longest, now.Sub(last))
		last = now
		time.Sleep(time.Millisecond)
	}
	return s
}

// WriteText renders the report.
func (r *RelayFailoverReport) WriteText(w io.Writer) error {
	return (&RelayFailoverPaths{Paths: []*RelayFailoverReport{r}}).WriteText(w)
}

// RelayFailoverPaths is relay failover measured on several paths, for a
// side-by-side report.
type RelayFailoverPaths struct {
	Paths []*RelayFailoverReport `json:"paths"`
}

// RunRelayFailoverPaths runs RunRelayFailover on each path in turn.
func RunRelayFailoverPaths(ctx context.Context, cfg RelayFailoverConfig, paths []string) (*RelayFailoverPaths, error) {
	out := &RelayFailoverPaths{}
	for _, p := range paths {
		c := cfg
		c.Path = p
		rep, err := RunRelayFailover(ctx, c)
		if err != nil {
			return nil, err
		}
		out.Paths = append(out.Paths, rep)
	}
	return out, nil
}

// ParseRelayFailoverPaths parses --path: static, etcd or both.
func ParseRelayFailoverPaths(s string) ([]string, error) {
	switch s {
	case RelayFailoverStatic, RelayFailoverEtcd:
		return []string{s}, nil
	case "both":
		return []string{RelayFailoverStatic, RelayFailoverEtcd}, nil
	}
	return nil, fmt.Errorf("%q (want static, etcd or both): %w", s, ErrRelayFailoverPath)
}

// WriteText renders the paths side by side.
func (p *RelayFailoverPaths) WriteText(w io.Writer) error {
	if len(p.Paths) == 0 {
		_, err := fmt.Fprintln(w, "relay failover: no path measured")
		return err
	}
	miss := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISS"
	}
	first := p.Paths[0]
	var b strings.Builder
	fmt.Fprintf(&b, "relay failover: %d runs · SIGKILL of a root relay under writes (min-replicas-to-write 1), %s\n", len(first.Runs), first.bounds())
	row := func(label string, cell func(r *RelayFailoverReport) string) {
		line := fmt.Sprintf("  %-38s", label)
		for _, r := range p.Paths {
			line += fmt.Sprintf("  %-34s", cell(r))
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	dist := func(d Dist) string { return fmt.Sprintf("%5.0f %5.0f %5.0f ms", d.P50, d.P99, d.Max) }
	row("", func(r *RelayFailoverReport) string { return r.pathName() })
	row("children streaming again p50 p99 max", func(r *RelayFailoverReport) string {
		return dist(r.Streaming) + "  " + miss(r.Streaming.P99 <= ms(relayFailoverStreamingTarget))
	})
	row("node's replica streaming p50 p99 max", func(r *RelayFailoverReport) string {
		if r.NodeStreaming == nil {
			return "-"
		}
		return dist(*r.NodeStreaming) + "  " + miss(r.NodeStreaming.P99 <= ms(relayFailoverStreamingTarget))
	})
	row("longest write stall p50 p99 max", func(r *RelayFailoverReport) string {
		return dist(r.Stall) + "  " + miss(r.Stall.Max <= ms(relayFailoverStallTarget))
	})
	row("refused writes", func(r *RelayFailoverReport) string { return strconv.Itoa(r.WriteErrors) })
	row("full syncs", func(r *RelayFailoverReport) string {
		return strconv.FormatInt(r.FullSyncs, 10) + "  " + miss(r.FullSyncs == 0)
	})
	row("spurious moves: steady, after the move", func(r *RelayFailoverReport) string {
		if r.SteadyMs == 0 {
			return "-"
		}
		return fmt.Sprintf("%d, %d  %s", r.SteadyMoves, r.AfterMoves, miss(r.SteadyMoves+r.AfterMoves == 0))
	})
	row("digests", func(r *RelayFailoverReport) string { return map[bool]string{true: "equal", false: "DIFFER"}[r.Digests] })
	fmt.Fprintf(&b, "  targets: streaming again p99 <= %v, write stall max <= %v, 0 full syncs, 0 spurious moves\n",
		relayFailoverStreamingTarget, relayFailoverStallTarget)
	_, err := io.WriteString(w, b.String())
	return err
}

// pathName names the report's path for people.
func (r *RelayFailoverReport) pathName() string {
	if r.Path == RelayFailoverEtcd {
		return "etcd (topology.Mover, node agent)"
	}
	return "static (--upstream lists)"
}

// bounds says the children's bounds as flags: --move-after, and
// --move-after-down and the rest unless the report is from before them.
func (r *RelayFailoverReport) bounds() string {
	d := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	s := fmt.Sprintf("--move-after %v", d(r.MoveAfterMs))
	if r.MoveAfterDownMs > 0 {
		s += fmt.Sprintf(" --move-after-down %v", d(r.MoveAfterDownMs))
	}
	if r.HoldDownMs > 0 {
		s += fmt.Sprintf(" --hold-down %v", d(r.HoldDownMs))
	}
	if r.SteadyMs > 0 {
		s += fmt.Sprintf(", %v of steady writes before the kill and after the move", d(r.SteadyMs))
	}
	return s
}
