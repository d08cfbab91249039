package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/bench"
)

func newBenchScaleCmd() *cobra.Command {
	def := bench.DefaultScaleConfig()
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Measure how a relay's CPU, memory and lag grow with its replicas, child relays and dataset",
		Long: `Measure how one relay scales, on free loopback ports under a temporary directory.

Replicas: a master and a relay following it; Redis replicas are added to the
relay step by step (--replicas, ascending). At each count a fixed-rate load
(--rate SETs/s for --duration) runs with lag probes timed on every replica
(keyspace notifications); reported: the relay's cores (CPU time over the
load and its catch-up), CPU s per MB of master stream, resident set and its peak, the
lag of every probe on every replica (p50/p99) and on the slowest replica, the
replicas' cores together and how busy the machine was (on a small machine many
replicas, not the relay, use it up). With --native (the default) the same
series runs again with every replica following the master directly, side by
side: the master's cores and the lag there are what the relay saves the master.

Children: the same with child relays over gRPC (--children, ascending), a
replica under each, the lag timed on those replicas; the child relays' cores
are reported together.

Datasets: for each size in --datasets a fresh master is filled with the
realistic mix (or --dataset-value-size values of random bytes, which load
several times faster), a native replica full-syncs from it (--dataset-native),
then a fresh relay; the master's digest is taken and the master stopped, and
a replica full-syncs from the relay, which serves it from the snapshot on its
disk. Reported: the fill and sync times, the RDB and the relay's store on disk,
and the relay's resident set after its sync, after the replica's and at its
peak (it stays flat: the snapshot streams through disk). Without
--dataset-native one copy of the dataset is resident at a time. Before it
starts, each dataset is checked against the machine's MemAvailable and free
disk, and refused with an error when it would not fit (leaving 2 GiB of memory
to the rest of the machine); a step is stopped should MemAvailable fall under
768 MiB while it runs. Progress lines every 5 s show the syncs, the relay's
resident set and MemAvailable.

Every step ends by comparing the replicas' DEBUG DIGEST with the master's; a
mismatch makes the command fail.`,
		Example: `  arbor bench scale
  arbor bench scale --replicas 1,10,50,200 --children none --datasets none
  arbor bench scale --replicas none --children none --datasets 10GiB --dataset-value-size 65000 --dataset-native=false`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("replicas", joinInts(def.Replicas), `Redis replica counts on one relay, ascending ("none" skips the series)`)
	f.Bool("native", def.Native, "also run the replica series natively: the same replicas following the master directly, side by side")
	f.String("children", joinInts(def.Children), `child relay counts on one relay, ascending ("none" skips the series)`)
	f.String("datasets", "256MiB,1GiB", `dataset sizes a fresh relay full-syncs ("none" skips them)`)
	f.Int("dataset-value-size", def.DatasetValueSize, "fill the datasets with values of this many random bytes (0: the realistic mix)")
	f.Bool("dataset-native", def.DatasetNative, "also time a native replica's full sync of each dataset (two copies of it in memory at once)")
	f.Int("rate", def.Rate, "SETs per second of each step's load")
	f.Duration("duration", def.Duration, "length of each step's load")
	f.Int("value-size", def.ValueSize, "bytes of every SET value")
	f.Int("keyspace", def.Keyspace, "distinct keys written (bounds every replica's memory)")
	f.Int("lag-samples", def.LagSamples, "lag probes per second, timed on every replica")
	f.StringArray("relay-arg", nil, "extra argument for every relay, repeatable")
	addProcFlags(f, def.RedisServer)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg := def
		fs := cmd.Flags()
		var err error
		s, _ := fs.GetString("replicas")
		if cfg.Replicas, err = parseInts(s); err != nil {
			return fmt.Errorf("--replicas: %w", err)
		}
		cfg.Native, _ = fs.GetBool("native")
		s, _ = fs.GetString("children")
		if cfg.Children, err = parseInts(s); err != nil {
			return fmt.Errorf("--children: %w", err)
		}
		s, _ = fs.GetString("datasets")
		cfg.Datasets = nil
		if t := strings.TrimSpace(s); t != "" && !strings.EqualFold(t, "none") {
			for _, part := range strings.Split(t, ",") {
				n, err := parseSize(part)
				if err != nil {
					return fmt.Errorf("--datasets: %w", err)
				}
				cfg.Datasets = append(cfg.Datasets, n)
			}
		}
		cfg.DatasetValueSize, _ = fs.GetInt("dataset-value-size")
		cfg.DatasetNative, _ = fs.GetBool("dataset-native")
		cfg.Rate, _ = fs.GetInt("rate")
		cfg.Duration, _ = fs.GetDuration("duration")
		cfg.ValueSize, _ = fs.GetInt("value-size")
		cfg.Keyspace, _ = fs.GetInt("keyspace")
		cfg.LagSamples, _ = fs.GetInt("lag-samples")
		cfg.RelayArgs, _ = fs.GetStringArray("relay-arg")
		p := readProcFlags(fs)
		cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.Progress = p.RedisServer, p.RelayBin, p.Dir, p.Keep, p.Progress
		rep, err := bench.RunScale(cmd.Context(), cfg)
		if err != nil {
			return err
		}
		if err := printReport(cmd.OutOrStdout(), rep, p.JSON); err != nil {
			return err
		}
		if err := rep.Err(); err != nil {
			return fmt.Errorf("bench scale: %w", err)
		}
		return nil
	}
	return cmd
}
