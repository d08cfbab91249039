package topology

import (
	"errors"
	"fmt"
	"testing"
)

// haTopology: two relays in A following the master, two in B following
// a1, one in C following b1; nodes under each.
func haTopology() *Topology {
	t := New()
	for _, s := range []string{"A", "B", "C"} {
		t.Sites[s] = Site{Name: s}
	}
	relay := func(id, site, up string, port int) {
		t.Relays[id] = RelaySpec{ID: id, Site: site, Upstream: up,
			GRPCAddr: fmt.Sprintf("127.0.0.1:%d", 7500+port), RedisAddr: fmt.Sprintf("127.0.0.1:%d", 7100+port)}
	}
	relay("a1", "A", UpstreamMaster, 0)
	relay("a2", "A", UpstreamMaster, 1)
	relay("b1", "B", "a1", 10)
	relay("b2", "B", "a1", 11)
	relay("c1", "C", "b1", 20)
	node := func(id, site, follow string, port int) {
		t.Nodes[id] = NodeSpec{ID: id, Site: site, Follow: follow, RedisAddr: fmt.Sprintf("127.0.0.1:%d", 7000+port)}
	}
	node("m", "A", "a1", 0)
	node("as1", "A", "a1", 1)
	node("bs1", "B", "b1", 10)
	node("cs1", "C", "c1", 20)
	t.Master = "m"
	return t
}

// healthy marks every relay healthy, following its declared upstream,
// then applies the changes.
func healthy(t *Topology, change func(Health)) Health {
	h := Health{}
	for id, r := range t.Relays {
		up := r.Upstream
		if up == UpstreamMaster {
			up = ""
		}
		h[id] = RelayHealth{Healthy: true, Upstream: up}
	}
	if change != nil {
		change(h)
	}
	return h
}

func dead(ids ...string) func(Health) {
	return func(h Health) {
		for _, id := range ids {
			delete(h, id)
		}
	}
}

func TestChooseRelayParent(t *testing.T) {
	top := haTopology()
	for _, c := range []struct {
		name   string
		relay  string
		health Health
		parent string
		tier   Tier
	}{
		{"declared healthy", "b1", healthy(top, nil), "a1", TierDeclared},
		{"root follows the master", "a1", healthy(top, dead("a2")), "", TierDeclared},
		{"parent dead: a relay of the parent's site", "b1", healthy(top, dead("a1")), "a2", TierSameSite},
		{"parent unhealthy (lease present, not streaming)", "b2", healthy(top, func(h Health) { h["a1"] = RelayHealth{Upstream: ""} }), "a2", TierSameSite},
		{"parent's site gone: the parent's parent site", "c1", healthy(top, dead("b1", "b2")), "a2", TierParentSite},
		{"parent's site and its parent's gone: the master", "c1", healthy(top, dead("b1", "b2", "a1", "a2")), "", TierMaster},
		{"b1 dead: c1 to b2", "c1", healthy(top, dead("b1")), "b2", TierSameSite},
		{"all of site A dead: b1 to the master (b2 follows a1, unhealthy)", "b1", healthy(top, func(h Health) {
			dead("a1", "a2")(h)
			h["b2"] = RelayHealth{Upstream: "a1"}
		}), "", TierMaster},
		// A sibling that moved under the child is no parent: its
		// effective chain runs through the child.
		{"no cycle through an effective chain", "b1", healthy(top, func(h Health) {
			dead("a1", "a2")(h)
			h["b2"] = RelayHealth{Healthy: true, Upstream: "b1"}
		}), "", TierMaster},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := top.ChooseRelayParent(c.relay, c.health)
			if err != nil {
				t.Fatal(err)
			}
			if got.Parent != c.parent || got.Tier != c.tier {
				t.Errorf("ChooseRelayParent(%s) = %+v, want parent %q tier %v", c.relay, got, c.parent, c.tier)
			}
			if got.Reason == "" {
				t.Error("no reason")
			}
		})
	}
	// c2 (in site A) is declared under b1: b1 may never pick it, even
	// with its effective chain elsewhere.
	top.Relays["c2"] = RelaySpec{ID: "c2", Site: "A", Upstream: "b1", GRPCAddr: "127.0.0.1:7530", RedisAddr: "127.0.0.1:7130"}
	h := healthy(top, dead("a1", "a2"))
	h["c2"] = RelayHealth{Healthy: true, Upstream: ""}
	if got, err := top.ChooseRelayParent("b1", h); err != nil || got.Tier != TierMaster {
		t.Errorf("b1 with site A dead but c2 (declared under b1): %+v, %v; want the master", got, err)
	}
	if _, err := top.ChooseRelayParent("nope", Health{}); err == nil {
		t.Error("unknown relay: no error")
	}
}

func TestChooseNodeParent(t *testing.T) {
	top := haTopology()
	for _, c := range []struct {
		name   string
		node   string
		health Health
		parent string
		tier   Tier
	}{
		{"declared healthy", "bs1", healthy(top, nil), "b1", TierDeclared},
		{"the master keeps its role", "m", healthy(top, dead("a1")), "", TierDeclared},
		{"relay dead: same site", "as1", healthy(top, dead("a1")), "a2", TierSameSite},
		{"relay dead: same site B", "bs1", healthy(top, dead("b1")), "b2", TierSameSite},
		{"site B dead: parent site", "bs1", healthy(top, dead("b1", "b2")), "a1", TierParentSite},
		{"site B and a1 dead: a2", "bs1", healthy(top, dead("b1", "b2", "a1")), "a2", TierParentSite},
		{"no relay: the master", "cs1", Health{}, "", TierMaster},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := top.ChooseNodeParent(c.node, c.health)
			if err != nil {
				t.Fatal(err)
			}
			if got.Parent != c.parent || got.Tier != c.tier {
				t.Errorf("ChooseNodeParent(%s) = %+v, want parent %q tier %v", c.node, got, c.parent, c.tier)
			}
		})
	}
	noMaster := haTopology()
	noMaster.Master = ""
	if _, err := noMaster.ChooseNodeParent("cs1", Health{}); !errors.Is(err, ErrNoParent) {
		t.Errorf("no relay, no master: err %v, want ErrNoParent", err)
	}
}

// TestChooseParentSpreads: the children of a dead relay spread over the
// survivors of its site, deterministically, and a survivor's death moves
// only its own children.
func TestChooseParentSpreads(t *testing.T) {
	top := haTopology()
	for i, id := range []string{"a3", "a4"} {
		top.Relays[id] = RelaySpec{ID: id, Site: "A", Upstream: UpstreamMaster,
			GRPCAddr: fmt.Sprintf("127.0.0.1:%d", 7502+i), RedisAddr: fmt.Sprintf("127.0.0.1:%d", 7102+i)}
	}
	for i := range 40 {
		id := fmt.Sprintf("n%02d", i)
		top.Nodes[id] = NodeSpec{ID: id, Site: "A", Follow: "a1", RedisAddr: fmt.Sprintf("127.0.0.1:%d", 8000+i)}
	}
	h := healthy(top, dead("a1"))
	count := map[string]int{}
	first := map[string]string{}
	for i := range 40 {
		id := fmt.Sprintf("n%02d", i)
		c, err := top.ChooseNodeParent(id, h)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := top.ChooseNodeParent(id, h)
		if again != c {
			t.Fatalf("%s: %+v then %+v", id, c, again)
		}
		count[c.Parent]++
		first[id] = c.Parent
	}
	if len(count) != 3 || count["a2"] < 5 || count["a3"] < 5 || count["a4"] < 5 {
		t.Fatalf("40 children of a1 over a2, a3 and a4: %v, want all used (at least 5 each)", count)
	}
	// a3 dies too: only its children move (to a2 or a4); the others stay.
	h2 := healthy(top, dead("a1", "a3"))
	for id, was := range first {
		c, _ := top.ChooseNodeParent(id, h2)
		if c.Parent != "a2" && c.Parent != "a4" {
			t.Errorf("%s: %q with a1 and a3 dead, want a2 or a4", id, c.Parent)
		}
		if was != "a3" && c.Parent != was {
			t.Errorf("%s moved off %s, which lives, to %s", id, was, c.Parent)
		}
	}
}
