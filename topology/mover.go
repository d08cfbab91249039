package topology

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// Mover defaults.
const (
	// DefaultSilence is how long a link to a parent may be up but silent
	// before the child moves to another parent.
	DefaultSilence = time.Second
	// DefaultDown is how long a link to a parent that was up may stay
	// down (its stream ended by EOF or a reset, and redials are refused
	// or time out: the parent's process or host is gone) before the
	// child moves. It is shorter than DefaultSilence because a down link
	// is no guess, while silence is judged against heartbeats every
	// 250 ms that a busy machine may delay. What a short bound risks is
	// leaving a parent that would have been back a moment later (a cut
	// the child redials at once, a quick restart), and that costs only a
	// partial resync to a sibling; the hold-down keeps the child from
	// flapping back. 500 ms leaves a relay's redial after a cut (its
	// first retry waits 100 ms) a few round trips to connect.
	DefaultDown = 500 * time.Millisecond
	// DefaultHoldDown is how long a declared parent must be seen healthy
	// before a child that moved away from it returns.
	DefaultHoldDown = 30 * time.Second
	// MinSilence is the least silence bound a mover may be given: twice
	// the heartbeat a parent relay sends on an idle link (every 250 ms),
	// so that an idle but live link never looks silent (a node agent
	// PINGs the relay its Redis follows every 100 ms). Below it, a relay
	// on an idle stream moved between its parents every half second.
	MinSilence = 500 * time.Millisecond
	// MinDown is the least down bound a mover may be given: a relay
	// judges its link every 100 ms and redials a cut link after 100 ms,
	// so below it a child would leave a parent that cut it on purpose
	// (a topology change, a slow consumer) before it could even redial.
	MinDown = 200 * time.Millisecond
)

// MoverConfig configures a Mover.
type MoverConfig struct {
	// Child is the relay or node id whose parent the Mover keeps.
	Child string
	// Relay says Child is a relay (ChooseRelayParent), not a node
	// (ChooseNodeParent).
	Relay bool
	// Silence is how long the link to the parent followed may be up but
	// silent before the child moves; 0 means DefaultSilence.
	Silence time.Duration
	// Down is how long that link, once it was up, may stay down before
	// the child moves; 0 means DefaultDown. A node agent passes its
	// Silence: its Redis retries a failed connection to its master only
	// from its once-a-second replication cron, so its link reads down
	// for a second after one failed redial.
	Down time.Duration
	// HoldDown is how long the declared parent must be seen healthy
	// before the child returns to it; 0 means DefaultHoldDown.
	HoldDown time.Duration
}

// Observation is what a Mover is told at each Step.
type Observation struct {
	// Now is the time of the observation.
	Now time.Time
	// Topology is the topology in force.
	Topology *Topology
	// Relays are the relays' live statuses (a relay whose lease is gone
	// is absent).
	Relays map[string]*arborv1.RelayStatus
	// LinkUp says the child's link to the parent it follows is up
	// (streaming, or receiving a full sync).
	LinkUp bool
	// Idle is how long that link has received nothing; 0 if unknown.
	Idle time.Duration
	// Updated, if not nil, says when each relay's status was last seen
	// written (RelayStatusWatcher.Updated). A hung relay keeps a status
	// that looks healthy until its lease expires, so a child that moved
	// away starts the hold-down of its declared parent only at a status
	// written after the move.
	Updated map[string]time.Time
	// Reachable, if not nil, checks a relay the Mover is about to choose
	// (e.g. Topology.PingRelay): one that fails it is passed over, as a
	// relay killed a moment ago still has a status that looks healthy.
	// It is called only when the child moves.
	Reachable func(id string) bool
}

// Mover decides which parent one child follows: its declared parent while
// that is healthy; another, chosen by ChooseRelayParent or
// ChooseNodeParent, when the parent it follows loses its status lease or
// its link stays down past the down bound or silent past the silence
// bound (LinkJudge); the declared one again once it has been healthy for
// the hold-down, or at once when the topology declares another parent. A
// Mover is owned by one goroutine.
type Mover struct {
	cfg MoverConfig

	declared string               // the declared parent relay; "" when it is no relay (nothing to move)
	move     *arborv1.ParentMove  // the move in force, To the target (see Target); nil when following declared
	link     LinkJudge            // the link to the parent followed
	tier     Tier                 // the tier of target
	upSince  map[string]time.Time // since when each relay is seen healthy (see Step)
	movedAt  time.Time            // when the target last changed
	// seenLease says the status of the parent followed was seen since it
	// was set: a parent never seen yet is starting (its lease gone means
	// nothing).
	seenLease bool
}

// NewMover returns a Mover following the declared parent.
func NewMover(cfg MoverConfig) *Mover {
	if cfg.Silence <= 0 {
		cfg.Silence = DefaultSilence
	}
	if cfg.Down <= 0 {
		cfg.Down = DefaultDown
	}
	if cfg.HoldDown <= 0 {
		cfg.HoldDown = DefaultHoldDown
	}
	return &Mover{cfg: cfg, link: LinkJudge{Silence: cfg.Silence, Down: cfg.Down}}
}

// Target returns what the child follows instead of its declared parent:
// a relay id or UpstreamMaster; "" while it follows the declared one.
func (m *Mover) Target() string { return m.move.GetTo() }

// Move returns the move in force (a copy), nil while the child follows
// its declared parent.
func (m *Mover) Move() *arborv1.ParentMove {
	if m.move == nil {
		return nil
	}
	return proto.CloneOf(m.move)
}

// Followed returns the relay id (or UpstreamMaster) the child follows now.
func (m *Mover) Followed() string {
	if t := m.Target(); t != "" {
		return t
	}
	return m.declared
}

// Step takes one observation and reports whether the target changed (the
// caller then repoints the child: Target, or the declared parent when it
// is ""). It returns why it changed, for logs.
//
// While the child follows its declared parent, it moves only when that
// parent fails. Once moved, it moves again when the parent it follows
// fails, and otherwise only to a better tier (the declared parent, a
// relay of the declared parent's site) whose relay has been healthy for
// the hold-down: so a child that fell back to the parent site returns to
// its own site when one of its relays is back, and nobody follows a relay
// that comes and goes.
func (m *Mover) Step(o Observation) (changed bool, why string) {
	if o.Topology == nil {
		return false, ""
	}
	declared := m.declaredIn(o.Topology)
	if declared != m.declared {
		// The topology names another parent: follow it at once. A link
		// repointed from another relay gets the bound to connect; the
		// first parent's is judged from the start, as the link of a
		// static relay is (one never up gets startFactor times the
		// bound anyway, and the loss of one that was up counts at once).
		changed = m.move != nil
		if m.Followed() != "" {
			m.link.Repointed(o.Now, false)
		} else {
			m.link = LinkJudge{Silence: m.cfg.Silence, Down: m.cfg.Down}
		}
		m.declared, m.move, m.tier = declared, nil, TierDeclared
		m.seenLease = false
		if changed {
			return true, "the topology declares parent " + declared
		}
	}
	if m.declared == "" {
		return false, ""
	}
	followed, moved := m.Followed(), m.Target()
	bad := m.judge(o, followed)

	health := Health{}
	for id, st := range o.Relays {
		if id == m.cfg.Child && m.cfg.Relay {
			continue
		}
		up := st.GetEffectiveUpstream()
		if up == "" {
			if spec, ok := o.Topology.Relays[id]; ok {
				up = spec.Upstream
			}
		}
		if up == UpstreamMaster {
			up = ""
		}
		health[id] = RelayHealth{Healthy: st.GetLinkState() == arborv1.LinkState_LINK_STATE_STREAMING, Upstream: up}
	}
	// How long each relay has been healthy, for the hold-down. The
	// declared parent counts only from a status it wrote after the child
	// moved away: a hung relay keeps a healthy-looking status until its
	// lease expires.
	if m.upSince == nil {
		m.upSince = map[string]time.Time{}
	}
	for id := range m.upSince {
		if !health[id].Healthy {
			delete(m.upSince, id)
		}
	}
	for id, h := range health {
		fresh := id != m.declared || moved == "" || o.Updated == nil || o.Updated[id].After(m.movedAt)
		if !h.Healthy || !fresh {
			delete(m.upSince, id)
		} else if _, ok := m.upSince[id]; !ok {
			m.upSince[id] = o.Now
		}
	}
	without := func(h Health, id string) {
		r := h[id]
		r.Healthy = false
		h[id] = r
	}
	if bad != "" {
		without(health, followed)
	}
	held := func(id string) bool {
		since, ok := m.upSince[id]
		return ok && o.Now.Sub(since) >= m.cfg.HoldDown
	}

	var c Choice
	var err error
	choose := func(h Health) {
		for range len(o.Topology.Relays) + 1 {
			if m.cfg.Relay {
				c, err = o.Topology.ChooseRelayParent(m.cfg.Child, h)
			} else {
				c, err = o.Topology.ChooseNodeParent(m.cfg.Child, h)
			}
			if err != nil || c.Parent == "" || o.Reachable == nil || c.Parent == moved || o.Reachable(c.Parent) {
				return
			}
			without(h, c.Parent)
		}
	}
	switch {
	case moved == "" && bad == "":
		return false, ""
	case moved == "":
		choose(health)
	case bad != "":
		// The parent moved to failed too: the best healthy one now,
		// but the declared parent only past its hold-down.
		if !held(m.declared) {
			without(health, m.declared)
		}
		choose(health)
	default:
		// Moved and well: a better tier, held down, or nothing.
		hd := Health{}
		for id, h := range health {
			h.Healthy = h.Healthy && (held(id) || id == moved)
			hd[id] = h
		}
		choose(hd)
		if err == nil && c.Tier >= m.tier {
			return false, ""
		}
	}
	if err != nil {
		return false, ""
	}
	target := c.Parent
	switch c.Tier {
	case TierDeclared:
		target = ""
	case TierMaster:
		target = UpstreamMaster
	}
	if target == moved {
		return false, ""
	}
	if bad != "" {
		// What was left for failing starts its hold-down again.
		delete(m.upSince, followed)
	}
	switch {
	case target == "":
		why = fmt.Sprintf("back to %s after it was healthy for %v", m.declared, m.cfg.HoldDown)
	case bad != "":
		why = bad + "; " + c.Reason
	default:
		why = fmt.Sprintf("%s (%s) healthy for %v: a better tier than %s", target, c.Tier, m.cfg.HoldDown, m.Target())
	}
	m.move = nil
	if target != "" {
		m.move = &arborv1.ParentMove{From: m.declared, To: target, Reason: why, AtUnixMs: o.Now.UnixMilli()}
	}
	m.tier, m.movedAt = c.Tier, o.Now
	_, m.seenLease = o.Relays[m.Followed()]
	// A parent chosen is streaming: its link is judged against the
	// silence bound, not given a starting relay's time.
	m.link.Repointed(o.Now, true)
	return true, why
}

// declaredIn returns the declared parent relay of the child in t, "" when
// it has none (a root relay, a node following a node, the master).
func (m *Mover) declaredIn(t *Topology) string {
	var p string
	if m.cfg.Relay {
		p = t.Relays[m.cfg.Child].Upstream
	} else if t.Master != m.cfg.Child {
		p = t.Nodes[m.cfg.Child].Follow
	}
	if _, ok := t.Relays[p]; !ok {
		return ""
	}
	return p
}

// judge says why the parent followed is to be left, or "".
func (m *Mover) judge(o Observation, followed string) string {
	if followed != UpstreamMaster {
		if _, ok := o.Relays[followed]; ok {
			m.seenLease = true
		} else if m.seenLease {
			return fmt.Sprintf("status lease of %s gone", followed)
		}
	}
	if why := m.link.Judge(o.Now, o.LinkUp, o.Idle); why != "" {
		return "link to " + followed + " " + why
	}
	return ""
}

// startFactor times the silence bound is how long a link that was never
// up may stay down before the child moves.
const startFactor = 10

// LinkJudge judges the link from a child to the parent it follows, for
// the movers (Mover, and the one of a relay run without etcd on a list of
// upstreams): the parent is to be left when the link is up but has
// received nothing for the silence bound, or has been down for the down
// bound since it was last seen up. A link never up since the parent was
// set may stay down startFactor times the silence bound, as it may wait
// for a parent that is getting its own data. The zero value with Silence
// and Down set judges a first link from the start.
type LinkJudge struct {
	// Silence is the silence bound: how long an up link may receive
	// nothing (a parent heartbeats an idle link every 250 ms).
	Silence time.Duration
	// Down is the down bound: how long a link that was up may stay down;
	// 0 means Silence.
	Down time.Duration

	badSince  time.Time // when the link was first seen down; zero while up
	judgeFrom time.Time // the link is not judged before this (a repointed link connects)
	linked    bool      // the link was seen up since the parent was set
}

// Repointed starts judging the link anew at now, after the child was
// pointed at another parent: the new link gets the silence bound to
// connect before it is judged. streaming says the parent was chosen
// because it streams: its link is judged against the down bound even
// before it was seen up.
func (j *LinkJudge) Repointed(now time.Time, streaming bool) {
	j.badSince, j.judgeFrom, j.linked = time.Time{}, now.Add(j.Silence), streaming
}

// Judge takes the link's state at now: up (streaming, or receiving a full
// sync) and idle (how long it has received nothing; 0 if unknown). It
// returns why the parent is to be left ("silent for 1.2s", "down for
// 500ms"), or "".
func (j *LinkJudge) Judge(now time.Time, up bool, idle time.Duration) string {
	if up {
		j.linked = true
	}
	if now.Before(j.judgeFrom) {
		return ""
	}
	// A link that was up and went down is the parent's end (or the
	// path to it) saying so: it gets the down bound. One never up
	// gets the silence bound startFactor times: nothing says its
	// parent is gone rather than busy getting its own data.
	bound := j.Down
	if bound <= 0 {
		bound = j.Silence
	}
	if !j.linked {
		bound = startFactor * j.Silence
	}
	switch {
	case up && idle >= j.Silence:
		return fmt.Sprintf("silent for %v", idle.Round(time.Millisecond))
	case up:
		j.badSince = time.Time{}
	case j.badSince.IsZero():
		j.badSince = now
	case now.Sub(j.badSince) >= bound:
		return fmt.Sprintf("down for %v", now.Sub(j.badSince).Round(time.Millisecond))
	}
	return ""
}
