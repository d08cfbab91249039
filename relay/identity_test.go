package relay_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay"
)

// TestRelayIDBoundToCertificate: with mutual TLS a peer whose certificate
// (signed by the cluster's CA) names another relay cannot subscribe as
// that relay, and the real relay's link is not disturbed; a peer
// subscribing under the ID its certificate names is served.
func TestRelayIDBoundToCertificate(t *testing.T) {
	pki, master, a, b, rep := mutualTLSTree(t)
	syncs := func() string {
		return fmt.Sprintf("full %d partial %d", b.InfoInt(t, "stats", "arbor_upstream_full_syncs"), b.InfoInt(t, "stats", "arbor_upstream_partial_syncs"))
	}
	before := syncs()

	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	cert, key := pki.issue(t, "operator")
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	creds := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}))
	for _, tc := range []struct {
		id   string
		code codes.Code
	}{
		{"relay-b", codes.PermissionDenied}, // another relay's ID: refused
		{"operator", codes.OK},              // its own: served
	} {
		s, done := syncStream(t, a.cfg.GRPCAddr, creds)
		if err := s.Send(subscribeFrame(tc.id, "?", 0)); err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		done()
		if status.Code(err) != tc.code {
			t.Errorf("operator's certificate subscribing as %s: got %v, want %v", tc.id, err, tc.code)
		}
		if tc.code == codes.PermissionDenied && disconnectReason(err) != arborv1.DisconnectReason_DISCONNECT_REASON_IDENTITY_REFUSED {
			t.Errorf("operator's certificate subscribing as %s: got reason %v, want DISCONNECT_REASON_IDENTITY_REFUSED", tc.id, disconnectReason(err))
		}
		if tc.code == codes.OK && m.GetFullSync() == nil {
			t.Errorf("operator subscribing as itself: got %v, want a full sync", m)
		}
	}
	load(t, master, redistest.LoadOptions{SmallKeys: 300, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	if after := syncs(); after != before {
		t.Errorf("relay-b's syncs with relay-a: %s after the impostor, %s before; its link was disturbed", after, before)
	}
}

// TestChildAcksBounded: a child's ack beyond what was sent on its link cuts
// the link as a protocol error; acks of its subtree beyond it are clamped,
// so the status figures never show bytes the parent did not send.
func TestChildAcksBounded(t *testing.T) {
	master := redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 300, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.FutureOffsetWait = 5 * time.Second })
	var st *arborv1.RelayStatus
	redistest.WaitFor(t, 20*time.Second, func() error {
		if st = a.status(t); st.GetStoredOffset() == 0 {
			return errors.New("relay-a holds no data yet")
		}
		return nil
	})
	continued := func(t *testing.T, id string) (arborv1.RelayService_SyncClient, func(), int64) {
		t.Helper()
		s, done := syncStream(t, a.cfg.GRPCAddr)
		if err := s.Send(subscribeFrame(id, st.GetReplid(), st.GetStoredOffset())); err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil || m.GetContinue() == nil {
			t.Fatalf("subscribe at the stored offset: got %v, %v, want Continue", m, err)
		}
		return s, done, m.GetContinue().GetOffset()
	}
	ack := func(off int64, subtree ...*arborv1.ChildAck) *arborv1.SyncRequest {
		return &arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Ack{Ack: &arborv1.Ack{Offset: off, Subtree: subtree}}}
	}

	t.Run("own ack beyond sent", func(t *testing.T) {
		s, done, off := continued(t, "liar")
		defer done()
		if err := s.Send(ack(off + 1<<30)); err != nil {
			t.Fatal(err)
		}
		err := recvUntilEnd(s)
		if status.Code(err) != codes.InvalidArgument || disconnectReason(err) != arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR {
			t.Fatalf("link after a bogus ack ended with %v (reason %v), want InvalidArgument with DISCONNECT_REASON_PROTOCOL_ERROR", err, disconnectReason(err))
		}
	})
	t.Run("subscribe claim beyond stored", func(t *testing.T) {
		// A future offset is waited for (future-offset-wait); meanwhile
		// the claimed offset must not show as acked.
		s, done := syncStream(t, a.cfg.GRPCAddr)
		defer done()
		if err := s.Send(subscribeFrame("claimer", st.GetReplid(), st.GetStoredOffset()+1<<30)); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 20*time.Second, func() error {
			rs := a.status(t)
			for _, c := range rs.GetChildren() {
				if c.GetId() != "claimer" {
					continue
				}
				if c.GetAckedOffset() > rs.GetStoredOffset() {
					t.Fatalf("claimer acked offset %d while waiting, beyond relay-a's stored %d", c.GetAckedOffset(), rs.GetStoredOffset())
				}
				return nil
			}
			return errors.New("claimer not among relay-a's children yet")
		})
	})
	t.Run("subtree ack beyond sent", func(t *testing.T) {
		s, done, off := continued(t, "boaster")
		defer done()
		if err := s.Send(ack(off, &arborv1.ChildAck{Id: "ghost", Site: "Z", Kind: arborv1.ChildKind_CHILD_KIND_RELAY, AckedOffset: off + 1<<40})); err != nil {
			t.Fatal(err)
		}
		redistest.WaitFor(t, 20*time.Second, func() error {
			for _, sa := range a.status(t).GetSiteAcks() {
				if sa.GetSite() != "Z" {
					continue
				}
				if stored := a.status(t).GetStoredOffset(); sa.GetAckedOffset() > stored {
					t.Fatalf("site Z acked offset %d, beyond relay-a's stored %d", sa.GetAckedOffset(), stored)
				}
				return nil
			}
			return errors.New("site Z not in relay-a's site acks yet")
		})
	})
}

// TestMutualSubscribeNeverBothEstablished: two relays told to follow each
// other at the same moment never both stream from the other (a cycle that
// would carry no data and look healthy); at most one is established and
// the other is refused with CYCLE.
func TestMutualSubscribeNeverBothEstablished(t *testing.T) {
	master := redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 200, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master))
	b := treeRelay(t, "relay-b", "B", upstreamOf(master))
	streamingFrom := func(tr *testRelay, up string) bool {
		st := tr.status(t)
		return st.GetUpstream() == up && st.GetLinkState() == arborv1.LinkState_LINK_STATE_STREAMING
	}
	following := func(up string, relays ...*testRelay) func() error {
		return func() error {
			for _, tr := range relays {
				if !streamingFrom(tr, up) {
					return fmt.Errorf("%s not streaming from %s", tr.cfg.ID, up)
				}
			}
			return nil
		}
	}
	redistest.WaitFor(t, 30*time.Second, following(upstreamOf(master), a, b))
	const rounds = 5
	for round := range rounds {
		// Both switch at once, each to the other.
		start := make(chan struct{})
		errs := make(chan error, 2)
		for _, p := range [][2]*testRelay{{a, b}, {b, a}} {
			go func() {
				<-start
				errs <- p[0].relay().SetUpstream(p[1].arborURL())
			}()
		}
		close(start)
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("SetUpstream: %v", err)
			}
		}
		// Watch until the race is decided, a relay refused with CYCLE, and
		// long enough (3 s) for the sessions to be retried; at most 30 s.
		refused := false
		for start := time.Now(); !refused || time.Since(start) < 3*time.Second; time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("round %d: neither relay was refused with CYCLE within 30 s (last errors %q, %q)",
					round, a.status(t).GetLastError(), b.status(t).GetLastError())
			}
			if streamingFrom(a, b.arborURL()) && streamingFrom(b, a.arborURL()) {
				t.Fatalf("round %d: relay-a and relay-b both stream from each other", round)
			}
			for _, tr := range []*testRelay{a, b} {
				refused = refused || strings.Contains(tr.status(t).GetLastError(), "CYCLE")
			}
		}
		a.setUpstream(t, upstreamOf(master))
		b.setUpstream(t, upstreamOf(master))
		redistest.WaitFor(t, 30*time.Second, following(upstreamOf(master), a, b))
	}
}
