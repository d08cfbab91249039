package fabric

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
)

// EpochFile is the file in a relay's data directory that keeps the highest
// master epoch the relay has followed, and the etcd cluster it came from.
//
// Keeping it across restarts matters because etcd alone cannot rule out an
// older record: a cluster restored from a backup holds the master record
// of the backup's time, which names a master that has since been deposed.
// A relay that followed a newer epoch refuses that record even after it
// restarted. The floor binds to the etcd cluster ID: a relay pointed at a
// different etcd cluster (whose revisions, hence epochs, started again
// from 1) starts afresh instead of refusing every record forever.
const EpochFile = "master-epoch.json"

// ErrStaleEpoch is returned (wrapped) for a master record whose epoch is
// older than one the relay has already followed.
var ErrStaleEpoch = errors.New("master record of an older epoch")

const (
	masterReadTimeout = 5 * time.Second
	masterMinBackoff  = 100 * time.Millisecond
	masterMaxBackoff  = 2 * time.Second
)

// epochFloor is EpochFile's content.
type epochFloor struct {
	EtcdClusterID uint64 `json:"etcd_cluster_id"`
	Epoch         int64  `json:"epoch"`
}

// masterValue is one state of the master key as read or watched.
type masterValue struct {
	Value         []byte // nil when Present is false
	Present       bool
	EtcdClusterID uint64
	Revision      int64
}

// masterGate decides which master record a relay follows: the record of the
// newest epoch it has seen, never an older one. A record that does not
// parse is refused like a bad topology edit: the last good one stays.
// offer is called by the one watching goroutine; the rest from any.
type masterGate struct {
	path string // EpochFile's path; "" keeps the floor in memory only
	log  *slog.Logger

	mu  sync.Mutex
	cur *election.Master // the record followed; nil before any
	// floor is the highest epoch followed, 0 for none: epochs are etcd
	// revisions, so a floor of 0 refuses nothing.
	floor     int64
	floorFrom uint64        // the etcd cluster ID of the floor read from path; 0 once checked
	refused   string        // why the newest value is not followed; "" when it is
	changed   chan struct{} // size 1: coalesced notifications of cur or refused
	ready     chan struct{} // closed after the first offer
	readyOnce sync.Once
}

// newMasterGate returns a gate whose floor is read from dir's EpochFile
// (dir "" keeps it in memory only).
func newMasterGate(dir string, log *slog.Logger) *masterGate {
	g := &masterGate{log: log, changed: make(chan struct{}, 1), ready: make(chan struct{})}
	if dir == "" {
		return g
	}
	g.path = filepath.Join(dir, EpochFile)
	b, err := os.ReadFile(g.path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("master epoch floor unreadable; starting without one", "file", g.path, "err", err)
		}
		return g
	}
	var f epochFloor
	if err := json.Unmarshal(b, &f); err != nil {
		log.Warn("master epoch floor unreadable; starting without one", "file", g.path, "err", err)
		return g
	}
	g.floor, g.floorFrom = f.Epoch, f.EtcdClusterID
	return g
}

// Changed returns a channel that receives after the record followed or the
// refusal changed (coalesced).
func (g *masterGate) Changed() <-chan struct{} { return g.changed }

// Ready is closed once the master key was read for the first time.
func (g *masterGate) Ready() <-chan struct{} { return g.ready }

// state returns the record followed (nil if none) and why the newest value
// is refused ("" if it is not).
func (g *masterGate) state() (*election.Master, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur == nil {
		return nil, g.refused
	}
	m := *g.cur
	return &m, g.refused
}

// offer evaluates one state of the master key.
func (g *masterGate) offer(v masterValue) {
	defer g.readyOnce.Do(func() { close(g.ready) })
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.floorFrom != 0 {
		// The floor from the data directory holds only for the etcd
		// cluster it was seen in.
		if v.EtcdClusterID != g.floorFrom {
			g.log.Warn("master epoch floor is from another etcd cluster; dropping it",
				"floor", g.floor, "floor_etcd_cluster", fmt.Sprintf("%x", g.floorFrom), "etcd_cluster", fmt.Sprintf("%x", v.EtcdClusterID))
			g.floor = 0
		}
		g.floorFrom = 0
	}
	before, beforeRefused := g.cur, g.refused
	switch m, err := election.ParseMaster(v.Value); {
	case !v.Present:
		if g.cur != nil {
			g.log.Warn("master record deleted; keeping the master of the newest epoch", "epoch", g.cur.Epoch, "node", g.cur.Node)
		}
		return
	case err != nil:
		g.refused = fmt.Sprintf("master record at revision %d refused: %v", v.Revision, err)
	case m.Epoch < g.floor:
		g.refused = fmt.Sprintf("master record at revision %d refused: %v: epoch %d (node %s) < epoch %d already followed",
			v.Revision, ErrStaleEpoch, m.Epoch, m.Node, g.floor)
	default:
		g.cur, g.refused = &m, ""
		if m.Epoch > g.floor {
			g.floor = m.Epoch
			g.persist(v.EtcdClusterID)
		}
	}
	if g.refused != "" && g.refused != beforeRefused {
		g.log.Error("master record refused; keeping the master followed", "err", g.refused)
	}
	if g.cur != before || g.refused != beforeRefused {
		select {
		case g.changed <- struct{}{}:
		default:
		}
	}
}

// persist writes the floor to EpochFile (atomically: a crash leaves the old
// or the new file). Called with g.mu held.
func (g *masterGate) persist(etcdCluster uint64) {
	if g.path == "" {
		return
	}
	b, _ := json.Marshal(epochFloor{EtcdClusterID: etcdCluster, Epoch: g.floor})
	tmp := g.path + ".tmp"
	err := os.WriteFile(tmp, b, 0o644)
	if err == nil {
		err = os.Rename(tmp, g.path)
	}
	if err != nil {
		// The floor still holds in memory; only a restart loses it.
		g.log.Warn("master epoch floor not saved", "file", g.path, "err", err)
	}
}

// watchMaster reads cluster's master record, then watches it from the next
// revision, offering every state to g in order. A watch that ends (etcd
// restarted, the revision compacted, the member cut from its quorum) is
// followed by a new read, so a record put meanwhile is never missed and the
// gate's floor (kept across these sessions) still refuses an older one.
// It returns when ctx ends.
func watchMaster(ctx context.Context, cli *clientv3.Client, cluster string, g *masterGate, log *slog.Logger) {
	key := election.MasterKey(cluster)
	backoff := masterMinBackoff
	var lastErr string
	for ctx.Err() == nil {
		err := watchMasterOnce(ctx, cli, key, g)
		if ctx.Err() != nil {
			return
		}
		if err != nil && err.Error() != lastErr {
			log.Warn("master record watch interrupted; reading it again", "err", err)
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, masterMaxBackoff)
		if err == nil {
			backoff = masterMinBackoff
		}
	}
}

// watchMasterOnce is one read-then-watch session of watchMaster.
func watchMasterOnce(ctx context.Context, cli *clientv3.Client, key string, g *masterGate) error {
	rctx, cancel := context.WithTimeout(ctx, masterReadTimeout)
	resp, err := cli.Get(rctx, key)
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	v := masterValue{EtcdClusterID: resp.Header.ClusterId, Revision: resp.Header.Revision}
	if len(resp.Kvs) > 0 {
		v.Value, v.Present, v.Revision = resp.Kvs[0].Value, true, resp.Kvs[0].ModRevision
	}
	g.offer(v)

	// Require a leader, so a member cut off from its quorum ends the watch
	// instead of silently serving a stale view.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if wr.CompactRevision != 0 {
			return fmt.Errorf("watch %s: compacted at revision %d", key, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			mv := masterValue{EtcdClusterID: wr.Header.ClusterId, Revision: ev.Kv.ModRevision}
			if ev.Type == mvccpb.PUT {
				mv.Value, mv.Present = ev.Kv.Value, true
			}
			g.offer(mv)
		}
	}
	return ctx.Err()
}
