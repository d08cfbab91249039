package relay

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// upstreamCoalesceMark is the low-water mark (SO_RCVLOWAT) of the master's
// socket while the relay coalesces its reads: the kernel wakes the relay
// only once this much is queued.
const upstreamCoalesceMark = 32 << 10

// maxUpstreamCoalesce bounds Config.UpstreamCoalesce: the wait is lag
// added to every hop below, and a master's REPLCONF GETACK waits as long
// for its answer.
const maxUpstreamCoalesce = 100 * time.Millisecond

// coalescer lets a Redis master's stream gather in the relay's socket
// before the relay reads it (Config.UpstreamCoalesce).
//
// Why: a relay takes a fraction of a replica's CPU per byte, so between two
// writes of the master it is asleep, and each write has to wake it. When the
// relay shares the master's host (loopback), the kernel delivers the bytes
// to the relay's socket, and wakes the relay (an interprocessor interrupt
// when it sleeps on another CPU), in the master's own write syscall: the
// master pays for the relay's wakeups. With the mark set, the kernel wakes
// the relay once per upstreamCoalesceMark bytes instead of once per write.
//
// Bytes under the mark never wake anyone, so each read waits at most the
// configured wait (its deadline); a read that times out turns the mark off,
// so the next read takes what is queued at once and, on a link gone quiet,
// parks until the next byte, which then arrives with no added lag (no
// timer runs while the link is idle). Any byte turns the mark on again.
// Go's poller sleeps in whole milliseconds, so a wait under 1 ms lasts up
// to about 1 ms while the relay is otherwise idle.
//
// A nil *coalescer reads eagerly: the wait is 0, or the connection has no
// socket of its own to set the mark on.
type coalescer struct {
	rc   syscall.RawConn
	wait time.Duration
	on   bool // the mark is set: reads wait at most wait
}

func newCoalescer(conn net.Conn, wait time.Duration) *coalescer {
	sc, ok := conn.(syscall.Conn)
	if wait <= 0 || !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &coalescer{rc: rc, wait: wait}
}

// deadline is the deadline of the next read: now plus the wait while the
// mark is set, now plus timeout (the link's silence bound) otherwise.
func (c *coalescer) deadline(now time.Time, timeout time.Duration) time.Time {
	if c != nil && c.on {
		return now.Add(c.wait)
	}
	return now.Add(timeout)
}

// arrived records that a read returned bytes: the stream flows, so the
// mark goes on. If the socket refuses it, reads stay eager.
func (c *coalescer) arrived() {
	if c == nil || c.on {
		return
	}
	c.on = c.setMark(upstreamCoalesceMark)
}

// waited reports whether err is the end of a coalescing wait rather than
// a failure of the link. It then turns the mark off, so that the next read
// takes the bytes under the mark at once, or parks until the next byte
// comes. (If the socket refuses, the mark stays on and reads go on
// waiting at most the wait each: slower, never stalled.)
func (c *coalescer) waited(err error) bool {
	if c == nil || !c.on || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	c.on = !c.setMark(1)
	return true
}

func (c *coalescer) setMark(n int) bool {
	var serr error
	if err := c.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	}); err != nil {
		return false
	}
	return serr == nil
}
