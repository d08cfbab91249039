package relay

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

// snapshotCheckInterval is how often the relay checks whether its backlog
// is held over its bound by an old snapshot.
const snapshotCheckInterval = 2 * time.Second

// refreshSnapshots keeps the backlog within --backlog-size: the backlog may
// not be trimmed past the snapshot (a full sync needs both), so when the
// snapshot pins it, the relay fetches a fresher RDB of the same history
// (REPLCONF rdb-only) and installs it. It asks one of its own in-sync Redis
// replicas first, so that the fork for the RDB happens there and never on
// the master; the upstream is the fallback.
func (r *Relay) refreshSnapshots(ctx context.Context) {
	t := time.NewTicker(snapshotCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !r.store.NeedSnapshot() {
			continue
		}
		up := r.currentUpstream()
		st := r.store.State()
		r.log.Info("backlog over its bound and pinned by the snapshot; fetching a fresher snapshot",
			"backlog_bytes", st.BacklogBytes, "backlog_size", r.cfg.BacklogSize, "snapshot_offset", st.Snapshot.Offset)
		if rep, ok := r.inSyncReplica(up); ok {
			err := r.refreshSnapshot(ctx, rep)
			if err == nil {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("snapshot refresh from a replica failed; asking the upstream", "replica", rep.Addr, "err", err)
		}
		refresh := r.refreshSnapshot
		if up.Kind == UpstreamRelay {
			refresh = r.refreshFromRelay
		}
		if err := refresh(ctx, up); err != nil && ctx.Err() == nil {
			r.log.Warn("snapshot refresh failed; will retry", "err", err)
		}
	}
}

// inSyncReplica picks an online Redis replica of this relay whose acked
// offset is past the current snapshot (so its RDB lets the backlog shrink;
// a chained replica serves RDBs with the master's replication ID and its own
// offset). It is reached at the address it connected from and its listening
// port, with the upstream's credentials.
func (r *Relay) inSyncReplica(up Upstream) (Upstream, bool) {
	st := r.store.State()
	if st.Snapshot == nil {
		return Upstream{}, false
	}
	for _, rp := range r.replicaList() {
		if v, _ := rp.state.Load().(string); v != "online" || rp.sync || rp.listeningPort == 0 || rp.ackOffset.Load() <= st.Snapshot.Offset {
			continue
		}
		return Upstream{Kind: UpstreamRedis, Addr: net.JoinHostPort(rp.addr, strconv.Itoa(rp.listeningPort)), User: up.User, Password: up.Password}, true
	}
	return Upstream{}, false
}

// refreshSnapshot fetches an RDB of the current history from a Redis server
// (the master or one of the relay's own replicas) and installs it once the
// stream reached its offset.
func (r *Relay) refreshSnapshot(ctx context.Context, up Upstream) error {
	linkCtx, closeLink := context.WithCancel(ctx)
	u, wait, err := r.dialUpstream(linkCtx, up, true)
	if wait != nil {
		defer wait()
	}
	defer closeLink()
	if err != nil {
		return err
	}
	u.conn.SetWriteDeadline(time.Now().Add(u.timeout))
	if _, err := u.conn.Write(resp.AppendCommand(nil, "PSYNC", "?", "-1")); err != nil {
		return fmt.Errorf("send PSYNC: %w", err)
	}
	line, err := u.readLine()
	if err != nil {
		return fmt.Errorf("read PSYNC reply: %w", err)
	}
	replid, off, ok := parseFullResync(line)
	if !ok {
		return fmt.Errorf("upstream answered %q to an rdb-only PSYNC", line)
	}
	if st := r.store.State(); replid != st.Replid {
		return fmt.Errorf("upstream history %s is not the stored %s; the main link handles that", replid, st.Replid)
	}
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		return err
	}
	if _, err := r.readRDB(u, w, replid, off, false); err != nil {
		w.Abort()
		return err
	}
	closeLink() // the RDB is all this link was for
	return r.installWhenReached(ctx, w, replid, off)
}

// refreshFromRelay fetches the parent relay's snapshot (Subscribe with
// snapshot_only) when it is newer than ours.
func (r *Relay) refreshFromRelay(ctx context.Context, up Upstream) error {
	stream, end, err := r.openSync(ctx, up)
	if err != nil {
		return err
	}
	defer end()
	if err := stream.Send(&arborv1.SyncRequest{Frame: &arborv1.SyncRequest_Subscribe{Subscribe: &arborv1.Subscribe{
		RelayId: r.cfg.ID, Site: r.cfg.Site, Replid: "?", SnapshotOnly: true, AcceptedCompressions: r.acceptedCompressions(),
	}}}); err != nil {
		return err
	}
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	fs := m.GetFullSync()
	if fs == nil {
		return fmt.Errorf("parent answered a snapshot request with %T", m.Frame)
	}
	st := r.store.State()
	if fs.GetReplid() != st.Replid || fs.GetOffset() <= st.Snapshot.Offset {
		return fmt.Errorf("parent's snapshot (%s@%d) is not newer than ours (%s@%d); will retry",
			fs.GetReplid(), fs.GetOffset(), st.Replid, st.Snapshot.Offset)
	}
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		return err
	}
	dec := &decoders{}
	defer dec.close()
	if _, err := r.recvChunks(stream, fs, w, dec, 0, false); err != nil {
		w.Abort()
		return err
	}
	end() // the snapshot is all this stream was for
	return r.installWhenReached(ctx, w, fs.GetReplid(), fs.GetOffset())
}

// installWhenReached installs the fresher snapshot of offset off once the
// stream has reached it.
func (r *Relay) installWhenReached(ctx context.Context, w *store.SnapshotWriter, replid string, off int64) error {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.ReplTimeout)
	defer cancel()
	if _, err := r.store.WaitEnd(wctx, off); err != nil {
		w.Abort()
		return fmt.Errorf("stream did not reach the snapshot's offset %d: %w", off, err)
	}
	snap, err := r.store.InstallSnapshot(w, replid, off)
	if err != nil {
		return err
	}
	st := r.store.State()
	r.log.Info("snapshot refreshed; backlog trimmed", "snapshot_offset", snap.Offset, "rdb_bytes", snap.Size,
		"backlog_start", st.Start, "backlog_bytes", st.BacklogBytes)
	return nil
}
