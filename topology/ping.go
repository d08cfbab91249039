package topology

import (
	"bufio"
	"context"
	"net"
	"time"
)

// PingTimeout is how long a Mover's caller should wait for a relay it is
// about to choose to answer PING (see PingRelay).
const PingTimeout = 300 * time.Millisecond

// Ping sends PING to the server of the Redis protocol at addr (a Redis,
// or a relay's Redis side) and waits for the reply until ctx ends. Any
// reply counts, an error too (a server with a password answers -NOAUTH):
// the question is whether the server is there and not hung.
func Ping(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// The end of ctx ends a write or read that hangs (a SIGSTOPped
	// server accepts the connection and never answers).
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err
}

// PingRelay reports whether relay id of t answers a PING on its Redis
// side (redis_addr) within timeout (see Ping). A Mover checks a parent it
// chose with it (Observation.Reachable), because a relay killed a moment
// ago keeps a healthy-looking status until its lease expires.
func (t *Topology) PingRelay(id string, timeout time.Duration) bool {
	r, ok := t.Relays[id]
	if !ok || r.RedisAddr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Ping(ctx, r.RedisAddr) == nil
}
