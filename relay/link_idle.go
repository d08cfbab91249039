package relay

import "time"

// UpstreamLink reports whether the link to the upstream is up (streaming,
// or receiving a full sync from a parent relay) and how long ago it last
// received anything (stream, heartbeat or RDB bytes; zero if it never
// did). A runner that moves the relay to another parent reads it to tell
// a hung parent (a link open but silent) well before ReplTimeout ends the
// session, and a dead one (a link down). A full sync from a parent relay
// counts as up: it sends its stored snapshot in chunks without pause, so
// idle stays low while it lasts, and a transfer of many seconds is no
// reason to leave the parent at the down bound (topology.LinkJudge). One
// from a Redis does not: the master makes its RDB first and meanwhile
// sends a newline a second, which a silence bound of a second cannot tell
// from a hang.
func (r *Relay) UpstreamLink() (up bool, idle time.Duration) {
	idle, _ = r.link.idle()
	fromRelay := r.currentUpstream().Kind == UpstreamRelay
	r.link.mu.Lock()
	defer r.link.mu.Unlock()
	return r.link.state == "connected" || r.link.state == "sync" && fromRelay, idle
}
