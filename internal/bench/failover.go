package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Failover benchmark defaults.
const (
	// DefaultFailoverRuns is how many times each system fails over.
	DefaultFailoverRuns = 20
	// DefaultDownAfter is Sentinel's down-after-milliseconds of the tuned
	// configuration; SentinelDefaultDownAfter is Sentinel's own default.
	DefaultDownAfter         = time.Second
	SentinelDefaultDownAfter = 30 * time.Second
	// failoverWriteEvery paces the writer loop (one SET, or one attempt,
	// per tick): it bounds the resolution of "first write accepted".
	failoverWriteEvery = time.Millisecond
	// failoverWarmup is how long the writer writes to the master before it
	// is killed.
	failoverWarmup = 500 * time.Millisecond
	// failoverBound bounds a failover, from the start of the writer: a
	// system that has not failed over by then failed this run.
	failoverBound = 90 * time.Second
)

// AllFailoverSystems are the systems RunFailover knows, in report order
// (the first is the reference of the ratios).
var AllFailoverSystems = []string{"sentinel", "arbor", "arbor-fast"}

// errNoFailover marks a run in which the system did not fail over within
// failoverBound: a result of the run, not an error of the benchmark.
var errNoFailover = errors.New("no failover")

// ErrNoSentinel is returned when the redis-sentinel binary is missing.
var ErrNoSentinel = errors.New("redis-sentinel not found (Debian: apt-get install redis-sentinel)")

// FailoverConfig configures RunFailover.
type FailoverConfig struct {
	// Runs is how many failovers each system goes through (fresh
	// processes each).
	Runs int
	// DownAfter is Sentinel's down-after-milliseconds.
	DownAfter time.Duration
	// KillHost kills the master's whole host (its redis-server and, for
	// Arbor, its node agent) instead of only its redis-server.
	KillHost bool
	// Switchover asks each run for a planned switchover to the backup
	// instead of killing the master (Arbor: a switchover request, as
	// arbor switchover makes; Sentinel: SENTINEL FAILOVER). Not with
	// KillHost.
	Switchover bool
	// SentinelDefault also runs Sentinel with its default
	// down-after-milliseconds (30 s): about 35 s per run.
	SentinelDefault bool
	// Systems are the systems to run: FailoverSystems' names
	// ("sentinel", "arbor", "arbor-fast"); "sentinel-default" is added by
	// SentinelDefault.
	Systems []string
	// RedisServer and RedisSentinel are the binaries; ArborBin runs the
	// Arbor side ("arbor relay", "arbor node"; "": this executable).
	RedisServer, RedisSentinel, ArborBin string
	// Dir is the parent of the temporary directory ("": the system's);
	// Keep keeps it.
	Dir  string
	Keep bool
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// DefaultFailoverConfig returns the defaults.
func DefaultFailoverConfig() FailoverConfig {
	return FailoverConfig{
		Runs:          DefaultFailoverRuns,
		DownAfter:     DefaultDownAfter,
		Systems:       slices.Clone(AllFailoverSystems),
		RedisServer:   "redis-server",
		RedisSentinel: "redis-sentinel",
	}
}

// Validate checks the settings.
func (c *FailoverConfig) Validate() error {
	var errs []error
	if c.Runs < 1 {
		errs = append(errs, fmt.Errorf("runs: %d, want at least 1", c.Runs))
	}
	if c.DownAfter < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("down-after: %v, want at least 100ms", c.DownAfter))
	}
	if c.Switchover && c.KillHost {
		errs = append(errs, errors.New("switchover: not with kill host"))
	}
	if len(c.Systems) == 0 {
		errs = append(errs, errors.New("systems: none"))
	}
	for _, s := range c.Systems {
		if !slices.Contains(AllFailoverSystems, s) {
			errs = append(errs, fmt.Errorf("systems: unknown %q (want %v)", s, AllFailoverSystems))
		}
	}
	return errors.Join(errs...)
}

// FailoverSystem is one failover system under test.
type FailoverSystem interface {
	// Name names the system in the report; Settings says how it is set
	// up, for people (e.g. down-after-milliseconds).
	Name() string
	Settings() string
	// Start starts a fresh master, backup and two replicas with the
	// system's failover machinery in e, and returns once the system is
	// ready to fail the master over.
	Start(ctx context.Context, e *env) (FailoverSetup, error)
}

// FailoverSetup is one running set-up of a FailoverSystem.
type FailoverSetup interface {
	// MasterAddr returns the address the system tells clients to write to
	// now (it may be the dead master's for a while).
	MasterAddr(ctx context.Context) (string, error)
	// Master is the master's redis-server at the start.
	Master() *server
	// KillMaster kills the master's redis-server with SIGKILL and, with
	// host, whatever else of the system runs on its host (Arbor: its node
	// agent; Sentinel runs nothing there), at once.
	KillMaster(host bool)
	// Others are the other redis-servers: the backup and the replicas.
	Others() []*server
	// Switchover asks the system for a planned switchover to the backup
	// and returns once the system accepted (Sentinel) or finished (Arbor)
	// it.
	Switchover(ctx context.Context) error
	// FullSyncs returns the full syncs served since the set-up was ready,
	// once newMaster was promoted: the new master's and, for a system
	// with other servers of the stream (relays), theirs.
	FullSyncs(ctx context.Context, newMaster string) (int64, error)
	// Close releases what the set-up holds besides its processes (the
	// env kills those).
	Close()
}

// FailoverReport is the result of RunFailover.
type FailoverReport struct {
	Host Host `json:"host"`
	Runs int  `json:"runs"`
	// Kill is what each run kills: "redis" (the master's redis-server) or
	// "host" (with its node agent), or "switchover": no kill, a planned
	// switchover.
	Kill    string           `json:"kill"`
	Systems []FailoverResult `json:"systems"`
	// NotRun names the systems asked for that could not run, and why.
	NotRun []NotRun `json:"not_run,omitempty"`
	// Ratios compare each system's p50/p99 with the first one's.
	Ratios []FailoverRatio `json:"ratios,omitempty"`
	Dir    string          `json:"dir,omitempty"`
}

// NotRun is a system that could not run.
type NotRun struct {
	Name string `json:"name"`
	Why  string `json:"why"`
}

// FailoverResult is one system's runs.
type FailoverResult struct {
	Name string `json:"name"`
	// Settings of the system, for people (e.g. down-after-milliseconds).
	Settings string `json:"settings"`
	// WriteAccepted: master killed → first write accepted on the new
	// master (ms).
	WriteAccepted Dist `json:"write_accepted"`
	// ReplicasStreaming: master killed → every replica streaming from the
	// new master (master_link_status:up, pointing at it).
	ReplicasStreaming Dist `json:"replicas_streaming"`
	// WritePause: the writer's last write acknowledged by the old master
	// → its first acknowledged by the new one (the pause a client sees;
	// with a switchover, the write pause).
	WritePause Dist `json:"write_pause"`
	// AckedWrites and LostWrites sum over the runs: writes acknowledged
	// (by the old or the new master) and, of those, the ones the new
	// master lacks afterwards. MaxLostInRun is the worst run.
	AckedWrites  int64 `json:"acked_writes"`
	LostWrites   int64 `json:"lost_writes"`
	MaxLostInRun int64 `json:"max_lost_in_run"`
	// FullSyncs sums the full syncs the new masters served (sync_full);
	// PartialSyncs the partial ones (sync_partial_ok).
	FullSyncs    int64         `json:"full_syncs"`
	PartialSyncs int64         `json:"partial_syncs"`
	PerRun       []FailoverRun `json:"per_run"`
	// Failed lists the runs in which the system did not fail over (no
	// write accepted on a new master, or replicas not streaming from it,
	// within the bound), and what was seen; they are left out of the
	// figures above.
	Failed []string `json:"failed,omitempty"`
}

// FailoverRun is one failover.
type FailoverRun struct {
	WriteAcceptedMs     float64 `json:"write_accepted_ms"`
	ReplicasStreamingMs float64 `json:"replicas_streaming_ms"`
	WritePauseMs        float64 `json:"write_pause_ms"`
	NewMaster           string  `json:"new_master"`
	Acked               int64   `json:"acked"`
	Lost                int64   `json:"lost"`
	FullSyncs           int64   `json:"full_syncs"`
	PartialSyncs        int64   `json:"partial_syncs"`
	// Trace is every server's lag through the run.
	Trace *LagTrace `json:"trace,omitempty"`
}

// FailoverRatio is a system's p50 and p99 over the reference system's.
type FailoverRatio struct {
	System    string  `json:"system"`
	Reference string  `json:"reference"`
	WriteP50  float64 `json:"write_accepted_p50"`
	WriteP99  float64 `json:"write_accepted_p99"`
	StreamP50 float64 `json:"replicas_streaming_p50"`
	StreamP99 float64 `json:"replicas_streaming_p99"`
}

// ArborNotBuilt says why the Arbor side cannot run with an arbor binary
// whose node agent does not elect.
const ArborNotBuilt = "not built yet in this arbor binary: its node agent has no --elect (the candidate/master roles that promote a backup)"

// RunFailover runs cfg.Runs failovers of each system and reports them.
// Every process is killed, and the temporary directory removed (unless
// cfg.Keep), before it returns.
func RunFailover(ctx context.Context, cfg FailoverConfig) (*FailoverReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	w, err := newWorkspace(cfg.RedisServer, cfg.ArborBin, cfg.Dir, cfg.Keep, nil, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer w.close()
	w.killHost, w.switchOver = cfg.KillHost, cfg.Switchover
	rep := &FailoverReport{Host: newHost(), Runs: cfg.Runs, Kill: "redis"}
	switch {
	case cfg.KillHost:
		rep.Kill = "host"
	case cfg.Switchover:
		rep.Kill = "switchover"
	}
	if cfg.Keep {
		rep.Dir = w.root
	}
	var systems []FailoverSystem
	names := slices.Clone(cfg.Systems)
	if cfg.SentinelDefault && slices.Contains(names, "sentinel") {
		names = slices.Insert(names, slices.Index(names, "sentinel")+1, "sentinel-default")
	}
	var etcd *arborEtcd
	defer func() {
		if etcd != nil {
			etcd.close()
		}
	}()
	for _, name := range names {
		switch name {
		case "sentinel", "sentinel-default":
			bin, err := exec.LookPath(cfg.RedisSentinel)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrNoSentinel, err)
			}
			da := cfg.DownAfter
			if name == "sentinel-default" {
				da = SentinelDefaultDownAfter
			}
			systems = append(systems, &sentinelSystem{bin: bin, downAfter: da})
		case "arbor", "arbor-fast":
			if err := arborElects(w.relayBin); err != nil {
				why := ArborNotBuilt
				if !errors.Is(err, errNoElect) {
					why = err.Error()
				}
				rep.NotRun = append(rep.NotRun, NotRun{Name: name, Why: why})
				continue
			}
			if etcd == nil {
				if etcd, err = w.startArborEtcd(ctx); err != nil {
					return nil, fmt.Errorf("arbor: %w", err)
				}
			}
			systems = append(systems, &arborSystem{etcd: etcd, bin: w.relayBin, fast: name == "arbor-fast"})
		}
	}
	for _, sys := range systems {
		res, err := w.failoverRuns(ctx, sys, cfg.Runs, &rep.Host)
		if res != nil && len(res.PerRun)+len(res.Failed) > 0 {
			rep.Systems = append(rep.Systems, *res)
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", sys.Name(), err)
		}
	}
	if len(rep.Systems) > 1 {
		ref := rep.Systems[0]
		for _, s := range rep.Systems[1:] {
			rep.Ratios = append(rep.Ratios, FailoverRatio{System: s.Name, Reference: ref.Name,
				WriteP50: ratio(s.WriteAccepted.P50, ref.WriteAccepted.P50), WriteP99: ratio(s.WriteAccepted.P99, ref.WriteAccepted.P99),
				StreamP50: ratio(s.ReplicasStreaming.P50, ref.ReplicasStreaming.P50), StreamP99: ratio(s.ReplicasStreaming.P99, ref.ReplicasStreaming.P99)})
		}
	}
	return rep, nil
}

// failoverRuns runs one system n times.
func (w *workspace) failoverRuns(ctx context.Context, sys FailoverSystem, n int, host *Host) (*FailoverResult, error) {
	res := &FailoverResult{Name: sys.Name(), Settings: sys.Settings()}
	var writes, streams, pauses []time.Duration
	defer func() {
		res.WriteAccepted, res.ReplicasStreaming, res.WritePause = summarize(writes), summarize(streams), summarize(pauses)
	}()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		e := w.newEnv(fmt.Sprintf("%s-%02d", sys.Name(), i+1))
		run, err := w.failoverOnce(ctx, sys, e, host)
		e.close()
		if errors.Is(err, errNoFailover) {
			w.progress("%s run %d/%d: FAILED: %v", sys.Name(), i+1, n, err)
			res.Failed = append(res.Failed, fmt.Sprintf("run %d: %v", i+1, err))
			continue
		}
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		w.progress("%s run %d/%d: write accepted after %.0f ms (write pause %.0f ms), replicas streaming after %.0f ms, %d/%d acked writes lost, %d full syncs",
			sys.Name(), i+1, n, run.WriteAcceptedMs, run.WritePauseMs, run.ReplicasStreamingMs, run.Lost, run.Acked, run.FullSyncs)
		res.PerRun = append(res.PerRun, run)
		writes = append(writes, seconds(run.WriteAcceptedMs/1000))
		streams = append(streams, seconds(run.ReplicasStreamingMs/1000))
		pauses = append(pauses, seconds(run.WritePauseMs/1000))
		res.AckedWrites += run.Acked
		res.LostWrites += run.Lost
		res.MaxLostInRun = max(res.MaxLostInRun, run.Lost)
		res.FullSyncs += run.FullSyncs
		res.PartialSyncs += run.PartialSyncs
	}
	return res, nil
}

// failoverOnce starts sys in e, kills its master under a writer and
// measures the failover.
func (w *workspace) failoverOnce(ctx context.Context, sys FailoverSystem, e *env, host *Host) (FailoverRun, error) {
	var run FailoverRun
	setup, err := sys.Start(ctx, e)
	if err != nil {
		return run, err
	}
	defer setup.Close()
	if err := noteRedisVersion(ctx, host, setup.Master()); err != nil {
		return run, err
	}
	oldMaster := setup.Master().addr
	// A working fabric is failed over, not one still starting: the stream
	// must be flowing to every replica before the writer starts.
	if err := waitFlowing(ctx, oldMaster, setup.Others()); err != nil {
		return run, err
	}
	wctx, cancel := context.WithTimeout(ctx, failoverBound)
	defer cancel()
	wr := &failoverWriter{setup: setup, old: oldMaster, newSeen: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wr.run(wctx)
	}()
	stopWriter := func() {
		cancel()
		wg.Wait()
	}
	defer stopWriter()
	tracer := startLagTracer(ctx, append([]*server{setup.Master()}, setup.Others()...))
	defer tracer.close()

	// Let the writer write to the master, then kill it.
	select {
	case <-time.After(failoverWarmup):
	case <-ctx.Done():
		return run, ctx.Err()
	}
	if len(wr.ackedKeys()) == 0 {
		return run, fmt.Errorf("the writer had no write acknowledged by the master %s in %v: %v", oldMaster, failoverWarmup, wr.lastErr())
	}
	killed := time.Now()
	swErr := make(chan error, 1)
	if w.switchOver {
		// The request runs beside the writer: Arbor's returns once the new
		// master is published, after the pause being measured.
		wg.Add(1)
		go func() {
			defer wg.Done()
			swErr <- setup.Switchover(wctx)
		}()
	} else {
		setup.KillMaster(w.killHost)
	}

	// Master killed → first write accepted elsewhere.
	newMaster, at, err := wr.waitNewMaster(wctx)
	if err != nil {
		if ctx.Err() == nil {
			var why error
			select {
			case why = <-swErr:
			default:
			}
			err = fmt.Errorf("%w: no write accepted on a new master within %v (last writer error: %v; switchover: %v)", errNoFailover, failoverBound, wr.lastErr(), why)
		}
		return run, err
	}
	run.NewMaster = newMaster
	run.WriteAcceptedMs = ms(at.Sub(killed))
	run.WritePauseMs = ms(at.Sub(wr.lastOldAck()))

	// → every other server streaming from the new master.
	var replicas []*server
	for _, s := range setup.Others() {
		if s.addr != newMaster {
			replicas = append(replicas, s)
		}
	}
	streamingAt, err := waitStreaming(wctx, failoverBound, newMaster, replicas)
	if err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("%w: %v", errNoFailover, err)
		}
		return run, err
	}
	run.ReplicasStreamingMs = ms(streamingAt.Sub(killed))
	// Trace the lag settling under the writer a little longer.
	select {
	case <-time.After(lagTraceTail):
	case <-ctx.Done():
		return run, ctx.Err()
	}
	run.Trace = tracer.stop(killed)

	stopWriter()
	keys := wr.ackedKeys()
	run.Acked = int64(len(keys))
	if run.Lost, err = countMissing(ctx, newMaster, keys); err != nil {
		return run, err
	}
	if run.FullSyncs, err = setup.FullSyncs(ctx, newMaster); err != nil {
		return run, err
	}
	m, err := infoOn(ctx, newMaster, "stats")
	if err != nil {
		return run, err
	}
	run.PartialSyncs, _ = infoInt(m, "sync_partial_ok")
	return run, nil
}

// failoverWriter writes fo:<seq> to whatever address the system names as
// the master, one attempt per failoverWriteEvery, and records every
// acknowledged key and the first write another server acknowledged.
type failoverWriter struct {
	setup FailoverSetup
	old   string // the master at the start

	mu      sync.Mutex
	keys    []string  // acknowledged, in order
	lastOld time.Time // the last ack of the old master before first
	first   struct {
		addr string
		at   time.Time
	}
	err     error
	newSeen chan struct{} // closed at the first write acked by another server
}

func (wr *failoverWriter) run(ctx context.Context) {
	tick := time.NewTicker(failoverWriteEvery)
	defer tick.Stop()
	var (
		c    *conn
		addr string
		seq  int
	)
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, err := wr.setup.MasterAddr(ctx)
		if err == nil && now != addr && c != nil {
			c.close()
			c = nil
		}
		if err == nil && c == nil {
			addr = now
			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			c, err = dial(dctx, addr)
			cancel()
			if c != nil {
				c.timeout = 200 * time.Millisecond
			}
		}
		if err == nil {
			key := "fo:" + strconv.Itoa(seq)
			if _, err = c.do("SET", key, strconv.Itoa(seq)); err == nil {
				seq++
				wr.ack(key, addr)
				continue
			}
			c.close()
			c = nil
		}
		wr.mu.Lock()
		wr.err = err
		wr.mu.Unlock()
	}
}

func (wr *failoverWriter) ack(key, addr string) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	wr.keys = append(wr.keys, key)
	if addr == wr.old && wr.first.addr == "" {
		wr.lastOld = time.Now()
	}
	if addr != wr.old && wr.first.addr == "" {
		wr.first.addr, wr.first.at = addr, time.Now()
		close(wr.newSeen)
	}
}

// lastOldAck is when the old master last acknowledged a write before the
// first write another server acknowledged.
func (wr *failoverWriter) lastOldAck() time.Time {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return wr.lastOld
}

func (wr *failoverWriter) lastErr() error {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return wr.err
}

func (wr *failoverWriter) ackedKeys() []string {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return slices.Clone(wr.keys)
}

// waitNewMaster waits for the first write acknowledged by a server other
// than the old master.
func (wr *failoverWriter) waitNewMaster(ctx context.Context) (string, time.Time, error) {
	select {
	case <-wr.newSeen:
		wr.mu.Lock()
		defer wr.mu.Unlock()
		return wr.first.addr, wr.first.at, nil
	case <-ctx.Done():
		return "", time.Time{}, ctx.Err()
	}
}

// waitStreaming polls until every replica streams the master's history
// (its replication ID) with its link up, from the master itself or through
// a relay, and returns when it first saw that.
func waitStreaming(ctx context.Context, timeout time.Duration, master string, replicas []*server) (time.Time, error) {
	err := poll(ctx, timeout, pollInterval, "replicas not streaming from "+master, replicas, func() (bool, error) {
		err := inHistory(ctx, master, replicas)
		return err == nil, err
	})
	return time.Now(), err
}

// waitFlowing writes a key to master and waits until every replica's
// offset reached the master's after it.
func waitFlowing(ctx context.Context, master string, replicas []*server) error {
	if _, err := query(ctx, master, "SET", "fo:flowing", "1"); err != nil {
		return err
	}
	m, err := infoOn(ctx, master, "replication")
	if err != nil {
		return err
	}
	want, err := infoInt(m, "master_repl_offset")
	if err != nil {
		return err
	}
	return poll(ctx, linkTimeout, slowPoll, "replicas not at the master's offset", replicas, func() (bool, error) {
		for _, r := range replicas {
			ri, err := infoOn(ctx, r.addr, "replication")
			if err != nil {
				return false, err
			}
			if off, _ := infoInt(ri, "master_repl_offset"); off < want {
				return false, fmt.Errorf("%s at offset %d, the master at %d", r.name, off, want)
			}
		}
		return true, nil
	})
}

// countMissing counts the keys addr lacks.
func countMissing(ctx context.Context, addr string, keys []string) (int64, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.close()
	var missing int64
	for batch := range slices.Chunk(keys, 500) {
		v, err := c.do(append([]string{"EXISTS"}, batch...)...)
		if err != nil {
			return 0, err
		}
		missing += int64(len(batch)) - v.Int
	}
	return missing, nil
}

// WriteText renders the report as tables.
func (r *FailoverReport) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("failover benchmark: %d runs per system · %d CPUs · redis %s · %s\n", r.Runs, r.Host.CPUs, r.Host.RedisVersion, r.Host.GoVersion)
	kill := "kill -9 of the master's redis-server"
	switch r.Kill {
	case "host":
		kill = "kill -9 of the master's host (its redis-server and node agent)"
	case "switchover":
		kill = "a planned switchover to the backup (Arbor: a switchover request; Sentinel: SENTINEL FAILOVER), times from the request"
	}
	p.f("each run: fresh master + backup + 2 replicas; a writer SETs to the address the system names (1 attempt/ms); %s\n\n", kill)
	tw := p.table()
	fmt.Fprintf(tw, "system\tsettings\truns failed over\twrite accepted p50\tp99\twrite pause p50\tp99\treplicas streaming p50\tp99\tacked writes lost\tworst run\tfull syncs\tpartial syncs\n")
	for _, s := range r.Systems {
		fmt.Fprintf(tw, "%s\t%s\t%d of %d\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%.0f ms\t%d of %d\t%d\t%d\t%d\n", s.Name, s.Settings,
			len(s.PerRun), len(s.PerRun)+len(s.Failed),
			s.WriteAccepted.P50, s.WriteAccepted.P99, s.WritePause.P50, s.WritePause.P99, s.ReplicasStreaming.P50, s.ReplicasStreaming.P99,
			s.LostWrites, s.AckedWrites, s.MaxLostInRun, s.FullSyncs, s.PartialSyncs)
	}
	for _, nr := range r.NotRun {
		fmt.Fprintf(tw, "%s\t%s\n", nr.Name, "NOT RUN")
	}
	tw.Flush()
	for _, s := range r.Systems {
		for _, f := range s.Failed {
			p.f("%s FAILED %s\n", s.Name, f)
		}
	}
	for _, nr := range r.NotRun {
		p.f("%s: %s\n", nr.Name, nr.Why)
	}
	for _, q := range r.Ratios {
		p.f("%s / %s: write accepted p50 %.2fx p99 %.2fx, replicas streaming p50 %.2fx p99 %.2fx\n",
			q.System, q.Reference, q.WriteP50, q.WriteP99, q.StreamP50, q.StreamP99)
	}
	if r.Dir != "" {
		p.f("kept %s\n", r.Dir)
	}
	return p.err
}
