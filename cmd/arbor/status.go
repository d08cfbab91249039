package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

const (
	// statusReadTimeout bounds the reads of one status view.
	statusReadTimeout = 5 * time.Second
	// watchRedrawEvery is the least time between two redraws of --watch.
	watchRedrawEvery = 250 * time.Millisecond
)

func newStatusCmd() *cobra.Command {
	var asJSON, watch bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the fabric as a tree: master, relays, nodes, lag, health, refused edits",
		Long: `Show the whole fabric of a cluster from etcd: the master, the relays under
it (with their site and upstream), the nodes under the relay (or node) they
follow, each with its role, offset, lag behind the master (bytes and time) and
health as its agent last published it, and the problems of a refused topology
edit (the components keep running on the last good topology meanwhile).

--json prints the same as one JSON object (one per line with --watch), for
scripts; --watch follows the fabric live, redrawing on every change.`,
		Example: `  arbor status --etcd 127.0.0.1:2379 --cluster seed
  arbor status --etcd 127.0.0.1:2379 --cluster seed --json | jq '.nodes[] | {id, role, lag_bytes}'`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow live: redraw on every change until interrupted")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cli, err := ef.client()
		if err != nil {
			return err
		}
		defer cli.Close()
		out := cmd.OutOrStdout()
		show := func(ctx context.Context) error {
			v, err := readFabric(ctx, cli, ef.cluster)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(v)
			}
			if watch {
				fmt.Fprint(out, "\x1b[H\x1b[2J") // home, clear screen
			}
			v.render(out)
			return nil
		}
		if !watch {
			return show(cmd.Context())
		}
		return watchFabric(cmd.Context(), cli, ef.cluster, show, cmd.ErrOrStderr())
	}
	return cmd
}

// watchFabric calls show now and after every change under the cluster's
// prefix (at most every watchRedrawEvery), until ctx ends. Errors of show
// go to errw and are retried.
func watchFabric(ctx context.Context, cli *clientv3.Client, cluster string, show func(context.Context) error, errw io.Writer) error {
	ticker := time.NewTicker(watchRedrawEvery)
	defer ticker.Stop()
	dirty := true
	lastErr := ""
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, topology.ClusterPrefix(cluster), clientv3.WithPrefix())
	inner:
		for {
			if dirty {
				if err := show(ctx); err != nil && ctx.Err() == nil {
					if err.Error() != lastErr {
						fmt.Fprintln(errw, "arbor status:", err)
						lastErr = err.Error()
					}
				} else {
					dirty, lastErr = false, ""
				}
			}
			select {
			case <-ctx.Done():
				break inner
			case _, ok := <-wch:
				if !ok {
					break inner // watch ended: make a new one
				}
				dirty = true
				// Coalesce a burst of changes into one redraw.
				<-ticker.C
			case <-ticker.C:
			}
		}
		cancel()
		dirty = true
	}
	return nil
}

// fabricView is what `arbor status` shows, and its JSON form.
type fabricView struct {
	Cluster string    `json:"cluster"`
	Time    time.Time `json:"time"`
	// Revision is the etcd revision the topology was read at.
	Revision int64 `json:"revision"`
	// TopologyValid is false when the newest topology in etcd is refused;
	// Refused then names each problem.
	TopologyValid bool          `json:"topology_valid"`
	Refused       []problemView `json:"refused"`
	Master        string        `json:"master"`
	Sites         []siteView    `json:"sites"`
	Relays        []relayView   `json:"relays"`
	Nodes         []nodeView    `json:"nodes"`
	// StatusProblems lists status values that could not be read.
	StatusProblems []problemView `json:"status_problems,omitempty"`
}

type problemView struct {
	Key     string `json:"key"`
	Problem string `json:"problem"`
}

type siteView struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

type relayView struct {
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
}

type nodeView struct {
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
}

// readFabric reads the topology and the statuses of a cluster.
func readFabric(ctx context.Context, cli *clientv3.Client, cluster string) (*fabricView, error) {
	ctx, cancel := context.WithTimeout(ctx, statusReadTimeout)
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
	v := &fabricView{
		Cluster:       cluster,
		Time:          time.Now().UTC().Truncate(time.Millisecond),
		Revision:      rev,
		TopologyValid: verr == nil,
		Refused:       []problemView{},
		Master:        top.Master,
		Sites:         []siteView{},
		Relays:        []relayView{},
		Nodes:         []nodeView{},
	}
	if verr != nil {
		for _, p := range verr.Problems {
			v.Refused = append(v.Refused, problemView{Key: p.Key, Problem: p.Msg})
		}
	}
	for _, p := range sts.Problems {
		v.StatusProblems = append(v.StatusProblems, problemView{Key: p.Key, Problem: p.Msg})
	}
	for _, name := range top.SiteNames() {
		v.Sites = append(v.Sites, siteView{Name: name, Description: top.Sites[name].Description})
	}
	for _, id := range union(top.RelayIDs(), keys(sts.Relays)) {
		spec, in := top.Relays[id]
		r := relayView{ID: id, Site: spec.Site, Upstream: spec.Upstream, GRPCAddr: spec.GRPCAddr, RedisAddr: spec.RedisAddr, InTopology: in}
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
		}
		v.Relays = append(v.Relays, r)
	}
	for _, id := range union(top.NodeIDs(), keys(sts.Nodes)) {
		spec, in := top.Nodes[id]
		n := nodeView{ID: id, Site: spec.Site, RedisAddr: spec.RedisAddr, Follow: spec.Follow,
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
		}
		v.Nodes = append(v.Nodes, n)
	}
	return v, nil
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

// render writes the fabric as a tree: the master at the root, relays under
// their upstream, nodes under what they follow.
func (v *fabricView) render(w io.Writer) {
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
	relays := map[string]*relayView{}
	nodes := map[string]*nodeView{}
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
				fmt.Fprintf(w, "%s%s%s\n", prefix, branch, relays[kid].line())
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
func (v *fabricView) renderSites(w io.Writer) {
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
func siteKey(k string, relays map[string]*relayView, nodes map[string]*nodeView) string {
	if k[:2] == "r:" {
		return "0" + relays[k[2:]].Site + "\x00" + k[2:]
	}
	return "1" + nodes[k[2:]].Site + "\x00" + k[2:]
}

func (r *relayView) line() string {
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
	if r.LastError != "" {
		fmt.Fprintf(&b, "  ! %s", clip(r.LastError))
	}
	return b.String()
}

func (n *nodeView) line() string {
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
