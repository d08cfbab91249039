package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// applyAttempts bounds how often Apply retries after losing a race with
// another writer.
const applyAttempts = 5

// ErrConflict is returned by Apply when other writers kept changing the
// topology while it tried to write.
var ErrConflict = errors.New("topology changed concurrently")

// Load reads the cluster's whole topology at one revision and validates it.
// It returns the revision read. For a topology that does not validate the
// error is a *ValidationError and the topology is returned as far as it
// decoded; other errors are etcd's.
func Load(ctx context.Context, cli *clientv3.Client, cluster string) (*Topology, int64, error) {
	raw, rev, err := loadRaw(ctx, cli, cluster)
	if err != nil {
		return nil, 0, err
	}
	t, err := Parse(raw)
	return t, rev, err
}

// loadRaw reads every topology key, relative to the prefix, and the
// revision it read at.
func loadRaw(ctx context.Context, kv clientv3.KV, cluster string) (map[string][]byte, int64, error) {
	prefix := Prefix(cluster)
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read topology %s: %w", prefix, err)
	}
	raw := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		raw[strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	return raw, resp.Header.Revision, nil
}

// Encode returns the etcd values of t, keyed by their key relative to the
// topology prefix.
func Encode(t *Topology) (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, s := range t.Sites {
		b, err := encodeSite(s)
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", name, err)
		}
		out[sitesDir+name] = b
	}
	for id, r := range t.Relays {
		b, err := encodeRelay(r)
		if err != nil {
			return nil, fmt.Errorf("relay %s: %w", id, err)
		}
		out[relaysDir+id] = b
	}
	for id, n := range t.Nodes {
		b, err := encodeNode(n)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", id, err)
		}
		out[nodesDir+id] = b
	}
	if t.Master != "" {
		b, err := encodeMaster(t.Master)
		if err != nil {
			return nil, err
		}
		out[masterKeyRel] = b
	}
	return out, nil
}

// Apply makes t the cluster's whole topology in one etcd transaction: it
// puts every value that differs and deletes every topology key t does not
// have, so watchers see the change at a single revision, never half of it.
// It refuses a t that does not validate (the error is a *ValidationError).
// The transaction is guarded by the revision of the read it is based on;
// if another writer got in between, Apply reads again and retries, and
// returns ErrConflict after a few attempts. It returns the revision the
// topology is at afterwards (the current one if nothing changed).
//
// etcd bounds the operations of one transaction (--max-txn-ops, 128 by
// default): a topology with more keys needs a higher limit.
func Apply(ctx context.Context, cli *clientv3.Client, cluster string, t *Topology) (int64, error) {
	if err := Validate(t); err != nil {
		return 0, err
	}
	want, err := Encode(t)
	if err != nil {
		return 0, err
	}
	prefix := Prefix(cluster)
	for range applyAttempts {
		have, rev, err := loadRaw(ctx, cli, cluster)
		if err != nil {
			return 0, err
		}
		var ops []clientv3.Op
		for _, k := range sortedKeys(want) {
			if old, ok := have[k]; !ok || !bytes.Equal(old, want[k]) {
				ops = append(ops, clientv3.OpPut(prefix+k, string(want[k])))
			}
		}
		for _, k := range sortedKeys(have) {
			if _, ok := want[k]; !ok {
				ops = append(ops, clientv3.OpDelete(prefix+k))
			}
		}
		if len(ops) == 0 {
			return rev, nil
		}
		// Nothing under the prefix may have changed since rev. (A key
		// deleted meanwhile leaves no trace here, but the outcome is the
		// same: exactly t.)
		unchanged := clientv3.Compare(clientv3.ModRevision(prefix).WithPrefix(), "<", rev+1)
		resp, err := cli.Txn(ctx).If(unchanged).Then(ops...).Commit()
		if errors.Is(err, rpctypes.ErrTooManyOps) {
			return 0, fmt.Errorf("write topology: %d operations: %w (raise etcd's --max-txn-ops)", len(ops), err)
		}
		if err != nil {
			return 0, fmt.Errorf("write topology: %w", err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("write topology: %w", ErrConflict)
}
