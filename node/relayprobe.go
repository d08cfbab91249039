package node

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// probeEvery is how often the agent PINGs the relay its Redis follows.
const probeEvery = 100 * time.Millisecond

// relayProbe PINGs the relay the node's Redis follows and remembers when
// it last answered. A relay that is hung (SIGSTOP, a stuck host) keeps
// its connections open, so the Redis sees master_link_status:up until its
// repl-timeout (60 s by default), and on an idle stream the Redis hears
// nothing from a live relay for up to the master's ping period (10 s)
// either; a PING answered or not within the silence bound tells them
// apart. Any reply counts, an error too (a relay with a password answers
// -NOAUTH). run drives it; set and idle may be called from any goroutine.
type relayProbe struct {
	timeout time.Duration

	mu     sync.Mutex
	addr   string    // host:port of the relay's Redis side; "" for none
	lastOK time.Time // last answer from addr, or when addr was set
}

func newRelayProbe(timeout time.Duration) *relayProbe {
	return &relayProbe{timeout: timeout}
}

// set names the relay to probe; a new one starts with a clean slate.
func (p *relayProbe) set(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if addr != p.addr {
		p.addr, p.lastOK = addr, time.Now()
	}
}

// idle is how long the relay probed has not answered.
func (p *relayProbe) idle() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == "" {
		return 0
	}
	return time.Since(p.lastOK)
}

// run PINGs until ctx ends, on one connection kept open while it works.
func (p *relayProbe) run(ctx context.Context) {
	var conn net.Conn
	var br *bufio.Reader
	var connAddr string
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		if conn != nil && connAddr != addr {
			conn.Close()
			conn = nil
		}
		if addr == "" {
			continue
		}
		if conn == nil {
			d := net.Dialer{Timeout: p.timeout}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				continue
			}
			conn, br, connAddr = c, bufio.NewReader(c), addr
		}
		conn.SetDeadline(time.Now().Add(p.timeout))
		_, err := conn.Write([]byte("PING\r\n"))
		if err == nil {
			_, err = br.ReadString('\n')
		}
		if err != nil {
			conn.Close()
			conn = nil
			continue
		}
		p.mu.Lock()
		if p.addr == addr {
			p.lastOK = time.Now()
		}
		p.mu.Unlock()
	}
}
