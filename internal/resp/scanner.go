package resp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// scanState is where a StreamScanner stands in the grammar of the stream.
type scanState uint8

const (
	stCmd       scanState = iota // at a command boundary: '*', or a stray '\r\n' / '\n'
	stCmdLF                      // after a stray '\r' between commands: '\n'
	stArrLen                     // digits of "*N"
	stArrLF                      // after "*N\r": '\n'
	stBulk                       // '$' of the next argument
	stBulkLen                    // digits of "$len"
	stBulkLF                     // after "$len\r": '\n'
	stPayload                    // inside a bulk payload
	stPayloadCR                  // after a payload: '\r'
	stPayloadLF                  // after a payload's '\r': '\n'
	stFailed                     // after a protocol error, until Reset
)

// getAckArgs are the first two arguments of "REPLCONF GETACK <x>", upper
// case; matching folds ASCII case.
var getAckArgs = [2]string{"REPLCONF", "GETACK"}

// StreamScanner tracks command boundaries in a replication stream: the bytes
// a master sends after the RDB. Commands are multibulk arrays of bulk strings;
// stray "\n" or "\r\n" between commands are allowed and count as boundaries.
// Bulk payloads are skipped by length and never copied, so the memory a
// StreamScanner needs does not grow with a command's argument count or size:
// it accepts what a Redis replica accepts from its master (MaxStreamArgs,
// MaxStreamBulkLen).
//
// The zero value is at a command boundary. A StreamScanner holds no
// pointers, so copying it saves its state (to roll back a failed Feed, for
// instance). It is not safe for concurrent use.
type StreamScanner struct {
	state scanState
	match bool  // the current 3-argument command may still be REPLCONF GETACK
	ndig  uint8 // digits seen of the length being parsed
	argc  int64 // arguments of the current command
	argi  int64 // index of the current argument
	n     int64 // length being parsed, or payload bytes left
}

// Feed scans p, which continues the stream.
//
// n is how many bytes of p are valid RESP (n == len(p) when err == nil).
// lastBoundary is the index in p just after the last command (or stray line
// ending) that completed within p, or -1 if none did. getAck is true if a
// complete "REPLCONF GETACK <x>" command (case-insensitive, exactly 3
// arguments) completed within p.
//
// On a protocol error, n is the offset in p of the first bad byte, err wraps
// ErrProtocol, and lastBoundary and getAck describe p[:n]. The scanner is
// then unusable until Reset: later calls fail at offset 0.
func (s *StreamScanner) Feed(p []byte) (n, lastBoundary int, getAck bool, err error) {
	return s.feed(p, nil)
}

// feed is Feed, and with tx != nil it also follows MULTI…EXEC in tx.
func (s *StreamScanner) feed(p []byte, tx *txState) (n, lastBoundary int, getAck bool, err error) {
	lastBoundary = -1
	i := 0
	for i < len(p) {
		switch s.state {
		case stCmd:
			switch p[i] {
			case '*':
				s.state, s.n, s.ndig = stArrLen, 0, 0
			case '\n':
				lastBoundary = i + 1
				tx.boundary(i + 1)
			case '\r':
				s.state = stCmdLF
			default:
				return i, lastBoundary, getAck, s.fail("expected '*' at command start, got %q", p[i])
			}
			i++

		case stCmdLF:
			if p[i] != '\n' {
				return i, lastBoundary, getAck, s.fail("expected '\\n' after stray '\\r', got %q", p[i])
			}
			s.state = stCmd
			i++
			lastBoundary = i
			tx.boundary(i)

		case stArrLen, stBulkLen:
			limit := int64(MaxStreamArgs)
			if s.state == stBulkLen {
				limit = MaxStreamBulkLen
			}
			for i < len(p) {
				c := p[i]
				if d := c - '0'; d <= 9 {
					if s.ndig > 0 && s.n == 0 {
						return i, lastBoundary, getAck, s.fail("length with leading zero")
					}
					// n*10+d > limit, without overflowing int64.
					if s.n > (limit-int64(d))/10 {
						return i, lastBoundary, getAck, s.fail("length over limit %d", limit)
					}
					s.n = s.n*10 + int64(d)
					s.ndig++
					i++
					continue
				}
				if c != '\r' || s.ndig == 0 {
					return i, lastBoundary, getAck, s.fail("expected digit or '\\r' in length, got %q", c)
				}
				s.state++ // stArrLF or stBulkLF
				i++
				break
			}

		case stArrLF:
			if p[i] != '\n' {
				return i, lastBoundary, getAck, s.fail("expected '\\n' after array length, got %q", p[i])
			}
			i++
			if s.n == 0 {
				s.state = stCmd
				lastBoundary = i
				tx.boundary(i)
				break
			}
			s.state, s.argc, s.argi, s.match = stBulk, s.n, 0, s.n == 3
			tx.start(s.n)

		case stBulk:
			if p[i] != '$' {
				return i, lastBoundary, getAck, s.fail("expected '$', got %q", p[i])
			}
			s.state, s.n, s.ndig = stBulkLen, 0, 0
			i++

		case stBulkLF:
			if p[i] != '\n' {
				return i, lastBoundary, getAck, s.fail("expected '\\n' after bulk length, got %q", p[i])
			}
			i++
			if s.match && s.argi < 2 && s.n != int64(len(getAckArgs[s.argi])) {
				s.match = false
			}
			if s.argi == 0 {
				tx.name(s.n)
			}
			if s.n == 0 {
				s.state = stPayloadCR
			} else {
				s.state = stPayload
			}

		case stPayload:
			k := len(p) - i
			if int64(k) > s.n {
				k = int(s.n)
			}
			if s.match && s.argi < 2 {
				want := getAckArgs[s.argi]
				off := len(want) - int(s.n)
				s.match = equalFoldUpper(p[i:i+k], want[off:off+k])
			}
			if s.argi == 0 {
				tx.payload(p[i:i+k], s.n)
			}
			i += k
			s.n -= int64(k)
			if s.n == 0 {
				s.state = stPayloadCR
			}

		case stPayloadCR:
			if p[i] != '\r' {
				return i, lastBoundary, getAck, s.fail("expected '\\r' after bulk payload, got %q", p[i])
			}
			i++
			s.state = stPayloadLF
			if i == len(p) {
				break
			}
			fallthrough

		case stPayloadLF:
			if p[i] != '\n' {
				return i, lastBoundary, getAck, s.fail("expected '\\n' after bulk payload, got %q", p[i])
			}
			i++
			s.argi++
			if s.argi < s.argc {
				s.state = stBulk
				break
			}
			if s.match {
				getAck = true
			}
			s.state, s.match, s.argc, s.argi, s.n = stCmd, false, 0, 0, 0
			lastBoundary = i
			tx.end(i)

		case stFailed:
			return 0, lastBoundary, getAck, fmt.Errorf("%w: scanner used after an error", ErrProtocol)
		}
	}
	return i, lastBoundary, getAck, nil
}

// fail moves s to the failed state and returns the protocol error.
func (s *StreamScanner) fail(format string, args ...any) error {
	s.state = stFailed
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// equalFoldUpper reports whether p equals the upper-case ASCII letters of
// want, ignoring case.
func equalFoldUpper(p []byte, want string) bool {
	for i, c := range p {
		if c&^0x20 != want[i] {
			return false
		}
	}
	return true
}

// AtBoundary reports whether the bytes fed so far end at a command boundary.
func (s *StreamScanner) AtBoundary() bool { return s.state == stCmd }

// Reset returns s to the zero state: at a command boundary, with no error.
func (s *StreamScanner) Reset() { *s = StreamScanner{} }

// scannerVersion is the first byte of the MarshalBinary encoding.
const scannerVersion = 1

// MarshalBinary encodes the state of s in at most 23 bytes, so a store can
// record it at a segment start. A scanner that hit a protocol error cannot be
// marshaled.
func (s *StreamScanner) MarshalBinary() ([]byte, error) {
	if s.state == stFailed {
		return nil, errors.New("resp: marshal failed stream scanner")
	}
	var flags byte
	if s.match {
		flags = 1
	}
	b := make([]byte, 0, 4+3*binary.MaxVarintLen64)
	b = append(b, scannerVersion, byte(s.state), flags, s.ndig)
	b = binary.AppendUvarint(b, uint64(s.argc))
	b = binary.AppendUvarint(b, uint64(s.argi))
	b = binary.AppendUvarint(b, uint64(s.n))
	return b, nil
}

// UnmarshalBinary restores a state encoded by MarshalBinary. On error s is
// left unchanged.
func (s *StreamScanner) UnmarshalBinary(p []byte) error {
	if len(p) < 4 || p[0] != scannerVersion {
		return errors.New("resp: bad stream scanner encoding")
	}
	t := StreamScanner{state: scanState(p[1]), match: p[2] == 1, ndig: p[3]}
	if t.state >= stFailed || p[2] > 1 || t.ndig > 19 {
		return errors.New("resp: bad stream scanner encoding")
	}
	rest := p[4:]
	var vals [3]int64
	for j := range vals {
		v, k := binary.Uvarint(rest)
		if k <= 0 || v > MaxStreamBulkLen {
			return errors.New("resp: bad stream scanner encoding")
		}
		vals[j] = int64(v)
		rest = rest[k:]
	}
	if len(rest) != 0 {
		return errors.New("resp: bad stream scanner encoding")
	}
	t.argc, t.argi, t.n = vals[0], vals[1], vals[2]
	if err := t.check(); err != nil {
		return err
	}
	*s = t
	return nil
}

// check validates the invariants a restored state must satisfy, so a corrupt
// encoding cannot make Feed misbehave.
func (s *StreamScanner) check() error {
	inCommand := s.state >= stBulk && s.state <= stPayloadLF
	switch {
	case s.argc > MaxStreamArgs:
		return fmt.Errorf("resp: bad stream scanner state: %d arguments", s.argc)
	case inCommand && (s.argc == 0 || s.argi >= s.argc):
		return fmt.Errorf("resp: bad stream scanner state: argument %d of %d", s.argi, s.argc)
	case s.match && s.argc != 3:
		return errors.New("resp: bad stream scanner state: match outside a 3-argument command")
	case s.state == stPayload && (s.n == 0 || (s.match && s.argi < 2 && s.n > int64(len(getAckArgs[s.argi])))):
		return fmt.Errorf("resp: bad stream scanner state: %d payload bytes left", s.n)
	case (s.state == stArrLen || s.state == stArrLF) && s.n > MaxStreamArgs:
		return fmt.Errorf("resp: bad stream scanner state: array length %d", s.n)
	case (s.state == stArrLen || s.state == stBulkLen) && int(s.ndig) != digits(s.n) && (s.n != 0 || s.ndig > 1):
		// While a length is parsed, ndig counts its digits (0 or 1 for
		// n == 0: none yet, or a "0"); Feed relies on it to refuse
		// leading zeros and overflow.
		return fmt.Errorf("resp: bad stream scanner state: %d digits for length %d", s.ndig, s.n)
	}
	return nil
}

// digits returns the number of decimal digits of n > 0, and 0 for 0.
func digits(n int64) int {
	d := 0
	for ; n > 0; n /= 10 {
		d++
	}
	return d
}
