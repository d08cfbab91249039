package topology

import (
	"fmt"
	"maps"
	"net"
	"sort"
	"strconv"
)

// UpstreamMaster is the RelaySpec.Upstream of a relay that replicates
// straight from the master node.
const UpstreamMaster = "master"

// Topology is the whole declared shape of one cluster: its sites, relays and
// nodes, and which node is the master. Maps are keyed by name or id; the
// same id is repeated inside each spec. A Topology is a value: the Watcher
// hands out copies, so callers may keep and read them without locking.
type Topology struct {
	// Sites are the failure domains, by name.
	Sites map[string]Site
	// Relays are the relays, by id.
	Relays map[string]RelaySpec
	// Nodes are the Redis nodes, by id.
	Nodes map[string]NodeSpec
	// Master is the id of the master node; empty if none is designated.
	// Until the election lands, this key decides which node is master.
	Master string
}

// Site is a failure domain (a data centre or region).
type Site struct {
	// Name is the site's name (the last element of its key).
	Name string
	// Description is free text for people.
	Description string
}

// RelaySpec is one relay of the topology.
type RelaySpec struct {
	// ID is the relay's id (the last element of its key).
	ID string
	// Site is the site the relay runs in.
	Site string
	// GRPCAddr is where the relay's gRPC server listens (host:port); child
	// relays dial it. Required when another relay names this one as its
	// upstream.
	GRPCAddr string
	// RedisAddr is where the relay's Redis master side listens
	// (host:port); Redis replicas REPLICAOF it.
	RedisAddr string
	// Upstream is where the relay replicates from: UpstreamMaster, the id
	// of another relay, or redis://host:port of a Redis master outside the
	// topology (no credentials: those belong to the relay's own settings).
	Upstream string
}

// NodeSpec is one Redis node (a redis-server with its node agent).
type NodeSpec struct {
	// ID is the node's id (the last element of its key).
	ID string
	// Site is the site the node runs in.
	Site string
	// RedisAddr is the node's Redis address (host:port).
	RedisAddr string
	// Candidate says whether the node may be elected master (used by the
	// election; recorded only, for now).
	Candidate bool
	// Priority ranks candidates: higher wins among equally up-to-date
	// nodes; 0 means never.
	Priority int32
	// Follow is what the node replicates from while it is not the master:
	// the id of a relay (its site's relay, normally) or of another node
	// (a chained replica). Required unless the node is the master.
	Follow string
}

// New returns an empty topology.
func New() *Topology {
	return &Topology{
		Sites:  map[string]Site{},
		Relays: map[string]RelaySpec{},
		Nodes:  map[string]NodeSpec{},
	}
}

// Clone returns a deep copy of t.
func (t *Topology) Clone() *Topology {
	if t == nil {
		return nil
	}
	return &Topology{
		Sites:  maps.Clone(nonNil(t.Sites)),
		Relays: maps.Clone(nonNil(t.Relays)),
		Nodes:  maps.Clone(nonNil(t.Nodes)),
		Master: t.Master,
	}
}

func nonNil[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// Equal reports whether t and u declare the same topology.
func (t *Topology) Equal(u *Topology) bool {
	if t == nil || u == nil {
		return t == u
	}
	return t.Master == u.Master &&
		maps.Equal(t.Sites, u.Sites) &&
		maps.Equal(t.Relays, u.Relays) &&
		maps.Equal(t.Nodes, u.Nodes)
}

// RelayIDs returns the relay ids in sorted order.
func (t *Topology) RelayIDs() []string { return sortedKeys(t.Relays) }

// NodeIDs returns the node ids in sorted order.
func (t *Topology) NodeIDs() []string { return sortedKeys(t.Nodes) }

// SiteNames returns the site names in sorted order.
func (t *Topology) SiteNames() []string { return sortedKeys(t.Sites) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RelayUpstream resolves where relay id replicates from, as a URL:
// redis://<redis_addr> of the master node for UpstreamMaster,
// arbor://<grpc_addr> of the parent relay for a relay id, or the redis://
// URL the spec gives. t should be valid (see Validate).
func (t *Topology) RelayUpstream(id string) (string, error) {
	r, ok := t.Relays[id]
	if !ok {
		return "", fmt.Errorf("relay %q: not in the topology", id)
	}
	switch {
	case r.Upstream == UpstreamMaster:
		m, ok := t.Nodes[t.Master]
		if !ok {
			return "", fmt.Errorf("relay %q: upstream master: no master node designated", id)
		}
		return "redis://" + m.RedisAddr, nil
	case isRedisURL(r.Upstream):
		return r.Upstream, nil
	}
	p, ok := t.Relays[r.Upstream]
	if !ok {
		return "", fmt.Errorf("relay %q: upstream %q: no such relay", id, r.Upstream)
	}
	if p.GRPCAddr == "" {
		return "", fmt.Errorf("relay %q: upstream %q has no grpc_addr", id, r.Upstream)
	}
	return "arbor://" + p.GRPCAddr, nil
}

// NodeUpstream resolves what node id's Redis should replicate from: the
// host:port to REPLICAOF (the redis_addr of the relay or node it follows),
// or "" when the node is the master. t should be valid (see Validate).
func (t *Topology) NodeUpstream(id string) (string, error) {
	n, ok := t.Nodes[id]
	if !ok {
		return "", fmt.Errorf("node %q: not in the topology", id)
	}
	if t.Master == id {
		return "", nil
	}
	if r, ok := t.Relays[n.Follow]; ok {
		return r.RedisAddr, nil
	}
	if o, ok := t.Nodes[n.Follow]; ok {
		return o.RedisAddr, nil
	}
	if n.Follow == "" {
		return "", fmt.Errorf("node %q: follows nothing", id)
	}
	return "", fmt.Errorf("node %q: follow %q: no such relay or node", id, n.Follow)
}

// SnapshotSources returns the Redis addresses relay id may fetch a fresher
// snapshot from: the redis_addr of every node of its site but the master
// node (the relay's upstream covers the master), the nodes that follow the
// relay first, then by id. Nil when the relay is unknown. These are the
// operator's own nodes, unlike an address a replica announces.
func (t *Topology) SnapshotSources(id string) []string {
	r, ok := t.Relays[id]
	if !ok {
		return nil
	}
	var ids []string
	for nid, n := range t.Nodes {
		if n.Site == r.Site && nid != t.Master && n.RedisAddr != "" {
			ids = append(ids, nid)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		fi, fj := t.Nodes[ids[i]].Follow == id, t.Nodes[ids[j]].Follow == id
		if fi != fj {
			return fi
		}
		return ids[i] < ids[j]
	})
	var out []string
	for _, nid := range ids {
		out = append(out, t.Nodes[nid].RedisAddr)
	}
	return out
}

// hostPort checks a host:port address.
func hostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q: no host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("%q: bad port %q", addr, port)
	}
	return nil
}
