package wan

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary run as a helper process instead of the
// tests; the namespace tests start it inside a site.
const helperEnv = "ARBOR_WAN_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "sink" {
		if err := runSinkHelper(os.Getenv("ARBOR_WAN_LISTEN")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runSinkHelper listens on addr, prints the bound address, and answers each
// connection with "<bytes> <sha256>\n" of everything it read. It returns
// when its stdin closes.
func runSinkHelper(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		go func() {
			defer c.Close()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
		}()
	}
}

// checkFor polls f every sleep until it returns nil, and fails the test
// with f's last error after total.
func checkFor(t testing.TB, total, sleep time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(sleep)
	}
	t.Fatalf("after %v: %v", total, err)
}

// server is a loopback TCP server for tests; handle runs once per
// connection. Close waits for every handler.
type server struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startServer(t testing.TB, handle func(net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *server) Addr() string { return s.ln.Addr().String() }

func (s *server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo copies a connection back to itself and passes the EOF on.
func echo(c net.Conn) {
	io.Copy(c, c)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}

// echoTransfer sends payload through addr to an echo server, reads the echo
// until EOF and returns its SHA-256 and the time taken.
func echoTransfer(addr string, payload []byte) ([32]byte, time.Duration, error) {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return [32]byte{}, 0, err
	}
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	_, rerr := io.Copy(h, c)
	if err := errors.Join(<-werr, rerr); err != nil {
		return [32]byte{}, 0, err
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum, time.Since(start), nil
}

// readLine reads one line from c within d.
func readLine(c net.Conn, d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	return bufio.NewReader(c).ReadString('\n')
}
