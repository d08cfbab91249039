package topology

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// RelayStatusWatcher keeps the live relay statuses of a cluster (those
// whose lease is present), read then watched. Run drives it; Current and
// Changes may be used from any goroutine.
type RelayStatusWatcher struct {
	cli     *clientv3.Client
	prefix  string
	changes chan struct{} // size 1: coalesced

	mu      sync.Mutex
	cur     map[string]*arborv1.RelayStatus
	updated map[string]time.Time // when each value was last read or seen written
	ready   bool                 // a read succeeded at least once
}

// NewRelayStatusWatcher returns a watcher of cluster's relay statuses;
// call Run.
func NewRelayStatusWatcher(cli *clientv3.Client, cluster string) *RelayStatusWatcher {
	return &RelayStatusWatcher{
		cli:     cli,
		prefix:  StatusPrefix(cluster) + KindRelay + "/",
		changes: make(chan struct{}, 1),
	}
}

// Changes receives (coalesced) after the statuses changed.
func (w *RelayStatusWatcher) Changes() <-chan struct{} { return w.changes }

// Current returns the live statuses by relay id (a shallow copy of the
// map; the values are not to be modified), and whether they were read
// yet. A value that does not decode is left out.
func (w *RelayStatusWatcher) Current() (map[string]*arborv1.RelayStatus, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]*arborv1.RelayStatus, len(w.cur))
	for k, v := range w.cur {
		out[k] = v
	}
	return out, w.ready
}

// Updated returns, by relay id, when each live status was last seen
// written (or read). A relay that is hung keeps its status until its lease
// expires, but writes nothing: a status written after a time is a sign
// of life after it.
func (w *RelayStatusWatcher) Updated() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]time.Time, len(w.updated))
	for k, v := range w.updated {
		out[k] = v
	}
	return out
}

// Run reads and watches until ctx ends; an interrupted watch is followed
// by a new read, so a lease that expired meanwhile is not missed.
func (w *RelayStatusWatcher) Run(ctx context.Context) {
	backoff := minBackoff
	for ctx.Err() == nil {
		err := w.once(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if err != nil {
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = minBackoff
		}
	}
}

func (w *RelayStatusWatcher) once(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	resp, err := w.cli.Get(rctx, w.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", w.prefix, err)
	}
	cur := map[string]*arborv1.RelayStatus{}
	updated := map[string]time.Time{}
	now := time.Now()
	for _, kv := range resp.Kvs {
		if st, err := DecodeRelayStatus(kv.Value); err == nil {
			id := strings.TrimPrefix(string(kv.Key), w.prefix)
			cur[id] = st
			// A value read again after a broken watch may be old: keep
			// the time it was last seen written if it is the same one.
			if old, ok := w.cur[id]; ok && proto.Equal(old, st) && !w.updated[id].IsZero() {
				updated[id] = w.updated[id]
			} else {
				updated[id] = now
			}
		}
	}
	w.mu.Lock()
	w.cur, w.updated, w.ready = cur, updated, true
	w.mu.Unlock()
	w.notify()

	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range w.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("watch %s: %w", w.prefix, errCompacted)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", w.prefix, err)
		}
		now := time.Now()
		w.mu.Lock()
		next := make(map[string]*arborv1.RelayStatus, len(w.cur))
		for k, v := range w.cur {
			next[k] = v
		}
		for _, ev := range wr.Events {
			id := strings.TrimPrefix(string(ev.Kv.Key), w.prefix)
			if ev.Type == mvccpb.DELETE {
				delete(next, id)
				delete(w.updated, id)
				continue
			}
			if st, err := DecodeRelayStatus(ev.Kv.Value); err == nil {
				next[id] = st
				w.updated[id] = now
			} else {
				delete(next, id)
				delete(w.updated, id)
			}
		}
		w.cur = next
		w.mu.Unlock()
		w.notify()
	}
	return ctx.Err()
}

func (w *RelayStatusWatcher) notify() {
	select {
	case w.changes <- struct{}{}:
	default:
	}
}
