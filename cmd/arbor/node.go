package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/node"
	"github.com/arbor-fabric/arbor/relay"
)

const nodeRedisEnv = "ARBOR_NODE_REDIS"

func newNodeCmd() *cobra.Command {
	cmd, _ := nodeCommand()
	return cmd
}

// nodeCommand returns `arbor node` and its loader: load reads the settings
// (flags, --config, $ARBOR_NODE_REDIS) into a checked node.Config, as the
// command does before it connects to anything.
func nodeCommand() (cmd *cobra.Command, load func() (node.Config, *etcdFlags, error)) {
	def := node.DefaultConfig()
	cmd = &cobra.Command{
		Use:   "node",
		Short: "Run a node agent beside a redis-server: keep it replicating as the topology says",
		Long: `Run the node agent of one redis-server. It checks the Redis every
--check-interval (INFO replication), keeps it replicating from what the
topology in etcd says (REPLICAOF the redis_addr of the relay, or node, that
/arbor/<cluster>/topology/nodes/<id> follows; the master node is left a
master), re-points it as soon as an edit of the topology is in force, and
publishes the node's status on a lease at /arbor/<cluster>/status/node/<id>:
role, replication ID and offset, link state, lag behind the master (bytes and
time), health and the last error.

A bad topology edit is refused and the last good topology stays in force. What
the agent cannot do (reach its Redis, promote a replica designated master,
demote a live master: both the election's job) it reports in its status and
logs and otherwise leaves the Redis alone. A Redis that is a master while
another node is designated is live, and never re-pointed, if it has a
replication offset, connected replicas, keys or function libraries; only a
fresh, empty one is made to follow. --candidate and --priority are
checked against the topology (the topology's values are the ones in force; a
difference is reported).

The agent takes part in the master election (keys under
/arbor/<cluster>/election/): the master's agent holds it on a lease of
--lease-ttl, checks its Redis every --check-interval and resigns after
--down-after failed checks; if it cannot renew the lease it pauses writes and
demotes its Redis --fence-margin before the lease can expire. When the
master's lease is gone, the best-ranked live candidate (same replication
history within --max-lag-bytes, then priority, then the old master's site,
then id) campaigns, catches up with the most advanced root relay, pauses the
old master if it still answers as one, runs REPLICAOF NO ONE, and publishes
the new master (epoch, node, replid, offset) and a history entry with the
steps' timings; the same guarded transaction names it in topology/master. A
Redis that is a master while the election names another node is demoted to
what it follows. Every agent of a cluster should run the election; with
--elect=false the topology's master key alone names the master and nothing
fails over.

Settings come from flags and from a YAML file given with --config (keys are
the flag names, e.g. "check-interval: 200ms"); a flag given on the command
line wins over the file, and an unknown key is refused. The Redis URL may
carry a password (redis://:password@host:port); to keep it off the command
line and out of the file, leave --redis out and set $` + nodeRedisEnv + `.`,
		Example: `  arbor node --id A-S-1 --site A --redis redis://127.0.0.1:7002 \
    --etcd 127.0.0.1:2379 --cluster seed`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	addConfigFlag(f)
	ef := addEtcdFlags(f)
	cfg := def
	f.StringVar(&cfg.ID, "id", "", "node id in the topology (required)")
	f.StringVar(&cfg.Site, "site", "", "site the node runs in")
	f.StringVar(&cfg.Redis, "redis", "", "the node's Redis: redis://[user:password@]host:port (required, or $"+nodeRedisEnv+")")
	f.BoolVar(&cfg.Candidate, "candidate", false, "the node may be elected master (checked against the topology, whose value is in force)")
	f.IntVar(&cfg.Priority, "priority", 0, "rank among candidates, higher wins; 0 = never (checked against the topology, whose value is in force)")
	f.DurationVar(&cfg.CheckInterval, "check-interval", def.CheckInterval, "how often the Redis is checked")
	f.DurationVar(&cfg.RedisTimeout, "redis-timeout", def.RedisTimeout, "bound on one Redis command")
	f.DurationVar(&cfg.StatusInterval, "status-interval", def.StatusInterval, "how often a changed status is written to etcd (role, link, health and errors at once)")
	f.DurationVar(&cfg.StatusTTL, "status-ttl", def.StatusTTL, "lease TTL of the status (whole seconds): it disappears this long after the agent died")
	f.BoolVar(&cfg.Elect, "elect", true, "take part in the master election: hold it while this node is the master, campaign as a candidate when the master loses it (automatic failover); --elect=false leaves the master to the topology's master key (no failover)")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", def.LeaseTTL, "election lease TTL (whole seconds): a dead agent or host is replaced about this long after its last keepalive")
	f.DurationVar(&cfg.FenceMargin, "fence-margin", def.FenceMargin, "the master pauses writes and demotes its redis this long before its unrenewed lease can expire")
	fast := f.Bool("fast", false, "fast election profile: --lease-ttl 2s --fence-margin 500ms (needs etcd --election-timeout <= 1333ms)")
	f.IntVar(&cfg.DownAfter, "down-after", def.DownAfter, "failed checks in a row (one per --check-interval) after which the master's agent resigns")
	f.Int64Var(&cfg.MaxLagBytes, "max-lag-bytes", def.MaxLagBytes, "a candidate further behind the most advanced relay is never promoted")
	f.DurationVar(&cfg.DeferStep, "defer-step", def.DeferStep, "a candidate ranked k waits (k-1) times this for better ones before it campaigns")
	f.DurationVar(&cfg.CatchUpTimeout, "catch-up-timeout", def.CatchUpTimeout, "bound on the winner's wait to reach the most advanced root relay's offset before promotion")
	f.IntVar(&cfg.MinReplicas, "min-replicas", 0, "min-replicas-to-write set on the elected master (relays count; 0 = off): a master no relay acks refuses writes")
	f.DurationVar(&cfg.MinReplicasMaxLag, "min-replicas-max-lag", def.MinReplicasMaxLag, "min-replicas-max-lag (whole seconds, below --lease-ttl) with --min-replicas")
	f.DurationVar(&cfg.MoveAfter, "move-after", def.MoveAfter, "point the redis at another healthy relay when its relay's status lease is gone, or its link is down or the relay answers no PING, this long")
	f.DurationVar(&cfg.HoldDown, "hold-down", def.HoldDown, "return the redis to its declared relay only after that relay has been healthy this long")
	deadMan := f.Bool("dead-man-switch", false, "with --elect: run a dead-man switch process beside the agent that, should the agent die while its redis is the elected master, pauses writes and demotes the redis at the agent's fence deadline")
	debugAddr := f.String("debug-addr", "", "address of an HTTP endpoint with /debug/pprof and Prometheus /metrics: the election's epoch, role, failovers and their durations (empty: none)")
	logLevel := f.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := f.String("log-format", "text", "log format: text or json")
	load = func() (node.Config, *etcdFlags, error) {
		if err := applyConfigFile(f); err != nil {
			return node.Config{}, nil, err
		}
		logger, err := newLogger(*logLevel, *logFormat)
		if err != nil {
			return node.Config{}, nil, err
		}
		if cfg.Redis == "" {
			cfg.Redis = os.Getenv(nodeRedisEnv)
		}
		cfg.Cluster = ef.cluster
		cfg.Logger = logger
		if *fast {
			if f.Changed("lease-ttl") || f.Changed("fence-margin") {
				return node.Config{}, nil, errors.New("--fast sets --lease-ttl and --fence-margin; give one or the other")
			}
			cfg.FastProfile()
		}
		if *deadMan {
			if !cfg.Elect {
				return node.Config{}, nil, errors.New("--dead-man-switch needs --elect")
			}
			exe, err := os.Executable()
			if err != nil {
				return node.Config{}, nil, fmt.Errorf("--dead-man-switch: %w", err)
			}
			cfg.DeadManSwitch = []string{exe, deadManCmdName, "--log-format", *logFormat}
		}
		if err := cfg.Validate(); err != nil {
			return node.Config{}, nil, err
		}
		return cfg, ef, nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, ef, err := load()
		if err != nil {
			return err
		}
		logger := cfg.Logger
		cli, err := ef.connect(cmd.Context(), logger)
		if err != nil {
			if cmd.Context().Err() != nil {
				return nil // interrupted while waiting for etcd
			}
			return err
		}
		defer cli.Close()
		tel, err := startTelemetry(cmd.Context(), nodeServiceName, cfg.ID, *debugAddr, logger)
		if err != nil {
			return err
		}
		defer tel.shutdown(cmd.Context(), logger)
		if tel.meters != nil {
			cfg.MeterProvider = tel.meters
		}
		if tel.tracers != nil {
			cfg.TracerProvider = tel.tracers
		}
		a, err := node.New(cfg, cli)
		if err != nil {
			return err
		}
		logger.Info("arbor node starting", "version", relay.Version, "etcd", ef.endpoints)
		return a.Run(cmd.Context())
	}
	return cmd, load
}

// deadManCmdName is the hidden command the node agent runs as its dead-man
// switch (node.RunDeadManSwitch).
const deadManCmdName = "dead-man-switch"

func newDeadManCmd() *cobra.Command {
	var logFormat string
	cmd := &cobra.Command{
		Use:    deadManCmdName,
		Short:  "The node agent's dead-man switch (started by arbor node --dead-man-switch; reads its standard input)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger("info", logFormat)
			if err != nil {
				return err
			}
			// Not cmd.Context(): a signal meant for the agent must not stop
			// the switch before it acts; it ends with its input.
			return node.RunDeadManSwitch(context.Background(), os.Stdin, logger.With("component", "dead-man-switch"))
		},
	}
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return cmd
}
