package relay

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

const (
	// streamReadSize is the size of one read from an upstream's stream.
	streamReadSize = 256 << 10
	// maxHeldTail bounds the incomplete command or transaction the stream
	// holds in memory until it completes (see ingest).
	maxHeldTail = 128 << 20
)

// resetTo replaces the relay's history with the RDB in w, received with a
// full sync at replid and offset (store.ResetTo), and forgets when the old
// history's bytes arrived and which of them were sampled for traces: the
// new one may stand at the same offsets (a master restarted without
// persistence starts again near 0), and lag would be timed, and frames
// traced, by the old bytes.
func (r *Relay) resetTo(w *store.SnapshotWriter, replid string, offset int64) (store.Snapshot, error) {
	snap, err := r.store.ResetTo(w, replid, offset)
	if err == nil {
		r.timeline.reset()
		r.tracing.forget()
	}
	return snap, err
}

// noteStored keeps the relay's books on n stream bytes stored that end at
// offset end.
func (r *Relay) noteStored(n int, end int64) {
	r.noteMasterOffset(end)
	r.stats.upstreamBytes.Add(int64(n))
}

// ingest is the one path of an upstream's stream into the store, for both
// kinds of upstream: a Redis master's reads (Relay.stream) and a parent
// relay's frames (appendFrame), which the parent cuts from its store at any
// byte. Only whole commands outside MULTI…EXEC are stored (so acked and
// served), as a Redis replica advances its offset only there: the tail after
// the last such point is held in memory until it completes. It belongs to
// the upstream session: when the link ends it is dropped, and the next
// session asks from the stored end, where a Redis replica of this history,
// promoted, also ends, so that a relay that later follows it continues with
// a partial resync.
//
// An ingest holds the stream of one upstream session between reads. Reads land
// in buf after the bytes held since the last commit point (see
// resp.TxScanner), so the bytes ready to store are always one slice of buf:
// nothing is copied on the way to the store, and each byte is scanned once
// (the store takes the scanner's state with them, Store.AppendScanned).
type ingest struct {
	tx    *resp.TxScanner
	buf   []byte
	start int // buf[:start] was handed out ready; the next read drops it
	end   int // buf[start:end] is held
}

func newIngest(sc resp.StreamScanner) *ingest {
	return &ingest{tx: resp.NewTxScanner(sc), buf: make([]byte, streamReadSize)}
}

// space returns the buffer for the next read, after the held bytes. It
// invalidates what add returned.
func (in *ingest) space() []byte {
	if in.start > 0 {
		held := in.buf[in.start:in.end]
		if cap(in.buf) > 4*streamReadSize && len(held) <= streamReadSize/2 {
			in.buf = make([]byte, streamReadSize) // let a large transaction's buffer go
		}
		in.end, in.start = copy(in.buf, held), 0
	}
	if len(in.buf)-in.end < streamReadSize/2 {
		in.buf = slices.Grow(in.buf[:in.end], streamReadSize)
		in.buf = in.buf[:cap(in.buf)]
	}
	return in.buf[in.end:]
}

// held returns how many bytes the ingest holds past the stored end.
func (in *ingest) held() int { return in.end - in.start }

// flush hands out the held bytes as ready, with the scanner state after
// them, as if they ended at a commit point (a parent's history switches
// there: its store holds them).
func (in *ingest) flush() (ready []byte, after resp.StreamScanner) {
	ready, after = in.buf[in.start:in.end], in.tx.Scanner()
	in.start = in.end
	return ready, after
}

// write is add for bytes received whole (a frame's decoded data): it copies
// p after the held bytes.
func (in *ingest) write(p []byte) (ready []byte, after resp.StreamScanner, getAck bool, err error) {
	buf := in.space()
	if len(buf) < len(p) {
		in.buf = slices.Grow(in.buf[:in.end], len(p))
		in.buf = in.buf[:cap(in.buf)]
		buf = in.buf[in.end:]
	}
	return in.add(copy(buf, p))
}

// storeReady stores the bytes an ingest handed out ready (add, write), which
// end at stream offset end and were first received by the root relay at
// origin (unix nanos), and keeps the relay's books on them. With scanErr
// they are not a replication stream: the store, which checks them again,
// refuses them whole, they are counted and logged, and the session ends.
func (r *Relay) storeReady(ready []byte, after resp.StreamScanner, scanErr error, end, origin int64, from string) error {
	// The bytes' origin goes on the timeline before the store publishes
	// them: a feeder woken by the append looks it up for the frame it
	// sends, and the child's lag counts from it. Recorded after, a quick
	// feeder found no mark and sent origin 0, and the child timed those
	// bytes from its own receipt, hiding the hops above. If the append
	// fails the link ends; bytes that come again at these offsets are
	// timed from this earlier origin, which can overstate their lag by the
	// reconnection, never understate it.
	r.timeline.record(end, origin)
	var err error
	if scanErr == nil {
		err = r.store.AppendScanned(ready, after)
	} else {
		_, err = r.store.Append(ready)
	}
	if err != nil {
		var se *store.StreamError
		if errors.As(err, &se) {
			r.stats.rejectedStreams.Add(1)
			r.log.Error(from+" sent bytes that are not a replication stream; dropping the link, nothing of them stored",
				"offset", se.Offset, "err", se.Err)
		}
		return err
	}
	r.noteStored(len(ready), end)
	if scanErr != nil {
		return fmt.Errorf("%s: %w", from, scanErr)
	}
	return nil
}

// add scans the n bytes read into space() and returns the bytes ready to
// store, the held ones and the new ones up to the last commit point, with
// the scanner state after them, or nothing when the new bytes have no
// commit point and join the held ones. getAck is as for
// resp.StreamScanner.Feed. With err the new bytes are not a replication
// stream, and ready is all the bytes held and read.
func (in *ingest) add(n int) (ready []byte, after resp.StreamScanner, getAck bool, err error) {
	_, commit, getAck, err := in.tx.Feed(in.buf[in.end : in.end+n])
	switch {
	case err != nil:
		commit = n
	case commit < 0 && in.end-in.start+n > maxHeldTail:
		// A command or transaction this large is stored as it comes, as
		// if nothing were held: a link cut inside it then leaves the
		// stored end past the last commit point, and a replica promoted
		// from this history answers the relay's next PSYNC with a full
		// resync (Redis itself would hold it all in the query buffer).
		commit = n
		after = in.tx.Scanner()
	}
	// Otherwise the bytes end at a commit point, a command boundary: the
	// zero scanner's state.
	in.end += n
	if commit < 0 {
		return nil, after, getAck, nil
	}
	ready = in.buf[in.start : in.end-n+commit]
	in.start += len(ready)
	return ready, after, getAck, err
}

// appendFrame takes one Stream frame from a parent relay, which must
// continue the stream where the session's ingest is (the stored end plus
// what it holds), into the store through in.
func (r *Relay) appendFrame(s *arborv1.Stream, dec *decoders, in *ingest) error {
	stored := r.store.End() // this goroutine is the only appender
	if at := stored + int64(in.held()); s.GetStartOffset() != at {
		return fmt.Errorf("stream frame starts at %d, this relay holds %d (%d of them stored)", s.GetStartOffset(), at, stored)
	}
	if s.GetCompressionReset() {
		if err := dec.reset(s.GetCompression()); err != nil {
			return fmt.Errorf("stream frame at %d: compression reset: %w", s.GetStartOffset(), err)
		}
	}
	data, err := dec.decode(s.GetData(), s.GetCompression(), s.GetRawLen())
	if err != nil {
		return fmt.Errorf("stream frame at %d: %w", s.GetStartOffset(), err)
	}
	now := time.Now()
	origin := s.GetOriginTimeUnixNano()
	if origin == 0 {
		origin = now.UnixNano()
	}
	if ready, after, _, serr := in.write(data); len(ready) > 0 {
		if err := r.storeReady(ready, after, serr, stored+int64(len(ready)), origin, "parent relay"); err != nil {
			return err
		}
	}
	r.originLag.record(now, now.Sub(time.Unix(0, origin)))
	r.stats.upstreamRawBytes.Add(int64(len(data)))
	r.stats.upstreamWireBytes.Add(int64(len(s.GetData())))
	return nil
}
