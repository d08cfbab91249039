package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"
	"time"

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
)

// castagnoli is the CRC-32C table of the RDB chunks and their end-to-end
// checksum.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// feeder sends one child relay its frames. It is the only sender on the
// stream.
//
// Its stream frames come in one of two modes (feedMode): its own, read
// from the store and compressed for this link alone (ownFrames), or those
// of the fanout of its codec, compressed once for every link that keeps up
// (sharedFrames, fanout.go). A link starts on its own frames, joins the
// fanout when it is at or a little behind it, and goes back to its own
// when it falls behind the fanout's queue.
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
	mode     feedMode
	own      ownFrames    // the own-frames mode's state (mode == feedOwn)
	shared   sharedFrames // the shared-frames mode's state (mode == feedShared)
	// fo is the fanout of the link's codec when the child honours resets
	// (nil: the link only ever sends its own frames).
	fo         *fanout
	leftShared int       // times the link fell behind the shared frames and went on alone
	joinAfter  time.Time // after falling behind, the link joins again only once it sends past this
	// idle is the context of the link's waits for stream bytes (idleWait),
	// idleCancel its cancel.
	idle       context.Context
	idleCancel context.CancelFunc
}

// feedMode is where a feeder's stream frames come from.
type feedMode int

const (
	// feedOwn: the link reads the store and compresses its frames itself.
	feedOwn feedMode = iota
	// feedShared: the link sends the frames of its fanout.
	feedShared
)

// ownFrames is a feeder's state while it sends its own frames.
type ownFrames struct {
	reader *store.Reader
	// resetNext: the next frame begins a new compression stream (the
	// link was sending a fanout's frames).
	resetNext bool
	// joining, when set, is where the link enters its fanout (already one
	// of its members): it sends its own frames up to joining.at (once
	// known: joining.limit), then the fanout's from frame joining.seq.
	joining *joinPoint
}

// sharedFrames is a feeder's state while it sends its fanout's frames.
type sharedFrames struct {
	seq uint64 // the fanout's frame to send next
}

// member tells whether the link counts as one of its fanout's members.
func (f *feeder) member() bool { return f.mode == feedShared || f.own.joining != nil }

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
	timeout := f.r.cfg.SlowConsumerTimeout
	watch(ctx, cancel, min(time.Second, timeout/4), func() error {
		if began := f.sending.Load(); began != 0 && time.Since(time.Unix(0, began)) > timeout {
			f.log.Info("child relay accepts nothing; cutting it as a slow consumer", "timeout", timeout)
			return fmt.Errorf("child %s accepted nothing for %v: %w", f.c.id, timeout, ErrSlowConsumer)
		}
		return nil
	})
}

// watch runs check every period until ctx ends or check returns an error,
// with which it cancels ctx: the watchdogs of a link, whose blocking calls
// (a Send held by flow control, a Recv on a silent peer) take no deadline.
func watch(ctx context.Context, cancel context.CancelCauseFunc, every time.Duration, check func() error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := check(); err != nil {
			cancel(err)
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
	streamed := sub.GetAcceptsStreamedRdb()
	servable := func(st store.State) bool { return st.HasData() || (streamed && r.store.Incoming() != nil) }
	if !servable(st) {
		// A relay that has just started (a tree coming up) gets its data
		// in a moment: wait for it (or for an RDB the child can follow as
		// it arrives) rather than send the child into its reconnect
		// backoff.
		wctx, cancel := context.WithTimeout(ctx, r.cfg.FutureOffsetWait)
		st, _ = r.store.WaitFor(wctx, servable)
		cancel()
		if !servable(st) && !servable(r.store.State()) {
			return nil, fmt.Errorf("relay %s holds no data yet (waited %v): %w", r.cfg.ID, r.cfg.FutureOffsetWait, ErrNotReady)
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
		case errors.Is(err, store.ErrEmpty):
			// The relay is receiving its first RDB (servable above).
			r.stats.partialErr.Add(1)
			f.log.Info("relay holds no history yet; full sync", "offset", off)
		default:
			// ErrHistoryDiverged and ErrFuture are refusals the child acts
			// on (toStatus).
			return nil, err
		}
	}
	if in := r.store.Incoming(); in != nil && streamed {
		// The RDB being received replaces whatever the store holds: the
		// child follows it rather than fetch the old one first.
		reader, err := f.fullSyncIncoming(ctx, in)
		if !errors.Is(err, errIncomingOver) {
			return reader, err
		}
	}
	return f.fullSync(ctx, resume)
}

// fullSyncIncoming serves a streamed full sync (FullSync.streamed): the
// RDB the relay is receiving, from its first byte on, in chunks as they
// arrive, and FullSyncEnd, with its size and checksums, only once the relay
// has checked and installed it. If it is not installed, the link ends
// without FullSyncEnd and the child discards what it got.
func (f *feeder) fullSyncIncoming(ctx context.Context, in *store.Incoming) (*store.Reader, error) {
	r := f.r
	ir, err := in.Open()
	if err != nil {
		return nil, errIncomingOver
	}
	defer ir.Close()
	f.c.state.Store(int32(arborv1.LinkState_LINK_STATE_FULL_SYNC))
	err = f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_FullSync{FullSync: &arborv1.FullSync{
		Replid: in.Replid, Offset: in.Offset, ChunkSize: rdbChunkSize, TransferId: in.ID, UpstreamRelayIds: r.chainForChildren(),
		Replid2: in.Replid2, SecondOffset: in.SecondOffset, Streamed: true,
	}}})
	if err != nil {
		return nil, err
	}
	r.stats.fullSyncs.Add(1)
	r.stats.cutThroughSyncs.Add(1)
	f.log.Info("full sync to child relay, cut-through: sending the RDB as this relay receives it", "replid", in.Replid,
		"offset", in.Offset, "received_bytes", in.Received())
	began := time.Now()
	buf := make([]byte, rdbChunkSize)
	var count, whole uint32
	var early int64
	for {
		n, err := readChunk(ctx, ir, buf)
		if n > 0 {
			raw := buf[:n]
			if r.cfg.rdbChunk != nil {
				r.cfg.rdbChunk(count, raw)
			}
			whole = crc32.Update(whole, castagnoli, raw)
			if serr := f.sendChunk(count, raw); serr != nil {
				return nil, serr
			}
			count++
			early += r.countCutThroughSent(in, n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if r.countCutThroughCut(err) {
				f.log.Info("the RDB this relay was receiving was not installed; ending the child's streamed full sync without its end", "err", err)
			}
			return nil, err
		}
	}
	snap, gen := ir.Installed()
	if whole != snap.CRC32C {
		r.log.Error("installed snapshot does not match the bytes sent; the child will refuse it", "child", f.c.id,
			"crc32c", fmt.Sprintf("%08x", whole), "want", fmt.Sprintf("%08x", snap.CRC32C))
	}
	reader, err := r.store.NewReaderAs(gen, snap.Offset, in.Replid)
	if err != nil {
		return nil, err
	}
	if err := f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_FullSyncEnd{FullSyncEnd: &arborv1.FullSyncEnd{
		RdbCrc64: snap.CRC64, ChunkCount: count, RdbCrc32C: &snap.CRC32C, RdbSize: snap.Size,
	}}}); err != nil {
		reader.Close()
		return nil, err
	}
	f.log.Info("RDB sent to child relay (cut-through); its end went after this relay installed it", "rdb_bytes", snap.Size,
		"chunks", count, "sent_before_installed", early, "seconds", time.Since(began).Seconds())
	return reader, nil
}

// readChunk fills buf from ir, but for the RDB's last chunk; it returns
// io.EOF (with the last bytes, if any) once the RDB was read whole and
// installed.
func readChunk(ctx context.Context, ir *store.IncomingReader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := ir.Read(ctx, buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sendChunk compresses and sends RDB chunk i, whose bytes are raw.
func (f *feeder) sendChunk(i uint32, raw []byte) error {
	wire, err := f.enc.encode(raw)
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	f.c.rawBytes.Add(uint64(len(raw)))
	f.c.wireBytes.Add(uint64(len(wire)))
	f.r.stats.rawBytes.Add(uint64(len(raw)))
	f.r.stats.wireBytes.Add(uint64(len(wire)))
	return f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_RdbChunk{RdbChunk: &arborv1.RdbChunk{
		Index: i, Data: wire, Crc32C: crc32.Checksum(raw, castagnoli), Compression: f.enc.kind, RawLen: uint32(len(raw)),
	}}})
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
		return nil, fmt.Errorf("no snapshot to send: %w", err)
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
			return nil, fmt.Errorf("read snapshot: %w", err)
		}
		raw := buf[:n]
		if r.cfg.rdbChunk != nil {
			r.cfg.rdbChunk(i, raw)
		}
		whole = crc32.Update(whole, castagnoli, raw)
		if err := f.sendChunk(i, raw); err != nil {
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
	f.mode, f.own = feedOwn, ownFrames{reader: reader}
	if f.c.shares && f.enc.kind != arborv1.Compression_COMPRESSION_NONE {
		f.fo = r.fanoutFor(f.enc.kind)
	}
	defer func() {
		if f.idleCancel != nil {
			f.idleCancel()
		}
		if f.own.reader != nil {
			f.own.reader.Close()
		}
		if f.member() {
			f.fo.leave()
		}
	}()
	f.lastSend = time.Now()
	for {
		pos := f.c.sent.Load()
		if lag := r.store.End() - pos; lag > r.cfg.MaxChildLag {
			err := fmt.Errorf("child %s fell %d bytes behind (bound %d): %w", f.c.id, lag, r.cfg.MaxChildLag, ErrSlowConsumer)
			f.disconnect(err)
			return err
		}
		var err error
		switch f.mode {
		case feedShared:
			if err = f.shared.step(ctx, f); errors.Is(err, errLeftFanout) {
				err = f.leaveShared()
			}
		case feedOwn:
			if err = f.own.step(ctx, f); err == nil {
				err = f.tryShare()
			}
		}
		if err != nil {
			return err
		}
	}
}

// leaveShared goes on alone from the shared frames (the link fell behind
// them, or the fanout started over), from a new compression stream.
func (f *feeder) leaveShared() error {
	f.fo.leave()
	f.mode, f.own = feedOwn, ownFrames{resetNext: true}
	f.leftShared++
	f.joinAfter = time.Now().Add(f.fo.rejoinDelay)
	reader, err := f.r.store.NewReaderAs(f.gen, f.c.sent.Load(), f.known)
	if err != nil {
		if errors.Is(err, store.ErrOutOfRange) {
			f.disconnect(err)
		}
		return err
	}
	f.own.reader = reader
	return nil
}

// tryShare moves a link on its own frames toward its fanout: it joins the
// fanout when it may, and switches to the shared frames once it has sent
// everything before the fanout's first frame for it.
func (f *feeder) tryShare() error {
	if f.fo == nil {
		return nil
	}
	o := &f.own
	if o.joining == nil && f.lastSend.After(f.joinAfter) {
		// Join the fanout at its next frame if it is at or a little
		// ahead of this link (or serves nobody yet).
		jp, ok, err := f.fo.join(f.gen, o.reader.Pos(), f.known)
		if err != nil {
			return err
		}
		if ok {
			o.joining = jp
		}
	}
	jp := o.joining
	if jp == nil || !jp.settled() || o.reader.Pos() != jp.at {
		return nil
	}
	o.joining = nil
	if f.known != jp.replid {
		// A replid switch at the join point that the child has not been
		// sent (or the fanout will send again): stay alone until the
		// next try.
		f.fo.leave()
		return nil
	}
	// Sent everything before the fanout's first frame for this link: from
	// here on, its frames.
	o.reader.Close()
	f.mode, f.own, f.shared = feedShared, ownFrames{}, sharedFrames{seq: jp.seq}
	return nil
}

// step reads, compresses and sends one frame of the link's own (or a
// heartbeat when the stream is idle, or a replid switch). While the link
// is joining a fanout it reads no further than the fanout's first frame.
func (o *ownFrames) step(ctx context.Context, f *feeder) error {
	r := f.r
	reader := o.reader
	buf := f.buf
	if jp := o.joining; jp != nil {
		if jp.settled() && jp.failed {
			// The fanout started over before the link entered it.
			f.fo.leave()
			o.joining = nil
			return nil
		}
		if reader.Pos() == jp.limit() {
			// Sent everything before the frame being made: the link
			// enters at the next, once its making ends.
			return o.awaitJoin(ctx, f, jp)
		}
		buf = buf[:min(int64(len(buf)), jp.limit()-reader.Pos())]
	}
	var n int
	var pending *store.ReplidSwitchError
	var err error
	if reader.Buffered() > 0 {
		// Busy stream: no wait, so no heartbeat timer for this read.
		n, pending, err = r.readBatch(ctx, reader, buf)
	} else {
		n, pending, err = r.readBatch(f.idleWait(ctx), reader, buf)
	}
	var sw *store.ReplidSwitchError
	switch {
	case errors.As(err, &sw):
		return f.sendSwitch(sw)
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return f.heartbeat()
	case errors.Is(err, store.ErrTrimmed):
		f.disconnect(err)
		return err
	case err != nil:
		return err
	}
	start := reader.Pos() - int64(n)
	if o.resetNext {
		f.enc.reset()
	}
	wire, err := f.enc.encode(buf[:n])
	if err != nil {
		return err
	}
	origin, _ := r.timeline.originOf(start + int64(n) - 1)
	if err := f.sendFrame(&sharedFrame{start: start, rawLen: n, data: wire, reset: o.resetNext, origin: origin}, false); err != nil {
		return err
	}
	o.resetNext = false
	if pending != nil {
		return f.sendSwitch(pending)
	}
	return nil
}

// awaitJoin waits until the link's join point is known (a member is making
// the frame before it), with a heartbeat when that takes long (an idle
// stream).
func (o *ownFrames) awaitJoin(ctx context.Context, f *feeder, jp *joinPoint) error {
	t := time.NewTimer(heartbeatEvery)
	defer t.Stop()
	select {
	case <-jp.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return f.heartbeat()
	}
}

// step sends the link's next frame of the fanout, or a heartbeat when the
// stream is idle. errLeftFanout means the link must go on alone.
func (s *sharedFrames) step(ctx context.Context, f *feeder) error {
	fr, ok, busy, err := f.fo.frame(s.seq)
	switch {
	case ok || err != nil:
	case busy:
		// Bytes are waiting: no heartbeat timer for this frame.
		fr, err = f.fo.next(ctx, s.seq)
	default:
		fr, err = f.fo.next(f.idleWait(ctx), s.seq)
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
	s.seq++
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

// idleWait returns the context of a wait for stream bytes: it ends when a
// heartbeat is due, heartbeatEvery after the last send. One context serves
// every wait until it ends, rather than a timer made and stopped for every
// frame of a busy link (about one per millisecond of a busy master). A
// frame sent since it was made moves the heartbeat's time: heartbeat then
// sends nothing, and the next wait gets a context ending at the new time.
func (f *feeder) idleWait(ctx context.Context) context.Context {
	if f.idle == nil || f.idle.Err() != nil {
		if f.idleCancel != nil {
			f.idleCancel()
		}
		f.idle, f.idleCancel = context.WithDeadline(ctx, f.lastSend.Add(heartbeatEvery))
	}
	return f.idle
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
		return fmt.Errorf("replication id changed at %d, behind this link at %d: %w", sw.At, sw.Pos, ErrReplidChanged)
	}
	err := f.send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_ReplidSwitch{ReplidSwitch: &arborv1.ReplidSwitch{
		NewReplid: sw.Replid, AtOffset: sw.At,
	}}})
	if err == nil {
		f.known = sw.Replid
	}
	return err
}

// disconnect tells the child why it is cut, err's reason in the Sync
// contract's table (syncErrors), best effort (the stream may be the very
// thing that is stuck).
func (f *feeder) disconnect(err error) {
	reason, _ := reasonOf(err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.srv.Send(&arborv1.SyncResponse{Frame: &arborv1.SyncResponse_Disconnect{Disconnect: &arborv1.Disconnect{Reason: reason, Message: err.Error()}}})
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
