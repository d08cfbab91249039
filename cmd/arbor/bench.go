package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks of Arbor against native Redis",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchRelayCmd())
	return cmd
}

func newBenchRelayCmd() *cobra.Command {
	def := bench.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Compare replication through a relay with native Redis replication",
		Long: `Compare Redis replication through an Arbor relay (master -> relay -> replica)
with native replication (master -> replica), side by side on this machine.

It starts its own redis-server processes and a relay (this binary, or
--relay-bin, run as "arbor relay" in a child process) on free loopback ports
under a temporary directory, and kills them all when it ends, also on SIGINT.

Phases (--phases):
  throughput  pipelined SETs from --clients connections saturate a master that
              has a native replica, then one that has a relay (and a replica
              behind it), alternately for --rounds rounds each; reports the
              median ops/s of each, their ratio, and the CPU per GiB of stream
              of the relay versus the native replica.
  lag         --rate SETs/s to one master that feeds a native replica and a
              relay->replica at once; lag probes (SET lag:<seq>, timed through
              keyspace notifications on both replicas) give p50/p99/max lag of
              each path; CPU per GiB of the identical stream for every process
              and the relay's peak RSS (VmHWM).
Each phase ends by comparing the replicas' DEBUG DIGEST with the master's.

Missed performance targets are reported as MISS; a digest mismatch or lost
lag probes make the command fail.`,
		Example: `  arbor bench relay
  arbor bench relay --phases lag --rate 20000 --duration 30s --json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.Duration("duration", def.Duration, "length of each load: each throughput round and the fixed-rate lag load")
	f.Int("rounds", def.Rounds, "throughput rounds per configuration (native and relay alternate)")
	f.Int("rate", def.Rate, "writes per second of the fixed-rate lag phase")
	f.Duration("batch-interval", def.BatchInterval, "lag phase: send one batch of writes this often")
	f.Int("lag-samples", def.LagSamples, "lag phase: lag probes per second (part of --rate; at most one per batch)")
	f.Int("value-size", def.ValueSize, "bytes of every SET value")
	f.Int("pipeline", def.Pipeline, "throughput phase: SETs each client sends before reading their replies")
	f.Int("clients", def.Clients, "throughput phase: client connections")
	f.Int("keyspace", def.Keyspace, "distinct keys written (bounds the servers' memory)")
	f.String("phases", "all", "phases to run: all, or a comma-separated list of "+strings.Join(bench.AllPhases, ", "))
	f.Bool("json", false, "print the report as JSON instead of tables")
	f.Bool("keep", false, "keep the temporary directory (server logs, relay store)")
	f.String("dir", "", "parent of the temporary directory (default: the system temp dir)")
	f.String("redis-server", def.RedisServer, "redis-server binary")
	f.String("relay-bin", "", "arbor binary to run the relay with (default: this executable)")
	f.StringArray("relay-arg", nil, `extra argument for the relay, repeatable (e.g. --relay-arg=--fsync=no)`)
	f.Bool("quiet", false, "no progress lines on stderr")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, asJSON, err := benchConfig(cmd)
		if err != nil {
			return err
		}
		rep, err := bench.Run(cmd.Context(), cfg)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else if err := rep.WriteText(out); err != nil {
			return err
		}
		if err := rep.Err(); err != nil {
			return fmt.Errorf("bench relay: %w", err)
		}
		return nil
	}
	return cmd
}

// benchConfig builds the bench config from the flags; it also returns
// --json.
func benchConfig(cmd *cobra.Command) (bench.Config, bool, error) {
	fs := cmd.Flags()
	cfg := bench.DefaultConfig()
	phases, _ := fs.GetString("phases")
	var err error
	if cfg.Phases, err = bench.ParsePhases(phases); err != nil {
		return cfg, false, err
	}
	cfg.Duration, _ = fs.GetDuration("duration")
	cfg.Rounds, _ = fs.GetInt("rounds")
	cfg.Rate, _ = fs.GetInt("rate")
	cfg.BatchInterval, _ = fs.GetDuration("batch-interval")
	cfg.LagSamples, _ = fs.GetInt("lag-samples")
	cfg.ValueSize, _ = fs.GetInt("value-size")
	cfg.Pipeline, _ = fs.GetInt("pipeline")
	cfg.Clients, _ = fs.GetInt("clients")
	cfg.Keyspace, _ = fs.GetInt("keyspace")
	cfg.Keep, _ = fs.GetBool("keep")
	cfg.Dir, _ = fs.GetString("dir")
	cfg.RedisServer, _ = fs.GetString("redis-server")
	cfg.RelayBin, _ = fs.GetString("relay-bin")
	cfg.RelayArgs, _ = fs.GetStringArray("relay-arg")
	if quiet, _ := fs.GetBool("quiet"); !quiet {
		cfg.Progress = os.Stderr
	}
	asJSON, _ := fs.GetBool("json")
	return cfg, asJSON, cfg.Validate()
}
