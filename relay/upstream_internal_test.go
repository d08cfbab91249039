package relay

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
)

// TestBlockedAckEndsSession: a master that keeps sending but stops reading
// blocks the relay's ACK write; when that write fails the session ends at
// once (the relay reconnects), rather than reading on with no acks. The
// link is a net.Pipe, whose writes block until the other side reads.
func TestBlockedAckEndsSession(t *testing.T) {
	r := storeTestRelay(t)
	relaySide, masterSide := net.Pipe()
	defer masterSide.Close()
	u := &upstreamConn{conn: relaySide, br: bufio.NewReader(relaySide), timeout: time.Second}
	u.rd = resp.NewReader(u.br)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.stream(ctx, u) }()

	ping := resp.AppendCommand(nil, "PING")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	bound := time.After(20 * time.Second)
	for {
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("session ended with %v, want the ACK write's deadline", err)
			}
			return
		case <-bound:
			t.Fatal("the session reads on 20 s after its ACK write failed")
		case <-tick.C:
			// The master is alive on the read side: a PING every 100 ms.
			masterSide.SetWriteDeadline(time.Now().Add(time.Second))
			masterSide.Write(ping)
		}
	}
}

// TestUpstreamLinkUpWhileFullSync: a link receiving a full sync from a
// parent relay is up for a mover (its chunks keep idle low): a transfer of
// many seconds is no reason to leave the parent at the down bound. A link
// connecting is down, and so is one waiting for a Redis master's RDB (it
// sends a newline a second meanwhile).
func TestUpstreamLinkUpWhileFullSync(t *testing.T) {
	for _, c := range []struct {
		kind  string
		state string
		up    bool
	}{
		{UpstreamRelay, "connect", false}, {UpstreamRelay, "sync", true}, {UpstreamRelay, "connected", true},
		{UpstreamRedis, "connecting", false}, {UpstreamRedis, "sync", false}, {UpstreamRedis, "connected", true},
	} {
		r := &Relay{upstream: Upstream{Kind: c.kind}}
		r.link.set(c.state)
		if up, _ := r.UpstreamLink(); up != c.up {
			t.Errorf("link %s, upstream %s://: up %v, want %v", c.state, c.kind, up, c.up)
		}
	}
}
