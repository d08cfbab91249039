package rdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// SupportedMax is the newest RDB version the Verifier accepts (Redis 7.4 and
// 8.0 write version 12).
const SupportedMax = 12

// Opcodes and sizes of the RDB format that this package looks at.
const (
	opAux      = 0xFA // aux field: string key, string value
	opEOF      = 0xFF // end of the RDB; the 8-byte checksum follows
	magicLen   = 9    // "REDIS" + 4 version digits
	crcLen     = 8    // little-endian CRC64 after the EOF opcode
	minimalLen = magicLen + 1 + crcLen
)

// headerLimit is how many bytes from the start of an RDB the Verifier keeps
// to decode the aux fields; a header longer than this is not decoded.
const headerLimit = 64 << 10

// maxAuxLen bounds the declared decompressed length of an LZF aux string.
const maxAuxLen = 1 << 20

// Errors reported for bad RDB data. Every error of this package wraps one of
// them.
var (
	// ErrFormat is wrapped by errors about malformed RDB bytes: bad magic,
	// missing EOF opcode, undecodable aux fields.
	ErrFormat = errors.New("rdb: malformed")
	// ErrVersion is wrapped by errors about an RDB version outside 1 to
	// SupportedMax.
	ErrVersion = errors.New("rdb: unsupported version")
	// ErrTruncated is wrapped by errors about an RDB too short to be valid.
	ErrTruncated = errors.New("rdb: truncated")
	// ErrChecksum is wrapped by errors about a stored checksum that does
	// not match the content.
	ErrChecksum = errors.New("rdb: bad checksum")
)

// Header is what the start of an RDB says.
type Header struct {
	// Version is the RDB format version from the magic, e.g. 10 for
	// "REDIS0010".
	Version int
	// Aux maps the aux field names (redis-ver, repl-id, repl-offset,
	// repl-stream-db, ...) to their values. Integer-encoded values are
	// rendered in decimal and LZF-compressed values are decompressed.
	Aux map[string]string
}

// ParseVersion parses the 9-byte magic at the start of p ("REDIS" and four
// decimal digits) and returns the version it names. It does not check the
// version against SupportedMax.
func ParseVersion(p []byte) (int, error) {
	if len(p) < magicLen {
		return 0, fmt.Errorf("%w (%d bytes)", ErrTruncated, len(p))
	}
	if err := checkMagic(p[:magicLen]); err != nil {
		return 0, err
	}
	v := 0
	for _, c := range p[5:magicLen] {
		v = v*10 + int(c-'0')
	}
	return v, nil
}

// checkMagic checks that p, the first up to 9 bytes of an RDB, can start a
// valid magic.
func checkMagic(p []byte) error {
	for i, c := range p {
		if i < 5 && c != "REDIS"[i] || i >= 5 && (c < '0' || c > '9') {
			return badMagic(p)
		}
	}
	return nil
}

func badMagic(p []byte) error {
	if len(p) >= 6 && string(p[:6]) == "VALKEY" {
		return fmt.Errorf("%w: bad magic %q (Valkey RDB format is not supported)", ErrFormat, p)
	}
	return fmt.Errorf("%w: bad magic %q", ErrFormat, p)
}

// errShort means a decoder ran out of bytes; decoder.need says how many the
// buffer must hold before a retry can get further.
var errShort = errors.New("rdb: short buffer")

// errTooLong means a header item is too long to decode within the limits;
// it is not a format error, the header is just not decoded.
var errTooLong = errors.New("rdb: header item too long")

// decoder reads RDB length- and string-encoded items from a buffer that
// may end early.
type decoder struct {
	b    []byte
	pos  int
	need int // with errShort: the buffer length needed to get further
}

// take returns the next n bytes.
func (d *decoder) take(n int) ([]byte, error) {
	if n > len(d.b)-d.pos {
		d.need = d.pos + n
		return nil, errShort
	}
	p := d.b[d.pos : d.pos+n]
	d.pos += n
	return p, nil
}

// length reads a length encoding. For the special 11xxxxxx form it returns
// the low 6 bits as enc with special true.
func (d *decoder) length() (n uint64, enc byte, special bool, err error) {
	h, err := d.take(1)
	if err != nil {
		return 0, 0, false, err
	}
	b0 := h[0]
	switch b0 >> 6 {
	case 0:
		return uint64(b0 & 0x3f), 0, false, nil
	case 1:
		x, err := d.take(1)
		if err != nil {
			return 0, 0, false, err
		}
		return uint64(b0&0x3f)<<8 | uint64(x[0]), 0, false, nil
	case 2:
		switch b0 {
		case 0x80:
			x, err := d.take(4)
			if err != nil {
				return 0, 0, false, err
			}
			return uint64(binary.BigEndian.Uint32(x)), 0, false, nil
		case 0x81:
			x, err := d.take(8)
			if err != nil {
				return 0, 0, false, err
			}
			return binary.BigEndian.Uint64(x), 0, false, nil
		}
		return 0, 0, false, fmt.Errorf("%w: bad length byte 0x%02x", ErrFormat, b0)
	}
	return 0, b0 & 0x3f, true, nil
}

// plainLength reads a length that must not use the special form.
func (d *decoder) plainLength() (uint64, error) {
	n, enc, special, err := d.length()
	if err == nil && special {
		err = fmt.Errorf("%w: string encoding 0x%02x where a length is expected", ErrFormat, 0xc0|enc)
	}
	return n, err
}

// str reads a string-encoded item: plain, integer (rendered in decimal) or
// LZF-compressed.
func (d *decoder) str() (string, error) {
	n, enc, special, err := d.length()
	if err != nil {
		return "", err
	}
	if !special {
		if n > headerLimit {
			return "", errTooLong
		}
		p, err := d.take(int(n))
		return string(p), err
	}
	switch enc {
	case 0:
		x, err := d.take(1)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(int(int8(x[0]))), nil
	case 1:
		x, err := d.take(2)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(int(int16(binary.LittleEndian.Uint16(x)))), nil
	case 2:
		x, err := d.take(4)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(int(int32(binary.LittleEndian.Uint32(x)))), nil
	case 3:
		clen, err := d.plainLength()
		if err != nil {
			return "", err
		}
		ulen, err := d.plainLength()
		if err != nil {
			return "", err
		}
		if clen > headerLimit || ulen > maxAuxLen {
			return "", errTooLong
		}
		p, err := d.take(int(clen))
		if err != nil {
			return "", err
		}
		out, err := lzfDecompress(p, int(ulen))
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return string(out), nil
	}
	return "", fmt.Errorf("%w: unknown string encoding 0x%02x", ErrFormat, 0xc0|enc)
}

// aux reads one aux field: the AUX opcode, a key and a value. done is true
// when the next opcode is not AUX, which ends the aux section.
func (d *decoder) aux() (key, val string, done bool, err error) {
	op, err := d.take(1)
	if err != nil {
		return "", "", false, err
	}
	if op[0] != opAux {
		return "", "", true, nil
	}
	if key, err = d.str(); err != nil {
		return "", "", false, err
	}
	if val, err = d.str(); err != nil {
		return "", "", false, err
	}
	return key, val, false, nil
}
