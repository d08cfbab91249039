package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ErrIncomingAborted ends the readers of an incoming RDB (Incoming) whose
// transfer was given up before it was installed: the upstream link was cut,
// the RDB failed a check, or a newer full sync began.
var ErrIncomingAborted = errors.New("store: incoming rdb not installed")

// IncomingHeader is what the upstream said of an RDB of a full sync as it
// began: the downstreams that follow the transfer (Incoming) announce the
// same to theirs.
type IncomingHeader struct {
	// Replid and Offset are the +FULLRESYNC values the RDB came with.
	Replid string
	Offset int64
	// Replid2 and SecondOffset are the upstream's previous ID and the last
	// offset of its history, as a parent relay announces them (FullSync);
	// empty and 0 from a Redis master.
	Replid2      string
	SecondOffset int64
	// Size is the RDB's length when the upstream said it up front, -1
	// otherwise (the $EOF framing).
	Size int64
}

// Incoming is the RDB of a full sync while it is received
// (Store.PublishIncoming): downstreams read what has arrived from the
// partial file, wait for more, and learn at the end whether it was
// installed (ResetTo) or given up. Its bytes are not vouched for until then:
// a reader learns that the RDB was installed only after it has read it all,
// and a downstream must not tell its own consumer the RDB is complete
// before that.
type Incoming struct {
	IncomingHeader
	// ID names this transfer among all others (the sender's transfer ID).
	ID string

	mu      sync.Mutex
	path    string        // guarded by mu: the partial file, or where it was installed
	n       int64         // guarded by mu: bytes in the file, readable
	done    bool          // guarded by mu
	err     error         // guarded by mu: why it was given up (done)
	snap    Snapshot      // guarded by mu: what it was installed as (done, err nil)
	gen     uint64        // guarded by mu: the generation it began (done, err nil)
	changed chan struct{} // guarded by mu: closed and replaced on every change
}

// moved records that the file was renamed to path (installed).
func (in *Incoming) moved(path string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.path = path
}

// advance publishes that the file holds n bytes.
func (in *Incoming) advance(n int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.n = n
	close(in.changed)
	in.changed = make(chan struct{})
}

// end settles the transfer: installed as snap in generation gen when err is
// nil, given up otherwise. Only the first call counts.
func (in *Incoming) end(snap Snapshot, gen uint64, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return
	}
	in.done, in.err, in.snap, in.gen = true, err, snap, gen
	close(in.changed)
	in.changed = make(chan struct{})
}

// Received returns the bytes received so far.
func (in *Incoming) Received() int64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.n
}

// Done tells whether the transfer is over, installed or not.
func (in *Incoming) Done() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.done
}

// Open returns a reader of the RDB from its first byte. It fails with
// ErrIncomingAborted when the transfer is over (installed or not): the
// caller then serves the store's snapshot instead.
func (in *Incoming) Open() (*IncomingReader, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.done {
		return nil, fmt.Errorf("%w: the transfer is over", ErrIncomingAborted)
	}
	// The file is renamed when it is installed; an open descriptor follows
	// it, so the reader is opened while the transfer is known to be going.
	f, err := os.Open(in.path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &IncomingReader{in: in, f: f}, nil
}

// IncomingReader reads an Incoming RDB as it arrives. It is for one
// goroutine.
type IncomingReader struct {
	in  *Incoming
	f   *os.File
	pos int64
}

// Read copies RDB bytes from the reader's position into p, waiting until at
// least one has arrived or ctx ends. Once it has returned every byte it
// returns io.EOF if the RDB was installed (Installed then says as what), or
// the error that ended the transfer, wrapping ErrIncomingAborted. An error
// may also come before every byte was read: the transfer was given up.
func (r *IncomingReader) Read(ctx context.Context, p []byte) (int, error) {
	in := r.in
	for {
		in.mu.Lock()
		n, done, err, ch := in.n, in.done, in.err, in.changed
		in.mu.Unlock()
		switch {
		case done && err != nil:
			return 0, err
		case r.pos < n:
			m, rerr := r.f.ReadAt(p[:min(int64(len(p)), n-r.pos)], r.pos)
			r.pos += int64(m)
			if m > 0 {
				return m, nil
			}
			return 0, fmt.Errorf("store: read incoming rdb: %w", rerr)
		case done:
			return 0, io.EOF
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Pos returns how many bytes the reader has returned.
func (r *IncomingReader) Pos() int64 { return r.pos }

// Installed returns the snapshot the RDB was installed as and the
// generation of its history, once Read has returned io.EOF.
func (r *IncomingReader) Installed() (Snapshot, uint64) {
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	return r.in.snap, r.in.gen
}

// Close releases the reader's file.
func (r *IncomingReader) Close() error { return r.f.Close() }

// PublishIncoming makes the RDB w receives followable by downstreams as
// the incoming RDB of a full sync described by h (Incoming), until it is
// installed with ResetTo or given up (Abort, Suspend, or a failed ResetTo).
// A previous incoming RDB still published is given up. Every Write of w
// then reaches the file before it returns, so readers see it.
func (s *Store) PublishIncoming(w *SnapshotWriter, h IncomingHeader) (*Incoming, error) {
	var id [8]byte
	rand.Read(id[:])
	in := &Incoming{
		IncomingHeader: h,
		ID:             fmt.Sprintf("%s-%d-in-%s", h.Replid, h.Offset, hex.EncodeToString(id[:])),
		path:           w.path,
		n:              w.n,
		changed:        make(chan struct{}),
	}
	// Bytes a resumed writer kept are in its file; those it buffered must
	// be too before a reader is told of them.
	if err := w.bw.Flush(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	w.in, w.st = in, s
	s.mu.Lock()
	old := s.incoming
	s.incoming = in
	s.broadcastLocked()
	s.mu.Unlock()
	if old != nil {
		old.end(Snapshot{}, 0, fmt.Errorf("%w: a newer full sync began", ErrIncomingAborted))
	}
	return in, nil
}

// Incoming returns the RDB of a full sync being received, or nil.
func (s *Store) Incoming() *Incoming {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.incoming
}

// unpublish gives up w's incoming RDB (if it published one) with err.
func (w *SnapshotWriter) unpublish(err error) {
	if w.in == nil {
		return
	}
	w.st.mu.Lock()
	if w.st.incoming == w.in {
		w.st.incoming = nil
	}
	w.st.mu.Unlock()
	w.in.end(Snapshot{}, 0, err)
	w.in = nil
}
