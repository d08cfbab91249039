package relay

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

// A fanout compresses the live stream once for every child relay link on one
// codec that keeps up, instead of once per link: with zstd that is most of a
// relay's CPU per child.
//
// The frames it makes are kept in a short queue (fanoutQueueBytes of wire
// bytes). A link at most fanoutJoinGap behind the fanout joins it at the
// next frame (sending the gap itself first), which the fanout starts as a
// new compression stream (Stream.compression_reset), so the child's decoder
// needs no earlier frame of the fanout. A member sends
// the queue's frames in order; one that falls behind the queue leaves and
// goes on with its own reader and encoder (again from a reset), so a slow
// child never holds the others back nor the fanout's memory.
//
// There is no goroutine of its own: the member that asks first for a frame
// nobody made yet reads and compresses it (the others wait for it), so a
// frame costs no extra hand-off between goroutines.
type fanout struct {
	r    *Relay
	kind arborv1.Compression

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a frame is added or the fanout is reset
	reader  *store.Reader // nil while the fanout has no members
	enc     *frameEncoder
	buf     []byte
	pos     int64 // stream offset the next frame starts at
	// replid is the replication ID a child knows after the frames made so
	// far (the reader's when it was seated, then each switch frame's).
	replid string
	first  uint64
	frames []*sharedFrame // frames[i] has sequence number first+i
	queued int            // wire bytes held by frames
	// producing: a member is reading and compressing frame first+len(frames).
	producing bool
	// resetNext: the next frame begins a new compression stream (a member
	// joins at it).
	resetNext bool
	members   int
	// pending are the join points of links that joined while a frame was
	// being made (each counted in members), settled when the making ends.
	pending []*joinPoint
	// queueBytes bounds queued (fanoutQueueBytes; tests set less).
	queueBytes int
	// rejoinDelay is how long a member that fell behind goes alone
	// before it may join again (each join restarts the compression stream
	// of every member, so a child that keeps falling behind must not join
	// at every frame).
	rejoinDelay time.Duration
}

// sharedFrame is one frame of a fanout: stream bytes compressed once, or a
// replication ID switch at start. Its fields never change once published.
type sharedFrame struct {
	start  int64
	rawLen int
	data   []byte
	reset  bool
	origin int64
	sw     *store.ReplidSwitchError
}

const (
	// fanoutQueueBytes bounds the compressed frames a fanout keeps for
	// members that lag a little behind the others.
	fanoutQueueBytes = 8 << 20
	// fanoutRejoinDelay is fanout.rejoinDelay's default.
	fanoutRejoinDelay = time.Second
	// fanoutJoinGap is how far behind the fanout's next frame a link may
	// be and still join it: it sends the gap itself first.
	fanoutJoinGap = 1 << 20
)

// errLeftFanout says a member is no longer served by its fanout: it fell
// behind the queue, or the fanout met an error and started over.
var errLeftFanout = errors.New("left the shared frames")

func newFanout(r *Relay, kind arborv1.Compression) *fanout {
	return &fanout{r: r, kind: kind, changed: make(chan struct{}), queueBytes: fanoutQueueBytes, rejoinDelay: fanoutRejoinDelay}
}

// fanoutSet is the registry of the relay's fanouts, one per codec.
type fanoutSet struct {
	mu sync.Mutex
	m  map[arborv1.Compression]*fanout // guarded by mu
}

// fanoutFor returns the relay's fanout for kind, making it on first use.
func (r *Relay) fanoutFor(kind arborv1.Compression) *fanout {
	s := &r.fanouts
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[arborv1.Compression]*fanout)
	}
	fo := s.m[kind]
	if fo == nil {
		fo = newFanout(r, kind)
		s.m[kind] = fo
	}
	return fo
}

// joinPoint is where a link joining a fanout starts on its frames: frame
// seq, which begins at stream offset at, when the link's child knows
// replication ID replid (else a switch lies between what the link sent
// and the fanout's frames, and the link must leave again).
//
// A link that joins while a member is making a frame enters at the frame
// after that one, whose start nobody knows yet: ready is then closed once
// seq, at and replid are set (at the end of the making), and until then
// the link sends its own frames only up to upTo, where the frame being
// made begins. failed, set before ready closes, means the fanout started
// over instead: the link must leave.
type joinPoint struct {
	seq    uint64
	at     int64
	replid string

	ready  chan struct{}
	upTo   int64
	failed bool
}

// settled tells whether seq, at and replid are known (or failed set).
func (jp *joinPoint) settled() bool {
	if jp.ready == nil {
		return true
	}
	select {
	case <-jp.ready:
		return true
	default:
		return false
	}
}

// limit is how far the link sends its own frames: to its join point, or to
// upTo while that is not known yet.
func (jp *joinPoint) limit() int64 {
	if jp.settled() {
		return jp.at
	}
	return jp.upTo
}

// join makes a member of a link that has sent the stream up to pos and
// whose child knows replication ID known, and returns where it joins (at ≥
// pos: the link sends [pos, at) itself first). While a member is making a
// frame, the link joins at the next one (a joinPoint that settles when the
// making ends): the member that makes frames waits inside the making for
// the store's next bytes most of the time, so a link that could join only
// between two frames would seldom join, and on one core never (it runs
// only while the maker waits). ok false means the link cannot join now
// (the fanout is behind pos or too far ahead) and tries again later.
func (fo *fanout) join(gen uint64, pos int64, known string) (jp *joinPoint, ok bool, err error) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if fo.members == 0 && !fo.producing {
		// Nobody is served: start over at pos, from what the link's child
		// knows.
		reader, err := fo.r.store.NewReaderAs(gen, pos, known)
		if err != nil {
			return nil, false, err
		}
		if fo.enc == nil {
			if fo.enc, err = newFrameEncoder(fo.kind, fo.r.level); err != nil {
				reader.Close()
				return nil, false, err
			}
		}
		fo.dropLocked()
		fo.reader, fo.pos, fo.replid = reader, pos, reader.Replid()
		if len(fo.buf) == 0 {
			fo.buf = make([]byte, fo.r.cfg.BatchBytes)
		}
	}
	if fo.reader == nil || fo.pos < pos || fo.pos-pos > fanoutJoinGap || fo.reader.Generation() != gen {
		return nil, false, nil
	}
	fo.members++
	if fo.producing {
		// The frame being made began without a reset: the link enters at
		// the one after it (settlePendingLocked).
		jp := &joinPoint{ready: make(chan struct{}), upTo: fo.pos}
		fo.pending = append(fo.pending, jp)
		return jp, true, nil
	}
	fo.resetNext = true
	return &joinPoint{seq: fo.first + uint64(len(fo.frames)), at: fo.pos, replid: fo.replid}, true, nil
}

// settlePendingLocked gives the links that joined while a frame was being
// made their join point, the fanout's next frame, which begins a new
// compression stream for them.
func (fo *fanout) settlePendingLocked() {
	if len(fo.pending) == 0 {
		return
	}
	for _, jp := range fo.pending {
		jp.seq, jp.at, jp.replid = fo.first+uint64(len(fo.frames)), fo.pos, fo.replid
		close(jp.ready)
	}
	fo.pending = nil
	fo.resetNext = true
}

// leave ends a membership; the last member out frees the reader and queue.
func (fo *fanout) leave() {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.members--
	if fo.members == 0 && !fo.producing {
		fo.dropLocked()
	}
}

// dropLocked forgets the reader and the queue; members waiting for a frame
// learn that they left.
func (fo *fanout) dropLocked() {
	if fo.reader != nil {
		fo.reader.Close()
		fo.reader = nil
	}
	fo.first += uint64(len(fo.frames))
	fo.frames, fo.queued = nil, 0
	for _, jp := range fo.pending {
		jp.failed = true
		close(jp.ready)
	}
	fo.pending = nil
	fo.broadcastLocked()
}

func (fo *fanout) broadcastLocked() {
	close(fo.changed)
	fo.changed = make(chan struct{})
}

// frame returns frame seq if it is queued, without waiting; ok false means
// it is not made yet, and then busy tells whether the store already holds
// bytes for it (next will not wait long). errLeftFanout means it never will
// be for this member.
func (fo *fanout) frame(seq uint64) (f *sharedFrame, ok, busy bool, err error) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	f, ok, err = fo.frameLocked(seq)
	if !ok && err == nil {
		busy = fo.r.store.End() > fo.pos
	}
	return f, ok, busy, err
}

func (fo *fanout) frameLocked(seq uint64) (*sharedFrame, bool, error) {
	next := fo.first + uint64(len(fo.frames))
	switch {
	case seq < fo.first || seq > next || fo.reader == nil:
		return nil, false, errLeftFanout
	case seq < next:
		return fo.frames[seq-fo.first], true, nil
	}
	return nil, false, nil
}

// next returns frame seq, making it if nobody is (reading and compressing
// what the store has after the previous frame, waiting for bytes until ctx
// ends) or waiting for the member that is.
func (fo *fanout) next(ctx context.Context, seq uint64) (*sharedFrame, error) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	for {
		f, ok, err := fo.frameLocked(seq)
		if ok || err != nil {
			return f, err
		}
		if !fo.producing {
			if err := fo.produce(ctx); err != nil {
				return nil, err
			}
			continue
		}
		ch := fo.changed
		fo.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			fo.mu.Lock()
			return nil, ctx.Err()
		}
		fo.mu.Lock()
	}
}

// produce makes the next frame; fo.mu is held on entry and on return, and
// released while it waits for bytes and compresses them. It fails with an
// error of ctx; any other error starts the fanout over (errLeftFanout for
// every member: each goes on alone, where the error shows again if it is
// real).
func (fo *fanout) produce(ctx context.Context) error {
	fo.producing = true
	reader, enc, reset := fo.reader, fo.enc, fo.resetNext
	fo.mu.Unlock()
	frames, err := fo.r.readFrame(ctx, reader, fo.buf, enc, reset)
	fo.mu.Lock()
	fo.producing = false
	fo.broadcastLocked() // a frame, or another member may take over
	switch {
	case err != nil && ctx.Err() != nil:
		fo.settlePendingLocked()
		return ctx.Err()
	case err != nil || fo.members == 0:
		fo.dropLocked()
		return errLeftFanout
	}
	for _, f := range frames {
		fo.frames = append(fo.frames, f)
		fo.queued += len(f.data)
		fo.pos = f.start + int64(f.rawLen)
		if f.sw != nil {
			fo.replid = f.sw.Replid
		}
		if f.reset {
			fo.resetNext = false
		}
	}
	for len(fo.frames) > 1 && fo.queued > fo.queueBytes {
		fo.queued -= len(fo.frames[0].data)
		fo.frames[0] = nil
		fo.frames = fo.frames[1:]
		fo.first++
	}
	fo.settlePendingLocked()
	return nil
}

// readFrame reads the next frame's bytes from reader into buf (see
// readBatch) and compresses them with enc, starting a new compression
// stream first when reset is set. It returns the frame, followed by a
// replid switch frame when the read stopped at one; a switch alone when the
// reader is at one.
func (r *Relay) readFrame(ctx context.Context, reader *store.Reader, buf []byte, enc *frameEncoder, reset bool) ([]*sharedFrame, error) {
	start := reader.Pos()
	n, pending, err := r.readBatch(ctx, reader, buf)
	var sw *store.ReplidSwitchError
	if errors.As(err, &sw) {
		return []*sharedFrame{{start: start, sw: sw}}, nil
	}
	if err != nil {
		return nil, err
	}
	if reset {
		enc.reset()
	}
	wire, err := enc.encode(buf[:n])
	if err != nil {
		return nil, err
	}
	origin, _ := r.timeline.originOf(start + int64(n) - 1)
	frames := []*sharedFrame{{start: start, rawLen: n, data: bytes.Clone(wire), reset: reset, origin: origin}}
	if pending != nil {
		frames = append(frames, &sharedFrame{start: start + int64(n), sw: pending})
	}
	return frames, nil
}

// readBatch reads the next frame's bytes into buf: what the store holds
// after reader's position (waiting until ctx ends for the first byte), and,
// when that is less than buf and BatchDelay is set, what comes within
// BatchDelay. An error is of the first read (a *store.ReplidSwitchError
// when the reader is at a switch); pending is a switch met after n > 0
// bytes.
func (r *Relay) readBatch(ctx context.Context, reader *store.Reader, buf []byte) (n int, pending *store.ReplidSwitchError, err error) {
	if n, err = reader.Read(ctx, buf); err != nil {
		return 0, nil, err
	}
	if n < len(buf) && r.cfg.BatchDelay > 0 {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.BatchDelay)
		defer cancel()
		for n < len(buf) {
			m, err := reader.Read(wctx, buf[n:])
			n += m
			if err != nil {
				errors.As(err, &pending)
				break
			}
		}
	}
	return n, pending, nil
}
