package resp

import "strconv"

// AppendSimple appends the simple string "+s\r\n" to b and returns the
// extended buffer. CR and LF bytes in s are replaced by spaces so the reply
// cannot break the framing.
func AppendSimple(b []byte, s string) []byte {
	b = append(b, TypeSimple)
	return appendLine(b, s)
}

// AppendError appends the error reply "-s\r\n" to b and returns the extended
// buffer. s already carries the error code, e.g. "ERR unknown command". CR
// and LF bytes in s are replaced by spaces.
func AppendError(b []byte, s string) []byte {
	b = append(b, TypeError)
	return appendLine(b, s)
}

// appendLine appends s with CR and LF replaced by spaces, then CRLF.
func appendLine(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			return appendSanitized(b, s)
		}
	}
	b = append(b, s...)
	return append(b, '\r', '\n')
}

func appendSanitized(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, '\r', '\n')
}

// AppendInt appends the integer reply ":n\r\n" to b and returns the extended
// buffer.
func AppendInt(b []byte, n int64) []byte {
	b = append(b, TypeInt)
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends p as the bulk string "$len\r\np\r\n" to b and returns
// the extended buffer. A nil p is encoded as an empty bulk string; use
// AppendNullBulk for the null bulk string.
func AppendBulk(b []byte, p []byte) []byte {
	b = appendHeader(b, TypeBulk, int64(len(p)))
	b = append(b, p...)
	return append(b, '\r', '\n')
}

// AppendBulkString appends s as a bulk string to b and returns the extended
// buffer.
func AppendBulkString(b []byte, s string) []byte {
	b = appendHeader(b, TypeBulk, int64(len(s)))
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// AppendNullBulk appends the null bulk string "$-1\r\n" to b and returns the
// extended buffer.
func AppendNullBulk(b []byte) []byte {
	return append(b, "$-1\r\n"...)
}

// AppendArrayHeader appends the array header "*n\r\n" to b and returns the
// extended buffer; the caller appends the n elements after it. A negative n
// encodes the null array "*-1\r\n".
func AppendArrayHeader(b []byte, n int) []byte {
	if n < 0 {
		n = -1
	}
	return appendHeader(b, TypeArray, int64(n))
}

// AppendCommand appends args as a command (an array of bulk strings) to b and
// returns the extended buffer.
func AppendCommand(b []byte, args ...string) []byte {
	b = appendHeader(b, TypeArray, int64(len(args)))
	for _, a := range args {
		b = AppendBulkString(b, a)
	}
	return b
}

func appendHeader(b []byte, typ byte, n int64) []byte {
	b = append(b, typ)
	b = strconv.AppendInt(b, n, 10)
	return append(b, '\r', '\n')
}
