package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/rdb"
)

const testReplid = "0123456789012345678901234567890123456789"

func testOptions(t testing.TB, dir string) Options {
	t.Helper()
	return Options{
		Dir:         dir,
		BacklogSize: 64 << 20,
		SegmentSize: 4 << 10,
		TailSize:    1 << 10,
		Fsync:       FsyncNo,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func mustOpen(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fullSync installs a minimal RDB at offset.
func fullSync(t testing.TB, s *Store, replid string, offset int64) {
	t.Helper()
	w, err := s.NewSnapshotWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(rdb.Minimal(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResetTo(w, replid, offset); err != nil {
		t.Fatalf("ResetTo: %v", err)
	}
}

// commands returns n SET commands as the master would stream them.
func commands(from, n int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		k, v := fmt.Sprintf("key:%d", i), fmt.Sprintf("value-%d-%s", i, bytes.Repeat([]byte("x"), i%50))
		b = fmt.Appendf(b, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
	}
	return b
}

func appendAll(t *testing.T, s *Store, p []byte, chunk int) {
	t.Helper()
	for len(p) > 0 {
		n := min(chunk, len(p))
		if _, err := s.Append(p[:n]); err != nil {
			t.Fatalf("Append: %v", err)
		}
		p = p[n:]
	}
}

func readAll(t *testing.T, s *Store, from int64) []byte {
	t.Helper()
	st := s.State()
	r, err := s.NewReader(st.Generation, from)
	if err != nil {
		t.Fatalf("NewReader(%d): %v", from, err)
	}
	defer r.Close()
	var out []byte
	buf := make([]byte, 777)
	for r.Pos() < st.End {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := r.Read(ctx, buf)
		cancel()
		if err != nil {
			t.Fatalf("Read at %d: %v", r.Pos(), err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	if _, err := s.Append([]byte("*1\r\n$4\r\nPING\r\n")); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Append on an empty store: got %v, want ErrEmpty", err)
	}
	fullSync(t, s, testReplid, 1000)
	stream := commands(0, 2000)
	appendAll(t, s, stream, 333)
	st := s.State()
	if st.End != 1000+int64(len(stream)) || st.Start != 1000 || st.Replid != testReplid {
		t.Fatalf("state: got start %d end %d replid %s", st.Start, st.End, st.Replid)
	}
	// From disk (the tail is 1 KiB) and from memory.
	for _, from := range []int64{1000, 1001, 1000 + int64(len(stream)) - 500} {
		if got, want := readAll(t, s, from), stream[from-1000:]; !bytes.Equal(got, want) {
			t.Fatalf("read from %d: %d bytes differ from the %d appended", from, len(got), len(want))
		}
	}
	// Close in the middle of a command; reopen; the rest must be accepted
	// (the scanner state survives) and garbage still refused.
	half := commands(2000, 1)
	appendAll(t, s, half[:7], 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, testOptions(t, dir))
	if got, want := s2.End(), st.End+7; got != want {
		t.Fatalf("end after reopen: got %d, want %d", got, want)
	}
	appendAll(t, s2, half[7:], 100)
	if _, err := s2.Append([]byte("garbage\r\n")); err == nil {
		t.Fatal("garbage appended without error")
	}
	full := append(append([]byte{}, stream...), half...)
	if got := readAll(t, s2, 1000); !bytes.Equal(got, full) {
		t.Fatalf("read after reopen: %d bytes differ from the %d appended", len(got), len(full))
	}
}

func TestGarbageIsRefused(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	fullSync(t, s, testReplid, 0)
	good := commands(0, 3)
	appendAll(t, s, good, 1000)
	bad := append(commands(3, 2), "$3\r\nfoo\r\n"...)
	_, err := s.Append(bad)
	var se *StreamError
	if !errors.As(err, &se) {
		t.Fatalf("Append(garbage): got %v, want a *StreamError", err)
	}
	if want := int64(len(good) + len(commands(3, 2))); se.Offset != want {
		t.Errorf("error offset: got %d, want %d", se.Offset, want)
	}
	if got := s.End(); got != int64(len(good)) {
		t.Errorf("end after refused chunk: got %d, want %d (nothing of the chunk stored)", got, len(good))
	}
	// The stream goes on from where the good bytes ended.
	appendAll(t, s, commands(3, 2), 1000)
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	m, err := readMeta(dir)
	if err != nil || m == nil {
		t.Fatalf("readMeta: %v", err)
	}
	paths, err := listSegments(filepath.Join(dir, m.BacklogDir))
	if err != nil || len(paths) == 0 {
		t.Fatalf("listSegments: %v %v", paths, err)
	}
	return paths[len(paths)-1]
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	fullSync(t, s, testReplid, 0)
	stream := commands(0, 100)
	appendAll(t, s, stream, 64)
	s.Close()
	seg := lastSegment(t, dir)
	fi, _ := os.Stat(seg)
	if err := os.Truncate(seg, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, testOptions(t, dir))
	end := s2.End()
	if end >= int64(len(stream)) || end < int64(len(stream))-64 {
		t.Fatalf("end after torn tail: got %d, want within the last record before %d", end, len(stream))
	}
	if got := readAll(t, s2, 0); !bytes.Equal(got, stream[:end]) {
		t.Fatal("bytes before the cut differ")
	}
	// The upstream resends from end: the store accepts it.
	appendAll(t, s2, stream[end:], 64)
}

func TestCorruptRecordIsCutAndNeverServed(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	fullSync(t, s, testReplid, 0)
	stream := commands(0, 400)
	appendAll(t, s, stream, 64)
	st := s.State()
	s.Close()

	m, _ := readMeta(dir)
	paths, _ := listSegments(filepath.Join(dir, m.BacklogDir))
	if len(paths) < 3 {
		t.Fatalf("want several segments, got %d", len(paths))
	}
	// Flip a payload byte in the middle of the second segment.
	victim := paths[1]
	b, _ := os.ReadFile(victim)
	b[segHeaderSize+recHeaderSize+10] ^= 0xff
	os.WriteFile(victim, b, 0o644)

	s2 := mustOpen(t, testOptions(t, dir))
	st2 := s2.State()
	if st2.End >= st.End {
		t.Fatalf("end after corruption: got %d, want less than %d", st2.End, st.End)
	}
	if got := readAll(t, s2, 0); !bytes.Equal(got, stream[:st2.End]) {
		t.Fatal("bytes served after the cut differ from what was appended")
	}
	if _, err := os.Stat(paths[len(paths)-1]); !errors.Is(err, os.ErrNotExist) && len(paths) > 2 {
		t.Errorf("segments after the corrupt one should be removed, %s is still there", filepath.Base(paths[len(paths)-1]))
	}
}

func TestReaderDetectsCorruptionLive(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 400), 64)
	m, _ := readMeta(dir)
	paths, _ := listSegments(filepath.Join(dir, m.BacklogDir))
	f, _ := os.OpenFile(paths[0], os.O_RDWR, 0)
	f.WriteAt([]byte{0xee}, segHeaderSize+recHeaderSize+1)
	f.Close()
	r, err := s.NewReader(s.State().Generation, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Read(context.Background(), make([]byte, 100))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a corrupt record: got %v, want ErrCorrupt", err)
	}
}

func TestReaderWaitsAndReset(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	fullSync(t, s, testReplid, 0)
	st := s.State()
	r, err := s.NewReader(st.Generation, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan error, 1)
	go func() {
		_, err := r.Read(context.Background(), make([]byte, 10))
		got <- err
	}()
	appendAll(t, s, commands(0, 1), 100)
	if err := <-got; err != nil {
		t.Fatalf("waiting Read: %v", err)
	}
	fullSync(t, s, "9999999999999999999999999999999999999999", 50)
	if _, err := r.Read(context.Background(), make([]byte, 10)); !errors.Is(err, ErrReset) {
		t.Fatalf("Read after a full sync: got %v, want ErrReset", err)
	}
	if _, err := s.NewReader(st.Generation, 0); !errors.Is(err, ErrReset) {
		t.Fatalf("NewReader of an old generation: got %v, want ErrReset", err)
	}
}

func TestSwitchReplidPersists(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	fullSync(t, s, testReplid, 10)
	appendAll(t, s, commands(0, 10), 1000)
	end := s.End()
	newid := "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
	if err := s.SwitchReplid(newid); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st := mustOpen(t, testOptions(t, dir)).State()
	if st.Replid != newid || st.Replid2 != testReplid || st.SecondOffset != end+1 {
		t.Fatalf("after reopen: replid %s replid2 %s second %d, want %s %s %d", st.Replid, st.Replid2, st.SecondOffset, newid, testReplid, end+1)
	}
}

func TestTrimNeedsFresherSnapshot(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.BacklogSize = 16 << 10
	s := mustOpen(t, o)
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 2000), 500)
	st := s.State()
	if st.Start != 0 {
		t.Fatalf("backlog trimmed past the snapshot: start %d", st.Start)
	}
	if !s.NeedSnapshot() {
		t.Fatal("NeedSnapshot false with the backlog over its bound")
	}
	w, _ := s.NewSnapshotWriter()
	w.Write(rdb.Minimal(10))
	if _, err := s.InstallSnapshot(w, testReplid, st.End-100); err != nil {
		t.Fatalf("InstallSnapshot: %v", err)
	}
	st = s.State()
	if st.BacklogBytes > o.BacklogSize+o.SegmentSize {
		t.Fatalf("backlog holds %d bytes after a fresh snapshot, bound %d", st.BacklogBytes, o.BacklogSize)
	}
	if st.Start > st.Snapshot.Offset {
		t.Fatalf("backlog start %d after the snapshot offset %d", st.Start, st.Snapshot.Offset)
	}
	if s.NeedSnapshot() {
		t.Fatal("NeedSnapshot still true")
	}
	fs, err := s.OpenFullSync()
	if err != nil {
		t.Fatalf("OpenFullSync: %v", err)
	}
	fs.Close()
}

func TestBadSnapshotIsRefused(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	w, _ := s.NewSnapshotWriter()
	rdbBytes := rdb.Minimal(10)
	rdbBytes = append(rdbBytes[:len(rdbBytes)-8], 1, 2, 3, 4, 5, 6, 7, 8)
	w.Write(rdbBytes)
	if _, err := s.ResetTo(w, testReplid, 0); err == nil {
		t.Fatal("an RDB with a bad checksum was installed")
	}
	if s.State().HasData() {
		t.Fatal("store has data after a refused RDB")
	}
}

// TestEverySecFlushesRolledSegments: with fsync everysec the sync loop
// flushes rolled segments and the active one, and the durable offset
// catches up with the end.
func TestEverySecFlushesRolledSegments(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.Fsync = FsyncEverySec
	s := mustOpen(t, o)
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 1000), 200)
	end := s.End()
	deadline := time.Now().Add(10 * time.Second)
	for s.State().Durable < end {
		if time.Now().After(deadline) {
			t.Fatalf("durable offset %d, want %d within 10s", s.State().Durable, end)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.RLock()
	pending := len(s.unsynced)
	s.mu.RUnlock()
	if pending != 0 {
		t.Errorf("%d rolled segments still unsynced", pending)
	}
}

// TestReaderPinsBacklogUpToTwiceTheBound: an open reader a little behind
// keeps the segments it needs; past twice the bound they go anyway and the
// reader learns it fell behind.
func TestReaderPinsBacklogUpToTwiceTheBound(t *testing.T) {
	o := testOptions(t, t.TempDir())
	o.BacklogSize = 16 << 10
	s := mustOpen(t, o)
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 100), 500)
	w, _ := s.NewSnapshotWriter()
	w.Write(rdb.Minimal(10))
	if _, err := s.InstallSnapshot(w, testReplid, s.End()); err != nil {
		t.Fatal(err)
	}
	r, err := s.NewReader(s.State().Generation, s.End())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pinned := r.Pos()
	appendAll(t, s, commands(100, 150), 500) // more than the bound, less than twice
	if st := s.State(); st.Start > pinned {
		t.Fatalf("backlog start %d passed the open reader at %d", st.Start, pinned)
	}
	appendAll(t, s, commands(250, 600), 500) // far past twice the bound
	// The snapshot must move for trimming to be possible at all.
	w, _ = s.NewSnapshotWriter()
	w.Write(rdb.Minimal(10))
	if _, err := s.InstallSnapshot(w, testReplid, s.End()); err != nil {
		t.Fatal(err)
	}
	if st := s.State(); st.Start <= pinned || st.BacklogBytes > 2*o.BacklogSize+o.SegmentSize {
		t.Fatalf("backlog [%d, %d) of %d bytes: the reader pinned it past twice the bound", st.Start, st.End, st.BacklogBytes)
	}
	if _, err := r.Read(context.Background(), make([]byte, 10)); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("reader behind the hard cap: got %v, want ErrTrimmed", err)
	}
}

// TestReaderStopsAtReplidSwitch: a reader never reads across the offset
// where the replication ID switched; it gets a ReplidSwitchError there once
// and then reads the new history.
func TestReaderStopsAtReplidSwitch(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	fullSync(t, s, testReplid, 0)
	appendAll(t, s, commands(0, 5), 1000)
	at := s.End()
	r, err := s.NewReader(s.State().Generation, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	newid := "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
	if err := s.SwitchReplid(newid); err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, commands(5, 5), 1000)
	buf := make([]byte, 1<<20)
	n, err := r.Read(context.Background(), buf)
	if err != nil || int64(n) != at {
		t.Fatalf("first read: %d bytes, %v; want the %d bytes before the switch", n, err, at)
	}
	_, err = r.Read(context.Background(), buf)
	var sw *ReplidSwitchError
	if !errors.As(err, &sw) || sw.At != at || sw.Pos != at || sw.Replid != newid {
		t.Fatalf("at the switch: got %v, want a ReplidSwitchError at %d", err, at)
	}
	if n, err := r.Read(context.Background(), buf); err != nil || int64(n) != s.End()-at {
		t.Fatalf("after the switch: %d bytes, %v; want %d", n, err, s.End()-at)
	}
}

// TestReaderLearnsEverySwitch: a reader several replication ID switches
// behind (a child relay that lagged through two failovers) gets each
// switch at its own offset, in order, also after the store is reopened;
// one that knows an ID older than the kept history falls back to the
// newest switch (Redis' replid2 rule).
func TestReaderLearnsEverySwitch(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(t, dir))
	fullSync(t, s, testReplid, 0)
	ids := []string{testReplid, strings.Repeat("b", 40), strings.Repeat("c", 40), strings.Repeat("d", 40)}
	var ats []int64
	for i, id := range ids {
		if i > 0 {
			ats = append(ats, s.End())
			if err := s.SwitchReplid(id); err != nil {
				t.Fatal(err)
			}
		}
		appendAll(t, s, commands(i*5, 5), 1000)
	}
	s.Close()
	s = mustOpen(t, testOptions(t, dir))

	r, err := s.NewReaderAs(s.State().Generation, 0, testReplid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	ctx := context.Background()
	// readTo reads until the reader is at want; reads stop at switches.
	readTo := func(r *Reader, want int64) error {
		for r.Pos() < want {
			if _, err := r.Read(ctx, buf); err != nil {
				return err
			}
		}
		if r.Pos() != want {
			return fmt.Errorf("read past %d to %d", want, r.Pos())
		}
		return nil
	}
	for i, at := range ats {
		if err := readTo(r, at); err != nil {
			t.Fatalf("read %d: %v; want to stop at the switch at %d", i, err, at)
		}
		_, err := r.Read(ctx, buf)
		var sw *ReplidSwitchError
		if !errors.As(err, &sw) || sw.At != at || sw.Pos != at || sw.Replid != ids[i+1] {
			t.Fatalf("switch %d: got %v, want %s at %d", i, err, ids[i+1], at)
		}
		if r.Replid() != ids[i+1] {
			t.Fatalf("after switch %d the reader knows %s, want %s", i, r.Replid(), ids[i+1])
		}
	}
	if err := readTo(r, s.End()); err != nil {
		t.Fatalf("after the last switch: %v; want to read to the end %d", err, s.End())
	}

	old, err := s.NewReaderAs(s.State().Generation, 0, strings.Repeat("0", 40))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := readTo(old, ats[2]); err != nil {
		t.Fatalf("unknown ID: %v; want to read to the newest switch at %d", err, ats[2])
	}
	var sw *ReplidSwitchError
	if _, err := old.Read(ctx, buf); !errors.As(err, &sw) || sw.Replid != ids[3] || sw.At != ats[2] {
		t.Fatalf("unknown ID: got %v, want the switch to %s at %d", err, ids[3], ats[2])
	}
}
