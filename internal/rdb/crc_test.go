package rdb

import (
	"hash/crc64"
	"math/bits"
	"math/rand/v2"
	"testing"
)

func TestCRC64CheckValue(t *testing.T) {
	if got, want := CRC64(0, []byte("123456789")), uint64(0xe9c6d914c4b8d9ca); got != want {
		t.Fatalf("got %016x, want %016x", got, want)
	}
	if got := CRC64(0, nil); got != 0 {
		t.Errorf("empty input: got %016x, want 0", got)
	}
}

// crcBitwise is the textbook bit-at-a-time reflected CRC64 (init 0, no final
// xor), as a reference independent of the table code.
func crcBitwise(crc uint64, p []byte) uint64 {
	poly := bits.Reverse64(crcPoly)
	for _, c := range p {
		crc ^= uint64(c)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ poly
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func TestCRC64Incremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := make([]byte, 10000) // long enough for the stdlib's slicing path
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	want := crcBitwise(0, p)
	if got := CRC64(0, p); got != want {
		t.Fatalf("one shot: got %016x, want %016x", got, want)
	}
	for _, cut := range []int{0, 1, 7, 63, 64, 2047, 2048, 5000, len(p)} {
		if got := CRC64(CRC64(0, p[:cut]), p[cut:]); got != want {
			t.Errorf("split at %d: got %016x, want %016x", cut, got, want)
		}
	}
	// The package table must not be the stdlib's ECMA or ISO one.
	if *crcTable == *crc64.MakeTable(crc64.ECMA) {
		t.Error("crcTable is the ECMA table")
	}
}

func BenchmarkCRC64(b *testing.B) {
	p := make([]byte, 32<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	var crc uint64
	for b.Loop() {
		crc = CRC64(crc, p)
	}
	_ = crc
}
