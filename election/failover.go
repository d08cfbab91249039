package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SwitchoverForced is the state of a forced failover request (written by
// ForceFailover): while it is pending (until Deadline) only its target
// campaigns, and it promotes itself without the eligibility check and the
// catch-up.
const SwitchoverForced = "forced"

// ForcedReason is the reason a forced failover's record and history
// entry carry.
const ForcedReason = "forced failover by operator"

// ErrFailover is returned (wrapped) when a forced failover is refused or
// did not happen; the reason follows.
var ErrFailover = errors.New("forced failover not done")

// Forcing reports whether s is a pending forced failover now.
func (s *Switchover) Forcing(now time.Time) bool {
	return s != nil && s.State == SwitchoverForced && now.Before(s.Deadline)
}

// ForceFailover is the operator's override for a cluster whose automatic
// failover does not act (no candidate eligible: all lag, history unknown):
// it makes node to's agent, and only it, campaign and promote its Redis
// even if the ranking finds it not eligible and without catching up with
// the relays; whatever the most advanced relay holds beyond that Redis is
// lost. It refuses (ErrFailover) while a live master holds the election
// (use RequestSwitchover) or another request is pending. The request is
// written only if the master record is still the one read (no failover in
// between), lapses after timeout, and is deleted before this returns. It
// waits for to's record of a new epoch and returns it.
func ForceFailover(ctx context.Context, cli *clientv3.Client, cluster, to string, timeout time.Duration) (Master, error) {
	if to == "" {
		return Master{}, fmt.Errorf("%w: a target node is required", ErrFailover)
	}
	resp, err := cli.Get(ctx, MasterKey(cluster))
	if err != nil {
		return Master{}, fmt.Errorf("read master record: %w", err)
	}
	var recRev int64 // 0: no record
	if len(resp.Kvs) > 0 {
		recRev = resp.Kvs[0].ModRevision
	}
	st, err := ReadState(ctx, cli, cluster)
	if err != nil {
		return Master{}, err
	}
	switch {
	case st.Live():
		return Master{}, fmt.Errorf("%w: a live master holds the election (%s, epoch %d): use arbor switchover", ErrFailover, st.Master.Node, st.Master.Epoch)
	case st.Master == nil:
		return Master{}, fmt.Errorf("%w: no master was ever elected (the bootstrap elects the topology's master)", ErrFailover)
	case st.Master.Node == to:
		return Master{}, fmt.Errorf("%w: %s is the record's master already (its agent re-elects it when its redis is a master)", ErrFailover, to)
	}
	now := time.Now()
	req := Switchover{ID: fmt.Sprintf("%d", now.UnixNano()), To: to, Timeout: timeout, Epoch: st.Master.Epoch, State: SwitchoverForced, Deadline: now.Add(timeout)}
	key := SwitchoverKey(cluster)
	// Guarded: no other request pending, and the record unchanged since
	// it was read (a master elected meanwhile makes the override moot).
	tr, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		clientv3.Compare(clientv3.ModRevision(MasterKey(cluster)), "=", recRev),
	).Then(clientv3.OpPut(key, string(req.Marshal()))).Commit()
	if err != nil {
		return Master{}, fmt.Errorf("request forced failover: %w", err)
	}
	if !tr.Succeeded {
		return Master{}, fmt.Errorf("%w: another request is pending (delete %s if it is stale) or a master was elected meanwhile", ErrFailover, key)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		// Only our own request: the target deletes it when it publishes.
		_, _ = cli.Txn(dctx).If(clientv3.Compare(clientv3.Value(key), "=", string(req.Marshal()))).Then(clientv3.OpDelete(key)).Commit()
		cancel()
	}()
	wait := time.NewTimer(timeout)
	defer wait.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Master{}, ctx.Err()
		case <-wait.C:
			return Master{}, fmt.Errorf("%w: %s did not take over within %v (is its agent running with --elect?)", ErrFailover, to, timeout)
		case <-tick.C:
		}
		cur, err := ReadState(ctx, cli, cluster)
		if err != nil {
			continue // etcd hiccup: try again until the deadline
		}
		if cur.Master != nil && cur.Master.Epoch > st.Master.Epoch {
			if cur.Master.Node != to {
				return *cur.Master, fmt.Errorf("%w: %s became master instead (epoch %d)", ErrFailover, cur.Master.Node, cur.Master.Epoch)
			}
			return *cur.Master, nil
		}
	}
}
