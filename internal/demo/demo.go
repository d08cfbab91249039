// Package demo runs the seed topology of DESIGN.md on one machine: a Redis
// master and relays in site A, relays in sites B and C, and the backups and
// read replicas of every site replicating from their site's relay, with a
// write load, a live table of offsets and a final digest check.
//
// By default the control plane runs too: an etcd (one given, on PATH, or
// built from tools/go.mod; or an existing one), the seed topology applied
// to it, the relays taking their upstreams from it (package fabric), a
// node agent beside every redis-server pointing it where the topology says,
// one live re-parenting through etcd during the load, and the fabric as
// `arbor status` shows it at the end. Without etcd (Options.NoEtcd, or
// when no etcd can be found or built) the topology is wired statically.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/freeport"
	"github.com/arbor-fabric/arbor/relay"
)

// DefaultCluster is the cluster name the demo's topology is applied under.
const DefaultCluster = "demo"

// Options configure a demo run.
type Options struct {
	// Dir holds every server's files; empty means a new temporary directory,
	// removed at the end unless Keep.
	Dir string
	// Keep leaves the fabric running after the story, with the commands to
	// explore it printed, until ctx ends (Ctrl-C); the directory is kept.
	Keep bool
	// NoFailover skips the failover story: the kill -9 of the master's
	// Redis, its return and the switchover back.
	NoFailover bool
	// Duration of the write load; 0 runs until ctx ends.
	Duration time.Duration
	// Rate is the write load in commands per second.
	Rate int
	// RedisServer is the redis-server binary.
	RedisServer string
	// Out receives the demo's report.
	Out io.Writer
	// Logger receives the relays' and node agents' logs.
	Logger *slog.Logger

	// NoEtcd runs the static demo: relays and replicas wired directly,
	// no control plane.
	NoEtcd bool
	// Etcd are the endpoints of a running etcd to use; empty runs one.
	Etcd []string
	// EtcdBin is the etcd binary to run; empty means etcd on PATH, else
	// the one built from tools/go.mod (cached; the first build takes about
	// 90 s). When none can be found or built, the demo runs static.
	EtcdBin string
	// Cluster is the cluster name in etcd; empty means DefaultCluster.
	Cluster string
}

// server is one redis-server of the topology.
type server struct {
	name, site, role, follows string
	port                      int
	args                      []string // redis-server's, to restart it alike
	cmd                       *exec.Cmd
	done                      chan struct{}
	client                    *redis.Client
}

// exited reports whether the server's process ended (killed by hand, say).
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

type relayNode struct {
	name, site, follows string
	port                int
	grpcAddr            string
	client              *redis.Client // to its Redis side, for INFO
	started             chan struct{} // closed once r is set
	exited              chan struct{} // closed when the relay's goroutine returned
	r                   *relay.Relay
	// Under the control plane: its configuration, and what stops it alone
	// (StartFabric's StopRelay).
	cfg    relay.Config
	cancel context.CancelFunc
	// The full syncs it took (upstream) and served before it was last
	// stopped: its counters start at zero again when it restarts.
	priorUpstreamFull, priorServedFull int64
}

func (rn *relayNode) redisAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(rn.port)) }

// fullSyncs returns the full syncs rn took from its upstream and served
// to replicas over all its runs.
func (rn *relayNode) fullSyncs() (upstream, served int64) {
	upstream, served = rn.priorUpstreamFull, rn.priorServedFull
	select {
	case <-rn.exited: // stopped: its counts are in the prior ones
	default:
		u, s := rn.runFullSyncs()
		upstream, served = upstream+u, served+s
	}
	return upstream, served
}

// runFullSyncs returns the full syncs of rn's current (or last) run:
// zeros before it started.
func (rn *relayNode) runFullSyncs() (upstream, served int64) {
	select {
	case <-rn.started:
		c := rn.r.Status().GetCounters()
		return int64(c.GetUpstreamFullSyncs()), int64(c.GetFullSyncsServed())
	default:
		return 0, 0
	}
}

// ErrNoRedisServer is returned (wrapped) when the redis-server binary is
// not found.
var ErrNoRedisServer = errors.New("redis-server not found")

// Run runs the demo until its story and load end or ctx is cancelled, then
// checks that every server holds the master's data and that no
// acknowledged write was lost where none may be, and stops everything
// (with Options.Keep, once ctx ends). The error wraps ErrCheck when a
// check failed.
func Run(ctx context.Context, o Options) (*Summary, error) {
	sum := &Summary{}
	if o.RedisServer == "" {
		o.RedisServer = "redis-server"
	}
	bin, err := exec.LookPath(o.RedisServer)
	if err != nil {
		return sum, fmt.Errorf("%w: the demo runs real Redis servers (%v); install it: apt-get install -y redis-server (Debian, Ubuntu), brew install redis (macOS), or give --redis-server PATH", ErrNoRedisServer, err)
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "arbor-demo-"); err != nil {
			return sum, err
		}
		if !o.Keep {
			defer os.RemoveAll(o.Dir)
		}
	}
	d := &demo{o: o, bin: bin, sum: sum, w: newWriter()}
	defer d.stop()
	fmt.Fprintf(d.o.Out, "Arbor demo: the seed topology on this machine (files in %s)\n", d.o.Dir)
	if !o.NoEtcd {
		err = d.startEtcd(ctx)
	}
	switch {
	case err != nil:
	case d.cli != nil:
		err = d.startFabric(ctx)
	default:
		fmt.Fprintln(d.o.Out)
		err = d.startStatic(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(d.o.Out, "Interrupted while starting; stopping.")
			return sum, nil
		}
		return sum, err
	}
	err = d.run(ctx)
	if len(sum.Failures) > 0 {
		fmt.Fprintf(d.o.Out, "\nFAILED checks:\n  %s\n", strings.Join(sum.Failures, "\n  "))
		// An interrupted story fails its waits: not a finding.
		if err == nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %s", ErrCheck, strings.Join(sum.Failures, "; "))
		}
	} else if err == nil && ctx.Err() == nil {
		fmt.Fprintln(d.o.Out, "\nAll checks passed.")
	}
	if o.Keep && ctx.Err() == nil {
		d.explore()
		<-ctx.Done()
		fmt.Fprintln(d.o.Out, "\nStopping everything the demo started...")
	}
	return sum, err
}

type demo struct {
	o      Options
	bin    string
	master *server
	nodes  []*server // the master first
	relays []*relayNode
	wg     sync.WaitGroup
	cancel context.CancelFunc // ends the relays and agents
	sum    *Summary
	w      *writer

	// With the control plane.
	etcd      *etcdProcess // nil with Options.Etcd
	endpoints []string
	cli       *clientv3.Client
	ctl       *fabricState

	// With StartFabric: its options, the agents run as processes (by
	// node) and the agents' own etcd clients.
	hooks     *FabricOptions
	agents    map[string]*agentProc
	agentClis []*clientv3.Client
	// rerunRelay runs a stopped relay again, under the fabric's context.
	rerunRelay func(*relayNode)
}

func (d *demo) startRedis(ctx context.Context, name, site, role string, extra ...string) (*server, error) {
	port, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(d.o.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--enable-debug-command", "local",
		"--logfile", filepath.Join(dir, "redis.log"), "--repl-diskless-sync-delay", "0"}, extra...)
	if d.hooks != nil {
		args = append(args, d.hooks.RedisArgs...)
	}
	n := &server{name: name, site: site, role: role, port: port, args: args}
	n.client = redis.NewClient(&redis.Options{Addr: n.addr(), Protocol: 2, DisableIdentity: true})
	if err := d.launch(ctx, n); err != nil {
		n.client.Close()
		return nil, err
	}
	d.nodes = append(d.nodes, n)
	return n, nil
}

// launch starts n's redis-server (again, after a kill: same port, same
// directory) and waits until it answers.
func (d *demo) launch(ctx context.Context, n *server) error {
	logPath := filepath.Join(d.o.Dir, n.name, "redis.log")
	cmd := exec.Command(d.bin, n.args...)
	// Its own process group (a Ctrl-C goes to the demo only, which stops
	// it), and killed should the demo die without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
	err := func() error {
		deadline := time.Now().Add(10 * time.Second)
		for n.client.Ping(ctx).Err() != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not answer PING within 10s (see %s)", n.name, logPath)
			}
			select {
			case <-done:
				return fmt.Errorf("%s exited at start (see %s)", n.name, logPath)
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}()
	if err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return err
}

// relayConfig returns the configuration of a demo relay on free loopback
// ports.
func (d *demo) relayConfig(name, site string) (relay.Config, error) {
	port, err := freeport.Get()
	if err != nil {
		return relay.Config{}, err
	}
	gport, err := freeport.Get()
	if err != nil {
		return relay.Config{}, err
	}
	cfg := relay.DefaultConfig()
	cfg.ID, cfg.Site = name, site
	cfg.DataDir = filepath.Join(d.o.Dir, name)
	cfg.RedisAddr = fmt.Sprintf("127.0.0.1:%d", port)
	cfg.GRPCAddr = fmt.Sprintf("127.0.0.1:%d", gport)
	cfg.TLS.Plaintext = true // loopback only; production uses --tls-*
	cfg.BacklogSize = 256 << 20
	cfg.Logger = d.o.Logger
	return cfg, nil
}

func newRelayNode(cfg relay.Config, follows string) *relayNode {
	_, p, _ := net.SplitHostPort(cfg.RedisAddr)
	port, _ := strconv.Atoi(p)
	return &relayNode{
		name: cfg.ID, site: cfg.Site, follows: follows, port: port, grpcAddr: cfg.GRPCAddr,
		client:  redis.NewClient(&redis.Options{Addr: cfg.RedisAddr, Protocol: 2, DisableIdentity: true}),
		started: make(chan struct{}),
		exited:  make(chan struct{}),
	}
}

// startRelay starts a relay following upstream: a redis:// master or an
// arbor:// parent relay.
func (d *demo) startRelay(ctx context.Context, name, site, upstream, follows string) (*relayNode, error) {
	cfg, err := d.relayConfig(name, site)
	if err != nil {
		return nil, err
	}
	cfg.Upstream = upstream
	r, err := relay.New(cfg)
	if err != nil {
		return nil, err
	}
	rn := newRelayNode(cfg, follows)
	rn.r = r
	close(rn.started)
	d.relays = append(d.relays, rn)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(rn.exited)
		if err := r.Run(ctx); err != nil {
			d.o.Logger.Error("relay stopped with an error", "relay", name, "err", err)
		}
	}()
	return rn, nil
}

// startStatic starts the topology wired directly: relays given their
// upstreams, replicas started with --replicaof their site's relay.
func (d *demo) startStatic(ctx context.Context) error {
	rctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	m, err := d.startRedis(ctx, "A-Master", "A", "master", "--repl-backlog-size", "64mb")
	if err != nil {
		return err
	}
	d.master = m
	// Site A has two relays beside the master, both pulling from it; B and
	// C have one relay each, pulling once per site over compressed gRPC
	// from relay-a1 and relay-a2.
	site := map[string][]*relayNode{}
	masterURL := fmt.Sprintf("redis://127.0.0.1:%d", m.port)
	a1, err := d.startRelay(rctx, "relay-a1", "A", masterURL, m.name)
	if err != nil {
		return err
	}
	a2, err := d.startRelay(rctx, "relay-a2", "A", masterURL, m.name)
	if err != nil {
		return err
	}
	b, err := d.startRelay(rctx, "relay-b", "B", "arbor://"+a1.grpcAddr, a1.name)
	if err != nil {
		return err
	}
	c, err := d.startRelay(rctx, "relay-c", "C", "arbor://"+a2.grpcAddr, a2.name)
	if err != nil {
		return err
	}
	site["A"], site["B"], site["C"] = []*relayNode{a1, a2}, []*relayNode{b}, []*relayNode{c}
	replicas := []struct{ name, site, role string }{
		{"A-M-Backup", "A", "backup"}, {"A-S-1", "A", "replica"}, {"A-S-2", "A", "replica"},
		{"B-M-Backup", "B", "backup"}, {"B-S-1", "B", "replica"}, {"B-S-2", "B", "replica"},
		{"C-S-1", "C", "replica"}, {"C-S-2", "C", "replica"},
	}
	for i, spec := range replicas {
		relays := site[spec.site]
		rn := relays[i%len(relays)]
		n, err := d.startRedis(ctx, spec.name, spec.site, spec.role, "--replicaof", "127.0.0.1", strconv.Itoa(rn.port))
		if err != nil {
			return err
		}
		n.follows = rn.name
	}
	return nil
}

func (d *demo) run(ctx context.Context) error {
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	story := d.ctl != nil && !d.o.NoFailover
	switch {
	case d.ctl == nil:
		fmt.Fprintln(d.o.Out, "Note: no control plane, so no election: the failover story (kill -9, return, switchover) is skipped.")
	case d.o.NoFailover:
		fmt.Fprintln(d.o.Out, "\n(--no-failover: the failover story is skipped.)")
	default:
		d.w.setPhase(seedMaster) // the load, until the kill
	}
	loadErr := make(chan error, 1)
	go func() {
		loadErr <- d.w.run(loadCtx, d.currentMaster, d.o.Rate)
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	// The load runs for Duration and until the story is told; with the
	// control plane the story starts with one live edit once the load runs.
	var loadEnd <-chan time.Time
	if d.o.Duration > 0 {
		t := time.NewTimer(d.o.Duration)
		defer t.Stop()
		loadEnd = t.C
	}
	var edit <-chan time.Time
	if d.ctl != nil {
		t := time.NewTimer(reparentDelay(d.o.Duration))
		defer t.Stop()
		edit = t.C
	}
	told, timeUp := d.ctl == nil, false
	for !(told && timeUp) {
		select {
		case <-ctx.Done():
			told, timeUp = true, true
		case err := <-loadErr:
			loadErr <- err
			told, timeUp = true, true
		case <-loadEnd:
			timeUp = true
		case <-edit:
			d.reparent(ctx) // not loadCtx: the load may end meanwhile
			if story && d.failover(ctx) && d.oldMasterReturns(ctx) {
				d.switchoverBack(ctx)
			}
			told = true
		case <-tick.C:
			d.table(ctx, fmt.Sprintf("%d writes so far", d.w.written()))
		}
	}
	stopLoad()
	if err := <-loadErr; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("write load: %w", err)
	}
	fmt.Fprintf(d.o.Out, "\nLoad stopped after %d acknowledged writes; waiting for every server to catch up with the master...\n", d.w.written())
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.converge(cctx)
	d.table(cctx, "final")
	if d.ctl != nil {
		d.showFabric(cctx)
	}
	if err != nil {
		d.sum.fail("digests: %v", err)
		return nil
	}
	d.sum.DigestsEqual = true
	fmt.Fprintf(d.o.Out, "\nOK: all %d servers hold the master's data (DEBUG DIGEST equal).\n", d.running()-1)
	d.verifyWrites(cctx)
	if d.ctl != nil {
		d.fabricVerdict()
		return nil
	}
	for _, rn := range d.relays[2:] {
		st := rn.r.Status()
		c := d.relays[0].r.Status().GetCompression()
		if rn.follows == "relay-a2" {
			c = d.relays[1].r.Status().GetCompression()
		}
		fmt.Fprintf(d.o.Out, "Site %s pulled the stream once over gRPC from %s: %d bytes stored; %s's links to other sites carried %d bytes for %d raw (zstd, %.1fx).\n",
			rn.site, rn.follows, st.GetStoredOffset(), rn.follows, c.GetWireBytes(), c.GetRawBytes(), ratio(c.GetRawBytes(), c.GetWireBytes()))
	}
	return nil
}

// converge waits until every replica's offset and digest equal the master's.
func (d *demo) converge(ctx context.Context) error {
	var last error
	for {
		last = d.check(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("servers did not converge: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// currentMaster is the server the election names master (the newest
// record), else the seed's master.
func (d *demo) currentMaster(ctx context.Context) *server {
	if d.cli == nil {
		return d.master
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := election.ReadState(rctx, d.cli, d.o.Cluster)
	if err != nil || st.Master == nil {
		return d.master
	}
	for _, n := range d.nodes {
		if n.name == st.Master.Node {
			return n
		}
	}
	return d.master
}

// check compares every running server's digest with the current master's.
func (d *demo) check(ctx context.Context) error {
	m := d.currentMaster(ctx)
	want, err := m.client.Do(ctx, "DEBUG", "DIGEST").Text()
	if err != nil {
		return err
	}
	for _, n := range d.nodes {
		if n == m || n.exited() {
			continue
		}
		got, err := n.client.Do(ctx, "DEBUG", "DIGEST").Text()
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if got != want {
			return fmt.Errorf("%s digest %s, master %s", n.name, got, want)
		}
	}
	return nil
}

// nameAt names the relay or server listening at addr (host:port, the Redis
// or the gRPC side), or returns "".
func (d *demo) nameAt(addr string) string {
	for _, rn := range d.relays {
		if addr == rn.redisAddr() || addr == rn.grpcAddr {
			return rn.name
		}
	}
	for _, n := range d.nodes {
		if addr == n.addr() {
			return n.name
		}
	}
	return ""
}

// table prints every server's offset and lag, and what it follows as it
// says itself (INFO), so a re-parenting shows at once.
func (d *demo) table(ctx context.Context, title string) {
	// The rows first, the master's offset last: a lag is then never
	// negative.
	type row struct {
		site, name, role, follows string
		off                       int64
		syncs                     string
	}
	var rows []row
	for _, rn := range d.relays {
		info := infoMap(ctx, rn.client, "all")
		follows := rn.follows
		if up, ok := info["arbor_upstream"]; ok {
			_, addr, _ := strings.Cut(up, "://")
			if name := d.nameAt(addr); name != "" {
				follows = name
			}
		}
		syncs := fmt.Sprintf("%d full, %d partial", infoField(info, "arbor_upstream_full_syncs"), infoField(info, "arbor_upstream_partial_syncs"))
		rows = append(rows, row{rn.site, rn.name, "relay", follows, infoField(info, "master_repl_offset"), syncs})
	}
	m := d.currentMaster(ctx)
	for _, n := range d.nodes {
		if n == m || n.exited() {
			continue
		}
		info := infoMap(ctx, n.client, "replication")
		follows := orDash(n.follows)
		switch info["role"] {
		case "slave":
			if name := d.nameAt(net.JoinHostPort(info["master_host"], info["master_port"])); name != "" {
				follows = name
			}
		case "master":
			follows = "- (not yet pointed)"
		}
		rows = append(rows, row{n.site, n.name, n.role, follows, infoField(info, "master_repl_offset"), ""})
	}
	mOff := infoInt(ctx, m.client, "replication", "master_repl_offset")
	w := tabwriter.NewWriter(d.o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\n[%s] %s  master offset %d\n", time.Now().Format("15:04:05"), title, mOff)
	fmt.Fprintln(w, "SITE\tNAME\tROLE\tFOLLOWS\tOFFSET\tLAG BYTES\tUPSTREAM SYNCS")
	fmt.Fprintf(w, "%s\t%s\tmaster\t-\t%d\t-\t\n", m.site, m.name, mOff)
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.site, r.name, r.role, r.follows, r.off, mOff-r.off, r.syncs)
	}
	w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ratio(raw, wire uint64) float64 {
	if wire == 0 {
		return 0
	}
	return float64(raw) / float64(wire)
}

// infoMap runs INFO section and returns its fields; empty on error.
func infoMap(ctx context.Context, c *redis.Client, section string) map[string]string {
	m := map[string]string{}
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return m
	}
	for _, line := range strings.Split(text, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}

// infoField returns a numeric INFO field, -1 if absent.
func infoField(info map[string]string, key string) int64 {
	v, ok := info[key]
	if !ok {
		return -1
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func infoInt(ctx context.Context, c *redis.Client, section, key string) int64 {
	return infoField(infoMap(ctx, c, section), key)
}

// running counts the redis-servers that run.
func (d *demo) running() int {
	n := 0
	for _, s := range d.nodes {
		if !s.exited() {
			n++
		}
	}
	return n
}

// verifyWrites checks that the final master holds every write the writer
// saw acknowledged: all of them where none may be lost; those the killed
// master acknowledged before its death are counted apart (asynchronous
// replication: what no relay had pulled at the kill dies with it).
func (d *demo) verifyWrites(ctx context.Context) {
	s := d.sum
	m := d.currentMaster(ctx)
	promised, risky, checked, riskyChecked, err := d.w.lostWrites(ctx, m.client)
	if err != nil {
		s.fail("acknowledged writes: cannot read them on %s: %v", m.name, err)
		return
	}
	s.AckedChecked, s.LostPromised, s.LostAtKill = checked, promised, risky
	if promised > 0 {
		s.fail("acknowledged writes: %d of %d lost where none may be", promised, checked)
		fmt.Fprintf(d.o.Out, "FAILED: %d of the %d acknowledged writes the writer tracks (ack:<n> keys) are missing on %s.\n", promised, checked, m.name)
		return
	}
	fmt.Fprintf(d.o.Out, "OK: %s holds every one of the %d acknowledged writes the writer tracks (ack:<n> keys)", m.name, checked)
	if s.FailedOver {
		fmt.Fprintf(d.o.Out, ";\n    of the %d that %s acknowledged before its kill, %d were lost (by design at most those no relay had pulled when it died: replication is asynchronous)", riskyChecked, seedMaster, risky)
	}
	fmt.Fprintln(d.o.Out, ".")
}

// stop stops the relays and node agents, then etcd (if the demo runs it),
// and kills every Redis server.
func (d *demo) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	for _, a := range d.agents {
		a.kill()
	}
	d.wg.Wait()
	for _, c := range d.agentClis {
		c.Close()
	}
	for _, rn := range d.relays {
		rn.client.Close()
	}
	if d.cli != nil {
		d.cli.Close()
	}
	if d.etcd != nil {
		d.etcd.stop()
	}
	for _, n := range d.nodes {
		n.client.Close()
		if n.cmd != nil && n.cmd.Process != nil {
			syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.done
		}
	}
}
