package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/relay"
)

// gate holds RDB chunk transfers at a chunk until it is opened (once; also
// at the end of the test, so no sender stays blocked).
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// chainOfThree starts relay-a following master, with no compression and
// hook run on each RDB chunk it sends, waits until relay-a holds a
// snapshot, then starts relay-b following relay-a and relay-c following
// relay-b, so that their full syncs are the ones hook sees (and may hold).
func chainOfThree(t *testing.T, master *redistest.Server, hook func(index uint32, raw []byte)) (a, b, c *testRelay) {
	t.Helper()
	a = treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) {
		c.Compression = "none"
		relay.SetRDBChunkHook(c, hook)
	})
	redistest.WaitFor(t, 30*time.Second, func() error {
		if a.status(t).GetSnapshot().GetSizeBytes() == 0 {
			return fmt.Errorf("relay-a has no snapshot yet")
		}
		return nil
	})
	b = treeRelay(t, "relay-b", "B", a.arborURL())
	c = treeRelay(t, "relay-c", "C", b.arborURL())
	return a, b, c
}

// populate fills s with n keys of size-byte values (DEBUG POPULATE).
func populate(t *testing.T, s *redistest.Server, n, size int) {
	t.Helper()
	if err := s.Client().Do(context.Background(), "DEBUG", "POPULATE", n, "key", size).Err(); err != nil {
		t.Fatal(err)
	}
}

// syncReadBytes returns a replica's master_sync_read_bytes while a full
// sync is in progress, and -1 when none is.
func syncReadBytes(s *redistest.Server) (int64, error) {
	info, err := s.Info(context.Background(), "replication")
	if err != nil {
		return 0, err
	}
	return infoSyncRead(info)
}

// infoSyncRead reads master_sync_read_bytes from INFO replication (a
// Redis replica's or a relay's), -1 when no full sync is in progress.
func infoSyncRead(info map[string]string) (int64, error) {
	if info["master_sync_in_progress"] != "1" {
		return -1, nil
	}
	var n int64
	_, err := fmt.Sscan(info["master_sync_read_bytes"], &n)
	return n, err
}

// waitEarlyBytes waits until each replica and relay has read at least
// min bytes of a full sync still in progress.
func waitEarlyBytes(t *testing.T, min int64, reps []*redistest.Server, relays []*testRelay) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error {
		for _, rep := range reps {
			if n, err := syncReadBytes(rep); err != nil || n < min {
				return fmt.Errorf("replica %s read %d bytes of its full sync so far (%v)", rep.Addr, n, err)
			}
		}
		for _, r := range relays {
			if n, err := infoSyncRead(r.Info(t, "replication")); err != nil || n < min {
				return fmt.Errorf("%s read %d bytes of its full sync so far (%v)", r.cfg.ID, n, err)
			}
		}
		return nil
	})
}

// countLog counts the lines of s's log that contain substr.
func countLog(t *testing.T, s *redistest.Server, substr string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), substr)
}

const syncSuccess = "MASTER <-> REPLICA sync: Finished with success"

// TestCutThroughFromParentRelay: relay-b receives relay-a's snapshot, and
// relay-a holds the transfer after its third chunk; relay-c follows
// relay-b. relay-b's replica and relay-c, which asked for a full sync
// before relay-b held any data, and relay-c's replica receive the chunks
// relay-b has while relay-b's own transfer is still held (their
// master_sync_read_bytes grow, relay-b has no snapshot yet), and so does a
// replica that asks relay-b only then (it joins from the first byte of the
// partial file); all are in sync once the transfer goes on: one full sync
// each, equal digests.
func TestCutThroughFromParentRelay(t *testing.T) {
	master := redistest.Start(t, "--rdbcompression", "no")
	populate(t, master, 100000, 64) // an RDB of about 8 chunks
	g := newGate(t)
	a, b, c := chainOfThree(t, master, func(index uint32, _ []byte) {
		if index == 3 {
			<-g.ch
		}
	})
	rep, repC := redistest.Start(t), redistest.Start(t)
	replicaOf(t, rep, b.Port)
	replicaOf(t, repC, c.Port)

	waitEarlyBytes(t, 2<<20, []*redistest.Server{rep, repC}, []*testRelay{b, c})
	// A replica that comes when relay-b holds half of the RDB joins it
	// from the first byte of the partial file.
	late := redistest.Start(t)
	replicaOf(t, late, b.Port)
	waitEarlyBytes(t, 2<<20, []*redistest.Server{late}, nil)
	// relay-a is still held at chunk 3: relay-b cannot have the whole RDB.
	for _, r := range []*testRelay{b, c} {
		if st := r.status(t); st.GetSnapshot().GetSizeBytes() != 0 {
			t.Fatalf("%s installed a snapshot while the transfer was held (%d bytes)", r.cfg.ID, st.GetSnapshot().GetSizeBytes())
		}
		if early := r.InfoInt(t, "stats", "arbor_cut_through_early_bytes"); early < 2<<20 {
			t.Errorf("%s sent %d RDB bytes before its transfer ended, want at least 2 MiB", r.cfg.ID, early)
		}
	}
	g.open()

	redistest.WaitInSync(t, syncTimeout, master, rep, repC, late)
	expectEq(t, "relay-b arbor_cut_through_syncs (two replicas and relay-c)", b.InfoInt(t, "stats", "arbor_cut_through_syncs"), 3)
	expectEq(t, "relay-c arbor_cut_through_syncs", c.InfoInt(t, "stats", "arbor_cut_through_syncs"), 1)
	expectEq(t, "relay-b sync_full", b.InfoInt(t, "stats", "sync_full"), 3)
	expectEq(t, "relay-c sync_full", c.InfoInt(t, "stats", "sync_full"), 1)
	for _, r := range []*testRelay{b, c} {
		expectEq(t, r.cfg.ID+" arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	}
	expectEq(t, "relay-a sync_full", a.InfoInt(t, "stats", "sync_full"), 1)
	for _, r := range []*redistest.Server{rep, repC, late} {
		expectEq(t, "syncs finished by replica "+r.Addr, countLog(t, r, syncSuccess), 1)
	}
	if n, _ := master.InfoInt(context.Background(), "stats", "sync_full"); n != 1 {
		t.Errorf("master sync_full %d, want 1 (relay-a only)", n)
	}
}

// TestCutThroughFromMaster: the master saves its RDB slowly
// (rdb-key-save-delay: about 6 s for its 20000 keys, read by the fork at
// its start), and a replica asks relay-a for a full sync as relay-a starts
// (it waits for the transfer to begin, then follows it): it gets RDB bytes
// before relay-a's own transfer ended, and is in sync after one full sync.
func TestCutThroughFromMaster(t *testing.T) {
	master := redistest.Start(t, "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
	populate(t, master, 20000, 64)
	if err := master.Client().ConfigSet(context.Background(), "rdb-key-save-delay", "300").Err(); err != nil {
		t.Fatal(err)
	}
	rep := redistest.Start(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master))
	replicaOf(t, rep, a.Port)
	redistest.WaitFor(t, 60*time.Second, func() error {
		if a.status(t).GetSnapshot().GetSizeBytes() == 0 {
			return fmt.Errorf("relay-a has no snapshot yet")
		}
		return nil
	})
	if err := master.Client().ConfigSet(context.Background(), "rdb-key-save-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay-a arbor_cut_through_syncs", a.InfoInt(t, "stats", "arbor_cut_through_syncs"), 1)
	if early := a.InfoInt(t, "stats", "arbor_cut_through_early_bytes"); early == 0 {
		t.Error("relay-a sent its replica no RDB byte before its own transfer ended")
	}
	expectEq(t, "relay-a sync_full", a.InfoInt(t, "stats", "sync_full"), 1)
	expectEq(t, "relay-a arbor_upstream_full_syncs", a.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "replica syncs finished", countLog(t, rep, syncSuccess), 1)
}

// TestCutThroughRefusedRDBNeverCompletes: relay-a's first transfer to
// relay-b carries a changed byte inside a value (as a bad disk would give
// it: the chunk's own CRC matches), held in the middle until relay-b's
// replica follows it. The master writes no CRC64 (rdbchecksum no), so the
// replica itself would load the changed RDB if it were completed. relay-b's
// end-to-end check refuses it: the replica is cut before the EOF mark, and
// loads only the good RDB of the second transfer, once (its log shows one
// finished sync), with the master's digest. relay-c, which follows relay-b's
// transfer as it arrives, never gets its end: it installs nothing but the
// good RDB, and its replica too loads only that one, although it loads
// diskless (repl-diskless-load swapdb: it parses the RDB as it arrives and
// keeps it only once the EOF mark has come).
func TestCutThroughRefusedRDBNeverCompletes(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t, "--rdbchecksum", "no", "--rdbcompression", "no")
	const needle = "needle-value-0123456789abcdef"
	if err := master.Client().Set(ctx, "needle", needle, 0).Err(); err != nil {
		t.Fatal(err)
	}
	populate(t, master, 100000, 64)
	g := newGate(t)
	var transfers, flipped atomic.Int32
	_, b, c := chainOfThree(t, master, func(index uint32, raw []byte) {
		if index == 0 {
			transfers.Add(1)
		}
		if transfers.Load() != 1 {
			return
		}
		if i := bytes.Index(raw, []byte(needle)); i >= 0 {
			raw[i] ^= 0x20
			flipped.Add(1)
		}
		if index == 3 {
			<-g.ch
		}
	})
	rep, repC := redistest.Start(t), redistest.Start(t, "--repl-diskless-load", "swapdb")
	replicaOf(t, rep, b.Port)
	replicaOf(t, repC, c.Port)
	waitEarlyBytes(t, 2<<20, []*redistest.Server{rep}, []*testRelay{b, c})
	// The diskless replica tells nothing while it loads: relay-c's count
	// of what it sent it says it is following.
	redistest.WaitFor(t, 30*time.Second, func() error {
		if n := c.InfoInt(t, "stats", "arbor_cut_through_early_bytes"); n < 1<<20 {
			return fmt.Errorf("relay-c sent its replica %d bytes of the held transfer", n)
		}
		return nil
	})
	g.open()

	redistest.WaitInSync(t, syncTimeout, master, rep, repC)
	if flipped.Load() != 1 {
		t.Fatalf("the needle was changed in %d chunks of the first transfer, want 1", flipped.Load())
	}
	if n := b.InfoInt(t, "stats", "arbor_upstream_rejected_snapshots"); n < 1 {
		t.Errorf("relay-b refused %d snapshots, want at least 1", n)
	}
	for _, r := range []*testRelay{b, c} {
		if n := r.InfoInt(t, "stats", "arbor_cut_through_cut"); n < 1 {
			t.Errorf("%s cut %d cut-through syncs, want at least 1", r.cfg.ID, n)
		}
	}
	expectEq(t, "relay-b arbor_upstream_full_syncs (installed once)", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay-c arbor_upstream_full_syncs (installed once)", c.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay-c arbor_upstream_rejected_snapshots (never got the end)", c.InfoInt(t, "stats", "arbor_upstream_rejected_snapshots"), 0)
	for _, r := range []*redistest.Server{rep, repC} {
		expectEq(t, "syncs finished by replica "+r.Addr+" (the good RDB only)", countLog(t, r, syncSuccess), 1)
		if got, err := r.Client().Get(ctx, "needle").Result(); err != nil || got != needle {
			t.Errorf("replica %s's needle %q (%v), want %q", r.Addr, got, err, needle)
		}
	}
}

// TestCutThroughFollowsResumedTransfer: a replica follows relay-b's
// transfer from relay-a when the link is cut in the middle. relay-b keeps
// what it received and resumes the transfer once the link is back; the
// replica, cut with the transfer (it never got the EOF mark), asks again and
// gets the RDB again (following the resumed transfer from the first byte of
// the partial file if it is back in time, else from the installed
// snapshot). It loads the RDB once, and relay-b pulled it over the link
// about once.
func TestCutThroughFollowsResumedTransfer(t *testing.T) {
	master := redistest.Start(t)
	populate(t, master, 150000, 64)
	rep := redistest.Start(t)
	b, link, rdbSize := halfwayTransfer(t, master)
	replicaOf(t, rep, b.Port)
	waitEarlyBytes(t, rdbSize/4, []*redistest.Server{rep}, nil)
	link.Cut()
	redistest.WaitFor(t, 30*time.Second, func() error {
		if n := b.InfoInt(t, "stats", "arbor_cut_through_cut"); n < 1 {
			return fmt.Errorf("relay-b cut %d cut-through syncs", n)
		}
		return nil
	})
	link.Restore()

	redistest.WaitInSync(t, syncTimeout, master, rep)
	if b.logLine("resuming RDB transfer from parent relay") == "" {
		t.Error("relay-b did not resume the RDB transfer")
	}
	if _, fromParent := link.BytesForwarded(); fromParent > rdbSize*14/10 {
		t.Errorf("relay-b pulled %d bytes over the link for a %d-byte RDB: the transfer started over", fromParent, rdbSize)
	}
	expectEq(t, "relay-b arbor_upstream_full_syncs", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay-b sync_full (before and after the cut)", b.InfoInt(t, "stats", "sync_full"), 2)
	expectEq(t, "replica syncs finished", countLog(t, rep, syncSuccess), 1)
}
