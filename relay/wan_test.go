package relay_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/wan"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// bridgeTo puts a WAN link simulator in front of a relay's gRPC service.
func bridgeTo(t *testing.T, r *testRelay, opts ...wan.Option) *wan.Bridge {
	t.Helper()
	b, err := wan.NewBridge(r.cfg.GRPCAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// halfwayTransfer starts relay-a (no compression) following master, which
// holds data, and relay-b following relay-a over a WAN link throttled to
// about 3 s for the whole RDB; it returns once relay-b has received half
// of the RDB, with the link and the RDB's size.
func halfwayTransfer(t *testing.T, master *redistest.Server) (b *testRelay, link *wan.Bridge, rdbSize int64) {
	t.Helper()
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.Compression = "none" })
	redistest.WaitFor(t, 30*time.Second, func() error {
		if a.status(t).GetSnapshot().GetSizeBytes() == 0 {
			return fmt.Errorf("relay-a has no snapshot yet")
		}
		return nil
	})
	rdbSize = a.status(t).GetSnapshot().GetSizeBytes()
	link = bridgeTo(t, a, wan.WithBandwidth(rdbSize/3))
	b = treeRelay(t, "relay-b", "B", "arbor://"+link.Addr())
	redistest.WaitFor(t, 30*time.Second, func() error {
		got, _ := strconv.ParseInt(b.Info(t, "replication")["master_sync_read_bytes"], 10, 64)
		if got < rdbSize/2 {
			return fmt.Errorf("relay-b received %d of %d RDB bytes", got, rdbSize)
		}
		return nil
	})
	return b, link, rdbSize
}

// TestRDBTransferCutResumes: the A–B link is cut in the middle of the RDB
// transfer; when it is back, the transfer resumes at the last chunk stored
// instead of starting over.
func TestRDBTransferCutResumes(t *testing.T) {
	master := redistest.Start(t)
	ctx := context.Background()
	if err := master.Client().Do(ctx, "DEBUG", "POPULATE", "150000", "key", "64").Err(); err != nil {
		t.Fatal(err)
	}
	b, link, rdbSize := halfwayTransfer(t, master)
	link.Cut()
	time.Sleep(300 * time.Millisecond) // the link stays down a moment
	link.Restore()
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	logs := b.logBuf.String()
	if !strings.Contains(logs, "resuming RDB transfer from parent relay") {
		t.Errorf("relay-b did not resume the RDB transfer:\n%s", logs)
	}
	_, fromParent := link.BytesForwarded()
	if fromParent > rdbSize*14/10 {
		t.Errorf("relay-b pulled %d bytes over the link for a %d-byte RDB: the transfer started over", fromParent, rdbSize)
	}
	expectEq(t, "relay-b arbor_upstream_full_syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
}

// TestLinkCutWhileStreaming: cutting and restoring the A–B link while the
// master takes writes costs no full sync; relay-b continues from its store.
func TestLinkCutWhileStreaming(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master))
	link := bridgeTo(t, a, wan.WithLatency(5*time.Millisecond))
	b := treeRelay(t, "relay-b", "B", "arbor://"+link.Addr())
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	for round := range 3 {
		link.Cut()
		load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: int64(10 + round)})
		link.Restore()
		redistest.WaitInSync(t, syncTimeout, master, rep)
	}
	expectEq(t, "relay-b arbor_upstream_full_syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	if n := b.InfoInt(t, "stats", "arbor_upstream_partial_syncs"); n < 3 {
		t.Errorf("relay-b arbor_upstream_partial_syncs %d, want at least 3 (one per cut)", n)
	}
	expectEq(t, "relay-b's replica full syncs", b.InfoInt(t, "stats", "sync_full"), 1)
	// relay-b measures how long bytes took from relay-a: never less than
	// the link's 5 ms.
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 20})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	if n := b.InfoInt(t, "arbor", "arbor_tree_lag_frames"); n == 0 {
		t.Error("relay-b counted no frames in its tree lag window")
	}
	if p50 := b.InfoInt(t, "arbor", "arbor_tree_lag_p50_us"); p50 < 5000 {
		t.Errorf("relay-b tree lag p50 %d µs, below the link's 5 ms latency", p50)
	}
}

// TestSilentParentLinkEnds: relay-b's link to relay-a goes silent (the
// bridge drops every byte, the TCP connections stay open): relay-b ends
// the session once nothing, not even a heartbeat, arrived for ReplTimeout,
// and says why; when the link is back it streams again, with a partial
// resync.
func TestSilentParentLinkEnds(t *testing.T) {
	master := redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master))
	link := bridgeTo(t, a)
	b := treeRelay(t, "relay-b", "B", "arbor://"+link.Addr(), func(c *relay.Config) { c.ReplTimeout = 2 * time.Second })
	streaming := func() error {
		if st := b.relay().Status(); st.GetLinkState() != arborv1.LinkState_LINK_STATE_STREAMING {
			return fmt.Errorf("relay-b's link is %v (last error %q), want streaming", st.GetLinkState(), st.GetLastError())
		}
		return nil
	}
	redistest.WaitFor(t, 30*time.Second, streaming)
	partial := b.InfoInt(t, "stats", "arbor_upstream_partial_syncs")

	link.Blackhole()
	redistest.WaitFor(t, 30*time.Second, func() error {
		if e := b.relay().Status().GetLastError(); !strings.Contains(e, "silent for 2s") {
			return fmt.Errorf("relay-b's last error %q, want its parent silent for 2s", e)
		}
		return nil
	})
	link.Restore()
	redistest.WaitFor(t, 30*time.Second, streaming)
	if n := b.InfoInt(t, "stats", "arbor_upstream_partial_syncs"); n <= partial {
		t.Errorf("relay-b arbor_upstream_partial_syncs %d after the silence, want more than %d", n, partial)
	}
}

// TestPausedChildDoesNotSlowOthers: relay-c's link is paused (a stalled
// WAN link); relay-b and the upstream keep going, relay-c is cut as a slow
// consumer, and when its link is back it resumes from the backlog.
func TestPausedChildDoesNotSlowOthers(t *testing.T) {
	// none fills the paused link's windows quickly; with zstd relay-b and
	// relay-c share relay-a's compressed frames until relay-c stalls.
	for _, comp := range []string{"none", "zstd"} {
		t.Run(comp, func(t *testing.T) { pausedChild(t, comp) })
	}
}

func pausedChild(t *testing.T, compression string) {
	master := redistest.Start(t, "--repl-backlog-size", "256mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) {
		c.SlowConsumerTimeout = 2 * time.Second
		c.Compression = compression
	})
	toC := bridgeTo(t, a)
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	c := treeRelay(t, "relay-c", "C", "arbor://"+toC.Addr())
	repB, repC := redistest.Start(t), redistest.Start(t)
	replicaOf(t, repB, b.Port)
	replicaOf(t, repC, c.Port)
	redistest.WaitInSync(t, syncTimeout, master, repB, repC)

	toC.Pause()
	for seed := int64(2); seed < 5; seed++ {
		load(t, master, redistest.LoadOptions{SmallKeys: 5000, Seed: seed, Big: true})
	}
	// More wire bytes than relay-c's flow-control window (16 MiB) and the
	// socket buffers on the way hold, even compressed: relay-a's sends to
	// relay-c then block, which is what the cut is for. The load above
	// compresses to far less.
	rnd := rand.New(rand.NewPCG(7, 7))
	for i := range 5 {
		v := make([]byte, 8<<20)
		for j := 0; j < len(v); j += 8 {
			binary.LittleEndian.PutUint64(v[j:], rnd.Uint64())
		}
		if err := master.Client().Set(context.Background(), fmt.Sprintf("rand:%d", i), v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// relay-b keeps up while relay-c's link is stalled.
	redistest.WaitInSync(t, syncTimeout, master, repB)
	redistest.WaitFor(t, 30*time.Second, func() error {
		for _, ch := range a.status(t).GetChildren() {
			if ch.GetId() == "relay-c" && ch.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY {
				return fmt.Errorf("relay-c still attached to relay-a")
			}
		}
		return nil
	})
	toC.Restore()
	redistest.WaitInSync(t, syncTimeout, master, repB, repC)
	expectEq(t, "relay-c arbor_upstream_full_syncs", c.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay-b arbor_upstream_partial_syncs (never cut)", b.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 0)
	if !strings.Contains(a.logBuf.String(), "child relay-c accepted nothing for 2s") {
		t.Error("relay-a did not cut relay-c as a slow consumer")
	}
	if compression == "zstd" {
		for _, ch := range a.status(t).GetChildren() {
			if ch.GetId() == "relay-b" && ch.GetBytes().GetSharedRawBytes() == 0 {
				t.Error("relay-b got no shared frames from relay-a")
			}
		}
	}
}
