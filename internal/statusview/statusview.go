// Package statusview is the view of a whole fabric that `arbor status`
// shows: the topology in etcd joined with every component's live status,
// read at once (Read), as JSON (the Fabric type's encoding) or rendered as a
// tree (Render): the master at the root, relays under their upstream, nodes
// under what they follow, then a line per site. `arbor demo` renders it too.
package statusview

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// ReadTimeout bounds the reads of one view.
const ReadTimeout = 5 * time.Second

// Fabric is what `arbor status` shows, and its JSON form.
type Fabric struct {
	Cluster string    `json:"cluster"`
	Time    time.Time `json:"time"`
	// Revision is the etcd revision the topology was read at.
	Revision int64 `json:"revision"`
	// TopologyValid is false when the newest topology in etcd is refused;
	// Refused then names each problem.
	TopologyValid bool      `json:"topology_valid"`
	Refused       []Problem `json:"refused"`
	Master        string    `json:"master"`
	Sites         []Site    `json:"sites"`
	Relays        []Relay   `json:"relays"`
	Nodes         []Node    `json:"nodes"`
	// StatusProblems lists status values that could not be read.
	StatusProblems []Problem `json:"status_problems,omitempty"`
	// Election is the master of the newest epoch, which relays follow
	// it, the candidates and the last failovers.
	Election *Election `json:"election"`
}

// Problem is one problem of a refused topology edit or an unreadable
// status value, with the key it is about.
type Problem struct {
	Key     string `json:"key"`
	Problem string `json:"problem"`
}

// Site is one site of the topology.
type Site struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Acked is true when a live relay reports the site's acks; then
	// AckedOffset is the furthest offset acknowledged in the site and
	// BytesAtRisk what would be lost if the site vanished now (the newest
	// master offset minus the furthest offset acked elsewhere).
	Acked       bool  `json:"acked"`
	AckedOffset int64 `json:"acked_offset"`
	BytesAtRisk int64 `json:"bytes_at_risk"`
}

// Link is one downstream link of a relay, as the relay reports it: to a
// child relay or to a Redis replica (named by its node id or the address it
// announces, never by its connection's source port).
type Link struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // "relay" or "redis"
	// Node is the topology's node whose redis_addr is the Redis replica's
	// name (the address it announces); "" if none is.
	Node        string `json:"node,omitempty"`
	Addr        string `json:"addr,omitempty"`
	Site        string `json:"site,omitempty"`
	AckedOffset int64  `json:"acked_offset"`
	LagBytes    int64  `json:"lag_bytes"`
	LagMs       int64  `json:"lag_ms"`
	State       string `json:"state,omitempty"`
	Compression string `json:"compression,omitempty"`
	// RawBytes and WireBytes are the bytes sent on the link before and
	// after compression.
	RawBytes  uint64 `json:"raw_bytes"`
	WireBytes uint64 `json:"wire_bytes"`
}

// Relay is one relay: its spec in the topology and its live status.
type Relay struct {
	ID         string `json:"id"`
	Site       string `json:"site"`
	Upstream   string `json:"upstream"`
	GRPCAddr   string `json:"grpc_addr,omitempty"`
	RedisAddr  string `json:"redis_addr,omitempty"`
	InTopology bool   `json:"in_topology"`
	// Live is true when the relay publishes a status; the fields below
	// come from it.
	Live         bool   `json:"live"`
	Link         string `json:"link,omitempty"`
	Replid       string `json:"replid,omitempty"`
	MasterOffset int64  `json:"master_offset"`
	StoredOffset int64  `json:"stored_offset"`
	LagBytes     int64  `json:"lag_bytes"`
	Children     int    `json:"children"`
	LastError    string `json:"last_error,omitempty"`
	// Replid2 and SecondOffset are the previous replication ID and the
	// last offset of its history the relay serves.
	Replid2      string `json:"replid2,omitempty"`
	SecondOffset int64  `json:"second_offset,omitempty"`
	// LiveUpstream is the upstream the relay follows now (a URL).
	LiveUpstream string `json:"live_upstream,omitempty"`
	// MasterEpoch and MasterNode are the master record the relay accepted
	// (MasterNode "" if none); MasterError its last refusal of one.
	MasterEpoch int64  `json:"master_epoch"`
	MasterNode  string `json:"master_node,omitempty"`
	MasterError string `json:"master_error,omitempty"`
	// StaleEpoch says why the relay is not on the newest epoch; "" if it
	// is (or there is no master record).
	StaleEpoch string `json:"stale_epoch,omitempty"`
	// AckedOffset is the offset the relay last acknowledged upstream.
	AckedOffset int64 `json:"acked_offset"`
	// Links are the relay's downstream links, one per child.
	Links []Link `json:"links,omitempty"`
	// SiteAcks is, per site, how far the relay's subtree acknowledged.
	SiteAcks []SiteAck `json:"site_acks,omitempty"`
	// RawBytes and WireBytes are the bytes sent downstream before and
	// after compression; UpstreamRawBytes and UpstreamWireBytes the same
	// received from a parent relay.
	RawBytes          uint64 `json:"raw_bytes"`
	WireBytes         uint64 `json:"wire_bytes"`
	UpstreamRawBytes  uint64 `json:"upstream_raw_bytes"`
	UpstreamWireBytes uint64 `json:"upstream_wire_bytes"`
	// SnapshotBytes is the size of the RDB snapshot the relay serves full
	// syncs from (0 if none); FullSyncsServed counts them.
	SnapshotBytes   int64  `json:"snapshot_bytes"`
	FullSyncsServed uint64 `json:"full_syncs_served"`
	// TopologyError says why the relay refused the newest topology edit.
	TopologyError string `json:"topology_error,omitempty"`
	// EffectiveUpstream is the parent the relay follows now ("master" or
	// a relay id); it differs from Upstream while Move is set.
	EffectiveUpstream string `json:"effective_upstream,omitempty"`
	// Move is the relay's move away from its declared parent, if any.
	Move *Move `json:"move,omitempty"`
	// MovedAway are the children (relays and nodes) declared under this
	// relay that follow another parent now, and why.
	MovedAway []MovedChild `json:"moved_away,omitempty"`
	// AckingMaster is true for a live relay that follows the master
	// itself and streams: the replicas the master's min-replicas-to-write
	// counts.
	AckingMaster bool `json:"acking_master"`
}

// Move is a child's move away from its declared parent.
type Move struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// MovedChild is a child that moved away from a relay.
type MovedChild struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // "relay" or "node"
	Move
}

func moveOf(m *arborv1.ParentMove) *Move {
	if m == nil {
		return nil
	}
	return &Move{From: m.GetFrom(), To: m.GetTo(), Reason: m.GetReason(), At: time.UnixMilli(m.GetAtUnixMs()).UTC()}
}

// SiteAck is how far one site's replicas in a relay's subtree acknowledged.
type SiteAck struct {
	Site        string `json:"site"`
	AckedOffset int64  `json:"acked_offset"`
	BytesAtRisk int64  `json:"bytes_at_risk"`
}

// Node is one node: its spec in the topology and its agent's live status.
type Node struct {
	ID         string `json:"id"`
	Site       string `json:"site"`
	RedisAddr  string `json:"redis_addr,omitempty"`
	Follow     string `json:"follow,omitempty"`
	Candidate  bool   `json:"candidate"`
	Priority   int32  `json:"priority"`
	Master     bool   `json:"master"` // the designated master
	InTopology bool   `json:"in_topology"`
	// Live is true when the node's agent publishes a status; the fields
	// below come from it.
	Live      bool   `json:"live"`
	Role      string `json:"role,omitempty"`
	Replid    string `json:"replid,omitempty"`
	Offset    int64  `json:"offset"`
	Link      string `json:"link,omitempty"`
	LagBytes  int64  `json:"lag_bytes"`
	LagMs     int64  `json:"lag_ms"`
	Healthy   bool   `json:"healthy"`
	LastError string `json:"last_error,omitempty"`
	// EffectiveFollow is the relay (or "master") the node's Redis follows
	// now; it differs from Follow while Move is set.
	EffectiveFollow string `json:"effective_follow,omitempty"`
	// Move is the node's move away from its declared relay, if any.
	Move *Move `json:"move,omitempty"`
}

// Read reads the topology, the statuses and the election of a cluster,
// with the DefaultHistory newest history entries (bounded by ReadTimeout).
func Read(ctx context.Context, cli *clientv3.Client, cluster string) (*Fabric, error) {
	return ReadHistory(ctx, cli, cluster, DefaultHistory)
}

// ReadHistory is Read with the history newest history entries (all if
// history ≤ 0).
func ReadHistory(ctx context.Context, cli *clientv3.Client, cluster string, history int) (*Fabric, error) {
	ctx, cancel := context.WithTimeout(ctx, ReadTimeout)
	defer cancel()
	top, rev, err := topology.Load(ctx, cli, cluster)
	var verr *topology.ValidationError
	if err != nil && !errors.As(err, &verr) {
		return nil, err
	}
	sts, err := topology.ReadStatus(ctx, cli, cluster)
	if err != nil {
		return nil, err
	}
	v := &Fabric{
		Cluster:       cluster,
		Time:          time.Now().UTC().Truncate(time.Millisecond),
		Revision:      rev,
		TopologyValid: verr == nil,
		Refused:       []Problem{},
		Master:        top.Master,
		Sites:         []Site{},
		Relays:        []Relay{},
		Nodes:         []Node{},
	}
	if verr != nil {
		for _, p := range verr.Problems {
			v.Refused = append(v.Refused, Problem{Key: p.Key, Problem: p.Msg})
		}
	}
	for _, p := range sts.Problems {
		v.StatusProblems = append(v.StatusProblems, Problem{Key: p.Key, Problem: p.Msg})
	}
	for _, name := range top.SiteNames() {
		v.Sites = append(v.Sites, Site{Name: name, Description: top.Sites[name].Description})
	}
	for _, id := range union(top.RelayIDs(), keys(sts.Relays)) {
		spec, in := top.Relays[id]
		r := Relay{ID: id, Site: spec.Site, Upstream: spec.Upstream, GRPCAddr: spec.GRPCAddr, RedisAddr: spec.RedisAddr, InTopology: in}
		if st, ok := sts.Relays[id]; ok {
			r.Live = true
			if r.Site == "" {
				r.Site = st.GetSite()
			}
			if r.Upstream == "" {
				r.Upstream = st.GetUpstream()
			}
			r.Link = linkName(st.GetLinkState())
			r.Replid = st.GetReplid()
			r.MasterOffset, r.StoredOffset = st.GetMasterOffset(), st.GetStoredOffset()
			r.LagBytes = max(0, r.MasterOffset-r.StoredOffset)
			r.Children = len(st.GetChildren())
			r.LastError = st.GetLastError()
			r.Replid2, r.SecondOffset = st.GetReplid2(), st.GetSecondOffset()
			r.LiveUpstream = st.GetUpstream()
			r.MasterEpoch, r.MasterNode, r.MasterError = st.GetMasterEpoch(), st.GetMasterNode(), st.GetMasterError()
			r.AckedOffset = st.GetAckedOffset()
			r.RawBytes, r.WireBytes = st.GetCompression().GetRawBytes(), st.GetCompression().GetWireBytes()
			r.UpstreamRawBytes, r.UpstreamWireBytes = st.GetUpstreamBytes().GetRawBytes(), st.GetUpstreamBytes().GetWireBytes()
			r.SnapshotBytes = st.GetSnapshot().GetSizeBytes()
			r.FullSyncsServed = st.GetCounters().GetFullSyncsServed()
			r.TopologyError = st.GetTopologyError()
			r.EffectiveUpstream, r.Move = st.GetEffectiveUpstream(), moveOf(st.GetMove())
			follows := r.EffectiveUpstream
			if follows == "" {
				follows = r.Upstream
			}
			r.AckingMaster = follows == topology.UpstreamMaster && st.GetLinkState() == arborv1.LinkState_LINK_STATE_STREAMING
			for _, c := range st.GetChildren() {
				r.Links = append(r.Links, linkOf(c))
			}
			for _, a := range st.GetSiteAcks() {
				r.SiteAcks = append(r.SiteAcks, SiteAck{Site: a.GetSite(), AckedOffset: a.GetAckedOffset(), BytesAtRisk: a.GetBytesAtRisk()})
			}
		}
		v.Relays = append(v.Relays, r)
	}
	v.siteAcks()
	v.linkNodes(top)
	for _, id := range union(top.NodeIDs(), keys(sts.Nodes)) {
		spec, in := top.Nodes[id]
		n := Node{ID: id, Site: spec.Site, RedisAddr: spec.RedisAddr, Follow: spec.Follow,
			Candidate: spec.Candidate, Priority: spec.Priority, Master: in && top.Master == id, InTopology: in}
		if st, ok := sts.Nodes[id]; ok {
			n.Live = true
			if n.Site == "" {
				n.Site = st.GetSite()
			}
			switch st.GetRole() {
			case arborv1.NodeRole_NODE_ROLE_MASTER:
				n.Role = "master"
			case arborv1.NodeRole_NODE_ROLE_REPLICA:
				n.Role = "replica"
			}
			n.Replid, n.Offset = st.GetReplid(), st.GetOffset()
			n.Link = linkName(st.GetLinkState())
			n.LagBytes, n.LagMs = st.GetLagBytes(), st.GetLagMs()
			n.Healthy = st.GetHealthy()
			n.LastError = st.GetLastError()
			n.EffectiveFollow, n.Move = st.GetEffectiveFollow(), moveOf(st.GetMove())
		}
		v.Nodes = append(v.Nodes, n)
	}
	v.movedAway()
	if err := v.readElection(ctx, cli, top, history); err != nil {
		return nil, err
	}
	return v, nil
}

// movedAway lists, under each relay, the children that moved away from it.
func (v *Fabric) movedAway() {
	byID := map[string]*Relay{}
	for i := range v.Relays {
		byID[v.Relays[i].ID] = &v.Relays[i]
	}
	for _, c := range v.Relays {
		if p, ok := byID[c.Move.from()]; ok {
			p.MovedAway = append(p.MovedAway, MovedChild{ID: c.ID, Kind: "relay", Move: *c.Move})
		}
	}
	for _, n := range v.Nodes {
		if p, ok := byID[n.Move.from()]; ok {
			p.MovedAway = append(p.MovedAway, MovedChild{ID: n.ID, Kind: "node", Move: *n.Move})
		}
	}
}

func (m *Move) from() string {
	if m == nil {
		return ""
	}
	return m.From
}

// linkOf is the view of one child link of a relay.
func linkOf(c *arborv1.ChildStatus) Link {
	kind := ""
	switch c.GetKind() {
	case arborv1.ChildKind_CHILD_KIND_RELAY:
		kind = "relay"
	case arborv1.ChildKind_CHILD_KIND_REDIS:
		kind = "redis"
	}
	return Link{ID: c.GetId(), Kind: kind, Addr: c.GetAddr(), Site: c.GetSite(), AckedOffset: c.GetAckedOffset(),
		LagBytes: c.GetLagBytes(), LagMs: c.GetLagMs(), State: linkName(c.GetState()), Compression: c.GetCompression(),
		RawBytes: c.GetBytes().GetRawBytes(), WireBytes: c.GetBytes().GetWireBytes()}
}

// linkNodes names the node behind each Redis replica link: the relay knows
// a replica only by the address it announces, the topology knows which
// node has it.
func (v *Fabric) linkNodes(top *topology.Topology) {
	byAddr := map[string]string{}
	for _, id := range top.NodeIDs() {
		if a := top.Nodes[id].RedisAddr; a != "" {
			byAddr[a] = id
		}
	}
	for i := range v.Relays {
		for j := range v.Relays[i].Links {
			if l := &v.Relays[i].Links[j]; l.Kind == "redis" {
				l.Node = byAddr[l.ID]
			}
		}
	}
}

// siteAcks fills each site's acked offset and bytes at risk from the live
// relays' site acks, as a relay computes them for its subtree but over the
// whole fabric: a site's acked offset is the furthest any relay saw acked
// in it, and what the site's loss would cost is the newest master offset
// minus the furthest offset acked in any other site.
func (v *Fabric) siteAcks() {
	var master int64
	best := map[string]int64{}
	for _, r := range v.Relays {
		if !r.Live {
			continue
		}
		master = max(master, r.MasterOffset)
		for _, a := range r.SiteAcks {
			if b, ok := best[a.Site]; !ok || a.AckedOffset > b {
				best[a.Site] = a.AckedOffset
			}
		}
	}
	for i := range v.Sites {
		s := &v.Sites[i]
		acked, ok := best[s.Name]
		if !ok {
			continue
		}
		var elsewhere int64
		for site, b := range best {
			if site != s.Name {
				elsewhere = max(elsewhere, b)
			}
		}
		s.Acked, s.AckedOffset, s.BytesAtRisk = true, acked, max(0, master-elsewhere)
	}
}

func linkName(s arborv1.LinkState) string {
	if s == arborv1.LinkState_LINK_STATE_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "LINK_STATE_"))
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// union returns the sorted union of two id lists.
func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string(nil), a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// Render writes the fabric as a tree: the master at the root, relays under
// their upstream, nodes under what they follow.
func (v *Fabric) Render(w io.Writer) {
	fmt.Fprintf(w, "cluster %s · etcd revision %d · %s\n", v.Cluster, v.Revision, v.Time.Format(time.DateTime+" MST"))
	if !v.TopologyValid {
		fmt.Fprintf(w, "REFUSED: the newest topology in etcd is invalid; components keep the last good one:\n")
		for _, p := range v.Refused {
			key := p.Key
			if key == "" {
				key = "(topology)"
			}
			fmt.Fprintf(w, "  ! %s: %s\n", key, p.Problem)
		}
	}
	v.renderElection(w)
	var acking []string
	for _, r := range v.Relays {
		if r.AckingMaster {
			acking = append(acking, r.ID)
		}
	}
	fmt.Fprintf(w, "acking the master: %s\n", orDash(strings.Join(acking, ", ")))
	relays := map[string]*Relay{}
	nodes := map[string]*Node{}
	children := map[string][]string{} // parent -> relay ids then node ids; "" is the root
	for i := range v.Relays {
		r := &v.Relays[i]
		relays[r.ID] = r
	}
	for i := range v.Nodes {
		n := &v.Nodes[i]
		nodes[n.ID] = n
	}
	// The root: the master node. Relays following "master" or a redis://
	// address hang under it.
	for _, r := range v.Relays {
		parent := r.Upstream
		if parent == topology.UpstreamMaster || strings.HasPrefix(parent, "redis://") {
			parent = "\x00master"
		}
		if !r.InTopology {
			parent = "\x00orphan"
		}
		children[parent] = append(children[parent], "r:"+r.ID)
	}
	for _, n := range v.Nodes {
		switch {
		case !n.InTopology:
			children["\x00orphan"] = append(children["\x00orphan"], "n:"+n.ID)
		case n.Master:
			// The root itself.
		case n.Follow == v.Master && v.Master != "":
			children["\x00master"] = append(children["\x00master"], "n:"+n.ID)
		default:
			children[n.Follow] = append(children[n.Follow], "n:"+n.ID)
		}
	}
	for _, c := range children {
		sort.SliceStable(c, func(i, j int) bool { return siteKey(c[i], relays, nodes) < siteKey(c[j], relays, nodes) })
	}

	shown := map[string]bool{}
	var walk func(id, prefix string)
	walk = func(id, prefix string) {
		kids := children[id]
		for i, k := range kids {
			last := i == len(kids)-1
			branch, next := "├─ ", "│  "
			if last {
				branch, next = "└─ ", "   "
			}
			if shown[k] {
				continue
			}
			shown[k] = true
			kind, kid := k[:2], k[2:]
			if kind == "r:" {
				r := relays[kid]
				fmt.Fprintf(w, "%s%s%s\n", prefix, branch, r.line())
				if r.Live && len(r.Links) > 0 {
					var ids []string
					for _, l := range r.Links {
						id := l.ID
						if l.Node != "" {
							id = l.Node
						}
						ids = append(ids, id)
					}
					fmt.Fprintf(w, "%s%s  live children: %s\n", prefix, next, strings.Join(ids, ", "))
				}
				for _, m := range r.MovedAway {
					fmt.Fprintf(w, "%s%s  moved away: %s %s → %s (%s)\n", prefix, next, m.Kind, m.ID, m.To, clip(m.Reason))
				}
			} else {
				fmt.Fprintf(w, "%s%s%s\n", prefix, branch, nodes[kid].line())
			}
			walk(kid, prefix+next)
		}
	}
	if m, ok := nodes[v.Master]; ok && v.Master != "" {
		fmt.Fprintf(w, "%s\n", m.line())
		shown["n:"+m.ID] = true
		walk(m.ID, "")
	} else {
		fmt.Fprintf(w, "(no master designated)\n")
	}
	walk("\x00master", "")

	// Whatever the walk did not reach: cycles, dangling references, and
	// components with a status but no place in the topology.
	var rest []string
	for _, r := range v.Relays {
		if !shown["r:"+r.ID] {
			rest = append(rest, relays[r.ID].line())
		}
	}
	for _, n := range v.Nodes {
		if !shown["n:"+n.ID] && !(n.Master && n.ID == v.Master) {
			rest = append(rest, nodes[n.ID].line())
		}
	}
	if len(rest) > 0 {
		fmt.Fprintf(w, "not in the tree (unknown to the topology, or in a refused part of it):\n")
		for _, l := range rest {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	v.renderSites(w)
	for _, p := range v.StatusProblems {
		fmt.Fprintf(w, "status %s: %s\n", p.Key, p.Problem)
	}
}

// renderSites writes one line per site: its relays and how many of its
// nodes are live and healthy.
func (v *Fabric) renderSites(w io.Writer) {
	for _, s := range v.Sites {
		var relays []string
		for _, r := range v.Relays {
			if r.Site == s.Name {
				relays = append(relays, r.ID)
			}
		}
		nodes, live, healthy := 0, 0, 0
		for _, n := range v.Nodes {
			if n.Site != s.Name {
				continue
			}
			nodes++
			if n.Live {
				live++
			}
			if n.Live && n.Healthy {
				healthy++
			}
		}
		fmt.Fprintf(w, "site %s: relays %s · nodes %d (%d live, %d healthy)\n", s.Name, orDash(strings.Join(relays, ", ")), nodes, live, healthy)
	}
}

// siteKey sorts children: relays first, then by site, then by id.
func siteKey(k string, relays map[string]*Relay, nodes map[string]*Node) string {
	if k[:2] == "r:" {
		return "0" + relays[k[2:]].Site + "\x00" + k[2:]
	}
	return "1" + nodes[k[2:]].Site + "\x00" + k[2:]
}

func (r *Relay) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "relay %s [%s] ← %s", r.ID, r.Site, r.Upstream)
	if !r.InTopology {
		b.WriteString("  (not in the topology)")
	}
	if !r.Live {
		b.WriteString("  no status (down?)")
		return b.String()
	}
	fmt.Fprintf(&b, "  link %s  stored %d  lag %s  children %d", orDash(r.Link), r.StoredOffset, bytesStr(r.LagBytes), r.Children)
	if r.MasterNode != "" {
		fmt.Fprintf(&b, "  epoch %d", r.MasterEpoch)
	}
	if r.StaleEpoch != "" {
		b.WriteString("  STALE")
	}
	if r.AckingMaster {
		b.WriteString("  acking master")
	}
	if r.Move != nil {
		fmt.Fprintf(&b, "  MOVED to %s", r.Move.To)
	}
	if r.LastError != "" {
		fmt.Fprintf(&b, "  ! %s", clip(r.LastError))
	}
	return b.String()
}

func (n *Node) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s [%s]", n.ID, n.Site)
	if n.Master {
		b.WriteString(" MASTER")
	}
	if n.Candidate {
		fmt.Fprintf(&b, " candidate p%d", n.Priority)
	}
	if !n.InTopology {
		b.WriteString("  (not in the topology)")
	}
	if !n.Live {
		b.WriteString("  no status (agent down?)")
		return b.String()
	}
	health := "healthy"
	if !n.Healthy {
		health = "UNHEALTHY"
	}
	fmt.Fprintf(&b, "  %s  offset %d", orDash(n.Role), n.Offset)
	if n.Role == "replica" {
		fmt.Fprintf(&b, "  link %s  lag %s / %s", orDash(n.Link), bytesStr(n.LagBytes), (time.Duration(n.LagMs) * time.Millisecond).String())
	}
	fmt.Fprintf(&b, "  %s", health)
	if n.Move != nil {
		fmt.Fprintf(&b, "  MOVED to %s", n.Move.To)
	}
	if n.LastError != "" {
		fmt.Fprintf(&b, "  ! %s", clip(n.LastError))
	}
	return b.String()
}

// clip shortens an error for a tree line (--json has it whole).
func clip(s string) string {
	const max = 100
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
