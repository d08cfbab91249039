package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestContinueRule: Redis 7's PSYNC rule in store positions, one table
// for every consumer.
func TestContinueRule(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.BacklogSize = 16 << 10
	s := mustOpen(t, o)
	fullSync(t, s, testReplid, 100)
	appendAll(t, s, commands(0, 10), 1000)
	at := s.End() // the switch position
	newid := "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
	if err := s.SwitchReplid(newid); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, commands(10, 10), 1000)
	end := s.End()
	other := "9999999999999999999999999999999999999999"
	tests := []struct {
		name   string
		replid string
		pos    int64
		want   error
	}{
		{"current id at the end", newid, end, nil},
		{"current id at the start", newid, 100, nil},
		{"current id before the backlog", newid, 99, ErrOffsetNotCovered},
		{"current id ahead", newid, end + 1, ErrFuture},
		{"previous id at the switch", testReplid, at, nil},
		{"previous id before the switch", testReplid, at - 5, nil},
		{"previous id past the switch", testReplid, at + 1, ErrHistoryDiverged},
		{"previous id far ahead", testReplid, end + 100, ErrHistoryDiverged},
		{"unknown id", other, at, ErrHistoryDiverged},
		{"no id", "", at, ErrHistoryDiverged},
		{"question mark", "?", at, ErrHistoryDiverged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, st, err := s.Continue(tt.replid, tt.pos)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Continue(%s, %d): got %v, want %v", tt.replid, tt.pos, err, tt.want)
			}
			if err != nil {
				return
			}
			defer r.Close()
			if r.Pos() != tt.pos || r.Replid() != st.Replid || st.Replid != newid || r.Generation() != st.Generation {
				t.Errorf("reader at %d as %s (gen %d), state %s gen %d; want at %d as %s", r.Pos(), r.Replid(), r.Generation(), st.Replid, st.Generation, tt.pos, newid)
			}
		})
	}
}

// TestWaitContinueJudgesTheStateAfterTheWait: a consumer ahead of the
// store waits; when a full sync of another history arrives instead of its
// offset, it is refused (ErrHistoryDiverged), even though the new history
// soon passes its offset.
func TestWaitContinueJudgesTheStateAfterTheWait(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 5), 1000)
	pos := s.End() + 10
	type result struct {
		r   *Reader
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		r, _, err := s.WaitContinue(ctx, testReplid, pos)
		done <- result{r, err}
	}()
	newid := "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
	fullSync(t, s, newid, 0)
	appendAll(t, s, commands(0, 20), 1000)
	res := <-done
	if res.r != nil {
		res.r.Close()
	}
	if !errors.Is(res.err, ErrHistoryDiverged) {
		t.Fatalf("WaitContinue after a full sync of another history: got %v, want ErrHistoryDiverged", res.err)
	}

	// The same consumer on the current history gets its reader once the
	// store reaches its offset.
	ahead := s.End() + 5
	go func() {
		r, _, err := s.WaitContinue(ctx, newid, ahead)
		done <- result{r, err}
	}()
	appendAll(t, s, commands(20, 5), 1000)
	if res := <-done; res.err != nil {
		t.Fatalf("WaitContinue on the current history: %v", res.err)
	} else {
		res.r.Close()
	}
}
