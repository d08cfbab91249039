package relay

import (
	"context"
	"errors"
	"time"

	"github.com/arbor-fabric/arbor/relay/store"
)

// continueAt decides whether a consumer (a Redis replica or a child relay)
// that holds pos bytes of replid's history may continue, and opens its
// reader (store.Continue). A consumer ahead of the store on its current
// history (the relay lost an unflushed tail, or the consumer comes from a
// relay further ahead) is waited for up to FutureOffsetWait, as x-pipe's
// keeper does, with tick run every second meanwhile (nil: none). The
// decision is taken again on each state the store reaches, never carried
// over the wait: if the upstream full-resyncs or switches ID below pos
// meanwhile, the answer is ErrHistoryDiverged, not a continuation onto
// another history.
func (r *Relay) continueAt(ctx context.Context, replid string, pos int64, tick func() error) (*store.Reader, store.State, error) {
	deadline := time.Now().Add(r.cfg.FutureOffsetWait)
	for {
		next := time.Now().Add(time.Second)
		if deadline.Before(next) {
			next = deadline
		}
		wctx, cancel := context.WithDeadline(ctx, next)
		reader, st, err := r.store.WaitContinue(wctx, replid, pos)
		cancel()
		switch {
		case !errors.Is(err, store.ErrFuture) || !time.Now().Before(deadline):
			return reader, st, err
		case ctx.Err() != nil:
			return nil, st, ctx.Err()
		case tick != nil:
			if err := tick(); err != nil {
				return nil, st, err
			}
		}
	}
}

// continueRefused tells whether a continueAt error means the consumer
// needs a full sync (rather than that the link failed). An empty store is
// one: the relay is receiving its first RDB, which the consumer may follow.
func continueRefused(err error) bool {
	return errors.Is(err, store.ErrHistoryDiverged) || errors.Is(err, store.ErrOffsetNotCovered) || errors.Is(err, store.ErrFuture) ||
		errors.Is(err, store.ErrEmpty)
}
