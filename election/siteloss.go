package election

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/arbor-fabric/arbor/topology"
)

// RelayView is what a promoting node knows of one relay at promotion.
type RelayView struct {
	// Live says the relay publishes a status (its lease lives) and its
	// Redis side answered the promoting node just now.
	Live bool
	// Offset is the end of the stream the relay has stored, on the
	// replication history the new master continues; 0 if unknown or on
	// another history.
	Offset int64
}

// Change is one edit of a site-loss rewrite: what a relay replicates
// from, or what a node follows, From one thing To another.
type Change struct {
	// Kind is topology.KindRelay or topology.KindNode.
	Kind string `json:"kind"`
	// ID is the relay's or node's id.
	ID string `json:"id"`
	// From and To are the relay's upstream (topology.UpstreamMaster or a
	// relay id), or the node's follow, before and after.
	From string `json:"from"`
	To   string `json:"to"`
}

// String describes the change for people.
func (c Change) String() string {
	if c.Kind == topology.KindRelay && c.To == topology.UpstreamMaster {
		return fmt.Sprintf("relay %s becomes a root (was a child of %s)", c.ID, c.From)
	}
	return fmt.Sprintf("%s %s follows %s (was %s)", c.Kind, c.ID, c.To, c.From)
}

// SiteLoss is the topology rewrite of a promotion that replaces a master
// whose whole site is gone.
type SiteLoss struct {
	// Site is the lost site: the old master's.
	Site string
	// Anchor is the surviving relay the new master catches up from before
	// it is promoted; after the rewrite it is a root (follows the master).
	// Empty when no relay survives outside the lost site.
	Anchor string
	// Changes are the edits, relays first, then nodes, each by id.
	Changes []Change
	// Topology is the rewritten topology, whose master is the new master.
	Topology *topology.Topology
	// AnchorOffset is the anchor's stored offset: the new master must
	// reach it before it is promoted.
	AnchorOffset int64
}

// String describes the rewrite for people (and the history).
func (s SiteLoss) String() string {
	parts := []string{fmt.Sprintf("site %s lost (no relay of it live)", s.Site)}
	if s.Anchor != "" {
		parts = append(parts, fmt.Sprintf("caught up from relay %s, the most advanced surviving relay", s.Anchor))
	}
	for _, c := range s.Changes {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, "; ")
}

// PlanSiteLoss decides, a pure function, whether newMaster's promotion
// replaces oldMaster after the loss of oldMaster's whole site, and if so
// how the topology is rewritten. relays holds what the promoting node
// knows of each relay (a relay missing from it counts as not live).
//
// The site is lost when the new master is in another site, the old site
// has at least one relay, and none of its relays is live. Only then is
// the topology rewritten; a single dead relay in a live site is the
// run-time parent choice's business, not the promotion's.
//
// The rule:
//   - A relay outside the lost site whose upstream is a relay of the lost
//     site is cut off (its whole subtree is, through it).
//   - The anchor is the most advanced live relay among the cut-off relays
//     and the live roots outside the lost site (highest Offset; ties: the
//     new master's site first, then id). The new master catches up to its
//     offset, so nothing a surviving relay holds is lost.
//   - A cut-off anchor becomes a root. Every other cut-off relay, live or
//     not, re-parents to the anchor, which holds at least what it holds.
//   - A node outside the lost site that follows a relay of the lost site
//     follows the anchor.
//   - Relays and nodes of the lost site keep their specs: when the site
//     comes back they rejoin under its relays, which follow the master of
//     the newest epoch (never a second master).
//
// With no live relay outside the lost site there is no anchor and only the
// master changes.
func PlanSiteLoss(top *topology.Topology, oldMaster, newMaster string, relays map[string]RelayView) (SiteLoss, bool) {
	if top == nil {
		return SiteLoss{}, false
	}
	om, ok1 := top.Nodes[oldMaster]
	nm, ok2 := top.Nodes[newMaster]
	if !ok1 || !ok2 || om.Site == "" || om.Site == nm.Site {
		return SiteLoss{}, false
	}
	lostSite := om.Site
	lost := map[string]bool{}
	for id, r := range top.Relays {
		if r.Site != lostSite {
			continue
		}
		if relays[id].Live {
			return SiteLoss{}, false
		}
		lost[id] = true
	}
	if len(lost) == 0 {
		return SiteLoss{}, false
	}

	var cut, anchors []string
	for _, id := range top.RelayIDs() {
		r := top.Relays[id]
		switch {
		case lost[id]:
		case lost[r.Upstream]:
			cut = append(cut, id)
			if relays[id].Live {
				anchors = append(anchors, id)
			}
		case r.Upstream == topology.UpstreamMaster && relays[id].Live:
			anchors = append(anchors, id)
		}
	}
	slices.SortFunc(anchors, func(a, b string) int {
		if c := cmp.Compare(relays[b].Offset, relays[a].Offset); c != 0 {
			return c
		}
		aSite, bSite := top.Relays[a].Site == nm.Site, top.Relays[b].Site == nm.Site
		if aSite != bSite {
			if aSite {
				return -1
			}
			return 1
		}
		return cmp.Compare(a, b)
	})

	plan := SiteLoss{Site: lostSite, Topology: top.Clone()}
	plan.Topology.Master = newMaster
	if len(anchors) == 0 {
		return plan, true
	}
	plan.Anchor, plan.AnchorOffset = anchors[0], relays[anchors[0]].Offset
	for _, id := range cut {
		r := plan.Topology.Relays[id]
		to := plan.Anchor
		if id == plan.Anchor {
			to = topology.UpstreamMaster
		}
		plan.Changes = append(plan.Changes, Change{Kind: topology.KindRelay, ID: id, From: r.Upstream, To: to})
		r.Upstream = to
		plan.Topology.Relays[id] = r
	}
	for _, id := range top.NodeIDs() {
		n := top.Nodes[id]
		if n.Site == lostSite || !lost[n.Follow] {
			continue
		}
		plan.Changes = append(plan.Changes, Change{Kind: topology.KindNode, ID: id, From: n.Follow, To: plan.Anchor})
		n.Follow = plan.Anchor
		plan.Topology.Nodes[id] = n
	}
	return plan, true
}
