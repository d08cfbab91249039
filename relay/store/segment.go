package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/arbor-fabric/arbor/internal/resp"
)

// On-disk segment format.
//
//	header (segHeaderSize bytes):
//	  magic "ARBSEG1\n" | start int64 LE | scanner state len u16 LE |
//	  scanner state (≤ maxScanState bytes, zero padded) | crc32c of the preceding bytes u32 LE
//	records, each:
//	  payload length u32 LE | crc32c(payload) u32 LE | payload
//
// A segment holds the stream bytes [start, start+payload bytes). The scanner
// state is the RESP stream scanner's state at start, so a restart needs to
// re-scan only the last segment to know where command boundaries are.
const (
	segMagic         = "ARBSEG1\n"
	maxScanState     = 64
	segHeaderSize    = 8 + 8 + 2 + maxScanState + 4
	recHeaderSize    = 8
	maxRecordPayload = 1 << 20
	// indexEvery is how many file bytes may pass between two entries of a
	// segment's sparse in-memory index.
	indexEvery = 256 << 10
	segSuffix  = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about bytes on disk that fail their
// checks.
var ErrCorrupt = errors.New("store: corrupt data")

// indexEntry maps a stream offset to the file offset of the record that
// starts there.
type indexEntry struct {
	pos  int64 // stream offset of the record's first payload byte
	file int64 // file offset of the record header
}

// segment is one file of the backlog. Fields other than f are guarded by the
// store's mutex; f is only used by the appender.
type segment struct {
	path     string
	start    int64 // stream offset of the first payload byte
	size     int64 // payload bytes held
	fileSize int64 // bytes in the file, header included
	index    []indexEntry
	f        *os.File // open for append while this is the active segment
}

func (sg *segment) end() int64 { return sg.start + sg.size }

func segName(start int64) string { return fmt.Sprintf("%020d%s", start, segSuffix) }

func encodeSegHeader(start int64, scanState []byte) ([]byte, error) {
	if len(scanState) > maxScanState {
		return nil, fmt.Errorf("store: scanner state of %d bytes exceeds %d", len(scanState), maxScanState)
	}
	h := make([]byte, segHeaderSize)
	copy(h, segMagic)
	binary.LittleEndian.PutUint64(h[8:], uint64(start))
	binary.LittleEndian.PutUint16(h[16:], uint16(len(scanState)))
	copy(h[18:], scanState)
	binary.LittleEndian.PutUint32(h[segHeaderSize-4:], crc32.Checksum(h[:segHeaderSize-4], castagnoli))
	return h, nil
}

func decodeSegHeader(h []byte) (start int64, scanState []byte, err error) {
	if len(h) < segHeaderSize {
		return 0, nil, fmt.Errorf("%w: segment header of %d bytes", ErrCorrupt, len(h))
	}
	if string(h[:8]) != segMagic {
		return 0, nil, fmt.Errorf("%w: bad segment magic %q", ErrCorrupt, h[:8])
	}
	if got, want := crc32.Checksum(h[:segHeaderSize-4], castagnoli), binary.LittleEndian.Uint32(h[segHeaderSize-4:]); got != want {
		return 0, nil, fmt.Errorf("%w: segment header checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	n := int(binary.LittleEndian.Uint16(h[16:]))
	if n > maxScanState {
		return 0, nil, fmt.Errorf("%w: scanner state length %d", ErrCorrupt, n)
	}
	return int64(binary.LittleEndian.Uint64(h[8:])), append([]byte(nil), h[18:18+n]...), nil
}

// createSegment creates a new empty segment file starting at start.
func createSegment(dir string, start int64, scanState []byte) (*segment, error) {
	h, err := encodeSegHeader(start, scanState)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, segName(start))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if _, err := f.Write(h); err != nil {
		f.Close()
		return nil, fmt.Errorf("write segment header %s: %w", path, err)
	}
	return &segment{path: path, start: start, fileSize: segHeaderSize, f: f}, nil
}

// listSegments returns the segment files of dir ordered by start offset.
func listSegments(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type named struct {
		start int64
		path  string
	}
	var segs []named
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		start, err := strconv.ParseInt(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, named{start, filepath.Join(dir, name)})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.path
	}
	return out, nil
}

// recoveredSegment is what scanning a segment file found.
type recoveredSegment struct {
	seg       *segment
	scanState []byte // scanner state at seg.start
	// goodFile is the file size up to the end of the last good record; when
	// it is less than the file's size the rest is torn or corrupt.
	goodFile int64
	problem  error // why the scan stopped early, if it did
}

// scanSegment reads a whole segment file, checking the header and every
// record, and builds its sparse index. When sc is not nil it is set to the
// header's scanner state and fed every record, and a record that is not a
// valid continuation of the stream ends the scan like a corrupt one (sc is
// left at the state after the last good record).
func scanSegment(path string, buf []byte, sc *resp.StreamScanner) (*recoveredSegment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	h := make([]byte, segHeaderSize)
	if _, err := io.ReadFull(f, h); err != nil {
		return nil, fmt.Errorf("%w: segment %s: short header: %v", ErrCorrupt, filepath.Base(path), err)
	}
	start, state, err := decodeSegHeader(h)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", filepath.Base(path), err)
	}
	if sc != nil && len(state) == 0 {
		sc.Reset()
	} else if sc != nil {
		if err := sc.UnmarshalBinary(state); err != nil {
			return nil, fmt.Errorf("%w: segment %s: scanner state: %v", ErrCorrupt, filepath.Base(path), err)
		}
	}
	sg := &segment{path: path, start: start, fileSize: segHeaderSize}
	rs := &recoveredSegment{seg: sg, scanState: state, goodFile: segHeaderSize}
	var lastIndexed int64 = -indexEvery
	var rh [recHeaderSize]byte
	for off := int64(segHeaderSize); off < fi.Size(); {
		if _, err := io.ReadFull(f, rh[:]); err != nil {
			rs.problem = fmt.Errorf("%w: torn record header at file offset %d", ErrCorrupt, off)
			break
		}
		n := int64(binary.LittleEndian.Uint32(rh[0:]))
		sum := binary.LittleEndian.Uint32(rh[4:])
		if n == 0 || n > maxRecordPayload {
			rs.problem = fmt.Errorf("%w: record length %d at file offset %d", ErrCorrupt, n, off)
			break
		}
		p := buf[:n]
		if _, err := io.ReadFull(f, p); err != nil {
			rs.problem = fmt.Errorf("%w: torn record of %d bytes at file offset %d", ErrCorrupt, n, off)
			break
		}
		if got := crc32.Checksum(p, castagnoli); got != sum {
			rs.problem = fmt.Errorf("%w: record checksum %08x, want %08x, at file offset %d (stream offset %d)", ErrCorrupt, got, sum, off, sg.end())
			break
		}
		if sc != nil {
			saved := *sc
			if n, _, _, err := sc.Feed(p); err != nil {
				*sc = saved
				rs.problem = fmt.Errorf("%w: stream offset %d: %v", ErrCorrupt, sg.end()+int64(n), err)
				break
			}
		}
		if off-lastIndexed >= indexEvery {
			sg.index = append(sg.index, indexEntry{pos: sg.end(), file: off})
			lastIndexed = off
		}
		off += recHeaderSize + n
		sg.size += n
		sg.fileSize = off
		rs.goodFile = off
	}
	return rs, nil
}

// locate returns the index entry to start a search for pos from.
func (sg *segment) locate(pos int64) indexEntry {
	i := sort.Search(len(sg.index), func(i int) bool { return sg.index[i].pos > pos })
	if i == 0 {
		return indexEntry{pos: sg.start, file: segHeaderSize}
	}
	return sg.index[i-1]
}
