package bench

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/svgplot"
)

// DocName is the report WriteDoc writes in its directory; its figures and
// the measured data go to DocAssets beside it.
const (
	DocName   = "benchmarks.md"
	DocAssets = "benchmarks"
)

// ReadResults reads a report WriteDoc saved (benchmarks/results.json), to
// write its document again.
func ReadResults(path string) (*AllReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r AllReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteDoc writes r as dir/benchmarks.md with its SVG figures and the
// measured data (results.json) under dir/benchmarks/. Every figure and
// table is drawn from r; a benchmark missing from r is said to be missing.
func WriteDoc(dir string, r *AllReport) error {
	assets := filepath.Join(dir, DocAssets)
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return err
	}
	d := &docWriter{assets: assets}
	d.write(r)
	if d.err != nil {
		return d.err
	}
	data, err := json.MarshalIndent(keptTraces(r), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(assets, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, DocName), d.md.Bytes(), 0o644)
}

// keptTraces returns r with only the lag traces the document draws (each
// failover system's median run), so results.json stays small; written
// again from it, the document is the same.
func keptTraces(r *AllReport) *AllReport {
	out := *r
	trim := func(fr *FailoverReport) *FailoverReport {
		if fr == nil {
			return nil
		}
		c := *fr
		c.Systems = slices.Clone(fr.Systems)
		for i, s := range c.Systems {
			median, ok := medianRun(s.PerRun)
			runs := slices.Clone(s.PerRun)
			for j := range runs {
				if !ok || runs[j].Trace != median.Trace {
					runs[j].Trace = nil
				}
			}
			c.Systems[i].PerRun = runs
		}
		return &c
	}
	out.Failover, out.Switchover = trim(r.Failover), trim(r.Switchover)
	return &out
}

// docWriter builds the markdown and writes the figures; the first error
// sticks.
type docWriter struct {
	assets string
	md     bytes.Buffer
	err    error
}

func (d *docWriter) f(format string, args ...any) { fmt.Fprintf(&d.md, format, args...) }

// figure writes an SVG chart and links it from the markdown.
func (d *docWriter) figure(name, alt string, chart interface{ SVG() ([]byte, error) }) {
	svg, err := chart.SVG()
	if err != nil {
		d.f("_(%s: no figure: %v)_\n\n", alt, err)
		return
	}
	if err := os.WriteFile(filepath.Join(d.assets, name), svg, 0o644); err != nil && d.err == nil {
		d.err = err
	}
	d.f("![%s](%s/%s)\n\n", alt, DocAssets, name)
}

// table writes a markdown table.
func (d *docWriter) table(header []string, rows [][]string) {
	d.f("| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	for _, r := range rows {
		d.f("| %s |\n", strings.Join(r, " | "))
	}
	d.f("\n")
}

// text includes a benchmark's own text report.
func (d *docWriter) text(title string, rep interface{ WriteText(io.Writer) error }) {
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		return
	}
	d.f("<details><summary>%s</summary>\n\n```text\n%s```\n\n</details>\n\n", title, b.String())
}

func (d *docWriter) write(r *AllReport) {
	m := r.Machine
	d.f("# Benchmarks\n\n")
	d.f("Written by `arbor bench all` on %s (UTC), %s to %s. Every table and figure below is drawn\n",
		m.Started.Format("2006-01-02"), m.Started.Format("15:04"), m.Ended.Format("15:04"))
	d.f("from the measurements (kept in [`%s/results.json`](%s/results.json)); rerun\n", DocAssets, DocAssets)
	d.f("`make bench-all` to measure your own machine. All processes run on one machine over loopback,\n")
	d.f("with inter-site links simulated (`internal/wan`): absolute numbers say more about this machine\n")
	d.f("than about a deployment; the comparisons between Arbor and native Redis or Sentinel, measured\n")
	d.f("side by side under the same load, are the point.\n\n")

	d.f("## Machine\n\n")
	d.table([]string{"", ""}, [][]string{
		{"CPU", fmt.Sprintf("%s, %d logical CPUs (GOMAXPROCS %d)", orDash(m.CPUModel), m.CPUs, m.GOMAXPROCS)},
		{"Load average (1, 5, 15 min)", fmt.Sprintf("start %s · end %s", loadText(m.LoadStart), loadText(m.LoadEnd))},
		{"Kernel", orDash(m.Kernel)},
		{"Redis", orDash(m.RedisVersion)},
		{"Go", m.GoVersion},
		{"Arbor commit", "`" + orDash(m.Commit) + "`"},
	})
	if m.LoadStart[0] > float64(m.CPUs)/2 || m.LoadEnd[0] > float64(m.CPUs)/2 {
		d.f("The machine was shared with other work during the run (load average above half its CPUs):\n")
		d.f("expect latencies and CPU figures to be noisier and higher than on an idle machine.\n\n")
	}
	if len(r.Ran) > 0 {
		var rows [][]string
		for _, b := range r.Ran {
			rows = append(rows, []string{b.Name, b.Started.Format("15:04:05"), b.Ended.Sub(b.Started).Round(time.Second).String(),
				loadText(b.LoadStart), loadText(b.LoadEnd)})
		}
		d.table([]string{"benchmark", "started (UTC)", "took", "load average at its start", "at its end"}, rows)
		for _, b := range r.Ran {
			if b.Commit != "" && b.Commit != m.Commit {
				d.f("`%s` was measured again on its own on %s (UTC), at commit\n`%s` (`%s`):\n",
					b.Name, b.Started.Format("2006-01-02 15:04"), b.Commit, r.Commands[b.Name])
				d.f("its row above and its section below are from that run, the rest from the run of `bench all`.\n\n")
			}
		}
	}
	d.f("Commands run:\n\n```sh\n")
	for _, b := range AllBenches {
		if c := r.Commands[b]; c != "" {
			d.f("%s\n", c)
		}
	}
	d.f("```\n\n")
	if failed := r.Failed(); len(failed) > 0 {
		d.f("**Failed in this run:**\n\n")
		for _, f := range failed {
			d.f("- %s\n", f)
		}
		d.f("\n")
	}

	d.failover(r.Failover)
	d.switchover(r.Switchover)
	d.tree(r.Tree)
	d.relayFailover(r.RelayFailover, r.ranOf(BenchRelayFailover))
	d.relay(r.Relay)
}

// relayFailover writes the section of the relay failover benchmark; ran
// says when it ran, if known.
func (d *docWriter) relayFailover(r *RelayFailoverReport, ran *BenchRun) {
	d.f("## Relay failover: children move off a killed relay\n\n")
	if r == nil || len(r.Runs) == 0 {
		d.f("Not measured in this run.\n\n")
		return
	}
	if ran != nil && ran.Commit != "" {
		d.f("Measured on its own on %s (UTC), at commit\n`%s`, apart from the rest of this report.\n\n",
			ran.Started.Format("2006-01-02 15:04"), ran.Commit)
	}
	d.f("`arbor bench relay-failover`: %d runs, fresh processes each: a master with\n", len(r.Runs))
	d.f("`min-replicas-to-write 1`, two root relays following it, two child relays on the upstream list\n")
	d.f("of both (`%s`), a replica under each; under steady writes one root\n", r.bounds())
	d.f("relay is killed with SIGKILL. *Children streaming* is from the kill to both child relays streaming\n")
	d.f("from the other root; *write stall* the longest gap between two writes the master accepted.\n\n")
	digests := "equal"
	if !r.Digests {
		digests = "**DIFFER**"
	}
	d.table([]string{"", "p50", "p99", "max"}, [][]string{
		{"children streaming again", msText(r.Streaming.P50), msText(r.Streaming.P99), msText(r.Streaming.Max)},
		{"longest write stall", msText(r.Stall.P50), msText(r.Stall.P99), msText(r.Stall.Max)},
	})
	d.f("Writes refused: %d · full syncs anywhere: %d · digests: %s.\n\n", r.WriteErrors, r.FullSyncs, digests)
	chart := &svgplot.LineChart{Title: fmt.Sprintf("Relay failover over %d runs (SIGKILL of a root relay)", len(r.Runs)),
		XLabel: "ms from the kill", YLabel: "fraction of runs", YMin0: true}
	var st, stall []float64
	for _, run := range r.Runs {
		st = append(st, run.StreamingMs)
		stall = append(stall, run.StallMs)
	}
	x, y := ecdf(st)
	chart.Series = append(chart.Series, svgplot.Series{Name: "children streaming again", X: x, Y: y})
	x, y = ecdf(stall)
	chart.Series = append(chart.Series, svgplot.Series{Name: "longest write stall", X: x, Y: y})
	d.figure("relay-failover.svg", "relay failover time distribution", chart)
	d.text("Full text report of `arbor bench relay-failover`", r)
}

func (d *docWriter) failover(r *FailoverReport) {
	d.f("## Failover: Arbor vs Sentinel\n\n")
	if r == nil || len(r.Systems) == 0 {
		d.f("Not measured in this run.\n\n")
		return
	}
	kill := "its redis-server"
	if r.Kill == "host" {
		kill = "its host (redis-server and node agent)"
	}
	d.f("`arbor bench failover`: %d runs per system, fresh processes each: a master, a backup and two\n", r.Runs)
	d.f("replicas; a writer SETs to whatever address the system names as the master, one attempt per\n")
	d.f("millisecond; after 500 ms the master loses %s to `kill -9`. *Write accepted* is from the kill\n", kill)
	d.f("to the first write acknowledged by the new master; *replicas streaming* to every other server\n")
	d.f("replicating from it with its link up; *write pause* from the writer's last write acknowledged by\n")
	d.f("the old master to its first acknowledged by the new one.\n\n")
	var rows [][]string
	for _, s := range r.Systems {
		rows = append(rows, []string{s.Name, s.Settings, fmt.Sprintf("%d of %d", len(s.PerRun), len(s.PerRun)+len(s.Failed)),
			msText(s.WriteAccepted.P50), msText(s.WriteAccepted.P99), msText(s.WriteAccepted.Max),
			msText(s.ReplicasStreaming.P50), msText(s.ReplicasStreaming.P99), msText(s.WritePause.P50), msText(s.WritePause.P99),
			fmt.Sprintf("%d of %d", s.LostWrites, s.AckedWrites), fmt.Sprint(s.FullSyncs)})
	}
	for _, nr := range r.NotRun {
		rows = append(rows, []string{nr.Name, "not run: " + nr.Why, "", "", "", "", "", "", "", "", "", ""})
	}
	d.table([]string{"system", "settings", "runs failed over", "write accepted p50", "p99", "max", "replicas streaming p50", "p99",
		"write pause p50", "p99", "acked writes lost", "full syncs"}, rows)

	// The distribution: each system's runs as an empirical CDF.
	cdf := &svgplot.LineChart{Title: "Failover time over " + fmt.Sprint(r.Runs) + " runs per system (kill -9 of the master)",
		XLabel: "ms from the kill", YLabel: "fraction of runs", YMin0: true}
	for _, s := range r.Systems {
		w, st := make([]float64, 0, len(s.PerRun)), make([]float64, 0, len(s.PerRun))
		for _, run := range s.PerRun {
			w = append(w, run.WriteAcceptedMs)
			st = append(st, run.ReplicasStreamingMs)
		}
		if len(w) == 0 {
			continue
		}
		x, y := ecdf(w)
		cdf.Series = append(cdf.Series, svgplot.Series{Name: s.Name + ": write accepted", X: x, Y: y})
		x, y = ecdf(st)
		cdf.Series = append(cdf.Series, svgplot.Series{Name: s.Name + ": replicas streaming", X: x, Y: y})
	}
	d.f("The distribution over the runs (each step is one run):\n\n")
	d.figure("failover-cdf.svg", "failover time distribution, Arbor vs Sentinel", cdf)

	d.f("### Lag through a failover\n\n")
	d.f("Each server's replication offset sampled every %.0f ms through the run with the median\n", ms(lagTraceEvery))
	d.f("write-accepted time, as bytes behind the furthest server of that sample (the master until the\n")
	d.f("kill, then the promoted backup); a gap is a server that did not answer (the killed master).\n\n")
	for _, s := range r.Systems {
		run, ok := medianRun(s.PerRun)
		if !ok {
			continue
		}
		chart := &svgplot.LineChart{
			Title:  fmt.Sprintf("%s: lag through a failover (the run with the median failover time)", s.Name),
			XLabel: "ms from the kill", YLabel: "bytes behind the furthest server", YMin0: true,
			Markers: []svgplot.Marker{{X: 0, Label: "kill -9"}, {X: run.WriteAcceptedMs, Label: "write accepted"}},
		}
		if run.ReplicasStreamingMs-run.WriteAcceptedMs > 50 {
			chart.Markers = append(chart.Markers, svgplot.Marker{X: run.ReplicasStreamingMs, Label: "streaming"})
		}
		for i, name := range run.Trace.Servers {
			ser := svgplot.Series{Name: name}
			for _, smp := range run.Trace.Samples {
				ser.X = append(ser.X, smp.Ms)
				v := float64(smp.Lag[i])
				if smp.Lag[i] < 0 {
					v = math.NaN()
				}
				ser.Y = append(ser.Y, v)
			}
			chart.Series = append(chart.Series, ser)
		}
		d.figure("failover-lag-"+s.Name+".svg", s.Name+": lag over time through a failover", chart)
	}
	d.text("Full text report of `arbor bench failover`", r)
}

// switchover writes the planned-switchover section: the write pause.
func (d *docWriter) switchover(r *FailoverReport) {
	d.f("## Planned switchover: the write pause\n\n")
	if r == nil || len(r.Systems) == 0 {
		d.f("Not measured in this run.\n\n")
		return
	}
	d.f("`arbor bench failover --switchover`: the same set-up, %d runs per system, but nothing is killed:\n", r.Runs)
	d.f("each run asks for a planned switchover to the backup (Arbor: a switchover request, as `arbor\n")
	d.f("switchover` makes; Sentinel: `SENTINEL FAILOVER`, which does not pause writes on the old master).\n")
	d.f("The *write pause* is from the writer's last write acknowledged by the old master to its first\n")
	d.f("acknowledged by the new one; times run from the request.\n\n")
	var rows [][]string
	chart := &svgplot.LineChart{Title: fmt.Sprintf("Write pause of a planned switchover over %d runs per system", r.Runs),
		XLabel: "write pause, ms", YLabel: "fraction of runs", YMin0: true}
	for _, s := range r.Systems {
		rows = append(rows, []string{s.Name, fmt.Sprintf("%d of %d", len(s.PerRun), len(s.PerRun)+len(s.Failed)),
			msText(s.WritePause.P50), msText(s.WritePause.P99), msText(s.WritePause.Max),
			msText(s.WriteAccepted.P50), msText(s.ReplicasStreaming.P50),
			fmt.Sprintf("%d of %d", s.LostWrites, s.AckedWrites), fmt.Sprint(s.FullSyncs)})
		var ps []float64
		for _, run := range s.PerRun {
			ps = append(ps, run.WritePauseMs)
		}
		if len(ps) > 0 {
			x, y := ecdf(ps)
			chart.Series = append(chart.Series, svgplot.Series{Name: s.Name, X: x, Y: y})
		}
	}
	for _, nr := range r.NotRun {
		rows = append(rows, []string{nr.Name, "not run: " + nr.Why, "", "", "", "", "", "", ""})
	}
	d.table([]string{"system", "runs switched over", "write pause p50", "p99", "max", "write accepted p50", "replicas streaming p50",
		"acked writes lost", "full syncs"}, rows)
	d.figure("switchover-pause.svg", "switchover write-pause distribution, Arbor vs Sentinel", chart)
	d.text("Full text report of `arbor bench failover --switchover`", r)
}

func (d *docWriter) tree(r *TreeReport) {
	d.f("## Across sites: the relay tree vs native replication\n\n")
	if r == nil {
		d.f("Not measured in this run.\n\n")
		return
	}
	st := r.Settings
	d.f("`arbor bench tree`: the seed shape, master in site A, sites B and C behind simulated inter-site\n")
	d.f("links of %s each way with %.0f ms one-way latency; native replication (a replica per remote\n", rateText(st.BandwidthBps), st.LatencyMs)
	d.f("site following the master through the link, a second one following it) side by side with\n")
	d.f("Arbor (relay-a next to the master, a relay per remote site following it through the link with\n")
	d.f("%s compression, both replicas following the site's relay). Load: realistic text (%s).\n\n", st.Compression, st.Mix)
	if b := r.Bytes; b != nil {
		d.f("### Inter-site bytes\n\n")
		d.f("%d writes/s for %.0f s (%s of master stream); bytes through each site's links, both directions:\n\n",
			b.Rate, b.Seconds, sizeString(b.StreamBytes))
		var rows [][]string
		chart := &svgplot.BarChart{Title: "Inter-site bytes per MiB of master stream", YLabel: "KiB per MiB of stream",
			Format: func(v float64) string { return fmt.Sprintf("%.0f", v) }}
		nat, arb := svgplot.BarSeries{Name: "native"}, svgplot.BarSeries{Name: "Arbor (" + st.Compression + ")"}
		for _, s := range append(slices.Clone(b.Sites), b.Total) {
			name := "site " + s.Site
			if s.Site == b.Total.Site {
				name = "total"
			}
			rows = append(rows, []string{name, sizeString(s.NativeToSite + s.NativeFromSite), sizeString(s.ArborToSite + s.ArborFromSite),
				fmt.Sprintf("%.0f KiB", s.NativePerMiB/1024), fmt.Sprintf("%.0f KiB", s.ArborPerMiB/1024), fmt.Sprintf("%.3f", s.Ratio)})
			chart.Groups = append(chart.Groups, name)
			nat.Values = append(nat.Values, s.NativePerMiB/1024)
			arb.Values = append(arb.Values, s.ArborPerMiB/1024)
		}
		chart.Series = []svgplot.BarSeries{nat, arb}
		d.table([]string{"", "native bytes", "Arbor bytes", "native per MiB of stream", "Arbor per MiB", "Arbor / native"}, rows)
		d.figure("intersite-bytes.svg", "inter-site bytes, Arbor vs native", chart)
	}
	lags := slices.DeleteFunc(append([]*TreeLagResult{r.Lag}, r.LagSweep...), func(l *TreeLagResult) bool { return l == nil })
	if len(lags) > 0 {
		d.f("### Lag to a replica in site B\n\n")
		d.f("Lag probes (a SET timed through keyspace notifications) seen on site B's second replica, on\n")
		d.f("both paths, at each write rate; *per relay hop* charges what the Arbor path spends beyond the\n")
		d.f("link's latency to its relays.\n\n")
		var rows [][]string
		chart := &svgplot.BarChart{Title: "p99 lag to site B's second replica", YLabel: "ms",
			Format: func(v float64) string { return fmt.Sprintf("%.1f", v) }}
		np, ap := svgplot.BarSeries{Name: "native p99"}, svgplot.BarSeries{Name: "Arbor p99"}
		for _, l := range lags {
			rows = append(rows, []string{fmt.Sprintf("%d (achieved %.0f)", l.Rate, l.AchievedRate),
				msText(l.Native.P50), msText(l.Native.P99), msText(l.Arbor.P50), msText(l.Arbor.P99),
				msText(l.PerRelayHopP99), fmt.Sprint(l.Probes)})
			chart.Groups = append(chart.Groups, fmt.Sprintf("%d writes/s", l.Rate))
			np.Values = append(np.Values, l.Native.P99)
			ap.Values = append(ap.Values, l.Arbor.P99)
		}
		chart.Series = []svgplot.BarSeries{np, ap}
		d.table([]string{"writes/s", "native p50", "native p99", "Arbor p50", "Arbor p99", "per relay hop p99", "probes"}, rows)
		d.figure("tree-lag.svg", "lag to site B, Arbor vs native", chart)
	}
	if fs := r.FullSync; fs != nil {
		d.f("### Full sync of a new site\n\n")
		d.f("A master filled with %s of keys and values (RDB %s), then a fresh replica in site B syncing\n",
			sizeString(fs.DataBytes), sizeString(fs.RDBBytes))
		d.f("from the master through the link (native), versus a fresh relay in site B syncing from relay-a\n")
		d.f("through the link and a fresh replica syncing from it locally, asking it as it starts (Arbor;\n")
		d.f("both timed from relay-b's start, the site is synced when both are; the floor is Arbor's link bytes\n")
		d.f("through the link once at its rate).\n\n")
		d.table([]string{"", "native", "Arbor relay-b", "Arbor replica", "Arbor site", "Arbor / native", "floor", "floor / native"}, [][]string{
			{"seconds", fmt.Sprintf("%.2f", fs.NativeSeconds), fmt.Sprintf("%.2f", fs.ArborRelaySeconds),
				fmt.Sprintf("%.2f", fs.ArborReplicaSeconds), fmt.Sprintf("%.2f", fs.ArborSeconds), fmt.Sprintf("%.2f", fs.Ratio),
				fmt.Sprintf("%.2f", fs.LinkFloorSeconds), fmt.Sprintf("%.2f", fs.FloorRatio)},
			{"link bytes", sizeString(fs.NativeLinkBytes), sizeString(fs.ArborLinkBytes), "", "", "", "", ""},
		})
		d.figure("fullsync.svg", "full-sync time, Arbor vs native", &svgplot.BarChart{
			Title: "Full sync of a new replica in site B (" + sizeString(fs.DataBytes) + " of data)", YLabel: "seconds",
			Groups: []string{"native", "Arbor"},
			Series: []svgplot.BarSeries{
				{Name: "through the link", Values: []float64{fs.NativeSeconds, fs.ArborRelaySeconds}},
				{Name: "replica of the site's relay", Values: []float64{math.NaN(), fs.ArborReplicaSeconds}},
				{Name: "site", Values: []float64{fs.NativeSeconds, fs.ArborSeconds}},
			},
			Format: func(v float64) string { return fmt.Sprintf("%.2f s", v) },
		})
	}
	d.targets(r.Targets)
	d.text("Full text report of `arbor bench tree`", r)
}

func (d *docWriter) relay(r *Report) {
	d.f("## One relay vs native replication\n\n")
	if r == nil {
		d.f("Not measured in this run.\n\n")
		return
	}
	d.f("`arbor bench relay`: master → relay → replica against master → replica, on this machine.\n\n")
	if t := r.Throughput; t != nil {
		d.table([]string{"master throughput (pipelined SETs)", "native", "with a relay", "relay / native"}, [][]string{
			{"ops/s (median of rounds; ratio: median of the pairs of rounds)", fmt.Sprintf("%.0f", t.NativeOpsPerSec), fmt.Sprintf("%.0f", t.RelayOpsPerSec), fmt.Sprintf("%.3f", t.Ratio)},
		})
		if sp := t.Spread; sp.N > 0 {
			d.f("Relay/native per pair of rounds (%d pairs): min %.3f, max %.3f, bootstrap 95%% interval of the median %.3f-%.3f.\n\n", sp.N, sp.Min, sp.Max, sp.CILow, sp.CIHigh)
		}
	}
	if l := r.Lag; l != nil {
		d.f("Lag at %d writes/s (achieved %.0f), %d probes, %d relay hop(s):\n\n", l.Rate, l.AchievedRate, l.Probes, l.RelayHops)
		d.table([]string{"path", "p50", "p99", "max"}, [][]string{
			{"native replica", msText(l.Native.P50), msText(l.Native.P99), msText(l.Native.Max)},
			{"relay's replica", msText(l.Relay.P50), msText(l.Relay.P99), msText(l.Relay.Max)},
		})
		d.figure("relay-lag.svg", "lag through a relay vs native", &svgplot.BarChart{
			Title: fmt.Sprintf("Replication lag at %d writes/s", l.Rate), YLabel: "ms",
			Groups: []string{"p50", "p99", "max"},
			Series: []svgplot.BarSeries{
				{Name: "native replica", Values: []float64{l.Native.P50, l.Native.P99, l.Native.Max}},
				{Name: "through the relay", Values: []float64{l.Relay.P50, l.Relay.P99, l.Relay.Max}},
			},
			Format: func(v float64) string { return fmt.Sprintf("%.2f", v) },
		})
	}
	d.targets(r.Targets)
	d.text("Full text report of `arbor bench relay`", r)
}

// targets lists the performance targets and whether this run met them.
func (d *docWriter) targets(ts []Target) {
	if len(ts) == 0 {
		return
	}
	var rows [][]string
	for _, t := range ts {
		res := "met"
		if !t.Pass {
			res = "**MISS**"
		}
		rows = append(rows, []string{t.Name, strings.TrimSpace(numText(t.Value) + " " + t.Unit), strings.TrimSpace(t.Op + " " + numText(t.Limit) + " " + t.Unit), res})
	}
	d.table([]string{"target", "measured", "wanted", ""}, rows)
}

// ecdf returns the empirical CDF of xs as a step line: each value raises
// the fraction by 1/n.
func ecdf(xs []float64) (x, y []float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := float64(len(s))
	for i, v := range s {
		x = append(x, v, v)
		y = append(y, float64(i)/n, float64(i+1)/n)
	}
	return x, y
}

// medianRun returns the run with the median write-accepted time among
// those with a trace.
func medianRun(runs []FailoverRun) (FailoverRun, bool) {
	var with []FailoverRun
	for _, r := range runs {
		if r.Trace != nil && len(r.Trace.Samples) > 0 {
			with = append(with, r)
		}
	}
	if len(with) == 0 {
		return FailoverRun{}, false
	}
	slices.SortStableFunc(with, func(a, b FailoverRun) int { return cmp.Compare(a.WriteAcceptedMs, b.WriteAcceptedMs) })
	return with[(len(with)-1)/2], true
}

// numText formats a figure with 3 significant digits, never in e-notation.
func numText(v float64) string {
	if math.Abs(v) >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func msText(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func rateText(bps int64) string {
	if bps == 0 {
		return "unlimited bandwidth"
	}
	return fmt.Sprintf("%g Mbit/s", float64(bps)*8/1e6)
}

func loadText(l [3]float64) string { return fmt.Sprintf("%.2f, %.2f, %.2f", l[0], l[1], l[2]) }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// ranOf returns when benchmark name ran in r, nil if r does not say.
func (r *AllReport) ranOf(name string) *BenchRun {
	for i := range r.Ran {
		if r.Ran[i].Name == name {
			return &r.Ran[i]
		}
	}
	return nil
}
