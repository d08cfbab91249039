package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/wan"
)

// TestFailoverAfterCutCommand: the master's link to the relay breaks in the
// middle of a command, or between MULTI and EXEC; the master dies, and a
// Redis replica of the relay is promoted. That replica applied only whole
// commands outside the transaction, so its history ends at the last of
// them: the relay, which stores only up to there too, continues from it
// with a partial resync (+CONTINUE <newid>), not a full one, and its
// replicas end up with the new master's data.
func TestFailoverAfterCutCommand(t *testing.T) {
	for _, tc := range cutWrites {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			master := redistest.Start(t)
			// About 3 s per value through the link, so the cut falls
			// inside the write however slow the machine is.
			link, err := wan.NewBridge(master.Addr, wan.WithBandwidth(1<<20))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { link.Close() })
			r := startRelay(t, newRelayConfig(t, "redis://"+link.Addr()))
			backup := redistest.Start(t)
			rep := redistest.Start(t)
			replicaOf(t, backup, r.Port)
			replicaOf(t, rep, r.Port)
			for i := range 10 {
				if err := master.Client().Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			before := masterInt(t, master, "replication", "master_repl_offset")
			waitOffset(t, backup, before)
			waitOffset(t, rep, before)
			full := r.InfoInt(t, "stats", "arbor_upstream_full_syncs")
			partial := r.InfoInt(t, "stats", "arbor_upstream_partial_syncs")

			total, forwarded := cutDuring(ctx, t, master, link, before, tc)
			master.Kill()
			if forwarded() >= total {
				t.Fatalf("the link was cut after the whole write (%d bytes) went through: the machine is too slow for this test", total)
			}
			t.Logf("cut after %d of %d bytes; relay stored end %d, master was at %d",
				forwarded(), total, r.InfoInt(t, "replication", "master_repl_offset"), before+total)

			// The backup has read all the relay serves, and applied
			// only what a replica applies.
			redistest.WaitFor(t, 30*time.Second, func() error {
				end := r.InfoInt(t, "replication", "master_repl_offset")
				if got := masterInt(t, backup, "replication", "slave_read_repl_offset"); got != end {
					return fmt.Errorf("backup read up to %d, relay stored up to %d", got, end)
				}
				return nil
			})
			if err := backup.ReplicaOfNoOne(ctx); err != nil {
				t.Fatal(err)
			}
			promoted := masterInt(t, backup, "replication", "master_repl_offset")
			if promoted != before {
				t.Errorf("promoted backup at offset %d, want %d (the last command boundary outside MULTI)", promoted, before)
			}
			newID, err := backup.Info(ctx, "replication")
			if err != nil {
				t.Fatal(err)
			}
			if err := r.relay().SetUpstream("redis://" + backup.Addr); err != nil {
				t.Fatal(err)
			}
			redistest.WaitFor(t, 30*time.Second, func() error {
				info := r.Info(t, "replication")
				if info["master_replid"] != newID["master_replid"] || info["master_link_status"] != "up" {
					return fmt.Errorf("relay replid %s link %s, want %s up", info["master_replid"], info["master_link_status"], newID["master_replid"])
				}
				return nil
			})
			if err := backup.Client().Set(ctx, "after", "failover", 0).Err(); err != nil {
				t.Fatal(err)
			}
			redistest.WaitFor(t, 30*time.Second, func() error {
				if err := linkedAt(rep, masterInt(t, backup, "replication", "master_repl_offset")); err != nil {
					return err
				}
				return redistest.CompareDigests(ctx, backup, rep)
			})
			expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), full)
			expectEq(t, "relay arbor_upstream_partial_syncs", r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), partial+1)
			expectEq(t, "backup sync_full", masterInt(t, backup, "stats", "sync_full"), 0)
			expectEq(t, "backup sync_partial_ok", masterInt(t, backup, "stats", "sync_partial_ok"), 1)
		})
	}
}

// cutWrite is a write a link cut falls into (TestFailoverAfterCutCommand,
// TestChildFailoverAfterCutCommand).
type cutWrite struct {
	name string
	// write sends the command(s) the cut falls into, and returns how many
	// stream bytes, from where the write starts, the cut must come after.
	write func(ctx context.Context, c *redis.Client) (cutAfter int64, err error)
}

// cutWrites cut a command in the middle, and a transaction between its
// first and its last command. Each value takes about 3 s through a link
// of 1 MiB/s, so the cut falls inside the write however slow the machine.
var cutWrites = []cutWrite{
	{"in a command", func(ctx context.Context, c *redis.Client) (int64, error) {
		return 1 << 20, c.Set(ctx, "big", strings.Repeat("v", cutValueLen), 0).Err()
	}},
	{"in a transaction", func(ctx context.Context, c *redis.Client) (int64, error) {
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "tx:1", strings.Repeat("a", cutValueLen), 0)
			p.Set(ctx, "tx:2", strings.Repeat("b", cutValueLen), 0)
			return nil
		})
		// Past MULTI and the whole first SET, before the second ends.
		return cutValueLen + 64<<10, err
	}},
}

const cutValueLen = 3 << 20

// cutDuring sends w's write to master, whose stream reaches the relay
// under test through link, and cuts link once the write's first cutAfter
// stream bytes went through it. before is the master's offset before the
// write. It returns how many stream bytes the write made, and how many of
// them link forwarded (up to now, when called).
func cutDuring(ctx context.Context, t *testing.T, master *redistest.Server, link *wan.Bridge, before int64, w cutWrite) (total int64, forwarded func() int64) {
	t.Helper()
	_, from0 := link.BytesForwarded()
	forwarded = func() int64 { _, from := link.BytesForwarded(); return from - from0 }
	cutAfter, err := w.write(ctx, master.Client())
	if err != nil {
		t.Fatal(err)
	}
	total = masterInt(t, master, "replication", "master_repl_offset") - before
	redistest.WaitFor(t, 30*time.Second, func() error {
		if f := forwarded(); f < cutAfter {
			return fmt.Errorf("%d of %d stream bytes forwarded, waiting for %d", f, total, cutAfter)
		}
		return nil
	})
	link.Cut()
	return total, forwarded
}
