// Package freeport picks loopback TCP ports for processes that will listen
// on them a moment later (test servers, benchmark and demo processes).
//
// Ports come from just below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), not from a listen on port 0: a port the
// kernel hands out for port 0 is free only until an outgoing connection
// takes it as its source port, and a server restarted on its old port (a
// relay or a redis-server brought back in a test) then failed with
// "address already in use" for as long as that connection lived. Below
// the ephemeral range only a listener can hold a port, and Get checks
// that none does.
//
// Each process walks the range from its own starting point (from its pid)
// so concurrent test binaries rarely meet, and Get never returns a port it
// returned before in this process.
package freeport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// poolSize is how many ports below the ephemeral range the pool spans.
const poolSize = 16384

var (
	mu     sync.Mutex
	handed = map[int]bool{}
	next   int // the next port of the pool to try; 0 before the first Get
)

// Get returns a loopback TCP port nothing listens on, never the same twice
// in one process.
func Get() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	lo, hi, ok := pool()
	if !ok {
		return fromKernel()
	}
	if next == 0 {
		next = lo + (os.Getpid()*7919)%(hi-lo)
	}
	for range hi - lo {
		port := next
		next++
		if next >= hi {
			next = lo
		}
		if handed[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		ln.Close()
		handed[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("find a free port: none free in %d-%d", lo, hi-1)
}

// pool is the range of ports [lo, hi) below the ephemeral range; false if
// the ephemeral range leaves too little room under it.
func pool() (lo, hi int, ok bool) {
	hi = 32768 // Linux's default start of the ephemeral range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				hi = v
			}
		}
	}
	lo = max(hi-poolSize, 10000)
	return lo, hi, hi-lo >= 4096
}

// fromKernel picks a port the kernel offers for port 0: the fallback when
// the ephemeral range starts too low to leave a pool under it.
func fromKernel() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handed[port] {
			handed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free port: every port offered was handed out already")
}
