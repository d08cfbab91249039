package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/arbor-fabric/arbor/internal/rdb"
	"github.com/arbor-fabric/arbor/internal/resp"
)

// FsyncPolicy says when appended stream bytes are flushed to stable storage.
type FsyncPolicy int

// Fsync policies, as Redis' appendfsync. The policy also says what the
// store's durable offset (Durable, State.Durable) means, and so what a relay
// acknowledges upstream.
const (
	// FsyncEverySec flushes once a second from a background goroutine.
	// Durable is the end of the last successful flush: at most about a
	// second behind End (more while a flush stalls). Readers are served
	// everything written, as Redis serves its replicas before its AOF
	// fsync.
	FsyncEverySec FsyncPolicy = iota
	// FsyncAlways flushes every Append before its bytes count: End, what
	// readers see and Durable move together, only after the flush, so
	// nothing that a power loss could take is ever acknowledged or served.
	FsyncAlways
	// FsyncNo leaves flushing to the operating system. The store makes no
	// promise about power loss, and Durable equals End: bytes handed to the
	// operating system survive a crash of the process, not of the host.
	FsyncNo
)

// ParseFsync parses "always", "everysec" or "no".
func ParseFsync(s string) (FsyncPolicy, error) {
	switch strings.ToLower(s) {
	case "everysec", "":
		return FsyncEverySec, nil
	case "always":
		return FsyncAlways, nil
	case "no":
		return FsyncNo, nil
	}
	return 0, fmt.Errorf("fsync policy %q: want always, everysec or no", s)
}

func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncNo:
		return "no"
	}
	return "everysec"
}

// Options configure a Store.
type Options struct {
	// Dir is the store's directory; it is created if missing.
	Dir string
	// BacklogSize bounds the stream bytes kept on disk. The backlog is never
	// trimmed past the snapshot's offset (a full sync needs both), so it can
	// outgrow the bound until a fresher snapshot is installed; NeedSnapshot
	// tells when that is the case.
	BacklogSize int64
	// SegmentSize is the size at which a segment file is closed and a new
	// one begun. 0 picks BacklogSize/8 within [1 MiB, 64 MiB].
	SegmentSize int64
	// Fsync is the flush policy for the stream.
	Fsync FsyncPolicy
	// TailSize is the size of the in-memory copy of the newest stream bytes.
	// 0 means 16 MiB.
	TailSize int
	// Logger receives the store's logs. nil means slog.Default().
	Logger *slog.Logger
	// SyncFile flushes a stream file or directory to stable storage. nil
	// means (*os.File).Sync; tests set it to inject slow or failing
	// flushes.
	SyncFile func(*os.File) error
}

// Errors returned by the store.
var (
	// ErrEmpty means the store holds no history yet.
	ErrEmpty = errors.New("store: no data yet")
	// ErrReset means the history a reader followed was replaced by a full
	// sync; the reader's consumer must start over.
	ErrReset = errors.New("store: history replaced")
	// ErrTrimmed means the reader's position fell out of the backlog.
	ErrTrimmed = errors.New("store: position trimmed from the backlog")
	// ErrOutOfRange means a position outside the backlog window was asked.
	ErrOutOfRange = errors.New("store: position outside the backlog")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
)

// SyncError reports a failed flush of stream bytes to stable storage. After
// one the store is failed: what the flush covered is in an unknown state
// (Linux may drop the dirty pages and report success to a later fsync: the
// "fsyncgate" lesson), so the store never retries the flush, never moves
// Durable again and refuses every further Append with this error until it
// is reopened. With FsyncAlways the unflushed bytes were never counted
// (End and readers did not move) and are cut from the segment.
type SyncError struct {
	Durable int64 // the durable offset, which stays where it was
	Err     error
}

func (e *SyncError) Error() string {
	return fmt.Sprintf("store: flush to disk failed; nothing after offset %d counts until the store is reopened: %v", e.Durable, e.Err)
}

func (e *SyncError) Unwrap() error { return e.Err }

// StreamError reports upstream bytes that are not a valid replication
// stream. None of the chunk that held them was stored.
type StreamError struct {
	Offset int64 // stream offset of the first bad byte
	Err    error
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("invalid replication stream at offset %d: %v", e.Offset, e.Err)
}

func (e *StreamError) Unwrap() error { return e.Err }

// State is a consistent view of what the store holds.
type State struct {
	Replid       string
	Replid2      string
	SecondOffset int64 // 1-based, as Redis' second_repl_offset; -1 if none
	Start, End   int64 // the backlog window [Start, End)
	// Durable is the end of the bytes the store vouches for under its
	// fsync policy: flushed to stable storage (FsyncAlways, FsyncEverySec),
	// or written to the operating system (FsyncNo, where it equals End).
	// A relay acknowledges this offset upstream, never End.
	Durable      int64
	Snapshot     *Snapshot
	Generation   uint64 // changes with every full sync installed
	BacklogBytes int64  // stream bytes held on disk
}

// HasData tells whether the store holds a history that can be served.
func (st State) HasData() bool { return st.Snapshot != nil && st.Replid != "" }

// Store is a relay's durable copy of its upstream's history. Append is for
// one goroutine at a time; everything else is safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger

	mu      sync.RWMutex
	meta    meta
	segs    []*segment // ordered by start; the last one is active
	end     int64
	durable int64
	// durableCh is closed and replaced whenever durable moves, the store
	// fails or closes: what ack loops wait on.
	durableCh chan struct{}
	// failed is set by a failed flush (see SyncError) and never cleared.
	failed  *SyncError
	tail    ring
	scanner resp.StreamScanner
	changed chan struct{} // closed and replaced on every change
	closed  bool
	// incoming is the RDB of a full sync being received, published for
	// downstreams to follow (PublishIncoming); nil when there is none.
	incoming *Incoming
	scratch  []byte // record buffer of the appender

	readersMu sync.Mutex
	readers   map[*Reader]struct{} // guarded by readersMu: open readers
	// unsynced are rolled segment files the sync loop has yet to flush and
	// close (FsyncEverySec); unsyncedDirs the directories that got a new
	// segment since its last flush.
	unsynced     []*os.File
	unsyncedDirs []string

	stopSync chan struct{}
	syncDone sync.WaitGroup
}

// Open opens or creates the store in opts.Dir, checking what is on disk:
// a torn or corrupt tail is cut (and logged), and a snapshot that fails its
// checks empties the store, so that nothing unverified is ever served.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: no directory")
	}
	if opts.BacklogSize <= 0 {
		return nil, fmt.Errorf("store: backlog size %d must be positive", opts.BacklogSize)
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = min(max(opts.BacklogSize/8, 1<<20), 64<<20)
	}
	if opts.TailSize <= 0 {
		opts.TailSize = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{
		opts:      opts,
		log:       opts.Logger,
		tail:      ring{buf: make([]byte, opts.TailSize)},
		changed:   make(chan struct{}),
		durableCh: make(chan struct{}),
		scratch:   make([]byte, 0, recHeaderSize+maxRecordPayload),
		readers:   make(map[*Reader]struct{}),
		stopSync:  make(chan struct{}),
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if opts.Fsync == FsyncEverySec {
		s.syncDone.Add(1)
		go s.syncLoop()
	}
	return s, nil
}

// recover loads meta, verifies the snapshot and the segments, and cuts what
// cannot be vouched for.
func (s *Store) recover() error {
	m, err := readMeta(s.opts.Dir)
	if err != nil {
		s.log.Error("store metadata unreadable; starting empty", "err", err)
		m = nil
	}
	if m == nil || m.Snapshot == nil {
		s.meta = meta{SecondOffset: -1}
		if m != nil {
			s.meta.Generation = m.Generation
		}
		s.removeStale("")
		return nil
	}
	s.meta = *m
	snap := m.Snapshot
	if err := verifySnapshot(filepath.Join(s.opts.Dir, snap.File), snap); err != nil {
		s.log.Error("stored snapshot failed its check; discarding the stored history", "file", snap.File, "err", err)
		return s.discardAll()
	}
	dir := filepath.Join(s.opts.Dir, m.BacklogDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	paths, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	buf := make([]byte, maxRecordPayload)
	for i, p := range paths {
		rs, err := scanSegment(p, buf, nil)
		if err == nil {
			err = s.checkContinuity(rs.seg, snap)
		}
		if err != nil {
			s.log.Error("backlog segment unreadable; cutting the backlog before it", "segment", filepath.Base(p), "err", err)
			removeFiles(s.log, paths[i:])
			break
		}
		s.segs = append(s.segs, rs.seg)
		if rs.problem != nil {
			if err := s.cutTail(rs); err != nil {
				return err
			}
			removeFiles(s.log, paths[i+1:])
			break
		}
	}
	// Find the command boundaries in the last segment; bytes that are not a
	// valid stream are cut like corrupt ones.
	for len(s.segs) > 0 {
		last := s.segs[len(s.segs)-1]
		rs, err := scanSegment(last.path, buf, &s.scanner)
		if err != nil {
			s.log.Error("backlog segment unreadable; cutting it", "segment", filepath.Base(last.path), "err", err)
			removeFiles(s.log, []string{last.path})
			s.segs = s.segs[:len(s.segs)-1]
			continue
		}
		if rs.problem != nil {
			if err := s.cutTail(rs); err != nil {
				return err
			}
		}
		s.segs[len(s.segs)-1] = rs.seg
		break
	}
	if len(s.segs) > 0 && s.segs[len(s.segs)-1].end() < snap.Offset {
		s.log.Error("backlog ends before the snapshot offset; discarding the stored history",
			"backlog_end", s.segs[len(s.segs)-1].end(), "snapshot_offset", snap.Offset)
		return s.discardAll()
	}
	if len(s.segs) == 0 {
		s.scanner.Reset()
		sg, err := createSegment(dir, snap.Offset, nil)
		if err == nil {
			err = s.syncNew(sg, dir)
		}
		if err != nil {
			return err
		}
		s.segs = []*segment{sg}
	} else {
		last := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		last.f = f
	}
	if s.opts.Fsync != FsyncNo {
		// What the files hold may still be only in the page cache (the
		// relay died before its flush): flush it before counting it as
		// durable.
		if err := s.syncRecovered(dir); err != nil {
			return err
		}
	}
	s.end = s.segs[len(s.segs)-1].end()
	s.durable = s.end
	s.tail.reset(s.end)
	s.removeStale(m.BacklogDir)
	s.log.Info("store opened", "replid", s.meta.Replid, "snapshot_offset", snap.Offset,
		"backlog_start", s.segs[0].start, "backlog_end", s.end, "segments", len(s.segs))
	return nil
}

// syncRecovered flushes every segment found at open and their directory.
func (s *Store) syncRecovered(dir string) error {
	for _, sg := range s.segs {
		f := sg.f
		if f == nil {
			var err error
			if f, err = os.Open(sg.path); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		err := s.sync(f)
		if sg.f == nil {
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("store: fsync %s at open: %w", filepath.Base(sg.path), err)
		}
	}
	if err := s.syncDir(dir); err != nil {
		return fmt.Errorf("store: fsync %s at open: %w", dir, err)
	}
	return nil
}

// checkContinuity checks that sg continues the segments loaded so far.
func (s *Store) checkContinuity(sg *segment, snap *Snapshot) error {
	if len(s.segs) == 0 {
		if sg.start > snap.Offset {
			return fmt.Errorf("%w: backlog starts at %d, after the snapshot offset %d", ErrCorrupt, sg.start, snap.Offset)
		}
		return nil
	}
	if prev := s.segs[len(s.segs)-1].end(); sg.start != prev {
		return fmt.Errorf("%w: segment starts at %d, previous one ends at %d", ErrCorrupt, sg.start, prev)
	}
	return nil
}

// cutTail truncates a segment after its last good record.
func (s *Store) cutTail(rs *recoveredSegment) error {
	s.log.Error("backlog segment has a torn or corrupt tail; cutting it", "segment", filepath.Base(rs.seg.path),
		"kept_until_offset", rs.seg.end(), "err", rs.problem)
	if err := os.Truncate(rs.seg.path, rs.goodFile); err != nil {
		return fmt.Errorf("store: cut %s: %w", rs.seg.path, err)
	}
	return nil
}

func removeFiles(log *slog.Logger, paths []string) {
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			log.Error("store: remove", "file", p, "err", err)
		} else {
			log.Warn("store: removed backlog segment after a cut", "segment", filepath.Base(p))
		}
	}
}

// verifySnapshot checks the stored RDB against its description: size,
// structure, CRC64 and CRC32C. A description without a CRC32C (written
// before it was kept) gets the one computed now.
func verifySnapshot(path string, snap *Snapshot) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	v := rdb.NewVerifier()
	h := crc32.New(castagnoli)
	n, err := io.Copy(io.MultiWriter(v, h), f)
	if err != nil {
		return err
	}
	if n != snap.Size {
		return fmt.Errorf("%w: snapshot is %d bytes, want %d", ErrCorrupt, n, snap.Size)
	}
	sum, err := v.Finish()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if sum.CRC != snap.CRC64 {
		return fmt.Errorf("%w: snapshot checksum %016x, want %016x", ErrCorrupt, sum.CRC, snap.CRC64)
	}
	switch crc := h.Sum32(); {
	case snap.CRC32C == 0:
		snap.CRC32C = crc
	case crc != snap.CRC32C:
		return fmt.Errorf("%w: snapshot CRC-32C %08x, want %08x", ErrCorrupt, crc, snap.CRC32C)
	}
	return nil
}

// discardAll empties the store on disk and in memory.
func (s *Store) discardAll() error {
	for _, sg := range s.segs {
		if sg.f != nil {
			sg.f.Close()
		}
	}
	s.segs = nil
	s.meta = meta{SecondOffset: -1, Generation: s.meta.Generation}
	if err := writeMeta(s.opts.Dir, &s.meta); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.removeStale("")
	return nil
}

// removeStale deletes backlog directories and snapshot files that meta does
// not reference (left over from a crash during a full sync).
func (s *Store) removeStale(keepDir string) {
	ents, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return
	}
	keepSnap := ""
	if s.meta.Snapshot != nil {
		keepSnap = s.meta.Snapshot.File
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "backlog-") && name != keepDir,
			strings.HasPrefix(name, "snapshot-") && name != keepSnap:
			if err := os.RemoveAll(filepath.Join(s.opts.Dir, name)); err == nil {
				s.log.Debug("removed stale store file", "name", name)
			}
		}
	}
}

// Close flushes and closes the store. Readers blocked in Read return
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stopSync)
	s.broadcastLocked()
	s.durableMovedLocked()
	s.mu.Unlock()
	s.syncDone.Wait()
	err := s.syncOnce()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeFiles()
	return err
}

func (s *Store) closeFiles() {
	for _, sg := range s.segs {
		if sg.f != nil {
			sg.f.Close()
			sg.f = nil
		}
	}
}

func (s *Store) activeLocked() *segment {
	if len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

func (s *Store) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// durableMovedLocked wakes the waiters on the durable offset.
func (s *Store) durableMovedLocked() {
	close(s.durableCh)
	s.durableCh = make(chan struct{})
}

// sync flushes f (a segment file or a directory) to stable storage.
func (s *Store) sync(f *os.File) error {
	if s.opts.SyncFile != nil {
		return s.opts.SyncFile(f)
	}
	return f.Sync()
}

// syncDir flushes the directory dir, so that the files created in it
// survive a power loss.
func (s *Store) syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return s.sync(d)
}

// syncNew flushes a new segment's header and its directory entry: a new
// history's first segment, whatever the policy (meta will point at it).
func (s *Store) syncNew(sg *segment, dir string) error {
	if err := s.sync(sg.f); err != nil {
		sg.f.Close()
		return fmt.Errorf("store: fsync %s: %w", filepath.Base(sg.path), err)
	}
	if err := s.syncDir(dir); err != nil {
		sg.f.Close()
		return fmt.Errorf("store: fsync %s: %w", dir, err)
	}
	return nil
}

// Durable returns the durable offset (see State.Durable) and a channel that
// is closed when it next moves, or when the store fails or closes: an ack
// loop acknowledges the offset, then waits on the channel.
func (s *Store) Durable() (int64, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.durable, s.durableCh
}

// WaitDurable blocks until the durable offset reaches pos, ctx ends, or the
// store fails or closes; it returns the durable offset it saw last.
func (s *Store) WaitDurable(ctx context.Context, pos int64) (int64, error) {
	for {
		s.mu.RLock()
		d, ch, closed, failed := s.durable, s.durableCh, s.closed, s.failed
		s.mu.RUnlock()
		switch {
		case d >= pos:
			return d, nil
		case failed != nil:
			return d, failed
		case closed:
			return d, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return d, ctx.Err()
		}
	}
}

// Err returns the *SyncError that failed the store, or nil while it is
// healthy.
func (s *Store) Err() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.failed == nil {
		return nil
	}
	return s.failed
}

// State returns a consistent view of the store.
func (s *Store) State() State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stateLocked()
}

func (s *Store) stateLocked() State {
	st := State{
		Replid:       s.meta.Replid,
		Replid2:      s.meta.Replid2,
		SecondOffset: s.meta.SecondOffset,
		End:          s.end,
		Durable:      s.durable,
		Generation:   s.meta.Generation,
	}
	if s.meta.Snapshot != nil {
		snap := *s.meta.Snapshot
		st.Snapshot = &snap
	}
	if len(s.segs) > 0 {
		st.Start = s.segs[0].start
		for _, sg := range s.segs {
			st.BacklogBytes += sg.size
		}
	} else {
		st.Start = s.end
	}
	return st
}

// End returns the number of bytes of history held.
func (s *Store) End() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.end
}

// Scanner returns a copy of the scanner state at the end of the history:
// where the next appended byte stands in the stream's grammar.
func (s *Store) Scanner() resp.StreamScanner {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.scanner
}

// NeedSnapshot tells whether the backlog is over its bound and cannot be
// trimmed because the snapshot's offset is in its oldest segment: a fresher
// snapshot (InstallSnapshot) would let it shrink.
func (s *Store) NeedSnapshot() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.meta.Snapshot == nil || len(s.segs) < 2 {
		return false
	}
	var total int64
	for _, sg := range s.segs {
		total += sg.size
	}
	return total-s.segs[0].size >= s.opts.BacklogSize && s.segs[1].start > s.meta.Snapshot.Offset
}

// Append stores stream bytes that follow End. It checks that they continue a
// valid replication stream; if they do not, nothing of p is stored and a
// *StreamError says where the stream went wrong. getAck reports a complete
// REPLCONF GETACK in p, to which the caller should answer with an ACK now.
// With FsyncAlways the bytes are flushed before they count; a failed flush
// returns a *SyncError, and so does every Append after it.
func (s *Store) Append(p []byte) (getAck bool, err error) {
	return s.append(p, nil)
}

// AppendScanned is Append for bytes the caller has already scanned, so that
// the upstream link scans each stream byte once (it scans them anyway, for
// the points where a replica's offset may stand: see resp.TxScanner): p must
// continue the stream from Scanner(), and after is the scanner's state after
// p. It does not check p again.
func (s *Store) AppendScanned(p []byte, after resp.StreamScanner) error {
	_, err := s.append(p, &after)
	return err
}

// append is Append, or with after != nil AppendScanned.
func (s *Store) append(p []byte, after *resp.StreamScanner) (getAck bool, err error) {
	if len(p) == 0 {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	if s.failed != nil {
		return false, s.failed
	}
	if s.meta.Snapshot == nil {
		return false, ErrEmpty
	}
	active := s.activeLocked()
	if active.size >= s.opts.SegmentSize {
		if active, err = s.rollLocked(); err != nil {
			return false, err
		}
	}
	saved := s.scanner
	if after != nil {
		s.scanner = *after
	} else {
		n, _, ack, err := s.scanner.Feed(p)
		if err != nil {
			s.scanner = saved
			return false, &StreamError{Offset: s.end + int64(n), Err: err}
		}
		getAck = ack
	}
	before := *active
	for rest := p; len(rest) > 0; {
		chunk := rest[:min(len(rest), maxRecordPayload)]
		rest = rest[len(chunk):]
		if err := s.writeRecordLocked(active, chunk); err != nil {
			// Records written before the failed one stay in the file but
			// not in the books: cut them, so the file holds what End says.
			s.scanner = saved
			s.cutBackLocked(active, before)
			return false, err
		}
	}
	if s.opts.Fsync == FsyncAlways {
		if err := s.sync(active.f); err != nil {
			s.scanner = saved
			s.cutBackLocked(active, before)
			return false, s.failLocked(err)
		}
	}
	s.tail.write(p)
	s.end += int64(len(p))
	if s.opts.Fsync != FsyncEverySec {
		s.durable = s.end
		s.durableMovedLocked()
	}
	s.trimLocked()
	s.broadcastLocked()
	return getAck, nil
}

// cutBackLocked returns the active segment to what it was before an Append
// that did not count: the file is truncated (which also drops the pages of
// a failed flush from the cache) and the books restored.
func (s *Store) cutBackLocked(sg *segment, before segment) {
	if err := sg.f.Truncate(before.fileSize); err != nil {
		s.log.Error("store: cannot cut bytes that did not count; the next open will check them", "segment", sg.path, "err", err)
	}
	sg.size, sg.fileSize, sg.index = before.size, before.fileSize, before.index
}

// failLocked records a failed flush; the store accepts nothing more.
func (s *Store) failLocked(err error) *SyncError {
	if s.failed == nil {
		s.failed = &SyncError{Durable: s.durable, Err: err}
		s.log.Error("store: flush to disk failed; refusing further stream bytes until the relay restarts",
			"durable_offset", s.durable, "end", s.end, "policy", s.opts.Fsync.String(), "err", err)
		s.durableMovedLocked()
		s.broadcastLocked()
	}
	return s.failed
}

func (s *Store) writeRecordLocked(sg *segment, p []byte) error {
	b := s.scratch[:recHeaderSize]
	binary.LittleEndian.PutUint32(b[0:], uint32(len(p)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(p, castagnoli))
	b = append(b, p...)
	if _, err := sg.f.Write(b); err != nil {
		// A partial write leaves a torn record; cut it so the file stays a
		// sequence of good records.
		if terr := sg.f.Truncate(sg.fileSize); terr != nil {
			s.log.Error("store: cannot cut a failed write", "segment", sg.path, "err", terr)
		}
		return fmt.Errorf("store: write %s: %w", filepath.Base(sg.path), err)
	}
	if len(sg.index) == 0 || sg.fileSize-sg.index[len(sg.index)-1].file >= indexEvery {
		sg.index = append(sg.index, indexEntry{pos: sg.end(), file: sg.fileSize})
	}
	sg.fileSize += int64(len(b))
	sg.size += int64(len(p))
	return nil
}

// rollLocked closes the active segment and begins a new one at s.end.
//
// With FsyncEverySec the old segment is flushed by the sync loop, not here:
// an fsync of a whole segment under the lock would stall every reader.
func (s *Store) rollLocked() (*segment, error) {
	old := s.activeLocked()
	state, err := s.scanner.MarshalBinary()
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(old.path)
	sg, err := createSegment(dir, s.end, state)
	if err != nil {
		return nil, err
	}
	switch s.opts.Fsync {
	case FsyncEverySec:
		s.unsynced = append(s.unsynced, old.f)
		if !slices.Contains(s.unsyncedDirs, dir) {
			s.unsyncedDirs = append(s.unsyncedDirs, dir)
		}
	case FsyncAlways:
		// The new file's entry must be on disk before its bytes count
		// (Append flushes the file itself).
		if err := s.syncDir(dir); err != nil {
			sg.f.Close()
			os.Remove(sg.path)
			return nil, s.failLocked(err)
		}
		old.f.Close()
	default:
		old.f.Close()
	}
	old.f = nil
	s.segs = append(s.segs, sg)
	return sg, nil
}

// trimLocked deletes the oldest segments while the backlog exceeds its bound,
// never past the snapshot's offset. Like Redis 7, it keeps segments an open
// reader still needs (a consumer a little behind is not pushed into a full
// sync), but only up to twice the bound; past that such readers get
// ErrTrimmed.
func (s *Store) trimLocked() {
	var total int64
	for _, sg := range s.segs {
		total += sg.size
	}
	need := s.oldestReaderPos()
	for len(s.segs) > 1 && total-s.segs[0].size >= s.opts.BacklogSize && s.segs[1].start <= s.meta.Snapshot.Offset {
		if s.segs[1].start > need && total < 2*s.opts.BacklogSize {
			return
		}
		old := s.segs[0]
		if err := os.Remove(old.path); err != nil {
			s.log.Error("store: remove trimmed segment", "segment", old.path, "err", err)
			return
		}
		total -= old.size
		s.segs = s.segs[1:]
	}
}

// oldestReaderPos returns the lowest position of the open readers of the
// current history, or the end when there are none.
func (s *Store) oldestReaderPos() int64 {
	pos := s.end
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	for r := range s.readers {
		if r.gen == s.meta.Generation {
			pos = min(pos, r.at.Load())
		}
	}
	return pos
}

func (s *Store) syncLoop() {
	defer s.syncDone.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
		}
		// A failure is logged once, by failLocked, and fails the store.
		_ = s.syncOnce()
	}
}

// syncOnce flushes the segments closed since the last call, their
// directories and the active segment, then moves the durable offset. Only
// the sync loop and Close call it. A failed flush fails the store (see
// SyncError): it is never retried.
func (s *Store) syncOnce() error {
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return nil
	}
	pending, dirs := s.unsynced, s.unsyncedDirs
	s.unsynced, s.unsyncedDirs = nil, nil
	end, gen := s.end, s.meta.Generation
	var f *os.File
	if a := s.activeLocked(); a != nil {
		f = a.f
	}
	s.mu.Unlock()
	var err error
	for _, p := range pending {
		err = errors.Join(err, s.sync(p), p.Close())
	}
	// A full sync may close f meanwhile; its history is gone anyway.
	if f != nil {
		if ferr := s.sync(f); !errors.Is(ferr, os.ErrClosed) {
			err = errors.Join(err, ferr)
		}
	}
	for _, d := range dirs {
		if derr := s.syncDir(d); !errors.Is(derr, os.ErrNotExist) {
			err = errors.Join(err, derr)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.meta.Generation {
		// A full sync replaced the history meanwhile; its own durable
		// offset stands.
		return nil
	}
	if err != nil {
		return s.failLocked(err)
	}
	if end > s.durable {
		s.durable = end
		s.durableMovedLocked()
	}
	return nil
}

// SwitchReplid records that the upstream continued under a new replication
// ID at the current end (+CONTINUE <newid>): the old ID becomes Replid2,
// valid up to End+1, as Redis does.
func (s *Store) SwitchReplid(newid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if newid == s.meta.Replid {
		return nil
	}
	m := s.meta
	m.recordSwitch(m.Replid, newid, s.end)
	m.Replid2, m.SecondOffset, m.Replid = m.Replid, s.end+1, newid
	if err := writeMeta(s.opts.Dir, &m); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.meta = m
	s.broadcastLocked()
	return nil
}

// segmentFor returns the segment holding pos; the caller holds s.mu.
func (s *Store) segmentForLocked(pos int64) *segment {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].end() > pos })
	if i == len(s.segs) {
		return nil
	}
	return s.segs[i]
}
