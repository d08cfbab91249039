package relay_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// waitStreamingFrom waits until child streams from parent.
func waitStreamingFrom(t *testing.T, child, parent *testRelay) {
	t.Helper()
	redistest.WaitFor(t, 30*time.Second, func() error {
		st := child.relay().Status()
		if st.GetUpstream() != parent.arborURL() || st.GetLinkState() != arborv1.LinkState_LINK_STATE_STREAMING {
			return fmt.Errorf("%s: upstream %s, link %v; want streaming from %s", child.cfg.ID, st.GetUpstream(), st.GetLinkState(), parent.arborURL())
		}
		return nil
	})
}

// waitCut waits until child's Status shows its parent's last cut with
// reason, and checks the action the child took from it.
func waitCut(t *testing.T, child *testRelay, reason arborv1.DisconnectReason, action arborv1.LinkAction) *arborv1.UpstreamCut {
	t.Helper()
	var cut *arborv1.UpstreamCut
	redistest.WaitFor(t, 30*time.Second, func() error {
		cut = child.relay().Status().GetUpstreamCut()
		if cut.GetReason() != reason.String() {
			return fmt.Errorf("%s's last upstream cut: got %v, want reason %v", child.cfg.ID, cut, reason)
		}
		return nil
	})
	if cut.GetAction() != action {
		t.Errorf("%s cut with %v: got action %v, want %v", child.cfg.ID, reason, cut.GetAction(), action)
	}
	if cut.GetAtUnixMs() == 0 || cut.GetMessage() == "" {
		t.Errorf("%s's last upstream cut %v: want its time and the parent's message", child.cfg.ID, cut)
	}
	return cut
}

// streamingChild starts a master holding 100 keys, relay-p (site A, mod
// applied to its config) following it and relay-c (site B) under relay-p,
// and waits until relay-c streams from relay-p.
func streamingChild(t *testing.T, mod ...func(*relay.Config)) (master *redistest.Server, p, c *testRelay) {
	t.Helper()
	master = redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
	p = treeRelay(t, "relay-p", "A", upstreamOf(master), mod...)
	c = treeRelay(t, "relay-c", "B", p.arborURL())
	waitStreamingFrom(t, c, p)
	return master, p, c
}

// TestSyncErrorReachesChildTyped: each way a parent relay ends or refuses
// a child relay's Sync reaches the child, over real gRPC, as the typed
// reason (the Disconnect detail of the status, never the message text),
// and the child shows it in Status with what it does about it: move to
// another parent, resubscribe, full sync, or stop.
func TestSyncErrorReachesChildTyped(t *testing.T) {
	t.Run("shutting down", func(t *testing.T) {
		_, p, c := streamingChild(t)
		p.Stop()
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_SHUTTING_DOWN, arborv1.LinkAction_LINK_ACTION_MOVE)
	})
	t.Run("topology changed", func(t *testing.T) {
		_, p, c := streamingChild(t)
		if !p.relay().CutChild("relay-c", fmt.Errorf("relay-c now follows relay-q: %w", relay.ErrTopologyChanged)) {
			t.Fatal("CutChild(relay-c) found no link")
		}
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_TOPOLOGY_CHANGED, arborv1.LinkAction_LINK_ACTION_MOVE)
	})
	t.Run("upstream lost", func(t *testing.T) {
		h := &flushHook{}
		master, _, c := streamingChild(t, func(c *relay.Config) {
			c.Fsync = "always"
			relay.SetSyncFile(c, h.sync)
		})
		h.failWith(errors.New("injected: input/output error"))
		set(t, master, "lost", "v")
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_UPSTREAM_LOST, arborv1.LinkAction_LINK_ACTION_MOVE)
	})
	t.Run("ahead of parent", func(t *testing.T) {
		master := redistest.Start(t)
		load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
		p := treeRelay(t, "relay-p", "A", upstreamOf(master), func(c *relay.Config) { c.FutureOffsetWait = 300 * time.Millisecond })
		c := treeRelay(t, "relay-c", "B", upstreamOf(master))
		redistest.WaitFor(t, 30*time.Second, func() error {
			if ps, cs := p.relay().Status().GetStoredOffset(), c.relay().Status().GetStoredOffset(); ps == 0 || ps != cs {
				return fmt.Errorf("relay-p holds %d, relay-c %d; want both the master's stream", ps, cs)
			}
			return nil
		})
		// relay-p stops following; relay-c goes on, then asks relay-p
		// for what it already holds more of.
		p.setUpstream(t, fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t)))
		pAt := p.relay().Status().GetStoredOffset()
		set(t, master, "ahead", "v")
		redistest.WaitFor(t, 30*time.Second, func() error {
			if cs := c.relay().Status().GetStoredOffset(); cs <= pAt {
				return fmt.Errorf("relay-c holds %d, not past relay-p's %d", cs, pAt)
			}
			return nil
		})
		c.setUpstream(t, p.arborURL())
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_AHEAD_OF_PARENT, arborv1.LinkAction_LINK_ACTION_MOVE)
	})
	t.Run("unknown history", func(t *testing.T) {
		m1, m2 := redistest.Start(t), redistest.Start(t)
		load(t, m1, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
		load(t, m2, redistest.LoadOptions{SmallKeys: 100, Seed: 2})
		p := treeRelay(t, "relay-p", "A", upstreamOf(m2))
		c := treeRelay(t, "relay-c", "B", upstreamOf(m1))
		redistest.WaitFor(t, 30*time.Second, func() error {
			if cs := c.relay().Status().GetStoredOffset(); cs == 0 {
				return errors.New("relay-c holds nothing of its master yet")
			}
			return nil
		})
		c.setUpstream(t, p.arborURL())
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_UNKNOWN_HISTORY, arborv1.LinkAction_LINK_ACTION_FULL_SYNC)
		// It asked for the full sync and follows the parent's history.
		waitStreamingFrom(t, c, p)
		if cs, ps := c.relay().Status().GetReplid(), p.relay().Status().GetReplid(); cs != ps {
			t.Errorf("relay-c after the full sync: replid %s, want relay-p's %s", cs, ps)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		master := redistest.Start(t)
		c := treeRelay(t, "relay-c", "A", upstreamOf(master))
		c.setUpstream(t, c.arborURL())
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_CYCLE, arborv1.LinkAction_LINK_ACTION_STOP)
	})
	t.Run("not ready", func(t *testing.T) {
		dead := fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t))
		p := treeRelay(t, "relay-p", "A", dead, func(c *relay.Config) { c.FutureOffsetWait = 300 * time.Millisecond })
		c := treeRelay(t, "relay-c", "B", p.arborURL())
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_NOT_READY, arborv1.LinkAction_LINK_ACTION_RESUBSCRIBE)
	})
	t.Run("replaced", func(t *testing.T) {
		_, p, c := streamingChild(t)
		// Another link under relay-c's ID replaces relay-c's own.
		s, done := syncStream(t, p.cfg.GRPCAddr)
		defer done()
		if err := s.Send(subscribeFrame("relay-c", "?", 0)); err != nil {
			t.Fatal(err)
		}
		waitCut(t, c, arborv1.DisconnectReason_DISCONNECT_REASON_REPLACED, arborv1.LinkAction_LINK_ACTION_RESUBSCRIBE)
	})
}
