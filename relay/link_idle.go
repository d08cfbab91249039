package relay

import "time"

// UpstreamLink reports whether the link to the upstream is streaming and
// how long ago it last received anything (stream, heartbeat or RDB
// bytes; zero if it never did). A runner that moves the relay to another
// parent reads it to tell a hung parent (a link open but silent) well
// before ReplTimeout ends the session.
func (r *Relay) UpstreamLink() (streaming bool, idle time.Duration) {
	r.link.mu.Lock()
	defer r.link.mu.Unlock()
	if !r.link.lastIO.IsZero() {
		idle = time.Since(r.link.lastIO)
	}
	return r.link.state == "connected", idle
}
