package topology

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// TestPing: any reply counts (-NOAUTH too); a server that accepts and
// never answers (a SIGSTOPped relay) fails when ctx ends, and so does
// nothing listening.
func TestPing(t *testing.T) {
	serve := func(reply string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var conns []net.Conn
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				if reply != "" {
					bufio.NewReader(c).ReadString('\n')
					c.Write([]byte(reply))
				}
			}
		})
		t.Cleanup(func() {
			ln.Close()
			wg.Wait()
			for _, c := range conns {
				c.Close()
			}
		})
		return ln.Addr().String()
	}
	ping := func(addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return Ping(ctx, addr)
	}
	if err := ping(serve("+PONG\r\n")); err != nil {
		t.Errorf("PONG: %v", err)
	}
	if err := ping(serve("-NOAUTH Authentication required.\r\n")); err != nil {
		t.Errorf("-NOAUTH: %v", err)
	}
	if err := ping(serve("")); err == nil {
		t.Error("a server that never answers: no error")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := ping(addr); err == nil {
		t.Error("nothing listening: no error")
	}
}
