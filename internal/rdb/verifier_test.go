package rdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// rdbBuilder builds RDB bytes by hand.
type rdbBuilder struct{ b []byte }

func newBuilder(version string) *rdbBuilder {
	return &rdbBuilder{b: []byte("REDIS" + version)}
}

func (r *rdbBuilder) raw(p ...byte) *rdbBuilder { r.b = append(r.b, p...); return r }

// str appends a plain string with the shortest length encoding.
func (r *rdbBuilder) str(s string) *rdbBuilder {
	switch n := len(s); {
	case n < 1<<6:
		r.b = append(r.b, byte(n))
	case n < 1<<14:
		r.b = append(r.b, 0x40|byte(n>>8), byte(n))
	default:
		r.b = binary.BigEndian.AppendUint32(append(r.b, 0x80), uint32(n))
	}
	r.b = append(r.b, s...)
	return r
}

func (r *rdbBuilder) aux(k, v string) *rdbBuilder {
	return r.raw(opAux).str(k).str(v)
}

// finish appends the EOF opcode and the right checksum.
func (r *rdbBuilder) finish() []byte {
	b := append(r.b, opEOF)
	return binary.LittleEndian.AppendUint64(b, CRC64(0, b))
}

// finishZero appends the EOF opcode and a zero checksum.
func (r *rdbBuilder) finishZero() []byte {
	return append(append(r.b, opEOF), make([]byte, 8)...)
}

func le16(v int16) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

// handBuilt is an RDB with aux values in every encoding, followed by a
// database with one key.
func handBuilt() []byte {
	p, _ := handBuiltWithAuxEnd()
	return p
}

// handBuiltWithAuxEnd returns handBuilt and the offset of its first opcode
// after the aux fields.
func handBuiltWithAuxEnd() ([]byte, int) {
	r := newBuilder("0011").
		aux("redis-ver", "7.2.4").
		raw(opAux).str("redis-bits").raw(0xC0, 64).
		raw(opAux).str("ctime").raw(0xC2).raw(le32(1700000000)...).
		raw(opAux).str("neg16").raw(0xC1).raw(le16(-300)...).
		raw(opAux).str("neg8").raw(0xC0, 0xFF).
		raw(opAux).str("lzf").raw(0xC3, 7, 12, 2, 'a', 'b', 'c', 0xE0, 0, 2).
		aux("long", strings.Repeat("L", 100)).                   // 14-bit length
		raw(opAux).str("len32").raw(0x80, 0, 0, 0, 2, 'o', 'k'). // 32-bit length
		raw(opAux).raw(0xC0, 7).str("int key").
		aux("repl-id", strings.Repeat("a", 40)).
		aux("repl-offset", "12345")
	auxEnd := len(r.b)
	r.raw(0xFE, 0, 0xFB, 1, 0, 0).str("k").str("v")
	return r.finish(), auxEnd
}

var handBuiltAux = map[string]string{
	"redis-ver":   "7.2.4",
	"redis-bits":  "64",
	"ctime":       "1700000000",
	"neg16":       "-300",
	"neg8":        "-1",
	"lzf":         "abcabcabcabc",
	"long":        strings.Repeat("L", 100),
	"len32":       "ok",
	"7":           "int key",
	"repl-id":     strings.Repeat("a", 40),
	"repl-offset": "12345",
}

// verify feeds p to a new Verifier in chunks of the given size (0: one
// write) and finishes it.
func verify(p []byte, chunk int) (Summary, error) {
	v := NewVerifier()
	if chunk <= 0 {
		chunk = len(p) + 1
	}
	for start := 0; start < len(p); start += chunk {
		end := min(start+chunk, len(p))
		n, err := v.Write(p[start:end])
		if err != nil {
			return Summary{}, err
		}
		if n != end-start {
			return Summary{}, errors.New("short write without error")
		}
	}
	return v.Finish()
}

func TestVerifier(t *testing.T) {
	zeroCRC := Minimal(9)
	clear(zeroCRC[10:])
	badCRC := Minimal(10)
	badCRC[12] ^= 1
	noEOF := []byte("REDIS0009\xfe") // SELECTDB where EOF belongs
	noEOF = binary.LittleEndian.AppendUint64(noEOF, CRC64(0, noEOF))
	bigAux := newBuilder("0010").aux("big", strings.Repeat("x", headerLimit)).aux("after", "1").finish()

	tests := []struct {
		name    string
		in      []byte
		wantErr error
		want    Summary // checked when wantErr is nil (CRC is not compared)
	}{
		{"minimal 9", Minimal(9), nil, Summary{Size: 18, Version: 9, CRCChecked: true, Header: Header{Version: 9}}},
		{"minimal 10", Minimal(10), nil, Summary{Size: 18, Version: 10, CRCChecked: true, Header: Header{Version: 10}}},
		{"minimal 11", Minimal(11), nil, Summary{Size: 18, Version: 11, CRCChecked: true, Header: Header{Version: 11}}},
		{"minimal 12", Minimal(12), nil, Summary{Size: 18, Version: 12, CRCChecked: true, Header: Header{Version: 12}}},
		{"zero crc", zeroCRC, nil, Summary{Size: 18, Version: 9, Header: Header{Version: 9}}},
		{"hand built", handBuilt(), nil, Summary{Size: int64(len(handBuilt())), Version: 11, CRCChecked: true, Header: Header{Version: 11, Aux: handBuiltAux}}},
		{"zero crc with aux", newBuilder("0009").aux("a", "b").finishZero(), nil, Summary{Size: 23, Version: 9, Header: Header{Version: 9, Aux: map[string]string{"a": "b"}}}},
		{"aux over 64 KiB", bigAux, nil, Summary{Size: int64(len(bigAux)), Version: 10, CRCChecked: true, Header: Header{Version: 10}}},

		{"empty", nil, ErrTruncated, Summary{}},
		{"magic only", []byte("REDIS0009"), ErrTruncated, Summary{}},
		{"17 bytes", Minimal(9)[:17], ErrTruncated, Summary{}},
		{"bad checksum", badCRC, ErrChecksum, Summary{}},
		{"missing eof", noEOF, ErrFormat, Summary{}},
		{"truncated", handBuilt()[:60], ErrFormat, Summary{}},
		{"valkey", []byte("VALKEY080\xff\x00\x00\x00\x00\x00\x00\x00\x00"), ErrFormat, Summary{}},
		{"bad magic", []byte("RDB0009"), ErrFormat, Summary{}},
		{"bad digits", []byte("REDIS00x9\xff"), ErrFormat, Summary{}},
		{"version 0", Minimal(0), ErrVersion, Summary{}},
		{"version 13", Minimal(13), ErrVersion, Summary{}},
		{"unknown string encoding", newBuilder("0009").raw(opAux, 0xC5, 1, 1).finish(), ErrFormat, Summary{}},
		{"bad length byte", newBuilder("0009").raw(opAux, 0x85, 1, 1).finish(), ErrFormat, Summary{}},
		{"bad lzf", newBuilder("0009").raw(opAux).str("k").raw(0xC3, 2, 5, 0, 'a').finish(), ErrFormat, Summary{}},
		{"aux swallows eof", newBuilder("0009").raw(opAux, 10, 'a', 'b').finish(), ErrFormat, Summary{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var first string
			for _, chunk := range []int{0, 1, 3, 8, 9, 100} {
				got, err := verify(tt.in, chunk)
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("chunk %d: got error %v, want %v", chunk, err, tt.wantErr)
				}
				if err != nil {
					if first == "" {
						first = err.Error()
						t.Logf("error: %v", err)
					} else if err.Error() != first {
						t.Errorf("chunk %d: got error %q, want the one-shot error %q", chunk, err, first)
					}
					continue
				}
				want := tt.want
				want.CRC = CRC64(0, tt.in[:len(tt.in)-8])
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("chunk %d: got %+v, want %+v", chunk, got, want)
				}
			}
		})
	}
}

func TestVerifierWriteFailsEarly(t *testing.T) {
	tests := []struct {
		name  string
		write []string
		wantN int // n returned by the failing write
	}{
		{"valkey", []string{"VALKEY080"}, 0},
		{"bad fifth byte", []string{"RED", "IX", "0009"}, 0},
		{"bad digit", []string{"REDIS00", "1x"}, 1},
		{"bad digit early", []string{"REDIS0x", "19"}, 0},
		{"version too new", []string{"REDIS0013abc"}, 8},
		{"version split", []string{"REDIS001", "3"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier()
			var err error
			var n int
			for _, w := range tt.write {
				if n, err = v.Write([]byte(w)); err != nil {
					break
				}
			}
			if err == nil {
				t.Fatal("got no error from Write")
			}
			if n != tt.wantN {
				t.Errorf("got n = %d, want %d", n, tt.wantN)
			}
			if _, err2 := v.Write([]byte("more")); !errors.Is(err2, err) {
				t.Errorf("later Write: got %v, want %v", err2, err)
			}
			if _, err2 := v.Finish(); !errors.Is(err2, err) {
				t.Errorf("Finish: got %v, want %v", err2, err)
			}
		})
	}
}

func TestVerifierHeaderTiming(t *testing.T) {
	p, selectAt := handBuiltWithAuxEnd()
	v := NewVerifier()
	for i := range p {
		if _, err := v.Write(p[i : i+1]); err != nil {
			t.Fatal(err)
		}
		_, ok := v.Header()
		// The opcode is decoded once it is known not to be checksum bytes.
		if want := i >= selectAt+8; ok != want {
			t.Fatalf("after %d bytes: got Header ok %v, want %v", i+1, ok, want)
		}
	}
	h, _ := v.Header()
	if !maps.Equal(h.Aux, handBuiltAux) || h.Version != 11 {
		t.Errorf("got %+v, want version 11 and %v", h, handBuiltAux)
	}
	h.Aux["redis-ver"] = "changed"
	if h2, _ := v.Header(); h2.Aux["redis-ver"] != "7.2.4" {
		t.Error("changing the returned map changed the Verifier's header")
	}
}

func TestVerifierHeaderBufferReleased(t *testing.T) {
	v := NewVerifier()
	if _, err := v.Write(handBuilt()); err != nil {
		t.Fatal(err)
	}
	if v.hbuf != nil {
		t.Errorf("got %d-byte header buffer after the header, want it released", len(v.hbuf))
	}
}

func TestVerifierAllocs(t *testing.T) {
	p := make([]byte, 4096)
	v := NewVerifier()
	if _, err := v.Write(Minimal(9)[:9]); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write([]byte{0xFE, 0}); err != nil { // ends the header
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Write(p[:3]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocs per Write, want 0", allocs)
	}
}

func TestMinimal(t *testing.T) {
	got := Minimal(9)
	want := []byte("REDIS0009\xff")
	if !bytes.HasPrefix(got, want) || len(got) != 18 {
		t.Fatalf("got %q, want %q plus 8 checksum bytes", got, want)
	}
	if crc := binary.LittleEndian.Uint64(got[10:]); crc != CRC64(0, want) || crc == 0 {
		t.Errorf("got checksum %016x, want %016x", crc, CRC64(0, want))
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr error
	}{
		{"REDIS0009", 9, nil},
		{"REDIS0012\xff", 12, nil},
		{"REDIS0080", 80, nil},
		{"REDIS000", 0, ErrTruncated},
		{"VALKEY080", 0, ErrFormat},
		{"REDIS-009", 0, ErrFormat},
	}
	for _, tt := range tests {
		got, err := ParseVersion([]byte(tt.in))
		if got != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
			t.Errorf("ParseVersion(%q): got (%d, %v), want (%d, %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzVerifier(f *testing.F) {
	f.Add(Minimal(9), uint8(0))
	f.Add(handBuilt(), uint8(3))
	f.Add(handBuilt()[9:], uint8(1))
	f.Add([]byte("\xfa\xc3\x05\x09\x00a\xe0\x00\x00"), uint8(2))
	f.Add([]byte("\xfa\x81\xff\xff\xff\xff\xff\xff\xff\xff"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		// Also try data after a valid magic, and as a complete RDB with a
		// right checksum, so the fuzzer reaches the header decoder.
		withMagic := append([]byte("REDIS0011"), data...)
		complete := newBuilder("0011").raw(data...).finish()
		for _, p := range [][]byte{data, withMagic, complete} {
			want, wantErr := verify(p, 0)
			got, err := verify(p, int(chunk))
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("chunk %d: got error %v, one shot %v", chunk, err, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("chunk %d: got %+v, one shot %+v", chunk, got, want)
			}
		}
	})
}

func TestVerifierRandomChunks(t *testing.T) {
	p := handBuilt()
	want, err := verify(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		v := NewVerifier()
		for start := 0; start < len(p); {
			end := min(len(p), start+rng.IntN(40))
			if _, err := v.Write(p[start:end]); err != nil {
				t.Fatal(err)
			}
			start = end
		}
		got, err := v.Finish()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got (%+v, %v), want (%+v, nil)", got, err, want)
		}
	}
}
