package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Targets of the tree benchmark.
const (
	// TargetTreeBytesRatio is the most inter-site bytes Arbor may use
	// relative to native replication.
	TargetTreeBytesRatio = 1.0 / 3
	// TargetHopP99 is the most p99 lag, in ms, each relay hop may add
	// beyond the link's own latency.
	TargetHopP99 = 2.0
	// TargetFullSyncRatio is the most time a site's Arbor full sync (its
	// relay and its replica) over the limited link may take relative to a
	// native one (issue 13).
	TargetFullSyncRatio = 0.25
)

// TreeReport is the result of a RunTree.
type TreeReport struct {
	Host     Host         `json:"host"`
	Settings TreeSettings `json:"settings"`
	// Dir is the kept temporary directory (with TreeConfig.Keep).
	Dir   string           `json:"dir,omitempty"`
	Bytes *TreeBytesResult `json:"bytes,omitempty"`
	Lag   *TreeLagResult   `json:"lag,omitempty"`
	// LagSweep are the lag measurements at the TreeConfig.LagSweep rates.
	LagSweep []*TreeLagResult `json:"lag_sweep,omitempty"`
	FullSync *FullSyncResult  `json:"full_sync,omitempty"`
	Digests  []DigestCheck    `json:"digests"`
	Targets  []Target         `json:"targets"`
}

// TreeSettings are the parameters of a tree run.
type TreeSettings struct {
	Phases          []string `json:"phases"`
	BandwidthBps    int64    `json:"link_bandwidth_bytes_per_sec"`
	LatencyMs       float64  `json:"link_latency_ms"`
	Compression     string   `json:"compression"`
	Mix             string   `json:"mix"`
	Keyspace        int      `json:"keyspace"`
	DurationSeconds float64  `json:"duration_seconds"`
	BytesRate       int      `json:"bytes_rate"`
	LagRate         int      `json:"lag_rate"`
	LagSweep        []int    `json:"lag_sweep,omitempty"`
	BatchIntervalMs float64  `json:"batch_interval_ms"`
	LagSamples      int      `json:"lag_samples_per_second"`
	DatasetSize     int64    `json:"dataset_size"`
	Seed            uint64   `json:"seed"`
	RelayArgs       []string `json:"relay_args,omitempty"`
	// Pinned: relays on CPU 1, everything else on CPU 0.
	Pinned bool `json:"pinned,omitempty"`
}

func newTreeSettings(c *TreeConfig) TreeSettings {
	return TreeSettings{
		Phases:          c.Phases,
		BandwidthBps:    c.Bandwidth,
		LatencyMs:       ms(c.Latency),
		Compression:     c.Compression,
		Mix:             c.Mix.String(),
		Keyspace:        c.Keyspace,
		DurationSeconds: c.Duration.Seconds(),
		BytesRate:       c.BytesRate,
		LagRate:         c.LagRate,
		LagSweep:        c.LagSweep,
		BatchIntervalMs: ms(c.BatchInterval),
		LagSamples:      c.LagSamples,
		DatasetSize:     c.DatasetSize,
		Seed:            c.Seed,
		RelayArgs:       c.RelayArgs,
		Pinned:          c.Pin,
	}
}

// Usage is the CPU the processes and the machine spent during a load and
// its catch-up.
type Usage struct {
	// CPUSeconds is each process's CPU time, by name; the load generator
	// (this process, bridges included) is one of them.
	CPUSeconds map[string]float64 `json:"cpu_seconds"`
	// HostBusy is the fraction of the machine's CPU time that was busy.
	HostBusy float64 `json:"host_busy"`
	// OtherCPUSeconds is busy CPU time no benchmark process accounts for.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// CapacitySeconds is all CPUs' time over the window.
	CapacitySeconds float64 `json:"capacity_cpu_seconds"`
}

func newUsage(u cpuUsage) Usage {
	out := Usage{
		CPUSeconds:      make(map[string]float64, len(u.procs)),
		HostBusy:        u.busyFraction(),
		OtherCPUSeconds: u.other().Seconds(),
		CapacitySeconds: u.total.Seconds(),
	}
	for name, d := range u.procs {
		out.CPUSeconds[name] = d.Seconds()
	}
	return out
}

// TreeBytesResult is the result of TreePhaseBytes.
type TreeBytesResult struct {
	Rate         int     `json:"rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Writes       int64   `json:"writes"`
	Seconds      float64 `json:"seconds"`
	// StreamBytes is the master's replication stream over the phase
	// (master_repl_offset delta).
	StreamBytes int64 `json:"stream_bytes"`
	// CatchUpMs is how long after the last write every replica and relay
	// reached the master's offset.
	CatchUpMs float64     `json:"catch_up_ms"`
	Sites     []SiteBytes `json:"sites"`
	Total     SiteBytes   `json:"total"`
	Usage     Usage       `json:"usage"`
}

// SiteBytes are the bytes a site's links carried, both directions.
type SiteBytes struct {
	Site string `json:"site"`
	// NativeToSite is what the native link carried from site A (the
	// master's stream to S-1); NativeFromSite the other way (S-1's acks).
	NativeToSite   int64 `json:"native_to_site"`
	NativeFromSite int64 `json:"native_from_site"`
	// ArborToSite is what the Arbor link carried from relay-a to relay-S;
	// ArborFromSite the other way (acks).
	ArborToSite   int64 `json:"arbor_to_site"`
	ArborFromSite int64 `json:"arbor_from_site"`
	// NativePerMiB and ArborPerMiB are the link bytes, both directions,
	// per MiB of master stream.
	NativePerMiB float64 `json:"native_bytes_per_stream_mib"`
	ArborPerMiB  float64 `json:"arbor_bytes_per_stream_mib"`
	// Ratio is ArborPerMiB / NativePerMiB.
	Ratio float64 `json:"ratio"`
}

// fill computes the per-MiB figures over stream bytes of master stream.
func (s *SiteBytes) fill(stream int64) {
	mib := float64(stream) / (1 << 20)
	if mib > 0 {
		s.NativePerMiB = float64(s.NativeToSite+s.NativeFromSite) / mib
		s.ArborPerMiB = float64(s.ArborToSite+s.ArborFromSite) / mib
	}
	s.Ratio = ratio(s.ArborPerMiB, s.NativePerMiB)
}

// TreeLagResult is the result of TreePhaseLag.
type TreeLagResult struct {
	Rate         int     `json:"rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Writes       int64   `json:"writes"`
	Probes       int     `json:"probes"`
	// LinkLatencyMs is the one-way latency of the inter-site link both
	// paths cross once; LinkBandwidth its rate each way, in B/s (0:
	// unlimited).
	LinkLatencyMs float64 `json:"link_latency_ms"`
	LinkBandwidth int64   `json:"link_bandwidth_bytes_per_sec"`
	// StreamBytes is the master's stream over the phase; StreamRate its
	// rate during the load, in B/s.
	StreamBytes int64   `json:"stream_bytes"`
	StreamRate  float64 `json:"stream_bytes_per_sec"`
	// NativeLinkRate and ArborLinkRate are what site B's links carried
	// during the load, both directions, in B/s.
	NativeLinkRate float64 `json:"native_link_bytes_per_sec"`
	ArborLinkRate  float64 `json:"arbor_link_bytes_per_sec"`
	// Native is the lag of S-2 in site B on the native chain (M -> link
	// -> S-1 -> S-2), Arbor on the relay path (M -> relay-a -> link ->
	// relay-b -> S-2).
	Native PathLag `json:"native"`
	Arbor  PathLag `json:"arbor"`
	// Paired is Arbor minus native arrival, probe by probe.
	Paired Dist `json:"paired_arbor_minus_native"`
	// NativeBeyondLinkP50/P99 and ArborBeyondLinkP50/P99 are the lags
	// minus the link's latency, in ms.
	NativeBeyondLinkP50 float64 `json:"native_beyond_link_p50_ms"`
	NativeBeyondLinkP99 float64 `json:"native_beyond_link_p99_ms"`
	ArborBeyondLinkP50  float64 `json:"arbor_beyond_link_p50_ms"`
	ArborBeyondLinkP99  float64 `json:"arbor_beyond_link_p99_ms"`
	// RelayHops is the number of relays on the Arbor path; NativeRedisHops
	// the number of redis-server replicas on the native path.
	RelayHops       int `json:"relay_hops"`
	NativeRedisHops int `json:"native_redis_hops"`
	// PerRelayHopP50/P99 charge everything the Arbor path spends beyond
	// the link's latency to its relay hops: (Arbor - link) / RelayHops.
	PerRelayHopP50 float64 `json:"per_relay_hop_p50_ms"`
	PerRelayHopP99 float64 `json:"per_relay_hop_p99_ms"`
	// RelayPath is the relays' own measurement of the Arbor path, without
	// the probes' Redis hops: relay-a's receipt of bytes from the master to
	// relay-b having stored them (nil if it could not be read).
	RelayPath *RelayPathLag `json:"relay_path,omitempty"`
	CatchUpMs float64       `json:"catch_up_ms"`
	Usage     Usage         `json:"usage"`
}

// FullSyncResult is the result of TreePhaseFullSync.
type FullSyncResult struct {
	// DatasetTarget is the bytes of keys and values asked for; DataBytes
	// what the fill wrote, in FillWrites commands (FillCounts by kind).
	DatasetTarget int64            `json:"dataset_target_bytes"`
	DataBytes     int64            `json:"data_bytes"`
	FillWrites    int64            `json:"fill_writes"`
	FillCounts    map[string]int64 `json:"fill_writes_by_kind"`
	FillSeconds   float64          `json:"fill_seconds"`
	Keys          int64            `json:"keys"`
	// UsedMemory and UsedMemoryDataset are the master's INFO memory
	// figures after the fill.
	UsedMemory        int64 `json:"used_memory"`
	UsedMemoryDataset int64 `json:"used_memory_dataset"`
	// RDBBytes is the size of the master's RDB of the dataset, as relay-a
	// stored it.
	RDBBytes      int64 `json:"rdb_bytes"`
	LinkBandwidth int64 `json:"link_bandwidth_bytes_per_sec"`
	// ReplicaDisklessLoad is the timed replicas' repl-diskless-load.
	ReplicaDisklessLoad string `json:"replica_diskless_load,omitempty"`
	// NativeSeconds is from REPLICAOF <link> on a fresh replica in site B
	// to its link up at the master's offset; NativeLinkBytes what the
	// link carried, both directions.
	NativeSeconds   float64 `json:"native_seconds"`
	NativeLinkBytes int64   `json:"native_link_bytes"`
	// RelayASeconds is how long relay-a took to take its snapshot from
	// the master locally (before the timed part; not compared).
	RelayASeconds float64 `json:"relay_a_seconds"`
	// ArborRelaySeconds is from starting a fresh relay-b (following
	// relay-a through the link) to its link up at the master's offset;
	// ArborReplicaSeconds from the same start (a fresh replica does
	// REPLICAOF relay-b as relay-b starts) to that replica in sync;
	// ArborSeconds the later of the two: the site's full sync.
	ArborRelaySeconds   float64 `json:"arbor_relay_seconds"`
	ArborReplicaSeconds float64 `json:"arbor_replica_seconds"`
	ArborSeconds        float64 `json:"arbor_seconds"`
	ArborLinkBytes      int64   `json:"arbor_link_bytes"`
	// Ratio is ArborSeconds / NativeSeconds.
	Ratio float64 `json:"ratio"`
	// LinkFloorSeconds is the time to push ArborLinkBytes (the compressed
	// RDB, once) through the link at its rate: no full sync of the site
	// over that link can be faster. FloorRatio is it / NativeSeconds. 0
	// with an unlimited link.
	LinkFloorSeconds float64 `json:"link_floor_seconds"`
	FloorRatio       float64 `json:"floor_ratio"`
}

// RelayPathLag is what relay-b reports (INFO arbor_tree_lag_*) for the
// last 10 s: the time from relay-a receiving stream bytes from the master
// to relay-b storing them, link latency included, in ms; PerHop* subtract
// the link's latency and split the rest between the two relays.
type RelayPathLag struct {
	Frames    int64   `json:"frames"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	PerHopP50 float64 `json:"per_hop_p50_ms"`
	PerHopP99 float64 `json:"per_hop_p99_ms"`
	// LinkLate is how late site B's Arbor link (the internal/wan bridge)
	// delivered relay-a's bytes after their due time during the phase: the
	// simulator's own jitter, part of the relays' clocks' figures.
	LinkLate *LinkLateness `json:"link_lateness,omitempty"`
}

// LinkLateness summarises wan.Lateness in ms.
type LinkLateness struct {
	Chunks int64   `json:"chunks"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// targets checks the phases that ran.
func (r *TreeReport) targets() []Target {
	var ts []Target
	if b := r.Bytes; b != nil {
		ts = append(ts, atMost("inter-site bytes Arbor/native (steady load)", b.Total.Ratio, TargetTreeBytesRatio, ""))
	}
	if l := r.Lag; l != nil {
		if rp := l.RelayPath; rp != nil && rp.Frames > 0 {
			ts = append(ts, atMost(fmt.Sprintf("lag added per relay hop beyond the link, p99, relays' own clocks (at %.0f writes/s)", l.AchievedRate),
				rp.PerHopP99, TargetHopP99, "ms"))
		}
		ts = append(ts, atMost(fmt.Sprintf("lag per relay hop beyond the link, p99, end to end incl. B-2 (at %.0f writes/s)", l.AchievedRate),
			l.PerRelayHopP99, TargetHopP99, "ms"))
	}
	if f := r.FullSync; f != nil {
		ts = append(ts, atMost(fmt.Sprintf("full sync time Arbor/native (%s of data)", sizeString(f.DataBytes)), f.Ratio, TargetFullSyncRatio, ""))
	}
	return ts
}

// Err reports the correctness failures of the run, as opposed to missed
// performance targets: a replica whose digest differs from its master's,
// or lag probes that never reached a replica.
func (r *TreeReport) Err() error {
	var errs []error
	for _, d := range r.Digests {
		if !d.Match {
			errs = append(errs, fmt.Errorf("%s: %s digest %s, %s digest %s", d.Phase, d.Replica, d.ReplicaDigest, d.Master, d.MasterDigest))
		}
	}
	for _, l := range append([]*TreeLagResult{r.Lag}, r.LagSweep...) {
		if l != nil && (l.Native.Missing > 0 || l.Arbor.Missing > 0) {
			errs = append(errs, fmt.Errorf("lag probes at %d writes/s missing: native B-2 %d, Arbor B-2 %d of %d",
				l.Rate, l.Native.Missing, l.Arbor.Missing, l.Probes))
		}
	}
	return errors.Join(errs...)
}

// rateString renders a link rate in bytes per second.
func rateString(bps int64) string {
	if bps <= 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%.0f Mbit/s (%.2f MB/s)", float64(bps)*8/1e6, float64(bps)/1e6)
}

// WriteText renders the report as tables.
func (r *TreeReport) WriteText(w io.Writer) error {
	p := &printer{w: w}
	s := r.Settings
	p.f("Arbor relay tree benchmark: %d CPUs (GOMAXPROCS %d), redis %s, %s\n", r.Host.CPUs, r.Host.GOMAXPROCS, r.Host.RedisVersion, r.Host.GoVersion)
	p.f("seed shape on loopback: master M and relay-a in site A; sites B and C each behind their own links of %s each way, +%.1f ms one way (internal/wan bridges: one native and one Arbor link per site)\n",
		rateString(s.BandwidthBps), s.LatencyMs)
	p.f("  native: M -> [link] -> S-1 -> S-2 in each site\n")
	p.f("  Arbor:  M -> relay-a -> [link, gRPC, %s] -> relay-S -> S-1 and S-2\n", s.Compression)
	p.f("workload: %s (JSON profiles, log lines, INCR counters, HSET sessions), %d keys per kind; masters with client-output-buffer-limit replica 0 0 0\n", s.Mix, s.Keyspace)
	if len(s.RelayArgs) > 0 {
		p.f("relay args: %s\n", strings.Join(s.RelayArgs, " "))
	}
	if s.Pinned {
		p.f("pinned: the 3 relays on CPU %d; master, replicas, load generator and link bridges on CPU %d (as if the relays ran on hosts of their own)\n", consumerCPU, masterCPU)
	}
	if b := r.Bytes; b != nil {
		p.f("\n1. Inter-site bytes per MiB of master stream: %d writes/s for %.1f s (achieved %.0f/s, %d writes), %s of stream, one master feeding both paths\n",
			b.Rate, b.Seconds, b.AchievedRate, b.Writes, sizeString(b.StreamBytes))
		tw := p.table()
		fmt.Fprintln(tw, "  site\tnative to site\tnative from site\tArbor to site\tArbor from site\tnative B/MiB\tArbor B/MiB\tArbor/native")
		for _, x := range append(slices.Clone(b.Sites), b.Total) {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.3f\n", x.Site, sizeString(x.NativeToSite), sizeString(x.NativeFromSite),
				sizeString(x.ArborToSite), sizeString(x.ArborFromSite), x.NativePerMiB, x.ArborPerMiB, x.Ratio)
		}
		tw.Flush()
		p.f("  (link bytes are payload through each site's bridges, both directions, load plus catch-up (%.0f ms); stream = master_repl_offset delta)\n", b.CatchUpMs)
		p.usage(b.Usage)
	}
	if l := r.Lag; l != nil {
		p.f("\n2. Lag of S-2 in site B at %d writes/s (achieved %.0f/s, %d writes, %d probes; link +%.1f ms one way)\n",
			l.Rate, l.AchievedRate, l.Writes, l.Probes, l.LinkLatencyMs)
		p.f("  master stream %.2f MB/s; site B link carried %.2f MB/s native, %.2f MB/s Arbor; link %s\n",
			l.StreamRate/1e6, l.NativeLinkRate/1e6, l.ArborLinkRate/1e6, rateString(l.LinkBandwidth))
		if l.LinkBandwidth > 0 && l.StreamRate > 0.95*float64(l.LinkBandwidth) {
			p.f("  note: the native stream needs %.0f%% of the link: native lag is mostly queueing behind the link, not per-hop cost\n",
				100*l.StreamRate/float64(l.LinkBandwidth))
		}
		tw := p.table()
		fmt.Fprintln(tw, "  path\tp50 ms\tp99 ms\tmax ms\tmean ms\treceived\tmissing\tp50 - link\tp99 - link")
		for _, x := range []struct {
			name          string
			pl            PathLag
			beyond50, b99 float64
		}{
			{"native  M -> [link] -> B-1 -> B-2", l.Native, l.NativeBeyondLinkP50, l.NativeBeyondLinkP99},
			{"Arbor   M -> relay-a -> [link] -> relay-b -> B-2", l.Arbor, l.ArborBeyondLinkP50, l.ArborBeyondLinkP99},
		} {
			fmt.Fprintf(tw, "  %s\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%.3f\t%.3f\n", x.name, x.pl.P50, x.pl.P99, x.pl.Max, x.pl.Mean, x.pl.Count, x.pl.Missing, x.beyond50, x.b99)
		}
		fmt.Fprintf(tw, "  Arbor - native, probe by probe\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t\t\t\n", l.Paired.P50, l.Paired.P99, l.Paired.Max, l.Paired.Mean, l.Paired.Count)
		tw.Flush()
		p.f("  per relay hop beyond the link: p50 %.3f ms, p99 %.3f ms = (Arbor p99 %.3f - link %.1f) / %d relay hops\n",
			l.PerRelayHopP50, l.PerRelayHopP99, l.Arbor.P99, l.LinkLatencyMs, l.RelayHops)
		if rp := l.RelayPath; rp != nil {
			p.f("  relays' own clocks (relay-a got the bytes from M -> relay-b stored them; %d frames, last 10 s): p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
				rp.Frames, rp.P50, rp.P99, rp.Max)
			p.f("  per relay hop beyond the link by the relays' clocks: p50 %.3f ms, p99 %.3f ms = (p99 - link %.1f) / %d relay hops\n",
				rp.PerHopP50, rp.PerHopP99, l.LinkLatencyMs, l.RelayHops)
			if ll := rp.LinkLate; ll != nil {
				p.f("  of which the link simulator's own lateness (site B's Arbor bridge delivering after the due time; %d chunks): p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
					ll.Chunks, ll.P50, ll.P99, ll.Max)
				p.f("  per relay hop beyond the link and its simulator's lateness, estimated: p50 %.3f ms, p99 %.3f ms = (p - link - lateness p) / %d (not judged: quantiles do not subtract exactly)\n",
					(rp.P50-l.LinkLatencyMs-ll.P50)/float64(l.RelayHops), (rp.P99-l.LinkLatencyMs-ll.P99)/float64(l.RelayHops), l.RelayHops)
			}
		}
		p.f("  native chain beyond the link: p99 %.3f ms over %d redis-server hops (%.3f ms per hop)\n",
			l.NativeBeyondLinkP99, l.NativeRedisHops, l.NativeBeyondLinkP99/float64(l.NativeRedisHops))
		p.f("  method: SET lag:<seq> probes go into the load at the master; the time each one's keyspace notification\n")
		p.f("  reaches a subscriber on B-2 of each path is its lag. Both paths cross the link once, so subtracting the\n")
		p.f("  link's one-way latency leaves what the hops cost; for Arbor all of it (relay-a, gRPC framing and batching,\n")
		p.f("  relay-b, B-2's own apply and notification) is charged to the %d relays, an upper bound per relay hop.\n", l.RelayHops)
		p.usage(l.Usage)
	}
	if len(r.LagSweep) > 0 {
		p.f("\n2b. Lag by write rate (same tree and method, %.1f s each; the first row is section 2)\n", s.DurationSeconds)
		tw := p.table()
		fmt.Fprintln(tw, "  rate\tachieved/s\tstream MB/s\tmachine busy\tnot ours\tnative p50\tnative p99\tArbor p50\tArbor p99\tArbor-native p99 (paired)\tper relay hop p99\t<= 2 ms")
		for _, x := range append([]*TreeLagResult{r.Lag}, r.LagSweep...) {
			if x == nil {
				continue
			}
			ok := "yes"
			if x.PerRelayHopP99 > TargetHopP99 {
				ok = "no"
			}
			fmt.Fprintf(tw, "  %d\t%.0f\t%.2f\t%.0f%%\t%.0f%%\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\n", x.Rate, x.AchievedRate, x.StreamRate/1e6,
				100*x.Usage.HostBusy, 100*ratio(x.Usage.OtherCPUSeconds, x.Usage.CapacitySeconds),
				x.Native.P50, x.Native.P99, x.Arbor.P50, x.Arbor.P99, x.Paired.P99, x.PerRelayHopP99, ok)
		}
		tw.Flush()
		p.f("  (lags in ms, S-2 of site B; per relay hop = (Arbor p99 - %.1f ms link) / 2; \"not ours\": share of the machine's CPU\n", s.LatencyMs)
		p.f("  busy outside the benchmark's processes (other jobs, interrupts); the target is checked at %d writes/s only)\n", s.LagRate)
	}
	if f := r.FullSync; f != nil {
		p.f("\n3. Full sync of a %s dataset over one %s link\n", sizeString(f.DataBytes), rateString(f.LinkBandwidth))
		var kinds []string
		for _, k := range AllKinds {
			if n := f.FillCounts[k]; n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
		}
		p.f("  fill: %d writes (%s) in %.1f s, %d keys; master used_memory %s (dataset %s); RDB %s\n",
			f.FillWrites, strings.Join(kinds, ", "), f.FillSeconds, f.Keys, sizeString(f.UsedMemory), sizeString(f.UsedMemoryDataset), sizeString(f.RDBBytes))
		tw := p.table()
		fmt.Fprintln(tw, "  path\tseconds\tlink bytes\tlink MB/s")
		fmt.Fprintf(tw, "  native: fresh B-1 REPLICAOF M through the link, to link up at the master's offset\t%.2f\t%s\t%.2f\n",
			f.NativeSeconds, sizeString(f.NativeLinkBytes), float64(f.NativeLinkBytes)/1e6/f.NativeSeconds)
		fmt.Fprintf(tw, "  Arbor: fresh relay-b following relay-a through the link, to in sync\t%.2f\t%s\t%.2f\n",
			f.ArborRelaySeconds, sizeString(f.ArborLinkBytes), float64(f.ArborLinkBytes)/1e6/f.ArborRelaySeconds)
		fmt.Fprintf(tw, "         and a fresh B-1 REPLICAOF relay-b as it starts (local), to in sync\t%.2f\t\t\n", f.ArborReplicaSeconds)
		fmt.Fprintf(tw, "  Arbor site (both in sync)\t%.2f\t\t\n", f.ArborSeconds)
		if f.LinkFloorSeconds > 0 {
			fmt.Fprintf(tw, "  floor: Arbor's link bytes through the link once at its rate\t%.2f\t\t\n", f.LinkFloorSeconds)
		}
		tw.Flush()
		p.f("  ratio Arbor/native: %.3f, floor/native %.3f  (replicas' repl-diskless-load %s; relay-a took its snapshot from the master locally in %.1f s beforehand, not counted)\n",
			f.Ratio, f.FloorRatio, f.ReplicaDisklessLoad, f.RelayASeconds)
	}
	if len(r.Digests) > 0 {
		p.f("\nConsistency (DEBUG DIGEST of every replica against its master at the end of each phase)\n")
		for _, g := range groupDigests(r.Digests) {
			var names, bad []string
			for _, d := range g {
				names = append(names, d.Replica)
				if !d.Match {
					bad = append(bad, fmt.Sprintf("%s %s", d.Replica, d.ReplicaDigest))
				}
			}
			mark := "OK  "
			if len(bad) > 0 {
				mark = "FAIL"
			}
			p.f("  %s %-10s %d/%d replicas = %s %s: %s\n", mark, g[0].Phase, len(g)-len(bad), len(g), g[0].Master, g[0].MasterDigest, strings.Join(names, " "))
			for _, b := range bad {
				p.f("       differs: %s\n", b)
			}
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

// usage prints the CPU figures of a load, busiest process first.
func (p *printer) usage(u Usage) {
	type pc struct {
		name string
		sec  float64
	}
	var ps []pc
	for n, s := range u.CPUSeconds {
		ps = append(ps, pc{n, s})
	}
	slices.SortFunc(ps, func(a, b pc) int {
		switch {
		case a.sec > b.sec:
			return -1
		case a.sec < b.sec:
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	parts := make([]string, 0, len(ps))
	for _, x := range ps {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.name, x.sec))
	}
	p.f("  CPU s (load and catch-up; machine %.0f%% busy, %.2f s unattributed; %s includes the in-process link bridges): %s\n",
		100*u.HostBusy, u.OtherCPUSeconds, selfName, strings.Join(parts, ", "))
	p.noisy(u.OtherCPUSeconds, u.CapacitySeconds)
}

// groupDigests groups consecutive checks of the same phase.
func groupDigests(ds []DigestCheck) [][]DigestCheck {
	var out [][]DigestCheck
	for _, d := range ds {
		if n := len(out); n > 0 && out[n-1][0].Phase == d.Phase {
			out[n-1] = append(out[n-1], d)
			continue
		}
		out = append(out, []DigestCheck{d})
	}
	return out
}
