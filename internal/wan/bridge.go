package wan

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Bridge is a TCP proxy that stands for one WAN link: every connection
// accepted on Addr is forwarded to the target, with added latency, a shared
// bandwidth limit and link faults applied to both directions.
//
// Its methods are safe for concurrent use. Each connection runs four
// goroutines, a reader and a writer per direction joined by a bounded delay
// line; all of them, and the accept loop, end in Close.
type Bridge struct {
	target string
	cfg    config
	ln     net.Listener
	dial   DialFunc

	latency    atomic.Int64 // nanoseconds, one way
	up, down   *limiter     // toward the target, toward the client
	toTarget   atomic.Int64 // payload bytes written to targets
	fromTarget atomic.Int64 // payload bytes written to clients
	// lateTo and lateFrom: how late chunks were written after their due
	// time, toward the target and toward clients.
	lateTo, lateFrom lateHist
	blackhole        atomic.Bool
	resume           atomic.Pointer[chan struct{}] // non-nil while paused; closed by Restore
	bufs             sync.Pool

	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex // guards the fields below
	closed  bool
	cut     bool
	links   map[*link]struct{}
	dialing map[*context.CancelFunc]struct{}
}

// NewBridge listens on 127.0.0.1:0 (or the WithListener listener) and
// forwards every accepted connection to target. The caller must call Close.
func NewBridge(target string, opts ...Option) (*Bridge, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		if cfg.listener != nil {
			cfg.listener.Close()
		}
		return nil, err
	}
	ln := cfg.listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	dial := cfg.dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	b := &Bridge{
		target:  target,
		cfg:     cfg,
		ln:      ln,
		dial:    dial,
		up:      newLimiter(cfg.bandwidth, cfg.burst),
		down:    newLimiter(cfg.bandwidth, cfg.burst),
		done:    make(chan struct{}),
		links:   make(map[*link]struct{}),
		dialing: make(map[*context.CancelFunc]struct{}),
	}
	b.latency.Store(int64(cfg.latency))
	b.bufs.New = func() any {
		buf := make([]byte, cfg.bufferSize)
		return &buf
	}
	b.wg.Add(1)
	go b.acceptLoop()
	return b, nil
}

// Addr returns the address clients dial to cross the link.
func (b *Bridge) Addr() string { return b.ln.Addr().String() }

// Target returns the address the bridge forwards to.
func (b *Bridge) Target() string { return b.target }

// Close stops accepting, closes every connection and waits for all the
// bridge's goroutines. It is safe to call more than once.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		links, cancels := b.snapshotLocked()
		b.mu.Unlock()
		close(b.done)
		b.closeErr = b.ln.Close()
		for _, cancel := range cancels {
			(*cancel)()
		}
		for _, l := range links {
			l.close()
		}
		b.wg.Wait()
	})
	return b.closeErr
}

// SetLatency sets the one-way latency added to each direction. A chunk read
// at time t is written at t+d (after any bandwidth wait); chunks are not
// delayed one after another, so throughput stays bounded by the delay line
// (WithQueueBytes) rather than by chunk size over latency.
func (b *Bridge) SetLatency(d time.Duration) {
	b.latency.Store(int64(max(d, 0)))
}

// SetBandwidth sets the rate of each direction in bytes per second, shared
// by all connections of the bridge; 0 means unlimited. Bursts are bounded by
// WithBurst.
func (b *Bridge) SetBandwidth(bytesPerSec int64) {
	bytesPerSec = max(bytesPerSec, 0)
	b.up.set(bytesPerSec)
	b.down.set(bytesPerSec)
}

// Cut closes every current connection and closes new ones as soon as they
// are accepted, until Restore.
func (b *Bridge) Cut() {
	b.mu.Lock()
	b.cut = true
	links, cancels := b.snapshotLocked()
	b.mu.Unlock()
	for _, cancel := range cancels {
		(*cancel)()
	}
	for _, l := range links {
		l.close()
	}
}

// Pause stops forwarding in both directions and keeps connections open, like
// a stalled link. The bridge stops reading, so TCP flow control pushes back
// on the senders; a chunk already being written may still complete. New
// connections are accepted and stall too.
func (b *Bridge) Pause() {
	ch := make(chan struct{})
	b.resume.CompareAndSwap(nil, &ch)
}

// Blackhole keeps reading from every connection but drops what it reads,
// until Restore. Dropped bytes are not counted as forwarded.
func (b *Bridge) Blackhole() { b.blackhole.Store(true) }

// Restore undoes Cut, Pause and Blackhole. Connections closed by Cut stay
// closed; clients must reconnect.
func (b *Bridge) Restore() {
	b.mu.Lock()
	b.cut = false
	b.mu.Unlock()
	b.blackhole.Store(false)
	if ch := b.resume.Swap(nil); ch != nil {
		close(*ch)
	}
}

// BytesForwarded returns the payload bytes written to the target and to
// clients since the bridge started or since ResetCounters.
func (b *Bridge) BytesForwarded() (toTarget, fromTarget int64) {
	return b.toTarget.Load(), b.fromTarget.Load()
}

// ResetCounters sets both byte counters, and the lateness counts, to zero.
func (b *Bridge) ResetCounters() {
	b.toTarget.Store(0)
	b.fromTarget.Store(0)
	b.lateTo.reset()
	b.lateFrom.reset()
}

// Lateness tells how late the bridge delivered chunks after their due time,
// toward the target and toward clients, since it started or since
// ResetCounters: what the simulator adds beyond its configured latency.
func (b *Bridge) Lateness() (toTarget, fromTarget Lateness) {
	return b.lateTo.stats(), b.lateFrom.stats()
}

// Conns returns the number of open connections, counting those whose target
// is connected.
func (b *Bridge) Conns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.links)
}

func (b *Bridge) snapshotLocked() ([]*link, []*context.CancelFunc) {
	links := make([]*link, 0, len(b.links))
	for l := range b.links {
		links = append(links, l)
	}
	cancels := make([]*context.CancelFunc, 0, len(b.dialing))
	for c := range b.dialing {
		cancels = append(cancels, c)
	}
	return links, cancels
}

func (b *Bridge) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off and keep serving.
			select {
			case <-b.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		b.mu.Lock()
		refuse := b.cut || b.closed
		b.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		b.wg.Add(1)
		go b.serve(c)
	}
}

// serve dials the target for client c, then runs one of the connection's
// four goroutines itself.
func (b *Bridge) serve(c net.Conn) {
	defer b.wg.Done()
	s, ok := b.dialTarget()
	if !ok {
		c.Close()
		return
	}
	l := &link{b: b, client: c, server: s, done: make(chan struct{})}
	b.mu.Lock()
	if b.cut || b.closed {
		b.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	b.links[l] = struct{}{}
	b.mu.Unlock()

	depth := b.cfg.queueBytes / b.cfg.bufferSize
	up := &direction{l: l, src: c, dst: s, lim: b.up, count: &b.toTarget, late: &b.lateTo, q: make(chan chunk, depth)}
	down := &direction{l: l, src: s, dst: c, lim: b.down, count: &b.fromTarget, late: &b.lateFrom, q: make(chan chunk, depth)}
	b.wg.Add(3)
	go func() { defer b.wg.Done(); up.read() }()
	go func() { defer b.wg.Done(); up.write() }()
	go func() { defer b.wg.Done(); down.read() }()
	down.write()
}

func (b *Bridge) dialTarget() (net.Conn, bool) {
	// The accept loop has no caller context; Close and Cut cancel the dial
	// through the registered cancel func.
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.dialTimeout)
	defer cancel()
	b.mu.Lock()
	if b.cut || b.closed {
		b.mu.Unlock()
		return nil, false
	}
	b.dialing[&cancel] = struct{}{}
	b.mu.Unlock()
	s, err := b.dial(ctx, "tcp", b.target)
	b.mu.Lock()
	delete(b.dialing, &cancel)
	b.mu.Unlock()
	return s, err == nil
}

// waitResumed blocks while the bridge is paused. It returns false if done
// closes first.
func (b *Bridge) waitResumed(done <-chan struct{}) bool {
	for {
		ch := b.resume.Load()
		if ch == nil {
			return true
		}
		select {
		case <-*ch:
		case <-done:
			return false
		}
	}
}

func (b *Bridge) getBuf() *[]byte  { return b.bufs.Get().(*[]byte) }
func (b *Bridge) putBuf(p *[]byte) { b.bufs.Put(p) }
