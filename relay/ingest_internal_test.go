package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/arbor-fabric/arbor/internal/resp"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// ingestStream returns about size bytes of a replication stream as a Redis
// master sends it: mostly SETs of 100-byte values, every tenth write a
// MULTI…EXEC of three commands, every fiftieth a 4 KiB value, and a PING
// now and then. It ends at a commit point.
func ingestStream(size int) []byte {
	small, large := bytes.Repeat([]byte("v"), 100), bytes.Repeat([]byte("w"), 4<<10)
	b := resp.AppendCommand(nil, "SELECT", "0")
	for i := 0; len(b) < size; i++ {
		key := strconv.AppendInt([]byte("key:"), int64(i), 10)
		switch {
		case i%1000 == 0:
			b = resp.AppendCommand(b, "PING")
		case i%50 == 0:
			b = resp.AppendArrayHeader(b, 3)
			b = resp.AppendBulkString(b, "SET")
			b = resp.AppendBulk(b, key)
			b = resp.AppendBulk(b, large)
		case i%10 == 0:
			b = resp.AppendCommand(b, "MULTI")
			b = resp.AppendArrayHeader(b, 3)
			b = resp.AppendBulkString(b, "SET")
			b = resp.AppendBulk(b, key)
			b = resp.AppendBulk(b, small)
			b = resp.AppendArrayHeader(b, 2)
			b = resp.AppendBulkString(b, "INCR")
			b = resp.AppendBulkString(b, "counter")
			b = resp.AppendArrayHeader(b, 4)
			b = resp.AppendBulkString(b, "HSET")
			b = resp.AppendBulkString(b, "h")
			b = resp.AppendBulk(b, key)
			b = resp.AppendBulk(b, small)
			b = resp.AppendCommand(b, "EXEC")
		default:
			b = resp.AppendArrayHeader(b, 3)
			b = resp.AppendBulkString(b, "SET")
			b = resp.AppendBulk(b, key)
			b = resp.AppendBulk(b, small)
		}
	}
	return b
}

// BenchmarkIngest feeds a realistic stream in 64 KiB writes through one
// upstream session of a relay (Relay.stream over a net.Pipe: the read, the
// commit-point scan, the held tail, the store's Append with fsync everysec).
func BenchmarkIngest(b *testing.B) {
	const chunk = 64 << 10
	stream := ingestStream(8 << 20)
	r := storeTestRelay(b, func(c *Config) { c.BacklogSize = 64 << 20 })

	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		start := r.store.End()
		relaySide, masterSide := net.Pipe()
		u := &upstreamConn{conn: relaySide, br: bufio.NewReaderSize(relaySide, 64<<10), timeout: time.Minute}
		done := make(chan error, 1)
		go func() { done <- r.stream(context.Background(), u) }()
		acks := make(chan struct{})
		go func() { // the master reads the relay's ACKs
			defer close(acks)
			io.Copy(io.Discard, masterSide)
		}()
		for p := stream; len(p) > 0; p = p[min(len(p), chunk):] {
			if _, err := masterSide.Write(p[:min(len(p), chunk)]); err != nil {
				b.Fatal(err)
			}
		}
		masterSide.Close()
		<-done
		<-acks
		if got := r.store.End() - start; got != int64(len(stream)) {
			b.Fatalf("stored %d bytes of %d", got, len(stream))
		}
	}
}

// BenchmarkFrameIngest feeds the same stream as BenchmarkIngest to a child
// relay, as its parent's zstd frames of 64 KiB, through one session
// (appendFrame: the decode, the commit-point scan, the held tail, the
// store's Append with fsync everysec).
func BenchmarkFrameIngest(b *testing.B) {
	const size = 64 << 10
	stream := ingestStream(8 << 20)
	r := storeTestRelay(b, func(c *Config) { c.BacklogSize = 64 << 20 })
	enc, err := newFrameEncoder(arborv1.Compression_COMPRESSION_ZSTD, zstd.SpeedDefault)
	if err != nil {
		b.Fatal(err)
	}
	defer enc.close()
	type frame struct {
		off  int64
		data []byte
		raw  int
	}
	var frames []frame
	for off := 0; off < len(stream); off += size {
		p := stream[off:min(off+size, len(stream))]
		w, err := enc.encode(p)
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, frame{int64(off), bytes.Clone(w), len(p)})
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		start := r.store.End()
		dec := &decoders{}
		in := newIngest(r.store.Scanner())
		for _, f := range frames {
			s := &arborv1.Stream{StartOffset: start + f.off, Data: f.data, Compression: arborv1.Compression_COMPRESSION_ZSTD, RawLen: uint32(f.raw)}
			if err := r.appendFrame(s, dec, in); err != nil {
				b.Fatal(err)
			}
		}
		dec.close()
		if got := r.store.End() - start; got != int64(len(stream)) {
			b.Fatalf("stored %d bytes of %d", got, len(stream))
		}
	}
}

// TestIngestReadyAtCommitPoints: whatever the reads' sizes, ingest hands
// out the stream in order, each piece ending at a commit point (never
// inside MULTI…EXEC), with the scanner state after it; the bytes it holds
// are the rest. Bytes that are not a stream come out whole with the error.
func TestIngestReadyAtCommitPoints(t *testing.T) {
	stream := ingestStream(256 << 10)
	for _, size := range []int{1, 7, 4 << 10, 64 << 10, len(stream)} {
		in := newIngest(resp.StreamScanner{})
		// What was handed out, and a scanner of it.
		var got []byte
		tx := resp.NewTxScanner(resp.StreamScanner{})
		for p := stream; len(p) > 0; {
			space := in.space()
			n := copy(space[:min(len(space), size)], p)
			p = p[n:]
			ready, after, _, err := in.add(n)
			if err != nil {
				t.Fatalf("reads of %d: %v", size, err)
			}
			if len(ready) == 0 {
				continue
			}
			got = append(got, ready...)
			_, _, _, err = tx.Feed(ready)
			if sc := tx.Scanner(); err != nil || !sc.AtBoundary() || tx.InTransaction() || after != (resp.StreamScanner{}) {
				t.Fatalf("reads of %d: ready ends at %d, not a commit point (err %v, in transaction %v, after %+v)",
					size, len(got), err, tx.InTransaction(), after)
			}
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("reads of %d: handed out %d bytes, want the %d of the stream", size, len(got), len(stream))
		}
	}

	in := newIngest(resp.StreamScanner{})
	multi := resp.AppendCommand(resp.AppendCommand(nil, "MULTI"), "SET", "k", "v")
	n := copy(in.space(), multi)
	if ready, _, _, err := in.add(n); err != nil || len(ready) != 0 {
		t.Fatalf("open MULTI: ready %q, err %v; want it held", ready, err)
	}
	n = copy(in.space(), "garbage")
	ready, _, _, err := in.add(n)
	if !errors.Is(err, resp.ErrProtocol) || string(ready) != string(multi)+"garbage" {
		t.Fatalf("garbage: ready %q, err %v; want all the bytes and a protocol error", ready, err)
	}
}
