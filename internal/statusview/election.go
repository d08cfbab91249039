package statusview

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/topology"
)

// DefaultHistory is how many history entries a view holds by default.
const DefaultHistory = 5

// Election is the election's part of the view: the master of the newest
// epoch, which relays follow it, the candidates' ranking if the master
// failed now, and the last failovers.
type Election struct {
	// Record is true when a master record exists (and parses); the fields
	// up to Offset come from it. Without one, the topology's master key
	// names the (bootstrap) master.
	Record    bool      `json:"record"`
	Epoch     int64     `json:"epoch"`
	Master    string    `json:"master,omitempty"`
	RedisAddr string    `json:"redis_addr,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	Replid    string    `json:"replid,omitempty"`
	Offset    int64     `json:"offset,omitempty"`
	// BadRecord says why the record in etcd does not parse (relays keep
	// the last good one meanwhile).
	BadRecord string `json:"bad_record,omitempty"`
	// Leader is the node holding the election (the oldest campaign key)
	// and LeaderEpoch its epoch; Live is true when that leader is the
	// record's master of the record's epoch.
	Leader      string `json:"leader,omitempty"`
	LeaderEpoch int64  `json:"leader_epoch,omitempty"`
	Live        bool   `json:"live"`
	// Relays says which epoch each live relay follows (or knows, for a
	// relay under another relay), stale ones flagged.
	Relays []RelayEpoch `json:"relays"`
	// Candidates is election.Rank over the nodes other than the master,
	// against the most advanced live root relay: who would be promoted if
	// the master failed now, and why the others would not.
	Candidates []Candidate `json:"candidates"`
	// History is the newest failovers, newest first.
	History []election.History `json:"history"`
}

// RelayEpoch is which master epoch one relay follows.
type RelayEpoch struct {
	ID string `json:"id"`
	// Root is true for a relay whose upstream is the master.
	Root bool `json:"root"`
	// Known is false while the relay has accepted no master record.
	Known bool   `json:"known"`
	Epoch int64  `json:"epoch"`
	Node  string `json:"node,omitempty"`
	// Stale says why the relay is not on the newest epoch; "" when it is.
	Stale string `json:"stale,omitempty"`
	// Refused is the relay's last refusal of a record, if any.
	Refused string `json:"refused,omitempty"`
}

// Candidate is one node's place in the ranking.
type Candidate struct {
	election.Ranked
	Site     string `json:"site"`
	Priority int32  `json:"priority"`
	Offset   int64  `json:"offset"`
}

// readElection fills v.Election (and v.Master from the record) from etcd
// and the relays' and nodes' statuses already in v.
func (v *Fabric) readElection(ctx context.Context, cli *clientv3.Client, top *topology.Topology, history int) error {
	st, err := election.ReadState(ctx, cli, v.Cluster)
	if err != nil {
		return err
	}
	hist, err := election.ReadHistory(ctx, cli, v.Cluster, history)
	if err != nil {
		return err
	}
	e := &Election{Leader: st.Leader, LeaderEpoch: st.LeaderEpoch, Live: st.Live(),
		Relays: []RelayEpoch{}, Candidates: []Candidate{}, History: hist}
	if st.BadRecord != nil {
		e.BadRecord = st.BadRecord.Error()
	}
	if m := st.Master; m != nil {
		e.Record, e.Epoch, e.Master, e.RedisAddr = true, m.Epoch, m.Node, m.RedisAddr
		e.Since, e.Reason, e.Replid, e.Offset = m.At, m.Reason, m.Replid, m.Offset
		// The elected master is the tree's root, whatever the topology's
		// (bootstrap) master key still says.
		v.Master = m.Node
		for i := range v.Nodes {
			v.Nodes[i].Master = v.Nodes[i].ID == m.Node
		}
	}
	for i := range v.Relays {
		r := &v.Relays[i]
		if !r.Live {
			continue
		}
		re := RelayEpoch{ID: r.ID, Root: r.Upstream == topology.UpstreamMaster, Known: r.MasterNode != "",
			Epoch: r.MasterEpoch, Node: r.MasterNode, Refused: r.MasterError}
		if e.Record {
			switch {
			case !re.Known:
				re.Stale = fmt.Sprintf("has not seen the record of epoch %d", e.Epoch)
			case re.Epoch < e.Epoch:
				re.Stale = fmt.Sprintf("on epoch %d, newest is %d", re.Epoch, e.Epoch)
			case re.Root && r.LiveUpstream != "redis://"+e.RedisAddr:
				re.Stale = fmt.Sprintf("replicates from %s, the master is %s", r.LiveUpstream, e.RedisAddr)
			case e.Replid != "" && r.Replid != "" && r.Replid != e.Replid:
				re.Stale = fmt.Sprintf("stream on replid %s, the master's is %s", r.Replid, e.Replid)
			}
		}
		r.StaleEpoch = re.Stale
		e.Relays = append(e.Relays, re)
	}
	e.Candidates = v.rank(top)
	v.Election = e
	return nil
}

// rank ranks the nodes other than the master with election.Rank against
// the most advanced live root relay (the history a new master continues).
func (v *Fabric) rank(top *topology.Topology) []Candidate {
	var ref election.Reference
	for _, r := range v.Relays {
		if r.Live && r.Upstream == topology.UpstreamMaster && r.StoredOffset >= ref.Offset && r.Replid != "" {
			ref = election.Reference{Replid: r.Replid, Offset: r.StoredOffset, Replid2: r.Replid2, SecondOffset: r.SecondOffset}
		}
	}
	oldSite := ""
	byID := map[string]Node{}
	var in []election.Candidate
	for _, n := range v.Nodes {
		byID[n.ID] = n
		if n.ID == v.Master {
			oldSite = n.Site
			continue
		}
		if !n.InTopology {
			continue
		}
		in = append(in, election.Candidate{ID: n.ID, Site: n.Site, Candidate: n.Candidate, Priority: n.Priority,
			Alive: n.Live, Healthy: n.Healthy, Replid: n.Replid, Offset: n.Offset})
	}
	out := []Candidate{}
	for _, r := range election.Rank(election.RankInput{Candidates: in, Ref: ref, OldSite: oldSite}) {
		n := byID[r.ID]
		if !n.Candidate {
			continue // read replicas: not worth a line each
		}
		out = append(out, Candidate{Ranked: r, Site: n.Site, Priority: n.Priority, Offset: n.Offset})
	}
	return out
}

// renderElection writes the election's lines.
func (v *Fabric) renderElection(w io.Writer) {
	e := v.Election
	if e == nil {
		return
	}
	switch {
	case e.Record:
		fmt.Fprintf(w, "election: epoch %d · master %s (%s) since %s", e.Epoch, e.Master, e.RedisAddr, e.Since.UTC().Format(time.DateTime+" MST"))
		if !v.Time.IsZero() && !e.Since.IsZero() {
			fmt.Fprintf(w, " (%s ago)", v.Time.Sub(e.Since).Truncate(time.Second))
		}
		if e.Reason != "" {
			fmt.Fprintf(w, " · %s", e.Reason)
		}
		switch {
		case e.Live:
			fmt.Fprintf(w, " · leader %s holds the election\n", e.Leader)
		case e.Leader != "":
			fmt.Fprintf(w, " · LEADER %s (epoch %d) differs from the record\n", e.Leader, e.LeaderEpoch)
		default:
			fmt.Fprintf(w, " · NO LEADER holds the election\n")
		}
	case e.BadRecord != "":
		fmt.Fprintf(w, "election: master record REFUSED (relays keep the last good one): %s\n", e.BadRecord)
	default:
		fmt.Fprintf(w, "election: no master record yet; the topology's master key names the master (%s)\n", orDash(v.Master))
	}
	if e.Record && e.BadRecord == "" {
		var ok, stale []string
		for _, r := range e.Relays {
			if r.Stale != "" {
				stale = append(stale, fmt.Sprintf("%s (%s)", r.ID, r.Stale))
			} else {
				ok = append(ok, r.ID)
			}
		}
		if len(ok) > 0 {
			fmt.Fprintf(w, "  relays on epoch %d: %s\n", e.Epoch, strings.Join(ok, ", "))
		}
		for _, s := range stale {
			fmt.Fprintf(w, "  STALE relay %s\n", s)
		}
	}
	for _, r := range e.Relays {
		if r.Refused != "" {
			fmt.Fprintf(w, "  relay %s refused: %s\n", r.ID, clip(r.Refused))
		}
	}
	if len(e.Candidates) > 0 {
		fmt.Fprintf(w, "  candidates if the master failed now:\n")
		for _, c := range e.Candidates {
			rank := "-"
			if c.Eligible() {
				rank = fmt.Sprintf("%d.", c.Rank)
			}
			fmt.Fprintf(w, "    %-3s %s [%s] p%d offset %d: %s\n", rank, c.ID, c.Site, c.Priority, c.Offset, c.Reason)
		}
		if !slices.ContainsFunc(e.Candidates, Candidate.Eligible) {
			fmt.Fprintf(w, "    NO ELIGIBLE CANDIDATE: a failure of the master now would leave the cluster without one\n")
		}
	}
	if len(e.History) > 0 {
		fmt.Fprintf(w, "  history (newest first):\n")
		for _, h := range e.History {
			from := h.Previous
			if from == "" {
				from = "-"
			}
			var total time.Duration
			var steps []string
			for _, s := range h.Steps {
				total += s.Took
				step := fmt.Sprintf("%s %s", s.Name, s.Took.Round(time.Millisecond))
				if s.Note != "" {
					step += " (" + clip(s.Note) + ")"
				}
				steps = append(steps, step)
			}
			fmt.Fprintf(w, "    epoch %d  %s  %s → %s  %s", h.Epoch, h.At.UTC().Format(time.DateTime), from, h.Node, h.Reason)
			if len(steps) > 0 {
				fmt.Fprintf(w, "  took %s: %s", total.Round(time.Millisecond), strings.Join(steps, ", "))
			}
			fmt.Fprintln(w)
		}
	}
}
