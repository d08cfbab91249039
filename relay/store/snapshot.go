package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/arbor-fabric/arbor/internal/rdb"
)

// SnapshotWriter receives an RDB from upstream into a temporary file,
// checking it as it arrives. Install it with ResetTo, or Abort it.
type SnapshotWriter struct {
	f    *os.File
	bw   *bufio.Writer
	v    *rdb.Verifier
	path string
	n    int64
	crc  uint32 // CRC-32C of the n bytes

	finished bool
	sum      rdb.Summary
	finErr   error

	// in is the RDB as downstreams follow it (PublishIncoming), in the
	// store st; nil when it is not published.
	in *Incoming
	st *Store
}

// NewSnapshotWriter begins receiving an RDB into a temporary file (removed
// at the next Open if the relay dies meanwhile).
func (s *Store) NewSnapshotWriter() (*SnapshotWriter, error) {
	f, err := os.CreateTemp(s.opts.Dir, "snapshot-incoming-*.rdb")
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &SnapshotWriter{f: f, bw: bufio.NewWriterSize(f, 256<<10), v: rdb.NewVerifier(), path: f.Name()}, nil
}

// Write appends RDB bytes. It fails early when they cannot be an RDB.
func (w *SnapshotWriter) Write(p []byte) (int, error) {
	if _, err := w.v.Write(p); err != nil {
		return 0, err
	}
	n, err := w.bw.Write(p)
	w.n += int64(n)
	w.crc = crc32.Update(w.crc, castagnoli, p[:n])
	if w.in != nil && err == nil {
		// Followers read the file: what they are told of must be in it.
		if err = w.bw.Flush(); err == nil {
			w.in.advance(w.n)
		}
	}
	return n, err
}

// CRC32C returns the CRC-32C (Castagnoli) of every byte written so far,
// those a resumed writer kept included: the relays' own end-to-end
// checksum of an RDB (Snapshot.CRC32C), which covers every byte, whatever
// the RDB itself carries.
func (w *SnapshotWriter) CRC32C() uint32 { return w.crc }

// Size returns the bytes received so far.
func (w *SnapshotWriter) Size() int64 { return w.n }

// Abort discards the partial RDB; its followers (PublishIncoming) get
// ErrIncomingAborted.
func (w *SnapshotWriter) Abort() {
	w.unpublish(fmt.Errorf("%w: transfer abandoned", ErrIncomingAborted))
	w.f.Close()
	os.Remove(w.path)
}

// Finish checks the RDB (its structure, and the CRC64 it carries unless
// that is 0) and flushes it to disk; the summary's CRC is the CRC64
// computed over its content. Call it to compare checksums before ResetTo or
// InstallSnapshot, which call it otherwise; later calls return the first
// result.
func (w *SnapshotWriter) Finish() (rdb.Summary, error) {
	if !w.finished {
		w.finished = true
		w.sum, w.finErr = w.finish()
	}
	return w.sum, w.finErr
}

func (w *SnapshotWriter) finish() (rdb.Summary, error) {
	sum, err := w.v.Finish()
	if err != nil {
		return sum, err
	}
	if err := w.bw.Flush(); err != nil {
		return sum, err
	}
	if err := w.f.Sync(); err != nil {
		return sum, err
	}
	return sum, w.f.Close()
}

// keep renames the finished RDB (Finish) to file in dir, as the snapshot
// of replid at offset, and returns its description: size, checksums and
// version as Finish found them.
func (w *SnapshotWriter) keep(dir, file, replid string, offset int64) (Snapshot, error) {
	if err := os.Rename(w.path, filepath.Join(dir, file)); err != nil {
		os.Remove(w.path)
		return Snapshot{}, fmt.Errorf("store: %w", err)
	}
	if w.in != nil {
		// A follower that opens it from now on finds it under its new name.
		w.in.moved(filepath.Join(dir, file))
	}
	return Snapshot{File: file, Replid: replid, Offset: offset, Size: w.n,
		CRC64: w.sum.CRC, CRC32C: w.crc, RDBVersion: w.sum.Version}, nil
}

// ResetTo replaces the whole history with the RDB in w, received with
// +FULLRESYNC replid offset: the old snapshot and backlog are dropped and
// readers of them get ErrReset. The RDB is checked first; if it fails, the
// store keeps what it had and the error says why.
func (s *Store) ResetTo(w *SnapshotWriter, replid string, offset int64) (snap Snapshot, err error) {
	defer func() {
		if err != nil {
			w.unpublish(fmt.Errorf("%w: %w", ErrIncomingAborted, err))
		}
	}()
	if err := s.Err(); err != nil {
		w.Abort()
		return Snapshot{}, err
	}
	sum, err := w.Finish()
	if err != nil {
		w.Abort()
		return Snapshot{}, fmt.Errorf("received rdb rejected: %w", err)
	}
	s.mu.RLock()
	gen := s.meta.Generation + 1
	s.mu.RUnlock()
	snap, err = w.keep(s.opts.Dir, fmt.Sprintf("snapshot-%d.rdb", gen), replid, offset)
	if err != nil {
		return Snapshot{}, err
	}
	backlogDir := fmt.Sprintf("backlog-%d", gen)
	dir := filepath.Join(s.opts.Dir, backlogDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Snapshot{}, fmt.Errorf("store: %w", err)
	}
	sg, err := createSegment(dir, offset, nil)
	if err != nil {
		return Snapshot{}, err
	}
	// The new history's first segment and its directory must be on disk
	// before meta names them, whatever the policy.
	if err := s.syncNew(sg, dir); err != nil {
		return Snapshot{}, err
	}
	if err := s.syncDir(s.opts.Dir); err != nil {
		return Snapshot{}, fmt.Errorf("store: %w", err)
	}

	s.mu.Lock()
	m := meta{Replid: replid, SecondOffset: -1, Snapshot: &snap, BacklogDir: backlogDir, Generation: gen}
	if err := writeMeta(s.opts.Dir, &m); err != nil {
		s.mu.Unlock()
		sg.f.Close()
		os.RemoveAll(dir)
		os.Remove(filepath.Join(s.opts.Dir, snap.File))
		return Snapshot{}, fmt.Errorf("store: %w", err)
	}
	old, oldMeta := s.segs, s.meta
	s.closeFiles()
	s.meta = m
	s.segs = []*segment{sg}
	s.end, s.durable = offset, offset
	s.tail.reset(offset)
	s.scanner.Reset()
	if w.in != nil && s.incoming == w.in {
		s.incoming = nil
	}
	s.broadcastLocked()
	s.durableMovedLocked()
	s.mu.Unlock()
	if w.in != nil {
		// Installed and durable: its followers may now tell their
		// consumers the RDB is complete.
		w.in.end(snap, gen, nil)
		w.in = nil
	}

	if len(old) > 0 {
		os.RemoveAll(filepath.Dir(old[0].path))
	}
	if oldMeta.BacklogDir != "" {
		os.RemoveAll(filepath.Join(s.opts.Dir, oldMeta.BacklogDir))
	}
	if oldMeta.Snapshot != nil {
		os.Remove(filepath.Join(s.opts.Dir, oldMeta.Snapshot.File))
	}
	s.log.Info("store reset to a new snapshot", "replid", replid, "offset", offset, "rdb_bytes", snap.Size, "rdb_version", snap.RDBVersion, "crc_checked", sum.CRCChecked)
	return snap, nil
}

// FullSync is what a full sync of a downstream needs: the snapshot's file
// and a reader of the stream from the snapshot's offset, taken atomically.
type FullSync struct {
	Snapshot Snapshot
	// Replid is the current replication ID (the history the snapshot belongs
	// to may have continued under a newer ID since); Replid2 and
	// SecondOffset are the previous one and its State.SecondOffset, all
	// taken with the reader.
	Replid       string
	Replid2      string
	SecondOffset int64
	File         *os.File
	Stream       *Reader
}

// Close releases the file and the reader.
func (fs *FullSync) Close() {
	fs.File.Close()
	fs.Stream.Close()
}

// OpenFullSync opens the snapshot and a reader at its offset.
func (s *Store) OpenFullSync() (*FullSync, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readableLocked(s.meta.Generation); err != nil {
		return nil, err
	}
	snap := *s.meta.Snapshot
	if snap.Offset < s.segs[0].start {
		return nil, fmt.Errorf("%w: snapshot offset %d was trimmed", ErrOutOfRange, snap.Offset)
	}
	f, err := os.Open(filepath.Join(s.opts.Dir, snap.File))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &FullSync{
		Snapshot:     snap,
		Replid:       s.meta.Replid,
		Replid2:      s.meta.Replid2,
		SecondOffset: s.meta.SecondOffset,
		File:         f,
		Stream:       s.newReaderLocked(s.meta.Generation, snap.Offset),
	}, nil
}

// ErrSnapshotRefused is returned (wrapped) by InstallSnapshotWith for an
// RDB that breaks its RefreshRules.
var ErrSnapshotRefused = errors.New("store: snapshot refused")

// RefreshRules are what a fresher snapshot must meet, compared with the
// snapshot it replaces (InstallSnapshotWith). The rules hold by induction: every snapshot descends, through
// refreshes that kept them, from one the upstream sent in a full sync.
type RefreshRules struct {
	// NoNewerVersion refuses an RDB whose format version is newer than the
	// replaced snapshot's. The site's replicas load what the master sends
	// them; a source running a newer Redis (a rolling upgrade) writes an
	// RDB they cannot load ("Can't handle RDB format version"), and every
	// full sync from the relay would then fail, forever. Only the upstream
	// may raise the version.
	NoNewerVersion bool
	// NeedCRC refuses an RDB without a checksum (a stored CRC64 of 0, "not
	// computed": rdbchecksum no) unless the snapshot it replaces has none
	// either (the master itself runs with rdbchecksum no), so that content
	// is checked end to end whenever the master makes that possible.
	NeedCRC bool
}

// InstallSnapshot replaces the snapshot with a fresher RDB of the same
// history (the upstream's replid, at an offset inside the backlog window),
// which lets the backlog be trimmed past the old snapshot. The backlog and
// its readers are untouched. It is InstallSnapshotWith with no rules: for
// an RDB from the upstream itself.
func (s *Store) InstallSnapshot(w *SnapshotWriter, replid string, offset int64) (Snapshot, error) {
	return s.InstallSnapshotWith(w, replid, offset, RefreshRules{})
}

// InstallSnapshotWith is InstallSnapshot for an RDB that must also meet
// rules; one that does not is discarded with ErrSnapshotRefused.
func (s *Store) InstallSnapshotWith(w *SnapshotWriter, replid string, offset int64, rules RefreshRules) (Snapshot, error) {
	sum, err := w.Finish()
	if err != nil {
		w.Abort()
		return Snapshot{}, fmt.Errorf("received rdb rejected: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked()
	if replid != st.Replid || offset < st.Start || offset > st.End {
		w.Abort()
		return Snapshot{}, fmt.Errorf("%w: snapshot %s@%d does not fit the history %s [%d, %d]", ErrOutOfRange, replid, offset, st.Replid, st.Start, st.End)
	}
	if cur := s.meta.Snapshot; cur != nil {
		if rules.NoNewerVersion && sum.Version > cur.RDBVersion {
			w.Abort()
			return Snapshot{}, fmt.Errorf("%w: rdb version %d is newer than the snapshot's %d (the site's replicas may not load it)",
				ErrSnapshotRefused, sum.Version, cur.RDBVersion)
		}
		if rules.NeedCRC && !sum.CRCChecked {
			stored, err := s.storedCRCLocked(cur)
			if err != nil {
				w.Abort()
				return Snapshot{}, err
			}
			if stored != 0 {
				w.Abort()
				return Snapshot{}, fmt.Errorf("%w: the rdb carries no checksum (rdbchecksum no), the snapshot it would replace does", ErrSnapshotRefused)
			}
		}
	}
	snap, err := w.keep(s.opts.Dir, fmt.Sprintf("snapshot-%d-%d.rdb", s.meta.Generation, offset), replid, offset)
	if err != nil {
		return Snapshot{}, err
	}
	m := s.meta
	old := m.Snapshot
	m.Snapshot = &snap
	if err := writeMeta(s.opts.Dir, &m); err != nil {
		os.Remove(filepath.Join(s.opts.Dir, snap.File))
		return Snapshot{}, fmt.Errorf("store: %w", err)
	}
	s.meta = m
	if old != nil && old.File != snap.File {
		os.Remove(filepath.Join(s.opts.Dir, old.File))
	}
	s.trimLocked()
	s.log.Info("store snapshot refreshed", "replid", replid, "offset", offset, "rdb_bytes", snap.Size)
	return snap, nil
}

// NewNamedSnapshotWriter begins receiving an RDB into name inside the
// store's directory, a file that survives restarts so a cut transfer can
// be resumed with ResumeSnapshotWriter.
func (s *Store) NewNamedSnapshotWriter(name string) (*SnapshotWriter, error) {
	path := filepath.Join(s.opts.Dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &SnapshotWriter{f: f, bw: bufio.NewWriterSize(f, 256<<10), v: rdb.NewVerifier(), path: path}, nil
}

// Sync flushes a partial RDB to stable storage and returns the bytes it
// holds, which a resume may then keep (Transfer.Bytes).
func (w *SnapshotWriter) Sync() (int64, error) {
	if err := w.bw.Flush(); err != nil {
		return 0, err
	}
	if err := w.f.Sync(); err != nil {
		return 0, err
	}
	return w.n, nil
}

// Suspend flushes a partial RDB to stable storage and closes it, keeping
// the file for ResumeSnapshotWriter. It returns the bytes it holds: only
// once it has returned without error may a resume keep them.
func (w *SnapshotWriter) Suspend() (int64, error) {
	w.unpublish(fmt.Errorf("%w: transfer cut", ErrIncomingAborted))
	n, err := w.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// ResumeSnapshotWriter reopens a partial RDB written by a named writer,
// keeps its first keep bytes (checking them again, which also restores the
// running checksums, CRC32C included) and continues after them.
func (s *Store) ResumeSnapshotWriter(name string, keep int64) (*SnapshotWriter, error) {
	path := filepath.Join(s.opts.Dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if fi.Size() < keep {
		return nil, fmt.Errorf("store: partial rdb holds %d bytes, fewer than %d", fi.Size(), keep)
	}
	if err := os.Truncate(path, keep); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	v := rdb.NewVerifier()
	h := crc32.New(castagnoli)
	if _, err := io.Copy(io.MultiWriter(v, h), io.NewSectionReader(f, 0, keep)); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: partial rdb: %w", err)
	}
	return &SnapshotWriter{f: f, bw: bufio.NewWriterSize(f, 256<<10), v: v, path: path, n: keep, crc: h.Sum32()}, nil
}

// AdoptIDs takes the replication IDs of the upstream relay: the current
// one, and the previous one with the last offset of its history (a
// 1-based Redis second_repl_offset; -1 for none).
func (s *Store) AdoptIDs(replid, replid2 string, secondOffset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if replid2 == "" {
		secondOffset = -1
	}
	if s.meta.Replid == replid && s.meta.Replid2 == replid2 && s.meta.SecondOffset == secondOffset {
		return nil
	}
	m := s.meta
	if secondOffset > 0 {
		// The upstream continued under replid from secondOffset-1 on:
		// exactly the switch from replid2, or, when this store missed
		// switches in between, from its own ID to replid there.
		m.recordSwitch(m.Replid, replid, secondOffset-1)
	}
	m.Replid, m.Replid2, m.SecondOffset = replid, replid2, secondOffset
	if err := writeMeta(s.opts.Dir, &m); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.meta = m
	s.broadcastLocked()
	return nil
}

// storedCRCLocked reads the CRC64 stored at the end of snapshot snap's RDB
// (0: the RDB carries none). s.mu is held.
func (s *Store) storedCRCLocked(snap *Snapshot) (uint64, error) {
	f, err := os.Open(filepath.Join(s.opts.Dir, snap.File))
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], snap.Size-8); err != nil {
		return 0, fmt.Errorf("store: snapshot checksum: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}
