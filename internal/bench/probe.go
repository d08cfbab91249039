package bench

import (
	"bytes"
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

// cmdSource appends the next write command of a load to b. Every command
// it makes must answer with a simple string or an integer (SET, INCR,
// HSET...).
type cmdSource interface {
	appendNext(b []byte) []byte
}

// setSource makes the SETs of key:<n> (n cycling through the keyspace)
// with one fixed value that "arbor bench relay" writes.
type setSource struct {
	value    []byte
	keyspace int
	next     int
}

func newSetSource(cfg *Config) *setSource {
	return &setSource{value: newValue(cfg.ValueSize), keyspace: cfg.Keyspace}
}

func (s *setSource) appendNext(b []byte) []byte {
	b = appendSet(b, s.next, s.value)
	if s.next++; s.next >= s.keyspace {
		s.next = 0
	}
	return b
}

// fixedRate describes a fixed-rate load.
type fixedRate struct {
	// rate is the number of writes per second.
	rate int
	// duration is how long the load lasts.
	duration time.Duration
	// batchInterval is how often a batch of writes is sent.
	batchInterval time.Duration
	// lagSamples is how many lag probes per second the load aims for;
	// 0 means none.
	lagSamples int
	// probeValue is the value of every probe SET.
	probeValue []byte
}

// fixedRate returns the lag phase's load.
func (c *Config) fixedRate() fixedRate {
	return fixedRate{rate: c.Rate, duration: c.Duration, batchInterval: c.BatchInterval,
		lagSamples: c.LagSamples, probeValue: newValue(c.ValueSize)}
}

// writeFixedRate sends fr.rate commands from src per second to addr for
// fr.duration, in a batch every fr.batchInterval, and at most
// fr.lagSamples times per second makes a batch's first command the probe
// SET lag:<seq>, recording in sentAt[seq] when it went out (since base); it
// sends at most len(sentAt) probes. A second goroutine reads the replies so
// the writer never waits for the server; writeFixedRate returns once every
// reply has arrived. The load is bounded by count as well as by time.
func writeFixedRate(ctx context.Context, addr string, fr fixedRate, src cmdSource, base time.Time, sentAt []time.Duration) (res writeResult, err error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return writeResult{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	nc.SetDeadline(time.Now().Add(fr.duration + ioGrace))

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

	perSecond := float64(fr.rate)
	maxBurst := max(1, int64(perSecond*fr.batchInterval.Seconds()*maxBurstBatches))
	maxWrites := int64(fr.duration.Seconds() * min(perSecond, maxOpsPerSecond))
	// Every probeBatches-th batch starts with a probe. The ticker drops
	// ticks when the writer runs late, so on a loaded machine there are
	// somewhat fewer batches, and probes, than asked for.
	probeBatches := int64(math.MaxInt64)
	if fr.lagSamples > 0 {
		probeBatches = max(1, int64(math.Round(float64(time.Second)/float64(fr.lagSamples)/float64(fr.batchInterval))))
	}
	ticker := time.NewTicker(fr.batchInterval)
	defer ticker.Stop()

	var buf []byte
	start := time.Now()
	for {
		now := time.Now()
		el := now.Sub(start)
		if el >= fr.duration || res.writes >= maxWrites {
			break
		}
		n := min(int64(perSecond*el.Seconds())-res.writes, maxBurst, maxWrites-res.writes)
		if n > 0 {
			buf = buf[:0]
			k := n
			probe := -1
			if res.batches%probeBatches == 0 && res.probes < len(sentAt) {
				probe = res.probes
				buf = appendProbe(buf, probe, fr.probeValue)
				k--
			}
			for range k {
				buf = src.appendNext(buf)
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
	if err := waitAcked(ctx, addr, &acked, res.writes, readDone, &readErr); err != nil {
		return res, err
	}
	return res, nil
}

// waitAcked waits until acked reaches want, the reader ends (readDone; its
// error in *readErr), ctx ends or ioGrace passes.
func waitAcked(ctx context.Context, addr string, acked *atomic.Int64, want int64, readDone <-chan struct{}, readErr *error) error {
	timeout := time.NewTimer(ioGrace)
	defer timeout.Stop()
	for acked.Load() < want {
		select {
		case <-readDone:
			if acked.Load() >= want {
				return nil
			}
			return fmt.Errorf("writer on %s: %d of %d replies: %w", addr, acked.Load(), want, *readErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("writer on %s: %d of %d replies after %v", addr, acked.Load(), want, ioGrace)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
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

// countReplies reads replies from r, adding each to acked, until an error;
// the error is nil when closing was set first. Only simple strings and
// integers (+OK, :1) are accepted: an error reply, or any other type, ends
// it with an error.
func countReplies(r net.Conn, acked *atomic.Int64, closing *atomic.Bool) error {
	buf := make([]byte, 64<<10)
	inReply := false // inside a reply, before its '\n'
	for {
		n, err := r.Read(buf)
		var got int64
		for i := 0; i < n; i++ {
			c := buf[i]
			if !inReply {
				if c != '+' && c != ':' {
					acked.Add(got)
					return fmt.Errorf("read replies: %q: want a simple string or an integer", buf[i:min(i+120, n)])
				}
				inReply = true
				continue
			}
			j := bytes.IndexByte(buf[i:n], '\n')
			if j < 0 {
				break
			}
			i += j
			inReply = false
			got++
		}
		acked.Add(got)
		if err != nil {
			if closing.Load() {
				return nil
			}
			return fmt.Errorf("read replies: %w", err)
		}
	}
}

// startSubscribers subscribes to the lag probes on each server and runs the
// subscribers; times are measured from base. wait closes them and collects their results
// (after it the subscribers' recvAt slices belong to the caller); it may be
// called more than once.
func startSubscribers(ctx context.Context, probes int, servers ...*server) (subs []*subscriber, base time.Time, wait func() error, err error) {
	for _, s := range servers {
		sub, err := subscribe(ctx, s.name, s.addr, probes)
		if err != nil {
			for _, o := range subs {
				o.close()
			}
			return nil, time.Time{}, nil, err
		}
		subs = append(subs, sub)
	}
	base = time.Now()
	errs := make(chan error, len(subs))
	for _, s := range subs {
		go func() { errs <- s.run(base) }()
	}
	waited := false
	wait = func() error {
		if waited {
			return nil
		}
		waited = true
		for _, s := range subs {
			s.close()
		}
		var first error
		for range subs {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	return subs, base, wait, nil
}
