package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

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
--max-lag-bytes, their history is unknown or differs), or whose master's
agent still holds the election while its Redis does not answer (from where
this command runs: 3 PINGs of --probe-timeout each get no reply at all; an
error reply such as NOAUTH is an answer). In that case the master's agent,
seeing the request, pauses and demotes its Redis as far as it answers and
resigns. It writes a forced
request under election/switchover; only the --to node's agent campaigns, and it
promotes its Redis (REPLICAOF NO ONE) WITHOUT the eligibility check and WITHOUT
catching up with the relays. The old master's Redis is still probed and paused
if it answers as a master.

Risks: every write the most advanced relay (or another node) holds beyond the
target's Redis is LOST, and relays and replicas that are ahead of it full-sync
from it. The new record and the history entry say "forced failover by
operator".

It refuses while a live master holds the election and its Redis answers (use
arbor switchover), and without --force. The target must be a candidate with a priority above 0
(priority 0 means never, even here). It waits up to --timeout for the target's
record; past it the request lapses.`,
		Example: `  arbor failover --to A-M-Backup --force --etcd 127.0.0.1:2379 --cluster seed`,
		Args:    cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd.Flags())
	cmd.Flags().StringVar(&to, "to", "", "node to make master (required)")
	cmd.Flags().BoolVar(&force, "force", false, "confirm the override: data the relays hold beyond the target is lost")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long the request stays pending and the command waits for the target's record")
	probeTimeout := cmd.Flags().Duration("probe-timeout", time.Second, "how long each of the 3 PINGs of a live master's Redis waits for a reply")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if to == "" {
			return errors.New("--to NODE is required")
		}
		if !force {
			return errors.New("a forced failover loses what the relays hold beyond the target: pass --force (for a planned change of a live master use arbor switchover)")
		}
		if *probeTimeout <= 0 {
			return fmt.Errorf("--probe-timeout %v: must be positive", *probeTimeout)
		}
		forceFailover := func(ctx context.Context, cli *clientv3.Client, cluster, to string, timeout time.Duration) (election.Master, error) {
			return election.ForceFailover(ctx, cli, cluster, to, timeout, pingProbe(*probeTimeout))
		}
		return runRequest(cmd, ef, "forced failover", forceFailover, to, timeout)
	}
	return cmd
}

// pingProbe returns an election.MasterProbe that PINGs the Redis up to
// three times, each bounded by timeout: any reply (an error reply too,
// such as NOAUTH without credentials) means it answers.
func pingProbe(timeout time.Duration) election.MasterProbe {
	return func(ctx context.Context, addr string) error {
		c := redis.NewClient(&redis.Options{
			Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolSize: 1,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		defer c.Close()
		var err error
		for range 3 {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			err = c.Ping(pctx).Err()
			cancel()
			var reply redis.Error
			if err == nil || errors.As(err, &reply) {
				return nil
			}
		}
		return fmt.Errorf("redis %s does not answer: %w", addr, err)
	}
}
