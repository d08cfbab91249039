package topology

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// seed returns the seed topology of deploy/topology.yaml.
func seed(t *testing.T) *Topology {
	t.Helper()
	b, err := os.ReadFile("../deploy/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	top, err := ParseYAML(b)
	if err != nil {
		t.Fatalf("seed topology: %v", err)
	}
	return top
}

func TestSeedTopology(t *testing.T) {
	top := seed(t)
	if got, want := len(top.Sites), 3; got != want {
		t.Errorf("sites: got %d, want %d", got, want)
	}
	if got, want := len(top.Relays), 4; got != want {
		t.Errorf("relays: got %d, want %d", got, want)
	}
	if got, want := len(top.Nodes), 9; got != want {
		t.Errorf("nodes: got %d, want %d", got, want)
	}
	for _, c := range []struct{ relay, want string }{
		{"relay-a1", "redis://127.0.0.1:7000"},
		{"relay-a2", "redis://127.0.0.1:7000"},
		{"relay-b", "arbor://127.0.0.1:7500"},
		{"relay-c", "arbor://127.0.0.1:7500"},
	} {
		got, err := top.RelayUpstream(c.relay)
		if err != nil || got != c.want {
			t.Errorf("RelayUpstream(%s): got %q, %v; want %q", c.relay, got, err, c.want)
		}
	}
	for _, c := range []struct{ node, want string }{
		{"A-Master", ""},
		{"A-S-1", "127.0.0.1:7100"},
		{"B-S-2", "127.0.0.1:7110"},
		{"C-S-1", "127.0.0.1:7120"},
	} {
		got, err := top.NodeUpstream(c.node)
		if err != nil || got != c.want {
			t.Errorf("NodeUpstream(%s): got %q, %v; want %q", c.node, got, err, c.want)
		}
	}
}

// TestSnapshotSources: a relay's snapshot sources are its site's nodes
// but the master, those that follow it first.
func TestSnapshotSources(t *testing.T) {
	top := seed(t)
	for _, c := range []struct {
		relay string
		want  []string
	}{
		{"relay-a1", []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}},
		{"relay-a2", []string{"127.0.0.1:7003", "127.0.0.1:7001", "127.0.0.1:7002"}},
		{"relay-c", []string{"127.0.0.1:7020", "127.0.0.1:7021"}},
		{"relay-x", nil},
	} {
		if got := top.SnapshotSources(c.relay); !slices.Equal(got, c.want) {
			t.Errorf("SnapshotSources(%s) = %v, want %v", c.relay, got, c.want)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	top := seed(t)
	b, err := MarshalYAML(top)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseYAML(b)
	if err != nil {
		t.Fatalf("ParseYAML(MarshalYAML(seed)): %v\n%s", err, b)
	}
	if !back.Equal(top) {
		t.Fatalf("round trip differs:\n%s", b)
	}
}

func TestParseYAMLStrict(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown field", "sites: {A: {}}\nnodes: {n: {site: A, redis_addr: '127.0.0.1:1', follw: r}}\n", "follw"},
		{"duplicate key", "sites: {A: {}, A: {}}\n", "already defined"},
		{"empty", "", "empty"},
		{"two documents", "sites: {A: {}}\n---\nsites: {B: {}}\n", "more than one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseYAML([]byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestValidate breaks the seed topology in one way per case and checks the
// problem is named, at the right key.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*Topology)
		key     string
		wantMsg string
	}{
		{"unknown upstream relay", func(t *Topology) { setUpstream(t, "relay-c", "relay-x") }, "relays/relay-c", `upstream "relay-x": no such relay`},
		{"self upstream", func(t *Topology) { setUpstream(t, "relay-b", "relay-b") }, "relays/relay-b", "cannot follow itself"},
		{"cycle", func(t *Topology) { setUpstream(t, "relay-a1", "relay-c") }, "relays/relay-a1", "cycle in relay upstreams: relay-a1 → relay-c → relay-a1"},
		{"two roots", func(t *Topology) { setUpstream(t, "relay-c", "redis://127.0.0.1:6999") }, "", "two roots"},
		{"external root is the master", func(t *Topology) { setUpstream(t, "relay-a2", "redis://127.0.0.1:7000") }, "", ""},
		{"credentials in upstream", func(t *Topology) { setUpstream(t, "relay-a2", "redis://u:p@127.0.0.1:7000") }, "relays/relay-a2", "credentials"},
		{"no upstream", func(t *Topology) { setUpstream(t, "relay-a2", "") }, "relays/relay-a2", "upstream: required"},
		{"unknown site", func(t *Topology) { r := t.Relays["relay-b"]; r.Site = "Z"; t.Relays["relay-b"] = r }, "relays/relay-b", `site "Z": no such site`},
		{"parent without grpc_addr", func(t *Topology) { r := t.Relays["relay-a1"]; r.GRPCAddr = ""; t.Relays["relay-a1"] = r }, "relays/relay-b", "no grpc_addr"},
		{"bad redis_addr", func(t *Topology) { r := t.Relays["relay-b"]; r.RedisAddr = "nowhere"; t.Relays["relay-b"] = r }, "relays/relay-b", "want host:port"},
		{"address twice", func(t *Topology) { n := t.Nodes["C-S-2"]; n.RedisAddr = "127.0.0.1:7020"; t.Nodes["C-S-2"] = n }, "nodes/C-S-2", "also used by nodes/C-S-1"},
		{"unknown master", func(t *Topology) { t.Master = "Z-Master" }, "master", `node "Z-Master": no such node`},
		{"relay follows master without one", func(t *Topology) { t.Master = "" }, "relays/relay-a1", "no master node designated"},
		{"node follows unknown", func(t *Topology) { setFollow(t, "B-S-1", "relay-x") }, "nodes/B-S-1", `follow "relay-x": no such relay or node`},
		{"node follows nothing", func(t *Topology) { setFollow(t, "B-S-1", "") }, "nodes/B-S-1", "follow: required"},
		{"node chain", func(t *Topology) { setFollow(t, "A-S-2", "A-S-1") }, "", ""},
		{"node chain cycle", func(t *Topology) { setFollow(t, "A-S-2", "A-S-1"); setFollow(t, "A-S-1", "A-S-2") }, "nodes/A-S-1", "cycle in node follows: A-S-1 → A-S-2 → A-S-1"},
		{"master follows its follower", func(t *Topology) { setFollow(t, "A-Master", "A-S-1"); setFollow(t, "A-S-1", "A-Master") }, "", ""},
		{"candidate priority 0", func(t *Topology) { n := t.Nodes["B-M-Backup"]; n.Priority = 0; t.Nodes["B-M-Backup"] = n }, "nodes/B-M-Backup", "priority 0"},
		{"negative priority", func(t *Topology) { n := t.Nodes["B-S-1"]; n.Priority = -1; t.Nodes["B-S-1"] = n }, "nodes/B-S-1", "negative"},
		{"id both relay and node", func(t *Topology) {
			t.Nodes["relay-b"] = NodeSpec{ID: "relay-b", Site: "B", RedisAddr: "127.0.0.1:7999", Follow: "relay-b"}
		}, "nodes/relay-b", "also relays/relay-b"},
		{"reserved id", func(t *Topology) {
			t.Relays["master"] = RelaySpec{ID: "master", Site: "A", RedisAddr: "127.0.0.1:7998", Upstream: "relay-a1"}
		}, "relays/master", "reserved"},
		{"bad id", func(t *Topology) { t.Sites["a b"] = Site{Name: "a b"} }, "sites/a b", "bad name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := seed(t)
			c.edit(top)
			err := Validate(top)
			if c.wantMsg == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			verr, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			for _, p := range verr.Problems {
				if p.Key == c.key && strings.Contains(p.Msg, c.wantMsg) {
					return
				}
			}
			t.Fatalf("got %v, want a problem at %q containing %q", err, c.key, c.wantMsg)
		})
	}
}

func setUpstream(t *Topology, id, up string) {
	r := t.Relays[id]
	r.Upstream = up
	t.Relays[id] = r
}

func setFollow(t *Topology, id, follow string) {
	n := t.Nodes[id]
	n.Follow = follow
	t.Nodes[id] = n
}

// TestParseValues checks what a person may write with etcdctl.
func TestParseValues(t *testing.T) {
	good := func() map[string][]byte {
		return map[string][]byte{
			"sites/A":         []byte(`{}`),
			"relays/r1":       []byte(`{"site":"A","grpc_addr":"127.0.0.1:1","redis_addr":"127.0.0.1:2","upstream":"master"}`),
			"nodes/m":         []byte(`{"site":"A","redis_addr":"127.0.0.1:3","candidate":true,"priority":5}`),
			"nodes/n":         []byte(`{"id":"n","site":"A","redisAddr":"127.0.0.1:4","follow":"r1"}`),
			"master":          []byte(`{"node":"m"}`),
			"sites/B":         []byte(`{"name":"B","description":"second"}`),
			"relays/r2":       []byte(`{"site":"B","redis_addr":"127.0.0.1:5","upstream":"r1"}`),
			"nodes/chained":   []byte(`{"site":"B","redis_addr":"127.0.0.1:6","follow":"n"}`),
			"nodes/followsr2": []byte(`{"site":"B","redis_addr":"127.0.0.1:7","follow":"r2"}`),
		}
	}
	top, err := Parse(good())
	if err != nil {
		t.Fatalf("good values: %v", err)
	}
	if n := top.Nodes["n"]; n.RedisAddr != "127.0.0.1:4" || n.Follow != "r1" {
		t.Fatalf("camelCase field: got %+v", n)
	}
	if top.Master != "m" || !top.Nodes["m"].Candidate || top.Nodes["m"].Priority != 5 {
		t.Fatalf("master: got %q, %+v", top.Master, top.Nodes["m"])
	}
	// Encode and parse again: the same topology.
	enc, err := Encode(top)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Parse(enc); err != nil || !back.Equal(top) {
		t.Fatalf("Parse(Encode(t)): %v, equal %v", err, back.Equal(top))
	}
	if got, want := string(enc["relays/r1"]), `{"site":"A","grpc_addr":"127.0.0.1:1","redis_addr":"127.0.0.1:2","upstream":"master"}`; got != want {
		t.Errorf("encoded relay: got %s, want %s", got, want)
	}

	for _, c := range []struct{ name, key, value, want string }{
		{"not json", "relays/r1", `not json`, "invalid value"},
		{"empty", "relays/r1", ``, "empty value"},
		{"unknown field", "relays/r1", `{"site":"A","redis_addr":"127.0.0.1:2","upstream":"master","colour":"red"}`, `unknown field "colour"`},
		{"wrong type", "nodes/m", `{"site":"A","redis_addr":"127.0.0.1:3","priority":"high"}`, "invalid value"},
		{"id differs", "nodes/n", `{"id":"other","site":"A","redis_addr":"127.0.0.1:4","follow":"r1"}`, `differs from the key's "n"`},
		{"master unknown field", "master", `{"node":"m","epoch":3}`, `unknown field "epoch"`},
		{"master not json", "master", `m`, "invalid value"},
		{"master without node", "master", `{}`, "no node"},
		{"unknown key", "relayz/r9", `{}`, "unknown key"},
		{"nested key", "relays/r1/extra", `{}`, "bad name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := good()
			raw[c.key] = []byte(c.value)
			_, err := Parse(raw)
			verr, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			for _, p := range verr.Problems {
				if p.Key == c.key && strings.Contains(p.Msg, c.want) {
					return
				}
			}
			t.Fatalf("got %v, want a problem at %q containing %q", err, c.key, c.want)
		})
	}
}
