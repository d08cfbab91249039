package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/bench"
)

// benchAllSizes are the sizes `arbor bench all` runs at: the documented
// ones (standard), or tiny ones that only show everything works (quick).
type benchAllSizes struct {
	duration    time.Duration // each fixed-rate load of relay and tree
	rounds      int           // relay throughput rounds
	runs        int           // failovers per system
	datasetSize int64         // tree full sync
	quick       bool
}

func newBenchAllCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "all",
		Short: "Run every benchmark and write docs/benchmarks.md with tables and SVG plots",
		Long: `Run every benchmark of the project one after the other, at the sizes below,
and write a report: --out/benchmarks.md with tables and SVG figures (under
--out/benchmarks/, with the measured data in results.json). Every figure is
drawn from this run's measurements.

  relay     arbor bench relay    (throughput and lag through one relay vs native)
  tree      arbor bench tree     (inter-site bytes, lag to a remote site and
                                  full-sync time, relay tree vs native)
  failover  arbor bench failover (Sentinel, Arbor and Arbor's fast profile:
                                  failover time distribution and the lag of
                                  every server through a failover)
  switchover  arbor bench failover --switchover (the write pause of a
                                  planned switchover, Arbor vs Sentinel)
  relay-failover  arbor bench relay-failover (children moving off a killed
                                  root relay: time, write stall)

The report also records the machine: CPU model and count, load average at
the start and the end (the machine may be shared: other load skews the
numbers), kernel, Redis and Go versions and the arbor commit. A benchmark
that fails is reported as failed and the next one runs; the command then
exits non-zero.

Standard sizes (the documented ones; about 17 minutes on 2 CPUs): --duration
10s per load, 3 throughput rounds, --dataset-size 256MiB, --runs 20 failovers
per system (failover and switchover), 20 relay kills. --quick runs tiny sizes (about 2 minutes) to check the pipeline.`,
		Example: `  arbor bench all                      # writes docs/benchmarks.md
  arbor bench all --quick --out /tmp/bench
  make bench-all
  arbor bench all --from docs/benchmarks/results.json   # redraw the report only`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("out", "docs", "directory to write benchmarks.md and benchmarks/ into")
	f.String("benches", strings.Join(bench.AllBenches, ","), "benchmarks to run, comma-separated: "+strings.Join(bench.AllBenches, ", "))
	f.Duration("duration", 10*time.Second, "length of each fixed-rate load of the relay and tree benchmarks")
	f.Int("rounds", 3, "relay: throughput rounds per configuration")
	f.Int("runs", 20, "failover: failovers per system")
	f.String("dataset-size", "256MiB", "tree: bytes of keys and values filled before the full syncs")
	f.Bool("quick", false, "tiny sizes (1 s loads, 1 round, 1 failover per system, a 2 MiB dataset): checks the pipeline, measures little")
	f.Bool("pin", true, "pin processes to CPUs where a benchmark offers it (relay, tree), as if on separate hosts")
	f.String("redis-server", "redis-server", "redis-server binary")
	f.String("redis-sentinel", "redis-sentinel", "redis-sentinel binary")
	f.String("arbor-bin", "", "arbor binary for relays and node agents (default: this executable)")
	f.String("dir", "", "parent of the temporary directories (default: the system temp dir)")
	f.Bool("quiet", false, "no progress lines on stderr")
	f.String("from", "", "run nothing: write the report again from the results.json of an earlier run")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, out, err := benchAllConfig(cmd)
		if err != nil {
			return err
		}
		var rep *bench.AllReport
		if from, _ := cmd.Flags().GetString("from"); from != "" {
			rep, err = bench.ReadResults(from)
		} else {
			rep, err = bench.RunAll(cmd.Context(), cfg)
		}
		if err != nil {
			return fmt.Errorf("bench all: %w", err)
		}
		if err := bench.WriteDoc(out, rep); err != nil {
			return fmt.Errorf("bench all: writing the report: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s/\n", filepath.Join(out, bench.DocName), filepath.Join(out, bench.DocAssets))
		if failed := rep.Failed(); len(failed) > 0 {
			return fmt.Errorf("bench all: %w: %s", errBenchFailed, strings.Join(failed, "; "))
		}
		return nil
	}
	return cmd
}

// errBenchFailed is returned when a benchmark of `bench all` failed (its
// error is in the report).
var errBenchFailed = errors.New("benchmarks failed")

// benchAllConfig builds the configs of `bench all` from its flags, and the
// output directory.
func benchAllConfig(cmd *cobra.Command) (bench.AllConfig, string, error) {
	fs := cmd.Flags()
	var sz benchAllSizes
	sz.duration, _ = fs.GetDuration("duration")
	sz.rounds, _ = fs.GetInt("rounds")
	sz.runs, _ = fs.GetInt("runs")
	ds, _ := fs.GetString("dataset-size")
	var err error
	if sz.datasetSize, err = parseSize(ds); err != nil {
		return bench.AllConfig{}, "", fmt.Errorf("--dataset-size: %w", err)
	}
	sz.quick, _ = fs.GetBool("quick")
	if sz.quick {
		sz.duration, sz.rounds, sz.runs, sz.datasetSize, ds = time.Second, 1, 1, 2<<20, "2MiB"
	}
	pin, _ := fs.GetBool("pin")
	redisServer, _ := fs.GetString("redis-server")
	arborBin, _ := fs.GetString("arbor-bin")
	dir, _ := fs.GetString("dir")
	benches, _ := fs.GetString("benches")

	cfg := bench.AllConfig{Relay: bench.DefaultConfig(), Tree: bench.DefaultTreeConfig(), Failover: bench.DefaultFailoverConfig(),
		Switchover: bench.DefaultFailoverConfig(), Commands: map[string]string{}}
	for _, b := range strings.Split(benches, ",") {
		cfg.Benches = append(cfg.Benches, strings.TrimSpace(b))
	}
	if quiet, _ := fs.GetBool("quiet"); !quiet {
		cfg.Progress = os.Stderr
	}
	pinArg := ""
	if pin {
		pinArg = " --pin"
	}

	r := &cfg.Relay
	r.Duration, r.Rounds, r.Pin = sz.duration, sz.rounds, pin
	r.RedisServer, r.RelayBin, r.Dir, r.Progress = redisServer, arborBin, dir, cfg.Progress
	if sz.quick {
		r.Rate, r.LagSamples = 2000, 100
	}
	cfg.Commands[bench.BenchRelay] = fmt.Sprintf("arbor bench relay --duration %v --rounds %d --rate %d --lag-samples %d%s",
		r.Duration, r.Rounds, r.Rate, r.LagSamples, pinArg)

	t := &cfg.Tree
	t.Duration, t.DatasetSize, t.Pin = sz.duration, sz.datasetSize, pin
	t.RedisServer, t.RelayBin, t.Dir, t.Progress = redisServer, arborBin, dir, cfg.Progress
	if sz.quick {
		t.BytesRate, t.LagRate, t.LagSamples, t.LagSweep, t.Keyspace = 1000, 2000, 100, nil, 5000
	}
	cfg.Commands[bench.BenchTree] = fmt.Sprintf("arbor bench tree --duration %v --dataset-size %s --bytes-rate %d --lag-rate %d --lag-sweep %q --lag-samples %d --keyspace %d%s",
		t.Duration, ds, t.BytesRate, t.LagRate, joinInts(t.LagSweep), t.LagSamples, t.Keyspace, pinArg)

	fo := &cfg.Failover
	fo.Runs = sz.runs
	fo.RedisServer, fo.ArborBin, fo.Dir, fo.Progress = redisServer, arborBin, dir, cfg.Progress
	fo.RedisSentinel, _ = fs.GetString("redis-sentinel")
	cfg.Commands[bench.BenchFailover] = fmt.Sprintf("arbor bench failover --runs %d --systems %s", fo.Runs, strings.Join(fo.Systems, ","))
	sw := &cfg.Switchover
	*sw = *fo
	sw.Switchover = true
	cfg.Commands[bench.BenchSwitchover] = fmt.Sprintf("arbor bench failover --switchover --runs %d --systems %s", sw.Runs, strings.Join(sw.Systems, ","))

	rf := &cfg.RelayFailover
	*rf = bench.DefaultRelayFailoverConfig()
	rf.Runs, rf.RedisServer, rf.RelayBin, rf.Dir, rf.Progress = sz.runs, redisServer, arborBin, dir, cfg.Progress
	cfg.Commands[bench.BenchRelayFailover] = fmt.Sprintf("arbor bench relay-failover --runs %d", rf.Runs)

	for name, v := range map[string]interface{ Validate() error }{"relay": r, "tree": t, "failover": fo} {
		if err := v.Validate(); err != nil {
			return cfg, "", fmt.Errorf("%s: %w", name, err)
		}
	}
	out, _ := fs.GetString("out")
	return cfg, out, nil
}
