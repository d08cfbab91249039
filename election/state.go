package election

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is what etcd says of a cluster's election, read at one revision.
type State struct {
	// Revision is the etcd revision read at.
	Revision int64
	// Leader is the name (node id) the oldest campaign key holds, and
	// LeaderEpoch its create revision; "" and 0 when nobody leads.
	Leader      string
	LeaderEpoch int64
	// Master is the master record; nil when none was ever written.
	Master *Master
	// BadRecord is set when a record exists but does not parse.
	BadRecord error
	// Switchover is the pending switchover request, nil if none.
	Switchover *Switchover
}

// Live reports whether the master record's leader still holds the
// election: the leader key of the record's epoch exists.
func (s State) Live() bool {
	return s.Master != nil && s.LeaderEpoch == s.Master.Epoch && s.Leader == s.Master.Node
}

// ReadState reads the leader key and the master record in one
// transaction (so at one revision).
func ReadState(ctx context.Context, cli *clientv3.Client, cluster string) (State, error) {
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(CampaignPrefix(cluster), clientv3.WithFirstCreate()...),
		clientv3.OpGet(MasterKey(cluster)),
		clientv3.OpGet(SwitchoverKey(cluster)),
	).Commit()
	if err != nil {
		return State{}, fmt.Errorf("read election state: %w", err)
	}
	st := State{Revision: resp.Header.Revision}
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
		st.Leader, st.LeaderEpoch = string(kvs[0].Value), kvs[0].CreateRevision
	}
	if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
		m, err := ParseMaster(kvs[0].Value)
		if err != nil {
			st.BadRecord = err
		} else {
			st.Master = &m
		}
	}
	if kvs := resp.Responses[2].GetResponseRange().GetKvs(); len(kvs) > 0 {
		var sw Switchover
		if json.Unmarshal(kvs[0].Value, &sw) == nil {
			st.Switchover = &sw
		}
	}
	return st, nil
}

// Observe sends the election state of cluster whenever the leader or the
// record may have changed (and once at the start), until ctx ends; then it
// closes the channel. A slow reader gets only the newest state. etcd
// errors are retried (logged at debug level); the channel stays open.
func Observe(ctx context.Context, cli *clientv3.Client, cluster string, log *slog.Logger) <-chan State {
	if log == nil {
		log = slog.Default()
	}
	out := make(chan State, 1)
	go func() {
		defer close(out)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			err := observeOnce(ctx, cli, cluster, out)
			if ctx.Err() != nil {
				return
			}
			log.Debug("election watch interrupted; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}()
	return out
}

// send replaces any unread state in out with st.
func send(out chan State, st State) {
	select {
	case <-out:
	default:
	}
	out <- st // the only sender; the slot is free now
}

func observeOnce(ctx context.Context, cli *clientv3.Client, cluster string, out chan State) error {
	rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
	st, err := ReadState(rctx, cli, cluster)
	cancel()
	if err != nil {
		return err
	}
	send(out, st)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	prefix := Prefix(cluster)
	for wr := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(st.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err
		}
		changed := false
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			changed = changed || k == MasterKey(cluster) || k == SwitchoverKey(cluster) || strings.HasPrefix(k, CampaignPrefix(cluster))
		}
		if !changed {
			continue
		}
		rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
		st, err := ReadState(rctx, cli, cluster)
		cancel()
		if err != nil {
			return err
		}
		send(out, st)
	}
	return ctx.Err()
}
