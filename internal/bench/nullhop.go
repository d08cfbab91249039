package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// The null chain of the lag phase: as many "null hops" as the relay path
// has relays, each a process of this binary ("arbor bench null-hop") that
// reads one socket and writes another, nothing else: no store, no gRPC, no
// compression. Its replica's lag minus the native replica's, per hop, is
// what a minimal forwarding process costs on this machine (a wake-up, a
// read, a write, the next process's turn on the CPU): the floor under any
// relay hop, measured in the same run as the relays.

// NullHopArgs are the arguments that run a null hop from an arbor binary,
// followed by "--listen <addr> --upstream <addr>".
var NullHopArgs = []string{"bench", "null-hop"}

// nullHopBuffer is the size of a null hop's reads: as large as the relay's
// reads of its master's stream, so a burst is forwarded in as few writes.
const nullHopBuffer = 256 << 10

// NullHop accepts connections on listen and forwards each to upstream, byte
// for byte in both directions, until ctx ends. Every copy is a read into a
// buffer and a write from it, as a relay's is (io.Copy between two TCP
// sockets would splice them in the kernel, which no relay can do).
func NullHop(ctx context.Context, listen, upstream string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("null hop: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("null hop: %w", err)
		}
		wg.Go(func() { forward(ctx, c, upstream) })
	}
}

// forward pipes down to a new connection to upstream until either side
// ends or ctx does; it closes both.
func forward(ctx context.Context, down net.Conn, upstream string) {
	defer down.Close()
	d := net.Dialer{Timeout: dialTimeout}
	up, err := d.DialContext(ctx, "tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	closeBoth := func() {
		down.Close()
		up.Close()
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		pump(down, up) // the stream: upstream to the replica
		closeBoth()
	})
	pump(up, down) // the replica's commands and ACKs
	closeBoth()
}

// pump copies src to dst, one read and one write at a time, until either
// fails.
func pump(dst, src net.Conn) {
	buf := make([]byte, nullHopBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// startNullHop starts a null hop forwarding to upstream (host:port), run
// from the env's helper binary, and waits until a PING through it is
// answered (by whatever is at the end of the chain).
func (e *env) startNullHop(ctx context.Context, name, upstream string) (*server, error) {
	if e.helperBin == "" {
		return nil, errors.New("null hop: no helper binary")
	}
	return e.startServer(ctx, name, e.helperBin, func(host, port string) ([]string, error) {
		a := append([]string(nil), NullHopArgs...)
		return append(a, "--listen", net.JoinHostPort(host, port), "--upstream", upstream), nil
	})
}
