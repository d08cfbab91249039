package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

// snapshotCheckInterval is how often the relay checks whether its backlog
// is held over its bound by an old snapshot.
const snapshotCheckInterval = 2 * time.Second

// sourceRetryAfter is how long a snapshot source that failed is not asked
// again.
const sourceRetryAfter = 30 * time.Second

// refreshSnapshots keeps the backlog within --backlog-size: the backlog may
// not be trimmed past the snapshot (a full sync needs both), so when the
// snapshot pins it, the relay fetches a fresher RDB of the same history
// (REPLCONF rdb-only) and installs it.
//
// It asks the snapshot sources the operator configured first (the site's
// own nodes), so that the fork for the RDB happens there and not on the
// master; the upstream is the fallback. It never asks a replica at the
// address the replica announces: REPLCONF listening-port and ip-address
// are a client's claims, and an RDB the relay installs is served to every
// full sync of its site and of the sites below it. A source gets its own
// credentials, never the upstream's, and what it sends must fit the
// history (replication ID, an offset inside the backlog), carry a CRC64
// that matches, and be of an RDB version no newer than the snapshot's
// (store.RefreshRules).
func (r *Relay) refreshSnapshots(ctx context.Context) {
	t := time.NewTicker(snapshotCheckInterval)
	defer t.Stop()
	failed := map[string]time.Time{} // source address -> when it failed last
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
		if r.refreshFromSources(ctx, failed) || ctx.Err() != nil {
			continue
		}
		var err error
		if up.Kind == UpstreamRelay {
			err = r.refreshFromRelay(ctx, up)
		} else {
			err = r.refreshSnapshot(ctx, up, store.RefreshRules{})
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("snapshot refresh failed; will retry", "err", err)
		}
	}
}

// refreshFromSources tries the trusted snapshot sources in turn and
// reports whether one of them refreshed the snapshot. A source that failed
// is skipped for sourceRetryAfter (failed holds when): an rdb-only PSYNC
// makes it fork even when its answer turns out to be of no use (another
// history, an offset not past the snapshot).
func (r *Relay) refreshFromSources(ctx context.Context, failed map[string]time.Time) bool {
	rules := store.RefreshRules{NoNewerVersion: true, NeedCRC: true}
	for _, src := range r.snapshotSources() {
		if at, ok := failed[src.Addr]; ok && time.Since(at) < sourceRetryAfter {
			continue
		}
		err := r.refreshSnapshot(ctx, src, rules)
		if err == nil {
			delete(failed, src.Addr)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		failed[src.Addr] = time.Now()
		r.log.Warn("snapshot refresh from a snapshot source failed; trying the next, then the upstream", "source", src.Addr, "err", err)
	}
	return false
}

// refreshSnapshot fetches an RDB of the current history from a Redis server
// (the master, or a trusted snapshot source: a replica of the relay or of
// the master serves RDBs with the master's replication ID and its own
// offset) and installs it under rules once the stream reached its offset.
func (r *Relay) refreshSnapshot(ctx context.Context, up Upstream, rules store.RefreshRules) error {
	u, closeConn, err := r.dialUpstream(ctx, up, true)
	if err != nil {
		return err
	}
	defer closeConn()
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
		return fmt.Errorf("%s answered %q to an rdb-only PSYNC", up.Addr, line)
	}
	st := r.store.State()
	if replid != st.Replid {
		return fmt.Errorf("%s serves history %s, not the stored %s; the main link handles a new history", up.Addr, replid, st.Replid)
	}
	if st.Snapshot != nil && off <= st.Snapshot.Offset {
		return fmt.Errorf("%s is at offset %d, not past the snapshot's %d", up.Addr, off, st.Snapshot.Offset)
	}
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		return err
	}
	if _, err := r.readRDB(u, w, replid, off, false); err != nil {
		w.Abort()
		return err
	}
	closeConn() // the RDB is all this link was for
	return r.installWhenReached(ctx, w, replid, off, rules)
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
	if err := r.recvChunks(stream, fs, w, dec, 0, nil); err != nil {
		w.Abort()
		return err
	}
	end() // the snapshot is all this stream was for
	// The parent is this relay's upstream, reached over mutual TLS: its
	// snapshot is what a full sync from it would bring, so a newer RDB
	// version (the master was upgraded in place) is taken, as the parent
	// took it. Its content is checked as from any source: CRC64 when the
	// RDB carries one, and it must carry one if ours did.
	return r.installWhenReached(ctx, w, fs.GetReplid(), fs.GetOffset(), store.RefreshRules{NeedCRC: true})
}

// installWhenReached installs the fresher snapshot of offset off under
// rules once the stream has reached it.
func (r *Relay) installWhenReached(ctx context.Context, w *store.SnapshotWriter, replid string, off int64, rules store.RefreshRules) error {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.ReplTimeout)
	defer cancel()
	if _, err := r.store.WaitEnd(wctx, off); err != nil {
		w.Abort()
		return fmt.Errorf("stream did not reach the snapshot's offset %d: %w", off, err)
	}
	snap, err := r.store.InstallSnapshotWith(w, replid, off, rules)
	if err != nil {
		return err
	}
	st := r.store.State()
	r.log.Info("snapshot refreshed; backlog trimmed", "snapshot_offset", snap.Offset, "rdb_bytes", snap.Size,
		"backlog_start", st.Start, "backlog_bytes", st.BacklogBytes)
	return nil
}
