package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/node"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// FabricOptions configure StartFabric: the demo's seed topology under a
// control plane, without the demo's load and story, for a fault suite
// (internal/e2e) to break and check.
type FabricOptions struct {
	// Dir holds every server's files (required; the caller removes it).
	Dir string
	// RedisServer is the redis-server binary; empty means redis-server.
	RedisServer string
	// Logger receives the relays' (and in-process agents') logs; nil
	// discards them.
	Logger *slog.Logger
	// Etcd are the endpoints of a running etcd (required).
	Etcd []string
	// Cluster is the cluster name in etcd; empty means DefaultCluster.
	Cluster string
	// RedisArgs are more arguments for every redis-server (for example
	// --min-replicas-to-write 1, so that a restarted node refuses writes
	// until its agent made it a replica).
	RedisArgs []string
	// AgentBin is the arbor binary: every node agent then runs as an
	// `arbor node --elect` process (its log in Dir/<node>/agent.log), so
	// a fault can kill or stop it. Empty runs the agents in this process,
	// as the demo does.
	AgentBin string
	// AgentArgs are more flags for every agent process (for example
	// --fast, --min-replicas 1).
	AgentArgs []string
	// AgentEtcd, if set, returns the etcd endpoints the agent of a node
	// uses (for example through a wan.Bridge, to cut it from etcd); nil
	// or an empty result means Etcd.
	AgentEtcd func(node string) []string
	// AdvertiseGRPC, if set, returns the gRPC address of a relay as the
	// topology gives it to its children (for example a wan.Bridge in
	// front of addr, the address it listens on).
	AdvertiseGRPC func(relay, addr string) string
}

// Fabric is the seed topology running under a control plane, started by
// StartFabric. Its methods are for one goroutine (the suite's).
type Fabric struct {
	d *demo
}

// agentProc is a node agent run as an `arbor node` process.
type agentProc struct {
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartFabric starts the seed topology (deploy/topology.yaml's shape) on
// free loopback ports: every redis-server (DEBUG enabled), the topology
// applied to etcd, the relays taking their upstreams from it and a node
// agent with the election beside every redis-server. It returns once every
// relay made its first sync. Close stops everything it started.
func StartFabric(ctx context.Context, o FabricOptions) (*Fabric, error) {
	if o.RedisServer == "" {
		o.RedisServer = "redis-server"
	}
	bin, err := exec.LookPath(o.RedisServer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRedisServer, err)
	}
	if o.Dir == "" || len(o.Etcd) == 0 {
		return nil, errors.New("demo: StartFabric needs a Dir and etcd endpoints")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	d := &demo{
		o:      Options{Dir: o.Dir, RedisServer: bin, Out: io.Discard, Logger: o.Logger, Etcd: o.Etcd, Cluster: o.Cluster},
		bin:    bin,
		sum:    &Summary{},
		w:      newWriter(),
		hooks:  &o,
		agents: map[string]*agentProc{},
	}
	f := &Fabric{d: d}
	if err := d.startEtcd(ctx); err != nil {
		f.Close()
		return nil, err
	}
	if err := d.startFabric(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close stops the relays and agents and kills every redis-server.
func (f *Fabric) Close() { f.d.stop() }

// Cluster returns the cluster name in etcd.
func (f *Fabric) Cluster() string { return f.d.o.Cluster }

// Nodes returns the names of the nodes, the seed's master first.
func (f *Fabric) Nodes() []string {
	var out []string
	for _, n := range f.d.nodes {
		out = append(out, n.name)
	}
	return out
}

// Relays returns the names of the relays, site A's first.
func (f *Fabric) Relays() []string {
	var out []string
	for _, rn := range f.d.relays {
		out = append(out, rn.name)
	}
	return out
}

// SeedMaster is the node the seed topology names master.
func SeedMaster() string { return seedMaster }

// Addr returns the address of a node's redis-server.
func (f *Fabric) Addr(name string) string { return f.d.server(name).addr() }

// Client returns a client of a node's redis-server (closed by Close).
func (f *Fabric) Client(name string) *redis.Client { return f.d.server(name).client }

// RelayStatus returns a relay's status, or nil if it is not running.
func (f *Fabric) RelayStatus(name string) *relay.Relay {
	rn := f.d.relay(name)
	select {
	case <-rn.started:
		return rn.r
	default:
		return nil
	}
}

// State reads the election's state.
func (f *Fabric) State(ctx context.Context) (election.State, error) { return f.d.readState(ctx) }

// FullSyncs sums the full syncs of the fabric: those every relay took from
// its upstream and those it served to replicas.
func (f *Fabric) FullSyncs() int64 { return f.d.fullSyncs() }

// Converge waits until every running redis-server's digest (DEBUG DIGEST)
// equals the current master's, or ctx ends.
func (f *Fabric) Converge(ctx context.Context) error { return f.d.converge(ctx) }

// WaitLinked waits (bounded) until every running replica streams from its
// relay and every relay of site A from master.
func (f *Fabric) WaitLinked(ctx context.Context, master string) {
	f.d.waitLinked(ctx, f.d.server(master))
}

// KillRedis kill -9's a node's redis-server and waits for it to exit.
func (f *Fabric) KillRedis(name string) {
	n := f.d.server(name)
	if n.exited() {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}

// StopRedis sends SIGSTOP to a node's redis-server; ContRedis SIGCONT.
func (f *Fabric) StopRedis(name string) {
	_ = syscall.Kill(f.d.server(name).cmd.Process.Pid, syscall.SIGSTOP)
}

// ContRedis continues a redis-server stopped by StopRedis.
func (f *Fabric) ContRedis(name string) {
	_ = syscall.Kill(f.d.server(name).cmd.Process.Pid, syscall.SIGCONT)
}

// RestartRedis starts a killed redis-server again: same port, same
// directory, same arguments.
func (f *Fabric) RestartRedis(ctx context.Context, name string) error {
	n := f.d.server(name)
	if !n.exited() {
		return fmt.Errorf("%s's redis-server still runs", name)
	}
	return f.d.launch(ctx, n)
}

// ErrInProcessAgent is returned by the agent faults when the agents run in
// this process (FabricOptions.AgentBin empty): they cannot be killed or
// stopped.
var ErrInProcessAgent = errors.New("node agents run in-process")

func (f *Fabric) agent(name string) (*agentProc, error) {
	a, ok := f.d.agents[name]
	if !ok {
		return nil, fmt.Errorf("agent of %s: %w", name, ErrInProcessAgent)
	}
	return a, nil
}

// KillAgent kill -9's a node's agent process and waits for it to exit.
func (f *Fabric) KillAgent(name string) error {
	a, err := f.agent(name)
	if err != nil {
		return err
	}
	a.kill()
	return nil
}

// StopAgent sends SIGSTOP to a node's agent process.
func (f *Fabric) StopAgent(name string) error {
	a, err := f.agent(name)
	if err != nil {
		return err
	}
	return syscall.Kill(a.cmd.Process.Pid, syscall.SIGSTOP)
}

// ContAgent continues an agent process stopped by StopAgent.
func (f *Fabric) ContAgent(name string) error {
	a, err := f.agent(name)
	if err != nil {
		return err
	}
	return syscall.Kill(a.cmd.Process.Pid, syscall.SIGCONT)
}

// RestartAgent starts a killed agent process again with the same flags.
func (f *Fabric) RestartAgent(name string) error {
	a, err := f.agent(name)
	if err != nil {
		return err
	}
	select {
	case <-a.done:
	default:
		return fmt.Errorf("agent of %s still runs", name)
	}
	return f.d.launchAgent(name, a)
}

// startAgent starts the agent of n: in-process, or as an `arbor node`
// process with FabricOptions.AgentBin.
func (d *demo) startAgent(ctx context.Context, n *server) error {
	if d.hooks == nil || d.hooks.AgentBin == "" {
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Site, cfg.Cluster = n.name, n.site, d.o.Cluster
		cfg.Redis = "redis://" + n.addr()
		cfg.Logger = d.o.Logger
		cfg.Elect = true // the master's agent holds the election; candidates fail over
		cli := d.cli
		if eps := d.agentEtcd(n.name); eps != nil {
			c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, DialOptions: topology.DialOptions(), Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			d.agentClis = append(d.agentClis, c)
			cli = c
		}
		a, err := node.New(cfg, cli)
		if err != nil {
			return err
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := a.Run(ctx); err != nil {
				d.o.Logger.Error("node agent stopped with an error", "node", cfg.ID, "err", err)
			}
		}()
		return nil
	}
	eps := d.agentEtcd(n.name)
	if eps == nil {
		eps = d.endpoints
	}
	args := append([]string{"node", "--elect", "--id", n.name, "--site", n.site,
		"--redis", "redis://" + n.addr(), "--etcd", strings.Join(eps, ","), "--cluster", d.o.Cluster,
		"--log-level", "info"}, d.hooks.AgentArgs...)
	a := &agentProc{args: args}
	d.agents[n.name] = a
	return d.launchAgent(n.name, a)
}

// agentEtcd returns FabricOptions.AgentEtcd's endpoints for a node, or nil.
func (d *demo) agentEtcd(name string) []string {
	if d.hooks == nil || d.hooks.AgentEtcd == nil {
		return nil
	}
	if eps := d.hooks.AgentEtcd(name); len(eps) > 0 {
		return eps
	}
	return nil
}

// launchAgent starts (again) an agent process, its output appended to
// Dir/<node>/agent.log.
func (d *demo) launchAgent(name string, a *agentProc) error {
	logf, err := os.OpenFile(filepath.Join(d.o.Dir, name, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(d.hooks.AgentBin, a.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // as the redis-servers
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the agent of %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	a.cmd, a.done = cmd, done
	return nil
}

// kill kill -9's the agent process (continued first: a stopped process
// dies on SIGKILL too, but its group may hold stopped children) and waits.
func (a *agentProc) kill() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
}

// advertiseGRPC returns the gRPC address the topology gives for a relay.
func (d *demo) advertiseGRPC(relay, addr string) string {
	if d.hooks == nil || d.hooks.AdvertiseGRPC == nil {
		return addr
	}
	return d.hooks.AdvertiseGRPC(relay, addr)
}

// RedisLog returns the path of a node's redis-server log.
func (f *Fabric) RedisLog(name string) string { return filepath.Join(f.d.o.Dir, name, "redis.log") }

// UpstreamFullSyncs returns, per relay, the full syncs it took from its
// upstream.
func (f *Fabric) UpstreamFullSyncs() map[string]int64 {
	out := map[string]int64{}
	for _, rn := range f.d.relays {
		out[rn.name], _ = rn.fullSyncs()
	}
	return out
}

// StopRelay stops a relay: its listeners and links close, as its peers
// see a relay process die (the relays run in this process and cannot be
// kill -9'd), and its status lease is left to expire. It returns once the
// relay stopped.
func (f *Fabric) StopRelay(name string) {
	rn := f.d.relay(name)
	rn.cancel()
	<-rn.exited
	upstream, served := rn.runFullSyncs()
	rn.priorUpstreamFull += upstream
	rn.priorServedFull += served
}

// RestartRelay starts a relay stopped by StopRelay again, with the same
// configuration and data directory.
func (f *Fabric) RestartRelay(ctx context.Context, name string) error {
	rn := f.d.relay(name)
	select {
	case <-rn.exited:
	default:
		return fmt.Errorf("relay %s still runs", name)
	}
	f.d.rerunRelay(rn)
	select {
	case <-rn.started:
		return nil
	case <-rn.exited:
		return fmt.Errorf("relay %s stopped at start", name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RedisRunning reports whether a node's redis-server runs.
func (f *Fabric) RedisRunning(name string) bool { return !f.d.server(name).exited() }
