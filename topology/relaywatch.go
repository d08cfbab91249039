package topology

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RelayUpdate is what the topology in force says about one relay.
type RelayUpdate struct {
	// Found is false when the topology in force has no such relay (or no
	// good topology was seen yet); the relay should then keep what it has.
	Found bool
	// Spec is the relay's spec.
	Spec RelaySpec
	// Upstream is where the relay should replicate from:
	// redis://host:port of the master node (no credentials: add the
	// relay's own), arbor://host:port of the parent relay's gRPC server,
	// or the redis:// URL the spec names. Empty when !Found.
	Upstream string
	// Revision is the etcd revision of the topology in force.
	Revision int64
	// Rejected is set while the newest topology in etcd is refused (the
	// topology in force is then older than the newest edit): for logs and
	// the relay's Status.
	Rejected *Rejection
	// SnapshotSources are the Redis addresses the relay may fetch a
	// fresher snapshot from (Topology.SnapshotSources).
	SnapshotSources []string
}

// WatchRelay follows cluster's topology (with a Watcher) and calls onChange
// with relay id's update whenever it changes: its spec, its resolved
// upstream, or the rejection of an edit (an edit of other keys that leaves
// all three as they were makes no call). The first call comes once the
// topology was read. onChange runs on WatchRelay's goroutine, one call at a
// time; it should not block for long. WatchRelay returns nil when ctx ends,
// after its goroutines ended.
func WatchRelay(ctx context.Context, cli *clientv3.Client, cluster, id string, logger *slog.Logger, onChange func(RelayUpdate)) error {
	w := NewWatcher(cli, cluster, logger)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Run(ctx)
	}()
	defer wg.Wait()
	defer cancel()

	select {
	case <-w.Ready():
	case <-ctx.Done():
		return nil
	}
	var last RelayUpdate
	first := true
	for {
		u := relayUpdate(w, id)
		if first || !sameRelayUpdate(u, last) {
			onChange(u)
			last, first = u, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.Changes():
		}
	}
}

// relayUpdate builds relay id's update from the Watcher's state.
func relayUpdate(w *Watcher, id string) RelayUpdate {
	t, rev := w.Current()
	u := RelayUpdate{Revision: rev, Rejected: w.Rejected()}
	if t == nil {
		return u
	}
	spec, ok := t.Relays[id]
	if !ok {
		return u
	}
	up, err := t.RelayUpstream(id)
	if err != nil {
		return u // cannot happen in a valid topology
	}
	u.Found, u.Spec, u.Upstream = true, spec, up
	u.SnapshotSources = t.SnapshotSources(id)
	return u
}

// sameRelayUpdate compares two updates but for their revision.
func sameRelayUpdate(a, b RelayUpdate) bool {
	return a.Found == b.Found && a.Spec == b.Spec && a.Upstream == b.Upstream &&
		a.Rejected == b.Rejected && slices.Equal(a.SnapshotSources, b.SnapshotSources)
}
