package bench

import (
	"context"
	"fmt"
	"net"
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

// fillDataset writes gen's commands to addr, pipelined with at most window
// awaiting their reply, until gen has written target bytes of data; it
// reports progress every second. It is bounded by count (a command carries
// at least one byte of data) and by fillTimeout.
func fillDataset(ctx context.Context, addr string, gen *docGen, target int64, window int, progress func(string, ...any)) (res fillResult, err error) {
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
	data0 := gen.dataBytes
	maxWrites := target
	batch := max(1, min(fillBatch, window))
	next := start.Add(time.Second)
	var buf []byte
	for gen.dataBytes-data0 < target && res.writes < maxWrites {
		if time.Since(start) > fillTimeout {
			return res, fmt.Errorf("fill: %d of %d bytes after %v", gen.dataBytes-data0, target, fillTimeout)
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
		for i := 0; i < batch && gen.dataBytes-data0 < target; i++ {
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
			done := gen.dataBytes - data0
			progress("fill: %s of %s (%.0f%%), %d writes, %.1f MiB/s",
				sizeString(done), sizeString(target), 100*float64(done)/float64(target), res.writes,
				float64(done)/(1<<20)/now.Sub(start).Seconds())
		}
	}
	if err := waitAcked(ctx, addr, &acked, res.writes, readDone, &readErr); err != nil {
		return res, err
	}
	res.elapsed = time.Since(start)
	res.dataBytes = gen.dataBytes - data0
	return res, nil
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
