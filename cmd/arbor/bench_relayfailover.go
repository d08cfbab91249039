package main

import (
	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/bench"
)

func newBenchRelayFailoverCmd() *cobra.Command {
	def := bench.DefaultRelayFailoverConfig()
	cmd := &cobra.Command{
		Use:   "relay-failover",
		Short: "Time how fast child relays move off a killed relay, and what writes see",
		Long: `Kill a root relay under writes, --runs times per path, and measure relay failover.

Each run starts, on free loopback ports under a temporary directory: a master
with min-replicas-to-write 1, two relays following it (a1, a2), two child
relays b1, b2 under a1 with --move-after, --move-after-down and --hold-down,
and a replica under each child. --path says how the children know their
parents: "static" runs them on the --upstream list "arbor://a1,arbor://a2"
(no etcd); "etcd" runs every relay with --etcd (an etcd member the benchmark
starts, as bench failover does), the children declared under a1 in the
topology and moved by topology.Mover, plus a replica declared under a1 whose
node agent (arbor node --elect=false) moves it; "both" (the default) runs
both and reports them side by side. A writer SETs one key at a time, 1 ms
apart; after --steady of writes with no kill, a1 is SIGKILLed, then the
writes go on for --steady after the children stream from a2. Reported: the
time from the kill until both children stream from a2 (p50/p99/max), the
same for the node's replica (etcd), the longest write stall the writer saw,
refused writes, full syncs anywhere (the master's, a2's and the children's,
from upstream and to their replicas), spurious moves (INFO
arbor_parent_moves of the children: any in the steady writes before the
kill, any beyond one per child after it; and the node's replica not where
it should be), and whether the replicas' DEBUG DIGEST equals the master's.
Targets: streaming again p99 <= 1s, write stall <= 1s, 0 full syncs, 0
spurious moves; a miss is reported as MISS.`,
		Example: `  arbor bench relay-failover --runs 20
  arbor bench relay-failover --runs 20 --path etcd --json
  arbor bench relay-failover --runs 20 --move-after-down 1s`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.Int("runs", def.Runs, "kills to measure (fresh processes each)")
	f.Duration("move-after", def.MoveAfter, "the child relays' --move-after")
	f.Duration("move-after-down", def.MoveAfterDown, "the child relays' --move-after-down")
	f.Duration("hold-down", def.HoldDown, "the child relays' --hold-down")
	f.String("path", "both", "how the children know their parents: static (--upstream lists), etcd (the topology, topology.Mover; and a node agent), or both")
	f.Duration("steady", def.Steady, "steady writes with no kill before the kill, and again after the move (no move may happen in either)")
	addProcFlags(f, def.RedisServer)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg := def
		fs := cmd.Flags()
		cfg.Runs, _ = fs.GetInt("runs")
		cfg.MoveAfter, _ = fs.GetDuration("move-after")
		cfg.MoveAfterDown, _ = fs.GetDuration("move-after-down")
		cfg.HoldDown, _ = fs.GetDuration("hold-down")
		cfg.Steady, _ = fs.GetDuration("steady")
		path, _ := fs.GetString("path")
		paths, err := bench.ParseRelayFailoverPaths(path)
		if err != nil {
			return err
		}
		p := readProcFlags(fs)
		cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.Progress = p.RedisServer, p.RelayBin, p.Dir, p.Keep, p.Progress
		rep, err := bench.RunRelayFailoverPaths(cmd.Context(), cfg, paths)
		if err != nil {
			return err
		}
		return printReport(cmd.OutOrStdout(), rep, p.JSON)
	}
	return cmd
}
