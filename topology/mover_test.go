package topology

import (
	"strings"
	"testing"
	"time"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

func streaming(ids ...string) map[string]*arborv1.RelayStatus {
	m := map[string]*arborv1.RelayStatus{}
	for _, id := range ids {
		m[id] = &arborv1.RelayStatus{Id: id, LinkState: arborv1.LinkState_LINK_STATE_STREAMING}
	}
	return m
}

// TestMover walks one child relay through a hung parent, a move, the
// parent's return within and past the hold-down, and a topology edit.
func TestMover(t *testing.T) {
	top := haTopology()
	m := NewMover(MoverConfig{Child: "b1", Relay: true, Silence: time.Second, HoldDown: 10 * time.Second})
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	all := streaming("a1", "a2", "b1", "b2", "c1")
	step := func(o Observation) (bool, string) {
		t.Helper()
		o.Topology = top
		if o.Relays == nil {
			o.Relays = all
		}
		return m.Step(o)
	}
	if ch, _ := step(Observation{Now: at(0), LinkUp: false}); ch || m.Followed() != "a1" {
		t.Fatalf("start: changed %v, following %q", ch, m.Followed())
	}
	// A link never up yet is not left within the bound (it gets
	// startFactor times it); once up, silent past the bound moves it.
	if ch, _ := step(Observation{Now: at(900 * time.Millisecond)}); ch {
		t.Fatal("moved on a starting link")
	}
	step(Observation{Now: at(1100 * time.Millisecond), LinkUp: true, Idle: 10 * time.Millisecond})
	if ch, _ := step(Observation{Now: at(2 * time.Second), LinkUp: true, Idle: 900 * time.Millisecond}); ch {
		t.Fatal("moved on a link idle below the bound")
	}
	ch, why := step(Observation{Now: at(2100 * time.Millisecond), LinkUp: true, Idle: 1100 * time.Millisecond})
	if !ch || m.Target() != "a2" || !strings.Contains(why, "silent") {
		t.Fatalf("hung parent: changed %v, target %q, why %q", ch, m.Target(), why)
	}
	if mv := m.Move(); mv.GetFrom() != "a1" || mv.GetTo() != "a2" || mv.GetReason() == "" {
		t.Fatalf("move %+v", mv)
	}
	// a1 is healthy again: no return before the hold-down.
	for d := 3 * time.Second; d < 12*time.Second; d += 500 * time.Millisecond {
		if ch, _ := step(Observation{Now: at(d), LinkUp: true}); ch {
			t.Fatalf("flapped back at %v", d)
		}
	}
	// a1 drops its lease meanwhile: the hold-down starts again.
	step(Observation{Now: at(12 * time.Second), LinkUp: true, Relays: streaming("a2", "b2")})
	for d := 12500 * time.Millisecond; d < 22*time.Second; d += 500 * time.Millisecond {
		if ch, _ := step(Observation{Now: at(d), LinkUp: true}); ch {
			t.Fatalf("back before a full hold-down after a1 came back: %v", d)
		}
	}
	if ch, _ := step(Observation{Now: at(23 * time.Second), LinkUp: true}); !ch || m.Target() != "" || m.Move() != nil {
		t.Fatalf("after the hold-down: changed %v target %q move %v", ch, m.Target(), m.Move())
	}
	// The lease of the parent gone: moves at once.
	if ch, why := step(Observation{Now: at(30 * time.Second), LinkUp: true, Relays: streaming("a2", "b2")}); !ch || m.Target() != "a2" || !strings.Contains(why, "lease") {
		t.Fatalf("lease gone: changed %v target %q why %q", ch, m.Target(), why)
	}
	// The relay moved to loses its lease too: the master (b2, in site B,
	// is no relay of a1's site or above).
	if ch, _ := step(Observation{Now: at(32 * time.Second), LinkUp: true, Relays: streaming("b2")}); !ch || m.Target() != UpstreamMaster {
		t.Fatalf("a1 and a2 gone: target %q", m.Target())
	}
	// The topology declares another parent: followed at once.
	top = haTopology()
	top.Relays["b1"] = RelaySpec{ID: "b1", Site: "B", Upstream: "a2", GRPCAddr: "127.0.0.1:7510", RedisAddr: "127.0.0.1:7110"}
	if ch, _ := step(Observation{Now: at(34 * time.Second), LinkUp: false, Relays: streaming("b2")}); !ch || m.Target() != "" || m.Followed() != "a2" {
		t.Fatalf("topology edit: target %q followed %q", m.Target(), m.Followed())
	}
}

// TestMoverHoldDownNeedsFreshStatus: a hung parent keeps a status that
// looks healthy until its lease expires; the hold-down starts only at a
// status it wrote after the child moved away.
func TestMoverHoldDownNeedsFreshStatus(t *testing.T) {
	top := haTopology()
	m := NewMover(MoverConfig{Child: "b1", Relay: true, Silence: time.Second, HoldDown: 5 * time.Second})
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	all := streaming("a1", "a2", "b1", "b2", "c1")
	updated := map[string]time.Time{"a1": at(0), "a2": at(0)}
	step := func(now time.Duration, up bool, idle time.Duration) bool {
		ch, _ := m.Step(Observation{Now: at(now), Topology: top, Relays: all, LinkUp: up, Idle: idle, Updated: updated})
		return ch
	}
	step(0, true, 0)
	if !step(3*time.Second, true, 2*time.Second) || m.Target() != "a2" {
		t.Fatalf("hung a1: target %q", m.Target())
	}
	for d := 4 * time.Second; d < 20*time.Second; d += 500 * time.Millisecond {
		if step(d, true, 0) {
			t.Fatalf("back on a1 at %v with a status a1 wrote before the move", d)
		}
	}
	updated["a1"] = at(20 * time.Second) // a1 resumed and wrote its status
	for d := 20 * time.Second; d < 25*time.Second; d += 500 * time.Millisecond {
		if step(d, true, 0) {
			t.Fatalf("back on a1 at %v, within the hold-down after its fresh status", d)
		}
	}
	if !step(25*time.Second, true, 0) || m.Target() != "" {
		t.Fatalf("after the hold-down: target %q", m.Target())
	}
}

// TestMoverStart: a parent whose status was never seen is starting, not
// gone, and a link never up yet gets startFactor times the silence bound
// (the parent may be getting its own data).
func TestMoverStart(t *testing.T) {
	top := haTopology()
	m := NewMover(MoverConfig{Child: "b1", Relay: true, Silence: time.Second})
	t0 := time.Unix(1000, 0)
	noA1 := streaming("a2", "b2")
	for d := time.Duration(0); d < startFactor*time.Second; d += 500 * time.Millisecond {
		if ch, why := m.Step(Observation{Now: t0.Add(d), Topology: top, Relays: noA1}); ch {
			t.Fatalf("moved at %v while a1 starts: %s", d, why)
		}
	}
	if ch, _ := m.Step(Observation{Now: t0.Add(12 * time.Second), Topology: top, Relays: noA1}); !ch || m.Target() != "a2" {
		t.Fatalf("a1 never came: target %q", m.Target())
	}
}

// TestMoverSiteReturns: a node whose site lost both relays falls back to
// the parent site, moves back into its site once one of its relays has
// been healthy for the hold-down, and to its declared relay once that one
// has.
func TestMoverSiteReturns(t *testing.T) {
	top := haTopology()
	top.Relays["b2"] = RelaySpec{ID: "b2", Site: "B", Upstream: "a1", GRPCAddr: "127.0.0.1:7511", RedisAddr: "127.0.0.1:7111"}
	m := NewMover(MoverConfig{Child: "bs1", Silence: time.Second, HoldDown: 5 * time.Second})
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	step := func(d time.Duration, relays map[string]*arborv1.RelayStatus) bool {
		ch, _ := m.Step(Observation{Now: at(d), Topology: top, Relays: relays, LinkUp: true})
		return ch
	}
	step(0, streaming("a1", "a2", "b1", "b2"))
	step(time.Second, streaming("a1", "a2", "b1", "b2"))
	if !step(2*time.Second, streaming("a1", "a2")) || m.Move().GetTo()[0] != 'a' {
		t.Fatalf("site B gone: target %q", m.Target())
	}
	if mv := m.Move(); !strings.Contains(mv.GetReason(), "parent site") {
		t.Errorf("reason %q does not say parent site", mv.GetReason())
	}
	// b2 is back: used after the hold-down only.
	for d := 3 * time.Second; d < 8*time.Second; d += 500 * time.Millisecond {
		if step(d, streaming("a1", "a2", "b2")) {
			t.Fatalf("moved at %v, within b2's hold-down", d)
		}
	}
	if !step(8*time.Second, streaming("a1", "a2", "b2")) || m.Target() != "b2" {
		t.Fatalf("b2 healthy past the hold-down: target %q", m.Target())
	}
	// b1 is back: the declared relay, after its hold-down.
	for d := 9 * time.Second; d < 14*time.Second; d += 500 * time.Millisecond {
		if step(d, streaming("a1", "a2", "b1", "b2")) {
			t.Fatalf("moved at %v, within b1's hold-down", d)
		}
	}
	if !step(14*time.Second, streaming("a1", "a2", "b1", "b2")) || m.Target() != "" || m.Move() != nil {
		t.Fatalf("b1 healthy past the hold-down: target %q", m.Target())
	}
}

// judgeStep is one observation of a link, at d from the test's start, and
// the verdict expected.
type judgeStep struct {
	d    time.Duration
	up   bool
	idle time.Duration
	want string
}

// judgeSteps feeds steps to j in order and checks each verdict.
func judgeSteps(t *testing.T, j *LinkJudge, t0 time.Time, steps []judgeStep) {
	t.Helper()
	for _, c := range steps {
		if got := j.Judge(t0.Add(c.d), c.up, c.idle); got != c.want {
			t.Fatalf("at %v (up %v, idle %v): %q, want %q", c.d, c.up, c.idle, got, c.want)
		}
	}
}

// judgeNeverUp checks that a link never up is not left before startFactor
// times the silence bound.
func judgeNeverUp(t *testing.T, j *LinkJudge, t0 time.Time) {
	t.Helper()
	for d := time.Duration(0); d < startFactor*j.Silence; d += 500 * time.Millisecond {
		if got := j.Judge(t0.Add(d), false, 0); got != "" {
			t.Fatalf("a link never up left at %v: %q", d, got)
		}
	}
}

// TestLinkJudge: the rules both movers judge a link by. A first link is
// judged from the start: lost once up, it counts from its loss; never up,
// it gets startFactor times the bound. A repointed link gets one bound to
// connect, then is judged against the bound.
func TestLinkJudge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	j := LinkJudge{Silence: time.Second}
	judgeSteps(t, &j, t0, []judgeStep{ // a first link
		{0, false, 0, ""},
		{100 * time.Millisecond, true, 0, ""},
		{200 * time.Millisecond, false, 0, ""}, // the parent killed in the first second
		{1100 * time.Millisecond, false, 0, ""},
		{1200 * time.Millisecond, false, 0, "down for 1s"},
	})

	j = LinkJudge{Silence: time.Second}
	judgeNeverUp(t, &j, t0)
	if got := j.Judge(at(startFactor*time.Second), false, 0); got != "down for 10s" {
		t.Fatalf("a link never up, at startFactor times the bound: %q", got)
	}

	j.Repointed(at(20*time.Second), true)
	if got := j.Judge(at(20900*time.Millisecond), true, 5*time.Second); got != "" {
		t.Fatalf("judged within a repointed link's grace: %q", got)
	}
	if got := j.Judge(at(21*time.Second), true, 900*time.Millisecond); got != "" {
		t.Fatalf("left on a link idle below the bound: %q", got)
	}
	if got := j.Judge(at(21100*time.Millisecond), true, 1100*time.Millisecond); got != "silent for 1.1s" {
		t.Fatalf("silent link: %q", got)
	}
	j.Repointed(at(30*time.Second), true)
	j.Judge(at(31*time.Second), false, 0)
	if got := j.Judge(at(32*time.Second), false, 0); got != "down for 1s" {
		t.Fatalf("a link to a parent chosen streaming, down for the bound: %q", got)
	}
}

// TestMoverJudgesFromTheStart: the first parent's link is judged from the
// mover's first step, as a static relay's is: a parent killed in the
// child's first second counts from its loss, not from one bound later.
func TestMoverJudgesFromTheStart(t *testing.T) {
	top := haTopology()
	m := NewMover(MoverConfig{Child: "b1", Relay: true, Silence: time.Second, Down: time.Second})
	t0 := time.Unix(1000, 0)
	all := streaming("a1", "a2", "b1", "b2", "c1")
	for d := time.Duration(0); d < 1200*time.Millisecond; d += 100 * time.Millisecond {
		up := d < 200*time.Millisecond // a1 is killed at 200 ms; its lease lives on
		if ch, why := m.Step(Observation{Now: t0.Add(d), Topology: top, Relays: all, LinkUp: up}); ch {
			t.Fatalf("moved at %v, before the link was down for the bound: %s", d, why)
		}
	}
	ch, why := m.Step(Observation{Now: t0.Add(1200 * time.Millisecond), Topology: top, Relays: all})
	if !ch || m.Target() != "a2" || !strings.Contains(why, "link to a1 down for 1s") {
		t.Fatalf("link down for the bound since 200 ms: changed %v, target %q, why %q", ch, m.Target(), why)
	}
}

// TestLinkJudgeDownBound: a link that was up and went down is left after
// the down bound, shorter than the silence bound; an up link is still
// judged silent against the silence bound, a link never up against
// startFactor times the silence bound, and a repointed link gets the
// silence bound to connect, then the down bound.
func TestLinkJudgeDownBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	j := LinkJudge{Silence: time.Second, Down: 500 * time.Millisecond}
	judgeSteps(t, &j, t0, []judgeStep{
		{0, true, 0, ""},
		{100 * time.Millisecond, true, 600 * time.Millisecond, ""}, // idle past the down bound: not down
		{200 * time.Millisecond, false, 0, ""},                     // the parent killed
		{600 * time.Millisecond, false, 0, ""},
		{700 * time.Millisecond, false, 0, "down for 500ms"},
	})

	j = LinkJudge{Silence: time.Second, Down: 500 * time.Millisecond}
	judgeNeverUp(t, &j, t0)

	j.Repointed(at(20*time.Second), true)
	for d := 20 * time.Second; d < 21500*time.Millisecond; d += 100 * time.Millisecond {
		if got := j.Judge(at(d), false, 0); got != "" {
			t.Fatalf("a repointed link left at %v, within its grace and the down bound after it: %q", d, got)
		}
	}
	if got := j.Judge(at(21500*time.Millisecond), false, 0); got != "down for 500ms" {
		t.Fatalf("a repointed link down past its grace and the down bound: %q", got)
	}
}

// TestMoverDownLinkMovesSooner: by default a link that was up and went
// down moves the child after DefaultDown, not after the silence bound; a
// mover given Down equal to its Silence (a node agent) waits the
// silence bound.
func TestMoverDownLinkMovesSooner(t *testing.T) {
	t0 := time.Unix(1000, 0)
	all := streaming("a1", "a2", "b1", "b2", "c1")
	killedAt := 200 * time.Millisecond
	for _, c := range []struct {
		cfg  MoverConfig
		want time.Duration
	}{
		{MoverConfig{Child: "b1", Relay: true, Silence: time.Second}, killedAt + DefaultDown},
		{MoverConfig{Child: "b1", Relay: true, Silence: time.Second, Down: 700 * time.Millisecond}, killedAt + 700*time.Millisecond},
		{MoverConfig{Child: "b1", Relay: true, Silence: time.Second, Down: time.Second}, killedAt + time.Second},
	} {
		m := NewMover(c.cfg)
		top := haTopology()
		moved := time.Duration(-1)
		for d := time.Duration(0); d <= 2*time.Second; d += 100 * time.Millisecond {
			ch, why := m.Step(Observation{Now: t0.Add(d), Topology: top, Relays: all, LinkUp: d < killedAt})
			if ch {
				if m.Target() != "a2" || !strings.Contains(why, "link to a1 down for") {
					t.Fatalf("down %v: moved to %q: %s", c.cfg.Down, m.Target(), why)
				}
				moved = d
				break
			}
		}
		if moved != c.want {
			t.Errorf("down %v: moved at %v after a1 was killed at %v, want at %v", c.cfg.Down, moved, killedAt, c.want)
		}
	}
}
