package topology

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Problem is one reason a topology is refused.
type Problem struct {
	// Key is the topology key at fault, relative to the topology prefix
	// ("relays/relay-c", "master"); empty for a problem of the whole.
	Key string
	// Msg says what is wrong.
	Msg string
}

func (p Problem) String() string {
	if p.Key == "" {
		return p.Msg
	}
	return p.Key + ": " + p.Msg
}

// ValidationError lists every problem found in a topology. Load, Parse,
// Validate and the Watcher return it (as error) for a refused topology.
type ValidationError struct {
	// Problems are sorted by key.
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	if len(parts) == 1 {
		return "invalid topology: " + parts[0]
	}
	return fmt.Sprintf("invalid topology (%d problems): %s", len(parts), strings.Join(parts, "; "))
}

// problems collects Problems.
type problems []Problem

func (ps *problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil or a *ValidationError with the problems sorted.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	sorted := append([]Problem(nil), ps...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })
	return &ValidationError{Problems: sorted}
}

// idPattern is what site names and relay and node ids may look like: they
// are etcd key elements, Redis-free text and command-line words.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Parse decodes raw topology values, keyed by their key relative to the
// topology prefix ("sites/A", "relays/relay-a1", "nodes/A-S-1", "master"),
// and validates the result. On error (a *ValidationError naming every
// problem: unparsable or unknown keys and values, and everything Validate
// finds) it still returns the topology as far as it decoded.
func Parse(raw map[string][]byte) (*Topology, error) {
	t := New()
	var ps problems
	for _, key := range sortedKeys(raw) {
		b := raw[key]
		dir, name, found := strings.Cut(key, "/")
		if !found {
			if key == masterKeyRel {
				node, err := decodeMaster(b)
				if err != nil {
					ps.add(key, "%v", err)
					continue
				}
				t.Master = node
				continue
			}
			ps.add(key, "unknown key (want sites/<name>, relays/<id>, nodes/<id> or master)")
			continue
		}
		if !idPattern.MatchString(name) {
			ps.add(key, "bad name %q (letters, digits, '.', '_', '-'; up to 128)", name)
			continue
		}
		switch dir + "/" {
		case sitesDir:
			s, err := decodeSite(name, b)
			if err != nil {
				ps.add(key, "%v", err)
				continue
			}
			t.Sites[name] = s
		case relaysDir:
			r, err := decodeRelay(name, b)
			if err != nil {
				ps.add(key, "%v", err)
				continue
			}
			t.Relays[name] = r
		case nodesDir:
			n, err := decodeNode(name, b)
			if err != nil {
				ps.add(key, "%v", err)
				continue
			}
			t.Nodes[name] = n
		default:
			ps.add(key, "unknown key (want sites/<name>, relays/<id>, nodes/<id> or master)")
		}
	}
	if len(ps) > 0 {
		// A value that did not decode is missing from t, so checking
		// references would only add noise ("no such relay").
		return t, ps.err()
	}
	return t, Validate(t)
}

// Validate checks a topology and returns a *ValidationError naming each
// problem, or nil. The rules:
//
//   - names and ids are non-empty words (idPattern); "master" is not a
//     relay or node id; no id is both a relay and a node;
//   - every relay and node names a declared site, and has a valid
//     redis_addr (host:port); no address is used twice;
//   - a relay's upstream is "master" (which needs a master node), the id
//     of another relay (which needs a grpc_addr), or redis://host:port
//     without credentials;
//   - relay upstreams form no cycle;
//   - one root: the relays that do not follow another relay are the roots
//     of the tree (relay-a1 and relay-a2 in the seed, both following the
//     master, are two relays but one root: the master). All of them must
//     replicate from the same Redis master: the master node, or a single
//     redis:// address. Two different origins would be two trees with
//     different replication IDs in one cluster, which the fabric (one
//     offset space) cannot hold;
//   - the master key names a declared node;
//   - a node other than the master follows a relay or another node (a
//     chained replica), never itself, and node chains form no cycle;
//   - a node's priority is not negative, and a candidate's is above 0
//     (0 means never elected).
func Validate(t *Topology) error {
	var ps problems
	ids := map[string]string{} // id -> key, to find ids used twice
	for _, name := range t.SiteNames() {
		s := t.Sites[name]
		key := sitesDir + name
		if !idPattern.MatchString(name) {
			ps.add(key, "bad name %q", name)
		}
		if s.Name != name {
			ps.add(key, "name %q differs from the key's %q", s.Name, name)
		}
	}

	addrs := map[string]string{} // address -> key of its first user
	useAddr := func(key, field, addr string) {
		if err := hostPort(addr); err != nil {
			ps.add(key, "%s %q: want host:port", field, addr)
			return
		}
		if other, dup := addrs[addr]; dup {
			ps.add(key, "%s %s is also used by %s", field, addr, other)
			return
		}
		addrs[addr] = key
	}
	checkSite := func(key, site string) {
		switch {
		case site == "":
			ps.add(key, "site: required")
		case !hasKey(t.Sites, site):
			ps.add(key, "site %q: no such site (declare sites/%s)", site, site)
		}
	}

	// Relays.
	for _, id := range t.RelayIDs() {
		r := t.Relays[id]
		key := relaysDir + id
		checkName(&ps, key, id, r.ID)
		ids[id] = key
		checkSite(key, r.Site)
		if r.RedisAddr == "" {
			ps.add(key, "redis_addr: required")
		} else {
			useAddr(key, "redis_addr", r.RedisAddr)
		}
		if r.GRPCAddr != "" {
			useAddr(key, "grpc_addr", r.GRPCAddr)
		}
		switch up := r.Upstream; {
		case up == "":
			ps.add(key, `upstream: required ("master", a relay id or redis://host:port)`)
		case up == UpstreamMaster:
			if t.Master == "" {
				ps.add(key, "upstream master: no master node designated (set the master key)")
			}
		case isRedisURL(up):
			if _, err := redisURLAddr(up); err != nil {
				ps.add(key, "upstream %q: %v", up, err)
			}
		case up == id:
			ps.add(key, "upstream %q: a relay cannot follow itself", up)
		default:
			p, ok := t.Relays[up]
			if !ok {
				ps.add(key, "upstream %q: no such relay", up)
				break
			}
			if p.GRPCAddr == "" {
				ps.add(key, "upstream %q: that relay has no grpc_addr to dial", up)
			}
		}
	}
	for _, cyc := range cycles(t.RelayIDs(), func(id string) (string, bool) {
		r := t.Relays[id]
		_, isRelay := t.Relays[r.Upstream]
		return r.Upstream, isRelay && r.Upstream != id
	}) {
		ps.add(relaysDir+cyc[0], "cycle in relay upstreams: %s", strings.Join(cyc, " → "))
	}
	checkRoots(&ps, t)

	// Master.
	if t.Master != "" {
		if _, ok := t.Nodes[t.Master]; !ok {
			ps.add(masterKeyRel, "node %q: no such node", t.Master)
		}
	}

	// Nodes.
	for _, id := range t.NodeIDs() {
		n := t.Nodes[id]
		key := nodesDir + id
		checkName(&ps, key, id, n.ID)
		if other, dup := ids[id]; dup {
			ps.add(key, "id %q is also %s (relay and node ids share one namespace)", id, other)
		}
		checkSite(key, n.Site)
		if n.RedisAddr == "" {
			ps.add(key, "redis_addr: required")
		} else {
			useAddr(key, "redis_addr", n.RedisAddr)
		}
		if n.Priority < 0 {
			ps.add(key, "priority %d: must not be negative", n.Priority)
		}
		if n.Candidate && n.Priority == 0 {
			ps.add(key, "candidate with priority 0: priority 0 means never elected; give a priority above 0")
		}
		switch {
		case n.Follow == "" && t.Master != id:
			ps.add(key, "follow: required (a relay id, or a node id to chain) unless the node is the master")
		case n.Follow == "":
		case n.Follow == id:
			ps.add(key, "follow %q: a node cannot follow itself", n.Follow)
		case !hasKey(t.Relays, n.Follow) && !hasKey(t.Nodes, n.Follow):
			ps.add(key, "follow %q: no such relay or node", n.Follow)
		}
	}
	for _, cyc := range cycles(t.NodeIDs(), func(id string) (string, bool) {
		n := t.Nodes[id]
		if id == t.Master || n.Follow == id {
			return "", false // the master follows nothing while it is master
		}
		_, isNode := t.Nodes[n.Follow]
		return n.Follow, isNode
	}) {
		ps.add(nodesDir+cyc[0], "cycle in node follows: %s", strings.Join(cyc, " → "))
	}
	return ps.err()
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// checkName checks an id and the copy of it inside the spec.
func checkName(ps *problems, key, id, inSpec string) {
	if !idPattern.MatchString(id) {
		ps.add(key, "bad id %q (letters, digits, '.', '_', '-'; up to 128)", id)
	}
	if id == UpstreamMaster {
		ps.add(key, "id %q is reserved", id)
	}
	if inSpec != id {
		ps.add(key, "id %q differs from the key's %q", inSpec, id)
	}
}

// checkRoots enforces the one-root rule (see Validate).
func checkRoots(ps *problems, t *Topology) {
	origins := map[string][]string{} // origin -> root relays
	masterAddr := ""
	if m, ok := t.Nodes[t.Master]; ok {
		masterAddr = m.RedisAddr
	}
	for _, id := range t.RelayIDs() {
		up := t.Relays[id].Upstream
		switch {
		case up == UpstreamMaster:
			origins["master"] = append(origins["master"], id)
		case isRedisURL(up):
			addr, err := redisURLAddr(up)
			if err != nil {
				continue // reported already
			}
			if addr == masterAddr {
				origins["master"] = append(origins["master"], id)
			} else {
				origins[up] = append(origins[up], id)
			}
		}
	}
	if len(origins) < 2 {
		return
	}
	var parts []string
	for _, origin := range sortedKeys(origins) {
		label := origin
		if origin == "master" {
			label = fmt.Sprintf("the master (%s)", t.Master)
		}
		parts = append(parts, fmt.Sprintf("%s from %s", strings.Join(origins[origin], ", "), label))
	}
	ps.add("", "two roots: relays replicate from different masters (%s); every relay must descend from the one master",
		strings.Join(parts, "; "))
}

// cycles finds the cycles of the graph where each id has at most one
// successor (next). Each cycle is returned once, rotated to start at its
// smallest id and closed (a → b → a).
func cycles(ids []string, next func(string) (string, bool)) [][]string {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var out [][]string
	for _, start := range ids {
		var path []string
		cur, ended := start, false
		for state[cur] == unseen {
			state[cur] = onPath
			path = append(path, cur)
			n, ok := next(cur)
			if !ok {
				ended = true
				break
			}
			cur = n
		}
		if !ended && state[cur] == onPath {
			i := indexOf(path, cur)
			cyc := append([]string(nil), path[i:]...)
			m := 0
			for j := range cyc {
				if cyc[j] < cyc[m] {
					m = j
				}
			}
			cyc = append(cyc[m:], cyc[:m]...)
			out = append(out, append(cyc, cyc[0]))
		}
		for _, id := range path {
			state[id] = done
		}
	}
	return out
}

func indexOf(s []string, v string) int {
	for i := range s {
		if s[i] == v {
			return i
		}
	}
	return -1
}

func isRedisURL(s string) bool { return strings.HasPrefix(s, "redis://") }

// redisURLAddr parses redis://host:port and returns host:port. Credentials
// are refused: they do not belong in the topology, which every component
// and operator reads.
func redisURLAddr(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.User != nil {
		return "", fmt.Errorf("credentials do not belong in the topology; give them to the relay")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", fmt.Errorf("want redis://host:port and nothing else")
	}
	if err := hostPort(u.Host); err != nil {
		return "", err
	}
	return u.Host, nil
}
