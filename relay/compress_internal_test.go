package relay

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/arbor-fabric/arbor/internal/bench"
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

// TestFrameCodecsRoundTrip: every codec, at every zstd level, gives back each frame, in a long
// stream, across compression resets and kinds mixed on one link.
func TestFrameCodecsRoundTrip(t *testing.T) {
	frames := testFrames(300, 3000)
	type codec struct {
		kind  arborv1.Compression
		level zstd.EncoderLevel
	}
	codecs := []codec{{arborv1.Compression_COMPRESSION_S2, 0}, {arborv1.Compression_COMPRESSION_NONE, 0}}
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		codecs = append(codecs, codec{arborv1.Compression_COMPRESSION_ZSTD, l})
	}
	for _, cd := range codecs {
		kind := cd.kind
		t.Run(compressionName(kind)+"-"+cd.level.String(), func(t *testing.T) {
			enc, err := newFrameEncoder(kind, cd.level)
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

// TestFrameEncodeS2NoAlloc: after its first frame an s2 link encodes into
// the buffer it keeps, not a new one per frame (s2.Encode allocates
// unless given MaxEncodedLen bytes).
func TestFrameEncodeS2NoAlloc(t *testing.T) {
	frames := testFrames(8, 7000)
	enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_S2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.close()
	if _, err := enc.encode(frames[0]); err != nil {
		t.Fatal(err)
	}
	i := 0
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := enc.encode(frames[i%len(frames)]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("s2 encode: %.1f allocations per frame, want 0", allocs)
	}
}

// BenchmarkFrameDecode measures a child relay's decoding of zstd stream
// frames of a few sizes.
func BenchmarkFrameDecode(b *testing.B) {
	for _, size := range []int{500, 4000, 32000} {
		b.Run(fmt.Sprintf("zstd-%dB", size), func(b *testing.B) {
			frames := testFrames(256, size)
			enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, zstd.SpeedDefault)
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

// BenchmarkFrameEncode measures what zstd's level buys on a child link: the
// ratio (x, stream bytes per wire byte) and the speed (MB/s of stream on
// one core) of a link's encoder over the realistic workload of "arbor
// bench tree" (profile=40,log=30,counter=20,hash=10), in frames of 7 KiB
// (a millisecond of 20k writes/s, as the relay sends them under that load)
// and of 64 KiB (the largest frame, BatchBytes). The window and dictionary
// variants measure zstd options the relay does not use (see
// docs/benchmarks.md for why).
func BenchmarkFrameEncode(b *testing.B) {
	stream := bench.WorkloadStream(bench.DefaultMix(), 100000, 1, 16<<20)
	// A dictionary trained on another part of the same workload, as a
	// relay could train one on its own stream or snapshot.
	sample := bench.WorkloadStream(bench.DefaultMix(), 100000, 2, 1<<20)
	levels := []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression}
	for _, frame := range []int{7 << 10, 64 << 10} {
		for _, level := range levels {
			b.Run(fmt.Sprintf("frame=%dKiB/level=%s", frame>>10, level), func(b *testing.B) {
				benchEncode(b, stream, frame, func() (*frameEncoder, error) {
					return newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, level)
				})
			})
		}
	}
	for _, level := range levels[1:3] {
		b.Run(fmt.Sprintf("frame=7KiB/level=%s/window=8MiB", level), func(b *testing.B) {
			benchEncode(b, stream, 7<<10, func() (*frameEncoder, error) {
				return zstdEncoder(zstd.WithEncoderLevel(level), zstd.WithWindowSize(8<<20))
			})
		})
		b.Run(fmt.Sprintf("frame=7KiB/level=%s/dict", level), func(b *testing.B) {
			benchEncode(b, stream, 7<<10, func() (*frameEncoder, error) {
				return zstdEncoder(zstd.WithEncoderLevel(level), zstd.WithWindowSize(1<<20), zstd.WithEncoderDictRaw(1, sample))
			})
		})
	}
}

// relayFrameSizes are the sizes of the frames relay-a compressed for its
// two child relays in "arbor bench tree --pin --phases bytes" (counted per
// power of two: the upper bound of each bucket and how many frames fell in
// it), at 2,000 writes/s (a frame per master write, 886 bytes on average)
// and at 20,000 (16 KiB on average: the relay, sharing its core with
// relay-b and relay-c, reads several master writes at once).
var relayFrameSizes = []struct {
	name    string
	buckets [][2]int // {upper bound, frames}
}{
	{"relay-2k", [][2]int{{64, 728}, {128, 210}, {256, 566}, {512, 2016}, {1 << 10, 5354}, {2 << 10, 4518}, {4 << 10, 372}, {8 << 10, 34}, {16 << 10, 14}}},
	{"relay-20k", [][2]int{{2 << 10, 100}, {4 << 10, 638}, {8 << 10, 5153}, {16 << 10, 8006}, {32 << 10, 5795}, {64 << 10, 1201}, {64<<10 + 1, 638}}},
}

// drawFrameSizes cuts n bytes into frames whose sizes follow buckets
// (uniform within a bucket, seeded: the same cut each run).
func drawFrameSizes(buckets [][2]int, n int) []int {
	rng := rand.New(rand.NewPCG(1, 2))
	total := 0
	for _, b := range buckets {
		total += b[1]
	}
	var sizes []int
	for n > 0 {
		pick, lo := rng.IntN(total), 1
		for _, b := range buckets {
			if pick < b[1] {
				size := min(n, lo+rng.IntN(b[0]-lo))
				sizes = append(sizes, size)
				n -= size
				break
			}
			pick -= b[1]
			lo = b[0]
		}
	}
	return sizes
}

// evictCaches writes to every cache line of junk (8 MiB), as the other
// processes on a relay's core do between two of its frames.
func evictCaches(junk []byte) {
	for i := 0; i < len(junk); i += 64 {
		junk[i]++
	}
}

// BenchmarkFrameEncodeRelay measures a link's encoder at the default level
// on the frame sizes relay-a makes (relayFrameSizes), warm (frames back to
// back, as BenchmarkFrameEncode runs them) and cold: between two frames
// other work runs on the core and evicts the caches (8 MiB written), as
// the master's next write reaches the relay a millisecond later, after
// relay-b, relay-c and the kernel ran on the same core. Only the encoding
// is timed (the thread's CPU clock). The encoder's hash tables (1.25 MiB
// at default) and 1 MiB window start each small frame cold, which costs
// more per byte than the encoding itself: this, and frames smaller than
// 7 KiB, is why zstd takes more CPU per byte inside the relay than
// BenchmarkFrameEncode says (docs/benchmarks.md, CPU per byte).
func BenchmarkFrameEncodeRelay(b *testing.B) {
	stream := bench.WorkloadStream(bench.DefaultMix(), 100000, 1, 4<<20)
	junk := make([]byte, 8<<20)
	for _, dist := range relayFrameSizes {
		sizes := drawFrameSizes(dist.buckets, len(stream))
		for _, cold := range []bool{false, true} {
			b.Run(fmt.Sprintf("frames=%s/cold=%v", dist.name, cold), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.SetBytes(int64(len(stream)))
				var spent time.Duration
				var wire int
				for b.Loop() {
					enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, zstd.SpeedDefault)
					if err != nil {
						b.Fatal(err)
					}
					wire = 0
					p := stream
					for _, size := range sizes {
						if cold {
							evictCaches(junk)
						}
						t0 := threadCPUTime(b)
						w, err := enc.encode(p[:size])
						spent += threadCPUTime(b) - t0
						if err != nil {
							b.Fatal(err)
						}
						wire += len(w)
						p = p[size:]
					}
					enc.close()
				}
				b.ReportMetric(float64(len(stream))/float64(wire), "x")
				b.ReportMetric(float64(b.N)*float64(len(stream))/1e6/spent.Seconds(), "MB/cpu-s")
				b.ReportMetric(float64(spent.Microseconds())/float64(b.N*len(sizes)), "us/frame")
			})
		}
	}
}

// BenchmarkFrameDecodeRelay is BenchmarkFrameEncodeRelay's counterpart on
// a child relay: it decodes the frames relay-a makes (relayFrameSizes, at
// the default level), warm and with the caches evicted between frames.
func BenchmarkFrameDecodeRelay(b *testing.B) {
	stream := bench.WorkloadStream(bench.DefaultMix(), 100000, 1, 4<<20)
	junk := make([]byte, 8<<20)
	for _, dist := range relayFrameSizes {
		sizes := drawFrameSizes(dist.buckets, len(stream))
		enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, zstd.SpeedDefault)
		if err != nil {
			b.Fatal(err)
		}
		var wires [][]byte
		for p, i := stream, 0; i < len(sizes); p, i = p[sizes[i]:], i+1 {
			w, err := enc.encode(p[:sizes[i]])
			if err != nil {
				b.Fatal(err)
			}
			wires = append(wires, bytes.Clone(w))
		}
		enc.close()
		for _, cold := range []bool{false, true} {
			b.Run(fmt.Sprintf("frames=%s/cold=%v", dist.name, cold), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.SetBytes(int64(len(stream)))
				var spent time.Duration
				for b.Loop() {
					dec, err := newFrameDecoder(arborv1.Compression_COMPRESSION_ZSTD)
					if err != nil {
						b.Fatal(err)
					}
					for i, w := range wires {
						if cold {
							evictCaches(junk)
						}
						t0 := threadCPUTime(b)
						_, err := dec.decode(w, arborv1.Compression_COMPRESSION_ZSTD, sizes[i])
						spent += threadCPUTime(b) - t0
						if err != nil {
							b.Fatal(err)
						}
					}
					dec.close()
				}
				b.ReportMetric(float64(b.N)*float64(len(stream))/1e6/spent.Seconds(), "MB/cpu-s")
				b.ReportMetric(float64(spent.Microseconds())/float64(b.N*len(sizes)), "us/frame")
			})
		}
	}
}

// threadCPUTime returns the CPU time the calling thread has used so far.
func threadCPUTime(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// zstdEncoder returns a zstd frameEncoder with the link's options but level
// and window, which opts give.
func zstdEncoder(opts ...zstd.EOption) (*frameEncoder, error) {
	e := &frameEncoder{kind: arborv1.Compression_COMPRESSION_ZSTD}
	zw, err := zstd.NewWriter(&e.buf, append([]zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false)}, opts...)...)
	e.zw = zw
	return e, err
}

// benchEncode encodes stream in frames of frame bytes on one link, from a
// new encoder each round, and reports the ratio and the stream MB encoded
// per CPU second of the process (unlike MB/s, which is per second of wall
// time, it holds on a busy machine).
func benchEncode(b *testing.B, stream []byte, frame int, newEnc func() (*frameEncoder, error)) {
	b.SetBytes(int64(len(stream)))
	var wire int
	cpu0 := cpuTime(b)
	for b.Loop() {
		enc, err := newEnc()
		if err != nil {
			b.Fatal(err)
		}
		wire = 0
		for p := stream; len(p) > 0; p = p[min(len(p), frame):] {
			w, err := enc.encode(p[:min(len(p), frame)])
			if err != nil {
				b.Fatal(err)
			}
			wire += len(w)
		}
		enc.close()
	}
	b.ReportMetric(float64(len(stream))/float64(wire), "x")
	b.ReportMetric(float64(b.N)*float64(len(stream))/1e6/(cpuTime(b)-cpu0).Seconds(), "MB/cpu-s")
}

// cpuTime returns the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFrameStream measures a long-lived zstd link, as a relay's
// steady stream runs it: 16 MiB of stream in frames of a few sizes, through
// one encoder (a fanout's, or a link's own) and one decoder (the child's),
// well past the 1 MiB window, where the codecs keep moving their history.
func BenchmarkFrameStream(b *testing.B) {
	for _, size := range []int{4000, 16000} {
		frames := testFrames(16<<20/size, size)
		var raw int
		for _, f := range frames {
			raw += len(f)
		}
		b.Run(fmt.Sprintf("encode-%dB", size), func(b *testing.B) {
			enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, zstd.SpeedDefault)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.close()
			b.SetBytes(int64(raw))
			for b.Loop() {
				for _, f := range frames {
					if _, err := enc.encode(f); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(fmt.Sprintf("decode-%dB", size), func(b *testing.B) {
			enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, zstd.SpeedDefault)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.close()
			var wires [][]byte
			for _, f := range frames {
				w, err := enc.encode(f)
				if err != nil {
					b.Fatal(err)
				}
				wires = append(wires, bytes.Clone(w))
			}
			dec, err := newFrameDecoder(arborv1.Compression_COMPRESSION_ZSTD)
			if err != nil {
				b.Fatal(err)
			}
			defer dec.close()
			b.SetBytes(int64(raw))
			for b.Loop() {
				// A new compression stream each round: the frames were
				// encoded as one.
				if err := dec.reset(); err != nil {
					b.Fatal(err)
				}
				for i, w := range wires {
					if _, err := dec.decode(w, arborv1.Compression_COMPRESSION_ZSTD, len(frames[i])); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
