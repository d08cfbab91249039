package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
)

const (
	// linkTimeout bounds the initial syncs of a phase's replicas.
	linkTimeout = 60 * time.Second
	// catchUpTimeout bounds how long the replicas may take to reach the
	// master's offset after a load.
	catchUpTimeout = 2 * time.Minute
	// pollInterval is how often the waits poll INFO; slowPoll how often
	// the heavier checks of a set-up's readiness poll.
	pollInterval = 5 * time.Millisecond
	slowPoll     = 50 * time.Millisecond
)

// workspace is what every run needs: the binaries, a temporary directory
// for the processes of its phases, and a progress writer.
type workspace struct {
	root       string // temporary directory of the run
	redisBin   string
	relayBin   string
	relayArgs  []string
	keep       bool
	pin        placement // nil: no pinning (see pin.go)
	out        io.Writer
	killHost   bool   // bench failover: kill the master's host, not only its redis
	switchOver bool   // bench failover: a planned switchover instead of a kill
	helperBin  string // the arbor binary that runs null hops (nullhop.go)
}

// newWorkspace looks the binaries up and makes the temporary directory
// under dir (empty: the system's); relayBin empty means this executable.
// The caller must call close.
func newWorkspace(redisServer, relayBin, dir string, keep bool, relayArgs []string, progress io.Writer) (*workspace, error) {
	redisBin, err := exec.LookPath(redisServer)
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	if relayBin, err = arborBinary("relay binary", relayBin); err != nil {
		return nil, err
	}
	// The processes run in their own directories: a relative path would
	// name another file there.
	if redisBin, err = filepath.Abs(redisBin); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	root, err := os.MkdirTemp(dir, "arbor-bench-")
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	return &workspace{root: root, redisBin: redisBin, relayBin: relayBin, relayArgs: relayArgs, keep: keep, out: progress}, nil
}

// arborBinary resolves an arbor binary to run (Config.RelayBin,
// Config.HelperBin) to an absolute path, as the processes run in their own
// directories: empty means this executable. what names it in errors.
func arborBinary(what, bin string) (string, error) {
	var err error
	if bin == "" {
		bin, err = os.Executable()
	} else {
		bin, err = exec.LookPath(bin)
	}
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return bin, nil
}

// close removes the temporary directory, unless it is to be kept. The
// processes must be gone (every env closed).
func (w *workspace) close() {
	if w.keep {
		w.progress("kept %s", w.root)
		return
	}
	os.RemoveAll(w.root)
}

func (w *workspace) progress(format string, args ...any) {
	fmt.Fprintf(w.out, "bench: "+format+"\n", args...)
}

// newEnv returns the process set of one phase, in its own directory.
func (w *workspace) newEnv(phase string) *env {
	return &env{
		dir:       filepath.Join(w.root, phase),
		redisBin:  w.redisBin,
		relayBin:  w.relayBin,
		relayArg:  w.relayArgs,
		helperBin: w.helperBin,
		progress:  w.progress,
		pin:       w.pin,
	}
}

// newHost describes this machine; RedisVersion is filled in later.
func newHost() Host {
	return Host{
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
	}
}

// noteRedisVersion fills h.RedisVersion from s, once.
func noteRedisVersion(ctx context.Context, h *Host, s *server) error {
	if h.RedisVersion != "" {
		return nil
	}
	m, err := infoOn(ctx, s.addr, "server")
	if err != nil {
		return err
	}
	h.RedisVersion = m["redis_version"]
	return nil
}

// runner runs the phases of one Run.
type runner struct {
	*workspace
	cfg Config
}

// Run runs cfg's phases in order and returns their report. Every process it
// starts is killed, and its temporary directory removed (unless cfg.Keep),
// before it returns, also when ctx ends early. On error the report holds
// the phases completed so far.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	w, err := newWorkspace(cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.RelayArgs, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer w.close()
	if cfg.NullChain {
		if w.helperBin, err = arborBinary("helper binary", cfg.HelperBin); err != nil {
			return nil, err
		}
	}
	unpin, err := w.pinBy(cfg.Pin, consumersApart)
	if err != nil {
		return nil, err
	}
	defer unpin()
	r := &runner{workspace: w, cfg: cfg}

	rep := &Report{Host: newHost(), Settings: newSettings(&cfg)}
	if cfg.Keep {
		rep.Dir = w.root
	}
	for _, phase := range cfg.Phases {
		r.progress("phase %s", phase)
		switch phase {
		case PhaseThroughput:
			var res []*ThroughputResult
			res, err = r.throughput(ctx, rep)
			if len(res) > 0 {
				rep.Throughput, rep.MoreThroughput = res[0], res[1:]
			}
		case PhaseLag:
			rep.Lag, err = r.lagRounds(ctx, rep)
		}
		if err != nil {
			return rep, fmt.Errorf("phase %s: %w", phase, err)
		}
	}
	rep.Targets = rep.targets()
	return rep, nil
}

// setup is one configuration of PhaseThroughput.
type setup struct {
	name      string    // "native" or "relay"
	master    *server   // the master the load goes to
	consumers []*server // its replication consumers: a native replica, or a relay and its replica
}

// throughputMasterArgs configure the masters of PhaseThroughput: no
// output buffer limit for replicas, so that a consumer that falls behind
// at saturation is not cut and resynced (a fork on the master in the
// middle of a round, which would measure the resync rather than the
// replication; the native replica was cut in most rounds before).
var throughputMasterArgs = []string{"--client-output-buffer-limit", "replica 0 0 0"}

// throughput runs PhaseThroughput: two setups, a master with a native
// replica and a master with a relay and a replica behind the relay, loaded
// to saturation in pairs of rounds at each client count; it returns a
// result per count.
func (r *runner) throughput(ctx context.Context, rep *Report) ([]*ThroughputResult, error) {
	e := r.newEnv(PhaseThroughput)
	defer e.close()
	var native, relayed setup
	var err error
	native.name, relayed.name = "native", "relay"
	if native.master, err = e.startRedis(ctx, "native-master", "", throughputMasterArgs...); err != nil {
		return nil, err
	}
	nr, err := e.startRedis(ctx, "native-replica", native.master.addr)
	if err != nil {
		return nil, err
	}
	native.consumers = []*server{nr}
	if relayed.master, err = e.startRedis(ctx, "relay-master", "", throughputMasterArgs...); err != nil {
		return nil, err
	}
	var rl *server // the relay; nil for a control run
	if r.cfg.Control {
		// The same set-up as native's, measured as the relay's would be.
		relayed.name = "control"
		cr, err := e.startRedis(ctx, "control-replica", relayed.master.addr)
		if err != nil {
			return nil, err
		}
		relayed.consumers = []*server{cr}
	} else {
		if rl, err = e.startRelay(ctx, "relay", relayed.master.addr); err != nil {
			return nil, err
		}
		rr, err := e.startRedis(ctx, "relay-replica", rl.addr)
		if err != nil {
			return nil, err
		}
		relayed.consumers = []*server{rl, rr}
	}
	if err := noteRedisVersion(ctx, &rep.Host, native.master); err != nil {
		return nil, err
	}
	if err := waitLinked(ctx, append([]*server{nr}, relayed.consumers...)...); err != nil {
		return nil, err
	}
	for _, s := range []setup{native, relayed} {
		if err := prefill(ctx, s.master.addr, &r.cfg); err != nil {
			return nil, err
		}
		if _, err := waitCaughtUp(ctx, s.master, s.consumers...); err != nil {
			return nil, err
		}
	}
	r.progress("prefilled %d keys on both masters", r.cfg.Keyspace)

	var results []*ThroughputResult
	for _, clients := range r.cfg.Clients {
		res, err := r.throughputAt(ctx, clients, native, relayed)
		if err != nil {
			return results, err
		}
		if rl != nil {
			if res.RelayPeakRSS, err = peakRSS(rl.pid()); err != nil {
				return nil, fmt.Errorf("relay peak RSS: %w", err)
			}
		}
		results = append(results, res)
	}
	for _, s := range []setup{native, relayed} {
		d, err := compareDigests(ctx, PhaseThroughput, s.master, s.consumers[len(s.consumers)-1])
		if err != nil {
			return nil, err
		}
		rep.Digests = append(rep.Digests, d...)
	}
	return results, nil
}

// throughputAt runs the rounds at one client count: Config.Rounds pairs of
// a native and a relay round. With Config.Concurrent the two of a pair run
// at once and share every moment of the machine; without, one after the
// other, the first of a pair alternating (native first, then relay first,
// ...) so that a drift of the machine's speed during the run weighs on
// both alike. Each pair gives a ratio, relay over native, of ops/s and of
// the master's CPU per SET.
func (r *runner) throughputAt(ctx context.Context, clients int, native, relayed setup) (*ThroughputResult, error) {
	res := &ThroughputResult{Clients: clients, Control: r.cfg.Control}
	// Each setup's figures over its rounds (native's, then relay's):
	// ops/s, REPLCONF/s and the master's cost per round, and the CPU of
	// the consumer the CPU comparison weighs, with the stream it carried.
	type side struct {
		consumer   string
		ops, acks  []float64
		costs      []MasterCost
		cpu        time.Duration
		streamSize int64
	}
	sides := [2]side{{consumer: "native-replica"}, {consumer: "relay"}}
	for pair := 1; pair <= r.cfg.Rounds; pair++ {
		order := []setup{native, relayed}
		if pair%2 == 0 {
			order = []setup{relayed, native}
		}
		var ops, cpu [2]float64 // native, relay
		// Concurrent: both at once (which master's load starts first
		// alternates too); else one round after the other.
		runs := [][]setup{order[:1], order[1:]}
		if r.cfg.Concurrent {
			runs = [][]setup{order}
		}
		var rds []Round
		for _, ss := range runs {
			rd, err := r.rounds(ctx, pair, clients, ss...)
			if err != nil {
				return nil, err
			}
			rds = append(rds, rd...)
		}
		for _, rd := range rds {
			res.Rounds = append(res.Rounds, rd)
			i := 1
			if rd.Config == "native" {
				i = 0
			}
			ops[i], cpu[i] = rd.OpsPerSec, rd.Master.CPUPerOpUs
			sd := &sides[i]
			sd.ops, sd.acks, sd.costs = append(sd.ops, rd.OpsPerSec), append(sd.acks, rd.replconfPerSec()), append(sd.costs, rd.Master)
			sd.cpu += seconds(rd.CPUSeconds[sd.consumer])
			sd.streamSize += rd.StreamBytes
		}
		res.PairRatios = append(res.PairRatios, ratio(ops[1], ops[0]))
		res.MasterCPUPairRatios = append(res.MasterCPUPairRatios, ratio(cpu[1], cpu[0]))
	}
	nat, rel := &sides[0], &sides[1]
	res.NativeOpsPerSec, res.RelayOpsPerSec = median(nat.ops), median(rel.ops)
	res.NativeMaster, res.RelayMaster = medianCost(nat.costs), medianCost(rel.costs)
	res.NativeMasterCPUPerOpUs, res.RelayMasterCPUPerOpUs = res.NativeMaster.CPUPerOpUs, res.RelayMaster.CPUPerOpUs
	res.NativeReplconfPerSec, res.RelayReplconfPerSec = median(nat.acks), median(rel.acks)
	res.Spread = spreadOf(res.PairRatios)
	res.Ratio = res.Spread.Median
	res.MasterCPUSpread = spreadOf(res.MasterCPUPairRatios)
	res.CPU = cpuComparison(
		CPUUse{Process: rel.consumer, Seconds: rel.cpu.Seconds(), StreamBytes: rel.streamSize},
		CPUUse{Process: nat.consumer, Seconds: nat.cpu.Seconds(), StreamBytes: nat.streamSize},
	)
	c := res.MasterCPUSpread
	r.progress("%d clients: relay/native per pair: throughput median %.3f (min %.3f, max %.3f, bootstrap 95%% %.3f-%.3f); master CPU per SET median %.3f (min %.3f, max %.3f, bootstrap 95%% %.3f-%.3f)",
		clients, res.Spread.Median, res.Spread.Min, res.Spread.Max, res.Spread.CILow, res.Spread.CIHigh, c.Median, c.Min, c.Max, c.CILow, c.CIHigh)
	return res, nil
}

// rounds loads the masters of ss at once (one setup: a round on its own;
// both: a concurrent pair) and measures each, up to the moment its
// consumers have caught up. Each master has its own clients connections;
// the load generator drives them all.
func (r *runner) rounds(ctx context.Context, round, clients int, ss ...setup) ([]Round, error) {
	var procs []*process
	for _, s := range ss {
		procs = append(procs, s.master.process)
		for _, c := range s.consumers {
			procs = append(procs, c.process)
		}
	}
	meter := newCPUMeter(procs...)
	type measure struct {
		off0, off1, syncs0, acks0 int64
		master0, master1          procCounters
		load                      loadResult
		catchUp                   time.Duration
		err                       error
	}
	meas := make([]measure, len(ss))
	var err error
	for i, s := range ss {
		m := &meas[i]
		if m.off0, err = masterOffset(ctx, s.master); err != nil {
			return nil, err
		}
		if m.syncs0, m.acks0, err = masterCounters(ctx, s.master); err != nil {
			return nil, err
		}
	}
	if err := meter.begin(); err != nil {
		return nil, err
	}
	for i, s := range ss {
		if meas[i].master0, err = readProcCounters(s.master.pid()); err != nil {
			return nil, fmt.Errorf("%s counters: %w", s.master.name, err)
		}
	}
	var wg sync.WaitGroup
	for i, s := range ss {
		m := &meas[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m.load, m.err = saturate(ctx, s.master.addr, &r.cfg, clients); m.err != nil {
				return
			}
			loadEnd := time.Now()
			if m.off1, m.err = waitCaughtUp(ctx, s.master, s.consumers...); m.err != nil {
				return
			}
			m.catchUp = time.Since(loadEnd)
			if m.master1, m.err = readProcCounters(s.master.pid()); m.err != nil {
				m.err = fmt.Errorf("%s counters: %w", s.master.name, m.err)
			}
		}()
	}
	wg.Wait()
	for _, m := range meas {
		if m.err != nil {
			return nil, m.err
		}
	}
	usage, err := meter.end()
	if err != nil {
		return nil, err
	}
	out := make([]Round, len(ss))
	for i, s := range ss {
		m := &meas[i]
		syncs1, acks1, err := masterCounters(ctx, s.master)
		if err != nil {
			return nil, err
		}
		rd := Round{
			Clients:             clients,
			MasterReplconfCalls: acks1 - m.acks0,
			MasterFullSyncs:     syncs1 - m.syncs0,
			Round:               round,
			Config:              s.name,
			Concurrent:          len(ss) > 1,
			Ops:                 m.load.ops,
			Seconds:             m.load.elapsed.Seconds(),
			OpsPerSec:           m.load.rate(),
			StreamBytes:         m.off1 - m.off0,
			CatchUpMs:           ms(m.catchUp),
			CPUSeconds:          map[string]float64{selfName: usage.procs[selfName].Seconds()},
			HostBusy:            usage.busyFraction(),
			OtherCPUSeconds:     usage.other().Seconds(),
		}
		rd.CPUSeconds[s.master.name] = usage.procs[s.master.name].Seconds()
		for _, c := range s.consumers {
			rd.CPUSeconds[c.name] = usage.procs[c.name].Seconds()
		}
		rd.Master = masterCost(m.master1.sub(m.master0), m.load.ops)
		rd.MasterCPUPerOpUs = rd.Master.CPUPerOpUs
		r.progress("%d clients, pair %d, %-6s: %d SETs at %.0f ops/s, master %.3f µs CPU per SET, %.1f MiB/s of stream, replicas caught up %.0f ms after the load, %d full syncs, machine %.0f%% busy, %.2f CPU s unattributed",
			clients, round, s.name, rd.Ops, rd.OpsPerSec, rd.MasterCPUPerOpUs, float64(rd.StreamBytes)/(1<<20)/rd.Seconds, rd.CatchUpMs, rd.MasterFullSyncs, 100*rd.HostBusy, rd.OtherCPUSeconds)
		out[i] = rd
	}
	return out, nil
}

// masterCounters reads the counters of s a round reports the growth of:
// its full syncs served and its REPLCONF calls.
func masterCounters(ctx context.Context, s *server) (syncs, acks int64, err error) {
	if syncs, err = fullSyncs(ctx, s); err != nil {
		return 0, 0, err
	}
	if acks, err = replconfCalls(ctx, s); err != nil {
		return 0, 0, err
	}
	return syncs, acks, nil
}

// lagRounds runs PhaseLag LagRounds times and returns the median round by
// PerHopP99 (what the relay path added, probe by probe, per relay: a stall
// of the native replica alone does not make it look better), with every
// round's summary in it.
//
// With Config.NullChain each of the LagRounds is a pair of rounds, one
// through the relays and one through as many null hops (the first of a
// pair alternating, so a drift of the machine weighs on both alike), each
// against its own native replica: the null round gives the floor per hop,
// the relay hop over it is the pair's difference, and the median pair by
// that difference at p99 is returned. The two chains do not run at once:
// on this 2-CPU machine the consumers' CPU would be saturated, and every
// figure would be the queue for it.
func (r *runner) lagRounds(ctx context.Context, rep *Report) (*LagResult, error) {
	var rounds []*LagResult
	for i := 0; i < r.cfg.LagRounds; i++ {
		if r.cfg.LagRounds > 1 {
			r.progress("lag round %d of %d", i+1, r.cfg.LagRounds)
		}
		dir := PhaseLag
		if i > 0 {
			dir = fmt.Sprintf("%s-%d", PhaseLag, i+1) // fresh stores and data
		}
		kinds := []bool{false}
		if r.cfg.NullChain {
			kinds = []bool{false, true}
			if i%2 == 1 {
				kinds = []bool{true, false}
			}
		}
		var res, floor *LagResult
		for _, null := range kinds {
			d := dir
			if null {
				d += "-null"
			}
			l, err := r.lag(ctx, rep, d, null)
			if err != nil {
				return nil, err
			}
			if null {
				floor = l
			} else {
				res = l
			}
		}
		if floor != nil {
			res.Floor = floorOf(res, floor)
		}
		rounds = append(rounds, res)
	}
	judged := func(l *LagResult) float64 {
		if l.Floor != nil {
			return l.Floor.NetPerHopP99
		}
		return l.PerHopP99
	}
	sorted := slices.Clone(rounds)
	slices.SortStableFunc(sorted, func(a, b *LagResult) int { return cmp.Compare(judged(a), judged(b)) })
	med := sorted[(len(sorted)-1)/2]
	if len(rounds) > 1 {
		for i, rd := range rounds {
			lr := LagRound{Round: i + 1, AchievedRate: rd.AchievedRate,
				NativeP99: rd.Native.P99, RelayP99: rd.Relay.P99, AddedP99: rd.AddedP99, PerHopP99: rd.PerHopP99,
				PairedP99: rd.Paired.P99, HostBusy: rd.HostBusy, Median: rd == med,
				PerHopP50: rd.PerHopP50, LoadAvgStart: rd.LoadAvgStart, ConsumerCores: rd.ConsumerCores}
			if f := rd.Floor; f != nil {
				lr.FloorPerHopP50, lr.FloorPerHopP99 = f.PerHopP50, f.PerHopP99
				lr.NetPerHopP50, lr.NetPerHopP99 = f.NetPerHopP50, f.NetPerHopP99
				lr.FloorNativeP99, lr.NullP99 = f.Native.P99, f.Null.P99
			}
			med.Rounds = append(med.Rounds, lr)
		}
	}
	return med, nil
}

// floorOf is the floor a null round (floor) sets under the relay round res
// of its pair.
func floorOf(res, floor *LagResult) *FloorResult {
	f := &FloorResult{
		Native: floor.Native, Null: floor.Relay, Paired: floor.Paired,
		PerHopP50: floor.PerHopP50, PerHopP99: floor.PerHopP99,
		LoadAvgStart: floor.LoadAvgStart, ConsumerCores: floor.ConsumerCores,
		HostBusy: floor.HostBusy, CPU: floor.CPU,
	}
	f.NetPerHopP50 = res.PerHopP50 - f.PerHopP50
	f.NetPerHopP99 = res.PerHopP99 - f.PerHopP99
	return f
}

// lag runs PhaseLag: one master feeding a native replica and a chain at
// once, written at a fixed rate with lag probes. The chain is the relay
// path (RelayHops relays and a replica) or, with null, as many null hops
// and a replica; the result's Relay and Paired figures are the chain's.
func (r *runner) lag(ctx context.Context, rep *Report, dir string, null bool) (*LagResult, error) {
	e := r.newEnv(dir)
	defer e.close()
	m, err := e.startRedis(ctx, "master", "")
	if err != nil {
		return nil, err
	}
	nr, err := e.startRedis(ctx, "native-replica", m.addr)
	if err != nil {
		return nil, err
	}
	// The chain: "relay" follows the master; with more hops, "relay-2"
	// ... follow the one before over gRPC. Or null hops, the first
	// forwarding to the master.
	var hops []*server
	var replica *server
	if null {
		up := m.addr
		for i := 1; i <= r.cfg.RelayHops; i++ {
			h, err := e.startNullHop(ctx, fmt.Sprintf("null-hop-%d", i), up)
			if err != nil {
				return nil, err
			}
			hops = append(hops, h)
			up = h.addr
		}
		if replica, err = e.startRedis(ctx, "null-replica", up); err != nil {
			return nil, err
		}
	} else {
		up := "redis://" + m.addr
		for i := 1; i <= r.cfg.RelayHops; i++ {
			name := "relay"
			if i > 1 {
				name = fmt.Sprintf("relay-%d", i)
			}
			// The chain is one site's: its links are loopback, not a
			// WAN, so the relays' default (auto) compression picks s2
			// for them (--relay-arg=--compression=zstd for the WAN's).
			rs, err := e.startRelayWith(ctx, name, relaySpec{upstream: up, site: chainSite, grpc: i < r.cfg.RelayHops})
			if err != nil {
				return nil, err
			}
			hops = append(hops, rs.server)
			up = "arbor://" + rs.grpcAddr
		}
		if replica, err = e.startRedis(ctx, "relay-replica", hops[len(hops)-1].addr); err != nil {
			return nil, err
		}
	}
	if err := noteRedisVersion(ctx, &rep.Host, m); err != nil {
		return nil, err
	}
	// The servers whose replication offset counts: the replicas and the
	// relays (a null hop has none).
	path := []*server{nr, replica}
	if !null {
		path = append(path, hops...)
	}
	if err := waitLinked(ctx, path...); err != nil {
		return nil, err
	}
	if _, err := waitCaughtUp(ctx, m, path...); err != nil {
		return nil, err
	}

	probes := int(r.cfg.Duration.Seconds()*float64(r.cfg.LagSamples)) + 1
	subs, base, waitSubs, err := startSubscribers(ctx, probes, nr, replica)
	if err != nil {
		return nil, err
	}
	defer waitSubs()

	procs := []*process{m.process, nr.process, replica.process}
	for _, h := range hops {
		procs = append(procs, h.process)
	}
	meter := newCPUMeter(procs...)
	off0, err := masterOffset(ctx, m)
	if err != nil {
		return nil, err
	}
	load0 := loadAverage()
	if err := meter.begin(); err != nil {
		return nil, err
	}
	began := time.Now()
	sentAt := make([]time.Duration, probes)
	r.progress("writing %d SETs/s for %v with %d lag probes/s", r.cfg.Rate, r.cfg.Duration, r.cfg.LagSamples)
	wr, err := writeFixedRate(ctx, m.addr, r.cfg.fixedRate(), newSetSource(&r.cfg), base, sentAt)
	if err != nil {
		return nil, err
	}
	loadEnd := time.Now()
	var inChain []ChainLag
	if !null {
		// Inside the chain, by the relays' own clocks, before the
		// catch-up enters their window of the last seconds.
		if inChain, err = chainLags(ctx, hops[1:]); err != nil {
			return nil, err
		}
	}
	off1, err := waitCaughtUp(ctx, m, path...)
	if err != nil {
		return nil, err
	}
	catchUp := time.Since(loadEnd)
	usage, err := meter.end()
	if err != nil {
		return nil, err
	}
	wall := time.Since(began)
	cpu := usage.procs
	// The replicas have applied everything; give their notifications a
	// moment to arrive.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && (subs[0].got.Load() < int64(wr.probes) || subs[1].got.Load() < int64(wr.probes)) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := waitSubs(); err != nil {
		return nil, err
	}

	res := &LagResult{
		Rate:            r.cfg.Rate,
		AchievedRate:    float64(wr.writes) / wr.elapsed.Seconds(),
		Writes:          wr.writes,
		Probes:          wr.probes,
		CatchUpMs:       ms(catchUp),
		HostBusy:        usage.busyFraction(),
		OtherCPUSeconds: usage.other().Seconds(),
		LoadAvgStart:    load0,
		LoadAvgEnd:      loadAverage(),
		InChain:         inChain,
	}
	res.Native, res.Relay, res.Paired = lagStats(sentAt[:wr.probes], subs[0], subs[1])
	res.AddedP50 = res.Relay.P50 - res.Native.P50
	res.AddedP99 = res.Relay.P99 - res.Native.P99
	res.RelayHops = len(hops)
	res.PerHopP50 = res.Paired.P50 / float64(len(hops))
	res.PerHopP99 = res.Paired.P99 / float64(len(hops))
	var consumers time.Duration
	for name, d := range cpu {
		if name != m.name && name != selfName {
			consumers += d
		}
	}
	res.ConsumerCores = consumers.Seconds() / wall.Seconds()
	stream := off1 - off0
	use := func(name string) CPUUse {
		return CPUUse{Process: name, Seconds: cpu[name].Seconds(), StreamBytes: stream}
	}
	// The first hop, then the native replica it is compared with.
	uses := []CPUUse{use(hops[0].name), use(nr.name), use(replica.name), use(m.name)}
	uses = append(uses, CPUUse{Process: selfName + " (this process)", Seconds: cpu[selfName].Seconds(), StreamBytes: stream})
	for _, h := range hops[1:] {
		uses = append(uses, use(h.name))
	}
	res.CPU = cpuComparison(uses...)
	if res.RelayPeakRSS, err = peakRSS(hops[0].pid()); err != nil {
		return nil, fmt.Errorf("%s peak RSS: %w", hops[0].name, err)
	}
	r.progress("lag: %d writes at %.0f/s in %d batches, %d probes; p99 native %.3f ms, %s %.3f ms",
		res.Writes, res.AchievedRate, wr.batches, res.Probes, res.Native.P99, replica.name, res.Relay.P99)
	d, err := compareDigests(ctx, PhaseLag, m, nr, replica)
	if err != nil {
		return nil, err
	}
	rep.Digests = append(rep.Digests, d...)
	return res, nil
}

// chainLags reads, from each relay that follows another, the lag of the
// stream from the chain's first relay to its store (INFO arbor's
// arbor_tree_lag over the last seconds, by the first relay's clock at its
// read and this relay's at its store).
func chainLags(ctx context.Context, relays []*server) ([]ChainLag, error) {
	var out []ChainLag
	for _, s := range relays {
		m, err := infoOn(ctx, s.addr, "arbor")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		var v [3]int64
		for i, k := range []string{"arbor_tree_lag_p50_us", "arbor_tree_lag_p99_us", "arbor_tree_lag_frames"} {
			if v[i], err = infoInt(m, k); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
		out = append(out, ChainLag{Relay: s.name, P50: float64(v[0]) / 1000, P99: float64(v[1]) / 1000, Frames: v[2]})
	}
	return out, nil
}

// lagStats pairs each probe's send time with its arrival on the native
// and the relayed replica.
func lagStats(sentAt []time.Duration, native, relayed *subscriber) (n, r PathLag, paired Dist) {
	var nl, rl, diff []time.Duration
	for seq, sent := range sentAt {
		a, b := native.recvAt[seq], relayed.recvAt[seq]
		if a != 0 {
			nl = append(nl, a-sent)
		}
		if b != 0 {
			rl = append(rl, b-sent)
		}
		if a != 0 && b != 0 {
			diff = append(diff, b-a)
		}
	}
	n = PathLag{Dist: summarize(nl), Missing: len(sentAt) - len(nl), Duplicates: native.dups}
	r = PathLag{Dist: summarize(rl), Missing: len(sentAt) - len(rl), Duplicates: relayed.dups}
	return n, r, summarize(diff)
}

// cpuComparison fills in per-GiB figures; uses[0] is the relay and
// uses[1] the native replica it is compared with.
func cpuComparison(uses ...CPUUse) CPUResult {
	for i := range uses {
		uses[i].PerGiB = perGiB(seconds(uses[i].Seconds), uses[i].StreamBytes)
	}
	return CPUResult{Uses: uses, Ratio: ratio(uses[0].PerGiB, uses[1].PerGiB)}
}

// chainSite is the site of every relay of the lag phase's relay chain.
const chainSite = "A"
