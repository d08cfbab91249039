package election

import (
	"fmt"
	"testing"

	"github.com/arbor-fabric/arbor/topology"
)

// threeSites is the DR shape: master am and backup ab in A, backup bm in B,
// replica cr in C; root relay ra (A) and its children rb (B) and rc (C).
func threeSites() *topology.Topology {
	t := topology.New()
	for _, s := range []string{"A", "B", "C"} {
		t.Sites[s] = topology.Site{Name: s}
	}
	t.Master = "am"
	port := 7000
	addr := func() string { port++; return fmt.Sprintf("127.0.0.1:%d", port) }
	relay := func(id, site, up string) {
		t.Relays[id] = topology.RelaySpec{ID: id, Site: site, RedisAddr: addr(), GRPCAddr: addr(), Upstream: up}
	}
	relay("ra", "A", topology.UpstreamMaster)
	relay("rb", "B", "ra")
	relay("rc", "C", "ra")
	node := func(id, site, follow string, cand bool) {
		t.Nodes[id] = topology.NodeSpec{ID: id, Site: site, RedisAddr: addr(), Candidate: cand, Priority: 1, Follow: follow}
	}
	node("am", "A", "ra", true)
	node("ab", "A", "ra", true)
	node("bm", "B", "rb", true)
	node("cr", "C", "rc", false)
	return t
}

func TestPlanSiteLoss(t *testing.T) {
	live := func(off int64) RelayView { return RelayView{Live: true, Offset: off} }
	tests := []struct {
		name      string
		edit      func(*topology.Topology)
		newMaster string
		relays    map[string]RelayView
		lost      bool
		anchor    string
		changes   []string // Change.String()s in order; nil: not checked
		upstreams map[string]string
	}{
		{
			name:      "site A lost: rb becomes a root, rc re-parents to it",
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": live(100), "rc": live(90)},
			lost:      true, anchor: "rb",
			changes:   []string{"relay rb becomes a root (was a child of ra)", "relay rc follows rb (was ra)"},
			upstreams: map[string]string{"ra": "master", "rb": "master", "rc": "rb"},
		},
		{
			name:      "the most advanced surviving relay anchors, whatever its site",
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": live(90), "rc": live(100)},
			lost:      true, anchor: "rc",
			changes:   []string{"relay rb follows rc (was ra)", "relay rc becomes a root (was a child of ra)"},
			upstreams: map[string]string{"rb": "rc", "rc": "master"},
		},
		{
			name:      "equal offsets: the new master's site first",
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": live(100), "rc": live(100)},
			lost:      true, anchor: "rb",
			upstreams: map[string]string{"rb": "master", "rc": "rb"},
		},
		{
			name:      "a dead cut-off relay re-parents too but never anchors",
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": {Live: false, Offset: 500}, "rc": live(90)},
			lost:      true, anchor: "rc",
			upstreams: map[string]string{"rb": "rc", "rc": "master"},
		},
		{
			name: "a live root outside the lost site that is ahead anchors; children of the lost relay join it",
			edit: func(t *topology.Topology) {
				r := t.Relays["rc"]
				r.Upstream = topology.UpstreamMaster
				t.Relays["rc"] = r
			},
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": live(90), "rc": live(100)},
			lost:      true, anchor: "rc",
			changes:   []string{"relay rb follows rc (was ra)"},
			upstreams: map[string]string{"rb": "rc", "rc": "master"},
		},
		{
			name: "a node outside the site that followed a lost relay follows the anchor",
			edit: func(t *topology.Topology) {
				n := t.Nodes["cr"]
				n.Follow = "ra"
				t.Nodes["cr"] = n
			},
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": live(100), "rc": live(90)},
			lost:      true, anchor: "rb",
			changes: []string{"relay rb becomes a root (was a child of ra)", "relay rc follows rb (was ra)", "node cr follows rb (was ra)"},
		},
		{
			name:      "no surviving relay: only the master changes",
			newMaster: "bm",
			relays:    map[string]RelayView{},
			lost:      true,
			changes:   []string{},
			upstreams: map[string]string{"rb": "ra", "rc": "ra"},
		},
		{
			name:      "a relay of the old site still live: no site loss",
			newMaster: "bm",
			relays:    map[string]RelayView{"ra": live(100), "rb": live(100), "rc": live(90)},
		},
		{
			name:      "new master in the old site: no site loss",
			newMaster: "ab",
			relays:    map[string]RelayView{"rb": live(100), "rc": live(90)},
		},
		{
			name: "the old site has no relay: no site loss",
			edit: func(t *topology.Topology) {
				r := t.Relays["ra"]
				r.Site = "B"
				t.Relays["ra"] = r
			},
			newMaster: "bm",
			relays:    map[string]RelayView{"rb": live(100)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := threeSites()
			if tt.edit != nil {
				tt.edit(top)
			}
			before := top.Clone()
			plan, lost := PlanSiteLoss(top, "am", tt.newMaster, tt.relays)
			if !top.Equal(before) {
				t.Fatal("PlanSiteLoss changed its input")
			}
			if lost != tt.lost {
				t.Fatalf("site lost %v, want %v (plan %+v)", lost, tt.lost, plan)
			}
			if !lost {
				return
			}
			if plan.Site != "A" || plan.Anchor != tt.anchor || (tt.anchor != "" && plan.AnchorOffset != tt.relays[tt.anchor].Offset) || plan.Topology.Master != tt.newMaster {
				t.Errorf("site %q anchor %q master %q, want A, %q, %q", plan.Site, plan.Anchor, plan.Topology.Master, tt.anchor, tt.newMaster)
			}
			if tt.changes != nil {
				got := fmt.Sprint(plan.Changes)
				if want := fmt.Sprint(tt.changes); got != want {
					t.Errorf("changes %s, want %s", got, want)
				}
			}
			// The changes name every relay and node the rewrite edits.
			edited := map[string]bool{}
			for _, c := range plan.Changes {
				edited[c.Kind+" "+c.ID] = true
			}
			for id, r := range plan.Topology.Relays {
				if r != top.Relays[id] && !edited[topology.KindRelay+" "+id] {
					t.Errorf("relay %s rewritten (%+v) with no change for it", id, r)
				}
			}
			for id, n := range plan.Topology.Nodes {
				if n != top.Nodes[id] && !edited[topology.KindNode+" "+id] {
					t.Errorf("node %s rewritten (%+v) with no change for it", id, n)
				}
			}
			for id, up := range tt.upstreams {
				if got := plan.Topology.Relays[id].Upstream; got != up {
					t.Errorf("relay %s upstream %q, want %q", id, got, up)
				}
			}
			for _, id := range []string{"am", "ab"} {
				if plan.Topology.Nodes[id] != top.Nodes[id] {
					t.Errorf("node %s of the lost site changed: %+v", id, plan.Topology.Nodes[id])
				}
			}
			if err := topology.Validate(plan.Topology); err != nil {
				t.Errorf("rewritten topology does not validate: %v", err)
			}
		})
	}
}
