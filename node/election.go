package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/arbor-fabric/arbor/election"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// rankEvery bounds how often a candidate waiting for a leader re-ranks.
const rankEvery = 500 * time.Millisecond

// role is the agent's place in the election.
type role int

const (
	// roleFollower: neither leading nor campaigning (a replica, a
	// candidate waiting for its turn, or a master of the bootstrap
	// topology without the election).
	roleFollower role = iota
	// roleCampaigning: a campaign goroutine is queued for the leader key.
	roleCampaigning
	// roleLeader: the agent holds the election; its Redis is the master.
	roleLeader
)

func (r role) String() string {
	return [...]string{"follower", "campaigning", "leader"}[r]
}

// campaignResult is what a campaign goroutine hands back to the owner
// loop.
type campaignResult struct {
	ses     *election.Session
	leader  *election.Leader
	reason  string
	handOff string // the ID of the hand-off request the campaign answers; "" for none
	err     error
}

// elector is the agent's election state. Owned by Run's goroutine; only
// the campaign goroutine it starts touches the session it is handed, and
// reports on results.
type elector struct {
	state   election.State // newest state seen (never an older epoch)
	haveSt  bool
	ses     *election.Session // while campaigning or leading
	leader  *election.Leader  // while leading
	stop    context.CancelFunc
	results chan campaignResult // size 1: one campaign at a time

	campaignedAt   time.Time         // when the campaign in progress (or just won) started
	failures       int               // failed Redis checks in a row, while leading
	leaderless     time.Time         // when the record's master was first seen without the lease; zero otherwise
	cooldownUntil  time.Time         // no campaign before
	ranking        []election.Ranked // the last ranking of this outage; nil while a leader holds the election
	rankedAt       time.Time
	minReplicasSet bool // min-replicas-to-write set this term (reset by a win)
	// handled is the ID of the last switchover request this leader acted
	// on. Its own abort write reaches it through the watch later than the
	// requester, which reads the abort and deletes the request: without
	// this, a stale state would make the leader act on it again and put
	// the request back, blocking every later switchover.
	handled string
	// dm is the dead-man switch, once started (Config.DeadManSwitch);
	// dmHook, if set, is its onSend (tests).
	dm      *deadMan
	dmHook  func(line string)
	dmRetry time.Time // no restart of a failed switch before
}

func newElector() *elector {
	return &elector{results: make(chan campaignResult, 1)}
}

// observe takes a new election state, ignoring one of an older epoch than
// already seen (fencing rule (c)).
func (e *elector) observe(st election.State) {
	if e.haveSt && e.state.Master != nil && (st.Master == nil || st.Master.Epoch < e.state.Master.Epoch) {
		// Keep the newer record; take the leader fields only.
		e.state.Leader, e.state.LeaderEpoch, e.state.Revision, e.state.Switchover = st.Leader, st.LeaderEpoch, st.Revision, st.Switchover
		return
	}
	e.state, e.haveSt = st, true
}

// role is the agent's place in the election, from the session and the
// leadership it holds.
func (e *elector) role() role {
	switch {
	case e.leader != nil:
		return roleLeader
	case e.ses != nil:
		return roleCampaigning
	}
	return roleFollower
}

// sessionDone is the leader's session's Done, or nil.
func (e *elector) sessionDone() <-chan struct{} {
	if e.leader == nil {
		return nil
	}
	return e.ses.Done()
}

// effective returns top with the master the election names: the newest
// record's node, or the topology's own master before any record.
func (e *elector) effective(top *topology.Topology) *topology.Topology {
	if top == nil || e.state.Master == nil || e.state.Master.Node == top.Master {
		return top
	}
	if _, ok := top.Nodes[e.state.Master.Node]; !ok {
		return top
	}
	t := top.Clone()
	t.Master = e.state.Master.Node
	return t
}

// elect is the election part of one round of the owner loop, after the
// Redis was probed (info, err). It returns a problem to report, or "".
func (a *Agent) elect(ctx context.Context, wg *sync.WaitGroup, top *topology.Topology, info replInfo, perr error) string {
	problem := a.electRound(ctx, wg, top, info, perr)
	if p := a.updateDeadMan(top); problem == "" {
		problem = p
	}
	return problem
}

// updateDeadMan arms the dead-man switch with the fence deadline while
// this agent leads, and disarms it otherwise (starting it first if
// configured). It returns a problem to report, or "".
func (a *Agent) updateDeadMan(top *topology.Topology) string {
	e := a.el
	if len(a.cfg.DeadManSwitch) == 0 {
		return ""
	}
	if e.dm != nil && e.dm.failed {
		// The switch is gone (killed, crashed): start another, at most
		// once a lease TTL.
		e.dm.close()
		e.dm, e.dmRetry = nil, time.Now().Add(a.cfg.LeaseTTL)
	}
	if e.dm == nil {
		if time.Now().Before(e.dmRetry) {
			return "dead-man switch: not running (restarting)"
		}
		dm, err := startDeadMan(a.cfg.DeadManSwitch, a.cfg.Redis, a.log)
		if err != nil {
			e.dmRetry = time.Now().Add(a.cfg.LeaseTTL)
			return err.Error()
		}
		e.dm, dm.onSend = dm, e.dmHook
	}
	if e.role() == roleLeader {
		e.dm.arm(e.ses.FenceDeadline(), 2*a.cfg.LeaseTTL, followAddr(top, a.cfg.ID))
	} else {
		e.dm.disarm()
	}
	if e.dm.failed {
		return "dead-man switch: not reachable (restarting)"
	}
	return ""
}

func (a *Agent) electRound(ctx context.Context, wg *sync.WaitGroup, top *topology.Topology, info replInfo, perr error) string {
	e := a.el
	me := a.cfg.ID
	switch e.role() {
	case roleLeader:
		if sw := e.state.Switchover; sw.HandsOff(time.Now()) && sw.State == election.SwitchoverForced && sw.To != me &&
			sw.Epoch == e.leader.Epoch() && sw.ID != e.handled {
			// The operator forced a failover away from this live leader
			// (arbor failover --force: its Redis did not answer them).
			// Fence what can be fenced and resign, so the target campaigns.
			e.handled = sw.ID
			a.log.Warn("election: forced failover by operator to another node; pausing and demoting the redis, resigning", "to", sw.To, "request", sw.ID)
			a.fenceRedis(ctx, top)
			a.stepDown(ctx, true)
			return ""
		}
		if perr != nil {
			e.failures++
			if e.failures >= a.cfg.DownAfter {
				a.log.Warn("election: the master's redis failed its checks; resigning", "checks", e.failures, "err", perr)
				a.stepDown(ctx, true)
				return ""
			}
			return ""
		}
		e.failures = 0
		a.applyMinReplicas(ctx)
		if sw := e.state.Switchover; sw != nil && sw.State == election.SwitchoverRequested && sw.Epoch == e.leader.Epoch() && sw.ID != e.handled {
			e.handled = sw.ID
			a.switchover(ctx, top, *sw)
		}
		return ""
	case roleCampaigning:
		if e.state.Leader != "" && e.state.Leader != me {
			// Someone else leads: withdraw instead of queueing behind it
			// (the queue is first come; ranking decides, not the queue).
			e.stop()
		}
		return ""
	}
	if !e.haveSt || top == nil || perr != nil || info.loading {
		e.leaderless = time.Time{}
		return ""
	}
	st := e.state
	if st.Leader != "" {
		e.leaderless, e.ranking = time.Time{}, nil
		return ""
	}
	spec, ok := top.Nodes[me]
	if !ok {
		return ""
	}
	if sw := st.Switchover; sw.HandsOff(time.Now()) {
		// A hand-off: only its target campaigns, cooldown or not. The
		// cooldown keeps a node that just stepped down from taking the
		// election back on its own. A switchover's target was chosen by the
		// leader and caught up, and the old master's writes stay paused
		// until it publishes, so waiting here would only stretch the pause;
		// a forced failover's (arbor failover --force) was chosen by the
		// operator and promotes itself without the ranking's say. Priority
		// 0 still means never.
		if sw.To != me {
			return ""
		}
		if !spec.Candidate || spec.Priority <= 0 {
			return "election: hand-off to this node refused: not a candidate, or priority 0 (never)"
		}
		reason := fmt.Sprintf("switchover from %s (epoch %d)", st.Master.Node, st.Master.Epoch)
		if sw.State == election.SwitchoverForced {
			reason = election.ForcedReason
		}
		a.campaign(ctx, wg, reason, sw.ID)
		return ""
	}
	if time.Now().Before(e.cooldownUntil) {
		return ""
	}
	switch {
	case st.Master == nil:
		// Bootstrap: the topology's master takes the first epoch.
		if top.Master == me && info.role == "master" {
			a.campaign(ctx, wg, "bootstrap: the topology's master", "")
		}
		return ""
	case st.Master.Node == me && info.role == "master":
		a.campaign(ctx, wg, "re-election: the record's master, still a master", "")
		return ""
	case !spec.Candidate || spec.Priority <= 0:
		return ""
	}
	if e.leaderless.IsZero() {
		e.leaderless = time.Now()
		a.log.Warn("election: the master holds the election no more", "master", st.Master.Node, "epoch", st.Master.Epoch)
	}
	// The first ranking of an outage is made at once; later ones (a
	// candidate waiting its turn, or not eligible) at most every
	// rankEvery, so waiting candidates do not read every status from etcd
	// ten times a second.
	if e.ranking == nil || time.Since(e.rankedAt) >= rankEvery {
		sts, err := a.statuses(ctx)
		if err != nil {
			return fmt.Sprintf("election: cannot rank candidates: %v", err)
		}
		e.ranking, e.rankedAt = a.rank(top, st, info, sts), time.Now()
	}
	mine := myRank(e.ranking, me)
	if !mine.Eligible() {
		return "election: not eligible: " + mine.Reason
	}
	if wait := time.Duration(mine.Rank-1) * a.cfg.DeferStep; time.Since(e.leaderless) < wait {
		return ""
	}
	a.campaign(ctx, wg, fmt.Sprintf("failover from %s (epoch %d): rank %d, %s", st.Master.Node, st.Master.Epoch, mine.Rank, mine.Reason), "")
	return ""
}

func myRank(r []election.Ranked, id string) election.Ranked {
	for _, x := range r {
		if x.ID == id {
			return x
		}
	}
	return election.Ranked{ID: id, Reason: "not in the ranking"}
}

// campaign starts a campaign goroutine, for the hand-off request of ID
// handOff if not ""; its result comes on e.results.
func (a *Agent) campaign(ctx context.Context, wg *sync.WaitGroup, reason, handOff string) {
	e := a.el
	ses, err := election.NewSession(ctx, a.cli, election.SessionConfig{TTL: a.cfg.LeaseTTL, FenceMargin: a.cfg.FenceMargin, Logger: a.log})
	if err != nil {
		a.log.Warn("election: no session", "err", err)
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	e.ses, e.stop, e.campaignedAt = ses, cancel, time.Now()
	a.log.Info("election: campaigning", "reason", reason)
	wg.Go(func() {
		l, err := ses.Campaign(cctx, a.cfg.Cluster, a.cfg.ID)
		e.results <- campaignResult{ses: ses, leader: l, reason: reason, handOff: handOff, err: err}
	})
}

// campaignEnded handles a campaign's result: on a win it takes over.
func (a *Agent) campaignEnded(ctx context.Context, top *topology.Topology, res campaignResult) {
	e := a.el
	e.stop()
	if res.err != nil {
		if ctx.Err() == nil {
			a.log.Info("election: campaign ended without a win", "err", res.err)
		}
		_ = res.ses.Close(ctx)
		e.ses = nil
		return
	}
	e.leader, e.failures, e.minReplicasSet = res.leader, 0, false
	a.log.Info("election: won", "epoch", res.leader.Epoch(), "reason", res.reason)
	if err := a.takeOver(ctx, top, res.reason, res.handOff); err != nil {
		a.log.Error("election: take-over failed; resigning", "epoch", res.leader.Epoch(), "err", err)
		a.stepDown(ctx, true)
	}
}

// errBehind is returned (wrapped) by takeOver when a master would be
// elected with less than the fabric holds.
var errBehind = errors.New("master behind the fabric")

// takeOver makes this node's Redis the master of the leader's epoch and
// publishes the record: for a failover it catches up with the most
// advanced root relay, probes the old master (pausing its writes if it
// still is one), and promotes its Redis (REPLICAOF NO ONE). handOff is
// the ID of the hand-off request the campaign answered ("" for none).
func (a *Agent) takeOver(ctx context.Context, top *topology.Topology, reason, handOff string) (err error) {
	e := a.el
	l := e.leader
	old := e.state.Master
	won := time.Now()
	var steps []election.Step
	var span trace.Span // the take-over's span, once its kind is known
	step := func(name string, start time.Time, note string) {
		end := time.Now()
		steps = append(steps, election.Step{Name: name, Took: end.Sub(start), Note: note})
		stepSpan(ctx, span, spanNames[name], start, end, note)
	}
	// The hand-off this campaign answered, if it still stands. A forced
	// failover (the operator's override) skips the eligibility check and
	// the catch-up: what the relays hold beyond this Redis is lost, by the
	// operator's choice. The old master is still probed and paused if it
	// answers as a master.
	sw := e.state.Switchover
	if handOff == "" || !sw.HandsOff(time.Now()) || sw.ID != handOff || sw.To != a.cfg.ID {
		sw = nil
	}
	forced := sw != nil && sw.State == election.SwitchoverForced
	planned := sw != nil && !forced // a switchover: the old master paused writes at sw.PausedAt
	if forced {
		steps = append(steps, election.Step{Name: "forced", Note: fmt.Sprintf("request %s: eligibility check and catch-up skipped", sw.ID)})
	}
	// One span for the take-over, from where it started (the write pause
	// of a switchover, the moment this node saw the master lose the
	// election, or the win), a child span per step.
	kind, begin := "failover", e.leaderless
	switch {
	case planned:
		kind, begin = "switchover", sw.PausedAt
	case forced:
		kind = "forced"
	case old == nil:
		kind = "bootstrap"
	case old.Node == a.cfg.ID:
		kind = "re-election"
	}
	if begin.IsZero() || begin.After(won) {
		begin = won
	}
	ctx, span = a.tracer().Start(ctx, TakeOverSpan, trace.WithTimestamp(begin), trace.WithAttributes(
		attribute.String(attrKind, kind), attribute.String(attrNode, a.cfg.ID), attribute.Int64(attrEpoch, l.Epoch()),
		attribute.String(attrReason, reason)))
	if old != nil {
		span.SetAttributes(attribute.String(attrPrevious, old.Node), attribute.Int64(attrPreviousEpoch, old.Epoch))
	}
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	if planned {
		steps = append(steps, election.Step{Name: "handoff", Took: time.Since(sw.PausedAt), Note: fmt.Sprintf("since the old master paused writes at offset %d (wall clock)", sw.Offset)})
		stepSpan(ctx, span, "handoff", sw.PausedAt, won, fmt.Sprintf("the old master paused writes at offset %d", sw.Offset))
	} else if !e.leaderless.IsZero() {
		steps = append(steps, election.Step{Name: "detect+campaign", Took: time.Since(e.leaderless), Note: "from the master's loss of the lease to this win"})
		campaigned := e.campaignedAt
		if campaigned.Before(e.leaderless) || campaigned.After(won) {
			campaigned = e.leaderless
		}
		stepSpan(ctx, span, "detect", e.leaderless, campaigned, "from the master's loss of the election to this node's campaign")
		stepSpan(ctx, span, "campaign", campaigned, won, "queued for the leader key until it was won and checked")
	}
	if top == nil {
		return errors.New("no topology")
	}
	spec := top.Nodes[a.cfg.ID]
	info, err := a.probe(ctx)
	if err != nil {
		return fmt.Errorf("probe own redis: %w", err)
	}
	sts, err := a.statuses(ctx)
	if err != nil {
		return err
	}
	var ranking []election.Ranked
	var siteLoss *election.SiteLoss
	promote := !(info.role == "master" && (old == nil || old.Node == a.cfg.ID))
	if !promote {
		// Bootstrap or re-election of a master: its Redis must hold at
		// least what the relays and nodes hold, on the same history (a
		// Redis restarted from an old RDB must not be re-elected over
		// relays that have more).
		ref := reference(sts, a.cfg.ID, info)
		if ref.Replid != "" && (!ref.Has(info.replid, info.offset) || info.offset < ref.Offset) {
			return fmt.Errorf("the redis (replid %s offset %d) is behind or off the history the relays and nodes hold (replid %s offset %d): %w",
				info.replid, info.offset, ref.Replid, ref.Offset, errBehind)
		}
	} else {
		// Re-check eligibility now that we lead (failover-notes §3.5).
		t0 := time.Now()
		ranking = a.rank(top, e.state, info, sts)
		note := ""
		if mine := myRank(ranking, a.cfg.ID); !mine.Eligible() {
			if !forced {
				return fmt.Errorf("no longer eligible: %s", mine.Reason)
			}
			note = "not eligible, forced: " + mine.Reason
		}
		step("recheck", t0, note)

		t0 = time.Now()
		note = a.fenceOldMaster(ctx, top, old)
		step("probe-old-master", t0, note)

		// The loss of the old master's whole site (election.PlanSiteLoss):
		// catch up from the most advanced surviving relay instead of the
		// lost roots, and rewrite the topology around the lost site in the
		// publishing transaction.
		t0 = time.Now()
		if plan, ok := a.planSiteLoss(ctx, top, old, sts, info); ok {
			siteLoss = &plan
			step("site-loss", t0, plan.String())
			reason += fmt.Sprintf(" after the loss of site %s", plan.Site)
		}

		if !forced {
			t0 = time.Now()
			if siteLoss != nil {
				note, err = a.catchUpAnchor(ctx, top, *siteLoss)
			} else {
				note, err = a.catchUp(ctx, top, sts)
			}
			if err != nil {
				return err
			}
			step("catch-up", t0, note)
		}

		t0 = time.Now()
		pctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
		err = replicaOf(pctx, a.redis, "")
		cancel()
		if err != nil {
			return fmt.Errorf("REPLICAOF NO ONE: %w", err)
		}
		if info, err = a.probe(ctx); err != nil {
			return fmt.Errorf("probe after promotion: %w", err)
		}
		step("promote", t0, fmt.Sprintf("replid %s offset %d", info.replid, info.offset))
	}
	a.applyMinReplicas(ctx)

	t0 := time.Now()
	var also []clientv3.Op
	if siteLoss != nil {
		// The rewrite around the lost site, with the new master, in the
		// one transaction guarded on the epoch: relays and agents see the
		// whole change at one revision, and a deposed leader cannot make it.
		ops, err := topologyOps(a.cfg.Cluster, top, siteLoss.Topology)
		if err != nil {
			return err
		}
		also = append(also, ops...)
	} else if top.Master != a.cfg.ID {
		// Name the new master in the topology too, in the same guarded
		// transaction, so what reads only the topology agrees.
		tm, err := topology.EncodeMaster(a.cfg.ID)
		if err != nil {
			return err
		}
		also = append(also, clientv3.OpPut(topology.MasterKey(a.cfg.Cluster), string(tm)))
	}
	if sw != nil {
		also = append(also, clientv3.OpDelete(election.SwitchoverKey(a.cfg.Cluster)))
	}
	rec, err := l.PublishMaster(ctx, election.Master{
		Node: a.cfg.ID, RedisAddr: spec.RedisAddr, Replid: info.replid, Offset: info.offset, Reason: reason,
	}, also...)
	if err != nil {
		return err
	}
	step("publish", t0, "")
	if planned {
		steps = append(steps, election.Step{Name: "write-pause", Took: time.Since(sw.PausedAt), Note: "old master's writes paused until the new record (wall clock)"})
	}
	h := election.History{Node: a.cfg.ID, Reason: reason, Replid: info.replid, Offset: info.offset, Steps: steps, Ranking: ranking}
	if old != nil {
		h.Previous, h.PreviousEpoch = old.Node, old.Epoch
	}
	if err := l.RecordHistory(ctx, h); err != nil {
		a.log.Warn("election: history not written", "err", err)
	}
	e.observe(election.State{Revision: e.state.Revision, Leader: a.cfg.ID, LeaderEpoch: rec.Epoch, Master: &rec})
	a.met.epoch.Store(rec.Epoch)
	a.met.role.Store(int64(roleLeader))
	if promote {
		if planned {
			a.met.tookOver(ctx, "switchover", sw.PausedAt)
		} else {
			a.met.tookOver(ctx, "failover", e.leaderless)
		}
	}
	e.leaderless = time.Time{}
	a.log.Info("election: master of epoch", "epoch", rec.Epoch, "replid", rec.Replid, "offset", rec.Offset, "steps", fmt.Sprint(steps))
	return nil
}

// TakeOverSpan is the name of the span of one take-over (a failover,
// switchover, forced failover, bootstrap or re-election: attribute
// arbor.takeover.kind). Its children are the steps, named detect, campaign
// (or handoff for a switchover), recheck, probe, site-loss, catch-up,
// promote and publish, each with its note (arbor.note); a failed take-over
// ends with an error status.
const TakeOverSpan = "arbor.takeover"

// Span attributes of a take-over.
const (
	attrKind          = "arbor.takeover.kind"
	attrNode          = "arbor.node.id"
	attrEpoch         = "arbor.epoch"
	attrReason        = "arbor.reason"
	attrPrevious      = "arbor.previous.node"
	attrPreviousEpoch = "arbor.previous.epoch"
	attrNote          = "arbor.note"
)

// spanNames maps a history step's name to its span's.
var spanNames = map[string]string{
	"recheck": "recheck", "probe-old-master": "probe", "site-loss": "site-loss",
	"catch-up": "catch-up", "promote": "promote", "publish": "publish",
}

// tracer is the agent's tracer (a no-op one without a TracerProvider).
func (a *Agent) tracer() trace.Tracer {
	if a.cfg.TracerProvider == nil {
		return noop.NewTracerProvider().Tracer(tracerName)
	}
	return a.cfg.TracerProvider.Tracer(tracerName)
}

// tracerName is the instrumentation scope of the agent's spans.
const tracerName = "github.com/arbor-fabric/arbor/node"

// stepSpan records one finished step as a child span of parent, from start
// to end. A step without a span name is not traced.
func stepSpan(ctx context.Context, parent trace.Span, name string, start, end time.Time, note string) {
	if name == "" || parent == nil || !parent.IsRecording() {
		return
	}
	_, sp := parent.TracerProvider().Tracer(tracerName).Start(ctx, name, trace.WithTimestamp(start))
	if note != "" {
		sp.SetAttributes(attribute.String(attrNote, note))
	}
	sp.End(trace.WithTimestamp(end))
}

// fenceOldMaster probes the old master's Redis: one that still answers as
// a master (its agent lost the lease: we lead now) gets CLIENT PAUSE WRITE
// for two lease TTLs, so it takes no write the relays will not have; its
// agent (or the min-replicas backstop) demotes it.
func (a *Agent) fenceOldMaster(ctx context.Context, top *topology.Topology, old *election.Master) string {
	if old == nil || old.Node == a.cfg.ID {
		return "no old master"
	}
	c := a.peer(old.RedisAddr, min(a.cfg.RedisTimeout, 300*time.Millisecond))
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	info, err := probe(pctx, c)
	if err != nil {
		return fmt.Sprintf("old master %s does not answer: %v", old.RedisAddr, err)
	}
	if info.role != "master" {
		return fmt.Sprintf("old master %s is a replica", old.RedisAddr)
	}
	ms := strconv.FormatInt((2 * a.cfg.LeaseTTL).Milliseconds(), 10)
	if err := c.Do(pctx, "CLIENT", "PAUSE", ms, "WRITE").Err(); err != nil {
		return fmt.Sprintf("old master %s answers as master and could not be paused: %v", old.RedisAddr, err)
	}
	return fmt.Sprintf("old master %s answered as master at offset %d; writes paused for %s ms", old.RedisAddr, info.offset, ms)
}

// catchUp waits until the Redis has the most advanced root relay's offset
// (a relay that follows the master directly), bounded by CatchUpTimeout.
// Each root relay is asked live (INFO on its Redis side: the stored end
// of its stream); the status it published in sts (up to a status
// interval old) stands in for one that does not answer.
func (a *Agent) catchUp(ctx context.Context, top *topology.Topology, sts *topology.Statuses) (string, error) {
	info, err := a.probe(ctx)
	if err != nil {
		return "", err
	}
	var target int64
	from := ""
	for _, id := range top.RelayIDs() {
		spec := top.Relays[id]
		if spec.Upstream != topology.UpstreamMaster {
			continue
		}
		rp, err := a.probePeer(ctx, spec.RedisAddr)
		how := "live"
		if err != nil {
			rs, ok := sts.Relays[id]
			if !ok {
				continue
			}
			rp, how = replInfo{replid: rs.GetReplid(), replid2: rs.GetReplid2(), offset: rs.GetStoredOffset()}, "status"
		}
		if rp.offset <= target || (rp.replid != info.replid && rp.replid2 != info.replid) {
			continue
		}
		target, from = rp.offset, fmt.Sprintf("%s (%s)", id, how)
	}
	if target == 0 || a.caughtUp(ctx, info, target) {
		return fmt.Sprintf("at offset %d (read %d), relay %s at %d", info.offset, info.readOffset, from, target), nil
	}
	if info, err = a.waitCaughtUp(ctx, info, target, "relay "+from); err != nil {
		return "", err
	}
	return fmt.Sprintf("reached relay %s's offset %d (executed %d)", from, target, info.offset), nil
}

// planSiteLoss probes the relays and asks election.PlanSiteLoss whether
// the old master's whole site is lost. A relay is live when it publishes a
// status and its Redis side answers now (a dead relay's status outlives it
// by up to its TTL); its offset counts only on this Redis's history.
func (a *Agent) planSiteLoss(ctx context.Context, top *topology.Topology, old *election.Master, sts *topology.Statuses, info replInfo) (election.SiteLoss, bool) {
	if old == nil || old.Node == a.cfg.ID {
		return election.SiteLoss{}, false
	}
	if om, ok := top.Nodes[old.Node]; !ok || om.Site == top.Nodes[a.cfg.ID].Site {
		return election.SiteLoss{}, false
	}
	views := make(map[string]election.RelayView, len(top.Relays))
	for _, id := range top.RelayIDs() {
		if _, ok := sts.Relays[id]; !ok {
			continue
		}
		rp, err := a.probePeer(ctx, top.Relays[id].RedisAddr)
		if err != nil {
			continue
		}
		v := election.RelayView{Live: true}
		if rp.replid == info.replid || rp.replid2 == info.replid {
			v.Offset = rp.offset
		}
		views[id] = v
	}
	return election.PlanSiteLoss(top, old.Node, a.cfg.ID, views)
}

// catchUpAnchor is catchUp after a site loss: the Redis catches up to
// the offset of the plan's anchor, the most advanced surviving relay. A
// Redis that follows another relay first follows the anchor (a partial
// resync: the anchor holds at least as much of the same history).
func (a *Agent) catchUpAnchor(ctx context.Context, top *topology.Topology, plan election.SiteLoss) (string, error) {
	if plan.Anchor == "" {
		return "no surviving relay to catch up from", nil
	}
	target := plan.AnchorOffset
	info, err := a.probe(ctx)
	if err != nil {
		return "", err
	}
	how := ""
	if top.Nodes[a.cfg.ID].Follow != plan.Anchor && !a.caughtUp(ctx, info, target) {
		cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
		err := replicaOf(cctx, a.redis, top.Relays[plan.Anchor].RedisAddr)
		cancel()
		if err != nil {
			return "", fmt.Errorf("follow relay %s to catch up: %w", plan.Anchor, err)
		}
		how = ", after following it"
	}
	info, err = a.waitCaughtUp(ctx, info, target, "relay "+plan.Anchor)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("reached relay %s's offset %d (executed %d)%s", plan.Anchor, target, info.offset, how), nil
}

// waitCaughtUp polls the Redis until it is caught up to target (see
// caughtUp), bounded by CatchUpTimeout.
func (a *Agent) waitCaughtUp(ctx context.Context, info replInfo, target int64, from string) (replInfo, error) {
	deadline := time.Now().Add(a.cfg.CatchUpTimeout)
	for !a.caughtUp(ctx, info, target) {
		if time.Now().After(deadline) {
			return info, fmt.Errorf("catch up: at offset %d after %v, %s stored %d", info.offset, a.cfg.CatchUpTimeout, from, target)
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		var err error
		if info, err = a.probe(ctx); err != nil {
			return info, err
		}
	}
	return info, nil
}

// topologyOps returns the puts and deletes that turn the topology from
// into to (a put for each changed key, including the master key).
func topologyOps(cluster string, from, to *topology.Topology) ([]clientv3.Op, error) {
	if err := topology.Validate(to); err != nil {
		return nil, fmt.Errorf("site-loss rewrite: %w", err)
	}
	have, err := topology.Encode(from)
	if err != nil {
		return nil, err
	}
	want, err := topology.Encode(to)
	if err != nil {
		return nil, err
	}
	prefix := topology.Prefix(cluster)
	var ops []clientv3.Op
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !bytes.Equal(have[k], want[k]) {
			ops = append(ops, clientv3.OpPut(prefix+k, string(want[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[k]; !ok {
			ops = append(ops, clientv3.OpDelete(prefix+k))
		}
	}
	return ops, nil
}

// caughtUp reports whether the Redis holds the stream up to target. It
// does when it executed it, or when it READ it and what it did not execute
// is a command cut short: a relay stores a command the old master's death
// cut short, which the Redis holds in its master link's query buffer and
// never counts in master_repl_offset (nor could any client have been
// answered for it). Read but unexecuted bytes of a master link that is
// held back (CLIENT PAUSE, a busy script: the master client is blocked,
// flag 'b') are whole commands it would execute later, and REPLICAOF NO
// ONE would drop them: not caught up (TestFailoverLaggingBackupNotPromoted).
func (a *Agent) caughtUp(ctx context.Context, info replInfo, target int64) bool {
	if info.offset >= target {
		return true
	}
	if info.readOffset < target {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	list, err := a.redis.Do(cctx, "CLIENT", "LIST", "TYPE", "master").Text()
	if err != nil {
		return false
	}
	return !masterLinkBlocked(list)
}

// masterLinkBlocked reports whether a CLIENT LIST TYPE master reply shows
// the master client blocked (flag 'b').
func masterLinkBlocked(list string) bool {
	for _, line := range strings.Split(list, "\n") {
		for _, field := range strings.Fields(line) {
			if flags, ok := strings.CutPrefix(field, "flags="); ok && strings.ContainsRune(flags, 'b') {
				return true
			}
		}
	}
	return false
}

// peer returns a client for another Redis of the cluster (a node's, or a
// relay's Redis side) with the agent's credentials: one cluster, one
// password.
func (a *Agent) peer(addr string, timeout time.Duration) *redis.Client {
	return newRedisClient(redisTarget{addr: addr, user: a.target.user, password: a.target.password}, timeout)
}

// probePeer reads another Redis's replication state once (for a relay:
// its history and the stored end of its stream).
func (a *Agent) probePeer(ctx context.Context, addr string) (replInfo, error) {
	c := a.peer(addr, min(a.cfg.RedisTimeout, 300*time.Millisecond))
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	return probe(pctx, c)
}

// statuses reads the statuses the cluster's relays and agents publish.
func (a *Agent) statuses(ctx context.Context) (*topology.Statuses, error) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	sts, err := topology.ReadStatus(rctx, a.cli, a.cfg.Cluster)
	if err != nil {
		return nil, fmt.Errorf("read statuses: %w", err)
	}
	return sts, nil
}

// rank ranks the cluster's nodes for taking over from st's master, from
// their statuses sts (this node's own from info).
func (a *Agent) rank(top *topology.Topology, st election.State, info replInfo, sts *topology.Statuses) []election.Ranked {
	in := election.RankInput{MaxLagBytes: a.cfg.MaxLagBytes}
	if st.Master != nil {
		in.OldSite = top.Nodes[st.Master.Node].Site
	}
	for _, id := range top.NodeIDs() {
		n := top.Nodes[id]
		c := election.Candidate{ID: id, Site: n.Site, Candidate: n.Candidate, Priority: n.Priority}
		if id == a.cfg.ID {
			c.Alive, c.Healthy, c.Replid, c.Offset = true, !info.loading, info.replid, info.offset
		} else if ns, ok := sts.Nodes[id]; ok {
			c.Alive, c.Healthy, c.Replid, c.Offset = true, ns.GetHealthy(), ns.GetReplid(), ns.GetOffset()
		}
		in.Candidates = append(in.Candidates, c)
	}
	in.Ref = reference(sts, a.cfg.ID, info)
	return election.Rank(in)
}

// reference picks the history to continue: the most advanced relay's
// (stored offset), else the most advanced healthy node's. A relay's status
// is published on its own clock, so a node on the relay's replid may
// already report more than the relay's last status: the offset is raised
// to the most advanced such copy. Otherwise a candidate the writes just
// before the master's loss have not reached would rank as in sync, win,
// and give up only after its catch-up from the live relay timed out.
func reference(sts *topology.Statuses, self string, info replInfo) election.Reference {
	var ref election.Reference
	for _, rs := range sts.Relays {
		if rs.GetReplid() == "" || rs.GetStoredOffset() <= ref.Offset {
			continue
		}
		ref = election.Reference{Replid: rs.GetReplid(), Offset: rs.GetStoredOffset(), Replid2: rs.GetReplid2(), SecondOffset: rs.GetSecondOffset()}
	}
	fromRelays := ref.Replid != ""
	consider := func(replid string, off int64) {
		if replid == "" || off <= ref.Offset {
			return
		}
		if !fromRelays {
			ref = election.Reference{Replid: replid, Offset: off}
		} else if replid == ref.Replid {
			ref.Offset = off
		}
	}
	for id, ns := range sts.Nodes {
		if id != self && ns.GetHealthy() && ns.GetRole() != arborv1.NodeRole_NODE_ROLE_UNSPECIFIED {
			consider(ns.GetReplid(), ns.GetOffset())
		}
	}
	consider(info.replid, info.offset)
	return ref
}

// applyMinReplicas sets min-replicas-to-write on the elected master's
// Redis, once per term, when configured.
func (a *Agent) applyMinReplicas(ctx context.Context) {
	e := a.el
	if a.cfg.MinReplicas <= 0 || e.minReplicasSet {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	err := a.redis.Do(cctx, "CONFIG", "SET",
		"min-replicas-to-write", strconv.Itoa(a.cfg.MinReplicas),
		"min-replicas-max-lag", strconv.Itoa(int(a.cfg.MinReplicasMaxLag/time.Second))).Err()
	if err != nil {
		a.log.Warn("election: min-replicas-to-write not set", "err", err)
		return
	}
	e.minReplicasSet = true
}

// stepDown ends the leadership: it resigns (so a candidate may take over at
// once) when resign is set, closes the session and waits a lease TTL
// before this node campaigns again (no flapping).
func (a *Agent) stepDown(ctx context.Context, resign bool) {
	e := a.el
	if e.leader != nil && resign {
		rctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
		if err := e.leader.Resign(rctx); err != nil {
			a.log.Warn("election: resign failed; the lease will expire", "err", err)
		}
		cancel()
	}
	if e.ses != nil {
		if resign {
			_ = e.ses.Close(ctx)
		} else {
			e.ses.Orphan() // lost already; a revoke would wait on an etcd we cannot reach
		}
	}
	e.leader, e.ses = nil, nil
	e.cooldownUntil = time.Now().Add(a.cfg.LeaseTTL)
}

// fence runs when the leader's session ends without a renewal (fence
// deadline passed, or the lease is gone): pause writes, then demote the
// Redis to what the node follows, then resume (the Redis is a replica by
// then, and refuses writes itself).
func (a *Agent) fence(ctx context.Context, top *topology.Topology) {
	a.log.Error("election: lease not renewed by the fence deadline; pausing writes and demoting the redis")
	a.fenceRedis(ctx, top)
	a.stepDown(ctx, false)
}

// fenceRedis pauses the Redis's writes and demotes it to what the node
// follows (see fenceRedis), as far as the Redis answers.
func (a *Agent) fenceRedis(ctx context.Context, top *topology.Topology) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	defer cancel()
	follow := followAddr(top, a.cfg.ID)
	if err := fenceRedis(cctx, a.redis, 2*a.cfg.LeaseTTL, follow); err != nil {
		a.log.Error("election: fence incomplete", "follow", follow, "err", err)
		return
	}
	if follow == "" {
		a.log.Warn("election: writes paused; nothing to demote to", "for", 2*a.cfg.LeaseTTL)
		return
	}
	a.log.Warn("election: redis demoted", "to", follow)
}

// followAddr returns the Redis address of what node id follows when it is
// no master (its Follow relay or node), or "".
func followAddr(top *topology.Topology, id string) string {
	if top == nil {
		return ""
	}
	n, ok := top.Nodes[id]
	if !ok {
		return ""
	}
	if r, ok := top.Relays[n.Follow]; ok {
		return r.RedisAddr
	}
	if o, ok := top.Nodes[n.Follow]; ok && o.ID != id {
		return o.RedisAddr
	}
	return ""
}

// shutdown ends the election role when the agent stops: a campaign that
// ended is withdrawn (its session revoked); a leader's session is
// orphaned, not revoked, so its lease expires a TTL later as if the agent
// had died (the Redis is left as it is). Call it after the campaign
// goroutine ended.
func (e *elector) shutdown(ctx context.Context) {
	select {
	case res := <-e.results:
		_ = res.ses.Close(ctx)
		if res.ses == e.ses {
			e.ses = nil
		}
	default:
	}
	if e.stop != nil {
		e.stop()
	}
	if e.ses != nil {
		e.ses.Orphan()
		e.ses = nil
	}
	e.leader = nil
	if e.dm != nil {
		e.dm.close() // a clean stop leaves the Redis as it is
	}
}

// switchover carries out a requested switchover as the leader: pick and
// check the target, pause writes (CLIENT PAUSE WRITE), wait until the
// target has the exact offset, then resign in one transaction with the
// hand-off, so only the target campaigns. The Redis stays paused until the
// target's record demotes it (or the hand-off lapses). If the target
// cannot catch up within the timeout, writes resume and the request is
// marked aborted: nothing changed.
func (a *Agent) switchover(ctx context.Context, top *topology.Topology, sw election.Switchover) {
	e := a.el
	l := e.leader
	key := election.SwitchoverKey(a.cfg.Cluster)
	paused := false
	abort := func(why string) {
		if paused {
			cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
			_ = a.redis.Do(cctx, "CLIENT", "UNPAUSE").Err()
			cancel()
		}
		a.log.Warn("election: switchover aborted", "id", sw.ID, "why", why)
		sw.State, sw.Error = election.SwitchoverAborted, why
		wctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
		defer cancel()
		if err := l.Write(wctx, "switchover", clientv3.OpPut(key, string(sw.Marshal()))); err != nil {
			a.log.Warn("election: switchover abort not recorded", "err", err)
		}
	}
	info, err := a.probe(ctx)
	if err != nil {
		abort(fmt.Sprintf("the master's redis: %v", err))
		return
	}
	sts, err := a.statuses(ctx)
	if err != nil {
		abort(fmt.Sprintf("rank: %v", err))
		return
	}
	ranking := a.rank(top, e.state, info, sts)
	target := sw.To
	if target == "" {
		for _, r := range ranking {
			if r.Eligible() && r.ID != a.cfg.ID {
				target = r.ID
				break
			}
		}
		if target == "" {
			abort("no eligible candidate")
			return
		}
	}
	if r := myRank(ranking, target); !r.Eligible() || target == a.cfg.ID {
		abort(fmt.Sprintf("target %s is not eligible: %s", target, r.Reason))
		return
	}
	spec := top.Nodes[target]
	a.log.Info("election: switchover: pausing writes", "to", target, "timeout", sw.Timeout)

	// The pause outlasts the hand-off window: a master that resumed
	// writes before the target's record would take writes the target
	// never gets.
	pausedAt := time.Now()
	window := sw.Timeout + a.cfg.LeaseTTL
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	err = a.redis.Do(cctx, "CLIENT", "PAUSE", strconv.FormatInt(window.Milliseconds(), 10), "WRITE").Err()
	cancel()
	if err != nil {
		abort(fmt.Sprintf("CLIENT PAUSE WRITE: %v", err))
		return
	}
	paused = true
	if info, err = a.probe(ctx); err != nil {
		abort(fmt.Sprintf("the master's redis: %v", err))
		return
	}
	c := a.peer(spec.RedisAddr, a.cfg.RedisTimeout)
	defer c.Close()
	var got int64 = -1
	for got < info.offset {
		if time.Since(pausedAt) > sw.Timeout {
			abort(fmt.Sprintf("target %s at offset %d, master at %d after %v", target, got, info.offset, sw.Timeout))
			return
		}
		pctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
		ti, err := probe(pctx, c)
		cancel()
		if err == nil && ti.replid == info.replid {
			got = ti.offset
		}
		if got < info.offset {
			select {
			case <-ctx.Done():
				abort("agent stopping")
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	sw.State, sw.To, sw.Offset, sw.PausedAt, sw.Deadline = election.SwitchoverHandoff, target, info.offset, pausedAt, pausedAt.Add(window)
	wctx, cancel := context.WithTimeout(ctx, a.cfg.RedisTimeout)
	err = l.ResignWith(wctx, clientv3.OpPut(key, string(sw.Marshal())))
	cancel()
	if err != nil {
		abort(fmt.Sprintf("hand-off: %v", err))
		return
	}
	a.log.Info("election: switchover: handed off", "to", target, "offset", info.offset, "caught_up_in", time.Since(pausedAt))
	a.stepDown(ctx, true) // the key is gone already; this revokes the lease
}
