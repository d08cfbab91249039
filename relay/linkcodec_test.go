package relay_test

import (
	"fmt"
	"testing"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// TestCompressionAutoBySite: under the default compression (auto) a
// parent sends s2 to a child relay of its own site and zstd to one of
// another site or of no known site, as each link's Status says; an
// explicit --compression is used on every link, in-site ones too; and the
// stream crosses both codecs intact (a replica at the end of an s2 hop
// and a zstd hop converges).
func TestCompressionAutoBySite(t *testing.T) {
	auto := func(c *relay.Config) { c.Compression = relay.CompressionAuto }
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 1})
	root := treeRelay(t, "relay-a1", "A", upstreamOf(master), auto)
	// relay-a2 shares relay-a1's site, but forces zstd on its own links.
	a2 := treeRelay(t, "relay-a2", "A", root.arborURL(), func(c *relay.Config) { c.Compression = "zstd" })
	b := treeRelay(t, "relay-b", "B", root.arborURL(), auto)
	x := treeRelay(t, "relay-x", "", root.arborURL(), auto)
	a3 := treeRelay(t, "relay-a3", "A", a2.arborURL(), auto)
	rep := redistest.Start(t)
	replicaOf(t, rep, a3.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)

	want := map[*testRelay]map[string]string{
		root: {"relay-a2": "s2", "relay-b": "zstd", "relay-x": "zstd"},
		a2:   {"relay-a3": "zstd"},
	}
	for parent, links := range want {
		redistest.WaitFor(t, syncTimeout, func() error {
			got := map[string]string{}
			for _, c := range parent.status(t).GetChildren() {
				if c.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY && c.GetState() == arborv1.LinkState_LINK_STATE_STREAMING {
					got[c.GetId()] = c.GetCompression()
				}
			}
			for id, codec := range links {
				if got[id] != codec {
					return fmt.Errorf("%s's streaming child links %v: want %s on %s", parent.cfg.ID, got, codec, id)
				}
			}
			return nil
		})
	}
	// Each child decoded what it was sent: its stored stream is the
	// parent's, and the s2 link carried compressed bytes.
	for _, r := range []*testRelay{a2, b, x} {
		up := r.status(t).GetUpstreamBytes()
		if up.GetRawBytes() == 0 || up.GetWireBytes() >= up.GetRawBytes() {
			t.Errorf("%s received raw %d, wire %d bytes: want compressed stream bytes", r.cfg.ID, up.GetRawBytes(), up.GetWireBytes())
		}
	}
}
