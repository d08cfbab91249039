package wan

import (
	"context"
	"fmt"
	"net"
	"time"
)

// DialFunc dials the bridge's target. net.Dialer.DialContext is one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Option configures a Bridge in NewBridge.
type Option func(*config)

type config struct {
	latency     time.Duration
	bandwidth   int64
	bufferSize  int
	burst       int
	queueBytes  int
	dialTimeout time.Duration
	listener    net.Listener
	dial        DialFunc
}

func defaultConfig() config {
	return config{
		bufferSize:  32 << 10,
		burst:       32 << 10,
		queueBytes:  4 << 20,
		dialTimeout: 5 * time.Second,
	}
}

func (c *config) validate() error {
	switch {
	case c.latency < 0:
		return fmt.Errorf("latency %v: must not be negative", c.latency)
	case c.bandwidth < 0:
		return fmt.Errorf("bandwidth %d: must not be negative", c.bandwidth)
	case c.bufferSize <= 0:
		return fmt.Errorf("buffer size %d: must be positive", c.bufferSize)
	case c.burst <= 0:
		return fmt.Errorf("burst %d: must be positive", c.burst)
	case c.queueBytes < c.bufferSize:
		return fmt.Errorf("queue bytes %d: must be at least the buffer size %d", c.queueBytes, c.bufferSize)
	case c.dialTimeout <= 0:
		return fmt.Errorf("dial timeout %v: must be positive", c.dialTimeout)
	}
	return nil
}

// WithLatency sets the initial one-way latency of each direction (see
// Bridge.SetLatency).
func WithLatency(d time.Duration) Option { return func(c *config) { c.latency = d } }

// WithBandwidth sets the initial rate of each direction in bytes per second
// (see Bridge.SetBandwidth).
func WithBandwidth(bytesPerSec int64) Option {
	return func(c *config) { c.bandwidth = bytesPerSec }
}

// WithBufferSize sets the size of one read, and so of one chunk in the delay
// line. The default is 32 KiB.
func WithBufferSize(n int) Option { return func(c *config) { c.bufferSize = n } }

// WithBurst sets the token bucket depth of a shaped direction in bytes. A
// shaped direction also reads at most this much at once. The default is
// 32 KiB. Above about 16 MB/s the bucket holds 2 ms at the rate instead,
// because Go timers on an idle process fire up to a millisecond late.
func WithBurst(n int) Option { return func(c *config) { c.burst = n } }

// WithQueueBytes bounds the delay line of each direction of each connection.
// The bridge terminates TCP, so its senders see no added round trip; the
// delay line is the link's bandwidth-delay product, and a direction moves at
// most queueBytes per latency. The default is 4 MiB.
func WithQueueBytes(n int) Option { return func(c *config) { c.queueBytes = n } }

// WithDialTimeout bounds the dial to the target for each accepted
// connection. The default is 5 s.
func WithDialTimeout(d time.Duration) Option { return func(c *config) { c.dialTimeout = d } }

// WithListener makes the bridge accept on ln instead of a new listener on
// 127.0.0.1:0. The bridge owns ln and closes it in Close.
func WithListener(ln net.Listener) Option { return func(c *config) { c.listener = ln } }

// WithDialer makes the bridge reach its target through dial, for example
// from inside a network namespace (Network.Dialer).
func WithDialer(dial DialFunc) Option { return func(c *config) { c.dial = dial } }
