package resp

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func newTestReader(s string) *Reader {
	return NewReader(bufio.NewReader(strings.NewReader(s)))
}

// strs converts a command to strings; nil stays nil.
func strs(args [][]byte) []string {
	if args == nil {
		return nil
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

func TestReadCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want [][]string // successive commands; nil entry means (nil, nil)
	}{
		{"multibulk", "*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n", [][]string{{"PING", "hi"}}},
		{"binary arg", "*1\r\n$4\r\na\r\nb\r\n", [][]string{{"a\r\nb"}}},
		{"empty arg", "*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [][]string{{"GET", ""}}},
		{"two commands", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nSYNC\r\n", [][]string{{"PING"}, {"SYNC"}}},
		{"inline", "PING\r\n", [][]string{{"PING"}}},
		{"inline lf", "REPLCONF ACK 10\n", [][]string{{"REPLCONF", "ACK", "10"}}},
		{"inline spaces", "  SET \t k   v  \r\n", [][]string{{"SET", "k", "v"}}},
		{"bare lf", "\n*1\r\n$4\r\nPING\r\n", [][]string{nil, {"PING"}}},
		{"bare crlf", "\r\nPING\r\n", [][]string{nil, {"PING"}}},
		{"blank inline", "   \r\n", [][]string{nil}},
		{"empty multibulk", "*0\r\n", [][]string{nil}},
		{"negative multibulk", "*-1\r\n", [][]string{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestReader(tt.in)
			for i, want := range tt.want {
				got, err := r.ReadCommand()
				if err != nil {
					t.Fatalf("command %d: %v", i, err)
				}
				if !reflect.DeepEqual(strs(got), want) {
					t.Fatalf("command %d: got %q, want %q", i, strs(got), want)
				}
			}
			if _, err := r.ReadCommand(); !errors.Is(err, io.EOF) {
				t.Errorf("after last command: got %v, want io.EOF", err)
			}
		})
	}
}

func TestReadCommandErrors(t *testing.T) {
	long := strings.Repeat("a", MaxInlineLen+1)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"not bulk", "*1\r\n:1\r\n", ErrProtocol},
		{"bad count", "*x\r\n", ErrProtocol},
		{"empty count", "*\r\n", ErrProtocol},
		{"bad bulk length", "*1\r\n$abc\r\n", ErrProtocol},
		{"negative bulk", "*1\r\n$-1\r\n", ErrProtocol},
		{"missing crlf", "*1\r\n$3\r\nfooXY", ErrProtocol},
		{"too many args", "*1048577\r\n", ErrArgsLimit},
		{"bulk too long", "*1\r\n$536870913\r\n", ErrBulkLimit},
		{"inline too long", long + "\r\n", ErrLineLimit},
		{"header too long", "*1\r\n$" + long + "\r\n", ErrLineLimit},
		{"inline never ends", long + long, ErrLineLimit},
		{"truncated payload", "*1\r\n$10\r\nabc", io.ErrUnexpectedEOF},
		{"truncated args", "*2\r\n$1\r\na\r\n", io.ErrUnexpectedEOF},
		{"truncated line", "PING", io.ErrUnexpectedEOF},
		{"truncated crlf", "*1\r\n$1\r\na\r", io.ErrUnexpectedEOF},
		{"empty", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A small buffer exercises the long-line path too.
			r := NewReader(bufio.NewReaderSize(strings.NewReader(tt.in), 16))
			got, err := r.ReadCommand()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got (%q, %v), want error %v", strs(got), err, tt.want)
			}
		})
	}
}

// failReader fails the test if the Reader reads past what it was given.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("the reader read past a header over its limit")
	return 0, io.EOF
}

// TestSetCommandLimits: with Redis' limits for an unauthenticated client,
// a header over them fails with the matching error before any byte after
// it is read; commands within them pass.
func TestSetCommandLimits(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error // nil: the command passes
	}{
		{"10 args", "*10\r\n" + strings.Repeat("$1\r\nx\r\n", 10), nil},
		{"11 args", "*11\r\n", ErrArgsLimit},
		{"huge count", "*2147483648\r\n", ErrArgsLimit},
		{"16384-byte arg", "*1\r\n$16384\r\n" + strings.Repeat("y", 16384) + "\r\n", nil},
		{"16385-byte arg", "*1\r\n$16385\r\n", ErrBulkLimit},
		{"second arg over", "*2\r\n$4\r\nAUTH\r\n$536870912\r\n", ErrBulkLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bufio.NewReader(io.MultiReader(strings.NewReader(tt.in), failReader{t})))
			r.SetCommandLimits(10, 16384)
			args, err := r.ReadCommand()
			if tt.want == nil {
				if err != nil || len(args) == 0 {
					t.Fatalf("got (%d args, %v), want the command", len(args), err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want %v (an ErrProtocol)", err, tt.want)
			}
		})
	}
	// Limits above the defaults are capped to them.
	r := newTestReader("*1048577\r\n")
	r.SetCommandLimits(1<<40, 1<<40)
	if _, err := r.ReadCommand(); !errors.Is(err, ErrArgsLimit) {
		t.Errorf("count over MaxArgs with a higher limit set: got %v, want ErrArgsLimit", err)
	}
}

func TestReadCommandHugeLengthDoesNotAllocate(t *testing.T) {
	// A declared 500 MB payload with no data must fail without allocating
	// anywhere near that much.
	r := newTestReader("*1\r\n$500000000\r\nabc")
	if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
	if c := cap(r.buf); c > 4*bulkChunk {
		t.Errorf("got buffer capacity %d, want at most %d", c, 4*bulkChunk)
	}
}

func TestReadCommandArgsClipped(t *testing.T) {
	r := newTestReader("*2\r\n$1\r\na\r\n$1\r\nb\r\n")
	args, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	_ = append(args[0], 'X')
	if string(args[1]) != "b" {
		t.Errorf("appending to args[0] changed args[1] to %q", args[1])
	}
}

func TestReadCommandAllocs(t *testing.T) {
	cmd := "*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$10\r\n0123456789\r\n"
	sr := strings.NewReader("")
	br := bufio.NewReader(sr)
	r := NewReader(br)
	// Warm up the internal buffers.
	sr.Reset(cmd)
	br.Reset(sr)
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		sr.Reset(cmd)
		br.Reset(sr)
		if _, err := r.ReadCommand(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocs per command, want 0", allocs)
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	r := NewReader(bufio.NewReaderSize(strings.NewReader("+FULLRESYNC abc 1\r\n\n"+long+"\nlast"), 16))
	for _, want := range []string{"+FULLRESYNC abc 1", "", long} {
		got, err := r.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if _, err := r.ReadLine(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("unterminated last line: got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestReadLineLimit(t *testing.T) {
	ok := strings.Repeat("y", MaxInlineLen)
	r := newTestReader(ok + "\r\n" + ok + "y\n")
	if got, err := r.ReadLine(); err != nil || len(got) != MaxInlineLen {
		t.Fatalf("line of MaxInlineLen: got (%d bytes, %v), want (%d, nil)", len(got), err, MaxInlineLen)
	}
	if _, err := r.ReadLine(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("line over MaxInlineLen: got %v, want ErrProtocol", err)
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Value
	}{
		{"simple", "+OK\r\n", Value{Type: '+', Str: []byte("OK")}},
		{"simple empty", "+\r\n", Value{Type: '+', Str: []byte{}}},
		{"error", "-ERR bad\r\n", Value{Type: '-', Str: []byte("ERR bad")}},
		{"int", ":-12\r\n", Value{Type: ':', Int: -12}},
		{"bulk", "$3\r\nfoo\r\n", Value{Type: '$', Str: []byte("foo")}},
		{"bulk empty", "$0\r\n\r\n", Value{Type: '$', Str: []byte{}}},
		{"null bulk", "$-1\r\n", Value{Type: '$', Null: true}},
		{"null array", "*-1\r\n", Value{Type: '*', Null: true}},
		{"empty array", "*0\r\n", Value{Type: '*', Array: []Value{}}},
		{"keepalives skipped", "\n\n\r\n+CONTINUE\r\n", Value{Type: '+', Str: []byte("CONTINUE")}},
		{"nested", "*2\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n", Value{Type: '*', Array: []Value{
			{Type: ':', Int: 1},
			{Type: '*', Array: []Value{{Type: '$', Str: []byte("a")}, {Type: '$', Null: true}}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTestReader(tt.in).ReadReply()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadReplyErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"unknown type", "%1\r\n", ErrProtocol},
		{"bad int", ":12a\r\n", ErrProtocol},
		{"int overflow", ":99999999999999999999\r\n", ErrProtocol},
		{"bad bulk length", "$-2\r\n", ErrProtocol},
		{"bad array length", "*-2\r\n", ErrProtocol},
		{"bulk too long", "$536870913\r\n", ErrProtocol},
		{"array too long", "*1048577\r\n", ErrProtocol},
		{"bulk missing crlf", "$1\r\nab\r\n", ErrProtocol},
		{"empty element", "*1\r\n\r\n", ErrProtocol},
		{"too deep", strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n", ErrProtocol},
		{"truncated array", "*2\r\n:1\r\n", io.ErrUnexpectedEOF},
		{"truncated bulk", "$5\r\nab", io.ErrUnexpectedEOF},
		{"empty", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newTestReader(tt.in).ReadReply()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got (%v, %v), want error %v", got, err, tt.want)
			}
		})
	}
}

func TestValueErr(t *testing.T) {
	v, err := newTestReader("-NOMASTERLINK Can't SYNC\r\n").ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	var re *Error
	if !errors.As(v.Err(), &re) {
		t.Fatalf("got Err() = %v, want *Error", v.Err())
	}
	if re.Error() != "NOMASTERLINK Can't SYNC" || re.Code() != "NOMASTERLINK" {
		t.Errorf("got (%q, code %q), want (%q, %q)", re.Error(), re.Code(), "NOMASTERLINK Can't SYNC", "NOMASTERLINK")
	}
	if err := (Value{Type: '+', Str: []byte("OK")}).Err(); err != nil {
		t.Errorf("got Err() = %v for a simple string, want nil", err)
	}
}

func TestReaderRoundTrip(t *testing.T) {
	var b []byte
	b = AppendCommand(b, "SET", "k", "v\r\n")
	b = AppendArrayHeader(b, 2)
	b = AppendBulk(b, []byte("x"))
	b = AppendBulkString(b, "")
	r := newTestReader(string(b))
	for _, want := range [][]string{{"SET", "k", "v\r\n"}, {"x", ""}} {
		got, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(strs(got), want) {
			t.Fatalf("got %q, want %q", strs(got), want)
		}
	}
}
