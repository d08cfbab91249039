package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/election"
)

func newFailoverCmd() *cobra.Command {
	var (
		to      string
		force   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Force a node to become master when automatic failover does not act (loses data)",
		Long: `The operator's override for a cluster whose master is gone and whose automatic
failover does not act because no candidate is eligible (all lag beyond
--max-lag-bytes, their history is unknown or differs). It writes a forced
request under election/switchover; only the --to node's agent campaigns, and it
promotes its Redis (REPLICAOF NO ONE) WITHOUT the eligibility check and WITHOUT
catching up with the relays. The old master's Redis is still probed and paused
if it answers as a master.

Risks: every write the most advanced relay (or another node) holds beyond the
target's Redis is LOST, and relays and replicas that are ahead of it full-sync
from it. The new record and the history entry say "forced failover by
operator".

It refuses while a live master holds the election (use arbor switchover), and
without --force. The target must be a candidate with a priority above 0
(priority 0 means never, even here). It waits up to --timeout for the target's
record; past it the request lapses.`,
		Example: `  arbor failover --to A-M-Backup --force --etcd 127.0.0.1:2379 --cluster seed`,
		Args:    cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd.Flags())
	cmd.Flags().StringVar(&to, "to", "", "node to make master (required)")
	cmd.Flags().BoolVar(&force, "force", false, "confirm the override: data the relays hold beyond the target is lost")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long the request stays pending and the command waits for the target's record")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if to == "" {
			return errors.New("--to NODE is required")
		}
		if !force {
			return errors.New("a forced failover loses what the relays hold beyond the target: pass --force (for a planned change of a live master use arbor switchover)")
		}
		return runRequest(cmd, ef, "forced failover", election.ForceFailover, to, timeout)
	}
	return cmd
}
