package election

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// History is the entry a leader writes under HistoryKey for its epoch: who
// took over from whom, why, and how long each step took.
type History struct {
	// Epoch is the leader's epoch (set by Leader.RecordHistory).
	Epoch int64 `json:"epoch"`
	// Node is the new master; Previous the master of the record it
	// replaced (empty at bootstrap) and PreviousEpoch that record's epoch.
	Node          string `json:"node"`
	Previous      string `json:"previous,omitempty"`
	PreviousEpoch int64  `json:"previous_epoch,omitempty"`
	// Reason says why (bootstrap, failover: ..., switchover).
	Reason string `json:"reason"`
	// Replid and Offset are the new master's replication ID and offset
	// when it was promoted.
	Replid string `json:"replid,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	// Steps are the promotion's steps in order, with their durations.
	Steps []Step `json:"steps,omitempty"`
	// Ranking is the candidates' ranking the winner acted on.
	Ranking []Ranked `json:"ranking,omitempty"`
	// At is when the entry was written (wall clock).
	At time.Time `json:"at"`
}

// Step is one timed step of a promotion.
type Step struct {
	// Name names the step (campaign, catch-up, probe, promote, publish).
	Name string `json:"name"`
	// Took is how long it took.
	Took time.Duration `json:"took_ns"`
	// Note says what the step found, if anything.
	Note string `json:"note,omitempty"`
}

// Marshal encodes the entry as JSON.
func (h History) Marshal() []byte {
	b, _ := json.Marshal(h) // plain fields always encode
	return b
}

// ParseHistory decodes a history entry.
func ParseHistory(b []byte) (History, error) {
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return History{}, fmt.Errorf("%w: history entry: %v", ErrBadRecord, err)
	}
	return h, nil
}

// ReadHistory returns the newest history entries of cluster, newest
// first, at most limit of them (all if limit ≤ 0). Entries that do not
// parse are skipped.
func ReadHistory(ctx context.Context, cli *clientv3.Client, cluster string, limit int) ([]History, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := cli.Get(ctx, HistoryPrefix(cluster), opts...)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	out := make([]History, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if h, err := ParseHistory(kv.Value); err == nil {
			out = append(out, h)
		}
	}
	return out, nil
}
