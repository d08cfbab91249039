package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// syncHook is an injectable flush: it can hold flushes until released,
// fail them, and records what was flushed.
type syncHook struct {
	mu      sync.Mutex
	gate    chan struct{} // non-nil: flushes wait until it is closed
	fail    error         // non-nil: flushes fail with it
	flushed []string      // names of the files and directories flushed
}

func (h *syncHook) sync(f *os.File) error {
	h.mu.Lock()
	gate, fail := h.gate, h.fail
	h.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return fail
	}
	h.mu.Lock()
	h.flushed = append(h.flushed, f.Name())
	h.mu.Unlock()
	return f.Sync()
}

func (h *syncHook) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gate = make(chan struct{})
}

func (h *syncHook) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
}

func (h *syncHook) failWith(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = err
}

func (h *syncHook) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, f := range h.flushed {
		if f == name {
			n++
		}
	}
	return n
}

// hookedStore opens a store in a new directory with fsync policy p and
// its flushes going through a new syncHook, and installs a full sync at
// offset; it returns the options it opened the store with.
func hookedStore(t *testing.T, p FsyncPolicy, offset int64) (*Store, *syncHook, Options) {
	t.Helper()
	h := &syncHook{}
	o := testOptions(t, t.TempDir())
	o.Fsync = p
	o.SyncFile = h.sync
	s := mustOpen(t, o)
	fullSync(t, s, testReplid, offset)
	return s, h, o
}

var errInjected = errors.New("injected: input/output error")

// TestEverySecDurableTrailsEnd: with everysec the durable offset is what the
// last flush covered, not what was written; readers still get the written
// bytes; a waiter on the durable offset wakes when a flush moves it.
func TestEverySecDurableTrailsEnd(t *testing.T) {
	s, h, _ := hookedStore(t, FsyncEverySec, 100)
	h.hold()
	defer h.release()
	stream := commands(0, 50)
	appendAll(t, s, stream, 64)
	end := 100 + int64(len(stream))
	st := s.State()
	if st.End != end || st.Durable != 100 {
		t.Fatalf("while flushes are held: got end %d durable %d, want end %d durable 100", st.End, st.Durable, end)
	}
	if d, _ := s.Durable(); d != 100 {
		t.Fatalf("Durable() while flushes are held: got %d, want 100", d)
	}
	if got := readAll(t, s, 100); len(got) != len(stream) {
		t.Fatalf("readers got %d bytes, want the %d written", len(got), len(stream))
	}
	_, moved := s.Durable()
	h.release()
	select {
	case <-moved:
	case <-time.After(20 * time.Second):
		t.Fatal("durable offset did not move within 20s of releasing the flushes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if d, err := s.WaitDurable(ctx, end); err != nil || d != end {
		t.Fatalf("WaitDurable(%d): got %d, %v", end, d, err)
	}
}

// TestAlwaysFlushFailureNeverCounts: with always an Append counts only
// after its flush; a failed flush leaves End, Durable and readers where they
// were, fails the store for good (no retry that could report a false
// success), and the bytes are gone from the file when it is reopened.
func TestAlwaysFlushFailureNeverCounts(t *testing.T) {
	s, h, o := hookedStore(t, FsyncAlways, 0)
	good := commands(0, 20)
	appendAll(t, s, good, 1<<20)
	end := int64(len(good))
	if st := s.State(); st.End != end || st.Durable != end {
		t.Fatalf("after a flushed append: got end %d durable %d, want both %d", st.End, st.Durable, end)
	}
	r, err := s.NewReader(s.State().Generation, end)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	h.failWith(errInjected)
	_, err = s.Append(commands(20, 5))
	var se *SyncError
	if !errors.As(err, &se) || !errors.Is(err, errInjected) || se.Durable != end {
		t.Fatalf("Append with a failing flush: got %v, want a *SyncError at durable %d wrapping the flush error", err, end)
	}
	if st := s.State(); st.End != end || st.Durable != end {
		t.Errorf("after a failed flush: got end %d durable %d, want both still %d", st.End, st.Durable, end)
	}
	if n := r.Buffered(); n != 0 {
		t.Errorf("a reader at the end sees %d unflushed bytes, want 0", n)
	}
	if !errors.As(s.Err(), &se) {
		t.Errorf("Err() after a failed flush: got %v, want a *SyncError", s.Err())
	}
	// The flush would now succeed: the store must not believe it.
	h.failWith(nil)
	if _, err := s.Append(commands(20, 5)); !errors.As(err, &se) {
		t.Errorf("Append after a failed flush: got %v, want the *SyncError again", err)
	}
	if st := s.State(); st.End != end || st.Durable != end {
		t.Errorf("after a refused append: got end %d durable %d, want both still %d", st.End, st.Durable, end)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.WaitDurable(ctx, end+1); !errors.As(err, &se) {
		t.Errorf("WaitDurable past a failed flush: got %v, want the *SyncError", err)
	}
	r.Close()
	s.Close()

	o.SyncFile = nil
	s2 := mustOpen(t, o)
	if got := s2.End(); got != end {
		t.Fatalf("end after reopen: got %d, want %d (the unflushed bytes cut)", got, end)
	}
	if got := readAll(t, s2, 0); string(got) != string(good) {
		t.Fatalf("after reopen: %d bytes differ from the %d flushed", len(got), len(good))
	}
	appendAll(t, s2, commands(20, 5), 1<<20)
}

// TestEverySecFlushFailureFailsStore: a failed flush of the sync loop
// stops the durable offset for good and the store refuses more bytes.
func TestEverySecFlushFailureFailsStore(t *testing.T) {
	s, h, _ := hookedStore(t, FsyncEverySec, 0)
	h.failWith(errInjected)
	appendAll(t, s, commands(0, 10), 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var se *SyncError
	if d, err := s.WaitDurable(ctx, s.End()); !errors.As(err, &se) || d != 0 {
		t.Fatalf("WaitDurable with failing flushes: got %d, %v; want 0 and a *SyncError", d, err)
	}
	h.failWith(nil)
	if _, err := s.Append(commands(10, 1)); !errors.As(err, &se) {
		t.Fatalf("Append after a failed flush: got %v, want a *SyncError", err)
	}
	if d, _ := s.Durable(); d != 0 {
		t.Fatalf("durable offset after a failed flush: got %d, want 0", d)
	}
}

// TestNoPolicyDurableIsEnd: with fsync no the store promises nothing
// beyond the operating system, and says so: Durable equals End.
func TestNoPolicyDurableIsEnd(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 10), 1<<20)
	if st := s.State(); st.Durable != st.End {
		t.Fatalf("fsync no: got durable %d, end %d; want equal", st.Durable, st.End)
	}
}

// TestNewSegmentsAndHistoriesSyncTheirDirectory: a new history's backlog
// directory, and a backlog directory that got a new segment, are flushed
// before the bytes in them count as durable.
func TestNewSegmentsAndHistoriesSyncTheirDirectory(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncEverySec} {
		t.Run(policy.String(), func(t *testing.T) {
			s, h, o := hookedStore(t, policy, 0)
			backlog := filepath.Join(o.Dir, s.meta.BacklogDir)
			if n := h.count(backlog); n == 0 {
				t.Fatalf("the new history's directory %s was not flushed", backlog)
			}
			before := h.count(backlog)
			// Several segments of 4 KiB.
			appendAll(t, s, commands(0, 500), 1<<10)
			s.mu.RLock()
			segs := len(s.segs)
			s.mu.RUnlock()
			if segs < 2 {
				t.Fatalf("want a rolled segment, have %d", segs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := s.WaitDurable(ctx, s.End()); err != nil {
				t.Fatal(err)
			}
			if after := h.count(backlog); after <= before {
				t.Fatalf("backlog directory flushed %d times after new segments, %d before: want more", after, before)
			}
			s.mu.RLock()
			last := s.segs[len(s.segs)-1].path
			s.mu.RUnlock()
			if h.count(last) == 0 {
				t.Errorf("the active segment %s was never flushed", last)
			}
		})
	}
}
