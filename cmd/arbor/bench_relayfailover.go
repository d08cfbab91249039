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
		Long: `Kill a root relay under writes, --runs times, and measure relay failover.

Each run starts, on free loopback ports under a temporary directory: a master
with min-replicas-to-write 1, two relays following it (a1, a2), two child
relays following "arbor://a1,arbor://a2" (an --upstream list: no etcd) with
--move-after, --move-after-down and --hold-down, and a replica under each child. A writer SETs
one key at a time, 1 ms apart; a1 is SIGKILLed. Reported: the time from the
kill until both children stream from a2 (p50/p99/max), the longest write
stall the writer saw, refused writes, full syncs anywhere (the master's, the
children's from upstream and to their replicas), and whether the replicas'
DEBUG DIGEST equals the master's. Targets: children streaming again p99 <= 1s,
write stall <= 1s, 0 full syncs; a miss is reported as MISS.`,
		Example: `  arbor bench relay-failover --runs 20
  arbor bench relay-failover --runs 20 --move-after-down 1s --json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.Int("runs", def.Runs, "kills to measure (fresh processes each)")
	f.Duration("move-after", def.MoveAfter, "the child relays' --move-after")
	f.Duration("move-after-down", def.MoveAfterDown, "the child relays' --move-after-down")
	f.Duration("hold-down", def.HoldDown, "the child relays' --hold-down")
	addProcFlags(f, def.RedisServer)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg := def
		fs := cmd.Flags()
		cfg.Runs, _ = fs.GetInt("runs")
		cfg.MoveAfter, _ = fs.GetDuration("move-after")
		cfg.MoveAfterDown, _ = fs.GetDuration("move-after-down")
		cfg.HoldDown, _ = fs.GetDuration("hold-down")
		p := readProcFlags(fs)
		cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.Progress = p.RedisServer, p.RelayBin, p.Dir, p.Keep, p.Progress
		rep, err := bench.RunRelayFailover(cmd.Context(), cfg)
		if err != nil {
			return err
		}
		return printReport(cmd.OutOrStdout(), rep, p.JSON)
	}
	return cmd
}
