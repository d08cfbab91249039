package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// lagPattern matches the keyspace notifications of the lag probes.
const (
	lagChannelPrefix = "__keyspace@0__:lag:"
	lagPattern       = lagChannelPrefix + "*"
)

// maxBurstBatches bounds how many batch intervals' worth of writes the
// fixed-rate writer sends at once after it fell behind.
const maxBurstBatches = 10

// subscriber receives the keyspace notifications of the lag probes on one
// replica and records when each arrived.
type subscriber struct {
	name string
	c    *conn
	// recvAt[seq] is when probe seq was seen, since the run's base time;
	// 0 means not seen. Owned by run until it returns.
	recvAt []time.Duration
	got    atomic.Int64 // probes seen, readable while run goes on
	dups   int          // owned by run
	closed atomic.Bool
}

// subscribe enables keyspace notifications for string commands on the
// replica at addr and subscribes to the probes' channels.
func subscribe(ctx context.Context, name, addr string, probes int) (*subscriber, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("subscribe on %s: %w", name, err)
	}
	if _, err := c.do("CONFIG", "SET", "notify-keyspace-events", "K$"); err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe on %s: %w", name, err)
	}
	v, err := c.do("PSUBSCRIBE", lagPattern)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("subscribe on %s: %w", name, err)
	}
	if len(v.Array) != 3 || string(v.Array[0].Str) != "psubscribe" {
		c.close()
		return nil, fmt.Errorf("subscribe on %s: unexpected reply %v", name, v)
	}
	c.nc.SetDeadline(time.Time{})
	return &subscriber{name: name, c: c, recvAt: make([]time.Duration, probes)}, nil
}

// run records notifications until the connection is closed by close.
func (s *subscriber) run(base time.Time) error {
	for {
		v, err := s.c.rd.ReadReply()
		now := time.Since(base)
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			return fmt.Errorf("subscriber on %s: %w", s.name, err)
		}
		if len(v.Array) != 4 || string(v.Array[0].Str) != "pmessage" {
			continue
		}
		ch := v.Array[2].Str
		if len(ch) <= len(lagChannelPrefix) {
			continue
		}
		seq, err := strconv.Atoi(string(ch[len(lagChannelPrefix):]))
		if err != nil || seq < 0 || seq >= len(s.recvAt) {
			continue
		}
		if s.recvAt[seq] != 0 {
			s.dups++
			continue
		}
		s.recvAt[seq] = now
		s.got.Add(1)
	}
}

func (s *subscriber) close() {
	s.closed.Store(true)
	s.c.close()
}

// writeResult is what the fixed-rate writer did.
type writeResult struct {
	writes  int64
	batches int64
	probes  int
	elapsed time.Duration
}

// writeFixedRate sends cfg.Rate SETs per second to addr for cfg.Duration,
// in a batch every cfg.BatchInterval, and at most cfg.LagSamples times per
// second makes a batch's first SET the probe lag:<seq>, recording in
// sentAt[seq] when it went out (since base). A second goroutine reads the
// replies so the writer never waits for the server; writeFixedRate returns
// once every reply has arrived.
func writeFixedRate(ctx context.Context, addr string, cfg *Config, base time.Time, sentAt []time.Duration) (res writeResult, err error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return writeResult{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	nc.SetDeadline(time.Now().Add(cfg.Duration + ioGrace))

	var (
		acked   atomic.Int64
		closing atomic.Bool
		readErr error // set before readDone closes
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readErr = countOK(nc, &acked, &closing)
	}()
	defer func() {
		closing.Store(true)
		nc.Close()
		<-readDone
		if err == nil {
			err = readErr
		}
	}()

	value := newValue(cfg.ValueSize)
	perSecond := float64(cfg.Rate)
	maxBurst := max(1, int64(perSecond*cfg.BatchInterval.Seconds()*maxBurstBatches))
	maxWrites := int64(cfg.Duration.Seconds() * min(perSecond, maxOpsPerSecond))
	// Every probeBatches-th batch starts with a probe. The ticker drops
	// ticks when the writer runs late, so on a loaded machine there are
	// somewhat fewer batches, and probes, than asked for.
	probeBatches := max(1, int64(math.Round(float64(time.Second)/float64(cfg.LagSamples)/float64(cfg.BatchInterval))))
	ticker := time.NewTicker(cfg.BatchInterval)
	defer ticker.Stop()

	var (
		buf  []byte
		next int
	)
	start := time.Now()
	for {
		now := time.Now()
		el := now.Sub(start)
		if el >= cfg.Duration || res.writes >= maxWrites {
			break
		}
		n := min(int64(perSecond*el.Seconds())-res.writes, maxBurst, maxWrites-res.writes)
		if n > 0 {
			buf = buf[:0]
			k := n
			probe := -1
			if res.batches%probeBatches == 0 && res.probes < len(sentAt) {
				probe = res.probes
				buf = appendProbe(buf, probe, value)
				k--
			}
			for range k {
				buf = appendSet(buf, next, value)
				if next++; next >= cfg.Keyspace {
					next = 0
				}
			}
			if probe >= 0 {
				sentAt[probe] = time.Since(base)
				res.probes++
			}
			if _, err := nc.Write(buf); err != nil {
				return res, errors.Join(ctx.Err(), fmt.Errorf("write to %s: %w", addr, err))
			}
			res.writes += n
			res.batches++
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	res.elapsed = time.Since(start)

	// Every reply must arrive before the connection is closed.
	timeout := time.NewTimer(ioGrace)
	defer timeout.Stop()
	for acked.Load() < res.writes {
		select {
		case <-readDone:
			return res, fmt.Errorf("writer on %s: %d of %d replies: %w", addr, acked.Load(), res.writes, readErr)
		case <-ctx.Done():
			return res, ctx.Err()
		case <-timeout.C:
			return res, fmt.Errorf("writer on %s: %d of %d replies after %v", addr, acked.Load(), res.writes, ioGrace)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return res, nil
}

// appendProbe appends SET lag:<seq> value.
func appendProbe(b []byte, seq int, value []byte) []byte {
	var key [24]byte
	k := strconv.AppendInt(append(key[:0], "lag:"...), int64(seq), 10)
	b = append(b, "*3\r\n$3\r\nSET\r\n$"...)
	b = strconv.AppendInt(b, int64(len(k)), 10)
	b = append(b, "\r\n"...)
	b = append(b, k...)
	return appendValue(b, value)
}

// countOK reads +OK replies from r, adding each to acked, until an error;
// the error is nil when closing was set first.
func countOK(r net.Conn, acked *atomic.Int64, closing *atomic.Bool) error {
	buf := make([]byte, 64<<10)
	pos := 0 // position within okReply
	for {
		n, err := r.Read(buf)
		var ok int64
		for i, c := range buf[:n] {
			if c != okReply[pos] {
				return fmt.Errorf("read replies: %q: want +OK", buf[i:min(i+120, n)])
			}
			if pos++; pos == len(okReply) {
				pos = 0
				ok++
			}
		}
		acked.Add(ok)
		if err != nil {
			if closing.Load() {
				return nil
			}
			return fmt.Errorf("read replies: %w", err)
		}
	}
}
