package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// chunkReader returns at most n bytes per Read, so the bufio.Reader over it
// sees the input arrive in pieces, as from a socket.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.n)])
}

// transcript is what reading a whole input produced: one line per command
// or reply, and the error that ended it.
type transcript struct {
	items []string
	err   string
}

func (a transcript) String() string {
	return fmt.Sprintf("%q then %s", a.items, a.err)
}

func (a transcript) equal(b transcript) bool {
	return a.err == b.err && slices.Equal(a.items, b.items)
}

// maxRetained bounds the buffer a Reader may hold after reading n input
// bytes: the data itself (with append's growth) plus the bulkChunk it may
// reserve ahead of a payload that has not arrived.
func maxRetained(n int) int { return 2*n + 2*bulkChunk }

// readCommands reads commands from data until an error, checking on the
// way what the Reader holds and, when limited, that every command is within
// the limits.
func readCommands(t *testing.T, data []byte, chunk, bufSize int, limited bool) transcript {
	t.Helper()
	r := NewReader(bufio.NewReaderSize(&chunkReader{bytes.NewReader(data), chunk}, bufSize))
	if limited {
		r.SetCommandLimits(10, 16384)
	}
	var tr transcript
	for {
		// The limits apply to multibulk commands, as in Redis; an inline
		// command is bounded by MaxInlineLen alone.
		first, _ := r.br.Peek(1)
		multibulk := len(first) == 1 && first[0] == TypeArray
		args, err := r.ReadCommand()
		if c := cap(r.buf); c > maxRetained(len(data)) {
			t.Fatalf("reader holds a %d-byte buffer after %d input bytes", c, len(data))
		}
		if err != nil {
			tr.err = errClass(err)
			return tr
		}
		if limited && multibulk && len(args) > 10 {
			t.Fatalf("got %d arguments with a limit of 10", len(args))
		}
		var b strings.Builder
		for _, a := range args {
			if limited && multibulk && len(a) > 16384 {
				t.Fatalf("got a %d-byte argument with a limit of 16384", len(a))
			}
			fmt.Fprintf(&b, "%q ", a)
		}
		tr.items = append(tr.items, b.String())
	}
}

// readReplies reads reply values from data until an error.
func readReplies(data []byte, chunk, bufSize int) transcript {
	r := NewReader(bufio.NewReaderSize(&chunkReader{bytes.NewReader(data), chunk}, bufSize))
	var tr transcript
	for {
		v, err := r.ReadReply()
		if err != nil {
			tr.err = errClass(err)
			return tr
		}
		tr.items = append(tr.items, v.String())
	}
}

// errClass names an error for comparing transcripts: protocol errors by
// their message, I/O errors by kind. Anything else is a bug in the test
// input plumbing.
func errClass(err error) string {
	switch {
	case errors.Is(err, ErrProtocol):
		return err.Error()
	case err == io.EOF:
		return "EOF"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	}
	return "unexpected error: " + err.Error()
}

// FuzzReader feeds arbitrary bytes to the Reader as client commands and as
// replies. It must never panic or hold much more memory than it was sent;
// the result must not depend on how the bytes arrive (all at once into a
// large buffer, or in small pieces through bufio's smallest buffer, which
// takes the long-line path); with Redis' unauthenticated limits it must
// return the same commands up to the first one over them, and none over
// (inline commands are bounded by MaxInlineLen instead, as in Redis).
func FuzzReader(f *testing.F) {
	seeds := []string{
		"*1\r\n$4\r\nPING\r\n",
		"PING\r\nREPLCONF listening-port 6380\r\n\n\r\n",
		"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$4\r\n6380\r\n*5\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n",
		"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*0\r\n*-1\r\n",
		"*11\r\n", "*1\r\n$16385\r\n", "*1\r\n$-1\r\n", "*2\r\n$3\r\nfoo\r\n",
		"\n\n+FULLRESYNC 8a8b7d2ea4f1c3f6e5b9a0d1c2e3f4a5b6c7d8e9 0\r\n",
		"+CONTINUE\r\n-NOMASTERLINK Can't SYNC while not connected with my master\r\n:42\r\n$-1\r\n*-1\r\n",
		"*2\r\n*1\r\n:1\r\n$3\r\nabc\r\n",
		strings.Repeat("*1\r\n", 70) + ":1\r\n",
		"$1048577\r\nab",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		step := 1 + int(chunk)
		whole := readCommands(t, data, len(data)+1, max(len(data)+16, 4096), false)
		pieces := readCommands(t, data, step, 16, false)
		if !whole.equal(pieces) {
			t.Fatalf("commands in %d-byte pieces: got %v, read whole %v", step, pieces, whole)
		}
		limited := readCommands(t, data, step, 16, true)
		n := len(limited.items)
		if n > len(whole.items) || !slices.Equal(whole.items[:n], limited.items) {
			t.Fatalf("commands with limits: got %v, without %v", limited, whole)
		}
		if n < len(whole.items) && !strings.Contains(limited.err, "over limit") {
			t.Fatalf("commands with limits stopped at %d of %d with %q, want a limit error", n, len(whole.items), limited.err)
		}

		wholeR := readReplies(data, len(data)+1, max(len(data)+16, 4096))
		piecesR := readReplies(data, step, 16)
		if !wholeR.equal(piecesR) {
			t.Fatalf("replies in %d-byte pieces: got %v, read whole %v", step, piecesR, wholeR)
		}
	})
}
