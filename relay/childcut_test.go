package relay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/wan"
	"github.com/arbor-fabric/arbor/relay"
)

// TestChildFailoverAfterCutCommand: a child relay's link to its parent
// relay breaks in the middle of a command, or between MULTI and EXEC (the
// parent cuts frames at any byte). The parent's site is lost and a Redis
// replica of the child is promoted: it applied only whole commands outside
// the transaction, and the child, which stores only up to there too (the
// tail of the frames held, never stored nor acked), becomes a root
// following it with a partial resync, not a full one.
func TestChildFailoverAfterCutCommand(t *testing.T) {
	for _, tc := range cutWrites {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			master := redistest.Start(t)
			p := treeRelay(t, "relay-p", "A", upstreamOf(master), func(c *relay.Config) { c.Compression = "none" })
			// About 3 s per value between the relays, uncompressed, so
			// the cut falls inside the write however slow the machine is.
			link, err := wan.NewBridge(p.cfg.GRPCAddr, wan.WithBandwidth(1<<20))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { link.Close() })
			c := treeRelay(t, "relay-c", "B", "arbor://"+link.Addr(), func(c *relay.Config) { c.Compression = "none" })
			backup := redistest.Start(t)
			replicaOf(t, backup, c.Port)
			for i := range 10 {
				if err := master.Client().Set(ctx, fmt.Sprint("k", i), i, 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			before := masterInt(t, master, "replication", "master_repl_offset")
			waitOffset(t, backup, before)
			full := c.InfoInt(t, "stats", "arbor_upstream_full_syncs")
			partial := c.InfoInt(t, "stats", "arbor_upstream_partial_syncs")

			total, forwarded := cutDuring(ctx, t, master, link, before, tc)
			p.Stop()
			master.Kill()
			if forwarded() >= total {
				t.Fatalf("the link was cut after the whole write (%d bytes) went through: the machine is too slow for this test", total)
			}
			stored := c.relay().Status().GetStoredOffset()
			t.Logf("cut after %d of %d bytes; child stored end %d, master was at %d",
				forwarded(), total, stored, before+total)
			if stored != before {
				t.Errorf("child relay stored up to %d after the cut, want %d (the last command boundary outside MULTI)", stored, before)
			}

			// The backup has read all the child serves, and applied only
			// what a replica applies.
			redistest.WaitFor(t, 30*time.Second, func() error {
				end := c.InfoInt(t, "replication", "master_repl_offset")
				if got := masterInt(t, backup, "replication", "slave_read_repl_offset"); got != end {
					return fmt.Errorf("backup read up to %d, child relay stored up to %d", got, end)
				}
				return nil
			})
			if err := backup.ReplicaOfNoOne(ctx); err != nil {
				t.Fatal(err)
			}
			newID, err := backup.Info(ctx, "replication")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.relay().SetUpstream("redis://" + backup.Addr); err != nil {
				t.Fatal(err)
			}
			redistest.WaitFor(t, 30*time.Second, func() error {
				info := c.Info(t, "replication")
				if info["master_replid"] != newID["master_replid"] || info["master_link_status"] != "up" {
					return fmt.Errorf("child relay replid %s link %s, want %s up", info["master_replid"], info["master_link_status"], newID["master_replid"])
				}
				return nil
			})
			expectEq(t, "child relay arbor_upstream_full_syncs", c.InfoInt(t, "stats", "arbor_upstream_full_syncs"), full)
			expectEq(t, "child relay arbor_upstream_partial_syncs", c.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), partial+1)
			expectEq(t, "backup sync_full", masterInt(t, backup, "stats", "sync_full"), 0)
		})
	}
}
