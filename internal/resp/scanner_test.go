package resp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// scanResult is what feeding a whole stream reported, in absolute offsets.
type scanResult struct {
	boundaries []int // every lastBoundary reported, absolute
	acks       []int // absolute end of each chunk that reported getAck
	errAt      int   // absolute offset of the protocol error, or -1
	atBoundary bool
}

// feedChunks feeds p to s in chunks ending at the given cut offsets
// (ascending, within p) and collects the results.
func feedChunks(t *testing.T, s *StreamScanner, p []byte, cuts []int) scanResult {
	t.Helper()
	res := scanResult{errAt: -1}
	start := 0
	for _, end := range append(cuts, len(p)) {
		if end < start {
			continue
		}
		n, last, ack, err := s.Feed(p[start:end])
		if last >= 0 {
			res.boundaries = append(res.boundaries, start+last)
		}
		if ack {
			res.acks = append(res.acks, end)
		}
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("got error %v, want one wrapping ErrProtocol", err)
			}
			res.errAt = start + n
			return res
		}
		if n != end-start {
			t.Fatalf("got n = %d with nil error, want %d", n, end-start)
		}
		start = end
	}
	res.atBoundary = s.AtBoundary()
	return res
}

func everyByte(n int) []int {
	cuts := make([]int, n)
	for i := range cuts {
		cuts[i] = i + 1
	}
	return cuts
}

func TestStreamScannerFeed(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantN    int // offset of the bad byte; len(in) if valid
		wantLast int
		wantAck  bool
		wantAt   bool // AtBoundary after a valid input
	}{
		{"empty", "", 0, -1, false, true},
		{"command", "*1\r\n$4\r\nPING\r\n", 14, 14, false, true},
		{"partial command", "*1\r\n$4\r\nPI", 10, -1, false, false},
		{"two commands then partial", "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3", 34, 28, false, false},
		{"empty command", "*0\r\n", 4, 4, false, true},
		{"stray lf", "\n", 1, 1, false, true},
		{"stray crlf", "\r\n", 2, 2, false, true},
		{"stray cr only", "\r", 1, -1, false, false},
		{"strays around", "\n\r\n*1\r\n$1\r\nx\r\n\n", 15, 15, false, true},
		{"empty arg", "*2\r\n$3\r\nDEL\r\n$0\r\n\r\n", 19, 19, false, true},
		{"binary payload", "*1\r\n$4\r\n*\r\n$\r\n", 14, 14, false, true},
		{"getack", "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n", 37, 37, true, true},
		{"getack lower", "*3\r\n$8\r\nreplconf\r\n$6\r\ngetack\r\n$3\r\n123\r\n", 39, 39, true, true},
		{"getack mixed case", "*3\r\n$8\r\nRePlCoNf\r\n$6\r\nGeTaCk\r\n$0\r\n\r\n", 36, 36, true, true},
		{"getack incomplete", "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r", 36, -1, false, false},
		{"getack two args", "*2\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n", 30, 30, false, true},
		{"getack four args", "*4\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n$1\r\n*\r\n", 44, 44, false, true},
		{"ack not getack", "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n5\r\n", 34, 34, false, true},
		{"getack longer arg", "*3\r\n$8\r\nREPLCONF\r\n$7\r\nGETACKS\r\n$1\r\n*\r\n", 38, 38, false, true},
		{"getack wrong first", "*3\r\n$8\r\nREPLCONX\r\n$6\r\nGETACK\r\n$1\r\n*\r\n", 37, 37, false, true},
		{"getack then command", "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n*1\r\n$4\r\nPING\r\n", 51, 51, true, true},
		{"bulk over 512 MiB accepted", "*1\r\n$536870913\r\n", 16, -1, false, false},
		{"max bulk len accepted", "*1\r\n$9223372036854775807\r\n", 26, -1, false, false},
		{"args over 1M accepted", "*1048577\r\n", 10, -1, false, false},
		{"max args accepted", "*2147483647\r\n", 13, -1, false, false},

		{"inline", "PING\r\n", 0, -1, false, false},
		{"null array", "*-1\r\n", 1, -1, false, false},
		{"garbage after command", "*1\r\n$1\r\nx\r\nfoo", 11, 11, false, false},
		{"bulk too long", "*1\r\n$9223372036854775808\r\n", 23, -1, false, false},
		{"bulk len 20 digits", "*1\r\n$10000000000000000000\r\n", 24, -1, false, false},
		{"too many args", "*2147483648\r\n", 10, -1, false, false},
		{"non-digit bulk len", "*1\r\n$x\r\n", 5, -1, false, false},
		{"non-digit array len", "*1x\r\n", 2, -1, false, false},
		{"empty array len", "*\r\n", 1, -1, false, false},
		{"empty bulk len", "*1\r\n$\r\n", 5, -1, false, false},
		{"negative bulk len", "*1\r\n$-1\r\n", 5, -1, false, false},
		{"leading zero", "*01\r\n", 2, -1, false, false},
		{"lf without cr in length", "*1\n", 2, -1, false, false},
		{"cr not followed by lf", "*1\r\r", 3, -1, false, false},
		{"not bulk", "*1\r\n:1\r\n", 4, -1, false, false},
		{"payload too long", "*1\r\n$3\r\nfooX\r\n", 11, -1, false, false},
		{"payload lf only", "*1\r\n$3\r\nfoo\n", 11, -1, false, false},
		{"payload cr cr", "*1\r\n$3\r\nfoo\r\r", 12, -1, false, false},
		{"stray cr then garbage", "\rx", 1, -1, false, false},
		{"second command bad", "*1\r\n$1\r\na\r\n*2\r\n$1\r\na\r\n*", 22, 11, false, false},
		{"getack then garbage", "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n!", 37, 37, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s StreamScanner
			n, last, ack, err := s.Feed([]byte(tt.in))
			wantErr := tt.wantN != len(tt.in)
			if (err != nil) != wantErr {
				t.Fatalf("got err %v, want error: %v", err, wantErr)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("got err %v, want one wrapping ErrProtocol", err)
			}
			if n != tt.wantN || last != tt.wantLast || ack != tt.wantAck {
				t.Fatalf("got (n %d, last %d, ack %v), want (%d, %d, %v)", n, last, ack, tt.wantN, tt.wantLast, tt.wantAck)
			}
			if err == nil && s.AtBoundary() != tt.wantAt {
				t.Errorf("got AtBoundary %v, want %v", s.AtBoundary(), tt.wantAt)
			}
			if err != nil {
				if _, _, _, err := s.Feed([]byte("*0\r\n")); !errors.Is(err, ErrProtocol) {
					t.Errorf("Feed after an error: got %v, want ErrProtocol", err)
				}
				s.Reset()
				if n, last, _, err := s.Feed([]byte("*0\r\n")); err != nil || n != 4 || last != 4 {
					t.Errorf("Feed after Reset: got (%d, %d, %v), want (4, 4, nil)", n, last, err)
				}
			}

			// Byte by byte gives the same error offset, final boundary and ack.
			var b StreamScanner
			one := feedChunks(t, &b, []byte(tt.in), everyByte(len(tt.in)))
			wantErrAt := -1
			if wantErr {
				wantErrAt = tt.wantN
			}
			if one.errAt != wantErrAt {
				t.Errorf("byte by byte: got error at %d, want %d", one.errAt, wantErrAt)
			}
			gotLast := -1
			if len(one.boundaries) > 0 {
				gotLast = one.boundaries[len(one.boundaries)-1]
			}
			if gotLast != tt.wantLast {
				t.Errorf("byte by byte: got last boundary %d, want %d", gotLast, tt.wantLast)
			}
			if (len(one.acks) > 0) != tt.wantAck {
				t.Errorf("byte by byte: got acks %v, want ack %v", one.acks, tt.wantAck)
			}
		})
	}
}

// TestStreamScannerHugeCommand: a command with more arguments than the
// Reader's client limit and a bulk over 4 GiB pass, as Redis propagates
// them, and scanning them allocates nothing: the scanner counts, it does
// not buffer.
func TestStreamScannerHugeCommand(t *testing.T) {
	const args = MaxArgs + 100_000
	const bulk = 5 << 30
	arg := []byte("$1\r\nx\r\n")
	zeros := make([]byte, 1<<20)
	var s StreamScanner
	feed := func(p []byte) int {
		t.Helper()
		n, last, _, err := s.Feed(p)
		if err != nil || n != len(p) {
			t.Fatalf("Feed: got (n %d, %v), want (%d, nil)", n, err, len(p))
		}
		return last
	}
	allocs := testing.AllocsPerRun(1, func() {
		feed(AppendArrayHeader(make([]byte, 0, 16), args+1))
		for range args {
			if last := feed(arg); last != -1 {
				t.Fatalf("got a boundary inside the command at %d", last)
			}
		}
		feed([]byte("$5368709120\r\n"))
		for range bulk / len(zeros) {
			feed(zeros)
		}
		if last := feed([]byte("\r\n")); last != 2 || !s.AtBoundary() {
			t.Fatalf("end of command: got last %d, AtBoundary %v; want 2, true", last, s.AtBoundary())
		}
	})
	if allocs > 1 {
		t.Errorf("scanning a %d-argument command allocated %v times, want at most 1 (the header)", args+1, allocs)
	}
}

func TestStreamScannerMarshal(t *testing.T) {
	stream := []byte("\r\n*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n*2\r\n$3\r\nDEL\r\n$12\r\n012345678901\r\n")
	var whole StreamScanner
	want := feedChunks(t, &whole, stream, nil)
	for cut := 0; cut <= len(stream); cut++ {
		var s StreamScanner
		if _, _, _, err := s.Feed(stream[:cut]); err != nil {
			t.Fatal(err)
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) > 64 {
			t.Fatalf("cut %d: got %d-byte encoding, want at most 64", cut, len(enc))
		}
		var r StreamScanner
		if err := r.UnmarshalBinary(enc); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if r != s {
			t.Fatalf("cut %d: got %+v after round trip, want %+v", cut, r, s)
		}
		n, last, ack, err := r.Feed(stream[cut:])
		if err != nil || n != len(stream)-cut {
			t.Fatalf("cut %d: got (%d, %v), want (%d, nil)", cut, n, err, len(stream)-cut)
		}
		if cut == len(stream) {
			if last != -1 || ack {
				t.Errorf("cut %d: got (last %d, ack %v) for no input, want (-1, false)", cut, last, ack)
			}
			continue
		}
		if got, want := cut+last, want.boundaries[0]; got != want {
			t.Errorf("cut %d: got last boundary %d, want %d", cut, got, want)
		}
		if wantAck := cut < 39; ack != wantAck {
			t.Errorf("cut %d: got ack %v, want %v", cut, ack, wantAck)
		}
	}
}

func TestStreamScannerUnmarshalErrors(t *testing.T) {
	var good StreamScanner
	if _, _, _, err := good.Feed([]byte("*3\r\n$8\r\nREP")); err != nil {
		t.Fatal(err)
	}
	enc, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]byte{
		"empty":         nil,
		"short":         enc[:3],
		"bad version":   append([]byte{9}, enc[1:]...),
		"bad state":     append([]byte{1, byte(stFailed)}, enc[2:]...),
		"truncated":     enc[:len(enc)-1],
		"trailing":      append(bytes.Clone(enc), 0),
		"match no argc": {1, byte(stPayload), 1, 0, 2, 0, 3},
		"argi past":     {1, byte(stBulk), 0, 0, 2, 2, 0},
		"payload over":  {1, byte(stPayload), 1, 0, 3, 0, 9},
		// Found by FuzzStreamScannerUnmarshal: 19 digits for a length of
		// 12 let Feed take a 20th digit into a state that did not decode.
		"digits not length": {1, byte(stBulkLen), 0, 19, 1, 0, 12},
		"zero twice":        {1, byte(stArrLen), 0, 2, 0, 0, 0},
		"count past limit":  {1, byte(stArrLF), 0, 10, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			s := good
			if err := s.UnmarshalBinary(p); err == nil {
				t.Fatalf("got nil error for %x", p)
			}
			if s != good {
				t.Errorf("failed UnmarshalBinary changed the scanner")
			}
		})
	}
	var failed StreamScanner
	_, _, _, _ = failed.Feed([]byte("x"))
	if _, err := failed.MarshalBinary(); err == nil {
		t.Error("MarshalBinary of a failed scanner: got nil error")
	}
}

// genStream builds a valid replication stream from rng. It returns the
// stream, the absolute end of every command (and stray line ending), and
// the ends of the REPLCONF GETACK commands.
func genStream(rng *rand.Rand, commands int) (stream []byte, ends, acks []int) {
	word := func(n int) []byte {
		w := make([]byte, n)
		for i := range w {
			w[i] = "*$\r\n0123abcXYZ"[rng.IntN(14)]
		}
		return w
	}
	for range commands {
		switch rng.IntN(12) {
		case 0:
			stream = append(stream, '\n')
		case 1:
			stream = append(stream, "\r\n"...)
		case 2:
			stream = AppendArrayHeader(stream, 0)
		case 3:
			first := []string{"REPLCONF", "replconf", "RePlConf", "REPLCONX", "REPLCONFS"}[rng.IntN(5)]
			second := []string{"GETACK", "getack", "GetAck", "ACK", "GETACKS"}[rng.IntN(5)]
			args := []string{first, second, "*"}
			switch rng.IntN(8) {
			case 0:
				args = args[:2]
			case 1:
				args = append(args, "x")
			}
			stream = AppendCommand(stream, args...)
			if len(args) == 3 && strings.EqualFold(first, "REPLCONF") && strings.EqualFold(second, "GETACK") {
				acks = append(acks, len(stream))
			}
		default:
			argc := 1 + rng.IntN(5)
			stream = AppendArrayHeader(stream, argc)
			for range argc {
				n := rng.IntN(20)
				if rng.IntN(20) == 0 {
					n = rng.IntN(5000)
				}
				stream = AppendBulk(stream, word(n))
			}
		}
		ends = append(ends, len(stream))
	}
	return stream, ends, acks
}

// expectChunk derives, from the command ends, what Feed must report for a
// chunk [start, end): the last end in (start, end], and whether a GETACK
// ended there.
func expectChunk(ends, acks []int, start, end int) (last int, ack bool) {
	last = -1
	// ends and acks are ascending: find the last entry <= end.
	if i, _ := slices.BinarySearch(ends, end+1); i > 0 && ends[i-1] > start {
		last = ends[i-1] - start
	}
	if i, _ := slices.BinarySearch(acks, end+1); i > 0 && acks[i-1] > start {
		ack = true
	}
	return last, ack
}

// checkSplitScan feeds stream in chunks sized by sizes (cycled); a size of
// 0 marshals and unmarshals the scanner into a fresh one before the next
// chunk. Every chunk's results must match ends and acks.
func checkSplitScan(t *testing.T, stream []byte, ends, acks []int, sizes []byte) {
	t.Helper()
	s := new(StreamScanner)
	start := 0
	for k := 0; start < len(stream); k++ {
		size := 1
		if len(sizes) > 0 {
			size = int(sizes[k%len(sizes)])
		}
		if size == 0 {
			enc, err := s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) > 64 {
				t.Fatalf("got %d-byte encoding, want at most 64", len(enc))
			}
			s = new(StreamScanner)
			if err := s.UnmarshalBinary(enc); err != nil {
				t.Fatalf("unmarshal at %d: %v", start, err)
			}
			size = 7
		}
		end := min(start+size*size, len(stream)) // squares: many tiny and some big chunks
		n, last, ack, err := s.Feed(stream[start:end])
		if err != nil || n != end-start {
			t.Fatalf("chunk [%d,%d): got (n %d, %v), want (%d, nil)", start, end, n, err, end-start)
		}
		wantLast, wantAck := expectChunk(ends, acks, start, end)
		if last != wantLast || ack != wantAck {
			t.Fatalf("chunk [%d,%d): got (last %d, ack %v), want (%d, %v)", start, end, last, ack, wantLast, wantAck)
		}
		_, wantAt := slices.BinarySearch(ends, end)
		if s.AtBoundary() != wantAt {
			t.Fatalf("chunk [%d,%d): got AtBoundary %v, want %v", start, end, s.AtBoundary(), wantAt)
		}
		start = end
	}
}

func FuzzStreamScanner(f *testing.F) {
	f.Add(uint64(1), 20, []byte{1})
	f.Add(uint64(2), 50, []byte{3, 0, 1, 5, 0, 40})
	f.Add(uint64(3), 200, []byte{255, 2, 0})
	f.Fuzz(func(t *testing.T, seed uint64, commands int, sizes []byte) {
		commands = int(uint(commands) % 300)
		stream, ends, acks := genStream(rand.New(rand.NewPCG(seed, seed>>32)), commands)

		// One shot: the last boundary and any GETACK.
		var whole StreamScanner
		n, last, ack, err := whole.Feed(stream)
		if err != nil || n != len(stream) {
			t.Fatalf("one shot: got (n %d, %v), want (%d, nil)", n, err, len(stream))
		}
		wantLast, wantAck := expectChunk(ends, acks, 0, len(stream))
		if last != wantLast || ack != wantAck {
			t.Fatalf("one shot: got (last %d, ack %v), want (%d, %v)", last, ack, wantLast, wantAck)
		}
		if !whole.AtBoundary() {
			t.Fatal("one shot: got AtBoundary false at the end of a valid stream")
		}

		// Split at arbitrary points, with marshal round trips in between.
		checkSplitScan(t, stream, ends, acks, sizes)
	})
}

func FuzzStreamScannerGarbage(f *testing.F) {
	f.Add([]byte("*1\r\n$4\r\nPING\r\n"), 3)
	f.Add([]byte("*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"), 20)
	f.Add([]byte("\r\n*2\r\n$3\r\nfoo\r\n$99999999999\r\n"), 9)
	f.Add([]byte("PING\r\n"), 1)
	f.Fuzz(func(t *testing.T, p []byte, cut int) {
		var whole StreamScanner
		want := feedChunks(t, &whole, p, nil)
		cut = int(uint(cut) % uint(len(p)+1))

		var split StreamScanner
		got := feedChunks(t, &split, p, []int{cut})
		if got.errAt != want.errAt || got.atBoundary != want.atBoundary {
			t.Fatalf("split at %d: got (error at %d, at boundary %v), want (%d, %v)", cut, got.errAt, got.atBoundary, want.errAt, want.atBoundary)
		}
		// Saved and restored at the cut, as a store does at a segment
		// start, the scan goes on the same.
		var first StreamScanner
		if r := feedChunks(t, &first, p[:cut], nil); r.errAt < 0 {
			enc, err := first.MarshalBinary()
			if err != nil {
				t.Fatalf("marshal at %d: %v", cut, err)
			}
			var resumed StreamScanner
			if err := resumed.UnmarshalBinary(enc); err != nil {
				t.Fatalf("unmarshal %x at %d: %v", enc, cut, err)
			}
			rest := feedChunks(t, &resumed, p[cut:], nil)
			wantErrAt := want.errAt
			if wantErrAt >= 0 {
				wantErrAt -= cut
			}
			if rest.errAt != wantErrAt || rest.atBoundary != want.atBoundary {
				t.Fatalf("resumed at %d: got (error at %d, at boundary %v), want (%d, %v)", cut, rest.errAt, rest.atBoundary, wantErrAt, want.atBoundary)
			}
		}
		var bytewise StreamScanner
		all := feedChunks(t, &bytewise, p, everyByte(len(p)))
		if all.errAt != want.errAt || all.atBoundary != want.atBoundary {
			t.Fatalf("byte by byte: got (error at %d, at boundary %v), want (%d, %v)", all.errAt, all.atBoundary, want.errAt, want.atBoundary)
		}
		lastOf := func(r scanResult) int {
			if len(r.boundaries) == 0 {
				return -1
			}
			return r.boundaries[len(r.boundaries)-1]
		}
		if lastOf(got) != lastOf(want) || lastOf(all) != lastOf(want) {
			t.Fatalf("got last boundaries %d (split) and %d (bytes), want %d", lastOf(got), lastOf(all), lastOf(want))
		}
		if (len(all.acks) > 0) != (len(want.acks) > 0) {
			t.Fatalf("byte by byte: got acks %v, one shot %v", all.acks, want.acks)
		}
	})
}

// FuzzStreamScannerUnmarshal restores arbitrary encodings, as a store reads
// a segment header: one that UnmarshalBinary accepts must never make Feed
// panic, and every state Feed reaches from it must encode and decode again
// (else the store could not reopen a segment it wrote).
func FuzzStreamScannerUnmarshal(f *testing.F) {
	var s StreamScanner
	s.Feed([]byte("*3\r\n$8\r\nREPL"))
	enc, _ := s.MarshalBinary()
	f.Add(enc, []byte("CONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"))
	f.Add([]byte{1, byte(stArrLF), 0, 1, 0, 0, 5}, []byte("\n$1\r\nx\r\n"))
	f.Add([]byte{1, byte(stBulkLen), 0, 2, 1, 0, 12}, []byte("3\r\n"))
	f.Fuzz(func(t *testing.T, enc, p []byte) {
		var s StreamScanner
		if err := s.UnmarshalBinary(enc); err != nil {
			return
		}
		for i := range p {
			if _, _, _, err := s.Feed(p[i : i+1]); err != nil {
				return
			}
			again, err := s.MarshalBinary()
			if err != nil {
				t.Fatalf("after %q: marshal: %v", p[:i+1], err)
			}
			var r StreamScanner
			if err := r.UnmarshalBinary(again); err != nil {
				t.Fatalf("state %x, restored from %x and fed %q, does not decode: %v", again, enc, p[:i+1], err)
			}
			if r != s {
				t.Fatalf("state %x decodes to %+v, want %+v", again, r, s)
			}
		}
	})
}

func TestStreamScannerSplitGenerated(t *testing.T) {
	for seed := range uint64(50) {
		stream, ends, acks := genStream(rand.New(rand.NewPCG(seed, 7)), 200)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkSplitScan(t, stream, ends, acks, []byte{1})
			checkSplitScan(t, stream, ends, acks, []byte{2, 0, 3, 1, 9, 0, 30})
		})
	}
}

func benchStream(size int) []byte {
	value := bytes.Repeat([]byte("v"), 100)
	var b []byte
	for i := 0; len(b) < size; i++ {
		b = AppendArrayHeader(b, 3)
		b = AppendBulkString(b, "SET")
		b = AppendBulk(b, strconv.AppendInt([]byte("key:"), int64(i), 10))
		b = AppendBulk(b, value)
	}
	return b
}

func BenchmarkStreamScannerFeed(b *testing.B) {
	stream := benchStream(1 << 20)
	for _, chunk := range []int{512, 16 << 10, len(stream)} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			var s StreamScanner
			for b.Loop() {
				for start := 0; start < len(stream); start += chunk {
					end := min(start+chunk, len(stream))
					if _, _, _, err := s.Feed(stream[start:end]); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
