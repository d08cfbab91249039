package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// WritableMasters returns, per epoch, the nodes that acknowledged a write
// (the writer's or a probe's) while the newest record seen named that
// epoch. A write whose epoch changed while it was in flight is left out:
// it cannot be placed. A write by the master of the next record seen,
// acknowledged before that record was seen, counts in the next epoch when
// no other node acknowledged a write sent after it: a promoted node takes
// writes a moment before its record is published, and that is no second
// master as long as the old one took none after it.
func WritableMasters(ops []Op, epochs []Epoch) map[int64][]string {
	next := map[int64]Epoch{} // epoch → the record seen after it
	for i := 0; i+1 < len(epochs); i++ {
		next[epochs[i].Epoch] = epochs[i+1]
	}
	// The latest send time of an acknowledged write per (epoch, node).
	type key struct {
		epoch int64
		node  string
	}
	lastSent := map[key]time.Time{}
	for _, op := range ops {
		if op.EpochBefore != op.EpochAfter {
			continue
		}
		k := key{op.EpochBefore, op.Node}
		if op.Sent.After(lastSent[k]) {
			lastSent[k] = op.Sent
		}
	}
	sets := map[int64]map[string]bool{}
	add := func(epoch int64, node string) {
		if sets[epoch] == nil {
			sets[epoch] = map[string]bool{}
		}
		sets[epoch][node] = true
	}
	for _, op := range ops {
		if op.EpochBefore != op.EpochAfter {
			continue
		}
		e := op.EpochBefore
		if n, ok := next[e]; ok && n.Master == op.Node {
			later := false
			for k, sent := range lastSent {
				if k.epoch == e && k.node != op.Node && sent.After(op.Acked) {
					later = true
				}
			}
			if !later {
				add(n.Epoch, op.Node)
				continue
			}
		}
		add(e, op.Node)
	}
	out := map[int64][]string{}
	for e, s := range sets {
		for n := range s {
			out[e] = append(out[e], n)
		}
		slices.Sort(out[e])
	}
	return out
}

// Lost returns the writer's acknowledged writes whose ack:<seq> key c
// (the final master) lacks or holds another value.
func Lost(ctx context.Context, c *redis.Client, ops []Op) ([]Op, error) {
	var writes []Op
	for _, op := range ops {
		if op.Seq > 0 {
			writes = append(writes, op)
		}
	}
	var lost []Op
	const chunk = 1000
	for i := 0; i < len(writes); i += chunk {
		part := writes[i:min(i+chunk, len(writes))]
		keys := make([]string, len(part))
		for j, op := range part {
			keys[j] = ackPrefix + strconv.FormatInt(op.Seq, 10)
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("read the acknowledged writes: %w", err)
		}
		for j, v := range vals {
			if s, _ := v.(string); s != strconv.FormatInt(part[j].Seq, 10) {
				lost = append(lost, part[j])
			}
		}
	}
	return lost, nil
}

// Writes counts the writer's acknowledged writes among ops.
func Writes(ops []Op) int {
	n := 0
	for _, op := range ops {
		if op.Seq > 0 {
			n++
		}
	}
	return n
}

// FormatWritable renders WritableMasters' result, epochs in order, and
// returns the largest number of nodes in one epoch.
func FormatWritable(w map[int64][]string) (string, int) {
	var es []int64
	for e := range w {
		es = append(es, e)
	}
	slices.Sort(es)
	most := 0
	var parts []string
	for _, e := range es {
		most = max(most, len(w[e]))
		parts = append(parts, fmt.Sprintf("e%d: %s", e, strings.Join(w[e], "+")))
	}
	return strings.Join(parts, "; "), most
}
