package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

const (
	// ackInterval is how often a link acks upstream when nothing moves.
	ackInterval = time.Second
	// minBackoff and maxBackoff bound the wait between upstream sessions.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// runUpstream keeps a replication link to the upstream until ctx ends,
// reconnecting with backoff and resuming where the store ends. A new
// upstream (SetUpstream) ends the current session and is followed at once.
func (r *Relay) runUpstream(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		up, changed := r.upstreamForSession()
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-sctx.Done():
			}
		}()
		began := time.Now()
		var err error
		if up.Kind == UpstreamRelay {
			err = r.syncRelay(sctx, up)
		} else {
			if err = r.setChain(nil); err == nil {
				err = r.syncOnce(sctx, up)
			}
		}
		moved := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		r.link.set("connect")
		if ctx.Err() != nil {
			return
		}
		if moved {
			r.log.Info("upstream changed; following the new one", "upstream", r.currentUpstream().String())
			backoff = minBackoff
			continue
		}
		r.link.setErr(err)
		var le *LinkError
		if errors.As(err, &le) {
			r.link.setCut(le)
		}
		var se *store.SyncError
		if errors.As(err, &se) {
			// After a failed flush nothing the store would take counts
			// (see store.SyncError): stop following, keep serving and
			// acking what is durable, and say so until a restart.
			r.log.Error("store failed to flush to disk; not following the upstream any more: fix the disk and restart the relay",
				"durable_offset", se.Durable, "err", se.Err)
			// Child relays would fall further behind here for good:
			// tell them to move to another parent.
			r.upstreamLost.Store(true)
			r.cutChildren(fmt.Errorf("relay %s stopped following its upstream (store flush failed): %w", r.cfg.ID, ErrUpstreamLost))
			<-ctx.Done()
			return
		}
		var rl *retryLater
		switch {
		case le != nil && le.Action() == arborv1.LinkAction_LINK_ACTION_FULL_SYNC:
			r.forceFullSync.Store(true)
			r.log.Error("parent relay does not know this relay's history; asking for a full sync", "err", err)
			backoff = minBackoff
		case le != nil && le.Action() == arborv1.LinkAction_LINK_ACTION_STOP:
			// Asking again soon cannot help: only a new upstream (which
			// ends the wait) or a change at the parent can.
			r.log.Error("parent relay refuses this relay; retrying at the longest backoff", "err", err)
			backoff = maxBackoff
		case le != nil && le.Action() == arborv1.LinkAction_LINK_ACTION_MOVE:
			// Status shows it (upstream_cut) for a runner that moves the
			// relay; meanwhile it keeps trying this parent.
			r.log.Warn("parent relay cannot serve this relay now; another parent could", "err", err, "backoff", backoff)
		case errors.As(err, &rl):
			r.log.Info("upstream not ready; retrying", "reply", rl.reply)
			backoff = time.Second
		case time.Since(began) > 30*time.Second:
			r.log.Warn("upstream link lost; reconnecting", "err", err)
			backoff = minBackoff
		default:
			r.log.Warn("upstream link failed; retrying", "err", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		case <-changed:
			backoff = minBackoff
			continue
		}
		backoff = min(backoff*2, maxBackoff)
	}
}
