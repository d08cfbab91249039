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

// ErrLiveMaster is returned (wrapped, with ErrFailover) when a forced
// failover is refused because a live master holds the election and its
// Redis answers (or no probe was given): that is a switchover's job.
var ErrLiveMaster = errors.New("a live master holds the election")

// MasterProbe reports whether the Redis at addr answers (nil) or not, as
// seen from the operator's side: any reply counts as an answer, even an
// error reply.
type MasterProbe func(ctx context.Context, addr string) error

// ForceFailover is the operator's override for a cluster whose automatic
// failover does not act (no candidate eligible: all lag, history unknown;
// or a master whose agent holds the election while its Redis does not
// answer): it makes node to's agent, and only it, campaign and promote its
// Redis even if the ranking finds it not eligible and without catching up
// with the relays; whatever the most advanced relay holds beyond that
// Redis is lost. It refuses (ErrFailover, ErrLiveMaster) while a live master holds the
// election and its Redis answers probe (use RequestSwitchover; a nil probe
// refuses every live master), or another request is pending. With a live
// leader the request names its epoch: the leader's agent pauses and demotes
// its Redis if it can, and resigns. The request is written only if the
// master record is still the one read (no failover in between), lapses
// after timeout, and is deleted before this returns. It waits for to's
// record of a new epoch and returns it.
func ForceFailover(ctx context.Context, cli *clientv3.Client, cluster, to string, timeout time.Duration, probe MasterProbe) (Master, error) {
	if to == "" {
		return Master{}, fmt.Errorf("%w: a target node is required", ErrFailover)
	}
	st, err := ReadState(ctx, cli, cluster)
	if err != nil {
		return Master{}, err
	}
	switch {
	case st.Live() && probe == nil:
		return Master{}, fmt.Errorf("%w: %w (%s, epoch %d): use arbor switchover", ErrFailover, ErrLiveMaster, st.Master.Node, st.Master.Epoch)
	case st.Live() && st.Master.Node == to:
		return Master{}, fmt.Errorf("%w: %s is the live master already", ErrFailover, to)
	case st.Live():
		if err := probe(ctx, st.Master.RedisAddr); err == nil {
			return Master{}, fmt.Errorf("%w: %w (%s, epoch %d) and its redis %s answers: use arbor switchover", ErrFailover, ErrLiveMaster, st.Master.Node, st.Master.Epoch, st.Master.RedisAddr)
		}
	case st.Master == nil:
		return Master{}, fmt.Errorf("%w: no master was ever elected (the bootstrap elects the topology's master)", ErrFailover)
	case st.Master.Node == to:
		return Master{}, fmt.Errorf("%w: %s is the record's master already (its agent re-elects it when its redis is a master)", ErrFailover, to)
	}
	req := Switchover{To: to, Timeout: timeout, State: SwitchoverForced, Deadline: time.Now().Add(timeout)}
	return request(ctx, cli, cluster, st, req, timeout, ErrFailover)
}
