package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
)

func newSwitchoverCmd() *cobra.Command {
	var (
		to      string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "switchover",
		Short: "Move the master to another node with no acknowledged write lost",
		Long: `Ask the node agents (arbor node --elect) for a planned change of master and
wait for it. The master's agent pauses writes (CLIENT PAUSE WRITE), waits until
the target node's Redis has exactly the master's offset, and hands the election
to it in one transaction; the target promotes its Redis (REPLICAOF NO ONE) and
publishes the new record; the old master's agent then makes its Redis follow
its relay and resumes it. Relays and replicas continue with partial resyncs.

Without --to the master's agent picks the best-ranked candidate. If the target
is not eligible or cannot catch up within --timeout, the switchover aborts:
writes resume on the old master and nothing changed. Writes are paused for the
catch-up plus the hand-off (a campaign and a promotion, milliseconds on one
site).`,
		Example: `  arbor switchover --to A-M-Backup --etcd 127.0.0.1:2379 --cluster seed`,
		Args:    cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd.Flags())
	cmd.Flags().StringVar(&to, "to", "", "target node (default: the best-ranked candidate)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "bound on the write pause while the target catches up; past it the switchover aborts")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runRequest(cmd, ef, "switched over", election.RequestSwitchover, to, timeout)
	}
	return cmd
}

// runRequest makes a change of master (election.RequestSwitchover or
// election.ForceFailover) to node to, bounded by timeout, and prints the
// new master's record and how long it took.
func runRequest(cmd *cobra.Command, ef *etcdFlags, done string,
	request func(context.Context, *clientv3.Client, string, string, time.Duration) (election.Master, error),
	to string, timeout time.Duration,
) error {
	if timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", timeout)
	}
	cli, err := ef.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	start := time.Now()
	m, err := request(cmd.Context(), cli, ef.cluster, to, timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s to %s (epoch %d, replid %s, offset %d) in %v\n",
		done, m.Node, m.Epoch, m.Replid, m.Offset, time.Since(start).Round(time.Millisecond))
	return nil
}
