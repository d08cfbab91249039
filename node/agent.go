package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/arbor-fabric/arbor/election"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// startWait bounds how long Run waits for the first read of the topology
// before its first check.
const startWait = 2 * time.Second

// Agent is the node agent of one Redis. Run drives it; Status may be called
// from any goroutine.
type Agent struct {
	cfg    Config
	cli    *clientv3.Client
	log    *slog.Logger
	target redisTarget
	redis  *redis.Client

	// Owned by Run's goroutine.
	lastProblems string   // last problems logged
	lastAction   string   // last steering action logged
	el           *elector // the election role (idle unless cfg.Elect)
	met          *metrics
	mover        *topology.Mover // which relay the Redis follows when its own is unhealthy
	relayProbe   *relayProbe     // PINGs the relay the Redis follows
	relays       *topology.RelayStatusWatcher

	// beforeStep, if set (tests only), runs at the top of every round of
	// the owner loop. A test blocks in it to freeze the agent as SIGSTOP
	// would: the in-process agent shares the test's process, which cannot
	// be stopped.
	beforeStep func()

	mu     sync.Mutex
	status *arborv1.NodeStatus // guarded by mu; replaced, never modified
}

// New checks cfg and returns an agent that uses cli for etcd (the caller
// owns and closes cli). Call Run, once.
func New(cfg Config, cli *clientv3.Client) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	target, _ := parseRedisURL(cfg.Redis)
	// Down is MoveAfter, not the relays' shorter bound: a Redis retries a
	// connection to its master that failed (refused, or answered -LOADING
	// by a relay not ready) only from its once-a-second replication cron,
	// so its link reads down for a second after one failed redial (see
	// topology.MoverConfig.Down).
	mover := topology.NewMover(topology.MoverConfig{Child: cfg.ID, Silence: cfg.MoveAfter, Down: cfg.MoveAfter, HoldDown: cfg.HoldDown})
	a := &Agent{
		cfg:        cfg,
		cli:        cli,
		log:        cfg.Logger.With("node", cfg.ID),
		target:     target,
		redis:      newRedisClient(target, cfg.RedisTimeout),
		status:     &arborv1.NodeStatus{Id: cfg.ID, Site: cfg.Site, LastError: "starting"},
		el:         newElector(),
		mover:      mover,
		relayProbe: newRelayProbe(cfg.MoveAfter),
	}
	met, err := newMetrics(cfg.MeterProvider, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("node metrics: %w", err)
	}
	a.met = met
	return a, nil
}

// Status returns a copy of the node's latest status, as published.
func (a *Agent) Status() *arborv1.NodeStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return proto.CloneOf(a.status)
}

// Run checks and steers the Redis and publishes its status until ctx
// ends; then it stops its goroutines, withdraws the status (revoking its
// lease) and returns nil. The Redis is left as it is; so is the election
// lease of a leader (it expires a TTL later, as if the agent had died:
// stopping an agent is no switchover).
//
// Run is the owner loop of the agent's role (follower, campaigning,
// leader): one select on the check ticker, topology changes, election
// changes, a campaign's result and the leader's session ending.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var states <-chan election.State
	defer func() {
		cancel()
		wg.Wait()
		if states != nil {
			for range states { // Observe's goroutine ends with ctx
			}
		}
		a.el.shutdown(ctx)
		a.met.close()
		a.redis.Close()
		a.log.Info("node agent stopped")
	}()

	w := topology.NewWatcher(a.cli, a.cfg.Cluster, a.log)
	off := newOffsets(a.cli, a.cfg.Cluster, a.log)
	pub := topology.NewStatusPublisher(a.cli, topology.StatusConfig{
		Cluster:  a.cfg.Cluster,
		Kind:     topology.KindNode,
		ID:       a.cfg.ID,
		Interval: a.cfg.StatusInterval,
		TTL:      a.cfg.StatusTTL,
		Value:    func() any { return a.Status() },
		Logger:   a.log,
	})
	a.relays = topology.NewRelayStatusWatcher(a.cli, a.cfg.Cluster)
	wg.Go(func() { w.Run(ctx) })
	wg.Go(func() { off.run(ctx) })
	wg.Go(func() { a.relays.Run(ctx) })
	wg.Go(func() { a.relayProbe.run(ctx) })
	if a.cfg.Elect {
		states = election.Observe(ctx, a.cli, a.cfg.Cluster, a.log)
	}

	a.log.Info("node agent running", "cluster", a.cfg.Cluster, "redis", a.target.addr, "site", a.cfg.Site,
		"candidate", a.cfg.Candidate, "priority", a.cfg.Priority, "check_interval", a.cfg.CheckInterval)
	// Give the first read of the topology a moment, so the first status
	// is not "no topology yet" when etcd answers at once.
	select {
	case <-w.Ready():
	case <-time.After(startWait):
	case <-ctx.Done():
		return nil
	}
	ticker := time.NewTicker(a.cfg.CheckInterval)
	defer ticker.Stop()
	started := false
	for {
		if a.beforeStep != nil {
			a.beforeStep()
		}
		if a.step(ctx, &wg, w, off) && started {
			pub.Trigger()
		}
		if m := a.el.state.Master; m != nil {
			a.met.epoch.Store(m.Epoch)
		}
		a.met.role.Store(int64(a.el.role()))
		if !started {
			// The first status is a real one, not the placeholder.
			wg.Go(func() { pub.Run(ctx) })
			started = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-w.Changes():
		case st, ok := <-states:
			if !ok {
				return nil // ctx ended
			}
			a.el.observe(st)
		case res := <-a.el.results:
			a.campaignEnded(ctx, a.topology(w), res)
			pub.Trigger()
		case <-a.el.sessionDone():
			a.fence(ctx, a.topology(w))
			pub.Trigger()
		}
	}
}

// topology returns the topology in force with the elected master (see
// elector.effective).
func (a *Agent) topology(w *topology.Watcher) *topology.Topology {
	top, _ := w.Current()
	return a.el.effective(top)
}

// step is one round of the owner loop: check the Redis, steer it toward
// the topology in force, and update the status. It reports whether the
// status changed in a way worth publishing at once.
func (a *Agent) step(ctx context.Context, wg *sync.WaitGroup, w *topology.Watcher, off *offsets) bool {
	top := a.topology(w)
	var problems []string
	if rej := w.Rejected(); rej != nil {
		problems = append(problems, "topology "+rej.String())
	}
	st := &arborv1.NodeStatus{Id: a.cfg.ID, Site: a.cfg.Site}
	if top != nil {
		if spec, ok := top.Nodes[a.cfg.ID]; ok && spec.Site != "" {
			st.Site = spec.Site
		}
	}

	info, err := a.probe(ctx)
	lagKnown := false
	if a.cfg.Elect {
		if problem := a.elect(ctx, wg, top, info, err); problem != "" {
			problems = append(problems, problem)
		}
	}
	if err == nil && top != nil {
		a.judgeRelay(top, info)
	}
	if err == nil {
		if problem := a.steer(ctx, top, info); problem != "" {
			problems = append(problems, problem)
		}
		if a.lastAction != "" {
			// Show the result of the action in this round's status.
			if again, err2 := a.probe(ctx); err2 == nil {
				info = again
			}
			a.lastAction = ""
		}
	}
	if err != nil {
		problems = append(problems, fmt.Sprintf("redis %s: %v", a.target.addr, err))
	} else {
		st.Healthy = !info.loading
		if info.loading {
			problems = append(problems, "redis is loading its dataset")
		}
		st.Replid, st.Offset = info.replid, info.offset
		switch info.role {
		case "master":
			st.Role = arborv1.NodeRole_NODE_ROLE_MASTER
		case "slave":
			st.Role = arborv1.NodeRole_NODE_ROLE_REPLICA
			switch {
			case info.linkUp:
				st.LinkState = arborv1.LinkState_LINK_STATE_STREAMING
			case info.syncing:
				st.LinkState = arborv1.LinkState_LINK_STATE_FULL_SYNC
			default:
				st.LinkState = arborv1.LinkState_LINK_STATE_CONNECTING
			}
			if top != nil && top.Master != "" && top.Master != a.cfg.ID {
				if b, d, ok := off.lag(top.Master, info.offset, time.Now()); ok {
					st.LagBytes, st.LagMs = b, d.Milliseconds()
					lagKnown = true
				}
			}
		}
	}
	if top != nil {
		problems = append(problems, a.mismatches(top)...)
		if n, ok := top.Nodes[a.cfg.ID]; ok && top.Master != a.cfg.ID {
			st.EffectiveFollow = n.Follow
			if f := a.mover.Target(); f != "" {
				st.EffectiveFollow = f
			}
			st.Move = a.mover.Move()
		}
	}
	st.LastError = strings.Join(problems, "; ")
	if st.LastError != a.lastProblems {
		if st.LastError == "" {
			a.log.Info("node agent: no problems")
		} else {
			a.log.Warn("node agent: problem", "problem", st.LastError)
		}
		a.lastProblems = st.LastError
	}

	a.mu.Lock()
	prev := a.status
	a.status = st
	a.mu.Unlock()
	a.met.checked(st, err == nil, lagKnown)
	return prev.GetRole() != st.GetRole() || prev.GetLinkState() != st.GetLinkState() ||
		prev.GetHealthy() != st.GetHealthy() || prev.GetLastError() != st.GetLastError() ||
		prev.GetReplid() != st.GetReplid() || prev.GetEffectiveFollow() != st.GetEffectiveFollow()
}

// judgeRelay is one round of the mover: it decides whether the Redis
// follows its declared relay or, while that is unhealthy, another (steer
// then points the Redis there). The link counts as up while the Redis
// follows the address the mover wants and says master_link_status:up or
// is syncing; idle is how long that relay has not answered a PING.
func (a *Agent) judgeRelay(top *topology.Topology, info replInfo) {
	want := a.relayAddr(top)
	sts, ok := a.relays.Current()
	if !ok {
		return
	}
	a.relayProbe.set(want)
	up := info.role == "slave" && info.masterAddr == want && (info.linkUp || info.syncing)
	changed, why := a.mover.Step(topology.Observation{
		Now: time.Now(), Topology: top, Relays: sts, LinkUp: up, Idle: a.relayProbe.idle(), Updated: a.relays.Updated(),
		Reachable: func(id string) bool { return top.PingRelay(id, topology.PingTimeout) },
	})
	if changed {
		if t := a.mover.Target(); t != "" {
			a.log.Warn("moving the redis to another relay", "declared", top.Nodes[a.cfg.ID].Follow, "to", t, "why", why)
		} else {
			a.log.Info("returning the redis to its declared relay", "relay", top.Nodes[a.cfg.ID].Follow, "why", why)
		}
		a.relayProbe.set(a.relayAddr(top))
	}
}

// relayAddr is the address the Redis should replicate from by the mover:
// the relay it chose, or the master's, or what the topology says.
func (a *Agent) relayAddr(top *topology.Topology) string {
	switch t := a.mover.Target(); {
	case t == topology.UpstreamMaster:
		if m, ok := top.Nodes[top.Master]; ok {
			return m.RedisAddr
		}
	case t != "":
		if r, ok := top.Relays[t]; ok {
			return r.RedisAddr
		}
	}
	want, _ := top.NodeUpstream(a.cfg.ID)
	return want
}

func (a *Agent) probe(ctx context.Context) (replInfo, error) {
	pctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	return probe(pctx, a.redis)
}

// steer brings the Redis where the topology wants it, if it may. It
// returns what it cannot do, or "".
func (a *Agent) steer(ctx context.Context, top *topology.Topology, info replInfo) string {
	if top == nil {
		return "no good topology yet; leaving the redis as it is"
	}
	if _, ok := top.Nodes[a.cfg.ID]; !ok {
		return fmt.Sprintf("node %q is not in the topology; leaving the redis as it is", a.cfg.ID)
	}
	if top.Master == a.cfg.ID {
		if info.role == "master" {
			return ""
		}
		return fmt.Sprintf("designated master, but the redis replicates from %s: promotion is the election's job; not promoting", info.masterAddr)
	}
	if _, err := top.NodeUpstream(a.cfg.ID); err != nil {
		return err.Error() // cannot happen in a valid topology
	}
	want := a.relayAddr(top)
	from := info.masterAddr
	unpause := false
	switch info.role {
	case "slave":
		if info.masterAddr == want {
			return ""
		}
	case "master":
		from = "master"
		if rec := a.el.state.Master; a.cfg.Elect && rec != nil && rec.Node != a.cfg.ID && a.el.role() != roleLeader {
			// The election moved the master away (a newer epoch): this is
			// a deposed or returning old master, and follows now.
			a.log.Warn("election: demoting the redis; another node is master", "master", rec.Node, "epoch", rec.Epoch)
			unpause = true // a switchover or a fence left it paused
			break
		}
		why, err := a.liveMaster(ctx, info)
		if err != nil {
			return fmt.Sprintf("the redis is a master and the agent cannot tell whether it holds data (%v); not re-pointing it", err)
		}
		if why != "" {
			return fmt.Sprintf("the designated master is %q, but this redis is a live master (%s): demoting a live master is the election's job (fencing); not demoting", top.Master, why)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	if err := replicaOf(rctx, a.redis, want); err != nil {
		return fmt.Sprintf("REPLICAOF %s: %v", want, err)
	}
	if unpause {
		_ = a.redis.Do(rctx, "CLIENT", "UNPAUSE").Err()
	}
	n := top.Nodes[a.cfg.ID]
	a.log.Info("redis re-pointed", "from", from, "to", want, "follow", n.Follow, "moved_to", a.mover.Target())
	a.lastAction = "REPLICAOF " + want
	return ""
}

// liveMaster tells a live master from a fresh one, for a Redis that says
// role:master while another node is designated. It returns why the Redis
// is live, or "" when it is fresh.
//
// REPLICAOF on a master throws away every write its replicas have not got:
// a master demoted that way after a failover loses its unreplicated tail.
// Only the election may demote one, through its fenced path. A freshly
// started, empty redis-server is a master too, though, and must still be
// pointed at what it follows. The agent keeps no memory of which it is (a
// restarted agent would have lost it); it reads the Redis, and treats it
// as live unless all of these are zero:
//
//   - master_repl_offset: it has fed a replication backlog (had replicas;
//     a promoted replica keeps its offset);
//   - connected_slaves;
//   - keys in any database: a master that never had a replica has no
//     backlog and counts no offset, however many writes it took;
//   - function libraries (data that is no key).
//
// A Redis that took no write and never had a replica loses nothing by
// following. A write landing between this check and the REPLICAOF is not
// caught; only a fenced Redis (the election's) closes that window.
func (a *Agent) liveMaster(ctx context.Context, info replInfo) (string, error) {
	var why []string
	if info.offset > 0 {
		why = append(why, fmt.Sprintf("master_repl_offset %d", info.offset))
	}
	if info.replicas > 0 {
		why = append(why, fmt.Sprintf("%d connected replicas", info.replicas))
	}
	if len(why) == 0 {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
		defer cancel()
		keys, libs, err := dataCount(cctx, a.redis)
		if err != nil {
			return "", err
		}
		if keys > 0 {
			why = append(why, fmt.Sprintf("%d keys", keys))
		}
		if libs > 0 {
			why = append(why, fmt.Sprintf("%d function libraries", libs))
		}
	}
	return strings.Join(why, ", "), nil
}

// mismatches lists where the agent's own settings differ from the
// topology's (the topology wins).
func (a *Agent) mismatches(top *topology.Topology) []string {
	n, ok := top.Nodes[a.cfg.ID]
	if !ok {
		return nil
	}
	var out []string
	if a.cfg.Site != "" && n.Site != a.cfg.Site {
		out = append(out, fmt.Sprintf("--site %s differs from the topology's site %s", a.cfg.Site, n.Site))
	}
	// Compared only when the flags were given: without them the topology
	// alone speaks.
	given := a.cfg.Candidate || a.cfg.Priority != 0
	if given && (a.cfg.Candidate != n.Candidate || int32(a.cfg.Priority) != n.Priority) {
		out = append(out, fmt.Sprintf("--candidate=%v --priority=%d differ from the topology's candidate=%v priority=%d",
			a.cfg.Candidate, a.cfg.Priority, n.Candidate, n.Priority))
	}
	return out
}
