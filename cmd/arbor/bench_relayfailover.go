package main

import (
	"os"

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
	f.String("redis-server", def.RedisServer, "redis-server binary")
	f.String("relay-bin", "", "arbor binary to run the relays with (default: this executable)")
	f.String("dir", "", "parent of the temporary directory (default: the system temp dir)")
	f.Bool("keep", false, "keep the temporary directory (logs, stores)")
	f.Bool("json", false, "print the report as JSON")
	f.Bool("quiet", false, "no progress lines on stderr")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg := def
		fs := cmd.Flags()
		cfg.Runs, _ = fs.GetInt("runs")
		cfg.MoveAfter, _ = fs.GetDuration("move-after")
		cfg.MoveAfterDown, _ = fs.GetDuration("move-after-down")
		cfg.HoldDown, _ = fs.GetDuration("hold-down")
		cfg.RedisServer, _ = fs.GetString("redis-server")
		cfg.RelayBin, _ = fs.GetString("relay-bin")
		cfg.Dir, _ = fs.GetString("dir")
		cfg.Keep, _ = fs.GetBool("keep")
		if quiet, _ := fs.GetBool("quiet"); !quiet {
			cfg.Progress = os.Stderr
		}
		rep, err := bench.RunRelayFailover(cmd.Context(), cfg)
		if err != nil {
			return err
		}
		asJSON, _ := fs.GetBool("json")
		return printReport(cmd.OutOrStdout(), rep, asJSON)
	}
	return cmd
}
