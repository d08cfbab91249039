package topology

import "strings"

// Key prefixes and names under /arbor/<cluster>/.
const (
	rootPrefix   = "/arbor/"
	topologyDir  = "topology/"
	statusDir    = "status/"
	sitesDir     = "sites/"
	relaysDir    = "relays/"
	nodesDir     = "nodes/"
	masterKeyRel = "master"
)

// Status kinds: the <kind> element of /arbor/<cluster>/status/<kind>/<id>.
const (
	KindNode  = "node"
	KindRelay = "relay"
)

// ClusterPrefix returns "/arbor/<cluster>/", under which everything of the
// cluster lives.
func ClusterPrefix(cluster string) string { return rootPrefix + cluster + "/" }

// Prefix returns "/arbor/<cluster>/topology/", the prefix of every topology
// key.
func Prefix(cluster string) string { return ClusterPrefix(cluster) + topologyDir }

// SiteKey returns the key of a site.
func SiteKey(cluster, site string) string { return Prefix(cluster) + sitesDir + site }

// RelayKey returns the key of a relay's spec.
func RelayKey(cluster, id string) string { return Prefix(cluster) + relaysDir + id }

// NodeKey returns the key of a node's spec.
func NodeKey(cluster, id string) string { return Prefix(cluster) + nodesDir + id }

// MasterKey returns the key naming the master node.
func MasterKey(cluster string) string { return Prefix(cluster) + masterKeyRel }

// StatusPrefix returns "/arbor/<cluster>/status/".
func StatusPrefix(cluster string) string { return ClusterPrefix(cluster) + statusDir }

// StatusKey returns the key of one component's live status.
func StatusKey(cluster, kind, id string) string { return StatusPrefix(cluster) + kind + "/" + id }

// splitStatusKey splits a key under StatusPrefix into kind and id.
func splitStatusKey(cluster, key string) (kind, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, StatusPrefix(cluster))
	if !ok {
		return "", "", false
	}
	kind, id, ok = strings.Cut(rest, "/")
	return kind, id, ok && kind != "" && id != "" && !strings.Contains(id, "/")
}
