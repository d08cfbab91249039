package resp

import (
	"math"
	"testing"
)

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"simple", AppendSimple(nil, "OK"), "+OK\r\n"},
		{"simple sanitized", AppendSimple(nil, "a\r\nb"), "+a  b\r\n"},
		{"error", AppendError(nil, "ERR unknown command"), "-ERR unknown command\r\n"},
		{"error sanitized", AppendError(nil, "ERR x\ny"), "-ERR x y\r\n"},
		{"int", AppendInt(nil, 42), ":42\r\n"},
		{"int negative", AppendInt(nil, -7), ":-7\r\n"},
		{"int min", AppendInt(nil, math.MinInt64), ":-9223372036854775808\r\n"},
		{"bulk", AppendBulk(nil, []byte("hello")), "$5\r\nhello\r\n"},
		{"bulk empty", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"bulk binary", AppendBulk(nil, []byte("a\r\nb")), "$4\r\na\r\nb\r\n"},
		{"bulk string", AppendBulkString(nil, "hi"), "$2\r\nhi\r\n"},
		{"null bulk", AppendNullBulk(nil), "$-1\r\n"},
		{"array header", AppendArrayHeader(nil, 3), "*3\r\n"},
		{"null array", AppendArrayHeader(nil, -1), "*-1\r\n"},
		{"command", AppendCommand(nil, "REPLCONF", "ACK", "123"), "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n123\r\n"},
		{"command empty", AppendCommand(nil), "*0\r\n"},
		{"appends", AppendInt([]byte("+OK\r\n"), 1), "+OK\r\n:1\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestAppendNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	val := []byte("value")
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendArrayHeader(buf[:0], 3)
		b = AppendBulkString(b, "SET")
		b = AppendBulk(b, val)
		b = AppendInt(b, 12345)
		b = AppendSimple(b, "OK")
		_ = AppendCommand(b, "REPLCONF", "ACK", "1")
	})
	if allocs != 0 {
		t.Errorf("got %v allocs per run, want 0", allocs)
	}
}
