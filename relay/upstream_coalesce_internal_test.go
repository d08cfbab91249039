package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (near, far net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	far, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { far.Close() })
	near, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { near.Close() })
	return near, far
}

func rcvLowat(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// TestCoalescerMark: bytes set the socket's low-water mark and shorten the
// read deadline to the wait; a wait that ends (a read deadline) clears the
// mark and restores the link's own deadline, and is not taken for a link
// failure; other errors are.
func TestCoalescerMark(t *testing.T) {
	near, _ := tcpPair(t)
	const wait, timeout = 20 * time.Millisecond, time.Hour
	c := newCoalescer(near, wait)
	if c == nil {
		t.Fatal("no coalescer on a TCP connection")
	}
	now := time.Now()
	// An accepted socket may report 0, which the kernel reads as 1.
	if got := rcvLowat(t, near); got > 1 {
		t.Fatalf("SO_RCVLOWAT before any byte: %d, want 1 or less", got)
	}
	if got := c.deadline(now, timeout); !got.Equal(now.Add(timeout)) {
		t.Errorf("deadline before any byte: %v, want now+timeout", got.Sub(now))
	}
	c.arrived()
	if got := rcvLowat(t, near); got != upstreamCoalesceMark {
		t.Fatalf("SO_RCVLOWAT after bytes: %d, want %d", got, upstreamCoalesceMark)
	}
	if got := c.deadline(now, timeout); !got.Equal(now.Add(wait)) {
		t.Errorf("deadline while coalescing: %v, want now+%v", got.Sub(now), wait)
	}
	if c.waited(io.EOF) {
		t.Error("EOF taken for the end of a wait")
	}
	near.SetReadDeadline(c.deadline(time.Now(), timeout))
	_, err := near.Read(make([]byte, 1))
	if !c.waited(err) {
		t.Fatalf("read error %v not taken for the end of a wait", err)
	}
	if got := rcvLowat(t, near); got != 1 {
		t.Errorf("SO_RCVLOWAT after the wait: %d, want 1", got)
	}
	if got := c.deadline(now, timeout); !got.Equal(now.Add(timeout)) {
		t.Errorf("deadline after the wait: %v, want now+timeout", got.Sub(now))
	}
	if c.waited(os.ErrDeadlineExceeded) {
		t.Error("a link timeout with the mark off taken for the end of a wait")
	}

	var off *coalescer = newCoalescer(near, 0)
	if off != nil {
		t.Fatal("a coalescer with a wait of 0")
	}
	off.arrived()
	if got := off.deadline(now, timeout); !got.Equal(now.Add(timeout)) || off.waited(os.ErrDeadlineExceeded) {
		t.Error("a nil coalescer does not read eagerly")
	}
}

// TestCoalescerDeliversUnderTheMark: bytes far under the mark, sent one
// small write at a time with pauses longer than the wait, all come through
// a read loop like the stream's, none held back until more come.
func TestCoalescerDeliversUnderTheMark(t *testing.T) {
	near, far := tcpPair(t)
	c := newCoalescer(near, 5*time.Millisecond)
	const writes = 20
	go func() {
		for range writes {
			if _, err := far.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	got := 0
	buf := make([]byte, 64<<10)
	for got < writes {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes under the mark arrived in 30s", got, writes)
		}
		near.SetReadDeadline(c.deadline(time.Now(), time.Until(deadline)))
		n, err := near.Read(buf)
		got += n
		if n > 0 {
			c.arrived()
		}
		if err != nil && !c.waited(err) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
	}
}
