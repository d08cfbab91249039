package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
	"github.com/arbor-fabric/arbor/topology"
)

// ErrBadUpstreams is returned (wrapped) by ParseUpstreams for a list that
// cannot be followed.
var ErrBadUpstreams = errors.New("bad upstream list")

// ParseUpstreams splits a comma-separated list of upstreams in preference
// order (redis:// or arbor:// URLs, see relay.ParseUpstream) and checks
// each: an empty element, a bad URL or the same upstream twice is an
// error naming its position.
func ParseUpstreams(s string) ([]string, error) {
	var out []string
	seen := map[relay.Upstream]int{}
	for i, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, fmt.Errorf("upstream %d of %q: empty: %w", i+1, s, ErrBadUpstreams)
		}
		up, err := relay.ParseUpstream(e)
		if err != nil {
			return nil, fmt.Errorf("upstream %d (%s): %w: %w", i+1, e, ErrBadUpstreams, err)
		}
		key := relay.Upstream{Kind: up.Kind, Addr: up.Addr}
		if j, dup := seen[key]; dup {
			return nil, fmt.Errorf("upstream %d (%s): the same as upstream %d: %w", i+1, e, j, ErrBadUpstreams)
		}
		seen[key] = i + 1
		out = append(out, e)
	}
	return out, nil
}

// staticProbeEvery is how often a StaticRelay checks the upstreams it
// prefers to the one it follows.
const staticProbeEvery = 500 * time.Millisecond

// StaticRelay runs a relay without etcd whose upstream is a list in
// preference order: it follows the first; when the link to the upstream
// it follows stays down past Down or silent past Silence, it follows the
// first other upstream of the list that answers (a relay whose Status says it
// is streaming, a Redis that answers PING), with a partial resync; it
// returns to a preferred upstream once that has answered for HoldDown.
type StaticRelay struct {
	// Config is the relay's configuration; its Upstream is replaced by
	// the first of Upstreams.
	Config relay.Config
	// Upstreams are the upstreams in preference order (ParseUpstreams).
	Upstreams []string
	// Silence, Down and HoldDown are as in topology.MoverConfig; 0 means
	// the defaults.
	Silence, Down, HoldDown time.Duration
	// Logger receives the runner's logs; nil means slog.Default().
	Logger *slog.Logger
	// Started, if not nil, is called with the relay once it is made.
	Started func(*relay.Relay)
}

// Run runs the relay and its mover until ctx ends (nil) or the relay
// fails.
func (s StaticRelay) Run(ctx context.Context) error {
	if len(s.Upstreams) == 0 {
		return fmt.Errorf("no upstream: %w", ErrBadUpstreams)
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	if s.Silence <= 0 {
		s.Silence = topology.DefaultSilence
	}
	if s.Down <= 0 {
		s.Down = topology.DefaultDown
	}
	if s.HoldDown <= 0 {
		s.HoldDown = topology.DefaultHoldDown
	}
	cfg := s.Config
	cfg.Upstream = s.Upstreams[0]
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	if s.Started != nil {
		s.Started(r)
	}
	creds, err := cfg.TLS.ClientCredentials()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if len(s.Upstreams) > 1 {
		m := &staticMover{s: s, r: r, log: log, creds: creds, link: topology.LinkJudge{Silence: s.Silence, Down: s.Down}}
		r.SetParent(m.shown(0), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.run(ctx)
		}()
	}
	err = r.Run(ctx)
	cancel()
	return err
}

// staticMover is the mover of a StaticRelay; run owns it.
type staticMover struct {
	s     StaticRelay
	r     *relay.Relay
	log   *slog.Logger
	creds credentials.TransportCredentials

	cur int // index of the upstream followed
	// link judges the link to cur. The first link is judged from the
	// start, with no grace: until it has been up it is judged against
	// ten times the silence bound, and once up, its loss counts at once
	// (a parent killed in the relay's first second was left 0.6 s
	// longer).
	link      topology.LinkJudge
	upSince   map[int]time.Time // preferred upstreams answering since
	lastProbe time.Time
}

func (m *staticMover) run(ctx context.Context) {
	m.upSince = map[int]time.Time{}
	t := time.NewTicker(haTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.step(ctx, time.Now())
	}
}

func (m *staticMover) step(ctx context.Context, now time.Time) {
	up, idle := m.r.UpstreamLink()
	bad := m.link.Judge(now, up, idle)
	if bad != "" {
		bad = "link " + bad
	}
	if bad == "" && m.cur == 0 {
		return
	}
	if bad != "" {
		// Every round while the link is bad: a candidate that did not
		// answer this time may the next.
		for j := range m.s.Upstreams {
			if j == m.cur {
				continue
			}
			if err := m.alive(ctx, j); err != nil {
				m.log.Debug("upstream not taken", "upstream", m.s.Upstreams[j], "err", err)
				continue
			}
			m.switchTo(now, j, bad)
			return
		}
		return // nothing answers: keep trying the one followed
	}
	if now.Sub(m.lastProbe) < staticProbeEvery {
		return
	}
	m.lastProbe = now
	// Moved and well: back to a preferred upstream after its hold-down.
	for j := range m.cur {
		if m.alive(ctx, j) != nil {
			delete(m.upSince, j)
			continue
		}
		if _, ok := m.upSince[j]; !ok {
			m.upSince[j] = now
		}
		if now.Sub(m.upSince[j]) >= m.s.HoldDown {
			m.switchTo(now, j, fmt.Sprintf("preferred upstream answering for %v", m.s.HoldDown))
			return
		}
	}
}

func (m *staticMover) switchTo(now time.Time, j int, why string) {
	from := m.s.Upstreams[m.cur]
	if err := m.r.SetUpstream(withCredentials(m.s.Upstreams[j], m.s.Config.Upstream)); err != nil {
		m.log.Error("cannot follow the next upstream", "upstream", m.s.Upstreams[j], "err", err)
		return
	}
	m.log.Warn("moving to another upstream", "from", from, "to", m.s.Upstreams[j], "why", why)
	m.cur = j
	// The Status RPC shows where the relay streams from and why, as a
	// relay under etcd shows it (with URLs for relay ids: there is no
	// topology to name them).
	var move *arborv1.ParentMove
	if j != 0 {
		move = &arborv1.ParentMove{From: m.shown(0), To: m.shown(j), Reason: why, AtUnixMs: now.UnixMilli()}
	}
	m.r.SetParent(m.shown(j), move)
	m.link.Repointed(now, true)
	m.upSince = map[int]time.Time{}
}

// shown is upstream j as Status shows it: its URL without a password.
func (m *staticMover) shown(j int) string {
	up, err := relay.ParseUpstream(m.s.Upstreams[j])
	if err != nil {
		return "" // not reached: ParseUpstreams checked the list
	}
	return up.String()
}

// alive checks upstream j: a relay answers Status streaming, a Redis
// answers PING. It returns why not, nil if it does.
func (m *staticMover) alive(ctx context.Context, j int) error {
	up, err := relay.ParseUpstream(m.s.Upstreams[j])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, topology.PingTimeout)
	defer cancel()
	if up.Kind == relay.UpstreamRedis {
		return topology.Ping(ctx, up.Addr)
	}
	conn, err := grpc.NewClient("passthrough:///"+up.Addr, grpc.WithTransportCredentials(m.creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := arborv1.NewRelayServiceClient(conn).Status(ctx, &arborv1.StatusRequest{})
	if err != nil {
		return err
	}
	if ls := st.GetRelay().GetLinkState(); ls != arborv1.LinkState_LINK_STATE_STREAMING {
		return fmt.Errorf("link %v", ls)
	}
	return nil
}
