package relay

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
	"github.com/klauspost/compress/zstd"
)

// sentFrames records what a feeder sends, in place of a child's stream.
type sentFrames struct {
	grpc.ServerStream
	mu  sync.Mutex
	got []*arborv1.SyncResponse
}

func (s *sentFrames) Recv() (*arborv1.SyncRequest, error) { return nil, io.EOF }

func (s *sentFrames) Send(m *arborv1.SyncResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, m)
	return nil
}

// testFeeder returns a feeder of r's store to a child that records what it
// is sent (uncompressed), and a reader of the store from offset from.
func testFeeder(t *testing.T, r *Relay, from int64) (*feeder, *sentFrames, *store.Reader) {
	t.Helper()
	reader, err := r.store.NewReader(r.store.State().Generation, from)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_NONE, zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	srv := &sentFrames{}
	return &feeder{r: r, c: &childLink{id: "child"}, srv: srv, enc: enc, log: r.log}, srv, reader
}

// TestFeederCutsLaggingChild: a child MaxChildLag behind the store is cut
// as a slow consumer, and told so first in a Disconnect frame whose reason
// is ErrSlowConsumer's in the Sync contract's table.
func TestFeederCutsLaggingChild(t *testing.T) {
	r := storeTestRelay(t)
	r.cfg.MaxChildLag = 100
	if _, err := r.store.Append(ingestStream(4 << 10)); err != nil {
		t.Fatal(err)
	}
	f, srv, reader := testFeeder(t, r, 0)
	if err := f.stream(context.Background(), reader); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("stream ended with %v, want ErrSlowConsumer", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.got) != 1 || srv.got[0].GetDisconnect().GetReason() != arborv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER ||
		srv.got[0].GetDisconnect().GetMessage() == "" {
		t.Fatalf("sent %v, want one Disconnect with SLOW_CONSUMER and a message", srv.got)
	}
}

// TestFeederIdleWait: the waits of a link share one context until it ends,
// at the last send plus heartbeatEvery; an ended one is replaced by one
// ending heartbeatEvery after the last send as it then stands, and the
// link's own context ending ends it.
func TestFeederIdleWait(t *testing.T) {
	f := &feeder{lastSend: time.Now()}
	defer func() { f.idleCancel() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := f.idleWait(ctx)
	if b := f.idleWait(ctx); b != a {
		t.Fatal("a second wait got a new context while the first had not ended")
	}
	if dl, ok := a.Deadline(); !ok || !dl.Equal(f.lastSend.Add(heartbeatEvery)) {
		t.Fatalf("deadline %v (set %v), want the last send plus %v, %v", dl, ok, heartbeatEvery, f.lastSend.Add(heartbeatEvery))
	}
	// It ended (its deadline, here its cancel) after a frame went out.
	f.idleCancel()
	f.lastSend = f.lastSend.Add(100 * time.Millisecond)
	c := f.idleWait(ctx)
	if c == a || c.Err() != nil {
		t.Fatalf("after the context ended: same %v, err %v; want a new live one", c == a, c.Err())
	}
	if dl, _ := c.Deadline(); !dl.Equal(f.lastSend.Add(heartbeatEvery)) {
		t.Fatalf("new deadline %v, want %v", dl, f.lastSend.Add(heartbeatEvery))
	}
	cancel()
	if err := f.idleWait(ctx).Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after the link's context ended: %v, want context.Canceled", err)
	}
}

// TestFeederIdleLinkHeartbeats: a link with nothing to send carries
// heartbeats, more than one (its wait context is made anew after each),
// and sends the stream's bytes as soon as they come.
func TestFeederIdleLinkHeartbeats(t *testing.T) {
	r := storeTestRelay(t)
	if _, err := r.store.Append(ingestStream(1 << 10)); err != nil {
		t.Fatal(err)
	}
	f, srv, reader := testFeeder(t, r, r.store.State().End)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.stream(ctx, reader) }()
	defer func() {
		cancel()
		<-done
	}()
	count := func() (heartbeats, bytes int) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for _, m := range srv.got {
			if m.GetHeartbeat() != nil {
				heartbeats++
			}
			bytes += int(m.GetStream().GetRawLen())
		}
		return heartbeats, bytes
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				h, b := count()
				t.Fatalf("no %s after 30s: %d heartbeats, %d stream bytes sent", what, h, b)
			}
		}
	}
	waitFor("second heartbeat", func() bool { h, _ := count(); return h >= 2 })
	more := ingestStream(2 << 10)
	if _, err := r.store.Append(more); err != nil {
		t.Fatal(err)
	}
	waitFor("stream bytes", func() bool { _, b := count(); return b == len(more) })
	waitFor("heartbeat after the bytes", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.got) > 0 && srv.got[len(srv.got)-1].GetHeartbeat() != nil
	})
}
