package relay

import (
	"fmt"
	"strings"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

// AckPolicy says what a root relay (one that follows a Redis master)
// acknowledges to its master with REPLCONF ACK, and so what the master's
// WAIT, min-replicas-to-write and min-replicas-max-lag count.
type AckPolicy int

// Ack policies.
const (
	// AckLocal acks what this relay has durably stored, as --fsync defines
	// it (store.State.Durable).
	AckLocal AckPolicy = iota
	// AckRemote acks only what at least one relay in another site has
	// durably stored (the acks of the relay's subtree), so that WAIT 1 on
	// the master means "survives the loss of the master's whole site". With
	// no relay of another site attached and acking, the master sees this
	// relay ack nothing new: WAIT blocks and min-replicas-to-write counts it
	// as lagging by offset (its ACKs still arrive every second, so it stays
	// connected).
	AckRemote
)

// ParseAckPolicy parses "local" or "remote".
func ParseAckPolicy(s string) (AckPolicy, error) {
	switch strings.ToLower(s) {
	case "local", "":
		return AckLocal, nil
	case "remote":
		return AckRemote, nil
	}
	return 0, fmt.Errorf("ack policy %q: want local or remote", s)
}

func (p AckPolicy) String() string {
	if p == AckRemote {
		return "remote"
	}
	return "local"
}

// upstreamAck returns the offset this relay acknowledges to its upstream
// now: the durable offset, or with AckRemote toward a Redis master, the
// furthest offset a relay of another site acked (never past what this relay
// holds).
func (r *Relay) upstreamAck(st store.State, toRedis bool) int64 {
	if r.ackPolicy != AckRemote || !toRedis {
		return st.Durable
	}
	var best int64
	for _, a := range r.subtreeAcks() {
		if a.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY && a.GetSite() != r.cfg.Site {
			best = max(best, a.GetAckedOffset())
		}
	}
	return min(best, st.End)
}

// noteChildAck wakes the upstream ack loop after a child's ack: with
// AckRemote it may move what this relay acks, and a relay below the root
// passes its subtree's acks up at once rather than on its next tick.
func (r *Relay) noteChildAck() {
	select {
	case r.childAcked <- struct{}{}:
	default:
	}
}
