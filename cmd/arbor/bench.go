package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arbor-fabric/arbor/internal/bench"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks of Arbor against native Redis",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchRelayCmd(), newBenchTreeCmd(), newBenchFailoverCmd(), newBenchAllCmd(), newBenchRelayFailoverCmd(), newBenchScaleCmd(), newBenchNullHopCmd())
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
              has a native replica and one that has a relay (and a replica
              behind it), at once (--concurrent, the default) or one after
              the other, in --rounds pairs of rounds (of --duration, or of
              --ops SETs) at each client count; reports per pair the ratio of
              ops/s and of the master's CPU per SET (median, range, bootstrap
              95% interval), the master's syscalls and context switches per
              SET, and the CPU per GiB of stream of the relay versus the
              native replica. The verdict "the master pays nothing" (>= 0.98x)
              is judged on the master's CPU per SET: PASS when its interval's
              upper end is within 1/0.98.
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
	f.Int("rounds", def.Rounds, "throughput rounds per configuration at each client count, run in pairs (native and relay, the first alternating); the report gives the median, range and bootstrap 95% interval of the pairs' ratios")
	f.IntP("ops", "n", 0, "throughput phase: SETs per round, the same work in every round (0: rounds of --duration); a round stops at 5 minutes")
	f.Bool("concurrent", def.Concurrent, "throughput phase: run each pair's native and relay rounds at once (each master with its own --clients connections), so both see the same machine at every moment; --concurrent=false runs them one after the other")
	f.Bool("control", false, "throughput phase: an A/A run, the relay and its replica replaced by a second native replica; the ratios then show the method's own bias")
	f.Int("rate", def.Rate, "writes per second of the fixed-rate lag phase")
	f.Int("lag-rounds", def.LagRounds, "lag phase: how many times to run it (fresh processes each); the report lists every round and judges the median one by paired p99 per relay hop")
	f.Int("relay-hops", def.RelayHops, "lag phase: relays on the relay path; the first follows the master, each next one the previous over gRPC, the replica the last; the relays are all in one site (--site A), so their default compression (auto) is s2 on these links: --relay-arg=--compression=zstd for a cross-site link's")
	f.Bool("null-chain", false, "lag phase: also run a chain of --relay-hops null hops (processes that read a socket and write another, nothing else) with a replica behind, fed by the same master: the floor this machine sets per hop, and each relay hop's lag over it (default: on when --relay-hops is above 1)")
	f.Duration("batch-interval", def.BatchInterval, "lag phase: send one batch of writes this often")
	f.Int("lag-samples", def.LagSamples, "lag phase: lag probes per second (part of --rate; at most one per batch)")
	f.Int("value-size", def.ValueSize, "bytes of every SET value")
	f.Int("pipeline", def.Pipeline, "throughput phase: SETs each client sends before reading their replies")
	f.IntSlice("clients", def.Clients, "throughput phase: client connections; a comma-separated list runs the rounds at each count (e.g. 4,50,200)")
	f.Int("keyspace", def.Keyspace, "distinct keys written (bounds the servers' memory)")
	f.String("phases", "all", "phases to run: all, or a comma-separated list of "+strings.Join(bench.AllPhases, ", "))
	f.Bool("json", false, "print the report as JSON instead of tables")
	f.Bool("keep", false, "keep the temporary directory (server logs, relay store)")
	f.Bool("pin", false, "pin the masters and the load generator to CPU 0 and the replication consumers (replica, relay, relay's replica) to CPU 1, as if on separate hosts")
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
		if err := printReport(cmd.OutOrStdout(), rep, asJSON); err != nil {
			return err
		}
		if err := rep.Err(); err != nil {
			return fmt.Errorf("bench relay: %w", err)
		}
		return nil
	}
	return cmd
}

// newBenchNullHopCmd is the hidden command that runs one null hop of
// "arbor bench relay"'s null chain (bench.NullHop).
func newBenchNullHopCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    bench.NullHopArgs[1],
		Short:  "Forward connections to an upstream byte for byte (a null hop of arbor bench relay's null chain)",
		Hidden: true,
		Args:   cobra.NoArgs,
	}
	listen := cmd.Flags().String("listen", "", "address to accept connections on")
	upstream := cmd.Flags().String("upstream", "", "address to forward each connection to")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *listen == "" || *upstream == "" {
			return fmt.Errorf("null-hop: --listen and --upstream are required")
		}
		return bench.NullHop(cmd.Context(), *listen, *upstream)
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
	cfg.Ops, _ = fs.GetInt("ops")
	cfg.Concurrent, _ = fs.GetBool("concurrent")
	cfg.Control, _ = fs.GetBool("control")
	cfg.Rate, _ = fs.GetInt("rate")
	cfg.BatchInterval, _ = fs.GetDuration("batch-interval")
	cfg.LagSamples, _ = fs.GetInt("lag-samples")
	cfg.RelayHops, _ = fs.GetInt("relay-hops")
	cfg.LagRounds, _ = fs.GetInt("lag-rounds")
	cfg.NullChain = cfg.RelayHops > 1
	if fs.Changed("null-chain") {
		cfg.NullChain, _ = fs.GetBool("null-chain")
	}
	cfg.ValueSize, _ = fs.GetInt("value-size")
	cfg.Pipeline, _ = fs.GetInt("pipeline")
	cfg.Clients, _ = fs.GetIntSlice("clients")
	cfg.Keyspace, _ = fs.GetInt("keyspace")
	cfg.Pin, _ = fs.GetBool("pin")
	cfg.RelayArgs, _ = fs.GetStringArray("relay-arg")
	p := readProcFlags(fs)
	cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.Progress = p.RedisServer, p.RelayBin, p.Dir, p.Keep, p.Progress
	return cfg, p.JSON, cfg.Validate()
}

func newBenchTreeCmd() *cobra.Command {
	def := bench.DefaultTreeConfig()
	cmd := &cobra.Command{
		Use:   "tree",
		Short: "Compare a relay tree with native Redis replication across limited inter-site links",
		Long: `Compare Arbor's relay tree with native Redis replication for the seed shape,
on this machine, in one run: one master M in site A feeds both.

  native: in each remote site S (B and C), S-1 replicates from M through the
          site's link (REPLICAOF <link>) and S-2 from S-1 locally.
  Arbor:  relay-a next to M; relay-B and relay-C follow relay-a over gRPC
          through their site's link (compressed, --compression); in each site
          S-1 and S-2 replicate from the site's relay.

Every inter-site link is an internal/wan TCP bridge with a bandwidth limit
(--bandwidth, each way) and added one-way latency (--latency); one native and
one Arbor link per site, so each path's bytes are counted on its own.
The load is realistic text (--mix): JSON user profiles, log lines, INCR
counters and HSET sessions, not random bytes.

Phases (--phases):
  bytes     --bytes-rate writes/s for --duration: bytes through each site's
            links (both directions) per MiB of master stream (the
            master_repl_offset delta), native versus Arbor.
  lag       --lag-rate writes/s for --duration with lag probes (SET
            lag:<seq>, timed through keyspace notifications) on S-2 of site B
            on both paths; p50/p99 and the lag per relay hop beyond the link's
            latency: (Arbor p99 - latency) / 2 relay hops. Then the same at
            each --lag-sweep rate, to show where lag stops being queueing
            for the machine's CPU or the link.
  fullsync  a fresh master filled with --dataset-size bytes of keys and
            values (pipelined), then the time for a fresh replica in site B
            to sync from M through a link, versus a fresh relay in site B
            following relay-a (which took its snapshot locally) through a
            link, plus a replica of it syncing locally.
Every phase ends comparing every replica's DEBUG DIGEST with the master's.
All processes (redis-server, "arbor relay" from this binary or --relay-bin)
run on free loopback ports under a temporary directory and are killed when
the command ends, also on SIGINT.

Missed performance targets are reported as MISS; a digest mismatch or lost
lag probes make the command fail.`,
		Example: `  arbor bench tree
  arbor bench tree --dataset-size 256MiB
  arbor bench tree --phases bytes,lag --bandwidth 1Gbit --latency 30ms --compression s2 --json`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("phases", "all", "phases to run: all, or a comma-separated list of "+strings.Join(bench.AllTreePhases, ", "))
	f.String("bandwidth", "100Mbit", "rate of each direction of each inter-site link: 100Mbit, 1Gbit, 12500000 (bytes/s), 12MB (bytes/s); 0 for unlimited")
	f.Duration("latency", def.Latency, "one-way latency added by each inter-site link")
	f.String("compression", def.Compression, "relays' --compression: zstd, s2, none or auto (every relay link of the tree crosses sites, so auto sends zstd)")
	f.String("mix", def.Mix.String(), "weights of the kinds of writes: "+strings.Join(bench.AllKinds, ", "))
	f.Int("keyspace", def.Keyspace, "keys of each kind the steady loads write (bounds the servers' memory)")
	f.Duration("duration", def.Duration, "length of each fixed-rate load (bytes and lag phases)")
	f.Int("bytes-rate", def.BytesRate, "writes per second of the bytes phase")
	f.Int("lag-rate", def.LagRate, "writes per second of the lag phase (the lag target is checked at this rate)")
	f.String("lag-sweep", joinInts(def.LagSweep), `more lag-phase rates measured after --lag-rate, comma-separated ("" for none)`)
	f.Duration("batch-interval", def.BatchInterval, "send one batch of writes this often")
	f.Int("lag-samples", def.LagSamples, "lag probes per second (part of --lag-rate; at most one per batch)")
	f.String("dataset-size", "1GiB", "bytes of keys and values filled before the full syncs (e.g. 256MiB, 2MB)")
	f.Int("fill-window", def.FillWindow, "fill: commands sent ahead of their replies")
	f.Uint64("seed", def.Seed, "seed of the workload generator")
	f.Bool("json", false, "print the report as JSON instead of tables")
	f.Bool("keep", false, "keep the temporary directory (server logs, relay stores)")
	f.Bool("pin", false, "pin the relays to CPU 1 and everything else (master, replicas, load generator and link bridges) to CPU 0, as if the relays ran on hosts of their own")
	f.String("dir", "", "parent of the temporary directory (default: the system temp dir)")
	f.String("redis-server", def.RedisServer, "redis-server binary")
	f.String("relay-bin", "", "arbor binary to run the relays with (default: this executable)")
	f.StringArray("relay-arg", nil, `extra argument for every relay, repeatable (e.g. --relay-arg=--batch-delay=500us)`)
	f.String("replica-diskless-load", def.ReplicaDisklessLoad, "repl-diskless-load of the replicas the fullsync phase times, native and Arbor: disabled (load from disk once the RDB is whole), on-empty-db or swapdb (load as it arrives)")
	f.Bool("quiet", false, "no progress lines on stderr")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, asJSON, err := benchTreeConfig(cmd)
		if err != nil {
			return err
		}
		rep, err := bench.RunTree(cmd.Context(), cfg)
		if err != nil {
			if rep != nil && (rep.Bytes != nil || rep.Lag != nil) {
				// Show what was measured before the failure.
				fmt.Fprintln(os.Stderr, "arbor bench tree: partial report:")
				_ = printReport(os.Stderr, rep, asJSON)
			}
			return err
		}
		if err := printReport(cmd.OutOrStdout(), rep, asJSON); err != nil {
			return err
		}
		if err := rep.Err(); err != nil {
			return fmt.Errorf("bench tree: %w", err)
		}
		return nil
	}
	return cmd
}

// procFlags are the flags of a benchmark that runs its own redis-server
// and relay processes: the binaries, where their temporary directory goes
// and whether it stays, the report's form and the progress lines.
type procFlags struct {
	RedisServer, RelayBin, Dir string
	Keep, JSON                 bool
	Progress                   io.Writer // nil with --quiet
}

// addProcFlags defines procFlags' flags on f; redisServer is the default
// binary.
func addProcFlags(f *pflag.FlagSet, redisServer string) {
	f.String("redis-server", redisServer, "redis-server binary")
	f.String("relay-bin", "", "arbor binary to run the relays with (default: this executable)")
	f.String("dir", "", "parent of the temporary directory (default: the system temp dir)")
	f.Bool("keep", false, "keep the temporary directory (logs, stores)")
	f.Bool("json", false, "print the report as JSON")
	f.Bool("quiet", false, "no progress lines on stderr")
}

// readProcFlags reads procFlags' flags from fs.
func readProcFlags(fs *pflag.FlagSet) procFlags {
	var p procFlags
	p.RedisServer, _ = fs.GetString("redis-server")
	p.RelayBin, _ = fs.GetString("relay-bin")
	p.Dir, _ = fs.GetString("dir")
	p.Keep, _ = fs.GetBool("keep")
	p.JSON, _ = fs.GetBool("json")
	if quiet, _ := fs.GetBool("quiet"); !quiet {
		p.Progress = os.Stderr
	}
	return p
}

// printReport prints a bench report as its table, or as indented JSON.
func printReport(w io.Writer, rep interface{ WriteText(io.Writer) error }, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(w)
}

// benchTreeConfig builds the tree bench config from the flags; it also
// returns --json.
func benchTreeConfig(cmd *cobra.Command) (bench.TreeConfig, bool, error) {
	fs := cmd.Flags()
	cfg := bench.DefaultTreeConfig()
	var err error
	phases, _ := fs.GetString("phases")
	if cfg.Phases, err = bench.ParseTreePhases(phases); err != nil {
		return cfg, false, err
	}
	bw, _ := fs.GetString("bandwidth")
	if cfg.Bandwidth, err = parseRate(bw); err != nil {
		return cfg, false, fmt.Errorf("--bandwidth: %w", err)
	}
	mix, _ := fs.GetString("mix")
	if cfg.Mix, err = bench.ParseMix(mix); err != nil {
		return cfg, false, fmt.Errorf("--mix: %w", err)
	}
	sweep, _ := fs.GetString("lag-sweep")
	if cfg.LagSweep, err = parseInts(sweep); err != nil {
		return cfg, false, fmt.Errorf("--lag-sweep: %w", err)
	}
	ds, _ := fs.GetString("dataset-size")
	if cfg.DatasetSize, err = parseSize(ds); err != nil {
		return cfg, false, fmt.Errorf("--dataset-size: %w", err)
	}
	cfg.Latency, _ = fs.GetDuration("latency")
	cfg.Compression, _ = fs.GetString("compression")
	cfg.Compression = strings.ToLower(cfg.Compression)
	cfg.Keyspace, _ = fs.GetInt("keyspace")
	cfg.Duration, _ = fs.GetDuration("duration")
	cfg.BytesRate, _ = fs.GetInt("bytes-rate")
	cfg.LagRate, _ = fs.GetInt("lag-rate")
	cfg.BatchInterval, _ = fs.GetDuration("batch-interval")
	cfg.LagSamples, _ = fs.GetInt("lag-samples")
	cfg.FillWindow, _ = fs.GetInt("fill-window")
	cfg.Seed, _ = fs.GetUint64("seed")
	cfg.Pin, _ = fs.GetBool("pin")
	cfg.RelayArgs, _ = fs.GetStringArray("relay-arg")
	cfg.ReplicaDisklessLoad, _ = fs.GetString("replica-diskless-load")
	p := readProcFlags(fs)
	cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.Progress = p.RedisServer, p.RelayBin, p.Dir, p.Keep, p.Progress
	return cfg, p.JSON, cfg.Validate()
}

// parseRate parses a link rate into bytes per second: bits per second with
// a unit (100Mbit, 2.5Gbit, 500kbps; powers of 1000), or a whole number of
// bytes per second as parseSize reads them (12500000, 12MB). 0 means
// unlimited.
func parseRate(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(strings.ToLower(s)), "/s")
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"gbps", 1e9}, {"mbit", 1e6}, {"mbps", 1e6}, {"kbit", 1e3}, {"kbps", 1e3}, {"bit", 1}, {"bps", 1}} {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || f < 0 || f*u.mult/8 > 1<<50 {
				return 0, fmt.Errorf("%q is not a rate (examples: 100Mbit, 1Gbit, 12500000)", s)
			}
			return int64(f * u.mult / 8), nil
		}
	}
	n, err := parseSize(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a rate (examples: 100Mbit, 1Gbit, 12500000)", s)
	}
	return n, nil
}

// parseInts parses a comma-separated list of integers; empty or "none"
// is an empty list.
func parseInts(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

func newBenchFailoverCmd() *cobra.Command {
	def := bench.DefaultFailoverConfig()
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Measure failover after the master's death: Redis Sentinel and Arbor side by side",
		Long: `Measure what the death of the master's redis-server costs under a failover
system, over --runs runs with fresh processes each: a master, a backup that
may be promoted and two read replicas that may not.

A writer SETs fo:<seq> to the address the system names as the master (for
Sentinel: SENTINEL GET-MASTER-ADDR-BY-NAME on a kept connection, asked before
every attempt, one attempt per millisecond) and records every acknowledged
key. After 500 ms the master's redis-server is killed with SIGKILL (with
--kill host, its node agent too, at the same moment). Each run measures:
  write accepted      master killed -> first write acknowledged by the new master
  replicas streaming  master killed -> every other server replicating from the
                      new master with master_link_status:up
  acked writes lost   acknowledged keys the new master lacks afterwards
  write pause         the writer's last write acknowledged by the old master ->
                      its first acknowledged by the new one
  full/partial syncs  sync_full / sync_partial_ok of the new master
and the report gives p50/p99 over the runs.

With --switchover nothing is killed: each run asks for a planned switchover
to the backup (Arbor: a switchover request, as arbor switchover makes, with
its default 5 s timeout; Sentinel: SENTINEL FAILOVER to one sentinel, which
does not pause writes on the old master), and the times run from the
request; the write pause is the switchover's.

Systems:
  sentinel          3 redis-sentinel processes (quorum 2) with
                    down-after-milliseconds --down-after (default 1s)
  sentinel-default  the same with Sentinel's default 30 s (--sentinel-default;
                    about 35 s per run)
  arbor             node agents with --elect beside every redis-server (master
                    and backup candidates, the replicas not), one root relay
                    under etcd that every node follows, one etcd (built from
                    tools/go.mod on first use); the writer reads the master
                    record (election/master). Replicas stream through the relay.
                    Needs an arbor binary whose node agent has --elect; else it
                    is reported as not run, and why.
  arbor-fast        the same with the agents' --fast election profile.
Ratios compare each system with the first.

It needs redis-sentinel (Debian: apt-get install redis-sentinel). All
processes run on free loopback ports under a temporary directory and are
killed when the command ends, also on SIGINT.`,
		Example: `  arbor bench failover
  arbor bench failover --runs 5 --sentinel-default --json
  arbor bench failover --systems sentinel --runs 1
  arbor bench failover --switchover --systems sentinel,arbor`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.Int("runs", def.Runs, "failovers per system (fresh processes each)")
	f.String("systems", strings.Join(def.Systems, ","), "systems to run, comma-separated: "+strings.Join(bench.AllFailoverSystems, ", "))
	f.String("arbor-bin", "", "arbor binary for the Arbor side's relay and node agents (default: this executable)")
	f.Duration("down-after", def.DownAfter, "Sentinel's down-after-milliseconds")
	f.Bool("sentinel-default", false, "also run Sentinel with its default down-after-milliseconds (30s)")
	f.String("kill", "redis", "what each run kills: redis (the master's redis-server) or host (it and its node agent: Arbor detects it by lease expiry; Sentinel runs nothing on the host)")
	f.Bool("switchover", false, "a planned switchover to the backup in each run instead of a kill (not with --kill host)")
	f.String("redis-server", def.RedisServer, "redis-server binary")
	f.String("redis-sentinel", def.RedisSentinel, "redis-sentinel binary")
	f.String("dir", "", "parent of the temporary directory (default: the system temp dir)")
	f.Bool("keep", false, "keep the temporary directory (server and sentinel logs)")
	f.Bool("json", false, "print the report as JSON instead of a table")
	f.Bool("quiet", false, "no progress lines on stderr")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg := bench.DefaultFailoverConfig()
		fs := cmd.Flags()
		cfg.Runs, _ = fs.GetInt("runs")
		systems, _ := fs.GetString("systems")
		cfg.Systems = strings.Split(systems, ",")
		cfg.ArborBin, _ = fs.GetString("arbor-bin")
		cfg.DownAfter, _ = fs.GetDuration("down-after")
		cfg.SentinelDefault, _ = fs.GetBool("sentinel-default")
		switch kill, _ := fs.GetString("kill"); kill {
		case "redis":
		case "host":
			cfg.KillHost = true
		default:
			return fmt.Errorf("--kill %q: want redis or host", kill)
		}
		cfg.Switchover, _ = fs.GetBool("switchover")
		cfg.RedisSentinel, _ = fs.GetString("redis-sentinel")
		p := readProcFlags(fs) // no --relay-bin here: its arbor binary is --arbor-bin
		cfg.RedisServer, cfg.Dir, cfg.Keep, cfg.Progress = p.RedisServer, p.Dir, p.Keep, p.Progress
		rep, err := bench.RunFailover(cmd.Context(), cfg)
		if rep != nil {
			if err := printReport(cmd.OutOrStdout(), rep, p.JSON); err != nil {
				return err
			}
		}
		if err != nil {
			return fmt.Errorf("bench failover: %w", err)
		}
		return nil
	}
	return cmd
}
