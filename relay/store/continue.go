package store

import (
	"context"
	"errors"
	"fmt"
)

// Why a consumer cannot continue from where it is (Continue). Each is
// wrapped with the details.
var (
	// ErrHistoryDiverged means the consumer's replication ID is neither the
	// store's current one nor the previous one up to the switch: its bytes
	// are not this history's, and it needs a full sync.
	ErrHistoryDiverged = errors.New("store: unknown history")
	// ErrOffsetNotCovered means the consumer's position is before the
	// backlog: the bytes it needs are gone, and it needs a full sync.
	ErrOffsetNotCovered = errors.New("store: position not covered by the backlog")
	// ErrFuture means the consumer holds more of the current history than
	// the store does; it may continue once the store catches up
	// (WaitContinue).
	ErrFuture = errors.New("store: position ahead of the stored history")
)

// continuable is the one continuation rule: Redis 7's PSYNC rule in this
// package's positions. A consumer that holds the first pos bytes of a
// history under replid (a Redis replica sending PSYNC <replid> <off> holds
// pos = off-1) may continue from pos when
//
//   - replid is the current ID, or the previous one and pos ≤ the switch
//     position (SecondOffset-1: Redis' "off ≤ second_repl_offset"), and
//   - the backlog covers pos: Start ≤ pos ≤ End (pos == End: nothing to
//     send yet).
//
// A known ID with pos > End is ErrFuture; for the previous ID pos ≤ End
// always holds, so waiting only ever concerns the current history.
func (st State) continuable(replid string, pos int64) error {
	switch {
	case replid == "" || !(replid == st.Replid || replid == st.Replid2 && pos < st.SecondOffset):
		if st.Replid2 != "" {
			return fmt.Errorf("%w: %s@%d is neither %s nor %s up to %d", ErrHistoryDiverged, replid, pos, st.Replid, st.Replid2, st.SecondOffset-1)
		}
		return fmt.Errorf("%w: %s@%d is not %s", ErrHistoryDiverged, replid, pos, st.Replid)
	case pos < st.Start:
		return fmt.Errorf("%w: %d is before the backlog [%d, %d]", ErrOffsetNotCovered, pos, st.Start, st.End)
	case pos > st.End:
		return fmt.Errorf("%w: %d is ahead of %d", ErrFuture, pos, st.End)
	}
	return nil
}

// Continue decides whether a consumer that holds the first pos bytes of the
// history under replid may continue from pos (see continuable), and if so
// opens a reader there. Decision and reader are taken under one lock, on
// the state the reader serves from: the returned State is that state, its
// Replid is the ID to tell the consumer, and it is the reader's, so a
// replication ID switch or a full sync that lands later reaches the reader
// (a *ReplidSwitchError, ErrReset) instead of passing unnoticed.
//
// It fails with ErrHistoryDiverged, ErrOffsetNotCovered or ErrFuture
// (wrapped), ErrEmpty or ErrClosed. The State is returned in every case.
func (s *Store) Continue(replid string, pos int64) (*Reader, State, error) {
	r, st, _, err := s.tryContinue(replid, pos)
	return r, st, err
}

func (s *Store) tryContinue(replid string, pos int64) (*Reader, State, <-chan struct{}, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.stateLocked()
	if err := s.readableLocked(st.Generation); err != nil {
		return nil, st, s.changed, err
	}
	if err := st.continuable(replid, pos); err != nil {
		return nil, st, s.changed, err
	}
	return s.newReaderLocked(st.Generation, pos), st, s.changed, nil
}

// WaitContinue is Continue for a consumer that may be ahead of the store:
// while the answer is ErrFuture it waits for the store to change and
// decides again, until ctx ends (it then returns the last ErrFuture). A
// full sync or an ID switch upstream during the wait is therefore judged
// like any other state: the consumer is never continued onto a history it
// did not come from.
func (s *Store) WaitContinue(ctx context.Context, replid string, pos int64) (*Reader, State, error) {
	for {
		r, st, changed, err := s.tryContinue(replid, pos)
		if !errors.Is(err, ErrFuture) {
			return r, st, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, st, err
		}
	}
}
