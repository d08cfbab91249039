package relay

import (
	"bytes"
	"fmt"
	"testing"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// frames returns n stream frames of about size bytes each, of SET commands
// with JSON-like values.
func testFrames(n, size int) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		var f []byte
		for j := 0; len(f) < size; j++ {
			f = append(f, setCommands(i*1000+j, 1)...)
		}
		out = append(out, f)
	}
	return out
}

// TestFrameCodecsRoundTrip: every codec gives back each frame, in a long
// stream, across compression resets and kinds mixed on one link.
func TestFrameCodecsRoundTrip(t *testing.T) {
	frames := testFrames(300, 3000)
	for _, kind := range []arborv1.Compression{arborv1.Compression_COMPRESSION_ZSTD, arborv1.Compression_COMPRESSION_S2, arborv1.Compression_COMPRESSION_NONE} {
		t.Run(compressionName(kind), func(t *testing.T) {
			enc, err := newFrameEncoder(kind)
			if err != nil {
				t.Fatal(err)
			}
			defer enc.close()
			dec := &decoders{}
			defer dec.close()
			for i, f := range frames {
				reset := i%50 == 49
				if reset {
					enc.reset()
					if err := dec.reset(kind); err != nil {
						t.Fatal(err)
					}
				}
				wire, err := enc.encode(f)
				if err != nil {
					t.Fatal(err)
				}
				got, err := dec.decode(bytes.Clone(wire), kind, uint32(len(f)))
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, f) {
					t.Fatalf("frame %d: decoded %d bytes differ from the %d sent", i, len(got), len(f))
				}
				// An uncompressed frame may come on any link.
				if i%97 == 0 {
					if got, err := dec.decode(f, arborv1.Compression_COMPRESSION_NONE, uint32(len(f))); err != nil || !bytes.Equal(got, f) {
						t.Fatalf("frame %d uncompressed: %v", i, err)
					}
				}
			}
		})
	}
}

// BenchmarkFrameDecode measures a child relay's decoding of zstd stream
// frames of a few sizes.
func BenchmarkFrameDecode(b *testing.B) {
	for _, size := range []int{500, 4000, 32000} {
		b.Run(fmt.Sprintf("zstd-%dB", size), func(b *testing.B) {
			frames := testFrames(256, size)
			enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.close()
			var wires [][]byte
			var raw int
			for _, f := range frames {
				w, err := enc.encode(f)
				if err != nil {
					b.Fatal(err)
				}
				wires = append(wires, bytes.Clone(w))
				raw += len(f)
			}
			b.SetBytes(int64(raw))
			b.ResetTimer()
			for range b.N {
				dec, err := newFrameDecoder(arborv1.Compression_COMPRESSION_ZSTD)
				if err != nil {
					b.Fatal(err)
				}
				for i, w := range wires {
					if _, err := dec.decode(w, arborv1.Compression_COMPRESSION_ZSTD, len(frames[i])); err != nil {
						b.Fatal(err)
					}
				}
				dec.close()
			}
		})
	}
}
