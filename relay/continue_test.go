package relay_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// The histories of the continuation tests: oldHistory is what both
// upstreams start with; the "ahead" upstream has one more command than the
// "behind" one, so a consumer of the first is ahead of the second.
const (
	oldHistory = "0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0dd0"
	newHistory = "fe3fe3fe3fe3fe3fe3fe3fe3fe3fe3fe3fe3fe3f"
)

var (
	commonBytes = "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n" + setCmd("a", "1")
	aheadBytes  = setCmd("b", "only-in-the-old-history")
)

// newHistoryBytes is the upstream's new history from offset from on. It
// has a command boundary exactly where the consumer stands (the end of the
// common and ahead bytes), so a consumer continued there would take the
// new history's bytes without a protocol error: a silent divergence. It
// goes on past that point, so the relay's store passes the consumer's
// offset on the new history.
func newHistoryBytes(from int) string {
	var b strings.Builder
	if from == 0 {
		b.WriteString("*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n")
	}
	b.WriteString(commandOfLen(len(commonBytes+aheadBytes) - from - b.Len()))
	for i := range 20 {
		b.WriteString(setCmd(fmt.Sprintf("new:%d", i), "on-the-new-history"))
	}
	return b.String()
}

// commandOfLen returns a SET command exactly n bytes long (n ≥ 30).
func commandOfLen(n int) string {
	for v := 1; ; v++ {
		if c := setCmd("filler", strings.Repeat("f", v)); len(c) >= n {
			if len(c) != n {
				panic(fmt.Sprintf("no SET command of %d bytes", n))
			}
			return c
		}
	}
}

// upstreamChange is what the "behind" upstream does once a consumer waits
// on its relay for an offset ahead of it.
type upstreamChange struct {
	name string
	// end is the relay's offset once it holds the whole new history.
	end int64
	// session answers the relay's PSYNC (which asks for the end of the
	// common bytes) with a new history.
	session func(c net.Conn, psync []string) error
}

func upstreamChanges() []upstreamChange {
	return []upstreamChange{
		{"full resync", int64(len(newHistoryBytes(0))), func(c net.Conn, _ []string) error {
			fullResync(c, newHistory, newHistoryBytes(0))
			return nil
		}},
		{"new id below the consumer", int64(len(commonBytes) + len(newHistoryBytes(len(commonBytes)))), func(c net.Conn, ps []string) error {
			if want := fmt.Sprint(len(commonBytes) + 1); ps[0] != oldHistory || ps[1] != want {
				return fmt.Errorf("PSYNC %v, want %s %s", ps, oldHistory, want)
			}
			fmt.Fprintf(c, "+CONTINUE %s\r\n", newHistory)
			c.Write([]byte(newHistoryBytes(len(commonBytes))))
			return nil
		}},
	}
}

// twoUpstreams starts two fake masters of oldHistory: "ahead" serves the
// common bytes and one more command; "behind" serves only the common bytes
// and, once cut is closed, drops the link and answers the relay's next
// PSYNC with change.
func twoUpstreams(t *testing.T, change upstreamChange) (ahead, behind *fakeMaster, cut chan struct{}) {
	cut = make(chan struct{})
	ahead = startFakeMaster(t, func(c net.Conn, _ []string) error {
		fullResync(c, oldHistory, commonBytes+aheadBytes)
		return nil
	})
	behind = startFakeMaster(t,
		func(c net.Conn, _ []string) error {
			fullResync(c, oldHistory, commonBytes)
			<-cut
			c.Close()
			return nil
		},
		change.session,
	)
	return ahead, behind, cut
}

// waitOffset waits until the replica is linked at offset off.
func waitOffset(t *testing.T, s *redistest.Server, off int64) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error { return linkedAt(s, off) })
}

func linkedAt(s *redistest.Server, off int64) error {
	info, err := s.Info(context.Background(), "replication")
	if err != nil {
		return err
	}
	if info["master_link_status"] != "up" || info["master_repl_offset"] != fmt.Sprint(off) {
		return fmt.Errorf("replica %s link %s at offset %s, want up at %d", s.Addr, info["master_link_status"], info["master_repl_offset"], off)
	}
	return nil
}

// waitSameHistory waits until relay truth holds the whole new history (end
// bytes) and rep is linked at its end, then checks that rep holds exactly what a fresh
// replica of truth gets from a full sync (DEBUG DIGEST), and nothing of
// the old history's own command.
func waitSameHistory(t *testing.T, truth *testRelay, rep *redistest.Server, end int64) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error {
		info := truth.Info(t, "replication")
		if info["master_replid"] != newHistory {
			return fmt.Errorf("relay %s replid %s, want %s", truth.cfg.ID, info["master_replid"], newHistory)
		}
		if got := truth.InfoInt(t, "replication", "master_repl_offset"); got != end {
			return fmt.Errorf("relay %s at %d, want %d", truth.cfg.ID, got, end)
		}
		return linkedAt(rep, end)
	})
	fresh := redistest.Start(t)
	replicaOf(t, fresh, truth.Port)
	waitOffset(t, fresh, end)
	if err := redistest.CompareDigests(context.Background(), fresh, rep); err != nil {
		t.Errorf("the replica diverged from the relay's history: %v", err)
	}
	if n, _ := rep.Client().Exists(context.Background(), "b").Result(); n != 0 {
		t.Error("the replica kept a command of the old history that the relay's history does not have")
	}
}

// TestFutureOffsetReplicaNeverContinuedOntoAnotherHistory: a real replica
// PSYNCs a relay at an offset ahead of the relay's store (it came from a
// relay further ahead), and the relay waits for that offset. Meanwhile the
// relay's upstream gives it another history: a full resync, or a new
// replication ID at an offset below the replica's. The replica must get a
// full sync, never +CONTINUE onto the new history.
func TestFutureOffsetReplicaNeverContinuedOntoAnotherHistory(t *testing.T) {
	for _, change := range upstreamChanges() {
		t.Run(strings.ReplaceAll(change.name, " ", "_"), func(t *testing.T) {
			ahead, behind, cut := twoUpstreams(t, change)
			cfg := newRelayConfig(t, "redis://"+ahead.ln.Addr().String())
			ra := startRelay(t, cfg)
			cfg = newRelayConfig(t, "redis://"+behind.ln.Addr().String())
			cfg.FutureOffsetWait = 30 * time.Second // far longer than the upstream change takes
			rb := startRelay(t, cfg)

			rep := redistest.Start(t)
			replicaOf(t, rep, ra.Port)
			waitOffset(t, rep, int64(len(commonBytes+aheadBytes)))
			redistest.WaitFor(t, 30*time.Second, func() error {
				if end := rb.InfoInt(t, "replication", "master_repl_offset"); end != int64(len(commonBytes)) {
					return fmt.Errorf("relay behind at %d, want %d", end, len(commonBytes))
				}
				return nil
			})
			replicaOf(t, rep, rb.Port)
			redistest.WaitFor(t, 30*time.Second, func() error {
				if !strings.Contains(rb.Info(t, "replication")["slave0"], "state=wait_bgsave") {
					return fmt.Errorf("the replica does not wait on the relay behind yet")
				}
				return nil
			})
			close(cut)

			waitSameHistory(t, rb, rep, change.end)
			// The replica may come back with a partial resync of the new
			// history (the relay drops its replicas on an ID switch), but
			// never continues from where it was.
			if line := rb.logLine("partial resync accepted", "replid="+oldHistory, fmt.Sprintf("offset=%d", len(commonBytes+aheadBytes)+1)); line != "" {
				t.Errorf("the relay continued the replica where it was: %s", line)
			}
			if n := rb.InfoInt(t, "stats", "sync_full"); n < 2 {
				t.Errorf("relay sync_full: got %d, want at least 2 (the replica, then a fresh one)", n)
			}
		})
	}
}

// TestFutureOffsetChildNeverContinuedOntoAnotherHistory: the same for a
// child relay over gRPC. The child follows a relay further ahead, is
// re-parented to the relay behind, which waits for the child's offset while
// its upstream gives it another history. The child must take a full sync
// (and so must the replica below it), never a Continue.
func TestFutureOffsetChildNeverContinuedOntoAnotherHistory(t *testing.T) {
	for _, change := range upstreamChanges() {
		t.Run(strings.ReplaceAll(change.name, " ", "_"), func(t *testing.T) {
			ahead, behind, cut := twoUpstreams(t, change)
			ra := treeRelay(t, "relay-ahead", "A", "redis://"+ahead.ln.Addr().String())
			rb := treeRelay(t, "relay-behind", "A", "redis://"+behind.ln.Addr().String(),
				func(c *relay.Config) { c.FutureOffsetWait = 30 * time.Second })
			child := treeRelay(t, "relay-child", "B", ra.arborURL())
			rep := redistest.Start(t)
			replicaOf(t, rep, child.Port)
			waitOffset(t, rep, int64(len(commonBytes+aheadBytes)))
			redistest.WaitFor(t, 30*time.Second, func() error {
				if end := rb.status(t).GetStoredOffset(); end != int64(len(commonBytes)) {
					return fmt.Errorf("relay behind at %d, want %d", end, len(commonBytes))
				}
				return nil
			})
			child.setUpstream(t, rb.arborURL())
			redistest.WaitFor(t, 30*time.Second, func() error {
				for _, c := range rb.status(t).GetChildren() {
					if c.GetId() == "relay-child" && c.GetState() == arborv1.LinkState_LINK_STATE_CONNECTING {
						return nil
					}
				}
				return fmt.Errorf("the child does not wait on the relay behind yet")
			})
			close(cut)

			redistest.WaitFor(t, 30*time.Second, func() error {
				st := child.status(t)
				if want := rb.status(t).GetReplid(); st.GetReplid() != want {
					return fmt.Errorf("child replid %s, want %s", st.GetReplid(), want)
				}
				return nil
			})
			waitSameHistory(t, rb, rep, change.end)
			if n := child.InfoInt(t, "stats", "arbor_upstream_full_syncs"); n < 2 {
				t.Errorf("child arbor_upstream_full_syncs: got %d, want at least 2 (one from each parent)", n)
			}
			if line := rb.logLine("child relay continues", fmt.Sprintf("offset=%d", len(commonBytes+aheadBytes))); line != "" {
				t.Errorf("the relay behind continued the child where it was: %s", line)
			}
		})
	}
}
