package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// bulkChunk bounds how far a bulk buffer grows ahead of the data actually
// received, so a bogus huge length cannot make the reader allocate it all.
const bulkChunk = 1 << 20

// Reader reads RESP from a buffered reader. Not safe for concurrent use.
type Reader struct {
	br         *bufio.Reader
	maxArgs    int64    // ReadCommand's multibulk count limit
	maxBulkLen int64    // ReadCommand's bulk length limit
	line       []byte   // holds lines that do not fit in br's buffer
	buf        []byte   // holds the arguments of the last command
	ends       []int    // end offsets of the arguments in buf
	args       [][]byte // the last command, slices of buf
}

// NewReader returns a Reader that reads from br, with ReadCommand limited
// to MaxArgs arguments of MaxBulkLen bytes.
func NewReader(br *bufio.Reader) *Reader {
	return &Reader{br: br, maxArgs: MaxArgs, maxBulkLen: MaxBulkLen}
}

// SetCommandLimits sets the largest multibulk count and bulk length that
// the following ReadCommand calls accept (Redis' limits for a client that
// has not authenticated are 10 and 16384). Each header is checked before
// the bytes it announces are read, so a client over a limit costs no more
// than its header. Values above MaxArgs and MaxBulkLen are capped to them.
func (r *Reader) SetCommandLimits(maxArgs, maxBulkLen int64) {
	r.maxArgs, r.maxBulkLen = min(maxArgs, MaxArgs), min(maxBulkLen, MaxBulkLen)
}

// ReadLine reads one line, ended by CRLF or a bare LF, and returns it without
// the line ending. A line longer than MaxInlineLen is a protocol error. The
// returned slice is only valid until the next call on r.
func (r *Reader) ReadLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	switch {
	case err == nil:
	case errors.Is(err, bufio.ErrBufferFull):
		if line, err = r.readLongLine(line); err != nil {
			return nil, err
		}
	case errors.Is(err, io.EOF) && len(line) > 0:
		return nil, io.ErrUnexpectedEOF
	default:
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > MaxInlineLen {
		return nil, ErrLineLimit
	}
	return line, nil
}

// readLongLine continues a line whose start (head) filled br's buffer. It
// returns the whole line including its LF, copied into r.line. It fails as
// soon as more than MaxInlineLen bytes (and a CR) came without a LF, as
// Redis does, rather than waiting for the line to end.
func (r *Reader) readLongLine(head []byte) ([]byte, error) {
	r.line = append(r.line[:0], head...)
	for {
		if len(r.line) > MaxInlineLen+1 {
			return nil, ErrLineLimit
		}
		more, err := r.br.ReadSlice('\n')
		r.line = append(r.line, more...)
		switch {
		case err == nil:
			return r.line, nil
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// ReadCommand reads one client command: either a multibulk array of bulk
// strings, or an inline command (words separated by spaces or tabs on one
// line, as typed into telnet; quoting is not interpreted).
//
// A line holding nothing but a line ending (replicas send a bare "\n" as a
// keepalive), a blank inline line, and an empty or negative multibulk count
// ("*0", "*-1") all return (nil, nil): there is nothing to execute.
//
// The returned slices alias an internal buffer and are only valid until the
// next call on r; copy what must be kept.
func (r *Reader) ReadCommand() ([][]byte, error) {
	first, err := r.br.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] != TypeArray {
		return r.readInline()
	}
	line, err := r.ReadLine()
	if err != nil {
		return nil, err
	}
	n, err := parseCount(line, TypeArray, r.maxArgs)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	r.buf = r.buf[:0]
	r.ends = r.ends[:0]
	for range n {
		line, err := r.ReadLine()
		if err != nil {
			return nil, eofInside(err)
		}
		l, err := parseCount(line, TypeBulk, r.maxBulkLen)
		if err != nil {
			return nil, err
		}
		if l < 0 {
			return nil, fmt.Errorf("%w: negative bulk length in command", ErrProtocol)
		}
		if r.buf, err = r.readBulk(r.buf, int(l)); err != nil {
			return nil, err
		}
		r.ends = append(r.ends, len(r.buf))
	}
	return r.split(), nil
}

// split turns buf and ends into args. Each argument's capacity is clipped so
// that appending to one cannot overwrite the next.
func (r *Reader) split() [][]byte {
	r.args = r.args[:0]
	start := 0
	for _, end := range r.ends {
		r.args = append(r.args, r.buf[start:end:end])
		start = end
	}
	return r.args
}

// readInline reads an inline command line and splits it into words.
func (r *Reader) readInline() ([][]byte, error) {
	line, err := r.ReadLine()
	if err != nil {
		return nil, err
	}
	r.buf = r.buf[:0]
	r.ends = r.ends[:0]
	for i := 0; i < len(line); {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		start := i
		for i < len(line) && !isBlank(line[i]) {
			i++
		}
		r.buf = append(r.buf, line[start:i]...)
		r.ends = append(r.ends, len(r.buf))
	}
	if len(r.ends) == 0 {
		return nil, nil
	}
	return r.split(), nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// readBulk appends the n-byte payload of a bulk string to dst, then consumes
// and checks the CRLF that ends it. The buffer grows at most bulkChunk bytes
// ahead of the data received.
func (r *Reader) readBulk(dst []byte, n int) ([]byte, error) {
	for n > 0 {
		k := min(n, bulkChunk)
		dst = slices.Grow(dst, k)
		start := len(dst)
		dst = dst[:start+k]
		if _, err := io.ReadFull(r.br, dst[start:]); err != nil {
			return dst, eofInside(err)
		}
		n -= k
	}
	cr, err := r.br.ReadByte()
	if err != nil {
		return dst, eofInside(err)
	}
	lf, err := r.br.ReadByte()
	if err != nil {
		return dst, eofInside(err)
	}
	if cr != '\r' || lf != '\n' {
		return dst, fmt.Errorf("%w: expected CRLF after bulk payload, got %q", ErrProtocol, []byte{cr, lf})
	}
	return dst, nil
}

// ReadReply reads one reply value of any RESP2 type. Bare newline lines
// before the value are skipped: a master sends them as keepalives before its
// PSYNC reply. The returned Value owns its memory.
func (r *Reader) ReadReply() (Value, error) {
	for {
		line, err := r.ReadLine()
		if err != nil {
			return Value{}, err
		}
		if len(line) > 0 {
			return r.readValue(line, 0)
		}
	}
}

// readValue decodes the value whose header line is line; depth is the array
// nesting level.
func (r *Reader) readValue(line []byte, depth int) (Value, error) {
	if len(line) == 0 {
		return Value{}, fmt.Errorf("%w: empty reply line", ErrProtocol)
	}
	v := Value{Type: line[0]}
	switch line[0] {
	case TypeSimple, TypeError:
		v.Str = slices.Clone(line[1:])
		if v.Str == nil {
			v.Str = []byte{}
		}
	case TypeInt:
		n, ok := parseInt(line[1:])
		if !ok {
			return Value{}, fmt.Errorf("%w: bad integer %q", ErrProtocol, line[1:])
		}
		v.Int = n
	case TypeBulk:
		n, err := parseCount(line, TypeBulk, MaxBulkLen)
		if err != nil {
			return Value{}, err
		}
		if n < 0 {
			v.Null = true
			return v, nil
		}
		if v.Str, err = r.readBulk(make([]byte, 0, min(n, bulkChunk)), int(n)); err != nil {
			return Value{}, err
		}
	case TypeArray:
		if depth >= maxDepth {
			return Value{}, fmt.Errorf("%w: arrays nested deeper than %d", ErrProtocol, maxDepth)
		}
		n, err := parseCount(line, TypeArray, MaxArgs)
		if err != nil {
			return Value{}, err
		}
		if n < -1 {
			return Value{}, fmt.Errorf("%w: bad array length %d", ErrProtocol, n)
		}
		if n < 0 {
			v.Null = true
			return v, nil
		}
		v.Array = make([]Value, 0, min(n, 1024))
		for range n {
			line, err := r.ReadLine()
			if err != nil {
				return Value{}, eofInside(err)
			}
			e, err := r.readValue(line, depth+1)
			if err != nil {
				return Value{}, eofInside(err)
			}
			v.Array = append(v.Array, e)
		}
	default:
		return Value{}, fmt.Errorf("%w: unexpected reply type %q", ErrProtocol, line[0])
	}
	return v, nil
}

// parseCount parses a "*n" or "$n" header line whose type byte must be typ.
// n may be -1 (null); other negative values and values above limit are
// protocol errors. For arrays any negative count is accepted, as Redis does
// for client commands; callers decide what it means.
func parseCount(line []byte, typ byte, limit int64) (int64, error) {
	if len(line) == 0 || line[0] != typ {
		return 0, fmt.Errorf("%w: expected %q, got %q", ErrProtocol, typ, truncate(line))
	}
	n, ok := parseInt(line[1:])
	switch {
	case !ok:
		return 0, fmt.Errorf("%w: bad length %q", ErrProtocol, truncate(line[1:]))
	case n > limit && typ == TypeArray:
		return 0, fmt.Errorf("%w (%d > %d)", ErrArgsLimit, n, limit)
	case n > limit:
		return 0, fmt.Errorf("%w (%d > %d)", ErrBulkLimit, n, limit)
	case n < -1 && typ == TypeBulk:
		return 0, fmt.Errorf("%w: bad bulk length %d", ErrProtocol, n)
	}
	return n, nil
}

// parseInt parses an optionally signed decimal integer without allocating.
// It rejects empty input, non-digits and overflow.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// truncate shortens b for inclusion in an error message.
func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// eofInside turns a clean EOF in the middle of a value into
// io.ErrUnexpectedEOF.
func eofInside(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
