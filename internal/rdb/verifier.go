package rdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
)

// headerState is how far a Verifier got with the aux fields.
type headerState uint8

const (
	headerParsing   headerState = iota // still reading aux fields
	headerDone                         // saw the first opcode after them
	headerAbandoned                    // too long to decode; not an error
	headerFailed                       // malformed; reported by Finish
)

// Summary describes a verified RDB.
type Summary struct {
	// Size is the total RDB length in bytes, checksum included.
	Size int64
	// Version is the RDB format version.
	Version int
	// CRC is the checksum computed over the content (magic to EOF opcode).
	CRC uint64
	// CRCChecked is true when the stored checksum was compared with CRC; it
	// is false when the RDB stores 0, which means "not computed".
	CRCChecked bool
	// Header holds the version and, when they could be decoded within 64
	// KiB, the aux fields (Aux is nil otherwise).
	Header Header
}

// Verifier checks an RDB as it streams past. It is an io.Writer fed the whole
// RDB payload, exactly the bytes between the replication framing, in chunks
// of any size. It keeps O(1) memory plus up to 64 KiB while it decodes the
// header, and computes the checksum incrementally, holding back the last 8
// bytes, which are the stored checksum.
//
// A Verifier is not safe for concurrent use.
type Verifier struct {
	total   int64
	crc     uint64
	magic   [magicLen]byte
	version int
	tail    [crcLen]byte // the last bytes written, not yet checksummed
	ntail   int
	last    byte  // the last checksummed byte: the EOF opcode in a valid RDB
	err     error // sticky error from Write

	hstate headerState
	hbuf   []byte // the start of the RDB while hstate is headerParsing
	hpos   int    // offset in hbuf after the last complete aux field
	hneed  int    // len(hbuf) needed before decoding can get further
	herr   error  // why hstate is headerFailed
	header Header
}

// NewVerifier returns a Verifier expecting the first byte of an RDB.
func NewVerifier() *Verifier {
	return &Verifier{hpos: magicLen, hneed: magicLen + 1}
}

// Write feeds the next bytes of the RDB. As soon as the first 9 bytes are in,
// it fails, and keeps failing, if they are not "REDIS" plus four digits or
// the version is not between 1 and SupportedMax; every other check happens
// in Finish.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.total < magicLen {
		if n, err := v.writeMagic(p); err != nil {
			v.err = err
			return n, err
		}
	}
	v.total += int64(len(p))
	if len(p) >= crcLen {
		v.consume(v.tail[:v.ntail])
		v.consume(p[:len(p)-crcLen])
		v.ntail = copy(v.tail[:], p[len(p)-crcLen:])
		return len(p), nil
	}
	if excess := v.ntail + len(p) - crcLen; excess > 0 {
		v.consume(v.tail[:excess])
		v.ntail = copy(v.tail[:], v.tail[excess:v.ntail])
	}
	v.ntail += copy(v.tail[v.ntail:], p)
	return len(p), nil
}

// writeMagic collects the magic from p and checks it once all 9 bytes are
// in, so the error always shows the whole magic. On error it returns the
// offset in p of the first bad byte.
func (v *Verifier) writeMagic(p []byte) (int, error) {
	have := int(v.total)
	copy(v.magic[have:], p)
	if have+len(p) < magicLen {
		return 0, nil
	}
	ver, err := ParseVersion(v.magic[:])
	if err != nil {
		bad := 0
		for checkMagic(v.magic[:bad+1]) == nil {
			bad++
		}
		return max(bad-have, 0), err
	}
	if ver < 1 || ver > SupportedMax {
		return magicLen - have - 1, fmt.Errorf("%w %d (supported: 1 to %d)", ErrVersion, ver, SupportedMax)
	}
	v.version = ver
	return 0, nil
}

// consume feeds bytes that are known not to be the stored checksum.
func (v *Verifier) consume(p []byte) {
	if len(p) == 0 {
		return
	}
	v.crc = CRC64(v.crc, p)
	v.last = p[len(p)-1]
	if v.hstate == headerParsing {
		v.feedHeader(p)
	}
}

// feedHeader collects the start of the RDB and decodes the aux fields
// that are complete.
func (v *Verifier) feedHeader(p []byte) {
	room := headerLimit - len(v.hbuf)
	v.hbuf = append(v.hbuf, p[:min(len(p), room)]...)
	if len(v.hbuf) < v.hneed {
		if len(v.hbuf) == headerLimit {
			v.endHeader(headerAbandoned, nil)
		}
		return
	}
	d := decoder{b: v.hbuf}
	var err error
	for {
		d.pos = v.hpos
		var key, val string
		var done bool
		if key, val, done, err = d.aux(); err != nil {
			break
		}
		if done {
			v.endHeader(headerDone, nil)
			return
		}
		if v.header.Aux == nil {
			v.header.Aux = make(map[string]string)
		}
		v.header.Aux[key] = val
		v.hpos = d.pos
	}
	switch {
	case errors.Is(err, errShort) && d.need <= headerLimit && len(v.hbuf) < headerLimit:
		v.hneed = d.need
	case errors.Is(err, errShort), errors.Is(err, errTooLong):
		v.endHeader(headerAbandoned, nil)
	default:
		v.endHeader(headerFailed, fmt.Errorf("%w (aux field at offset %d)", err, v.hpos))
	}
}

// endHeader stops header decoding and releases the buffer.
func (v *Verifier) endHeader(s headerState, err error) {
	v.hstate, v.herr, v.hbuf = s, err, nil
	if s != headerDone {
		v.header.Aux = nil
	}
}

// Header returns the RDB header once the aux section has been seen, that is
// once the first opcode after the aux fields has been written (and the 8
// bytes after it, which might have been the checksum). It returns false
// before that, and for good when the aux fields did not fit in 64 KiB or
// were malformed. The returned map is a copy.
func (v *Verifier) Header() (Header, bool) {
	if v.hstate != headerDone {
		return Header{}, false
	}
	return Header{Version: v.version, Aux: maps.Clone(v.header.Aux)}, true
}

// Finish checks the RDB written so far as a complete one: at least 18 bytes,
// a valid magic and version, the EOF opcode right before the 8-byte
// checksum, a checksum that matches (a stored 0 is accepted unchecked), and
// decodable aux fields. Finish does not change v.
func (v *Verifier) Finish() (Summary, error) {
	if v.err != nil {
		return Summary{}, v.err
	}
	if v.total < magicLen {
		if err := checkMagic(v.magic[:v.total]); err != nil {
			return Summary{}, err
		}
	}
	if v.total < minimalLen {
		return Summary{}, fmt.Errorf("%w (%d bytes)", ErrTruncated, v.total)
	}
	if v.last != opEOF {
		return Summary{}, fmt.Errorf("%w: missing EOF opcode before the checksum (truncated?)", ErrFormat)
	}
	stored := binary.LittleEndian.Uint64(v.tail[:])
	if stored != 0 && stored != v.crc {
		return Summary{}, fmt.Errorf("%w: stored %016x, computed %016x", ErrChecksum, stored, v.crc)
	}
	switch v.hstate {
	case headerFailed:
		return Summary{}, v.herr
	case headerParsing:
		// The EOF opcode was seen, so an unfinished aux section means the
		// last aux field swallowed it.
		return Summary{}, fmt.Errorf("%w: aux section runs into the checksum", ErrFormat)
	}
	s := Summary{
		Size:       v.total,
		Version:    v.version,
		CRC:        v.crc,
		CRCChecked: stored != 0,
		Header:     Header{Version: v.version},
	}
	if v.hstate == headerDone {
		s.Header.Aux = maps.Clone(v.header.Aux)
	}
	return s, nil
}
