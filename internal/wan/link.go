package wan

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is one proxied connection: a client accepted by the bridge and the
// server it dialed.
type link struct {
	b              *Bridge
	client, server net.Conn
	done           chan struct{} // closed by close; ends all four goroutines
	once           sync.Once
	halfDone       atomic.Int32 // directions that ended with a clean EOF
}

// close tears the connection down and forgets it. Safe to call many times
// from any goroutine.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
		l.b.mu.Lock()
		delete(l.b.links, l)
		l.b.mu.Unlock()
	})
}

// chunk is one read waiting in a delay line until due.
type chunk struct {
	buf *[]byte
	n   int
	due time.Time
}

// direction moves bytes from src to dst: read pulls from src, takes tokens
// and queues chunks stamped with their due time; write sends each chunk when
// due. The queue is the delay line, so chunks are delayed in parallel.
type direction struct {
	l        *link
	src, dst net.Conn
	lim      *limiter
	count    *atomic.Int64
	late     *lateHist
	q        chan chunk // closed by read on EOF; drained by write
}

func (d *direction) read() {
	b, done := d.l.b, d.l.done
	maxRead := b.cfg.bufferSize
	for {
		if !b.waitResumed(done) {
			return
		}
		buf := b.getBuf()
		size := maxRead
		if d.lim.rate.Load() > 0 {
			size = min(size, b.cfg.burst)
		}
		n, err := d.src.Read((*buf)[:size])
		if n == 0 {
			b.putBuf(buf)
		} else if !d.forward(buf, n) {
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				close(d.q) // write half-closes dst once the queue drains
			} else {
				d.l.close()
			}
			return
		}
	}
}

// forward queues buf[:n], or drops it while blackholed. It returns false
// when the link closed.
func (d *direction) forward(buf *[]byte, n int) bool {
	b, done := d.l.b, d.l.done
	if !b.waitResumed(done) {
		return false
	}
	if b.blackhole.Load() {
		b.putBuf(buf)
		return true
	}
	if !d.lim.take(n, done) {
		return false
	}
	c := chunk{buf: buf, n: n, due: time.Now().Add(time.Duration(b.latency.Load()))}
	select {
	case d.q <- c:
		return true
	case <-done:
		return false
	}
}

func (d *direction) write() {
	b, done := d.l.b, d.l.done
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-d.q:
		case <-done:
			return
		}
		if !ok {
			d.finish()
			return
		}
		if wait := time.Until(c.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-done:
				return
			}
		}
		if !b.waitResumed(done) {
			return
		}
		if b.blackhole.Load() {
			b.putBuf(c.buf)
			continue
		}
		d.late.record(time.Since(c.due))
		_, err := d.dst.Write((*c.buf)[:c.n])
		b.putBuf(c.buf)
		if err != nil {
			d.l.close()
			return
		}
		d.count.Add(int64(c.n))
	}
}

// finish passes a clean EOF on as a half-close; the connection closes when
// both directions have finished.
func (d *direction) finish() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := d.dst.(closeWriter); !ok || cw.CloseWrite() != nil {
		d.l.close()
		return
	}
	if d.l.halfDone.Add(1) == 2 {
		d.l.close()
	}
}
