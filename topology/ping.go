package topology

import (
	"bufio"
	"net"
	"time"
)

// PingTimeout is how long a Mover's caller should wait for a relay it is
// about to choose to answer PING (see PingRelay).
const PingTimeout = 300 * time.Millisecond

// PingRelay reports whether relay id of t answers a PING on its Redis
// side (redis_addr) within timeout. Any reply counts, an error too (a
// relay with a password answers -NOAUTH): the question is whether the
// relay is there and not hung. A Mover checks a parent it chose with it
// (Observation.Reachable), because a relay killed a moment ago keeps a
// healthy-looking status until its lease expires.
func (t *Topology) PingRelay(id string, timeout time.Duration) bool {
	r, ok := t.Relays[id]
	if !ok || r.RedisAddr == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", r.RedisAddr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return false
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	_, err = bufio.NewReader(c).ReadString('\n')
	return err == nil
}
