package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// Compression on relay-to-relay links. zstd keeps one compression context
// for the life of a link (each frame is flushed, not closed), so repeated
// keys and values across frames compress well; s2 compresses each frame on
// its own and is cheaper on CPU.

// CompressionAuto is Config.Compression's default: each child relay link
// gets its codec by where the child runs (linkCompression).
const CompressionAuto = "auto"

// ParseCompression parses "none", "zstd" or "s2" (an explicit codec; see
// CompressionAuto for the default).
func ParseCompression(s string) (arborv1.Compression, error) {
	switch strings.ToLower(s) {
	case "none":
		return arborv1.Compression_COMPRESSION_NONE, nil
	case "zstd", "":
		return arborv1.Compression_COMPRESSION_ZSTD, nil
	case "s2":
		return arborv1.Compression_COMPRESSION_S2, nil
	}
	return 0, fmt.Errorf("compression %q: want auto, zstd, s2 or none", s)
}

// parseCompressionSetting parses Config.Compression: an explicit codec, or
// auto (returned as zstd, the codec auto keeps across sites).
func parseCompressionSetting(s string) (c arborv1.Compression, auto bool, err error) {
	if strings.EqualFold(s, CompressionAuto) {
		return arborv1.Compression_COMPRESSION_ZSTD, true, nil
	}
	c, err = ParseCompression(s)
	return c, false, err
}

// linkCompression is the codec this relay prefers on the link to a child
// relay of childSite. An explicit --compression is used on every link.
// Under auto, a child in this relay's own site gets s2: a link inside a
// site has bandwidth to spare, and zstd's encode and decode cost the hop
// about 0.1 ms of CPU per frame and twice s2's CPU per byte
// (docs/benchmarks.md), for bytes nobody pays for. A child in another
// site, or when either site is unknown (no --site), gets zstd: that link
// is the WAN, where its ratio is what the relay tree is for.
func (r *Relay) linkCompression(childSite string) arborv1.Compression {
	if r.autoCompression && r.cfg.Site != "" && childSite == r.cfg.Site {
		return arborv1.Compression_COMPRESSION_S2
	}
	return r.compression
}

func compressionName(c arborv1.Compression) string {
	switch c {
	case arborv1.Compression_COMPRESSION_ZSTD:
		return "zstd"
	case arborv1.Compression_COMPRESSION_S2:
		return "s2"
	}
	return "none"
}

// ParseCompressionLevel parses how hard zstd works on child links:
// "fastest", "default", "better" or "best" (klauspost/compress/zstd's
// levels, about zstd's 1, 3, 7 and 11).
func ParseCompressionLevel(s string) (zstd.EncoderLevel, error) {
	if ok, l := zstd.EncoderLevelFromString(s); ok {
		return l, nil
	}
	return 0, fmt.Errorf("compression-level %q: want fastest, default, better or best", s)
}

// negotiate picks the parent's preference if the child accepts it, else
// the first the child offers that the parent knows, else none.
func negotiate(pref arborv1.Compression, accepted []arborv1.Compression) arborv1.Compression {
	if slices.Contains(accepted, pref) {
		return pref
	}
	for _, c := range accepted {
		switch c {
		case arborv1.Compression_COMPRESSION_ZSTD, arborv1.Compression_COMPRESSION_S2:
			return c
		}
	}
	return arborv1.Compression_COMPRESSION_NONE
}

// frameEncoder compresses the frames of one link, in order.
type frameEncoder struct {
	kind arborv1.Compression
	buf  bytes.Buffer // zstd's output
	out  []byte       // s2's output
	zw   *zstd.Encoder
}

// newFrameEncoder returns an encoder of kind; level is zstd's.
func newFrameEncoder(kind arborv1.Compression, level zstd.EncoderLevel) (*frameEncoder, error) {
	e := &frameEncoder{kind: kind}
	if kind == arborv1.Compression_COMPRESSION_ZSTD {
		// No zstd checksum: a link's zstd frame never ends (each frame of
		// ours is a flush), so the checksum of its content would never be
		// sent, only computed over every byte. The encoder's full-size
		// history (not WithLowerEncoderMem) moves its 1 MiB window down
		// once per MiB of input rather than once per 128 KiB block.
		zw, err := zstd.NewWriter(&e.buf, zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
		e.zw = zw
	}
	return e, nil
}

// encode returns the wire form of p; it is valid until the next call.
func (e *frameEncoder) encode(p []byte) ([]byte, error) {
	switch e.kind {
	case arborv1.Compression_COMPRESSION_ZSTD:
		e.buf.Reset()
		if _, err := e.zw.Write(p); err != nil {
			return nil, err
		}
		if err := e.zw.Flush(); err != nil {
			return nil, err
		}
		return e.buf.Bytes(), nil
	case arborv1.Compression_COMPRESSION_S2:
		// s2.Encode allocates its output unless dst is at least
		// MaxEncodedLen long (its length, not its capacity): one buffer
		// of that size serves every frame of the link.
		n := s2.MaxEncodedLen(len(p))
		if n < 0 {
			return nil, fmt.Errorf("s2 frame of %d bytes: too large", len(p))
		}
		if cap(e.out) < n {
			e.out = make([]byte, n)
		}
		return s2.Encode(e.out[:n], p), nil
	}
	return p, nil
}

// reset starts a new compression stream: the next frame depends on no
// earlier one (the receiver resets its decoder for it).
func (e *frameEncoder) reset() {
	if e.zw != nil {
		e.buf.Reset()
		e.zw.Reset(&e.buf)
	}
}

func (e *frameEncoder) close() {
	if e.zw != nil {
		e.zw.Close()
	}
}

// frameDecoder undoes a frameEncoder, frame by frame. The zstd decoder
// reads the link's compressed bytes synchronously from the current frame
// (frameSource): every frame holds whole zstd blocks (the encoder flushes
// each), so decoding a frame's raw length never reads past its end.
type frameDecoder struct {
	kind arborv1.Compression
	zr   *zstd.Decoder
	src  frameSource
	out  []byte
}

// frameSource serves the zstd decoder the bytes of the frame being
// decoded. Running dry means the frame was shorter than its header said.
type frameSource struct{ b []byte }

var errFrameShort = errors.New("zstd data ends inside the frame")

func (s *frameSource) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, errFrameShort
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func newFrameDecoder(kind arborv1.Compression) (*frameDecoder, error) {
	d := &frameDecoder{kind: kind}
	if kind == arborv1.Compression_COMPRESSION_ZSTD {
		// Lowmem off: with it the history buffer has room for half a
		// block past the window, and the decoder moves the whole window
		// down for every block.
		zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, err
		}
		if err := zr.Reset(&d.src); err != nil {
			zr.Close()
			return nil, err
		}
		d.zr = zr
	}
	return d, nil
}

// reset drops the decoder's state: the next frame begins a new compression
// stream (Stream.compression_reset).
func (d *frameDecoder) reset() error {
	if d.zr == nil {
		return nil
	}
	d.src.b = nil
	return d.zr.Reset(&d.src)
}

// decode returns the rawLen bytes carried by frame; valid until the next
// call.
func (d *frameDecoder) decode(frame []byte, kind arborv1.Compression, rawLen int) ([]byte, error) {
	if kind == arborv1.Compression_COMPRESSION_UNSPECIFIED {
		kind = arborv1.Compression_COMPRESSION_NONE
	}
	if kind != d.kind && kind != arborv1.Compression_COMPRESSION_NONE {
		return nil, fmt.Errorf("frame compressed with %s on a %s link", compressionName(kind), compressionName(d.kind))
	}
	if rawLen < 0 || rawLen > 64<<20 {
		return nil, fmt.Errorf("frame raw length %d out of range", rawLen)
	}
	switch kind {
	case arborv1.Compression_COMPRESSION_ZSTD:
		if cap(d.out) < rawLen {
			d.out = make([]byte, rawLen)
		}
		out := d.out[:rawLen]
		if len(d.src.b) > 0 {
			// Bytes the decoder did not need for the last frame's raw
			// length (none with this encoder) come first.
			frame = append(slices.Clip(d.src.b), frame...)
		}
		d.src.b = frame
		if _, err := io.ReadFull(d.zr, out); err != nil {
			// The decoder's state is unknown now: the link ends.
			return nil, fmt.Errorf("zstd frame: %w", err)
		}
		return out, nil
	case arborv1.Compression_COMPRESSION_S2:
		n, err := s2.DecodedLen(frame)
		if err != nil || n != rawLen {
			return nil, fmt.Errorf("s2 frame: decoded length %d, want %d (%v)", n, rawLen, err)
		}
		if cap(d.out) < rawLen {
			d.out = make([]byte, rawLen)
		}
		return s2.Decode(d.out[:rawLen], frame)
	}
	if len(frame) != rawLen {
		return nil, fmt.Errorf("frame of %d bytes, header says %d", len(frame), rawLen)
	}
	return frame, nil
}

func (d *frameDecoder) close() {
	if d.zr != nil {
		d.zr.Close()
	}
}
