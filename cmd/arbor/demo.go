package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var o demo.Options
	var logLevel, etcd string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the three-site seed topology on this machine, with a write load and the control plane",
		Long: `Run the seed topology of the design on this machine: site A with the master,
two relays (relay-a1, relay-a2), a backup and two read replicas; sites B and C
with a relay each and their backups and read replicas, all real redis-server
processes on loopback. A write load runs on the master while a table shows
every server's offset, lag and what it follows; at the end every server's
DEBUG DIGEST is checked against the master's. Needs redis-server
(apt-get install redis-server).

The control plane runs too: an etcd (--etcd-bin, else etcd on PATH, else built
once from tools/go.mod and cached, about 90 s; or an existing one with
--etcd), the seed topology applied to it (cluster "demo"), the relays taking
their upstreams from it, and a node agent beside every redis-server pointing
it at its site's relay and running the election. Then the story, each step
timed: relay-c is re-parented live through etcd from relay-a1 to relay-b with
no full sync; the demo kill -9's A-Master's redis-server and waits for the
agents to elect and promote A-M-Backup (new epoch, the history's steps, the
time from the kill to the first write the new master acknowledged, full
syncs before and after: none new); A-Master's redis-server restarts and its
agent makes it a replica (one full sync, its own: Redis gives a restarted
master a new replication ID); a planned switchover moves the master back to
A-Master (the write pause the writer saw). The writer remembers every write
acknowledged (ack:<n> keys); at the end the final master must hold all of
them but those A-Master acknowledged just before its kill and no relay had
pulled (lost by design, counted apart), every server's digest must equal
the master's, and the demo exits non-zero if a check fails. --no-failover
skips the kill, return and switchover. --keep leaves the fabric running
after the story and prints commands to explore it (redis-cli, grpcurl,
etcdctl, arbor status, arbor dashboard) until Ctrl-C. Without an etcd
binary and without a Go toolchain to build one, or with --no-etcd, the
topology is wired statically (no election, no failover story).`,
		Example: `  arbor demo                          # 10 s of load, etcd run by the demo
  arbor demo --duration 0             # until Ctrl-C
  arbor demo --etcd 127.0.0.1:2379    # an existing etcd
  arbor demo --no-etcd                # no control plane
  arbor demo --no-failover            # no kill -9, return or switchover
  arbor demo --keep                   # then explore the fabric until Ctrl-C`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			for _, e := range strings.Split(etcd, ",") {
				if e = strings.TrimSpace(e); e != "" {
					o.Etcd = append(o.Etcd, e)
				}
			}
			o.Logger = logger
			o.Out = cmd.OutOrStdout()
			_, err = demo.Run(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 10_000_000_000, "how long the write load runs (0: until Ctrl-C)")
	f.IntVar(&o.Rate, "rate", 2000, "write load in commands per second")
	f.StringVar(&o.Dir, "dir", "", "directory for the servers' files (default: a temporary one)")
	f.BoolVar(&o.Keep, "keep", false, "after the story, leave the fabric running (and its files) and print commands to explore it; Ctrl-C stops it all")
	f.BoolVar(&o.NoFailover, "no-failover", false, "skip the failover story (kill -9 of A-Master's Redis, its return, the switchover back)")
	f.StringVar(&o.RedisServer, "redis-server", "redis-server", "redis-server binary")
	f.StringVar(&o.EtcdBin, "etcd-bin", "", "etcd binary to run (default: etcd on PATH, else built from tools/go.mod)")
	f.StringVar(&etcd, "etcd", "", "endpoints of a running etcd to use instead (comma-separated; no TLS or auth)")
	f.BoolVar(&o.NoEtcd, "no-etcd", false, "no control plane: wire the topology statically")
	f.StringVar(&o.Cluster, "cluster", demo.DefaultCluster, "cluster name in etcd (/arbor/<cluster>/)")
	f.StringVar(&logLevel, "log-level", "warn", "relay and node agent log level")
	cmd.MarkFlagsMutuallyExclusive("no-etcd", "etcd")
	cmd.MarkFlagsMutuallyExclusive("no-etcd", "etcd-bin")
	cmd.MarkFlagsMutuallyExclusive("etcd", "etcd-bin")
	return cmd
}
