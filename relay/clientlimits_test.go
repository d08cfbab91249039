package relay_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/resp"
)

// clientConn is a raw client of a relay's Redis port.
type clientConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRelay(t *testing.T, tr *testRelay) *clientConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", tr.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &clientConn{Conn: c, br: bufio.NewReader(c)}
}

// send writes raw bytes.
func (c *clientConn) send(t *testing.T, b string) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, b); err != nil {
		t.Fatalf("write to relay: %v", err)
	}
}

// reply reads one reply line, without its CRLF.
func (c *clientConn) reply(t *testing.T) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil {
		t.Fatalf("read reply: got %v after %q", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

// expectClosed reads until the relay closes the connection; bytes that
// still arrive fail the test. A read timeout means the relay kept it open.
func (c *clientConn) expectClosed(t *testing.T) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := c.br.ReadByte()
	switch {
	case err == nil:
		t.Errorf("got byte %q, want the connection closed", b)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Error("connection still open after 20s, want it closed")
	case !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("got %v, want the connection closed (EOF)", err)
	}
}

// TestUnauthenticatedLimits: with a password set, a client that has not
// authenticated may send at most 10 arguments of at most 16 KiB each, as
// Redis allows (networking.c). A larger header gets Redis' protocol error
// at once, before any of the body it announces, and the connection
// closes. After AUTH the client limits are Redis' usual ones.
func TestUnauthenticatedLimits(t *testing.T) {
	master := redistest.Start(t)
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.RedisPassword = "s3cret"
	tr := startRelay(t, cfg)

	refused := []struct {
		name, send, want string
	}{
		{"multibulk count", "*11\r\n", "-ERR Protocol error: unauthenticated multibulk length"},
		{"huge multibulk count", "*1000000\r\n", "-ERR Protocol error: unauthenticated multibulk length"},
		{"bulk length", "*1\r\n$16385\r\n", "-ERR Protocol error: unauthenticated bulk length"},
		{"huge bulk in AUTH", "*2\r\n$4\r\nAUTH\r\n$536870912\r\n", "-ERR Protocol error: unauthenticated bulk length"},
		// 80 KiB, a multiple of the relay's 16 KiB read buffer: the relay
		// has read all of it when it answers, so its close is not a reset
		// that could discard the reply before the test reads it.
		{"inline line", strings.Repeat("x", 80<<10), "-ERR Protocol error: too big inline request"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRelay(t, tr)
			c.send(t, tt.send)
			if got := c.reply(t); got != tt.want {
				t.Errorf("got reply %q, want %q", got, tt.want)
			}
			c.expectClosed(t)
		})
	}

	t.Run("within limits", func(t *testing.T) {
		c := dialRelay(t, tr)
		args := []string{"ECHO", strings.Repeat("a", 16384)}
		for len(args) < 10 {
			args = append(args, "x")
		}
		c.send(t, string(resp.AppendCommand(nil, args...)))
		if got, want := c.reply(t), "-NOAUTH Authentication required."; got != want {
			t.Fatalf("got reply %q, want %q", got, want)
		}
		c.send(t, string(resp.AppendCommand(nil, "AUTH", "s3cret")))
		if got, want := c.reply(t), "+OK"; got != want {
			t.Fatalf("AUTH: got reply %q, want %q", got, want)
		}
		// Authenticated: a bulk over 16 KiB and more than 10 arguments.
		big := strings.Repeat("b", 100<<10)
		c.send(t, string(resp.AppendCommand(nil, "ECHO", big)))
		if got, want := c.reply(t), fmt.Sprintf("$%d", len(big)); got != want {
			t.Fatalf("ECHO after AUTH: got reply %q, want %q", got, want)
		}
		if got := c.reply(t); got != big {
			t.Fatalf("ECHO after AUTH: got %d bytes back, want %d", len(got), len(big))
		}
		c.send(t, string(resp.AppendCommand(nil, "PING", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")))
		if got, want := c.reply(t), "-ERR wrong number of arguments for 'ping' command"; got != want {
			t.Fatalf("12 arguments after AUTH: got reply %q, want %q", got, want)
		}
	})
}

// TestHandshakeTimeout: a connection that sends nothing, or stops in the
// middle of a command, is closed after the handshake timeout; one that
// keeps sending commands stays; a SYNC replica is never cut by it.
func TestHandshakeTimeout(t *testing.T) {
	master := redistest.Start(t)
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.HandshakeTimeout = time.Second
	tr := startRelay(t, cfg)

	t.Run("silent", func(t *testing.T) {
		dialRelay(t, tr).expectClosed(t)
	})
	t.Run("partial command", func(t *testing.T) {
		c := dialRelay(t, tr)
		c.send(t, "*2\r\n$4\r\nECHO\r\n$5\r\nhel")
		c.expectClosed(t)
	})
	t.Run("partial inline", func(t *testing.T) {
		c := dialRelay(t, tr)
		c.send(t, "PIN")
		c.expectClosed(t)
	})
	t.Run("sync replica", func(t *testing.T) {
		redistest.WaitFor(t, syncTimeout, func() error {
			if tr.Info(t, "replication")["master_link_status"] != "up" {
				return errors.New("relay not linked to its master yet")
			}
			return nil
		})
		c := dialRelay(t, tr)
		c.send(t, "SYNC\r\n")
		hdr := c.reply(t)
		var n int
		if _, err := fmt.Sscanf(hdr, "$%d", &n); err != nil {
			t.Fatalf("SYNC: got %q, want an RDB header", hdr)
		}
		if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
			t.Fatalf("read RDB: %v", err)
		}
		// The replica sends nothing, so a handshake deadline left on the
		// link would cut it one timeout after SYNC. See writes keep
		// arriving over it, one every quarter timeout, until it has
		// outlived three timeouts.
		rd := resp.NewReader(c.br)
		tick := time.NewTicker(cfg.HandshakeTimeout / 4)
		defer tick.Stop()
		for i, end := 0, time.Now().Add(3*cfg.HandshakeTimeout); time.Now().Before(end); i++ {
			key := "k" + strconv.Itoa(i)
			if err := master.Client().Set(t.Context(), key, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				args, err := rd.ReadCommand()
				if err != nil {
					t.Fatalf("SYNC link: %v before SET %s arrived", err, key)
				}
				if len(args) > 1 && strings.EqualFold(string(args[0]), "set") && string(args[1]) == key {
					break
				}
			}
			<-tick.C
		}
	})
}

// TestMaxClients: one connection over MaxClients gets Redis' error and is
// closed, and counts in INFO's rejected_connections; freed slots are taken
// again.
func TestMaxClients(t *testing.T) {
	master := redistest.Start(t)
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.MaxClients = 3
	tr := startRelay(t, cfg)

	var held []*clientConn
	for range cfg.MaxClients {
		c := dialRelay(t, tr)
		c.send(t, "PING\r\n")
		if got := c.reply(t); got != "+PONG" {
			t.Fatalf("client %d: got %q, want +PONG", len(held)+1, got)
		}
		held = append(held, c)
	}
	over := dialRelay(t, tr)
	if got, want := over.reply(t), "-ERR max number of clients reached"; got != want {
		t.Errorf("client over the cap: got %q, want %q", got, want)
	}
	over.expectClosed(t)

	for _, c := range held {
		c.Close()
	}
	redistest.WaitFor(t, 20*time.Second, func() error {
		c, err := net.DialTimeout("tcp", tr.Addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		info, err := roundTrip(c, "INFO", "stats")
		if err != nil {
			return fmt.Errorf("INFO once the held slots are freed: %w", err)
		}
		_, rest, _ := strings.Cut(info, "\r\nrejected_connections:")
		n, _, _ := strings.Cut(rest, "\r\n")
		if v, err := strconv.Atoi(n); err != nil || v < 1 {
			return fmt.Errorf("INFO stats: rejected_connections %q, want at least 1", n)
		}
		return nil
	})
}
