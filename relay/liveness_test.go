package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// disconnectReason reads the typed reason a parent put in the status that
// ended a Sync.
func disconnectReason(err error) arborv1.DisconnectReason {
	for _, d := range status.Convert(err).Details() {
		if dc, ok := d.(*arborv1.Disconnect); ok {
			return dc.GetReason()
		}
	}
	return arborv1.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED
}

// recvUntilEnd drains a Sync stream and returns the error that ended it.
func recvUntilEnd(s arborv1.RelayService_SyncClient) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// TestSubscribeDeadline: a peer that opens a Sync stream and sends nothing
// is cut after --subscribe-timeout with a typed reason.
func TestSubscribeDeadline(t *testing.T) {
	master := redistest.Start(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.SubscribeTimeout = time.Second })
	s, done := syncStream(t, a.cfg.GRPCAddr)
	defer done()
	// syncStream's context ends after 30 s: the relay must end the stream
	// long before, with its own status.
	err := recvUntilEnd(s)
	if status.Code(err) != codes.DeadlineExceeded || disconnectReason(err) != arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR {
		t.Fatalf("silent stream ended with %v (reason %v), want DeadlineExceeded with DISCONNECT_REASON_PROTOCOL_ERROR", err, disconnectReason(err))
	}
	// The relay still serves.
	if a.status(t).GetId() != "relay-a" {
		t.Error("relay-a Status after the cut")
	}
}

// TestSlowChildCutDuringSnapshot: a child that subscribes for a full sync
// (or a snapshot alone) and never reads is cut as a slow consumer while the
// snapshot is being sent.
func TestSlowChildCutDuringSnapshot(t *testing.T) {
	master := redistest.Start(t, "--rdbcompression", "no")
	// ~48 MiB of snapshot: far more than gRPC's flow-control windows and
	// the socket buffers hold.
	if err := master.Client().Do(context.Background(), "DEBUG", "POPULATE", 48000, "key", 1024).Err(); err != nil {
		t.Fatal(err)
	}
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.SlowConsumerTimeout = time.Second })
	redistest.WaitFor(t, 60*time.Second, func() error {
		if a.status(t).GetSnapshot().GetSizeBytes() < 40<<20 {
			return errors.New("relay-a holds no snapshot yet")
		}
		return nil
	})
	for _, snapshotOnly := range []bool{false, true} {
		id := fmt.Sprintf("stuck-snapshot-only-%v", snapshotOnly)
		t.Run(id, func(t *testing.T) {
			s, done := syncStream(t, a.cfg.GRPCAddr)
			defer done()
			sub := subscribeFrame(id, "?", 0)
			sub.GetSubscribe().AcceptedCompressions = []arborv1.Compression{arborv1.Compression_COMPRESSION_NONE}
			sub.GetSubscribe().SnapshotOnly = snapshotOnly
			if err := s.Send(sub); err != nil {
				t.Fatal(err)
			}
			redistest.WaitFor(t, 25*time.Second, func() error {
				if a.logLine("cutting it as a slow consumer", "child="+id+" ") == "" {
					return errors.New("no slow-consumer cut of " + id + " yet")
				}
				return nil
			})
			err := recvUntilEnd(s)
			if errors.Is(err, io.EOF) || status.Code(err) != codes.ResourceExhausted ||
				disconnectReason(err) != arborv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER {
				t.Fatalf("stuck child's stream ended with %v (reason %v), want ResourceExhausted with DISCONNECT_REASON_SLOW_CONSUMER", err, disconnectReason(err))
			}
		})
	}
}
