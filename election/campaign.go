package election

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrNotLeader is returned (wrapped) by a leader's write when its leader
// key is gone or was re-created: it was deposed, and a newer epoch may
// exist. The write was not made.
var ErrNotLeader = errors.New("not the leader")

// resignTimeout bounds a Resign after a failed campaign.
const resignTimeout = 2 * time.Second

// Leader is a won election: the right to write the master record and
// history for one epoch, for as long as the session lives. Its methods
// may be called from any goroutine.
type Leader struct {
	ses     *Session
	el      *concurrency.Election
	cluster string
	name    string
	key     string
	epoch   int64
}

// Campaign enters the election of cluster's master under name (a node id)
// and blocks until this session leads it, or ctx ends (its key is then
// withdrawn). The queue is first come, first served: rank before
// campaigning (see Rank).
//
// After etcd says the campaign is won, Campaign checks it (failover-notes
// §3.5; Campaign can return after its lease expired, etcd #11051): a
// linearizable read must show the leader key with the same create
// revision on this session's lease, and the session must be alive.
// Otherwise, and on any error, it resigns and returns the error
// (ErrSessionLost, ErrNotLeader, or etcd's).
func (s *Session) Campaign(ctx context.Context, cluster, name string) (*Leader, error) {
	el := concurrency.NewElection(s.ses, strings.TrimSuffix(CampaignPrefix(cluster), "/"))
	if err := el.Campaign(clientv3.WithRequireLeader(ctx), name); err != nil {
		resign(ctx, el)
		return nil, fmt.Errorf("campaign: %w", err)
	}
	l := &Leader{ses: s, el: el, cluster: cluster, name: name, key: el.Key(), epoch: el.Rev()}
	if err := l.check(ctx); err != nil {
		resign(ctx, el)
		return nil, err
	}
	return l, nil
}

func resign(ctx context.Context, el *concurrency.Election) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resignTimeout)
	defer cancel()
	_ = el.Resign(rctx) // a failed resign leaves the key to the lease's expiry
}

// check verifies the leader key and the session (see Campaign).
func (l *Leader) check(ctx context.Context) error {
	resp, err := l.ses.cli.Get(clientv3.WithRequireLeader(ctx), l.key) // linearizable by default
	if err != nil {
		return fmt.Errorf("check leader key %s: %w", l.key, err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != l.epoch || clientv3.LeaseID(resp.Kvs[0].Lease) != l.ses.id {
		return fmt.Errorf("leader key %s (epoch %d) is gone: %w", l.key, l.epoch, ErrNotLeader)
	}
	if !l.ses.alive() {
		return fmt.Errorf("won the campaign with a dying session: %w", ErrSessionLost)
	}
	return nil
}

// Epoch returns the leader's epoch: its key's create revision.
func (l *Leader) Epoch() int64 { return l.epoch }

// guard is the condition every leader write is made under.
func (l *Leader) guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.epoch)
}

// commit runs ops if the leader key still has the leader's epoch.
func (l *Leader) commit(ctx context.Context, what string, ops ...clientv3.Op) error {
	resp, err := l.ses.cli.Txn(clientv3.WithRequireLeader(ctx)).If(l.guard()).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("write %s at epoch %d: %w", what, l.epoch, ErrNotLeader)
	}
	return nil
}

// PublishMaster writes m as the master record, with m.Epoch set to the
// leader's epoch, and the operations also (such as the topology's master
// key) in one transaction guarded on the epoch. It returns the record
// written.
func (l *Leader) PublishMaster(ctx context.Context, m Master, also ...clientv3.Op) (Master, error) {
	m.Epoch = l.epoch
	if m.At.IsZero() {
		m.At = time.Now()
	}
	ops := append([]clientv3.Op{clientv3.OpPut(MasterKey(l.cluster), string(m.Marshal()))}, also...)
	if err := l.commit(ctx, "master record", ops...); err != nil {
		return Master{}, err
	}
	return m, nil
}

// RecordHistory writes h as the history entry of the leader's epoch
// (h.Epoch is set), guarded on the epoch.
func (l *Leader) RecordHistory(ctx context.Context, h History) error {
	h.Epoch = l.epoch
	if h.At.IsZero() {
		h.At = time.Now()
	}
	return l.commit(ctx, "history entry", clientv3.OpPut(HistoryKey(l.cluster, l.epoch), string(h.Marshal())))
}

// Resign gives the leadership up: the leader key is deleted (guarded on
// the epoch), so the next campaign can win at once. The session stays.
func (l *Leader) Resign(ctx context.Context) error {
	if err := l.el.Resign(clientv3.WithRequireLeader(ctx)); err != nil {
		return fmt.Errorf("resign epoch %d: %w", l.epoch, err)
	}
	return nil
}
