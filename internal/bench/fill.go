package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

const (
	// fillTimeout bounds a fill.
	fillTimeout = 2 * time.Hour
	// fillBatch is how many commands the fill writes at once.
	fillBatch = 256
)

// fillResult is what a fill wrote.
type fillResult struct {
	writes    int64
	dataBytes int64
	elapsed   time.Duration
}

// filler makes a fill's commands: docGen (the realistic mix) or blobGen
// (large values).
type filler interface {
	// appendNext appends the next command.
	appendNext(b []byte) []byte
	// written is the bytes of data (keys, fields, values) of the commands
	// appended so far.
	written() int64
}

// fillDataset writes gen's commands to addr, pipelined with at most window
// awaiting their reply, until gen has written target bytes of data; it
// reports progress every second. It is bounded by count (a command carries
// at least one byte of data) and by fillTimeout.
func fillDataset(ctx context.Context, addr string, gen filler, target int64, window int, progress func(string, ...any)) (res fillResult, err error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, fmt.Errorf("dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	nc.SetDeadline(time.Now().Add(fillTimeout + ioGrace))
	var (
		acked   atomic.Int64
		closing atomic.Bool
		readErr error // set before readDone closes
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readErr = countReplies(nc, &acked, &closing)
	}()
	defer func() {
		closing.Store(true)
		nc.Close()
		<-readDone
		if err == nil {
			err = readErr
		}
	}()

	start := time.Now()
	data0 := gen.written()
	maxWrites := target
	batch := max(1, min(fillBatch, window))
	next := start.Add(time.Second)
	var buf []byte
	for gen.written()-data0 < target && res.writes < maxWrites {
		if time.Since(start) > fillTimeout {
			return res, fmt.Errorf("fill: %d of %d bytes after %v", gen.written()-data0, target, fillTimeout)
		}
		for res.writes-acked.Load() > int64(window-batch) {
			select {
			case <-readDone:
				return res, fmt.Errorf("fill %s: %w", addr, readErr)
			case <-ctx.Done():
				return res, ctx.Err()
			default:
			}
			time.Sleep(50 * time.Microsecond)
		}
		buf = buf[:0]
		for i := 0; i < batch && gen.written()-data0 < target; i++ {
			buf = gen.appendNext(buf)
			res.writes++
		}
		if _, err := nc.Write(buf); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("fill %s: %w", addr, err)
		}
		if now := time.Now(); now.After(next) {
			next = now.Add(time.Second)
			done := gen.written() - data0
			progress("fill: %s of %s (%.0f%%), %d writes, %.1f MiB/s",
				sizeString(done), sizeString(target), 100*float64(done)/float64(target), res.writes,
				float64(done)/(1<<20)/now.Sub(start).Seconds())
		}
	}
	if err := waitAcked(ctx, addr, &acked, res.writes, readDone, &readErr); err != nil {
		return res, err
	}
	res.elapsed = time.Since(start)
	res.dataBytes = gen.written() - data0
	return res, nil
}

// blobGen makes SETs of new keys with valueSize-byte values of random
// bytes (incompressible: the RDB is as large as the data): a dataset of
// many GiB loads at the speed the master applies large SETs, several times
// the realistic mix's. Each value is a window of a random pool at its own
// offset, so no bytes are generated per command.
type blobGen struct {
	pool      []byte
	valueSize int
	seq       int
	dataBytes int64
	key       []byte // scratch
}

// blobPoolSize is the random pool blobGen's values are cut from: larger
// than any value, so that neighbouring keys' values differ.
const blobPoolSize = 8 << 20

func newBlobGen(valueSize int, seed uint64) *blobGen {
	g := &blobGen{pool: make([]byte, blobPoolSize+valueSize), valueSize: valueSize}
	rand.NewChaCha8(seedBytes(seed)).Read(g.pool)
	return g
}

func seedBytes(seed uint64) (b [32]byte) {
	binary.LittleEndian.PutUint64(b[:], seed)
	return b
}

func (g *blobGen) written() int64 { return g.dataBytes }

func (g *blobGen) appendNext(b []byte) []byte {
	g.key = strconv.AppendInt(append(g.key[:0], "blob:"...), int64(g.seq), 10)
	// A stride that is no multiple of a page or of the value size.
	off := (g.seq * 7919 * 4099) % blobPoolSize
	g.seq++
	v := g.pool[off : off+g.valueSize]
	g.dataBytes += int64(len(g.key) + len(v))
	b = append(b, "*3\r\n$3\r\nSET\r\n$"...)
	b = strconv.AppendInt(b, int64(len(g.key)), 10)
	b = append(b, "\r\n"...)
	b = append(b, g.key...)
	return appendValue(b, v)
}

// sizeString renders a byte count in binary units.
func sizeString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
