package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// gracefulStopTimeout bounds GracefulStop before a hard Stop.
const gracefulStopTimeout = 5 * time.Second

// childLink is one child relay attached over Sync. Its feeder goroutine
// owns the stream's Send; its ack goroutine owns Recv.
type childLink struct {
	id, site, addr string
	compression    arborv1.Compression
	state          atomic.Int32 // arborv1.LinkState
	sent           atomic.Int64 // stream offset sent up to
	// offered bounds the child's acks: the end of the bytes handed to
	// Send on this link (stored before the Send, so an ack can never
	// outrun it).
	offered        atomic.Int64
	acked          atomic.Int64
	hasAcked       atomic.Bool // an Ack arrived on this link (acked was the subscribe offset before)
	ackTime        atomic.Int64
	rawBytes       atomic.Uint64
	wireBytes      atomic.Uint64
	sharedRawBytes atomic.Uint64
	// shares: the child honours Stream.compression_reset, so it may be
	// sent a fanout's frames (fanout.go).
	shares bool

	cancel context.CancelCauseFunc // ends the link's Sync

	mu      sync.Mutex
	subtree []*arborv1.ChildAck // guarded by mu: the child's own acks from below
}

func (c *childLink) setSubtree(s []*arborv1.ChildAck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subtree = s
}

func (c *childLink) getSubtree() []*arborv1.ChildAck {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subtree
}

// linkWindow is the flow-control window, of the stream and of the
// connection, of both ends of a relay-to-relay link. gRPC's default is a
// 64 KiB window grown by BDP estimation, which costs every link a ping,
// and a window update, for about every frame it carries at a steady rate
// (a frame is what a millisecond of a busy master brings): two more writes
// and two more goroutine wake-ups on each end of the hop, in the way of
// the next frame. A fixed window as large as the estimator's own limit
// (16 MiB) sends an update every 4 MiB instead, and buffers no more than
// the estimator could let a link buffer. A child that stops reading still
// blocks its parent's Send once its window and the socket buffers are
// full; a stalled link (nothing read from the socket) blocks it as soon
// as before (the parent's write quota and socket buffers).
const linkWindow = 16 << 20

// grpcService implements arbor.v1.RelayService.
type grpcService struct {
	arborv1.UnimplementedRelayServiceServer
	r *Relay
}

var _ arborv1.RelayServiceServer = (*grpcService)(nil)

// newGRPCServer builds the gRPC server with the relay service, health and
// reflection.
func (r *Relay) newGRPCServer() (*grpc.Server, *health.Server, error) {
	creds, err := r.cfg.TLS.serverCredentials()
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer(
		grpc.Creds(creds),
		// Pings from clients at most every 5 s are fine; a peer silent for
		// 20 s after a ping is gone.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 20 * time.Second}),
		grpc.MaxRecvMsgSize(8<<20),
		grpc.InitialWindowSize(linkWindow),
		grpc.InitialConnWindowSize(linkWindow),
	)
	arborv1.RegisterRelayServiceServer(srv, &grpcService{r: r})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs, nil
}

// serveGRPC serves until ctx ends, then drains: health goes NOT_SERVING,
// GracefulStop, and a hard Stop after a timeout.
func (r *Relay) serveGRPC(ctx context.Context, srv *grpc.Server, hs *health.Server, ln net.Listener) {
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(arborv1.RelayService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			r.log.Error("grpc server", "err", err)
		}
	}()
	<-ctx.Done()
	hs.Shutdown()
	// Sync streams never end on their own; end them so GracefulStop only
	// waits for them to say goodbye.
	r.cutChildren(ErrShuttingDown)
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(gracefulStopTimeout):
		srv.Stop()
		<-stopped
	}
	<-done
}

// Status reports the relay's state.
func (g *grpcService) Status(ctx context.Context, _ *arborv1.StatusRequest) (*arborv1.StatusResponse, error) {
	return &arborv1.StatusResponse{Relay: g.r.Status()}, nil
}

// Sync serves one child relay: it answers Subscribe (or ResumeRdb) with
// Continue or a full sync, then streams frames until the child goes, the
// relay stops, or the child is cut as a slow consumer.
func (g *grpcService) Sync(stream arborv1.RelayService_SyncServer) error {
	r := g.r
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	first, err := r.recvSubscribe(stream)
	if err != nil {
		return toStatus(err)
	}
	sub, resume := first.GetSubscribe(), first.GetResumeRdb()
	if resume != nil {
		sub = resume.GetSubscribe()
	}
	if sub == nil {
		return toStatus(fmt.Errorf("the first frame of Sync must be subscribe or resume_rdb: %w", ErrProtocol))
	}
	addr := ""
	var tlsState *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr.String()
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			tlsState = &ti.State
		}
	}
	if !r.cfg.TLS.Plaintext {
		// With mutual TLS a relay is who its certificate says; without TLS
		// (--plaintext) the relay ID is taken on trust.
		if err := checkPeerIdentity(sub.GetRelayId(), tlsState); err != nil {
			r.log.Warn("child relay refused", "child", sub.GetRelayId(), "remote", addr, "err", err)
			return toStatus(err)
		}
	}
	if err := r.checkSubscribe(sub); err != nil {
		r.log.Warn("child relay refused", "child", sub.GetRelayId(), "err", err)
		return toStatus(err)
	}
	c := &childLink{
		id: sub.GetRelayId(), site: sub.GetSite(), addr: addr,
		compression: negotiate(r.linkCompression(sub.GetSite()), sub.GetAcceptedCompressions()),
		shares:      sub.GetAcceptsCompressionReset(),
	}
	// Until the child is continued or full-synced, its claimed offset
	// counts no further than what this relay holds (serveChild bounds it by
	// what it is sent).
	c.acked.Store(min(sub.GetOffset(), r.store.End()))
	c.ackTime.Store(time.Now().UnixNano())
	c.state.Store(int32(arborv1.LinkState_LINK_STATE_CONNECTING))
	c.cancel = cancel
	// The child is served on its own goroutine so that this handler can
	// return (which resets the stream and unblocks a Send stuck on flow
	// control) as soon as the link is cut. Relay.Run waits for it.
	done := make(chan error, 1)
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		if sub.GetSnapshotOnly() {
			done <- r.serveSnapshot(ctx, cancel, stream, c)
			return
		}
		done <- r.serveChild(ctx, cancel, stream, c, sub, resume)
	}()
	select {
	case err := <-done:
		return toStatus(err)
	case <-ctx.Done():
		if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
			return toStatus(cause)
		}
		return toStatus(<-done)
	}
}

// recvSubscribe waits for the first frame of a Sync, up to
// SubscribeTimeout: a peer that opens a stream and sends nothing must not
// hold it (and a handler) forever. The receiving goroutine ends when the
// handler returns, which ends the stream.
func (r *Relay) recvSubscribe(stream arborv1.RelayService_SyncServer) (*arborv1.SyncRequest, error) {
	type recv struct {
		m   *arborv1.SyncRequest
		err error
	}
	got := make(chan recv, 1)
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		m, err := stream.Recv()
		got <- recv{m, err}
	}()
	t := time.NewTimer(r.cfg.SubscribeTimeout)
	defer t.Stop()
	select {
	case g := <-got:
		return g.m, g.err
	case <-t.C:
		r.log.Warn("sync stream sent no subscribe in time; ending it", "timeout", r.cfg.SubscribeTimeout)
		return nil, fmt.Errorf("within %v: %w", r.cfg.SubscribeTimeout, errNoSubscribe)
	}
}

// serveSnapshot sends the snapshot alone (Subscribe.snapshot_only), under
// the same slow-consumer watchdog as a child's link; it cancels ctx with
// the reason before returning.
func (r *Relay) serveSnapshot(ctx context.Context, cancel context.CancelCauseFunc, stream arborv1.RelayService_SyncServer, c *childLink) error {
	log := r.log.With("child", c.id, "snapshot_only", true)
	return r.serveLink(ctx, cancel, stream, c, log, func(f *feeder, _ *sync.WaitGroup) error {
		reader, err := f.fullSync(ctx, nil)
		if err != nil {
			return err
		}
		return reader.Close()
	})
}

// serveChild answers a child's subscription and streams to it until the
// link ends; it cancels ctx with the reason before returning.
func (r *Relay) serveChild(ctx context.Context, cancel context.CancelCauseFunc, stream arborv1.RelayService_SyncServer,
	c *childLink, sub *arborv1.Subscribe, resume *arborv1.ResumeRdb) error {
	if err := r.registerChild(c, sub); err != nil {
		r.log.Warn("child relay refused", "child", c.id, "err", err)
		return err
	}
	defer r.removeChild(c)
	log := r.log.With("child", c.id, "child_site", c.site, "compression", compressionName(c.compression))
	err := r.serveLink(ctx, cancel, stream, c, log, func(f *feeder, wg *sync.WaitGroup) error {
		reader, err := f.begin(ctx, sub, resume)
		if err != nil {
			return err
		}
		// The child holds the stream up to here, no further (whatever
		// offset it claimed when it subscribed); its acks are bounded by
		// what is sent.
		c.offered.Store(reader.Pos())
		if c.acked.Load() > reader.Pos() {
			c.acked.Store(reader.Pos())
		}
		c.state.Store(int32(arborv1.LinkState_LINK_STATE_STREAMING))
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.readChildAcks(stream, c)
			if errors.Is(err, io.EOF) {
				err = errors.New("child closed the link")
			}
			cancel(err)
		}()
		return f.stream(ctx, reader)
	})
	log.Info("child relay link closed", "reason", err, "sent_offset", c.sent.Load(), "acked_offset", c.acked.Load())
	return err
}

// serveLink runs serve, which sends to the child c through a feeder in the
// link's compression, under the slow-consumer watchdog; serve's goroutines
// join wg. It cancels ctx with the reason the link ended (the cause ctx
// was cancelled with, or else serve's error) and returns that reason once
// the goroutines are done.
func (r *Relay) serveLink(ctx context.Context, cancel context.CancelCauseFunc, stream arborv1.RelayService_SyncServer,
	c *childLink, log *slog.Logger, serve func(f *feeder, wg *sync.WaitGroup) error) (err error) {
	enc, err := newFrameEncoder(c.compression, r.level)
	if err != nil {
		return fmt.Errorf("compression: %w", err)
	}
	defer enc.close()
	f := &feeder{r: r, c: c, srv: stream, enc: enc, log: log}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		cancel(err)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.watchdog(ctx, cancel)
	}()
	return serve(f, &wg)
}

// readChildAcks records the child's acks until the stream ends.
func (r *Relay) readChildAcks(stream arborv1.RelayService_SyncServer, c *childLink) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		ack := m.GetAck()
		if ack == nil {
			return fmt.Errorf("only ack frames may follow subscribe: %w", ErrProtocol)
		}
		// An ack feeds the site figures (acked offsets, bytes at risk, lag)
		// and the acks this relay passes up: one beyond what was sent on
		// this link is a lie or a bug, and the link is cut.
		if off, sent := ack.GetOffset(), c.offered.Load(); off < 0 || off > sent {
			return fmt.Errorf("ack offset %d is outside the %d bytes sent on this link: %w", off, sent, ErrProtocol)
		}
		c.acked.Store(ack.GetOffset())
		c.ackTime.Store(time.Now().UnixNano())
		c.setSubtree(boundSubtree(ack.GetSubtree(), c.offered.Load()))
		c.hasAcked.Store(true)
		r.noteChildAck()
	}
}

// boundSubtree clamps the acks of a child's subtree to [0, sent]: nothing
// below the child can hold more than was sent to it. They are clamped, not
// refused, since a grandchild's last ack may briefly be from a history the
// child has just replaced by a full sync at a lower offset.
func boundSubtree(subtree []*arborv1.ChildAck, sent int64) []*arborv1.ChildAck {
	for _, a := range subtree {
		a.AckedOffset = min(max(a.GetAckedOffset(), 0), sent)
	}
	return subtree
}
