package election

import (
	"cmp"
	"fmt"
	"slices"
)

// DefaultMaxLagBytes is how far (bytes of replication stream) a candidate
// may trail the most advanced known offset and still be promoted: it
// catches up from a relay first, so the limit bounds that wait.
const DefaultMaxLagBytes = 1 << 20

// Candidate is what the ranking knows of one node.
type Candidate struct {
	// ID and Site are the node's, from the topology.
	ID   string
	Site string
	// Candidate and Priority are the node's election settings from the
	// topology: only candidates with priority > 0 may be promoted.
	Candidate bool
	Priority  int32
	// Alive says the node's agent publishes a status (its lease lives).
	Alive bool
	// Healthy says the agent's last check of its Redis succeeded (and the
	// Redis is not loading).
	Healthy bool
	// Replid and Offset are the node's replication ID and offset.
	Replid string
	Offset int64
}

// Reference is the replication history the new master must continue, as
// the most advanced known copy (normally a root relay) holds it.
type Reference struct {
	// Replid is the history's current replication ID and Offset the most
	// advanced known offset in it.
	Replid string
	Offset int64
	// Replid2 and SecondOffset are the previous replication ID and the
	// offset where Replid took over (0 if none): a node still on Replid2
	// at or below SecondOffset is on the same history, behind the switch.
	Replid2      string
	SecondOffset int64
}

// Has reports whether a node at replid/offset is on the reference's
// history.
func (r Reference) Has(replid string, offset int64) bool {
	return replid != "" && (replid == r.Replid || (replid == r.Replid2 && offset <= r.SecondOffset))
}

// Ranked is a candidate's place in the ranking.
type Ranked struct {
	// ID is the node's id.
	ID string `json:"id"`
	// Rank is 1 for the best eligible candidate, 2 for the next, ...; 0
	// for a node that may not be promoted.
	Rank int `json:"rank"`
	// Reason says why the node is eligible or not, for people.
	Reason string `json:"reason"`
	// LagBytes is how far it trails the reference offset.
	LagBytes int64 `json:"lag_bytes"`
}

// Eligible reports whether the node may be promoted.
func (r Ranked) Eligible() bool { return r.Rank > 0 }

// RankInput is everything the ranking depends on.
type RankInput struct {
	// Candidates are the cluster's nodes.
	Candidates []Candidate
	// Ref is the history to continue.
	Ref Reference
	// OldSite is the site of the master being replaced ("" if unknown).
	OldSite string
	// MaxLagBytes is the lag limit (0 means DefaultMaxLagBytes).
	MaxLagBytes int64
}

// Rank orders the nodes for promotion, a pure function of in. A node is
// eligible only if it is a candidate with priority > 0, its agent is alive
// and its Redis healthy, it is on the reference's replication history, and
// it trails the reference offset by at most MaxLagBytes. Eligible nodes
// are ordered by priority (higher first), then same site as the old master
// first, then id; their Rank is their place (1 = best). Ineligible nodes
// follow, by id, with Rank 0. Every entry says why.
func Rank(in RankInput) []Ranked {
	maxLag := in.MaxLagBytes
	if maxLag <= 0 {
		maxLag = DefaultMaxLagBytes
	}
	type entry struct {
		c Candidate
		r Ranked
	}
	es := make([]entry, 0, len(in.Candidates))
	for _, c := range in.Candidates {
		r := Ranked{ID: c.ID, LagBytes: max(in.Ref.Offset-c.Offset, 0)}
		switch {
		case !c.Candidate:
			r.Reason = "not a candidate"
		case c.Priority <= 0:
			r.Reason = "priority 0: never promoted"
		case !c.Alive:
			r.Reason = "agent down (no status in etcd)"
		case !c.Healthy:
			r.Reason = "redis unhealthy"
		case in.Ref.Replid == "":
			r.Reason = "no known replication history to continue (no relay or node status)"
		case !in.Ref.Has(c.Replid, c.Offset):
			r.Reason = fmt.Sprintf("other replication history: replid %q, want %q", c.Replid, in.Ref.Replid)
		case r.LagBytes > maxLag:
			r.Reason = fmt.Sprintf("lags %d bytes behind offset %d (max %d)", r.LagBytes, in.Ref.Offset, maxLag)
		default:
			r.Rank = 1 // placed below
		}
		es = append(es, entry{c, r})
	}
	slices.SortFunc(es, func(a, b entry) int {
		if a.r.Eligible() != b.r.Eligible() {
			if a.r.Eligible() {
				return -1
			}
			return 1
		}
		if a.r.Eligible() {
			if c := cmp.Compare(b.c.Priority, a.c.Priority); c != 0 {
				return c
			}
			aSame, bSame := in.OldSite != "" && a.c.Site == in.OldSite, in.OldSite != "" && b.c.Site == in.OldSite
			if aSame != bSame {
				if aSame {
					return -1
				}
				return 1
			}
		}
		return cmp.Compare(a.c.ID, b.c.ID)
	})
	out := make([]Ranked, len(es))
	for i, e := range es {
		r := e.r
		if r.Eligible() {
			r.Rank = i + 1
			r.Reason = fmt.Sprintf("eligible: priority %d, site %s, lag %d bytes", e.c.Priority, e.c.Site, r.LagBytes)
			if in.OldSite != "" && e.c.Site == in.OldSite {
				r.Reason += " (the old master's site)"
			}
		}
		out[i] = r
	}
	return out
}
