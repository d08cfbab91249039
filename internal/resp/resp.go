package resp

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Limits that protect the Reader against garbage from clients. They are
// Redis' own defaults for a client's command (proto-max-bulk-len 512mb) and
// bound what one Reader call may buffer.
const (
	// MaxBulkLen is the largest bulk string length a Reader accepts; a
	// larger declared length is a protocol error.
	MaxBulkLen = 512 << 20
	// MaxArgs is the largest multibulk element count a Reader accepts; a
	// larger count is a protocol error.
	MaxArgs = 1 << 20
	// MaxInlineLen is the longest line accepted (inline commands, reply
	// lines and length headers); a longer line is a protocol error.
	MaxInlineLen = 64 << 10
)

// Limits of the replication stream. A Redis replica takes from its master
// any multibulk count up to INT_MAX and any bulk length (neither
// proto-max-bulk-len nor the client limits apply to the master link), and a
// relay must carry every stream its master produces: refusing one would
// make it reconnect at the same offset, receive the same bytes and stall
// for good. The StreamScanner counts instead of buffering, so these limits
// cost no memory.
const (
	// MaxStreamArgs is the largest multibulk count in a stream: Redis'
	// INT_MAX.
	MaxStreamArgs = math.MaxInt32
	// MaxStreamBulkLen is the largest bulk length in a stream: whatever
	// fits a signed 64-bit length, as Redis parses it.
	MaxStreamBulkLen = math.MaxInt64
)

// maxDepth bounds the nesting of arrays in ReadReply so that hostile input
// cannot exhaust the stack.
const maxDepth = 64

// ErrProtocol is wrapped by every parse error of this package, so
// errors.Is(err, ErrProtocol) tells garbage input from I/O errors.
var ErrProtocol = errors.New("resp: protocol error")

// Errors for input over a Reader's limits. Each wraps ErrProtocol; a server
// matches them to answer as Redis does ("invalid multibulk length",
// "unauthenticated bulk length", "too big inline request", ...).
var (
	// ErrArgsLimit: a multibulk count over the limit.
	ErrArgsLimit = fmt.Errorf("%w: multibulk length over limit", ErrProtocol)
	// ErrBulkLimit: a bulk length over the limit.
	ErrBulkLimit = fmt.Errorf("%w: bulk length over limit", ErrProtocol)
	// ErrLineLimit: a line (inline command, reply or length header) longer
	// than MaxInlineLen.
	ErrLineLimit = fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, MaxInlineLen)
)

// Reply type bytes, as they appear on the wire.
const (
	TypeSimple = '+' // simple string
	TypeError  = '-' // error reply
	TypeInt    = ':' // integer
	TypeBulk   = '$' // bulk string, possibly null
	TypeArray  = '*' // array, possibly null
)

// Value is one RESP2 reply value as returned by Reader.ReadReply.
type Value struct {
	// Type is the wire type byte: '+', '-', ':', '$' or '*'.
	Type byte
	// Str holds the text of '+' and '-' replies and the payload of a
	// non-null '$' reply.
	Str []byte
	// Int holds the value of a ':' reply.
	Int int64
	// Array holds the elements of a non-null '*' reply.
	Array []Value
	// Null is true for the null bulk string ($-1) and the null array (*-1).
	Null bool
}

// Err returns an *Error carrying the message of a '-' reply, and nil for
// every other type.
func (v Value) Err() error {
	if v.Type != TypeError {
		return nil
	}
	return &Error{Msg: string(v.Str)}
}

// String renders v for logs and test failures; it is not a wire encoding.
func (v Value) String() string {
	switch v.Type {
	case TypeSimple:
		return "+" + string(v.Str)
	case TypeError:
		return "-" + string(v.Str)
	case TypeInt:
		return ":" + strconv.FormatInt(v.Int, 10)
	case TypeBulk:
		if v.Null {
			return "(nil)"
		}
		return strconv.Quote(string(v.Str))
	case TypeArray:
		if v.Null {
			return "(nil array)"
		}
		b := []byte{'['}
		for i, e := range v.Array {
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, e.String()...)
		}
		return string(append(b, ']'))
	}
	return "(invalid)"
}

// Error is an error reply ("-ERR ...") received from a Redis server.
type Error struct {
	// Msg is the reply text without the leading '-', e.g.
	// "NOMASTERLINK Can't SYNC while not connected with my master".
	Msg string
}

// Error returns the reply text.
func (e *Error) Error() string { return e.Msg }

// Code returns the first word of the message, e.g. "ERR" or "LOADING".
func (e *Error) Code() string {
	for i := 0; i < len(e.Msg); i++ {
		if e.Msg[i] == ' ' {
			return e.Msg[:i]
		}
	}
	return e.Msg
}
