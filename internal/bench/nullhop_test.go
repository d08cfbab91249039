package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestNullHopForwardsBothWays: two null hops in a row carry bytes to an
// upstream and its answers back unchanged, and end when their context
// does, closing the connections they hold. (The upstream is an echo
// server: this tests the forwarder alone; TestRunLagThroughRelayHops runs
// the null chain between real Redis servers.)
func TestNullHopForwardsBothWays(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up := echo.Addr().String()
	errs := make(chan error, 2)
	var last string
	for range 2 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		go func(listen, upstream string) { errs <- NullHop(ctx, listen, upstream) }(addr, up)
		up, last = addr, addr
	}

	// The hops listen once their goroutines run: dial until the last does.
	var c net.Conn
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err = net.DialTimeout("tcp", last, time.Second); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial the last null hop: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	want := bytes.Repeat([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"), 20000) // larger than a hop's buffer
	go c.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back through two null hops: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes changed on the way through two null hops")
	}

	cancel()
	for range 2 {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("NullHop after cancel: %v, want nil", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("NullHop did not return 20s after its context ended")
		}
	}
	// The hops closed their connections: the echo server's ends.
	select {
	case <-echoDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream connection stayed open after the null hops ended")
	}
}
