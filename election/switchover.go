package election

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const switchoverRel = "switchover"

// SwitchoverKey returns the key of the pending switchover request (a
// Switchover as JSON).
func SwitchoverKey(cluster string) string { return Prefix(cluster) + switchoverRel }

// Switchover states. A request that succeeds has no final state: the
// target deletes it in the transaction that publishes its record.
const (
	// SwitchoverRequested: written by the operator; the leader acts on it.
	SwitchoverRequested = "requested"
	// SwitchoverHandoff: the leader paused writes, the target has its
	// exact offset, and the leader resigned; only the target campaigns
	// until Deadline.
	SwitchoverHandoff = "handoff"
	// SwitchoverAborted: nothing changed (Error says why); the old master
	// resumed writes.
	SwitchoverAborted = "aborted"
)

// Switchover is a planned change of master, asked for by an operator
// (RequestSwitchover) and carried out by the agents.
type Switchover struct {
	// ID tells requests apart.
	ID string `json:"id"`
	// To is the target node; empty lets the leader pick the best-ranked
	// candidate.
	To string `json:"to,omitempty"`
	// Timeout bounds the write pause: the target must reach the master's
	// offset within it, else the switchover aborts.
	Timeout time.Duration `json:"timeout_ns"`
	// Epoch is the master's epoch when the request was made.
	Epoch int64 `json:"epoch"`
	// State is one of the Switchover* states.
	State string `json:"state"`
	// Offset is the master's offset with writes paused (handoff on).
	Offset int64 `json:"offset,omitempty"`
	// PausedAt is when the old master paused writes; Deadline when the
	// handoff lapses (wall clock).
	PausedAt time.Time `json:"paused_at,omitzero"`
	Deadline time.Time `json:"deadline,omitzero"`
	// Error says why it aborted.
	Error string `json:"error,omitempty"`
}

// Marshal encodes the request as JSON.
func (s Switchover) Marshal() []byte {
	b, _ := json.Marshal(s) // plain fields always encode
	return b
}

// HandsOff reports whether s hands the election to its target now: a
// switchover's hand-off or a forced failover, before its Deadline. Only
// the target campaigns meanwhile.
func (s *Switchover) HandsOff(now time.Time) bool {
	return s != nil && (s.State == SwitchoverHandoff || s.State == SwitchoverForced) && now.Before(s.Deadline)
}

// ErrSwitchover is returned (wrapped) when a switchover is refused or
// aborted; nothing changed.
var ErrSwitchover = errors.New("switchover not done")

// Write runs ops as the leader: guarded on its epoch.
func (l *Leader) Write(ctx context.Context, what string, ops ...clientv3.Op) error {
	return l.commit(ctx, what, ops...)
}

// ResignWith deletes the leader key and runs ops in one transaction
// guarded on the epoch (a hand-off: the next leader sees both at once).
func (l *Leader) ResignWith(ctx context.Context, ops ...clientv3.Op) error {
	return l.commit(ctx, "resign", append(ops, clientv3.OpDelete(l.key))...)
}

// RequestSwitchover asks the agents to move the master to node to (""
// lets the leader pick) with writes paused at most timeout, and waits
// until the new master's record is published (returned) or the
// switchover aborted (ErrSwitchover, with the reason). The request is
// deleted before it returns. A live leader must exist.
func RequestSwitchover(ctx context.Context, cli *clientv3.Client, cluster, to string, timeout time.Duration) (Master, error) {
	st, err := ReadState(ctx, cli, cluster)
	if err != nil {
		return Master{}, err
	}
	if !st.Live() {
		return Master{}, fmt.Errorf("%w: no live elected master to switch over from", ErrSwitchover)
	}
	if to == st.Master.Node {
		return Master{}, fmt.Errorf("%w: %s is the master already", ErrSwitchover, to)
	}
	// The leader acts within a check interval; the target then needs the
	// pause, a campaign and a promotion.
	return request(ctx, cli, cluster, st, Switchover{To: to, Timeout: timeout, State: SwitchoverRequested}, timeout+10*time.Second, ErrSwitchover)
}

// request writes req as cluster's pending request, made against the
// master record of st, and waits up to wait for its outcome: the record
// of a newer epoch (returned; an error of kind too if it names another
// node than req.To), or req aborted (kind, with the reason). It refuses
// (kind) when another request is pending or the record changed since st
// was read: a request made against an older record is moot. Its own
// request is deleted before it returns (the target deletes it when it
// publishes; the leader leaves an aborted one for the requester to read).
func request(ctx context.Context, cli *clientv3.Client, cluster string, st State, req Switchover, wait time.Duration, kind error) (Master, error) {
	req.ID, req.Epoch = strconv.FormatInt(time.Now().UnixNano(), 10), st.Master.Epoch
	key := SwitchoverKey(cluster)
	tr, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		clientv3.Compare(clientv3.ModRevision(MasterKey(cluster)), "<", st.Revision+1),
	).Then(clientv3.OpPut(key, string(req.Marshal()))).Commit()
	if err != nil {
		return Master{}, fmt.Errorf("write request: %w", err)
	}
	if !tr.Succeeded {
		return Master{}, fmt.Errorf("%w: another request is pending (delete %s if it is stale) or the master record changed meanwhile", kind, key)
	}
	defer func() {
		// Only our own request (the key created by our put): the agents
		// rewrite it (same create revision), never re-create it.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_, _ = cli.Txn(dctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", tr.Header.Revision)).Then(clientv3.OpDelete(key)).Commit()
		cancel()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Master{}, ctx.Err()
		case <-timer.C:
			return Master{}, fmt.Errorf("%w: no new master within %v (are the agents running with --elect?)", kind, wait)
		case <-tick.C:
		}
		now, err := ReadState(ctx, cli, cluster)
		if err != nil {
			continue // etcd hiccup: try again until the deadline
		}
		if now.Master != nil && now.Master.Epoch > st.Master.Epoch {
			if req.To != "" && now.Master.Node != req.To {
				return *now.Master, fmt.Errorf("%w: %s became master instead (epoch %d)", kind, now.Master.Node, now.Master.Epoch)
			}
			return *now.Master, nil
		}
		if sw := now.Switchover; sw != nil && sw.ID == req.ID && sw.State == SwitchoverAborted {
			return Master{}, fmt.Errorf("%w: %s", kind, sw.Error)
		}
	}
}
