package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

const (
	// rdbChunkSize is the size of the RDB chunks sent to child relays; a
	// cut transfer resumes at the last chunk the child stored.
	rdbChunkSize = 1 << 20
	// heartbeatEvery is how often an idle child link carries a Heartbeat.
	// A child judges its parent hung when the link is silent past a bound
	// of about a second (the high-availability runner's --silence), so
	// an idle but live link must speak well within it.
	heartbeatEvery = 250 * time.Millisecond
	// gracefulStopTimeout bounds GracefulStop before a hard Stop.
	gracefulStopTimeout = 5 * time.Second
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errShuttingDown = errors.New("relay shutting down")

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
	for _, c := range r.childList() {
		c.cancel(errShuttingDown)
	}
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
		return status.Error(codes.InvalidArgument, "the first frame of Sync must be subscribe or resume_rdb")
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
		compression: negotiate(r.compression, sub.GetAcceptedCompressions()),
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
		return nil, &cutError{reason: arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR,
			msg: fmt.Sprintf("no subscribe within %v", r.cfg.SubscribeTimeout), err: errNoSubscribe}
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
			if err == nil || errors.Is(err, io.EOF) {
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
	enc, err := newFrameEncoder(c.compression)
	if err != nil {
		return status.Errorf(codes.Internal, "compression: %v", err)
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

// errNoSubscribe: a Sync stream sent no subscription within
// SubscribeTimeout.
var errNoSubscribe = errors.New("no subscribe in time")

// cutError cuts a child relay's link; it carries the typed reason, which
// toStatus sends in the status (message and details). err, when set, is
// the domain error behind the cut.
type cutError struct {
	reason arborv1.DisconnectReason
	msg    string
	err    error
}

func (e *cutError) Error() string { return e.msg }

func (e *cutError) Unwrap() error { return e.err }

// toStatus maps the errors that end a Sync to gRPC status codes: the one
// table at this edge. A cut carries its DisconnectReason as a status
// detail (arbor.v1.Disconnect), so a child need not read the message.
func toStatus(err error) error {
	var cut *cutError
	var st interface{ GRPCStatus() *status.Status }
	switch {
	case err == nil:
		return nil
	case errors.As(err, &st):
		return err
	case errors.As(err, &cut):
		code := codes.ResourceExhausted // slow consumer, backlog exceeded, replid changed
		switch {
		case errors.Is(err, errNoSubscribe):
			code = codes.DeadlineExceeded
		case cut.reason == arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR:
			code = codes.InvalidArgument
		case cut.reason == arborv1.DisconnectReason_DISCONNECT_REASON_CYCLE:
			code = codes.FailedPrecondition
		}
		s := status.Newf(code, "%s: %s", cut.reason, cut.msg)
		if d, derr := s.WithDetails(&arborv1.Disconnect{Reason: cut.reason, Message: cut.msg}); derr == nil {
			s = d
		}
		return s.Err()
	case errors.As(err, new(*identityError)):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, store.ErrReset):
		return status.Error(codes.Aborted, "history replaced by a full sync; subscribe again")
	case errors.Is(err, store.ErrTrimmed):
		return status.Error(codes.OutOfRange, "fell behind the backlog; subscribe again for a full sync")
	case errors.Is(err, store.ErrCorrupt):
		return status.Errorf(codes.DataLoss, "backlog record failed its check: %v", err)
	case errors.Is(err, store.ErrHistoryDiverged):
		// A child relay recognises "unknown history" and subscribes again
		// for a full sync.
		return status.Errorf(codes.FailedPrecondition, "unknown history (%v); subscribe with replid \"?\" for a full sync", err)
	case errors.Is(err, store.ErrFuture):
		return status.Errorf(codes.OutOfRange, "offset ahead of this relay's store (%v)", err)
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, errShuttingDown):
		return status.Error(codes.Unavailable, "relay shutting down")
	}
	return status.Error(codes.Unavailable, err.Error())
}

// checkSubscribe refuses malformed subscriptions and cycles.
func (r *Relay) checkSubscribe(sub *arborv1.Subscribe) error {
	id := sub.GetRelayId()
	switch {
	case id == "":
		return status.Error(codes.InvalidArgument, "subscribe: relay_id is required")
	case sub.GetOffset() < 0:
		return status.Errorf(codes.InvalidArgument, "subscribe: offset %d is negative", sub.GetOffset())
	case !validReplid(sub.GetReplid()):
		return status.Errorf(codes.InvalidArgument, "subscribe: replid %q is neither empty, \"?\" nor 40 hex digits", sub.GetReplid())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cycleLocked(sub)
}

// cycleLocked refuses a subscriber that would close a cycle: the relay
// itself, a relay above this one, or one this relay replicates through.
// r.mu must be held; registerChild checks again under the same hold as it
// registers the link, and a child checks its new chain against its own
// children under its lock (setChain), so two relays subscribing to each
// other at the same moment cannot both be established.
func (r *Relay) cycleLocked(sub *arborv1.Subscribe) error {
	id := sub.GetRelayId()
	var msg string
	switch {
	case id == r.cfg.ID:
		msg = fmt.Sprintf("relay %s cannot follow itself", id)
	case slices.Contains(r.chain, id):
		msg = fmt.Sprintf("relay %s is upstream of %s (chain %v); it cannot follow it", id, r.cfg.ID, r.chain)
	case slices.Contains(sub.GetDownstreamRelayIds(), r.cfg.ID):
		msg = fmt.Sprintf("%s replicates through %s; %s cannot follow its own descendant", r.cfg.ID, id, id)
	default:
		return nil
	}
	return &cutError{reason: arborv1.DisconnectReason_DISCONNECT_REASON_CYCLE, msg: msg}
}

func validReplid(s string) bool {
	if s == "" || s == "?" {
		return true
	}
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// feeder sends one child relay its frames. It is the only sender on the
// stream.
type feeder struct {
	r       *Relay
	c       *childLink
	srv     arborv1.RelayService_SyncServer
	enc     *frameEncoder
	log     interface{ Info(string, ...any) }
	sending atomic.Int64 // unix nanos a Send began, 0 when not in one
	// nextTrace is when the root may sample a frame of this link next
	// (unix nanos); owned by stream.
	nextTrace int64

	// Owned by stream:
	buf      []byte
	gen      uint64 // generation of the history the link streams
	known    string // the replication ID the child knows (of the bytes sent)
	lastSend time.Time
	// resetNext: the link's next own frame begins a new compression stream
	// (it was sending a fanout's frames).
	resetNext bool
	// fo is the fanout of the link's codec when the child honours resets.
	// member: the link is one of fo's members. While joining is set it
	// still sends its own frames, up to joining.at; then the fanout's,
	// frame seq next.
	fo         *fanout
	member     bool
	joining    *joinPoint
	seq        uint64
	leftShared int       // times the link fell behind the shared frames and went on alone
	joinAfter  time.Time // after falling behind, the link joins again only once it sends past this
}

func (f *feeder) send(m *arborv1.SyncResponse) error {
	f.sending.Store(time.Now().UnixNano())
	err := f.srv.Send(m)
	f.sending.Store(0)
	return err
}

// watchdog cuts the child when one Send blocks longer than
// SlowConsumerTimeout (the child stopped reading; gRPC flow control holds
// the sender).
func (f *feeder) watchdog(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(min(time.Second, f.r.cfg.SlowConsumerTimeout/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if began := f.sending.Load(); began != 0 && time.Since(time.Unix(0, began)) > f.r.cfg.SlowConsumerTimeout {
			f.log.Info("child relay accepts nothing; cutting it as a slow consumer", "timeout", f.r.cfg.SlowConsumerTimeout)
			cancel(&cutError{
				reason: arborv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER,
				msg:    fmt.Sprintf("child %s accepted nothing for %v", f.c.id, f.r.cfg.SlowConsumerTimeout),
			})
			return
		}
	}
}

// begin answers the subscription: Continue, or a full sync (resumed at a
// chunk when ResumeRdb names the current snapshot). It returns a reader of
// the stream from where the child continues.
func (f *feeder) begin(ctx context.Context, sub *arborv1.Subscribe, resume *arborv1.ResumeRdb) (*store.Reader, error) {
	r := f.r
	st := r.store.State()
	if !st.HasData() {
		// A relay that has just started (a tree coming up) gets its data
		// in a moment: wait for it rather than send the child into its
		// reconnect backoff.
		wctx, cancel := context.WithTimeout(ctx, r.cfg.FutureOffsetWait)
		st, _ = r.store.WaitFor(wctx, store.State.HasData)
		cancel()
		if !st.HasData() {
			return nil, status.Errorf(codes.Unavailable, "relay %s holds no data yet (waited %v)", r.cfg.ID, r.cfg.FutureOffsetWait)
		}
	}
	replid, off := sub.GetReplid(), sub.GetOffset()
	if resume == nil && replid != "" && replid != "?" {
		// The child holds off bytes of replid's history: the same rule,
		// and the same wait for an offset ahead of the store, as for a
		// Redis replica (continueAt).
		reader, st, err := r.continueAt(ctx, replid, off, nil)
		switch {
		case err == nil:
			// st is the state the reader serves from: the child is told
			// the IDs of the bytes it will get, and any later switch
			// reaches it as a ReplidSwitch at its offset.
			err = f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_Continue{Continue: &arborv1.Continue{
				Replid: st.Replid, Replid2: st.Replid2, SecondOffset: st.SecondOffset - 1, Offset: off,
				UpstreamRelayIds: r.chainForChildren(),
			}}})
			if err != nil {
				reader.Close()
				return nil, err
			}
			r.stats.partialOK.Add(1)
			f.log.Info("child relay continues", "replid", st.Replid, "offset", off, "backlog_bytes", st.End-off)
			return reader, nil
		case errors.Is(err, store.ErrOffsetNotCovered):
			r.stats.partialErr.Add(1)
			f.log.Info("child relay outside the backlog; full sync", "offset", off, "window_start", st.Start)
		default:
			// ErrHistoryDiverged and ErrFuture are refusals the child acts
			// on (toStatus).
			return nil, err
		}
	}
	return f.fullSync(ctx, resume)
}

// transferID names a snapshot for resumable transfers: a child keeps the
// chunks it has only of the very same bytes.
func transferID(s store.Snapshot) string {
	return fmt.Sprintf("%s-%d-%d-%016x-%08x", s.Replid, s.Offset, s.Size, s.CRC64, s.CRC32C)
}

// fullSync sends the snapshot in checksummed, compressed chunks and returns
// a reader of the stream from the snapshot's offset.
func (f *feeder) fullSync(ctx context.Context, resume *arborv1.ResumeRdb) (*store.Reader, error) {
	r := f.r
	fs, err := r.store.OpenFullSync()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "no snapshot to send: %v", err)
	}
	defer fs.File.Close()
	f.c.state.Store(int32(arborv1.LinkState_LINK_STATE_FULL_SYNC))
	id := transferID(fs.Snapshot)
	start := uint32(0)
	if resume != nil && resume.GetTransferId() == id && int64(resume.GetNextIndex())*rdbChunkSize <= fs.Snapshot.Size {
		start = resume.GetNextIndex()
	}
	err = f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_FullSync{FullSync: &arborv1.FullSync{
		Replid: fs.Replid, Offset: fs.Snapshot.Offset, RdbSize: fs.Snapshot.Size, RdbVersion: int32(fs.Snapshot.RDBVersion),
		ChunkSize: rdbChunkSize, TransferId: id, StartIndex: start, UpstreamRelayIds: r.chainForChildren(),
		Replid2: fs.Replid2, SecondOffset: fs.SecondOffset - 1,
	}}})
	if err != nil {
		fs.Stream.Close()
		return nil, err
	}
	r.stats.fullSyncs.Add(1)
	f.log.Info("full sync to child relay", "replid", fs.Replid, "offset", fs.Snapshot.Offset, "rdb_bytes", fs.Snapshot.Size, "from_chunk", start)
	began := time.Now()
	buf := make([]byte, rdbChunkSize)
	count := uint32((fs.Snapshot.Size + rdbChunkSize - 1) / rdbChunkSize)
	var whole uint32 // CRC-32C of the chunks read, when sent from the first
	for i := start; i < count; i++ {
		n, err := fs.File.ReadAt(buf, int64(i)*rdbChunkSize)
		if err != nil && !(errors.Is(err, io.EOF) && int64(i)*rdbChunkSize+int64(n) == fs.Snapshot.Size) {
			fs.Stream.Close()
			return nil, status.Errorf(codes.Internal, "read snapshot: %v", err)
		}
		raw := buf[:n]
		whole = crc32.Update(whole, castagnoli, raw)
		wire, err := f.enc.encode(raw)
		if err != nil {
			fs.Stream.Close()
			return nil, status.Errorf(codes.Internal, "compress: %v", err)
		}
		f.c.rawBytes.Add(uint64(n))
		f.c.wireBytes.Add(uint64(len(wire)))
		r.stats.rawBytes.Add(uint64(n))
		r.stats.wireBytes.Add(uint64(len(wire)))
		err = f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_RdbChunk{RdbChunk: &arborv1.RdbChunk{
			Index: i, Data: wire, Crc32C: crc32.Checksum(raw, castagnoli), Compression: f.enc.kind, RawLen: uint32(n),
		}}})
		if err != nil {
			fs.Stream.Close()
			return nil, err
		}
		if ctx.Err() != nil {
			fs.Stream.Close()
			return nil, ctx.Err()
		}
	}
	if start == 0 && whole != fs.Snapshot.CRC32C {
		// The chunks carry CRCs of what was read, so only the checksum
		// kept since the RDB arrived tells the child (which refuses it).
		r.log.Error("stored snapshot no longer matches its checksum; the child will refuse it", "child", f.c.id,
			"file", fs.Snapshot.File, "crc32c", fmt.Sprintf("%08x", whole), "want", fmt.Sprintf("%08x", fs.Snapshot.CRC32C))
	}
	if err := f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_FullSyncEnd{FullSyncEnd: &arborv1.FullSyncEnd{
		RdbCrc64: fs.Snapshot.CRC64, ChunkCount: count, RdbCrc32C: &fs.Snapshot.CRC32C,
	}}}); err != nil {
		fs.Stream.Close()
		return nil, err
	}
	f.log.Info("RDB sent to child relay", "rdb_bytes", fs.Snapshot.Size, "chunks", count-start, "seconds", time.Since(began).Seconds())
	return fs.Stream, nil
}

// stream sends the stream from reader in frames batched by size and time,
// heartbeats when idle, and replid switches at their exact offset. It owns
// reader. A link whose child honours compression resets sends a fanout's
// frames while it keeps up (fanout.go) and its own otherwise.
func (f *feeder) stream(ctx context.Context, reader *store.Reader) error {
	r := f.r
	f.buf = make([]byte, r.cfg.BatchBytes)
	f.gen, f.known = reader.Generation(), reader.Replid()
	f.c.sent.Store(reader.Pos())
	if f.c.shares && f.enc.kind != arborv1.Compression_COMPRESSION_NONE {
		f.fo = r.fanoutFor(f.enc.kind)
	}
	defer func() {
		if reader != nil {
			reader.Close()
		}
		if f.member {
			f.fo.leave()
		}
	}()
	f.lastSend = time.Now()
	for {
		pos := f.c.sent.Load()
		if lag := r.store.End() - pos; lag > r.cfg.MaxChildLag {
			f.disconnect(arborv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER, fmt.Sprintf("%d bytes behind, bound %d", lag, r.cfg.MaxChildLag))
			return &cutError{reason: arborv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER,
				msg: fmt.Sprintf("child %s fell %d bytes behind (bound %d)", f.c.id, lag, r.cfg.MaxChildLag)}
		}
		if f.member && f.joining == nil {
			err := f.sharedStep(ctx)
			if !errors.Is(err, errLeftFanout) {
				if err != nil {
					return err
				}
				continue
			}
			// Behind the shared frames, or the fanout started over: go on
			// alone from here, from a new compression stream.
			f.fo.leave()
			f.member = false
			f.leftShared++
			f.joinAfter = time.Now().Add(f.fo.rejoinDelay)
			if reader, err = r.store.NewReaderAs(f.gen, f.c.sent.Load(), f.known); err != nil {
				if errors.Is(err, store.ErrOutOfRange) {
					f.disconnect(arborv1.DisconnectReason_DISCONNECT_REASON_BACKLOG_EXCEEDED, "fell behind the backlog")
				}
				return err
			}
			f.resetNext = true
			continue
		}
		if err := f.ownStep(ctx, reader); err != nil {
			return err
		}
		if f.fo == nil {
			continue
		}
		if !f.member && f.lastSend.After(f.joinAfter) {
			// Join the fanout at its next frame if it is at or a little
			// ahead of this link (or serves nobody yet).
			jp, ok, err := f.fo.join(f.gen, reader.Pos(), f.known)
			if err != nil {
				return err
			}
			if ok {
				f.member, f.joining = true, &jp
			}
		}
		if jp := f.joining; jp != nil && reader.Pos() == jp.at {
			f.joining = nil
			if f.known != jp.replid {
				// A replid switch at the join point that the child has
				// not been sent (or the fanout will send again): stay
				// alone until the next try.
				f.fo.leave()
				f.member = false
				continue
			}
			// Sent everything before the fanout's first frame for this
			// link: from here on, its frames.
			f.seq = jp.seq
			reader.Close()
			reader = nil
		}
	}
}

// ownStep reads, compresses and sends one frame of the link's own (or a
// heartbeat when the stream is idle, or a replid switch). While the link
// is joining a fanout it reads no further than the fanout's first frame.
func (f *feeder) ownStep(ctx context.Context, reader *store.Reader) error {
	r := f.r
	buf := f.buf
	if f.joining != nil {
		buf = buf[:min(int64(len(buf)), f.joining.at-reader.Pos())]
	}
	var n int
	var pending *store.ReplidSwitchError
	var err error
	if reader.Buffered() > 0 {
		// Busy stream: no wait, so no heartbeat timer for this read.
		n, pending, err = r.readBatch(ctx, reader, buf)
	} else {
		waitCtx, cancel := context.WithTimeout(ctx, heartbeatEvery)
		n, pending, err = r.readBatch(waitCtx, reader, buf)
		cancel()
	}
	var sw *store.ReplidSwitchError
	switch {
	case errors.As(err, &sw):
		return f.sendSwitch(sw)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return f.heartbeat()
	case errors.Is(err, store.ErrTrimmed):
		f.disconnect(arborv1.DisconnectReason_DISCONNECT_REASON_BACKLOG_EXCEEDED, "fell behind the backlog")
		return err
	case err != nil:
		return err
	}
	start := reader.Pos() - int64(n)
	if f.resetNext {
		f.enc.reset()
	}
	wire, err := f.enc.encode(buf[:n])
	if err != nil {
		return err
	}
	origin, _ := r.timeline.originOf(start + int64(n) - 1)
	if err := f.sendFrame(&sharedFrame{start: start, rawLen: n, data: wire, reset: f.resetNext, origin: origin}, false); err != nil {
		return err
	}
	f.resetNext = false
	if pending != nil {
		return f.sendSwitch(pending)
	}
	return nil
}

// sharedStep sends the link's next frame of the fanout, or a heartbeat
// when the stream is idle. errLeftFanout means the link must go on alone.
func (f *feeder) sharedStep(ctx context.Context) error {
	fr, ok, busy, err := f.fo.frame(f.seq)
	switch {
	case ok || err != nil:
	case busy:
		// Bytes are waiting: no heartbeat timer for this frame.
		fr, err = f.fo.next(ctx, f.seq)
	default:
		waitCtx, cancel := context.WithTimeout(ctx, heartbeatEvery)
		fr, err = f.fo.next(waitCtx, f.seq)
		cancel()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return f.heartbeat()
	case err != nil:
		return err
	}
	if fr.start != f.c.sent.Load() {
		// Not where this link is: never send it (the child would refuse
		// it); go on alone.
		return errLeftFanout
	}
	f.seq++
	if fr.sw != nil {
		return f.sendSwitch(fr.sw)
	}
	return f.sendFrame(fr, true)
}

// sendFrame sends one stream frame and counts it.
func (f *feeder) sendFrame(fr *sharedFrame, shared bool) error {
	r := f.r
	frame := &arborv1.Stream{StartOffset: fr.start, Data: fr.data, Compression: f.enc.kind, RawLen: uint32(fr.rawLen),
		OriginTimeUnixNano: fr.origin, CompressionReset: fr.reset}
	span := f.traceFrame(frame) // nil unless this frame is sampled
	f.c.offered.Store(fr.start + int64(fr.rawLen))
	err := f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_Stream{Stream: frame}})
	endSpan(span, err)
	if err != nil {
		return err
	}
	f.lastSend = time.Now()
	f.c.sent.Store(fr.start + int64(fr.rawLen))
	f.c.rawBytes.Add(uint64(fr.rawLen))
	f.c.wireBytes.Add(uint64(len(fr.data)))
	r.stats.rawBytes.Add(uint64(fr.rawLen))
	r.stats.wireBytes.Add(uint64(len(fr.data)))
	if shared {
		f.c.sharedRawBytes.Add(uint64(fr.rawLen))
		r.stats.sharedRawBytes.Add(uint64(fr.rawLen))
	}
	return nil
}

// heartbeat tells an idle child the link is alive, at most once per
// heartbeatEvery.
func (f *feeder) heartbeat() error {
	if time.Since(f.lastSend) < heartbeatEvery {
		return nil
	}
	err := f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_Heartbeat{Heartbeat: &arborv1.Heartbeat{
		MasterOffset: f.r.store.End(), OriginTimeUnixNano: time.Now().UnixNano(),
	}}})
	f.lastSend = time.Now()
	return err
}

// sendSwitch passes a replication ID switch on at its exact offset; a
// reader that is past it (several switches in a row) makes the child start
// over instead.
func (f *feeder) sendSwitch(sw *store.ReplidSwitchError) error {
	if sw.Pos != sw.At {
		return &cutError{reason: arborv1.DisconnectReason_DISCONNECT_REASON_REPLID_CHANGED,
			msg: fmt.Sprintf("replication id changed at %d, behind this link at %d; subscribe again", sw.At, sw.Pos)}
	}
	err := f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_ReplidSwitch{ReplidSwitch: &arborv1.ReplidSwitch{
		NewReplid: sw.Replid, AtOffset: sw.At,
	}}})
	if err == nil {
		f.known = sw.Replid
	}
	return err
}

// disconnect tells the child why it is cut, best effort (the stream may be
// the very thing that is stuck).
func (f *feeder) disconnect(reason arborv1.DisconnectReason, msg string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.srv.Send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_Disconnect{Disconnect: &arborv1.Disconnect{Reason: reason, Message: msg}}})
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
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
			return status.Error(codes.InvalidArgument, "only ack frames may follow subscribe")
		}
		// An ack feeds the site figures (acked offsets, bytes at risk, lag)
		// and the acks this relay passes up: one beyond what was sent on
		// this link is a lie or a bug, and the link is cut.
		if off, sent := ack.GetOffset(), c.offered.Load(); off < 0 || off > sent {
			return &cutError{reason: arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR,
				msg: fmt.Sprintf("ack offset %d is outside the %d bytes sent on this link", off, sent)}
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

// registerChild registers c unless sub would close a cycle (checked under
// the same hold of r.mu, before the child is told its chain); an older link
// of the same relay (left half-open by a cut, say) is ended, since the
// child has moved on to c.
func (r *Relay) registerChild(c *childLink, sub *arborv1.Subscribe) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cycleLocked(sub); err != nil {
		return err
	}
	for _, o := range r.children {
		if o.id == c.id {
			o.cancel(errors.New("replaced by a new link from the same relay"))
		}
	}
	r.children = append(r.children, c)
	return nil
}

func (r *Relay) removeChild(c *childLink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.children = slices.DeleteFunc(r.children, func(o *childLink) bool { return o == c })
}

func (r *Relay) childList() []*childLink {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.children)
}
