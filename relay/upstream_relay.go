package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

// The partial RDB of a transfer from a parent relay, and what it is, kept
// across reconnects and restarts so a cut transfer resumes at its last
// complete chunk.
const (
	transferRDB  = "transfer.rdb"
	transferMeta = "transfer.json"
)

// syncRelay runs one session with a parent relay: subscribe, Continue or a
// (resumable) full sync, then stream frames into the store, acking what is
// stored, until an error or ctx ends.
func (r *Relay) syncRelay(ctx context.Context, up Upstream) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, end, err := r.openSync(ctx, up)
	if err != nil {
		return err
	}
	defer end()
	st := r.store.State()
	sub := &arborv1.Subscribe{
		RelayId: r.cfg.ID, Site: r.cfg.Site, Replid: "?", Offset: 0,
		AcceptedCompressions: r.acceptedCompressions(),
		// This relay's appendFrame honours Stream.compression_reset.
		AcceptsCompressionReset: true,
		// receiveChunks takes an RDB streamed as the parent receives it.
		AcceptsStreamedRdb: true,
		DownstreamRelayIds: r.descendants(),
	}
	if st.HasData() && !r.forceFullSync.Load() {
		sub.Replid, sub.Offset = st.Replid, st.End
	}
	first := &arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Subscribe{Subscribe: sub}}
	if ts, keep, ok := r.pendingTransfer(); ok && sub.Replid == "?" {
		first = &arborv1.SyncRequest{Frame: &arborv1.SyncRequest_ResumeRdb{ResumeRdb: &arborv1.ResumeRdb{
			Subscribe: sub, TransferId: ts.ID, NextIndex: uint32(keep / ts.ChunkSize),
		}}}
	}
	if err := stream.Send(first); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	m, err := stream.Recv()
	if err != nil {
		// A refusal is typed (LinkError), never read from its text.
		return fmt.Errorf("subscribe: %w", linkErrorOf(up.Addr, err))
	}
	dec := &decoders{}
	defer dec.close()
	switch f := m.Frame.(type) {
	case *arborv1.SyncResponse_Continue:
		c := f.Continue
		if c.GetOffset() != st.End {
			return fmt.Errorf("parent continued at %d, this relay holds %d", c.GetOffset(), st.End)
		}
		if err := r.setChain(c.GetUpstreamRelayIds()); err != nil {
			return err
		}
		if err := r.adoptIDs(c.GetReplid(), c.GetReplid2(), c.GetSecondOffset()); err != nil {
			return err
		}
		r.stats.upstreamPartial.Add(1)
		r.log.Info("partial resync with parent relay", "parent", up.Addr, "replid", c.GetReplid(), "offset", c.GetOffset())
	case *arborv1.SyncResponse_FullSync:
		if err := r.setChain(f.FullSync.GetUpstreamRelayIds()); err != nil {
			return err
		}
		r.link.set("sync")
		if err := r.receiveChunks(stream, f.FullSync, dec); err != nil {
			return err
		}
		r.forceFullSync.Store(false)
		r.stats.upstreamFull.Add(1)
	default:
		return fmt.Errorf("parent answered subscribe with %T", m.Frame)
	}
	r.link.set("connected")
	r.link.touch(time.Now())

	// The parent cuts frames at any byte: whole commands outside
	// MULTI…EXEC only are stored, the tail is held for this session (see
	// ingest).
	in := newIngest(r.store.Scanner())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.sendAcks(ctx, stream)
		cancel(nil)
	}()
	go func() {
		defer wg.Done()
		// The parent sends a heartbeat every heartbeatEvery when idle: a
		// link silent for ReplTimeout is dead even if TCP does not know
		// yet. (Checked once a second: ReplTimeout is at least that.)
		watch(ctx, cancel, time.Second, func() error {
			if idle, _ := r.link.idle(); idle > r.cfg.ReplTimeout {
				return fmt.Errorf("parent relay silent for %v", r.cfg.ReplTimeout)
			}
			return nil
		})
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("parent relay stream: %w", linkErrorOf(up.Addr, err))
		}
		r.link.touch(time.Now())
		switch f := m.Frame.(type) {
		case *arborv1.SyncResponse_Stream:
			if err := r.storeFrame(f.Stream, dec, in); err != nil {
				return err
			}
		case *arborv1.SyncResponse_Heartbeat:
			r.noteMasterOffset(f.Heartbeat.GetMasterOffset())
		case *arborv1.SyncResponse_ReplidSwitch:
			sw := f.ReplidSwitch
			if end := r.store.End() + int64(in.held()); sw.GetAtOffset() != end {
				return fmt.Errorf("replid switch at %d, this relay holds %d", sw.GetAtOffset(), end)
			}
			if in.held() > 0 {
				// A history switches at a commit point, unless the
				// parent stored a command past maxHeldTail as it came:
				// it holds these bytes, so this relay stores them too.
				ready, after := in.flush()
				if err := r.storeReady(ready, after, nil, sw.GetAtOffset(), time.Now().UnixNano(), "parent relay"); err != nil {
					return err
				}
			}
			if err := r.store.SwitchReplid(sw.GetNewReplid()); err != nil {
				return err
			}
			r.log.Info("parent switched replication id", "new_replid", sw.GetNewReplid(), "offset", sw.GetAtOffset())
			r.replicas.closeAll("upstream replication id changed")
		case *arborv1.SyncResponse_Disconnect:
			// The parent says why before it ends the stream (with the
			// same reason in its status).
			return &LinkError{Parent: up.Addr, Reason: f.Disconnect.GetReason(), Message: f.Disconnect.GetMessage()}
		default:
			return fmt.Errorf("unexpected frame %T from parent relay", m.Frame)
		}
	}
}

// openSync dials a parent relay and opens a Sync stream on it; end ends
// the stream and closes the connection.
func (r *Relay) openSync(ctx context.Context, up Upstream) (stream arborv1.RelayService_SyncClient, end func(), err error) {
	creds, err := r.cfg.TLS.ClientCredentials()
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(up.Addr,
		grpc.WithTransportCredentials(creds),
		// Ping an idle link every 10 s; a parent silent 20 s after a ping
		// is gone.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
		// Fixed flow-control windows (see linkWindow): no BDP pings, and
		// a window update every linkWindow/4 bytes, not every few frames.
		grpc.WithInitialWindowSize(linkWindow),
		grpc.WithInitialConnWindowSize(linkWindow),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("parent relay %s: %w", up.Addr, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err = arborv1.NewRelayServiceClient(conn).Sync(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, nil, fmt.Errorf("parent relay %s: %w", up.Addr, err)
	}
	return stream, func() { cancel(); conn.Close() }, nil
}

func (r *Relay) acceptedCompressions() []arborv1.Compression {
	return []arborv1.Compression{r.compression, arborv1.Compression_COMPRESSION_ZSTD, arborv1.Compression_COMPRESSION_S2, arborv1.Compression_COMPRESSION_NONE}
}

// decoders holds one frameDecoder per compression seen on a link.
type decoders struct {
	m map[arborv1.Compression]*frameDecoder
}

func (d *decoders) get(kind arborv1.Compression) (*frameDecoder, error) {
	if kind == arborv1.Compression_COMPRESSION_UNSPECIFIED {
		kind = arborv1.Compression_COMPRESSION_NONE
	}
	if fd, ok := d.m[kind]; ok {
		return fd, nil
	}
	if kind != arborv1.Compression_COMPRESSION_NONE && kind != arborv1.Compression_COMPRESSION_ZSTD && kind != arborv1.Compression_COMPRESSION_S2 {
		return nil, fmt.Errorf("unknown compression %v", kind)
	}
	fd, err := newFrameDecoder(kind)
	if err != nil {
		return nil, err
	}
	if d.m == nil {
		d.m = map[arborv1.Compression]*frameDecoder{}
	}
	d.m[kind] = fd
	return fd, nil
}

func (d *decoders) decode(data []byte, kind arborv1.Compression, rawLen uint32) ([]byte, error) {
	fd, err := d.get(kind)
	if err != nil {
		return nil, err
	}
	return fd.decode(data, kind, int(rawLen))
}

// reset drops the state of kind's decoder (Stream.compression_reset).
func (d *decoders) reset(kind arborv1.Compression) error {
	fd, err := d.get(kind)
	if err != nil {
		return err
	}
	return fd.reset()
}

func (d *decoders) close() {
	for _, fd := range d.m {
		fd.close()
	}
}

// receiveChunks receives a full sync's RDB chunks, resuming a partial
// transfer when the parent continues one, and installs the snapshot once
// it passed its end-to-end check. A transfer that fails it is discarded
// (the next subscription fetches the RDB again from its first chunk); one
// that is cut is kept, on stable storage, for the next subscription to
// resume.
func (r *Relay) receiveChunks(stream arborv1.RelayService_SyncClient, fs *arborv1.FullSync, dec *decoders) error {
	chunk := int64(fs.GetChunkSize())
	if chunk <= 0 || fs.GetRdbSize() < 0 || fs.GetOffset() < 0 || len(fs.GetReplid()) != 40 ||
		(fs.GetStreamed() && fs.GetStartIndex() != 0) {
		return fmt.Errorf("parent sent a bad full sync header: %v", fs)
	}
	if fs.GetStreamed() {
		return r.receiveStreamed(stream, fs, dec)
	}
	next := int64(fs.GetStartIndex())
	rec := store.Transfer{ID: fs.GetTransferId(), ChunkSize: chunk}
	var w *store.SnapshotWriter
	var err error
	if next > 0 {
		w, err = r.store.ResumeSnapshotWriter(transferRDB, next*chunk)
		if err != nil {
			return fmt.Errorf("resume rdb transfer: %w", err)
		}
		rec.Bytes = next * chunk
		r.log.Info("resuming RDB transfer from parent relay", "transfer", fs.GetTransferId(), "from_chunk", next, "kept_bytes", next*chunk)
	} else {
		if w, err = r.store.NewNamedSnapshotWriter(transferRDB); err != nil {
			return err
		}
		r.log.Info("receiving RDB from parent relay", "replid", fs.GetReplid(), "offset", fs.GetOffset(), "bytes", fs.GetRdbSize())
	}
	if err := r.store.SaveTransfer(transferMeta, rec); err != nil {
		w.Abort()
		return err
	}
	// The relay's own replicas and child relays may follow the RDB as it
	// arrives (cut-through; store.Incoming).
	if _, err := r.store.PublishIncoming(w, store.IncomingHeader{Replid: fs.GetReplid(), Offset: fs.GetOffset(),
		Replid2: fs.GetReplid2(), SecondOffset: fs.GetSecondOffset(), Size: fs.GetRdbSize()}); err != nil {
		w.Abort()
		return err
	}
	r.link.mu.Lock()
	r.link.syncBytes, r.link.syncTotal, r.link.syncStarted = w.Size(), fs.GetRdbSize(), time.Now()
	r.link.mu.Unlock()
	began := time.Now()
	err = r.recvChunks(stream, fs, w, dec, next, &rec)
	switch {
	case errors.Is(err, errTransferRefused):
		w.Abort()
		if rerr := r.store.RemoveTransfer(transferMeta); rerr != nil {
			r.log.Error("remove the record of a refused rdb transfer", "err", rerr)
		}
		return err
	case err != nil:
		// Keep what arrived, once it is on stable storage: the next
		// subscription resumes from it.
		n, serr := w.Suspend()
		if serr == nil {
			rec.Bytes = n
			serr = r.store.SaveTransfer(transferMeta, rec)
		}
		if serr != nil {
			r.log.Error("keep the partial rdb transfer", "err", serr)
		}
		return err
	}
	snap, err := r.resetTo(w, fs.GetReplid(), fs.GetOffset())
	if rerr := r.store.RemoveTransfer(transferMeta); rerr != nil {
		r.log.Error("remove the record of a finished rdb transfer", "err", rerr)
	}
	if err != nil {
		return err
	}
	if err := r.adoptIDs(fs.GetReplid(), fs.GetReplid2(), fs.GetSecondOffset()); err != nil {
		return err
	}
	r.log.Info("RDB received from parent relay and stored", "bytes", snap.Size, "seconds", time.Since(began).Seconds())
	return nil
}

// receiveStreamed receives a streamed full sync (FullSync.streamed): the
// RDB as the parent receives it, checked end to end once FullSyncEnd
// brings its size and checksums, which the parent sends only after its own
// check passed. Until then nothing of it counts: a stream that ends first
// (the parent's check failed, or the link was cut) discards it, with no
// record to resume it by, and the next subscription fetches an RDB anew.
func (r *Relay) receiveStreamed(stream arborv1.RelayService_SyncClient, fs *arborv1.FullSync, dec *decoders) error {
	// A partial transfer kept from before is replaced by this one.
	if err := r.store.RemoveTransfer(transferMeta); err != nil {
		return err
	}
	w, err := r.store.NewNamedSnapshotWriter(transferRDB)
	if err != nil {
		return err
	}
	// It is followed downstream as it arrives, as any other (cut-through).
	if _, err := r.store.PublishIncoming(w, store.IncomingHeader{Replid: fs.GetReplid(), Offset: fs.GetOffset(),
		Replid2: fs.GetReplid2(), SecondOffset: fs.GetSecondOffset(), Size: -1}); err != nil {
		w.Abort()
		return err
	}
	r.log.Info("receiving RDB from parent relay as the parent receives it (streamed)", "replid", fs.GetReplid(), "offset", fs.GetOffset())
	r.link.mu.Lock()
	r.link.syncBytes, r.link.syncTotal, r.link.syncStarted = 0, -1, time.Now()
	r.link.mu.Unlock()
	began := time.Now()
	if err := r.recvChunks(stream, fs, w, dec, 0, &store.Transfer{}); err != nil {
		w.Abort()
		return err
	}
	snap, err := r.resetTo(w, fs.GetReplid(), fs.GetOffset())
	if err != nil {
		return err
	}
	if err := r.adoptIDs(fs.GetReplid(), fs.GetReplid2(), fs.GetSecondOffset()); err != nil {
		return err
	}
	r.log.Info("RDB received from parent relay (streamed) and stored", "bytes", snap.Size, "seconds", time.Since(began).Seconds())
	return nil
}

// checkpointChunks is how often (in chunks) a resumable transfer is
// flushed to disk and its record updated, so that a relay that dies in the
// middle of a long transfer resumes near where it was.
const checkpointChunks = 4

// recvChunks receives RDB chunks from index next into w, checking each,
// until FullSyncEnd, and then checks the whole transfer end to end
// (checkTransfer). With rec (the main link's resumable transfer) it
// reports progress in INFO and checkpoints rec every checkpointChunks.
func (r *Relay) recvChunks(stream arborv1.RelayService_SyncClient, fs *arborv1.FullSync, w *store.SnapshotWriter,
	dec *decoders, next int64, rec *store.Transfer) error {
	track := rec != nil
	lastLog := time.Now()
	for {
		m, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("rdb transfer cut at %d of %d bytes: %w", w.Size(), fs.GetRdbSize(), err)
		}
		switch f := m.Frame.(type) {
		case *arborv1.SyncResponse_RdbChunk:
			c := f.RdbChunk
			if int64(c.GetIndex()) != next {
				return fmt.Errorf("rdb chunk %d, want %d", c.GetIndex(), next)
			}
			raw, err := dec.decode(c.GetData(), c.GetCompression(), c.GetRawLen())
			if err != nil {
				return fmt.Errorf("rdb chunk %d: %w", next, err)
			}
			if got := crc32.Checksum(raw, castagnoli); got != c.GetCrc32C() {
				return fmt.Errorf("rdb chunk %d: checksum %08x, want %08x", next, got, c.GetCrc32C())
			}
			if _, err := w.Write(raw); err != nil {
				return r.refuseTransfer(fs, fmt.Errorf("%w: received rdb rejected: %w", errTransferRefused, err))
			}
			next++
			if track && !fs.GetStreamed() && next%checkpointChunks == 0 {
				n, err := w.Sync()
				if err == nil {
					rec.Bytes = n
					err = r.store.SaveTransfer(transferMeta, *rec)
				}
				if err != nil {
					return fmt.Errorf("checkpoint the rdb transfer: %w", err)
				}
			}
			r.stats.upstreamRawBytes.Add(int64(len(raw)))
			r.stats.upstreamWireBytes.Add(int64(len(c.GetData())))
			if track {
				r.link.mu.Lock()
				r.link.syncBytes = w.Size()
				r.link.mu.Unlock()
				r.link.touch(time.Now())
			}
			if time.Since(lastLog) > progressEvery {
				lastLog = time.Now()
				r.log.Info("RDB transfer in progress", "received_bytes", w.Size(), "total_bytes", fs.GetRdbSize())
			}
		case *arborv1.SyncResponse_FullSyncEnd:
			size := fs.GetRdbSize()
			if fs.GetStreamed() {
				size = f.FullSyncEnd.GetRdbSize()
				if f.FullSyncEnd.RdbCrc32C == nil {
					return r.refuseTransfer(fs, fmt.Errorf("%w: a streamed transfer ended without its crc32c", errTransferRefused))
				}
			}
			if w.Size() != size {
				return fmt.Errorf("rdb transfer ended at %d bytes, want %d", w.Size(), size)
			}
			if err := checkTransfer(w, f.FullSyncEnd); err != nil {
				return r.refuseTransfer(fs, err)
			}
			return nil
		default:
			return fmt.Errorf("unexpected frame %T during an rdb transfer", m.Frame)
		}
	}
}

// refuseTransfer counts and logs a refused RDB transfer.
func (r *Relay) refuseTransfer(fs *arborv1.FullSync, err error) error {
	r.stats.rejectedSnapshots.Add(1)
	r.log.Error("RDB from parent relay refused, not installed; fetching it again", "transfer", fs.GetTransferId(), "err", err)
	return err
}

// checkTransfer compares a received RDB with the checksum its parent kept
// of it: the CRC-32C of all its bytes, which the relays carry end to end
// whatever the RDB itself carries; from an older parent that sends none,
// the CRC-64 of its content. The chunks' own CRCs only vouch for each hop
// of each chunk, not for what the parent read from its disk.
func checkTransfer(w *store.SnapshotWriter, end *arborv1.FullSyncEnd) error {
	if end.RdbCrc32C != nil {
		if got, want := w.CRC32C(), end.GetRdbCrc32C(); got != want {
			return fmt.Errorf("%w: its crc32c is %08x, the parent's snapshot's %08x", errTransferRefused, got, want)
		}
		return nil
	}
	sum, err := w.Finish()
	if err != nil {
		return fmt.Errorf("%w: received rdb rejected: %w", errTransferRefused, err)
	}
	if sum.CRC != end.GetRdbCrc64() {
		return fmt.Errorf("%w: its crc64 is %016x, the parent's snapshot's %016x", errTransferRefused, sum.CRC, end.GetRdbCrc64())
	}
	return nil
}

// pendingTransfer returns a partial transfer to resume and the whole chunks
// of it known to be on stable storage.
func (r *Relay) pendingTransfer() (store.Transfer, int64, bool) {
	t, ok := r.store.LoadTransfer(transferMeta)
	if !ok {
		return t, 0, false
	}
	fi, err := os.Stat(filepath.Join(r.cfg.DataDir, transferRDB))
	if err != nil {
		return t, 0, false
	}
	keep := min(fi.Size(), t.Bytes) / t.ChunkSize * t.ChunkSize
	return t, keep, keep > 0
}

// adoptIDs takes the parent's replication IDs (second is the last offset of
// replid2's history, as in the proto) and drops Redis replicas if the
// current ID changed.
func (r *Relay) adoptIDs(replid, replid2 string, second int64) error {
	before := r.store.State().Replid
	if err := r.store.AdoptIDs(replid, replid2, second+1); err != nil {
		return err
	}
	if before != "" && before != replid {
		r.replicas.closeAll("upstream replication id changed")
	}
	return nil
}

// sendAcks sends the relay's durable offset (never merely what it wrote:
// the parent's site figures, a root's AckRemote and the failover catch-up
// read it as "this site holds it") and the acks of its own subtree, every
// second, after each flush of the store, and when a child acks.
func (r *Relay) sendAcks(ctx context.Context, stream arborv1.RelayService_SyncClient) {
	t := time.NewTicker(ackInterval)
	defer t.Stop()
	for {
		durable, moved := r.store.Durable()
		if err := stream.Send(&arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Ack{Ack: &arborv1.Ack{
			Offset: durable, Subtree: r.subtreeAcks(),
		}}}); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-moved:
		case <-r.childAcked:
		}
	}
}

// subtreeAcks lists every replica and relay below this one with its acked
// offset: its Redis replicas, its child relays, and theirs.
func (r *Relay) subtreeAcks() []*arborv1.ChildAck {
	var out []*arborv1.ChildAck
	for _, rp := range r.replicas.list() {
		out = append(out, &arborv1.ChildAck{Id: rp.name(), Site: r.cfg.Site,
			Kind: arborv1.ChildKind_CHILD_KIND_REDIS, AckedOffset: rp.ackOffset.Load()})
	}
	for _, c := range r.childList() {
		acked := c.acked.Load()
		if !c.hasAcked.Load() {
			// The offset it subscribed with is what it wrote, maybe of
			// another history (before a full sync): not an ack.
			acked = 0
		}
		out = append(out, &arborv1.ChildAck{Id: c.id, Site: c.site, Kind: arborv1.ChildKind_CHILD_KIND_RELAY, AckedOffset: acked})
		out = append(out, c.getSubtree()...)
	}
	return out
}

// noteMasterOffset records the newest master offset heard of.
func (r *Relay) noteMasterOffset(off int64) {
	for {
		cur := r.masterOffset.Load()
		if off <= cur || r.masterOffset.CompareAndSwap(cur, off) {
			return
		}
	}
}
