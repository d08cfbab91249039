package relay

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
)

// snapshotCheckInterval is how often the relay checks whether its backlog
// is held over its bound by an old snapshot.
const snapshotCheckInterval = 2 * time.Second

// refreshSnapshots keeps the backlog within --backlog-size: the backlog may
// not be trimmed past the snapshot (a full sync needs both), so when the
// snapshot pins it, the relay fetches a fresher RDB of the same history from
// the upstream (REPLCONF rdb-only) and installs it.
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
		if up.Kind != UpstreamRedis {
			// TODO(issue 3): a fresher snapshot from a parent relay.
			continue
		}
		st := r.store.State()
		r.log.Info("backlog over its bound and pinned by the snapshot; fetching a fresher snapshot",
			"backlog_bytes", st.BacklogBytes, "backlog_size", r.cfg.BacklogSize, "snapshot_offset", st.Snapshot.Offset)
		if err := r.refreshSnapshot(ctx, up); err != nil && ctx.Err() == nil {
			r.log.Warn("snapshot refresh failed; will retry", "err", err)
		}
	}
}

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
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "+FULLRESYNC" || len(f[1]) != 40 {
		return fmt.Errorf("upstream answered %q to an rdb-only PSYNC", line)
	}
	off, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return fmt.Errorf("upstream answered %q to an rdb-only PSYNC", line)
	}
	if st := r.store.State(); f[1] != st.Replid {
		return fmt.Errorf("upstream history %s is not the stored %s; the main link handles that", f[1], st.Replid)
	}
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		return err
	}
	if _, err := r.readRDB(u, w, f[1], off, false); err != nil {
		w.Abort()
		return err
	}
	closeLink() // the RDB is all this link was for
	// The snapshot is of offset off; install it once the stream reached it.
	deadline := time.NewTimer(r.cfg.ReplTimeout)
	defer deadline.Stop()
	for {
		changed := r.store.Changed()
		if r.store.End() >= off {
			break
		}
		select {
		case <-changed:
		case <-deadline.C:
			w.Abort()
			return fmt.Errorf("stream did not reach the snapshot's offset %d within %v", off, r.cfg.ReplTimeout)
		case <-ctx.Done():
			w.Abort()
			return ctx.Err()
		}
	}
	snap, err := r.store.InstallSnapshot(w, f[1], off)
	if err != nil {
		return err
	}
	st := r.store.State()
	r.log.Info("snapshot refreshed; backlog trimmed", "snapshot_offset", snap.Offset, "rdb_bytes", snap.Size,
		"backlog_start", st.Start, "backlog_bytes", st.BacklogBytes)
	return nil
}
