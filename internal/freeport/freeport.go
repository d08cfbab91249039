// Package freeport picks loopback TCP ports for processes that will listen
// on them a moment later (test servers, benchmark and demo processes).
//
// A port is free when picked, but the kernel may hand the same port out
// again as soon as it is released, so two picks in a row (two servers
// configured before either listens) can collide. Get never returns a port
// it returned before in this process.
package freeport

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Get returns a loopback TCP port nothing listened on when it was picked
// and that Get has not returned before in this process.
func Get() (int, error) {
	mu.Lock()
	defer mu.Unlock()
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
