package relay

import (
	"fmt"
	"slices"
	"sync"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// tree is the relay's place in the relay tree: the child relays attached
// over Sync and the relays above it. One lock guards both, since the cycle
// checks read one as they change the other (registerChild, setChain).
type tree struct {
	mu       sync.Mutex
	children []*childLink // guarded by mu: child relays attached over Sync
	chain    []string     // guarded by mu: relays above this one, parent first
}

// descendants returns this relay's id and every relay below it.
func (r *Relay) descendants() []string {
	ids := []string{r.cfg.ID}
	for _, a := range r.subtreeAcks() {
		if a.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY && !slices.Contains(ids, a.GetId()) {
			ids = append(ids, a.GetId())
		}
	}
	return ids
}

// setChain records the relays above this one (the parent first) and
// refuses a chain that contains this relay or a relay below it. The check
// and the record are one hold of r.tree.mu, the lock under which a parent
// registers its children (registerChild): a parent registers a child
// before it tells it its chain, so of two relays subscribing to each other
// at once, at least one sees the other among its children here.
func (r *Relay) setChain(chain []string) error {
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	if slices.Contains(chain, r.cfg.ID) {
		return fmt.Errorf("CYCLE: this relay (%s) is upstream of its parent (chain %v); refusing to follow it: %w", r.cfg.ID, chain, ErrCycle)
	}
	for _, c := range r.tree.children {
		below := []string{c.id}
		for _, a := range c.getSubtree() {
			if a.GetKind() == arborv1.ChildKind_CHILD_KIND_RELAY {
				below = append(below, a.GetId())
			}
		}
		for _, id := range below {
			if slices.Contains(chain, id) {
				return fmt.Errorf("CYCLE: relay %s replicates through this relay (%s) and is in its parent's chain %v; refusing to follow it: %w", id, r.cfg.ID, chain, ErrCycle)
			}
		}
	}
	r.tree.chain = slices.Clone(chain)
	return nil
}

// ancestors returns the relays above this one, the parent first.
func (r *Relay) ancestors() []string {
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	return slices.Clone(r.tree.chain)
}

// chainForChildren is what a child is told of its ancestry.
func (r *Relay) chainForChildren() []string {
	return append([]string{r.cfg.ID}, r.ancestors()...)
}

// checkSubscribe refuses malformed subscriptions, cycles, and every child
// once the relay no longer follows its upstream.
func (r *Relay) checkSubscribe(sub *arborv1.Subscribe) error {
	id := sub.GetRelayId()
	switch {
	case id == "":
		return fmt.Errorf("subscribe: relay_id is required: %w", ErrProtocol)
	case sub.GetOffset() < 0:
		return fmt.Errorf("subscribe: offset %d is negative: %w", sub.GetOffset(), ErrProtocol)
	case !validReplid(sub.GetReplid()):
		return fmt.Errorf("subscribe: replid %q is neither empty, \"?\" nor 40 hex digits: %w", sub.GetReplid(), ErrProtocol)
	}
	if r.upstreamLost.Load() {
		return fmt.Errorf("relay %s no longer follows its upstream: %w", r.cfg.ID, ErrUpstreamLost)
	}
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	return r.cycleLocked(sub)
}

// cycleLocked refuses a subscriber that would close a cycle: the relay
// itself, a relay above this one, or one this relay replicates through.
// r.tree.mu must be held; registerChild checks again under the same hold as it
// registers the link, and a child checks its new chain against its own
// children under its lock (setChain), so two relays subscribing to each
// other at the same moment cannot both be established.
func (r *Relay) cycleLocked(sub *arborv1.Subscribe) error {
	id := sub.GetRelayId()
	var msg string
	switch {
	case id == r.cfg.ID:
		msg = fmt.Sprintf("relay %s cannot follow itself", id)
	case slices.Contains(r.tree.chain, id):
		msg = fmt.Sprintf("relay %s is upstream of %s (chain %v); it cannot follow it", id, r.cfg.ID, r.tree.chain)
	case slices.Contains(sub.GetDownstreamRelayIds(), r.cfg.ID):
		msg = fmt.Sprintf("%s replicates through %s; %s cannot follow its own descendant", r.cfg.ID, id, id)
	default:
		return nil
	}
	return fmt.Errorf("%s: %w", msg, ErrCycle)
}

func validReplid(s string) bool {
	if s == "" || s == "?" {
		return true
	}
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// registerChild registers c unless sub would close a cycle (checked under
// the same hold of r.tree.mu, before the child is told its chain); an older link
// of the same relay (left half-open by a cut, say) is ended, since the
// child has moved on to c.
func (r *Relay) registerChild(c *childLink, sub *arborv1.Subscribe) error {
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	if err := r.cycleLocked(sub); err != nil {
		return err
	}
	for _, o := range r.tree.children {
		if o.id == c.id {
			o.cancel(ErrReplaced)
		}
	}
	r.tree.children = append(r.tree.children, c)
	return nil
}

func (r *Relay) removeChild(c *childLink) {
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	r.tree.children = slices.DeleteFunc(r.tree.children, func(o *childLink) bool { return o == c })
}

// CutChild ends the Sync link of child relay id, if it is attached, with
// err as what the child is told: err should wrap one of the Sync
// contract's errors, such as ErrTopologyChanged when the topology moved
// the child to another parent (ErrTopologyChanged alone if it wraps none).
// It reports whether a link was cut.
func (r *Relay) CutChild(id string, err error) bool {
	if reason, _ := reasonOf(err); reason == arborv1.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED {
		err = fmt.Errorf("%w: %w", err, ErrTopologyChanged)
	}
	cut := false
	for _, c := range r.childList() {
		if c.id == id {
			c.cancel(err)
			cut = true
		}
	}
	return cut
}

// cutChildren ends every child relay's link with err.
func (r *Relay) cutChildren(err error) {
	for _, c := range r.childList() {
		c.cancel(err)
	}
}

func (r *Relay) childList() []*childLink {
	r.tree.mu.Lock()
	defer r.tree.mu.Unlock()
	return slices.Clone(r.tree.children)
}
