package relay

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"google.golang.org/grpc"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
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

// TestFeederCutsLaggingChild: a child MaxChildLag behind the store is cut
// as a slow consumer, and told so first in a Disconnect frame whose reason
// is ErrSlowConsumer's in the Sync contract's table.
func TestFeederCutsLaggingChild(t *testing.T) {
	r := storeTestRelay(t)
	r.cfg.MaxChildLag = 100
	if _, err := r.store.Append(ingestStream(4 << 10)); err != nil {
		t.Fatal(err)
	}
	reader, err := r.store.NewReader(r.store.State().Generation, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := &sentFrames{}
	enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_NONE, zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	f := &feeder{r: r, c: &childLink{id: "child"}, srv: srv, enc: enc, log: r.log}
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
