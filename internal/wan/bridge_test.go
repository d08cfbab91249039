package wan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func newBridge(t *testing.T, target string, opts ...Option) *Bridge {
	t.Helper()
	b, err := NewBridge(target, opts...)
	if err != nil {
		t.Fatalf("NewBridge: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func randomPayload(t testing.TB, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBridgeTransfer(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		opts      []Option
		minTime   time.Duration // loose floor the shaping must impose
		underTime time.Duration // loose ceiling showing throughput did not collapse
	}{
		{name: "unlimited", size: 16 << 20},
		{name: "small buffers", size: 4 << 20, opts: []Option{WithBufferSize(4 << 10), WithBurst(4 << 10)}},
		// 2 MB each way at 4 MB/s takes about 0.5 s.
		{name: "4MBps", size: 2_000_000, opts: []Option{WithBandwidth(4_000_000)}, minTime: 300 * time.Millisecond},
		// Latency must not be paid per chunk: 8 MiB in 32 KiB chunks one
		// after another at 50 ms would take 12.8 s.
		{name: "50ms latency", size: 8 << 20, opts: []Option{WithLatency(50 * time.Millisecond)},
			minTime: 100 * time.Millisecond, underTime: 6 * time.Second},
		{name: "2MBps and 20ms", size: 1_000_000, opts: []Option{WithBandwidth(2_000_000), WithLatency(20 * time.Millisecond)},
			minTime: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, echo)
			b := newBridge(t, srv.Addr(), tt.opts...)
			payload := randomPayload(t, tt.size)
			got, elapsed, err := echoTransfer(b.Addr(), payload)
			if err != nil {
				t.Fatalf("transfer: %v", err)
			}
			if want := sha256.Sum256(payload); got != want {
				t.Fatalf("sha256 of echo: got %x, want %x", got, want)
			}
			t.Logf("%d bytes each way in %v (%.1f MB/s)", tt.size, elapsed, float64(tt.size)/elapsed.Seconds()/1e6)
			if elapsed < tt.minTime {
				t.Errorf("elapsed: got %v, want at least %v", elapsed, tt.minTime)
			}
			if tt.underTime > 0 && elapsed > tt.underTime {
				t.Errorf("elapsed: got %v, want under %v", elapsed, tt.underTime)
			}
			checkFor(t, 2*time.Second, 5*time.Millisecond, func() error {
				up, down := b.BytesForwarded()
				if up != int64(tt.size) || down != int64(tt.size) {
					return fmt.Errorf("BytesForwarded: got (%d, %d), want (%d, %d)", up, down, tt.size, tt.size)
				}
				return nil
			})
			checkFor(t, 2*time.Second, 5*time.Millisecond, func() error {
				if n := b.Conns(); n != 0 {
					return fmt.Errorf("Conns after EOF both ways: got %d, want 0", n)
				}
				return nil
			})
			b.ResetCounters()
			if up, down := b.BytesForwarded(); up != 0 || down != 0 {
				t.Errorf("BytesForwarded after ResetCounters: got (%d, %d), want (0, 0)", up, down)
			}
		})
	}
}

func TestBridgeSharedBandwidth(t *testing.T) {
	srv := startServer(t, echo)
	b := newBridge(t, srv.Addr(), WithBandwidth(4_000_000))
	// Two connections of 1 MB each: alone each takes 0.25 s, sharing the
	// 4 MB/s bucket both take about 0.5 s.
	payload := randomPayload(t, 1_000_000)
	want := sha256.Sum256(payload)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			got, _, err := echoTransfer(b.Addr(), payload)
			if err == nil && got != want {
				err = fmt.Errorf("sha256: got %x, want %x", got, want)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("2 x 1 MB each way in %v", elapsed)
	if min := 350 * time.Millisecond; elapsed < min {
		t.Errorf("elapsed: got %v, want at least %v (bandwidth not shared?)", elapsed, min)
	}
}

// pingPong returns the round trip of one byte through c to an echo server.
func pingPong(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	buf := []byte{'p'}
	start := time.Now()
	if _, err := c.Write(buf); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return time.Since(start)
}

func TestBridgeLatency(t *testing.T) {
	srv := startServer(t, echo)
	b := newBridge(t, srv.Addr())
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("round trip without latency: %v", pingPong(t, c))

	for _, d := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond} {
		b.SetLatency(d)
		for range 3 {
			if rtt := pingPong(t, c); rtt < 2*d {
				t.Errorf("round trip with %v one way: got %v, want at least %v", d, rtt, 2*d)
			}
		}
	}
}

func TestBridgeCut(t *testing.T) {
	srv := startServer(t, echo)
	b := newBridge(t, srv.Addr())
	c1, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	pingPong(t, c1)
	if n := b.Conns(); n != 1 {
		t.Fatalf("Conns: got %d, want 1", n)
	}

	b.Cut()
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c1.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after Cut: got %v, want EOF or reset", err)
	}
	if n := b.Conns(); n != 0 {
		t.Fatalf("Conns after Cut: got %d, want 0", n)
	}

	// New connections are accepted by the kernel and closed at once.
	c2, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte{'x'})
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read on a connection made while cut: got %v, want EOF or reset", err)
	}

	b.Restore()
	c3, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	pingPong(t, c3)
	if n := b.Conns(); n != 1 {
		t.Errorf("Conns after Restore: got %d, want 1", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestBridgePause(t *testing.T) {
	var received atomic.Int64
	srv := startServer(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	b := newBridge(t, srv.Addr())
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	writeDone := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				writeDone <- err
				return
			}
		}
	}()
	defer func() {
		c.Close()
		<-writeDone
	}()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if up, _ := b.BytesForwarded(); up < 1<<20 {
			return fmt.Errorf("forwarded %d bytes, want 1 MiB before pausing", up)
		}
		return nil
	})

	b.Pause()
	// A chunk already being written may still land, and the target drains
	// its socket; then nothing moves.
	var frozen int64
	checkFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		prev := frozen
		frozen, _ = b.BytesForwarded()
		if got := received.Load(); frozen != prev || got != frozen {
			return fmt.Errorf("still moving: forwarded %d -> %d, received %d", prev, frozen, got)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if up, _ := b.BytesForwarded(); up != frozen {
		t.Fatalf("BytesForwarded while paused: got %d, want %d (frozen)", up, frozen)
	}
	if got := received.Load(); got != frozen {
		t.Fatalf("bytes received by the target while paused: got %d, want %d", got, frozen)
	}
	if n := b.Conns(); n != 1 {
		t.Fatalf("Conns while paused: got %d, want 1", n)
	}

	b.Restore()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if up, _ := b.BytesForwarded(); up < frozen+1<<20 {
			return fmt.Errorf("forwarded %d bytes after Restore, want more than %d", up, frozen+1<<20)
		}
		return nil
	})
}

func TestBridgePauseRoundTrip(t *testing.T) {
	srv := startServer(t, echo)
	b := newBridge(t, srv.Addr())
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pingPong(t, c)

	b.Pause()
	if _, err := c.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := readLine(c, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("read while paused: got %q, %v; want a timeout", line, err)
	}
	b.Restore()
	if line, err := readLine(c, 5*time.Second); err != nil || line != "x\n" {
		t.Fatalf("read after Restore: got %q, %v; want %q", line, err, "x\n")
	}
}

func TestBridgeBlackhole(t *testing.T) {
	srv := startServer(t, echo)
	b := newBridge(t, srv.Addr())
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pingPong(t, c)
	// The echo can reach the client a moment before the bridge counts it.
	checkFor(t, 2*time.Second, time.Millisecond, func() error {
		if up, down := b.BytesForwarded(); up != 1 || down != 1 {
			return fmt.Errorf("BytesForwarded after one ping: got (%d, %d), want (1, 1)", up, down)
		}
		return nil
	})
	b.ResetCounters()

	b.Blackhole()
	if _, err := c.Write([]byte("lost\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := readLine(c, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("read while blackholed: got %q, %v; want a timeout", line, err)
	}
	if up, down := b.BytesForwarded(); up != 0 || down != 0 {
		t.Fatalf("BytesForwarded while blackholed: got (%d, %d), want (0, 0)", up, down)
	}
	if n := b.Conns(); n != 1 {
		t.Fatalf("Conns while blackholed: got %d, want 1", n)
	}
	b.Restore()
	if _, err := c.Write([]byte("kept\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := readLine(c, 5*time.Second); err != nil || line != "kept\n" {
		t.Fatalf("read after Restore: got %q, %v; want %q", line, err, "kept\n")
	}
}

func TestBridgeSetBandwidthWakesWaiters(t *testing.T) {
	srv := startServer(t, echo)
	// At 1 KB/s a 64 KB echo would take over a minute each way.
	b := newBridge(t, srv.Addr(), WithBandwidth(1000), WithBurst(1000))
	payload := randomPayload(t, 64_000)
	type result struct {
		sum [32]byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, _, err := echoTransfer(b.Addr(), payload)
		done <- result{sum, err}
	}()
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if up, _ := b.BytesForwarded(); up == 0 {
			return errors.New("nothing forwarded yet")
		}
		return nil
	})
	b.SetBandwidth(0)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if want := sha256.Sum256(payload); r.sum != want {
			t.Fatalf("sha256: got %x, want %x", r.sum, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("transfer still throttled 10 s after SetBandwidth(0)")
	}
}

func TestBridgeClose(t *testing.T) {
	srv := startServer(t, echo)
	base := goleak.IgnoreCurrent()

	// A dial that only ends when its context does.
	dialing := make(chan struct{}, 1)
	hang := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialing <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	stuck, err := NewBridge(srv.Addr(), WithDialer(hang), WithDialTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBridge(srv.Addr(), WithLatency(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}

	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		pingPong(t, c)
	}
	// One connection stalls mid-transfer with data queued in the bridge.
	b.Pause()
	if _, err := clients[0].Write(bytes.Repeat([]byte{'z'}, 64<<10)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", stuck.Addr())
	if err != nil {
		t.Fatal(err)
	}
	clients = append(clients, c)
	<-dialing

	closed := make(chan error, 2)
	go func() { closed <- b.Close() }()
	go func() { closed <- stuck.Close() }()
	for range 2 {
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return within 5 s")
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
	for i, c := range clients[:3] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
			t.Errorf("client %d after Close: got %v, want EOF or reset", i, err)
		}
	}
	if _, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		t.Error("dial after Close: got nil error, want refused")
	}
	if n := b.Conns(); n != 0 {
		t.Errorf("Conns after Close: got %d, want 0", n)
	}
	// Every goroutine of both bridges is gone (the echo server's handlers
	// end on their own as the bridge's sockets close).
	goleak.VerifyNone(t, base)
}

func TestNewBridgeValidation(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		want string
	}{
		{"negative latency", WithLatency(-time.Second), "latency"},
		{"negative bandwidth", WithBandwidth(-1), "bandwidth"},
		{"zero buffer", WithBufferSize(0), "buffer size"},
		{"zero burst", WithBurst(0), "burst"},
		{"queue below buffer", WithQueueBytes(1), "queue bytes"},
		{"zero dial timeout", WithDialTimeout(0), "dial timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBridge("127.0.0.1:1", tt.opt)
			if err == nil {
				b.Close()
				t.Fatal("NewBridge: got nil error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %q, want it to name %q", err, tt.want)
			}
		})
	}
}

// TestBridgeDialFailure checks that a connection whose target refuses is
// closed, and the bridge keeps serving.
func TestBridgeDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	b := newBridge(t, dead)
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read with an unreachable target: got %v, want EOF or reset", err)
	}
	if n := b.Conns(); n != 0 {
		t.Errorf("Conns: got %d, want 0", n)
	}
}

// TestBridgeLateness: every chunk through each direction is counted in the
// bridge's lateness, which ResetCounters clears.
func TestBridgeLateness(t *testing.T) {
	srv := startServer(t, echo)
	b := newBridge(t, srv.Addr(), WithLatency(2*time.Millisecond))
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 5 {
		pingPong(t, c)
	}
	to, from := b.Lateness()
	if to.Chunks != 5 || from.Chunks != 5 {
		t.Errorf("chunks counted: %d toward the target, %d back; want 5 each", to.Chunks, from.Chunks)
	}
	for _, l := range []Lateness{to, from} {
		if l.P50 > l.P99 || l.P99 > l.Max {
			t.Errorf("lateness %+v: want p50 <= p99 <= max", l)
		}
	}
	b.ResetCounters()
	if to, from := b.Lateness(); to.Chunks != 0 || from.Chunks != 0 || to.Max != 0 {
		t.Errorf("after ResetCounters: %+v, %+v; want nothing counted", to, from)
	}
}

func TestLateHistQuantiles(t *testing.T) {
	var h lateHist
	for i := 1; i <= 100; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	l := h.stats()
	if l.Chunks != 100 || l.Max != 100*time.Millisecond {
		t.Fatalf("stats %+v: want 100 chunks, max 100ms", l)
	}
	// Buckets are 10% wide: quantiles are upper bounds within 10%.
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{{"p50", l.P50, 50 * time.Millisecond}, {"p99", l.P99, 99 * time.Millisecond}} {
		if c.got < c.want || float64(c.got) > 1.1*float64(c.want) {
			t.Errorf("%s = %v, want within [%v, +10%%]", c.name, c.got, c.want)
		}
	}
}
