// Package fabric runs Arbor's components against the control plane: a relay
// whose upstream comes from the topology in etcd, followed live, with its
// status published on a lease. `arbor relay --etcd` and `arbor demo` both
// run relays through it.
package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// StatusInterval is how often a relay refreshes its status in etcd.
const StatusInterval = time.Second

// Relay is a relay run under the control plane. Run drives it.
type Relay struct {
	// Config is the relay's configuration. Config.Upstream, if set, is
	// used until the topology is read (and lends its credentials to a
	// redis:// upstream the topology names, since the topology holds
	// none); if empty, Run waits for the relay's spec in the topology.
	Config relay.Config
	// Etcd is the control plane's client; the caller owns and closes it.
	Etcd *clientv3.Client
	// Cluster names the cluster in etcd (/arbor/<Cluster>/...).
	Cluster string
	// Logger receives the runner's logs; nil means slog.Default().
	Logger *slog.Logger
	// Started, if not nil, is called with the relay once it is made (its
	// listeners are open), before it runs; for callers that read its
	// Status. It is called at most once, on Run's goroutine.
	Started func(*relay.Relay)
	// Silence is how long the link to a parent relay may be up but
	// silent before the relay moves to another parent (see
	// topology.Mover); 0 means topology.DefaultSilence.
	Silence time.Duration
	// Down is how long that link, once it was up, may stay down before
	// the relay moves; 0 means topology.DefaultDown.
	Down time.Duration
	// HoldDown is how long the declared parent must be healthy before a
	// relay that moved away returns to it; 0 means
	// topology.DefaultHoldDown.
	HoldDown time.Duration
}

// haTick is how often a relay under the control plane judges the parent it
// follows (besides every change of the relays' statuses).
const haTick = 100 * time.Millisecond

// RunRelay runs a relay whose upstream comes from the topology in etcd: it
// follows the relay's key live (a new upstream is followed at once, with a
// partial resync when the history allows), keeps the last good topology
// when an edit is refused or etcd is down, and publishes the relay's
// Status on a lease. A relay whose upstream is "master" follows the
// elected master's record (election.MasterKey) of the newest epoch when
// there is one, else the topology's master key; a record of an older epoch
// than one it followed, or one that does not parse, is refused (see
// EpochFile) and shown in its status. Without cfg.SnapshotSources, the
// relay's snapshot sources are the topology's nodes of its site
// (topology.Topology.SnapshotSources), followed live. cfg.Upstream, if set, is used until the topology is
// read (see Relay.Config). A relay whose declared upstream is another
// relay moves on its own (topology.Mover): when that parent's status
// lease is gone, or the link to it stays down or silent past the silence
// bound, it follows another healthy relay (topology.ChooseRelayParent)
// with a partial resync, records the move in its status, and returns
// after the hold-down. RunRelay returns when ctx ends (nil) or the relay
// fails, after every goroutine it started ended.
func RunRelay(ctx context.Context, cfg relay.Config, cli *clientv3.Client, cluster string, log *slog.Logger) error {
	return Relay{Config: cfg, Etcd: cli, Cluster: cluster, Logger: log}.Run(ctx)
}

// Run is RunRelay with the settings of f.
func (f Relay) Run(ctx context.Context) error {
	cfg, cli, cluster, log := f.Config, f.Etcd, f.Cluster, f.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The newest update, coalesced: the watcher never waits for the relay.
	updates := make(chan topology.RelayUpdate, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := topology.WatchRelay(ctx, cli, cluster, cfg.ID, log, func(u topology.RelayUpdate) {
			select {
			case <-updates:
			default:
			}
			updates <- u
		}); err != nil {
			log.Error("topology watch ended", "err", err)
		}
	}()

	// The elected master's record, for a relay whose spec says "master".
	// It is read before the first upstream is chosen, so a root relay
	// never starts on the topology's (bootstrap) master when a newer
	// epoch names another.
	gate := newMasterGate(cfg.DataDir, log)
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchMaster(ctx, cli, cluster, gate, log)
	}()

	// The whole topology and the relays' live statuses, for the parent
	// choice when the parent relay fails.
	topo := topology.NewWatcher(cli, cluster, log)
	statuses := topology.NewRelayStatusWatcher(cli, cluster)
	wg.Add(2)
	go func() {
		defer wg.Done()
		topo.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		statuses.Run(ctx)
	}()
	mover := topology.NewMover(topology.MoverConfig{Child: cfg.ID, Relay: true, Silence: f.Silence, Down: f.Down, HoldDown: f.HoldDown})

	static := cfg.Upstream
	var pending *topology.RelayUpdate
	if static == "" {
		log.Info("waiting for this relay's spec in the topology", "cluster", cluster, "relay", cfg.ID)
		for pending == nil || !pending.Found {
			select {
			case u := <-updates:
				pending = &u
				if !u.Found {
					log.Error("relay is not in the topology in force; waiting for it", "cluster", cluster, "relay", cfg.ID, "refused_edit", rejection(u))
				}
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-gate.Ready():
		case <-ctx.Done():
			return nil
		}
		cfg.Upstream = withCredentials(upstreamOf(*pending, gate), static)
		// Without --site the topology's says where the relay runs: the
		// default compression picks each child link's codec by it.
		if cfg.Site == "" {
			cfg.Site = pending.Spec.Site
		}
	}
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	if f.Started != nil {
		f.Started(r)
	}
	// spec is the last update that found the relay in the topology: a
	// master record is followed only by a relay whose spec says "master".
	var spec *topology.RelayUpdate
	var logged *election.Master
	follow := func() {
		if spec == nil {
			return
		}
		up := upstreamOf(*spec, gate)
		if target := mover.Target(); target != "" {
			if top, _ := topo.Current(); top != nil {
				if moved, err := targetURL(top, target, gate); err == nil {
					up = moved
				} else {
					log.Error("cannot follow the parent chosen; keeping the declared one", "parent", target, "err", err)
				}
			}
		}
		if m, _ := gate.state(); m != nil && spec.Spec.Upstream == topology.UpstreamMaster && (logged == nil || *logged != *m) {
			log.Info("following the elected master", "epoch", m.Epoch, "node", m.Node, "upstream", up)
			logged = m
		}
		if err := r.SetUpstream(withCredentials(up, static)); err != nil {
			log.Error("topology names an upstream this relay cannot follow; keeping the current one", "upstream", up, "err", err)
		}
		// Snapshot sources given in the configuration win; else the
		// topology's nodes of the relay's site are the trusted ones.
		if len(cfg.SnapshotSources) == 0 {
			srcs := snapshotSources(*spec, gate)
			if err := r.SetSnapshotSources(srcs); err != nil {
				log.Error("topology names snapshot sources this relay cannot use; keeping the current ones", "sources", srcs, "err", err)
			}
		}
	}
	apply := func(u topology.RelayUpdate) {
		r.SetTopology(u.Revision, rejection(u))
		if u.Rejected != nil {
			log.Error("topology edit refused; keeping the topology in force", "revision", u.Rejected.Revision, "err", u.Rejected.Err)
		}
		if !u.Found {
			log.Error("relay is not in the topology in force; keeping its upstream", "relay", cfg.ID)
			return
		}
		spec = &u
		follow()
	}
	if pending != nil {
		apply(*pending)
	}
	pub := topology.NewStatusPublisher(cli, topology.StatusConfig{
		Cluster: cluster, Kind: topology.KindRelay, ID: r.ID(), Interval: StatusInterval,
		Value: func() any { return relayStatus(r, gate) }, Logger: log,
	})
	// judge is one round of the mover: it repoints the relay when the
	// parent it follows failed, or the declared one is back for good.
	judge := func() {
		top, _ := topo.Current()
		sts, ok := statuses.Current()
		if top == nil || !ok {
			return
		}
		up, idle := r.UpstreamLink()
		changed, why := mover.Step(topology.Observation{Now: time.Now(), Topology: top, Relays: sts, LinkUp: up, Idle: idle, Updated: statuses.Updated(),
			Reachable: func(id string) bool { return top.PingRelay(id, topology.PingTimeout) }})
		effective := mover.Followed()
		if effective == "" && spec != nil {
			effective = spec.Spec.Upstream
		}
		r.SetParent(effective, mover.Move())
		if changed {
			if mover.Target() != "" {
				log.Warn("moving to another parent", "declared", spec.Spec.Upstream, "parent", mover.Target(), "why", why)
			} else {
				log.Info("returning to the declared parent", "parent", mover.Followed(), "why", why)
			}
			follow()
			pub.Trigger()
		}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(haTick)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				judge()
			case <-statuses.Changes():
				judge()
			case u := <-updates:
				apply(u)
			case <-gate.Changed():
				follow()
				pub.Trigger()
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := pub.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("relay status publishing ended", "err", err)
		}
	}()
	err = r.Run(ctx)
	cancel()
	return err
}

// relayStatus is the relay's Status with the master record it follows.
func relayStatus(r *relay.Relay, gate *masterGate) *arborv1.RelayStatus {
	st := r.Status()
	m, refused := gate.state()
	if m != nil {
		st.MasterEpoch, st.MasterNode = m.Epoch, m.Node
	}
	st.MasterError = refused
	return st
}

// targetURL is the upstream URL of a parent the mover chose: a relay's
// gRPC address, or the master (the elected one when there is a record).
func targetURL(top *topology.Topology, target string, gate *masterGate) (string, error) {
	if target == topology.UpstreamMaster {
		if m, _ := gate.state(); m != nil {
			return "redis://" + m.RedisAddr, nil
		}
		n, ok := top.Nodes[top.Master]
		if !ok {
			return "", errors.New("no master designated")
		}
		return "redis://" + n.RedisAddr, nil
	}
	p, ok := top.Relays[target]
	if !ok || p.GRPCAddr == "" {
		return "", fmt.Errorf("relay %q: not in the topology, or no grpc_addr", target)
	}
	return "arbor://" + p.GRPCAddr, nil
}

// snapshotSources are the topology's snapshot sources of the relay but
// the elected master: the topology leaves out the node its master key
// names (the upstream covers the master, and an RDB from it forks it),
// and after a failover the master is another node.
func snapshotSources(u topology.RelayUpdate, gate *masterGate) []string {
	m, _ := gate.state()
	if m == nil {
		return u.SnapshotSources
	}
	return slices.DeleteFunc(slices.Clone(u.SnapshotSources), func(a string) bool { return a == m.RedisAddr })
}

// upstreamOf is where a relay replicates from: for a relay whose spec says
// "master", the master of the newest epoch's record when there is one,
// else what the topology resolves (its master key's node, a parent relay,
// a redis:// URL).
func upstreamOf(u topology.RelayUpdate, gate *masterGate) string {
	if u.Spec.Upstream == topology.UpstreamMaster {
		if m, _ := gate.state(); m != nil {
			return "redis://" + m.RedisAddr
		}
	}
	return u.Upstream
}

func rejection(u topology.RelayUpdate) string {
	if u.Rejected == nil {
		return ""
	}
	return u.Rejected.String()
}

// withCredentials adds the user and password of the static upstream to a
// redis:// upstream from the topology, which holds no secrets.
func withCredentials(upstream, static string) string {
	su, err := url.Parse(static)
	if err != nil || su.User == nil || su.Scheme != "redis" {
		return upstream
	}
	u, err := url.Parse(upstream)
	if err != nil || u.Scheme != "redis" || u.User != nil {
		return upstream
	}
	u.User = su.User
	return u.String()
}
