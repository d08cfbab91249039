package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/topology"
)

const (
	// historyLen bounds the offset samples kept per node.
	historyLen = 512
	// historyAge bounds how old a kept sample may be.
	historyAge = 10 * time.Minute
)

// sample is an offset a node published and when the agent saw it.
type sample struct {
	at     time.Time
	offset int64
}

// offsets follows the offsets other agents publish in their status, so an
// agent can tell how far its node trails the master's (in bytes, and in
// time: how long ago the master was where this node is now). The time lag
// is as fine as the master's status interval.
type offsets struct {
	cli     *clientv3.Client
	cluster string
	log     *slog.Logger

	mu      sync.Mutex
	history map[string][]sample // by node id, oldest first; guarded by mu
	replid  map[string]string   // by node id; guarded by mu
}

func newOffsets(cli *clientv3.Client, cluster string, log *slog.Logger) *offsets {
	return &offsets{cli: cli, cluster: cluster, log: log, history: map[string][]sample{}, replid: map[string]string{}}
}

// lag returns how far offset trails node id's latest published offset, in
// bytes and time, and whether id's offset is known.
func (o *offsets) lag(id string, offset int64, now time.Time) (bytes int64, lag time.Duration, known bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.history[id]
	if len(h) == 0 {
		return 0, 0, false
	}
	latest := h[len(h)-1].offset
	if offset >= latest {
		return 0, 0, true
	}
	// The first sample past offset: the master was beyond offset then.
	for _, s := range h {
		if s.offset > offset {
			return latest - offset, now.Sub(s.at), true
		}
	}
	return latest - offset, 0, true
}

// record notes a status value of node id.
func (o *offsets) record(id string, value []byte, now time.Time) {
	st, err := topology.DecodeNodeStatus(value)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	h := o.history[id]
	if o.replid[id] != st.GetReplid() {
		h = h[:0] // a new history: offsets of another replid do not compare
		o.replid[id] = st.GetReplid()
	}
	if len(h) > 0 && h[len(h)-1].offset == st.GetOffset() {
		return
	}
	h = append(h, sample{at: now, offset: st.GetOffset()})
	for len(h) > historyLen || (len(h) > 1 && now.Sub(h[0].at) > historyAge) {
		h = h[1:]
	}
	o.history[id] = h
}

// forget drops node id (its status expired).
func (o *offsets) forget(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.history, id)
	delete(o.replid, id)
}

// run reads and watches the node statuses until ctx ends.
func (o *offsets) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := o.session(ctx)
		if ctx.Err() != nil {
			return
		}
		o.log.Debug("status watch interrupted; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (o *offsets) session(ctx context.Context) error {
	prefix := topology.StatusKey(o.cluster, topology.KindNode, "")
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	resp, err := o.cli.Get(rctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, kv := range resp.Kvs {
		o.record(strings.TrimPrefix(string(kv.Key), prefix), kv.Value, now)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range o.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if wr.CompactRevision != 0 {
			return errors.New("compacted")
		}
		if err := wr.Err(); err != nil {
			return err
		}
		now := time.Now()
		for _, ev := range wr.Events {
			id := strings.TrimPrefix(string(ev.Kv.Key), prefix)
			switch ev.Type {
			case mvccpb.PUT:
				o.record(id, ev.Kv.Value, now)
			case mvccpb.DELETE:
				o.forget(id)
			}
		}
	}
	return ctx.Err()
}
