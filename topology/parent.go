package topology

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
)

// ErrNoParent is returned (wrapped) by ChooseRelayParent and
// ChooseNodeParent when a child's declared parent is unhealthy and nothing
// else may take it: no healthy relay outside its own subtree and no
// master to fall back to.
var ErrNoParent = errors.New("no healthy parent")

// RelayHealth is what a parent choice knows of one relay.
type RelayHealth struct {
	// Healthy says the relay may take children: its status lease is
	// present and its upstream link is streaming (and the caller has no
	// reason of its own to doubt it, such as a hold-down).
	Healthy bool
	// Upstream is the relay it follows now (its effective upstream, which
	// differs from the declared one after a move): a relay id, or "" for
	// the master or a redis:// upstream.
	Upstream string
}

// Health is the health of the relays a parent choice may use, by relay
// id; a relay not in it is unhealthy.
type Health map[string]RelayHealth

// Tier says how far from its declared parent a choice falls back.
type Tier int

// Tiers, in order of preference.
const (
	// TierDeclared is the declared parent itself (it is healthy).
	TierDeclared Tier = iota
	// TierSameSite is another relay of the declared parent's site.
	TierSameSite
	// TierParentSite is a relay of the site of an ancestor of the
	// declared parent (its upstream relay, that one's, and so on).
	TierParentSite
	// TierMaster is the master itself.
	TierMaster
)

func (t Tier) String() string {
	switch t {
	case TierDeclared:
		return "declared"
	case TierSameSite:
		return "same site"
	case TierParentSite:
		return "parent site"
	case TierMaster:
		return "master"
	}
	return fmt.Sprintf("tier %d", int(t))
}

// Choice is the parent a child should follow.
type Choice struct {
	// Parent is the relay to follow; "" when Tier is TierMaster.
	Parent string
	// Tier is how far the choice falls back.
	Tier Tier
	// Reason says why, for status and logs.
	Reason string
}

// Master reports whether the choice is the master itself.
func (c Choice) Master() bool { return c.Tier == TierMaster }

// ChooseRelayParent chooses the parent of relay id given the relays'
// health. While its declared upstream relay is healthy, that is the
// choice. Otherwise it is a healthy relay of the declared parent's site,
// then of the site of the parent's upstream relay (and so on up the
// declared chain), then the master (UpstreamMaster). A relay whose
// declared or effective chain runs through id is never chosen: that would
// close a cycle. Among the relays of the best site, the shallowest (fewest
// relays to the master) are taken, and one of them is picked by
// rendezvous hashing of id, so the children of a dead relay spread over
// the survivors, and a survivor's death moves only its own children. A
// relay whose declared upstream is the master or a redis:// URL follows it
// (TierDeclared): the master's failure is the election's business.
func (t *Topology) ChooseRelayParent(id string, h Health) (Choice, error) {
	r, ok := t.Relays[id]
	if !ok {
		return Choice{}, fmt.Errorf("relay %q: not in the topology", id)
	}
	if _, ok := t.Relays[r.Upstream]; !ok {
		return Choice{Tier: TierDeclared, Parent: "", Reason: "follows " + r.Upstream}, nil
	}
	if c, ok := t.choose(id, true, r.Upstream, h); ok {
		return c, nil
	}
	return Choice{Tier: TierMaster, Reason: fmt.Sprintf("%s unhealthy and no healthy relay in reach: following the master", r.Upstream)}, nil
}

// ChooseNodeParent chooses the relay node id's Redis should replicate
// from, by the rule of ChooseRelayParent; the last resort is the master
// node (Choice.Tier TierMaster: replicate from the master's Redis). A
// node that follows another node (a chained replica), or is the master,
// keeps what the topology says (TierDeclared, Parent "").
func (t *Topology) ChooseNodeParent(id string, h Health) (Choice, error) {
	n, ok := t.Nodes[id]
	if !ok {
		return Choice{}, fmt.Errorf("node %q: not in the topology", id)
	}
	if _, ok := t.Relays[n.Follow]; !ok || t.Master == id {
		return Choice{Tier: TierDeclared, Reason: "follows " + n.Follow}, nil
	}
	if c, ok := t.choose(id, false, n.Follow, h); ok {
		return c, nil
	}
	if _, ok := t.Nodes[t.Master]; !ok || t.Master == "" {
		return Choice{}, fmt.Errorf("node %q: %s unhealthy, no healthy relay in reach and no master designated: %w", id, n.Follow, ErrNoParent)
	}
	return Choice{Tier: TierMaster, Reason: fmt.Sprintf("%s unhealthy and no healthy relay in reach: following the master", n.Follow)}, nil
}

// choose is the common part of the two choices: the declared parent if
// healthy, else the best healthy relay by tier; ok is false when only the
// master is left.
func (t *Topology) choose(child string, childIsRelay bool, declared string, h Health) (Choice, bool) {
	if h[declared].Healthy && !(childIsRelay && t.chainHas(declared, child, h)) {
		return Choice{Parent: declared, Tier: TierDeclared, Reason: "declared parent"}, true
	}
	// The sites to try, in order: the declared parent's, then its
	// ancestors' along the declared chain.
	var sites []string
	seen := map[string]bool{}
	for cur, steps := declared, 0; steps <= len(t.Relays); steps++ {
		spec, ok := t.Relays[cur]
		if !ok {
			break
		}
		if !seen[spec.Site] {
			seen[spec.Site] = true
			sites = append(sites, spec.Site)
		}
		cur = spec.Upstream
	}
	for i, site := range sites {
		var cands []string
		best := -1
		for _, rid := range t.RelayIDs() {
			spec := t.Relays[rid]
			if spec.Site != site || rid == declared || rid == child || !h[rid].Healthy {
				continue
			}
			if childIsRelay && t.chainHas(rid, child, h) {
				continue
			}
			d := t.depth(rid, h)
			switch {
			case best < 0 || d < best:
				best, cands = d, []string{rid}
			case d == best:
				cands = append(cands, rid)
			}
		}
		if len(cands) == 0 {
			continue
		}
		tier := TierParentSite
		if i == 0 {
			tier = TierSameSite
		}
		pick := rendezvous(child, cands)
		return Choice{Parent: pick, Tier: tier, Reason: fmt.Sprintf("%s unhealthy: %s relay %s", declared, tier, pick)}, true
	}
	return Choice{}, false
}

// chainHas reports whether relay id's chain toward the master, declared or
// effective, passes through target. Both are walked because a relay
// that moved follows its effective parent, and one about to return
// follows its declared one.
func (t *Topology) chainHas(id, target string, h Health) bool {
	walk := func(next func(string) string) bool {
		cur := id
		for range len(t.Relays) + 1 {
			if cur == target {
				return true
			}
			cur = next(cur)
			if _, ok := t.Relays[cur]; !ok {
				return false
			}
		}
		return true // a loop: treat as reaching anything
	}
	declared := func(r string) string { return t.Relays[r].Upstream }
	effective := func(r string) string {
		if rh, ok := h[r]; ok {
			return rh.Upstream
		}
		return t.Relays[r].Upstream
	}
	return walk(declared) || walk(effective)
}

// depth is how many relays lie between relay id and the master along its
// effective chain (0 for a relay that follows the master).
func (t *Topology) depth(id string, h Health) int {
	d := 0
	cur := id
	for range len(t.Relays) {
		up := t.Relays[cur].Upstream
		if rh, ok := h[cur]; ok {
			up = rh.Upstream
		}
		if _, ok := t.Relays[up]; !ok {
			return d
		}
		d++
		cur = up
	}
	return d
}

// rendezvous picks one of cands for child by highest random weight:
// deterministic, spread evenly, and stable when another candidate comes
// or goes.
func rendezvous(child string, cands []string) string {
	sort.Strings(cands)
	var best string
	var bestW uint64
	for i, c := range cands {
		f := fnv.New64a()
		f.Write([]byte(child))
		f.Write([]byte{0})
		f.Write([]byte(c))
		w := mix(f.Sum64())
		if i == 0 || w > bestW {
			best, bestW = c, w
		}
	}
	return best
}

// mix is a 64-bit finalizer (splitmix64's): FNV alone spreads short keys
// that differ in their last bytes poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
