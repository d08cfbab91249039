package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// readTimeout bounds one read of the whole topology.
	readTimeout = 5 * time.Second
	// minBackoff and maxBackoff bound the wait between failed attempts to
	// read or watch.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// errCompacted means the watch fell behind etcd's compaction and the
// topology must be read again.
var errCompacted = errors.New("watch revision compacted")

// Rejection describes the newest topology in etcd when it was refused: the
// Watcher keeps the previous good topology in force meanwhile.
type Rejection struct {
	// Revision is the etcd revision of the refused state.
	Revision int64
	// Err says why, usually a *ValidationError naming each problem.
	Err error
	// Since is when this refusal was first seen.
	Since time.Time
}

func (r *Rejection) String() string {
	return fmt.Sprintf("edit at revision %d refused: %v", r.Revision, r.Err)
}

// Watcher follows one cluster's topology in etcd. It reads the whole
// topology, then watches the topology prefix from the next revision; after
// each revision it validates the whole topology again. A topology that
// validates replaces the one in force; one that does not is refused as a
// whole (Rejected says why) and the last good topology stays in force, so a
// bad edit is never half-applied. The watch survives etcd restarts (the
// client resumes it from the last revision it saw) and compaction (the
// Watcher reads everything again).
//
// Run drives the Watcher; Current, Rejected and Changes may be used from
// any goroutine.
type Watcher struct {
	cli     *clientv3.Client
	cluster string
	log     *slog.Logger

	changes chan struct{} // size 1: coalesced change notifications
	ready   chan struct{} // closed after the first evaluation

	mu       sync.Mutex
	current  *Topology  // last good; nil before the first good one
	rev      int64      // revision of current
	rejected *Rejection // nil when the newest state is current
	readyOne sync.Once
}

// NewWatcher returns a Watcher of cluster's topology; call Run. logger may
// be nil (slog.Default()).
func NewWatcher(cli *clientv3.Client, cluster string, logger *slog.Logger) *Watcher {
	if logger == nil {
		logger = slog.Default()
	}
	return &Watcher{
		cli:     cli,
		cluster: cluster,
		log:     logger.With("cluster", cluster),
		changes: make(chan struct{}, 1),
		ready:   make(chan struct{}),
	}
}

// Current returns a copy of the topology in force and its revision, or nil
// and 0 before a good topology was seen.
func (w *Watcher) Current() (*Topology, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current.Clone(), w.rev
}

// Rejected returns why the newest topology in etcd is not in force, or nil
// when it is.
func (w *Watcher) Rejected() *Rejection {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rejected
}

// Changes returns a channel that receives after Current or Rejected
// changed. Notifications coalesce: one receive may stand for several
// changes, so read Current and Rejected after it. It is meant for one
// consumer.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Ready is closed once the Watcher has read the topology for the first
// time (good or refused).
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Run reads and watches the topology until ctx ends, then returns nil.
// etcd errors are logged and retried with backoff.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := minBackoff
	var lastErr string
	for ctx.Err() == nil {
		err := w.session(ctx)
		w.log.Debug("session ended", "err", err)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errCompacted) {
			w.log.Info("topology watch compacted; reading the topology again")
			backoff = minBackoff
			continue
		}
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				w.log.Warn("topology watch interrupted; retrying", "err", err)
				lastErr = msg
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// session reads the whole topology and watches it from the next revision,
// until the watch fails or ctx ends.
func (w *Watcher) session(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	raw, rev, err := loadRaw(rctx, w.cli, w.cluster)
	cancel()
	if err != nil {
		return err
	}
	w.evaluate(raw, rev)

	// Require a leader, so a member cut off from its cluster ends the
	// watch instead of silently serving a stale view.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	prefix := Prefix(w.cluster)
	wch := w.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return errCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) == 0 {
			continue // progress notification
		}
		for _, ev := range resp.Events {
			k := strings.TrimPrefix(string(ev.Kv.Key), prefix)
			switch ev.Type {
			case mvccpb.PUT:
				raw[k] = ev.Kv.Value
			case mvccpb.DELETE:
				delete(raw, k)
			}
		}
		// A watch response holds whole revisions (a transaction's
		// events are never split), so raw is now a state that existed.
		w.evaluate(raw, resp.Header.Revision)
	}
	return ctx.Err()
}

// evaluate validates the topology read at rev and either puts it in force
// or records its rejection.
func (w *Watcher) evaluate(raw map[string][]byte, rev int64) {
	t, err := Parse(raw)
	w.mu.Lock()
	changed := false
	if err == nil {
		if !t.Equal(w.current) {
			w.current = t
			changed = true
			w.log.Info("topology in force", "revision", rev, "sites", len(t.Sites), "relays", len(t.Relays), "nodes", len(t.Nodes), "master", t.Master)
		}
		w.rev = rev
		if w.rejected != nil {
			w.rejected = nil
			changed = true
		}
	} else if w.rejected == nil || w.rejected.Err.Error() != err.Error() {
		w.rejected = &Rejection{Revision: rev, Err: err, Since: time.Now()}
		changed = true
		if w.current != nil {
			w.log.Warn("topology edit refused; the previous topology stays in force", "revision", rev, "in_force", w.rev, "err", err)
		} else {
			w.log.Warn("topology refused; no good topology yet", "revision", rev, "err", err)
		}
	}
	w.mu.Unlock()
	w.readyOne.Do(func() { close(w.ready) })
	if changed {
		select {
		case w.changes <- struct{}{}:
		default:
		}
	}
}
