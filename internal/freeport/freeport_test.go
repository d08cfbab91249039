package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestGetNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
		// The port is usable.
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("listen on %d: %v", p, err)
		}
		ln.Close()
	}
}

// TestGetStaysBelowTheEphemeralRange: a port from Get is one no outgoing
// connection can take as its source port once it is released.
func TestGetStaysBelowTheEphemeralRange(t *testing.T) {
	lo, hi, ok := pool()
	if !ok {
		t.Skipf("the ephemeral range starts at %d: no pool under it; Get asks the kernel", hi)
	}
	for range 50 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p >= hi {
			t.Fatalf("port %d outside the pool [%d, %d) below the ephemeral range", p, lo, hi)
		}
	}
}
