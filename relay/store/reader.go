package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
)

// Reader reads the stream from a position on, waiting for new bytes. Recent
// bytes come from the in-memory tail, older ones from the segment files, each
// record checked against its CRC. A Reader is for one goroutine.
type Reader struct {
	s      *Store
	gen    uint64
	pos    int64
	replid string // the replication ID of the bytes delivered so far
	// at mirrors pos for the store, which keeps the segments a reader still
	// needs (up to a hard cap) when it trims.
	at atomic.Int64

	// Disk cursor: the last record read from path, and where the next begins.
	path     string
	f        *os.File
	rec      []byte
	recPos   int64
	nextFile int64
	buf      []byte
}

// NewReader returns a reader of the history of generation gen (from State)
// positioned at pos, which must lie in the backlog window [Start, End].
func (s *Store) NewReader(gen uint64, pos int64) (*Reader, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.readableLocked(gen); err != nil {
		return nil, err
	}
	if start := s.segs[0].start; pos < start || pos > s.end {
		return nil, fmt.Errorf("%w: %d not in [%d, %d]", ErrOutOfRange, pos, start, s.end)
	}
	return s.newReaderLocked(gen, pos), nil
}

// NewReaderAs is NewReader for a consumer that knows the bytes before pos
// under replid: if that is not the store's current replication ID, Read
// reports the switch to it (at its offset) as it would have to a reader
// that had been reading all along.
func (s *Store) NewReaderAs(gen uint64, pos int64, replid string) (*Reader, error) {
	r, err := s.NewReader(gen, pos)
	if err == nil {
		r.replid = replid
	}
	return r, err
}

// newReaderLocked makes and registers a reader; the caller holds s.mu (for
// reading is enough: readers has its own lock).
func (s *Store) newReaderLocked(gen uint64, pos int64) *Reader {
	r := &Reader{s: s, gen: gen, pos: pos, replid: s.meta.Replid}
	r.at.Store(pos)
	s.readersMu.Lock()
	s.readers[r] = struct{}{}
	s.readersMu.Unlock()
	return r
}

func (s *Store) readableLocked(gen uint64) error {
	switch {
	case s.closed:
		return ErrClosed
	case s.meta.Snapshot == nil || len(s.segs) == 0:
		return ErrEmpty
	case gen != s.meta.Generation:
		return ErrReset
	}
	return nil
}

// Pos returns the position of the next byte Read returns.
func (r *Reader) Pos() int64 { return r.pos }

// Replid returns the replication ID of the bytes the reader has delivered
// so far: the ID its consumer knows. It changes when Read reports a
// *ReplidSwitchError.
func (r *Reader) Replid() string { return r.replid }

// Generation returns the generation of the history the reader reads.
func (r *Reader) Generation() uint64 { return r.gen }

// Close releases the reader's file and its hold on the backlog.
func (r *Reader) Close() error {
	r.s.readersMu.Lock()
	delete(r.s.readers, r)
	r.s.readersMu.Unlock()
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

// Buffered returns how many bytes are available to Read without waiting.
func (r *Reader) Buffered() int64 {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	return r.s.end - r.pos
}

// ReplidSwitchError is returned once by Read when the reader reaches the
// offset where the replication ID switched (Pos == At); the bytes after it
// belong to Replid. Pos > At means the reader was created past it under the
// old ID (several switches in a row): its consumer should start over.
type ReplidSwitchError struct {
	Replid  string
	At, Pos int64
}

func (e *ReplidSwitchError) Error() string {
	return fmt.Sprintf("store: replication id switched to %s at offset %d (reader at %d)", e.Replid, e.At, e.Pos)
}

// Read copies stream bytes from the reader's position into p, waiting until
// at least one is available or ctx ends. A read never crosses a replication
// ID switch: at the switch it returns a *ReplidSwitchError once. It fails with ErrReset when a full
// sync replaced the history, ErrTrimmed when the position fell out of the
// backlog, ErrClosed, or an error wrapping ErrCorrupt.
func (r *Reader) Read(ctx context.Context, p []byte) (int, error) {
	for {
		s := r.s
		s.mu.RLock()
		if err := s.readableLocked(r.gen); err != nil {
			s.mu.RUnlock()
			return 0, err
		}
		if r.pos < s.segs[0].start {
			s.mu.RUnlock()
			return 0, ErrTrimmed
		}
		if s.meta.Replid != r.replid {
			// Reads never cross the offset where the replication ID
			// switched: the consumer learns of it exactly there, of each
			// switch in turn.
			sw := s.meta.nextSwitch(r.replid)
			at := sw.At
			if r.pos >= at {
				r.replid = sw.To
				s.mu.RUnlock()
				return 0, &ReplidSwitchError{Replid: r.replid, At: at, Pos: r.pos}
			}
			if int64(len(p)) > at-r.pos {
				p = p[:at-r.pos]
			}
		}
		if r.pos < s.end {
			if r.pos >= s.tail.start {
				n := s.tail.read(p, r.pos)
				s.mu.RUnlock()
				r.pos += int64(n)
				r.at.Store(r.pos)
				return n, nil
			}
			sg := s.segmentForLocked(r.pos)
			path, from := sg.path, sg.locate(r.pos)
			s.mu.RUnlock()
			n, err := r.readDisk(p, path, from)
			if err != nil {
				if errors.Is(err, ErrCorrupt) {
					s.log.Error("store: backlog record failed its check; not serving it", "segment", filepath.Base(path), "offset", r.pos, "err", err)
				}
				return 0, err
			}
			r.pos += int64(n)
			r.at.Store(r.pos)
			return n, nil
		}
		ch := s.changed
		s.mu.RUnlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// readDisk copies bytes at r.pos from the segment file path; from is the
// index entry at or before r.pos.
func (r *Reader) readDisk(p []byte, path string, from indexEntry) (int, error) {
	if r.path == path && r.rec != nil && r.pos >= r.recPos && r.pos < r.recPos+int64(len(r.rec)) {
		return copy(p, r.rec[r.pos-r.recPos:]), nil
	}
	if r.path != path {
		r.Close()
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, ErrTrimmed
		}
		if err != nil {
			return 0, err
		}
		r.path, r.f, r.rec = path, f, nil
	}
	file, at := from.file, from.pos
	if r.rec != nil && r.pos >= r.recPos+int64(len(r.rec)) && r.recPos+int64(len(r.rec)) >= from.pos {
		file, at = r.nextFile, r.recPos+int64(len(r.rec))
	}
	var rh [recHeaderSize]byte
	for {
		if _, err := r.f.ReadAt(rh[:], file); err != nil {
			return 0, fmt.Errorf("%w: record header at file offset %d: %v", ErrCorrupt, file, err)
		}
		n := int64(binary.LittleEndian.Uint32(rh[0:]))
		if n == 0 || n > maxRecordPayload {
			return 0, fmt.Errorf("%w: record length %d at file offset %d", ErrCorrupt, n, file)
		}
		if int64(cap(r.buf)) < n {
			r.buf = make([]byte, n)
		}
		rec := r.buf[:n]
		if _, err := r.f.ReadAt(rec, file+recHeaderSize); err != nil {
			return 0, fmt.Errorf("%w: record at file offset %d: %v", ErrCorrupt, file, err)
		}
		if got, want := crc32.Checksum(rec, castagnoli), binary.LittleEndian.Uint32(rh[4:]); got != want {
			r.rec = nil
			return 0, fmt.Errorf("%w: record checksum %08x, want %08x, at file offset %d", ErrCorrupt, got, want, file)
		}
		r.rec, r.recPos, r.nextFile = rec, at, file+recHeaderSize+n
		if r.pos < at+n {
			return copy(p, rec[r.pos-at:]), nil
		}
		file, at = r.nextFile, at+n
	}
}

// WaitEnd blocks until the store holds pos bytes (End ≥ pos), ctx ends, or
// the store closes; it returns the state it saw last.
func (s *Store) WaitEnd(ctx context.Context, pos int64) (State, error) {
	return s.WaitFor(ctx, func(st State) bool { return st.End >= pos })
}

// WaitFor blocks until ok holds for the store's state, ctx ends, or the
// store is closed; it returns the last state it saw.
func (s *Store) WaitFor(ctx context.Context, ok func(State) bool) (State, error) {
	for {
		s.mu.RLock()
		st, ch, closed := s.stateLocked(), s.changed, s.closed
		s.mu.RUnlock()
		switch {
		case ok(st):
			return st, nil
		case closed:
			return st, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}
