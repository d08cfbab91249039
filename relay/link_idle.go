package relay

import "time"

// UpstreamLink reports whether the link to the upstream is streaming and
// how long ago it last received anything (stream, heartbeat or RDB
// bytes; zero if it never did). A runner that moves the relay to another
// parent reads it to tell a hung parent (a link open but silent) well
// before ReplTimeout ends the session.
func (r *Relay) UpstreamLink() (streaming bool, idle time.Duration) {
	idle, _ = r.link.idle()
	r.link.mu.Lock()
	defer r.link.mu.Unlock()
	return r.link.state == "connected", idle
}
