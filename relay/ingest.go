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

// storeStream appends stream bytes from the upstream (a Redis master or a
// parent relay) that end at offset end and were first received by the root
// relay at origin (unix nanos), and keeps the relay's books on them. Bytes
// that are not a valid stream are refused whole, counted and logged.
func (r *Relay) storeStream(p []byte, end, origin int64, from string) (getAck bool, err error) {
	getAck, err = r.store.Append(p)
	if err != nil {
		var se *store.StreamError
		if errors.As(err, &se) {
			r.stats.rejectedStreams.Add(1)
			r.log.Error(from+" sent bytes that are not a replication stream; dropping the link, nothing of them stored",
				"offset", se.Offset, "err", se.Err)
		}
		return false, err
	}
	r.noteStored(len(p), end, origin)
	return getAck, nil
}

// noteStored keeps the relay's books on n stream bytes stored that end at
// offset end and were first received by the root relay at origin.
func (r *Relay) noteStored(n int, end, origin int64) {
	r.timeline.record(end, origin)
	r.noteMasterOffset(end)
	r.stats.upstreamBytes.Add(int64(n))
}

// ingest holds the stream of one upstream session between reads. Reads land
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

// appendFrame stores one Stream frame, which must continue the store.
//
// Frames are stored as they come, although a parent cuts them from its
// store at any byte, so a child whose link breaks between frames may end
// inside a command or transaction. While the parent lives that is harmless:
// the child resumes from the same history. If the parent's site is lost and
// this relay becomes a root following a Redis replica of its own that was
// promoted, that replica ends at the last whole command outside MULTI, and
// a stored end past it costs a full resync; holding the tail here as
// stream does would avoid it (not done yet).
func (r *Relay) appendFrame(s *arborv1.Stream, dec *decoders) error {
	if end := r.store.End(); s.GetStartOffset() != end {
		return fmt.Errorf("stream frame starts at %d, this relay holds %d", s.GetStartOffset(), end)
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
	if _, err := r.storeStream(data, s.GetStartOffset()+int64(len(data)), origin, "parent relay"); err != nil {
		return err
	}
	r.originLag.record(now, now.Sub(time.Unix(0, origin)))
	r.stats.upstreamRawBytes.Add(int64(len(data)))
	r.stats.upstreamWireBytes.Add(int64(len(s.GetData())))
	return nil
}
