package bench

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Targets the report checks the measurements against.
const (
	// TargetThroughputRatio is the least relay/native master throughput
	// (the median of the pairs' ratios, at each client count; issue 13:
	// the master pays nothing for a relay).
	TargetThroughputRatio = 0.98
	// TargetMasterCPURatio is the most master CPU per SET relay/native, the
	// measure the throughput target is judged on: a master whose own CPU
	// bounds it writes at 1/(CPU per SET), so 0.98x the throughput is
	// 1/0.98 the CPU per SET. It passes when the upper end of the
	// bootstrap 95% interval of the pairs' median is within it.
	TargetMasterCPURatio = 1 / TargetThroughputRatio
	// TargetAddedP99 is the most p99 lag the relay hop may add, in ms.
	TargetAddedP99 = 1.0
	// TargetCPURatio is the most CPU per GiB the relay may spend relative
	// to a native replica.
	TargetCPURatio = 1.0
	// TargetPeakRSS is the most peak RSS the relay may reach, in bytes.
	TargetPeakRSS = 100 << 20
	// TargetRelayHopP50 and TargetRelayHopP99 are the most lag, in ms, one
	// relay of a pinned chain may add at p50 and p99 (issue 13, item 3):
	// judged on the raw per-hop figures and, with a null chain, on what a
	// relay hop adds over the null hop's floor.
	TargetRelayHopP50 = 0.1
	TargetRelayHopP99 = 0.25
)

// Report is the result of a Run.
type Report struct {
	Host     Host     `json:"host"`
	Settings Settings `json:"settings"`
	// Dir is the kept temporary directory (with Config.Keep).
	Dir string `json:"dir,omitempty"`
	// Throughput is the throughput phase at the first client count;
	// MoreThroughput at the others, in Config.Clients' order.
	Throughput     *ThroughputResult   `json:"throughput,omitempty"`
	MoreThroughput []*ThroughputResult `json:"more_throughput,omitempty"`
	Lag            *LagResult          `json:"lag,omitempty"`
	// Digests compare every replica's DEBUG DIGEST with its master's at
	// the end of each phase.
	Digests []DigestCheck `json:"digests"`
	// Targets are the measurements checked against their targets.
	Targets []Target `json:"targets"`
}

// Host describes the machine of the run.
type Host struct {
	CPUs         int    `json:"cpus"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
	GoVersion    string `json:"go_version"`
	RedisVersion string `json:"redis_version"`
}

// Settings are the parameters of the run.
type Settings struct {
	Phases          []string `json:"phases"`
	DurationSeconds float64  `json:"duration_seconds"`
	Rounds          int      `json:"rounds"`
	Rate            int      `json:"rate"`
	BatchIntervalMs float64  `json:"batch_interval_ms"`
	LagSamples      int      `json:"lag_samples_per_second"`
	ValueSize       int      `json:"value_size"`
	Pipeline        int      `json:"pipeline"`
	// Clients is the first of ClientCounts (older reports have only it).
	Clients      int      `json:"clients"`
	ClientCounts []int    `json:"client_counts,omitempty"`
	Keyspace     int      `json:"keyspace"`
	RelayArgs    []string `json:"relay_args,omitempty"`
	RelayHops    int      `json:"relay_hops"`
	LagRounds    int      `json:"lag_rounds"`
	// Pinned: masters and load generator on CPU 0, consumers on CPU 1.
	Pinned bool `json:"pinned,omitempty"`
	// Ops is the SETs of each throughput round (0: rounds of Duration).
	Ops int `json:"ops,omitempty"`
	// Concurrent: each pair's two throughput rounds ran at once.
	Concurrent bool `json:"concurrent,omitempty"`
}

func newSettings(c *Config) Settings {
	return Settings{
		Phases:          c.Phases,
		DurationSeconds: c.Duration.Seconds(),
		Rounds:          c.Rounds,
		Rate:            c.Rate,
		BatchIntervalMs: ms(c.BatchInterval),
		LagSamples:      c.LagSamples,
		ValueSize:       c.ValueSize,
		Pipeline:        c.Pipeline,
		Clients:         c.Clients[0],
		ClientCounts:    c.Clients,
		Keyspace:        c.Keyspace,
		RelayArgs:       c.RelayArgs,
		RelayHops:       c.RelayHops,
		LagRounds:       c.LagRounds,
		Pinned:          c.Pin,
		Ops:             c.Ops,
		Concurrent:      c.Concurrent,
	}
}

// ThroughputResult is the result of PhaseThroughput at one client count.
type ThroughputResult struct {
	// Clients is the number of load connections.
	Clients int     `json:"clients,omitempty"`
	Rounds  []Round `json:"rounds"`
	// Control: the second master had a native replica, not a relay (an
	// A/A run, Config.Control); its "relay" figures are that master's.
	Control bool `json:"control,omitempty"`
	// NativeOpsPerSec and RelayOpsPerSec are the medians over the rounds.
	NativeOpsPerSec float64 `json:"native_ops_per_sec"`
	RelayOpsPerSec  float64 `json:"relay_ops_per_sec"`
	// PairRatios are relay/native of each pair of rounds, and Spread
	// summarizes them.
	PairRatios []float64 `json:"pair_ratios,omitempty"`
	Spread     Spread    `json:"spread"`
	// Ratio is the median of PairRatios (reports before pairs: the ratio
	// of the medians, RelayOpsPerSec / NativeOpsPerSec).
	Ratio float64 `json:"ratio"`
	// NativeReplconfPerSec and RelayReplconfPerSec are the medians of the
	// REPLCONF commands (ACKs) per second the master served from its
	// consumer, during the load and the catch-up.
	NativeReplconfPerSec float64 `json:"native_replconf_per_sec"`
	RelayReplconfPerSec  float64 `json:"relay_replconf_per_sec"`
	// NativeMasterCPUPerOpUs and RelayMasterCPUPerOpUs are the medians of
	// the master's CPU per SET: equal values mean the master works no
	// harder for a relay, and a lower RelayOpsPerSec comes from the CPU
	// the other processes took.
	NativeMasterCPUPerOpUs float64 `json:"native_master_cpu_per_op_us"`
	RelayMasterCPUPerOpUs  float64 `json:"relay_master_cpu_per_op_us"`
	// MasterCPUPairRatios are relay/native of the master's CPU per SET in
	// each pair of rounds, and MasterCPUSpread summarizes them: the
	// measure the throughput target is judged on (TargetMasterCPURatio).
	MasterCPUPairRatios []float64 `json:"master_cpu_pair_ratios,omitempty"`
	MasterCPUSpread     Spread    `json:"master_cpu_spread"`
	// NativeMaster and RelayMaster are the medians over the rounds of
	// what the master spent per SET.
	NativeMaster MasterCost `json:"native_master"`
	RelayMaster  MasterCost `json:"relay_master"`
	// CPU compares the relay's CPU per GiB in the relay rounds with the
	// native replica's in the native rounds.
	CPU CPUResult `json:"cpu"`
	// RelayPeakRSS is the relay's VmHWM at the end of the phase, in bytes.
	RelayPeakRSS int64 `json:"relay_peak_rss_bytes"`
}

// Round is one saturation load of one configuration.
type Round struct {
	// Round numbers the pair the round belongs to.
	Round   int    `json:"round"`
	Clients int    `json:"clients,omitempty"`
	Config  string `json:"config"` // "native" or "relay"
	// Concurrent: the pair's native and relay rounds ran at once.
	Concurrent  bool    `json:"concurrent,omitempty"`
	Ops         int64   `json:"ops"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	StreamBytes int64   `json:"stream_bytes"`
	// CatchUpMs is how long after the load the replication consumers
	// took to reach the master's offset (includes polling, ~5 ms).
	CatchUpMs float64 `json:"catch_up_ms"`
	// CPUSeconds is the CPU time of each process during the load and the
	// catch-up.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	// MasterFullSyncs is how many full syncs the master served during the
	// round: a relay fetches an rdb-only snapshot when its backlog is over
	// its bound (--backlog-size), which costs the master a fork.
	MasterFullSyncs int64 `json:"master_full_syncs"`
	// MasterReplconfCalls is how many REPLCONF commands (the consumer's
	// ACKs) the master served during the round.
	MasterReplconfCalls int64 `json:"master_replconf_calls"`
	// MasterCPUPerOpUs is the master's CPU time per SET, in µs
	// (Master.CPUPerOpUs; older reports: from clock ticks).
	MasterCPUPerOpUs float64 `json:"master_cpu_per_op_us"`
	// Master is what the master spent per SET of the round, from the
	// start of the load to the consumers' catch-up.
	Master MasterCost `json:"master"`
	// HostBusy is the fraction of the machine's CPU time that was busy.
	HostBusy float64 `json:"host_busy"`
	// OtherCPUSeconds is busy CPU time no benchmark process accounts for:
	// other processes on the machine, and interrupts.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
}

// replconfPerSec is the REPLCONF commands per second the master served
// during the round, over the load and the consumers' catch-up.
func (rd Round) replconfPerSec() float64 {
	return float64(rd.MasterReplconfCalls) / (rd.Seconds + rd.CatchUpMs/1000)
}

// LagResult is the result of PhaseLag.
type LagResult struct {
	Rate         int     `json:"rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Writes       int64   `json:"writes"`
	Probes       int     `json:"probes"`
	// Native and Relay are the probe lags seen on the native replica and
	// on the relay's replica.
	Native PathLag `json:"native"`
	Relay  PathLag `json:"relay"`
	// AddedP50 and AddedP99 are Relay minus Native at p50 and p99, in ms.
	AddedP50 float64 `json:"added_p50_ms"`
	AddedP99 float64 `json:"added_p99_ms"`
	// RelayHops is how many relays the relay path runs through, and
	// PerHopP50 and PerHopP99 the p50 and p99 of what the relay path added
	// probe by probe (Paired) shared among them: the lag one relay hop
	// adds, with the jitter of two replicas against each other in it (see
	// Floor).
	RelayHops int     `json:"relay_hops"`
	PerHopP50 float64 `json:"per_hop_p50_ms"`
	PerHopP99 float64 `json:"per_hop_p99_ms"`
	// InChain is, for each relay after the first, the lag from the first
	// relay's read of the master's stream to this relay's store, by the
	// relays' own clocks, over the last seconds of the load: where in the
	// chain the lag builds up.
	InChain []ChainLag `json:"in_chain,omitempty"`
	// Floor is the null round of this round's pair (Config.NullChain),
	// nil without it.
	Floor *FloorResult `json:"floor,omitempty"`
	// LoadAvgStart and LoadAvgEnd are the machine's 1, 5 and 15 minute
	// load averages when the load began and when the replicas caught up.
	LoadAvgStart [3]float64 `json:"load_avg_start"`
	LoadAvgEnd   [3]float64 `json:"load_avg_end"`
	// ConsumerCores is the CPU time of every process but the master and
	// the load generator (replicas, relays, null hops) over the phase's
	// wall time: pinned, how busy the consumers' one CPU was.
	ConsumerCores float64 `json:"consumer_cores"`
	// Rounds summarises every round when the phase ran more than once;
	// this result is the median one.
	Rounds []LagRound `json:"rounds,omitempty"`
	// Paired is the distribution of relay minus native arrival, probe by
	// probe.
	Paired Dist `json:"paired_added"`
	// CatchUpMs is how long after the last write all replicas reached the
	// master's offset.
	CatchUpMs float64 `json:"catch_up_ms"`
	// HostBusy is the fraction of the machine's CPU time that was busy
	// during the load and the catch-up.
	HostBusy float64 `json:"host_busy"`
	// OtherCPUSeconds is busy CPU time no benchmark process accounts for.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// CPU is every process's CPU per GiB of the one stream they all saw.
	CPU CPUResult `json:"cpu"`
	// RelayPeakRSS is the relay's VmHWM at the end of the phase, in bytes.
	RelayPeakRSS int64 `json:"relay_peak_rss_bytes"`
}

// ChainLag is one relay's INFO arbor_tree_lag: the lag, in ms, from the
// chain's first relay reading the master's stream to this relay storing
// it, over the relay's window of the last seconds (to within 10%).
type ChainLag struct {
	Relay  string  `json:"relay"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Frames int64   `json:"frames"`
}

// FloorResult is the lag phase's null round (Config.NullChain): the same
// load through as many null hops (a process that reads a socket and writes
// another, nullhop.go) as the relay path has relays, with a replica
// behind them and a native replica beside, in a round of its own next to
// the relay round. What the null chain adds over the native replica, per
// hop, is the floor this machine sets under any hop: the processes' turns
// on the CPU, a socket read and write each, and the jitter of two replicas
// against each other, which the relay figures hold as well.
type FloorResult struct {
	// Native and Null are the probe lags seen on the null round's native
	// replica and on the null chain's replica.
	Native PathLag `json:"native"`
	Null   PathLag `json:"null"`
	// Paired is null minus native arrival, probe by probe.
	Paired Dist `json:"paired_added"`
	// PerHopP50 and PerHopP99 are Paired's p50 and p99 over the hops: the
	// floor per hop.
	PerHopP50 float64 `json:"per_hop_p50_ms"`
	PerHopP99 float64 `json:"per_hop_p99_ms"`
	// NetPerHopP50 and NetPerHopP99 are the relay round's per-hop figures
	// minus the floor's: what a relay hop costs over a null hop.
	NetPerHopP50 float64 `json:"net_per_hop_p50_ms"`
	NetPerHopP99 float64 `json:"net_per_hop_p99_ms"`
	// LoadAvgStart, ConsumerCores, HostBusy and CPU are the null round's
	// (see LagResult).
	LoadAvgStart  [3]float64 `json:"load_avg_start"`
	ConsumerCores float64    `json:"consumer_cores"`
	HostBusy      float64    `json:"host_busy"`
	CPU           CPUResult  `json:"cpu"`
}

// PathLag is the lag of one replication path.
type PathLag struct {
	Dist
	Missing    int `json:"missing"`
	Duplicates int `json:"duplicates"`
}

// CPUResult compares CPU time per GiB of replication stream.
type CPUResult struct {
	// Uses[0] is the relay, Uses[1] the native replica; more may follow.
	Uses []CPUUse `json:"uses"`
	// Ratio is the relay's PerGiB over the native replica's.
	Ratio float64 `json:"ratio"`
}

// CPUUse is one process's CPU time over some stream bytes.
type CPUUse struct {
	Process     string  `json:"process"`
	Seconds     float64 `json:"seconds"`
	StreamBytes int64   `json:"stream_bytes"`
	PerGiB      float64 `json:"seconds_per_gib"`
}

// DigestCheck is one replica's DEBUG DIGEST compared with its master's.
type DigestCheck struct {
	Phase         string `json:"phase"`
	Replica       string `json:"replica"`
	Master        string `json:"master"`
	ReplicaDigest string `json:"replica_digest"`
	MasterDigest  string `json:"master_digest"`
	Match         bool   `json:"match"`
}

// Target is one measurement checked against its target.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Op    string  `json:"op"` // ">=" or "<="
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit,omitempty"`
	Pass  bool    `json:"pass"`
}

func atLeast(name string, v, limit float64, unit string) Target {
	return Target{Name: name, Value: v, Op: ">=", Limit: limit, Unit: unit, Pass: v >= limit}
}

func atMost(name string, v, limit float64, unit string) Target {
	return Target{Name: name, Value: v, Op: "<=", Limit: limit, Unit: unit, Pass: v <= limit}
}

// targets checks the phases that ran.
func (r *Report) targets() []Target {
	var ts []Target
	var rss int64
	for _, t := range r.throughputs() {
		if t.Control {
			continue // nothing of a relay's to judge
		}
		ts = append(ts,
			masterCostTarget(t),
			atMost(fmt.Sprintf("CPU/GiB relay/native replica (saturation, %d clients)", t.Clients), t.CPU.Ratio, TargetCPURatio, ""))
		rss = max(rss, t.RelayPeakRSS)
	}
	if l := r.Lag; l != nil {
		if l.RelayHops > 1 {
			// The relay chain's targets: what each relay hop adds, and
			// what it adds over the machine's floor.
			ts = append(ts,
				atMost(fmt.Sprintf("added lag p50 per relay hop (paired relay - native, probe by probe, / %d relays)", l.RelayHops),
					l.PerHopP50, TargetRelayHopP50, "ms"),
				atMost(fmt.Sprintf("added lag p99 per relay hop (paired relay - native, probe by probe, / %d relays)", l.RelayHops),
					l.PerHopP99, TargetRelayHopP99, "ms"))
			if f := l.Floor; f != nil {
				ts = append(ts,
					atMost("added lag p50 per relay hop over the null-hop floor", f.NetPerHopP50, TargetRelayHopP50, "ms"),
					atMost("added lag p99 per relay hop over the null-hop floor", f.NetPerHopP99, TargetRelayHopP99, "ms"))
			}
		} else {
			// The relay core's targets: what the one relay adds, and
			// what it costs next to the replica it stands in for (in a
			// chain the first relay also compresses for a child relay,
			// so its CPU is shown but not judged against a replica's).
			ts = append(ts,
				atMost("added lag p99 (relay - native)", l.AddedP99, TargetAddedP99, "ms"),
				atMost("CPU/GiB relay/native replica (fixed rate)", l.CPU.Ratio, TargetCPURatio, ""))
		}
		rss = max(rss, l.RelayPeakRSS)
	}
	if rss > 0 { // none in a control run without the lag phase
		ts = append(ts, atMost("relay peak RSS (VmHWM)", float64(rss)/(1<<20), TargetPeakRSS/(1<<20), "MiB"))
	}
	return ts
}

// throughputs returns the throughput phase's results, one per client count.
func (r *Report) throughputs() []*ThroughputResult {
	if r.Throughput == nil {
		return nil
	}
	return append([]*ThroughputResult{r.Throughput}, r.MoreThroughput...)
}

// Err reports the correctness failures of the run, as opposed to missed
// performance targets: a replica whose digest differs from its master's,
// or lag probes that never reached a replica.
func (r *Report) Err() error {
	var errs []error
	for _, d := range r.Digests {
		if !d.Match {
			errs = append(errs, fmt.Errorf("%s: %s digest %s, %s digest %s", d.Phase, d.Replica, d.ReplicaDigest, d.Master, d.MasterDigest))
		}
	}
	if l := r.Lag; l != nil {
		if l.Native.Missing > 0 || l.Relay.Missing > 0 {
			errs = append(errs, fmt.Errorf("lag probes missing: native replica %d, relay's replica %d of %d", l.Native.Missing, l.Relay.Missing, l.Probes))
		}
	}
	return errors.Join(errs...)
}

// WriteText renders the report as tables.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	s := r.Settings
	p.f("Arbor relay benchmark: %d CPUs (GOMAXPROCS %d), redis %s, %s\n", r.Host.CPUs, r.Host.GOMAXPROCS, r.Host.RedisVersion, r.Host.GoVersion)
	if s.Ops > 0 {
		p.f("value %d B, keyspace %d keys, %d SETs per throughput round, %v per lag load\n", s.ValueSize, s.Keyspace, s.Ops, seconds(s.DurationSeconds))
	} else {
		p.f("value %d B, keyspace %d keys, %v per load\n", s.ValueSize, s.Keyspace, seconds(s.DurationSeconds))
	}
	if len(s.RelayArgs) > 0 {
		p.f("relay args: %s\n", strings.Join(s.RelayArgs, " "))
	}
	if s.Concurrent {
		p.f("throughput pairs: the native and the relay round at once, each master with its own clients\n")
	}
	if s.Pinned {
		p.f("pinned: masters and load generator on CPU %d, replicas and relay on CPU %d (as if on separate hosts)\n", masterCPU, consumerCPU)
	}
	for _, t := range r.throughputs() {
		clients := t.Clients
		if clients == 0 {
			clients = s.Clients // a report from before client counts
		}
		p.f("\n1. Master write throughput at saturation (%d clients x pipeline %d, SET)\n", clients, s.Pipeline)
		tw := p.table()
		fmt.Fprintln(tw, "  pair\tconfig\tops/s\tstream MiB/s\tcatch-up ms\tfull syncs\tREPLCONF/s\tmachine busy\tmaster µs/op\tCPU s: other\tload gen\tmaster\treplication consumers")
		for _, rd := range t.Rounds {
			var master float64
			var consumers []string
			for name, sec := range rd.CPUSeconds {
				if strings.HasSuffix(name, "master") {
					master = sec
				}
			}
			for _, name := range []string{"native-replica", "relay", "relay-replica", "control-replica"} {
				if sec, ok := rd.CPUSeconds[name]; ok {
					consumers = append(consumers, fmt.Sprintf("%s %.2f", name, sec))
				}
			}
			fmt.Fprintf(tw, "  %d\t%s\t%.0f\t%.1f\t%.0f\t%d\t%.1f\t%.0f%%\t%.3f\t%.2f\t%.2f\t%.2f\t%s\n", rd.Round, rd.Config, rd.OpsPerSec,
				float64(rd.StreamBytes)/(1<<20)/rd.Seconds, rd.CatchUpMs, rd.MasterFullSyncs,
				rd.replconfPerSec(), 100*rd.HostBusy, rd.MasterCPUPerOpUs,
				rd.OtherCPUSeconds, rd.CPUSeconds[selfName], master, strings.Join(consumers, ", "))
		}
		tw.Flush()
		var other, capacity float64
		for _, rd := range t.Rounds {
			other += rd.OtherCPUSeconds
			capacity += rd.Seconds * float64(r.Host.CPUs)
		}
		p.noisy(other, capacity)
		p.f("  median: native %.0f ops/s, relay %.0f ops/s\n", t.NativeOpsPerSec, t.RelayOpsPerSec)
		if sp := t.Spread; sp.N > 0 {
			p.f("  relay/native per pair of rounds: %s\n", sp.pairsText())
		} else {
			p.f("  ratio relay/native %.3f\n", t.Ratio)
		}
		p.f("  median master CPU per SET: native %.3f µs, relay %.3f µs; REPLCONF ACKs the master served per second: native %.1f, relay %.1f\n",
			t.NativeMasterCPUPerOpUs, t.RelayMasterCPUPerOpUs, t.NativeReplconfPerSec, t.RelayReplconfPerSec)
		if sp := t.MasterCPUSpread; sp.N > 0 {
			p.f("  master per 1000 SETs (median): read syscalls native %.1f, relay %.1f; write syscalls native %.1f, relay %.1f; context switches voluntary native %.1f, relay %.1f, involuntary native %.1f, relay %.1f\n",
				t.NativeMaster.ReadsPerKOp, t.RelayMaster.ReadsPerKOp, t.NativeMaster.WritesPerKOp, t.RelayMaster.WritesPerKOp,
				t.NativeMaster.VoluntaryCSPerKOp, t.RelayMaster.VoluntaryCSPerKOp, t.NativeMaster.InvoluntaryCSPerKOp, t.RelayMaster.InvoluntaryCSPerKOp)
			p.f("  relay/native master CPU per SET per pair of rounds: %s\n", sp.pairsText())
			for _, l := range verdictLines(t) {
				p.f("  %s\n", l)
			}
		}
		if !t.Control {
			p.cpu("  CPU per GiB of stream (relay in relay rounds, native replica in native rounds):", t.CPU)
			p.f("  relay peak RSS (VmHWM): %.1f MiB\n", float64(t.RelayPeakRSS)/(1<<20))
		}
	}
	if l := r.Lag; l != nil {
		p.f("\n2. Replica end-to-end lag at %d SETs/s (achieved %.0f/s, %d writes, %d probes, one master feeding both paths)\n",
			l.Rate, l.AchievedRate, l.Writes, l.Probes)
		tw := p.table()
		fmt.Fprintln(tw, "  path\tp50 ms\tp99 ms\tmax ms\tmean ms\treceived\tmissing")
		for _, x := range []struct {
			name string
			pl   PathLag
		}{{"native (master -> replica)", l.Native}, {relayPathName(l.RelayHops), l.Relay}} {
			fmt.Fprintf(tw, "  %s\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\n", x.name, x.pl.P50, x.pl.P99, x.pl.Max, x.pl.Mean, x.pl.Count, x.pl.Missing)
		}
		fmt.Fprintf(tw, "  added (relay - native)\t%.3f\t%.3f\t\t\t\t\n", l.AddedP50, l.AddedP99)
		if l.RelayHops > 1 {
			fmt.Fprintf(tw, "  paired / %d relays, per relay hop\t%.3f\t%.3f\t\t\t\t\n", l.RelayHops, l.PerHopP50, l.PerHopP99)
		}
		fmt.Fprintf(tw, "  paired, probe by probe\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t\n", l.Paired.P50, l.Paired.P99, l.Paired.Max, l.Paired.Mean, l.Paired.Count)
		tw.Flush()
		if len(l.InChain) > 0 {
			p.f("  inside the chain, by the relays' own clocks (INFO arbor_tree_lag: from the first relay's read of the master's\n")
			p.f("  stream to this relay's store, the last 10 s of the load):")
			for _, c := range l.InChain {
				p.f(" %s p50 %.3f ms, p99 %.3f ms (%d frames);", c.Relay, c.P50, c.P99, c.Frames)
			}
			p.f("\n")
		}
		if f := l.Floor; f != nil {
			p.f("  the floor: a round of its own next to this one, the same load through %d null hops (each a process\n", l.RelayHops)
			p.f("  that reads a socket and writes another: no store, no gRPC, no compression) to a replica, beside a native one\n")
			tw := p.table()
			fmt.Fprintln(tw, "  path\tp50 ms\tp99 ms\tmax ms\tmean ms\treceived\tmissing")
			for _, x := range []struct {
				name string
				pl   PathLag
			}{{"native (master -> replica)", f.Native}, {fmt.Sprintf("null (master -> %d null hops -> replica)", l.RelayHops), f.Null}} {
				fmt.Fprintf(tw, "  %s\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\n", x.name, x.pl.P50, x.pl.P99, x.pl.Max, x.pl.Mean, x.pl.Count, x.pl.Missing)
			}
			tw.Flush()
			p.f("  null round: load average at the start %.2f, %.2f, %.2f; consumers used %.2f cores; null hops' CPU s: %s\n",
				f.LoadAvgStart[0], f.LoadAvgStart[1], f.LoadAvgStart[2], f.ConsumerCores, hopCPU(f.CPU))
			p.f("  per hop (paired against the round's native replica, probe by probe, / %d)\n", l.RelayHops)
			tw = p.table()
			fmt.Fprintln(tw, "  per hop\tp50 ms\tp99 ms\t")
			fmt.Fprintf(tw, "  relay hop\t%.3f\t%.3f\t\n", l.PerHopP50, l.PerHopP99)
			fmt.Fprintf(tw, "  null hop (the machine's floor)\t%.3f\t%.3f\t\n", f.PerHopP50, f.PerHopP99)
			fmt.Fprintf(tw, "  relay hop over the floor\t%.3f\t%.3f\t\n", f.NetPerHopP50, f.NetPerHopP99)
			tw.Flush()
		}
		p.f("  load average at the start %.2f, %.2f, %.2f; at the end %.2f, %.2f, %.2f; replication consumers used %.2f cores\n",
			l.LoadAvgStart[0], l.LoadAvgStart[1], l.LoadAvgStart[2], l.LoadAvgEnd[0], l.LoadAvgEnd[1], l.LoadAvgEnd[2], l.ConsumerCores)
		if len(l.Rounds) > 1 {
			by := "paired p99 per relay hop"
			if l.Floor != nil {
				by = "p99 per relay hop over the floor"
			}
			p.f("  %d rounds (fresh processes each); the table above is the median round by %s\n", len(l.Rounds), by)
			tw := p.table()
			fmt.Fprintln(tw, "  round\tachieved/s\tload avg\tconsumer cores\tnative p99\trelay p99\tpaired p99\tper relay hop p50\tp99\tnull round: native p99\tnull p99\tfloor p50\tp99\tover floor p50\tp99\tmachine busy\t")
			for _, rd := range l.Rounds {
				mark := ""
				if rd.Median {
					mark = "median"
				}
				fmt.Fprintf(tw, "  %d\t%.0f\t%.2f\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.0f%%\t%s\n", rd.Round, rd.AchievedRate,
					rd.LoadAvgStart[0], rd.ConsumerCores, rd.NativeP99, rd.RelayP99, rd.PairedP99, rd.PerHopP50, rd.PerHopP99,
					rd.FloorNativeP99, rd.NullP99, rd.FloorPerHopP50, rd.FloorPerHopP99, rd.NetPerHopP50, rd.NetPerHopP99, 100*rd.HostBusy, mark)
			}
			tw.Flush()
		}
		p.f("\n3. CPU per GiB of replication stream during the lag phase (%.1f MiB of stream; machine %.0f%% busy, %.2f CPU s unattributed)\n",
			float64(l.CPU.Uses[0].StreamBytes)/(1<<20), 100*l.HostBusy, l.OtherCPUSeconds)
		p.noisy(l.OtherCPUSeconds, float64(l.Writes)/l.AchievedRate*float64(r.Host.CPUs))
		p.cpu("", l.CPU)
		p.f("  relay peak RSS (VmHWM): %.1f MiB\n", float64(l.RelayPeakRSS)/(1<<20))
	}
	if len(r.Digests) > 0 {
		p.f("\nConsistency (DEBUG DIGEST at the end of each phase)\n")
		for _, d := range r.Digests {
			mark := "OK  "
			if !d.Match {
				mark = "FAIL"
			}
			p.f("  %s %-10s %s == %s (%s)\n", mark, d.Phase, d.Replica, d.Master, d.ReplicaDigest)
		}
	}
	if len(r.Targets) > 0 {
		p.f("\nTargets\n")
		tw := p.table()
		for _, t := range r.Targets {
			mark := "PASS"
			if !t.Pass {
				mark = "MISS"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.3f %s\t%s %.3g %s\n", mark, t.Name, t.Value, t.Unit, t.Op, t.Limit, t.Unit)
		}
		tw.Flush()
	}
	if r.Dir != "" {
		p.f("\nkept %s\n", r.Dir)
	}
	return p.err
}

// printer writes formatted text and keeps the first error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) Write(b []byte) (int, error) {
	if p.err != nil {
		return len(b), nil
	}
	_, p.err = p.w.Write(b)
	return len(b), nil
}

func (p *printer) f(format string, args ...any) { fmt.Fprintf(p, format, args...) }

func (p *printer) table() *tabwriter.Writer {
	return tabwriter.NewWriter(p, 0, 0, 2, ' ', 0)
}

// noisyShare is the share of the machine's CPU time that, spent outside
// the benchmark's processes, earns a warning.
const noisyShare = 0.05

// noisy warns when other CPU use took more than noisyShare of capacity
// (both in CPU seconds).
func (p *printer) noisy(other, capacity float64) {
	if capacity > 0 && other/capacity > noisyShare {
		p.f("  note: %.2f CPU s (%.0f%% of the machine) ran outside the benchmark's processes: other jobs? these numbers are noisy\n",
			other, 100*other/capacity)
	}
}

func (p *printer) cpu(title string, c CPUResult) {
	if title != "" {
		p.f("%s\n", title)
	}
	tw := p.table()
	fmt.Fprintln(tw, "    process\tCPU s\tstream MiB\tCPU s/GiB")
	for _, u := range c.Uses {
		fmt.Fprintf(tw, "    %s\t%.2f\t%.1f\t%.3f\n", u.Process, u.Seconds, float64(u.StreamBytes)/(1<<20), u.PerGiB)
	}
	tw.Flush()
	p.f("    ratio relay/native replica: %.3f\n", c.Ratio)
}

// LagRound summarises one round of the lag phase (in ms).
type LagRound struct {
	Round        int     `json:"round"`
	AchievedRate float64 `json:"achieved_rate"`
	NativeP99    float64 `json:"native_p99_ms"`
	RelayP99     float64 `json:"relay_p99_ms"`
	AddedP99     float64 `json:"added_p99_ms"`
	PairedP99    float64 `json:"paired_p99_ms"`
	PerHopP99    float64 `json:"per_hop_p99_ms"`
	HostBusy     float64 `json:"host_busy"`
	Median       bool    `json:"median,omitempty"`
	// With a null chain: the floor per hop and the relay hop over it.
	PerHopP50      float64    `json:"per_hop_p50_ms,omitempty"`
	FloorPerHopP50 float64    `json:"floor_per_hop_p50_ms,omitempty"`
	FloorPerHopP99 float64    `json:"floor_per_hop_p99_ms,omitempty"`
	NetPerHopP50   float64    `json:"net_per_hop_p50_ms,omitempty"`
	NetPerHopP99   float64    `json:"net_per_hop_p99_ms,omitempty"`
	FloorNativeP99 float64    `json:"floor_native_p99_ms,omitempty"`
	NullP99        float64    `json:"null_p99_ms,omitempty"`
	LoadAvgStart   [3]float64 `json:"load_avg_start"`
	ConsumerCores  float64    `json:"consumer_cores,omitempty"`
}

// pairsText is the report's account of s, a spread of per-pair ratios.
func (s Spread) pairsText() string {
	return fmt.Sprintf("median %.3f, min %.3f, max %.3f, bootstrap 95%% interval of the median %.3f-%.3f (%d pairs)",
		s.Median, s.Min, s.Max, s.CILow, s.CIHigh, s.N)
}

// hopCPU lists the CPU seconds of a null round's null hops.
func hopCPU(c CPUResult) string {
	var parts []string
	for _, u := range c.Uses {
		if strings.HasPrefix(u.Process, "null-hop") {
			parts = append(parts, fmt.Sprintf("%.2f", u.Seconds))
		}
	}
	return strings.Join(parts, ", ")
}

// relayPathName names the relay path of the lag phase.
func relayPathName(hops int) string {
	if hops <= 1 {
		return "relay (master -> relay -> replica)"
	}
	return fmt.Sprintf("relay (master -> relay -> %d more relays over gRPC, all in site %s -> replica)", hops-1, chainSite)
}
