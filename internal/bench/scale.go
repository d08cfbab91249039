package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ScaleConfig configures RunScale.
type ScaleConfig struct {
	// Replicas are the counts of Redis replicas on one relay to measure,
	// ascending: the replicas are added to the same relay step by step.
	Replicas []int
	// Native also runs the replica series without the relay, every
	// replica following the master directly, side by side.
	Native bool
	// Children are the counts of child relays on one relay to measure,
	// ascending, each child with one replica of its own.
	Children []int
	// Datasets are the dataset sizes (bytes) a fresh relay full-syncs, one
	// master per size.
	Datasets []int64
	// DatasetValueSize fills the datasets with values of this many random
	// bytes (fast to load, incompressible); 0 with the realistic mix.
	DatasetValueSize int
	// DatasetNative also times a native replica's full sync from each
	// dataset's master, before the relay's: two copies of the dataset are
	// then resident at once.
	DatasetNative bool
	// Rate, Duration, ValueSize and Keyspace shape the load of each
	// replica and child step: Rate SETs/s of ValueSize-byte values over
	// Keyspace keys for Duration; LagSamples of them per second are lag
	// probes, timed on every replica.
	Rate       int
	Duration   time.Duration
	ValueSize  int
	Keyspace   int
	LagSamples int
	// RedisServer and RelayBin are the binaries; RelayArgs more arguments
	// for every relay; Dir the parent of the temporary directory ("" for
	// the system's); Keep keeps it.
	RedisServer, RelayBin, Dir string
	RelayArgs                  []string
	Keep                       bool
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// DefaultScaleConfig returns the defaults: 1, 10, 50 and 200 replicas; 1,
// 4 and 16 child relays; datasets of 256 MiB and 1 GiB of the realistic
// mix, with a native replica's full sync too; 20,000 SETs/s of 100 bytes
// for 5 s per step.
func DefaultScaleConfig() ScaleConfig {
	return ScaleConfig{
		Replicas:      []int{1, 10, 50, 200},
		Native:        true,
		Children:      []int{1, 4, 16},
		Datasets:      []int64{256 << 20, 1 << 30},
		DatasetNative: true,
		Rate:          20000,
		Duration:      5 * time.Second,
		ValueSize:     100,
		Keyspace:      10000,
		LagSamples:    50,
		RedisServer:   "redis-server",
	}
}

// Validate checks c.
func (c *ScaleConfig) Validate() error {
	var errs []error
	ascending := func(name string, xs []int, most int) {
		for i, x := range xs {
			if x < 1 || x > most || (i > 0 && x <= xs[i-1]) {
				errs = append(errs, fmt.Errorf("%s %v: want ascending counts from 1 to %d", name, xs, most))
				return
			}
		}
	}
	ascending("replicas", c.Replicas, maxScaleReplicas)
	ascending("children", c.Children, maxScaleChildren)
	for _, d := range c.Datasets {
		if d < 1<<20 {
			errs = append(errs, fmt.Errorf("dataset %d bytes: want at least 1 MiB", d))
		}
	}
	if c.DatasetValueSize < 0 || c.DatasetValueSize > maxDatasetValueSize {
		errs = append(errs, fmt.Errorf("dataset value size %d: want 0 (the realistic mix) to %d bytes", c.DatasetValueSize, maxDatasetValueSize))
	}
	if len(c.Replicas)+len(c.Children)+len(c.Datasets) == 0 {
		errs = append(errs, errors.New("nothing to measure: no replica counts, child counts or datasets"))
	}
	if (len(c.Replicas) > 0 || len(c.Children) > 0) && (c.Rate < 1 || c.Duration <= 0 || c.ValueSize < 1 || c.Keyspace < 1 || c.LagSamples < 1) {
		errs = append(errs, fmt.Errorf("load: rate %d, duration %v, value size %d, keyspace %d, lag samples %d: want all positive",
			c.Rate, c.Duration, c.ValueSize, c.Keyspace, c.LagSamples))
	}
	return errors.Join(errs...)
}

// Bounds of RunScale's process counts (ports, memory and start-up time on
// one machine).
const (
	maxScaleReplicas = 500
	maxScaleChildren = 64
	// maxDatasetValueSize bounds the fill's values (the fill pipelines
	// hundreds of them).
	maxDatasetValueSize = 4 << 20
)

// ScaleStep is one measured step of RunScale's replica or child series.
type ScaleStep struct {
	// Replicas and Children are what the relay fed in this step.
	Replicas int `json:"replicas"`
	Children int `json:"children,omitempty"`
	// AchievedRate is the load's writes per second, StreamBytes the
	// master's stream in the load.
	AchievedRate float64 `json:"achieved_rate"`
	StreamBytes  int64   `json:"stream_bytes"`
	// RelayCores is the relay's CPU time over the time measured, the load
	// and the catch-up after it (1 = one core busy), RelayCPUPerMB its CPU seconds per MB of stream;
	// ChildrenCores the child relays' together.
	RelayCores    float64 `json:"relay_cores"`
	RelayCPUPerMB float64 `json:"relay_cpu_s_per_mb"`
	ChildrenCores float64 `json:"children_cores,omitempty"`
	// MasterCores is the master's CPU time, in cores like RelayCores.
	MasterCores float64 `json:"master_cores"`
	// ReplicasCores is the Redis replicas' CPU time together, in cores
	// like RelayCores: with many replicas on a small machine they, not the
	// relay, use it up (see HostBusy).
	ReplicasCores float64 `json:"replicas_cores"`
	// RelayRSS is the relay's resident set after the load and
	// RelayPeakRSS its peak (VmHWM) so far.
	RelayRSS     int64 `json:"relay_rss"`
	RelayPeakRSS int64 `json:"relay_peak_rss"`
	// Lag is every probe's lag on every replica; Worst each probe's lag on
	// its slowest replica; Missing probes a replica never saw.
	Lag     Dist `json:"lag"`
	Worst   Dist `json:"worst"`
	Missing int  `json:"missing"`
	// HostBusy is the machine's busy fraction during the load.
	HostBusy float64 `json:"host_busy"`
}

// ScaleDataset is one dataset size of RunScale.
type ScaleDataset struct {
	// DatasetBytes is the data written, ValueSize its values' size (0:
	// the realistic mix), FillSeconds how long the fill took; RDBBytes the
	// snapshot the relay stored; StoreBytes its data directory on disk.
	DatasetBytes int64   `json:"dataset_bytes"`
	ValueSize    int     `json:"value_size,omitempty"`
	FillSeconds  float64 `json:"fill_s"`
	RDBBytes     int64   `json:"rdb_bytes"`
	StoreBytes   int64   `json:"store_bytes"`
	// NativeSyncSeconds is a native replica's full sync from the master
	// (0: not run), RelaySyncSeconds the relay's, ReplicaSyncSeconds a
	// replica's full sync from the relay after it, with the master stopped.
	NativeSyncSeconds  float64 `json:"native_sync_s,omitempty"`
	RelaySyncSeconds   float64 `json:"relay_sync_s"`
	ReplicaSyncSeconds float64 `json:"replica_sync_s"`
	// RelayRSSStart is the relay's resident set as it started (answering
	// PING, its sync just begun), RelayRSSSynced after its full sync,
	// RelayRSSAfter after the replica's, RelayPeakRSS its peak over the
	// step: the higher of its VmHWM and the highest memWatch sampled (the
	// kernel updates VmHWM lazily; either may be a few pages short).
	RelayRSSStart  int64 `json:"relay_rss_start"`
	RelayRSSSynced int64 `json:"relay_rss_synced"`
	RelayRSSAfter  int64 `json:"relay_rss_after"`
	RelayPeakRSS   int64 `json:"relay_peak_rss"`
	// MasterUsedMemory and MasterRSS are the master's used_memory and
	// used_memory_rss after the fill; MemAvailableMin the machine's lowest
	// MemAvailable over the step.
	MasterUsedMemory int64 `json:"master_used_memory"`
	MasterRSS        int64 `json:"master_rss"`
	MemAvailableMin  int64 `json:"mem_available_min"`
}

// ScaleReport is what RunScale measured.
type ScaleReport struct {
	Host     Host           `json:"host"`
	Rate     int            `json:"rate"`
	Duration float64        `json:"duration_s"`
	Replicas []ScaleStep    `json:"replicas,omitempty"`
	Native   []ScaleStep    `json:"native,omitempty"`
	Children []ScaleStep    `json:"children,omitempty"`
	Datasets []ScaleDataset `json:"datasets,omitempty"`
	Digests  []DigestCheck  `json:"digests"`
}

// Err reports a digest mismatch.
func (r *ScaleReport) Err() error {
	for _, d := range r.Digests {
		if !d.Match {
			return fmt.Errorf("%s: %s's digest differs from %s's", d.Phase, d.Replica, d.Master)
		}
	}
	return nil
}

// RunScale measures how one relay's CPU, memory and lag grow with the
// Redis replicas it feeds, with the child relays it feeds, and with the
// dataset it full-syncs. Every process it starts is killed, and its
// temporary directory removed (unless cfg.Keep), before it returns.
func RunScale(ctx context.Context, cfg ScaleConfig) (*ScaleReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench scale config: %w", err)
	}
	w, err := newWorkspace(cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.RelayArgs, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer w.close()
	s := &scaleRunner{workspace: w, cfg: cfg, rep: &ScaleReport{Host: newHost(), Rate: cfg.Rate, Duration: cfg.Duration.Seconds()}}
	// Refuse a dataset the machine cannot hold now, before the series
	// before it take their time; each dataset step checks again.
	for _, size := range cfg.Datasets {
		if err := s.checkDatasetRoom("dataset "+sizeString(size), size); err != nil {
			return nil, fmt.Errorf("bench scale: %w", err)
		}
	}
	if len(cfg.Replicas) > 0 {
		if s.rep.Replicas, err = s.replicas(ctx, false); err != nil {
			return s.rep, fmt.Errorf("replicas: %w", err)
		}
		if cfg.Native {
			if s.rep.Native, err = s.replicas(ctx, true); err != nil {
				return s.rep, fmt.Errorf("native replicas: %w", err)
			}
		}
	}
	if len(cfg.Children) > 0 {
		if err := s.children(ctx); err != nil {
			return s.rep, fmt.Errorf("children: %w", err)
		}
	}
	for _, size := range cfg.Datasets {
		if err := s.dataset(ctx, size); err != nil {
			return s.rep, fmt.Errorf("dataset %s: %w", sizeString(size), err)
		}
	}
	return s.rep, nil
}

type scaleRunner struct {
	*workspace
	cfg ScaleConfig
	rep *ScaleReport
}

// replicas adds Redis replicas to one relay (native: to the master
// itself) step by step and loads the master at each count.
func (s *scaleRunner) replicas(ctx context.Context, native bool) ([]ScaleStep, error) {
	series := "replicas"
	if native {
		series = "native"
	}
	e := s.newEnv(series)
	defer e.close()
	m, err := e.startRedis(ctx, "master", "", "--repl-backlog-size", "64mb")
	if err != nil {
		return nil, err
	}
	if err := noteRedisVersion(ctx, &s.rep.Host, m); err != nil {
		return nil, err
	}
	up, rl := m, (*server)(nil)
	if !native {
		if rl, err = e.startRelay(ctx, "relay", m.addr); err != nil {
			return nil, err
		}
		up = rl
	}
	var replicas []*server
	var steps []ScaleStep
	for _, n := range s.cfg.Replicas {
		s.progress("%s: starting replicas %d to %d on %s", series, len(replicas)+1, n, up.name)
		added := len(replicas)
		for len(replicas) < n {
			r, err := e.startRedis(ctx, fmt.Sprintf("replica-%d", len(replicas)+1), up.addr)
			if err != nil {
				return nil, err
			}
			replicas = append(replicas, r)
		}
		if err := waitLinked(ctx, replicas[added:]...); err != nil {
			return nil, err
		}
		step, err := s.load(ctx, fmt.Sprintf("%s-%d", series, n), m, rl, nil, replicas)
		if err != nil {
			return nil, err
		}
		step.Replicas = n
		steps = append(steps, step)
	}
	return steps, nil
}

// children adds child relays (each with a replica) to one relay step by
// step and loads the master at each count.
func (s *scaleRunner) children(ctx context.Context) error {
	e := s.newEnv("children")
	defer e.close()
	m, err := e.startRedis(ctx, "master", "", "--repl-backlog-size", "64mb")
	if err != nil {
		return err
	}
	if err := noteRedisVersion(ctx, &s.rep.Host, m); err != nil {
		return err
	}
	parent, err := e.startRelayWith(ctx, "relay", relaySpec{upstream: "redis://" + m.addr, grpc: true})
	if err != nil {
		return err
	}
	var children, replicas []*server
	for _, n := range s.cfg.Children {
		s.progress("children: starting child relays %d to %d, a replica under each", len(children)+1, n)
		added := len(replicas)
		for len(children) < n {
			i := len(children) + 1
			c, err := e.startRelayWith(ctx, fmt.Sprintf("child-%d", i), relaySpec{upstream: "arbor://" + parent.grpcAddr})
			if err != nil {
				return err
			}
			children = append(children, c.server)
			r, err := e.startRedis(ctx, fmt.Sprintf("replica-%d", i), c.addr)
			if err != nil {
				return err
			}
			replicas = append(replicas, r)
		}
		if err := waitLinked(ctx, replicas[added:]...); err != nil {
			return err
		}
		step, err := s.load(ctx, fmt.Sprintf("children-%d", n), m, parent.server, children, replicas)
		if err != nil {
			return err
		}
		step.Children, step.Replicas = n, n
		s.rep.Children = append(s.rep.Children, step)
	}
	return nil
}

// load runs one step's fixed-rate load on m with lag probes timed on
// every replica, and measures the master, the relay rl (nil: none, the
// replicas follow the master) and the children.
func (s *scaleRunner) load(ctx context.Context, phase string, m, rl *server, children, replicas []*server) (ScaleStep, error) {
	var step ScaleStep
	consumers := append(slices.Clone(children), replicas...)
	if rl != nil {
		consumers = append([]*server{rl}, consumers...)
	}
	if _, err := waitCaughtUp(ctx, m, consumers...); err != nil {
		return step, err
	}
	cfg := DefaultConfig()
	cfg.Rate, cfg.Duration, cfg.ValueSize, cfg.Keyspace, cfg.LagSamples = s.cfg.Rate, s.cfg.Duration, s.cfg.ValueSize, s.cfg.Keyspace, s.cfg.LagSamples
	probes := int(cfg.Duration.Seconds()*float64(cfg.LagSamples)) + 1
	subs, base, waitSubs, err := startSubscribers(ctx, probes, replicas...)
	if err != nil {
		return step, err
	}
	defer waitSubs()
	procs := []*process{m.process}
	for _, c := range consumers {
		procs = append(procs, c.process)
	}
	meter := newCPUMeter(procs...)
	off0, err := masterOffset(ctx, m)
	if err != nil {
		return step, err
	}
	if err := meter.begin(); err != nil {
		return step, err
	}
	metered := time.Now()
	sentAt := make([]time.Duration, probes)
	s.progress("%s: %d SETs/s for %v, %d lag probes/s timed on %d replicas", phase, cfg.Rate, cfg.Duration, cfg.LagSamples, len(replicas))
	wr, err := writeFixedRate(ctx, m.addr, cfg.fixedRate(), newSetSource(&cfg), base, sentAt)
	if err != nil {
		return step, err
	}
	off1, err := waitCaughtUp(ctx, m, consumers...)
	if err != nil {
		return step, err
	}
	usage, err := meter.end()
	if err != nil {
		return step, err
	}
	// Cores are CPU time over the metered time: the load and the
	// catch-up after it, which the CPU time also covers.
	wall := time.Since(metered).Seconds()
	// Everything is applied; the last notifications may still be on
	// their way.
	_ = poll(ctx, 2*time.Second, 10*time.Millisecond, "probes", nil, func() (bool, error) {
		for _, sub := range subs {
			if sub.got.Load() < int64(wr.probes) {
				return false, nil
			}
		}
		return true, nil
	})
	if err := waitSubs(); err != nil {
		return step, err
	}
	step.AchievedRate = float64(wr.writes) / wr.elapsed.Seconds()
	step.StreamBytes = off1 - off0
	step.HostBusy = usage.busyFraction()
	step.MasterCores = usage.procs[m.name].Seconds() / wall
	for _, c := range children {
		step.ChildrenCores += usage.procs[c.name].Seconds() / wall
	}
	for _, r := range replicas {
		step.ReplicasCores += usage.procs[r.name].Seconds() / wall
	}
	step.Lag, step.Worst, step.Missing = probeLags(sentAt[:wr.probes], subs)
	if rl != nil {
		step.RelayCores = usage.procs[rl.name].Seconds() / wall
		step.RelayCPUPerMB = usage.procs[rl.name].Seconds() / (float64(step.StreamBytes) / 1e6)
		if step.RelayRSS, step.RelayPeakRSS, err = residentSet(rl.pid()); err != nil {
			return step, err
		}
	}
	s.progress("%s: master %.2f cores; relay %.2f cores, %.3f CPU s/MB, RSS %s; replicas %.2f cores; machine %.0f%% busy; lag p99 %.2f ms, slowest replica p99 %.2f ms",
		phase, step.MasterCores, step.RelayCores, step.RelayCPUPerMB, sizeString(step.RelayRSS), step.ReplicasCores, 100*step.HostBusy, step.Lag.P99, step.Worst.P99)
	d, err := compareDigests(ctx, phase, m, replicas...)
	if err != nil {
		return step, err
	}
	s.rep.Digests = append(s.rep.Digests, d...)
	return step, nil
}

// probeLags returns the lag of every probe on every replica, the lag of
// each probe on its slowest replica (probes some replica missed left out),
// and how many (probe, replica) pairs were missed.
func probeLags(sentAt []time.Duration, subs []*subscriber) (all, worst Dist, missing int) {
	var every, slowest []time.Duration
	for seq, sent := range sentAt {
		var w time.Duration
		complete := true
		for _, sub := range subs {
			got := sub.recvAt[seq]
			if got == 0 {
				missing++
				complete = false
				continue
			}
			every = append(every, got-sent)
			w = max(w, got-sent)
		}
		if complete {
			slowest = append(slowest, w)
		}
	}
	return summarize(every), summarize(slowest), missing
}

// dataset fills a fresh master with size bytes, times a native replica's
// full sync from it (with DatasetNative), then a fresh relay's full sync
// from the master; it takes the master's digest and stops the master, and
// times a replica's full sync from the relay, which serves it from the
// snapshot on its disk. So, native aside, one copy of the dataset is
// resident at a time, and a dataset as large as the machine's memory
// allows fits. The relay's resident set is watched throughout (memWatch),
// as is the machine's MemAvailable: the step is refused before it starts
// when the machine cannot hold it (checkRoom), and stopped should memory
// run low anyway.
func (s *scaleRunner) dataset(ctx context.Context, size int64) (err error) {
	name := "dataset-" + sizeString(size)
	if err := s.checkDatasetRoom(name, size); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mw memWatch
	stopWatch := mw.watch(ctx, name, cancel)
	defer stopWatch()
	e := s.newEnv(name)
	defer func() {
		e.close()
		// Its stores and RDB files off the disk before the next dataset.
		if !s.keep {
			os.RemoveAll(e.dir)
		}
	}()
	defer func() {
		// Stopped by memWatch: its RoomError, not the "context canceled"
		// of whatever was waiting.
		if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrNoRoom) {
			err = cause
		}
	}()

	m, err := e.startRedis(ctx, "master", "")
	if err != nil {
		return err
	}
	if err := noteRedisVersion(ctx, &s.rep.Host, m); err != nil {
		return err
	}
	res := ScaleDataset{ValueSize: s.cfg.DatasetValueSize}
	var gen filler = newDocGen(DefaultMix(), 0, true, 1)
	what, window := DefaultMix().String(), 10000
	if vs := s.cfg.DatasetValueSize; vs > 0 {
		gen, what = newBlobGen(vs, 1), fmt.Sprintf("%s values of random bytes", sizeString(int64(vs)))
		// About 256 MiB in flight.
		window = min(window, max(16, (256<<20)/vs))
	}
	s.progress("%s: filling the master (%s)", name, what)
	began := time.Now()
	fr, err := fillDataset(ctx, m.addr, gen, size, window, s.progress)
	if err != nil {
		return err
	}
	res.DatasetBytes, res.FillSeconds = fr.dataBytes, time.Since(began).Seconds()
	mem, err := infoOn(ctx, m.addr, "memory")
	if err != nil {
		return err
	}
	res.MasterUsedMemory, _ = infoInt(mem, "used_memory")
	res.MasterRSS, _ = infoInt(mem, "used_memory_rss")
	s.progress("%s: filled in %.1f s; master used_memory %s, RSS %s", name, res.FillSeconds, sizeString(res.MasterUsedMemory), sizeString(res.MasterRSS))
	timeout := linkTimeout + time.Duration(res.MasterUsedMemory/(10<<20))*time.Second // at least 10 MiB/s

	if s.cfg.DatasetNative {
		nr, err := e.startRedis(ctx, "native-replica", "")
		if err != nil {
			return err
		}
		target, err := masterOffset(ctx, m)
		if err != nil {
			return err
		}
		began = time.Now()
		if err := replicaOf(ctx, nr, m.addr); err != nil {
			return err
		}
		if res.NativeSyncSeconds, err = s.awaitFullSync(ctx, name, nr, m, target, began, nil, &mw, timeout); err != nil {
			return err
		}
		d, err := compareDigests(ctx, name+"-native", m, nr)
		if err != nil {
			return err
		}
		s.rep.Digests = append(s.rep.Digests, d...)
		// Gone before the relay's sync: one copy fewer resident.
		nr.kill()
	}

	target, err := masterOffset(ctx, m)
	if err != nil {
		return err
	}
	began = time.Now()
	rl, err := e.startRelay(ctx, "relay", m.addr)
	if err != nil {
		return err
	}
	mw.pid.Store(int64(rl.pid()))
	if res.RelayRSSStart, _, err = residentSet(rl.pid()); err != nil {
		return err
	}
	if res.RelaySyncSeconds, err = s.awaitFullSync(ctx, name, rl, m, target, began, rl, &mw, timeout); err != nil {
		return err
	}
	if res.RelayRSSSynced, _, err = residentSet(rl.pid()); err != nil {
		return err
	}
	ai, err := infoOn(ctx, rl.addr, "arbor")
	if err != nil {
		return err
	}
	if res.RDBBytes, err = infoInt(ai, "arbor_snapshot_bytes"); err != nil {
		return err
	}
	s.progress("%s: comparing digests: the master's, then the master stops", name)
	md, err := digest(ctx, m.addr)
	if err != nil {
		return err
	}
	m.kill()
	ri, err := infoOn(ctx, rl.addr, "replication")
	if err != nil {
		return err
	}
	// The relay's offset no longer moves: the replica's target.
	if target, err = infoInt(ri, "slave_repl_offset"); err != nil {
		return err
	}
	r, err := e.startRedis(ctx, "replica", "")
	if err != nil {
		return err
	}
	began = time.Now()
	if err := replicaOf(ctx, r, rl.addr); err != nil {
		return err
	}
	if res.ReplicaSyncSeconds, err = s.awaitFullSync(ctx, name, r, rl, target, began, rl, &mw, timeout); err != nil {
		return err
	}
	if res.RelayRSSAfter, res.RelayPeakRSS, err = residentSet(rl.pid()); err != nil {
		return err
	}
	res.RelayPeakRSS = max(res.RelayPeakRSS, mw.maxRSS.Load())
	res.MemAvailableMin = mw.lowest()
	if res.StoreBytes, err = dirSize(filepath.Join(e.dir, rl.name)); err != nil {
		return err
	}
	s.progress("%s: relay synced in %.1f s, replica from it (master stopped) in %.1f s; RDB %s, store %s; relay RSS %s after its sync, %s after the replica's, peak %s",
		name, res.RelaySyncSeconds, res.ReplicaSyncSeconds, sizeString(res.RDBBytes), sizeString(res.StoreBytes),
		sizeString(res.RelayRSSSynced), sizeString(res.RelayRSSAfter), sizeString(res.RelayPeakRSS))
	rd, err := digest(ctx, r.addr)
	if err != nil {
		return err
	}
	s.rep.Digests = append(s.rep.Digests, DigestCheck{
		Phase: name, Replica: r.name, Master: m.name + " (before it stopped)",
		ReplicaDigest: string(rd.Str), MasterDigest: string(md.Str), Match: string(rd.Str) == string(md.Str),
	})
	s.rep.Datasets = append(s.rep.Datasets, res)
	return nil
}

// checkDatasetRoom refuses a dataset step of size bytes the machine cannot
// hold (a *RoomError), by estimateDataset and the machine's MemAvailable
// and free disk now.
func (s *scaleRunner) checkDatasetRoom(step string, size int64) error {
	have, err := readMachineRoom(s.root)
	if err != nil {
		return err
	}
	return checkRoom(step, estimateDataset(size, s.cfg.DatasetValueSize, s.cfg.DatasetNative), have)
}

// datasetProgressEvery is how often a dataset step's syncs report progress.
const datasetProgressEvery = 5 * time.Second

// awaitFullSync waits until f, full-syncing from src since began, has its
// link up at offset target (or timeout passes), and returns the seconds
// since began. Every datasetProgressEvery it reports f's progress (a
// relay's store on disk, a redis-server's resident set as it loads), the
// relay's resident set and the machine's MemAvailable.
func (s *scaleRunner) awaitFullSync(ctx context.Context, step string, f, src *server, target int64, began time.Time, rl *server, mw *memWatch, timeout time.Duration) (float64, error) {
	next := began.Add(datasetProgressEvery)
	err := awaitLink(ctx, f, src, target, timeout, slowPoll, f.name+" full sync from "+src.name, func() {
		if now := time.Now(); now.After(next) {
			next = now.Add(datasetProgressEvery)
			avail, _ := memAvailable()
			s.progress("%s: %s full sync from %s, %.0f s: %s%s; MemAvailable %s (lowest %s)", step, f.name, src.name, now.Sub(began).Seconds(),
				syncProgress(f, rl), relayRSSProgress(rl), sizeString(avail), sizeString(mw.lowest()))
		}
	})
	if err != nil {
		return 0, err
	}
	return time.Since(began).Seconds(), nil
}

// syncProgress describes how far f's full sync is: the relay's store on
// disk, or a redis-server's resident set.
func syncProgress(f, rl *server) string {
	if f == rl {
		n, err := dirSize(f.dir)
		if err != nil {
			return "store unknown"
		}
		return "store " + sizeString(n) + " on disk"
	}
	rss, _, err := residentSet(f.pid())
	if err != nil {
		return "RSS unknown"
	}
	return "RSS " + sizeString(rss)
}

// relayRSSProgress is "; relay RSS now (peak)", or nothing without a relay.
func relayRSSProgress(rl *server) string {
	if rl == nil {
		return ""
	}
	rss, peak, err := residentSet(rl.pid())
	if err != nil {
		return ""
	}
	return fmt.Sprintf("; relay RSS %s (peak %s)", sizeString(rss), sizeString(peak))
}

// dirSize is the size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	return n, err
}

// WriteText writes the report as tables.
func (r *ScaleReport) WriteText(w io.Writer) error {
	p := &printer{w: w}
	p.f("relay scale: %d CPUs, redis %s, %s; load %d SETs/s for %.0f s per step, lag probes timed on every replica\n",
		r.Host.CPUs, r.Host.RedisVersion, r.Host.GoVersion, r.Rate, r.Duration)
	steps := func(title, count string, xs []ScaleStep, relay, children bool) {
		if len(xs) == 0 {
			return
		}
		p.f("%s\n", title)
		tw := p.table()
		head := "  " + count + "\twrites/s\tmaster cores"
		if relay {
			head += "\trelay cores\trelay CPU s/MB\trelay RSS\tpeak RSS"
		}
		if children {
			head += "\tchildren cores"
		}
		fmt.Fprintln(tw, head+"\treplicas cores\tmachine busy\tlag p50 ms\tlag p99 ms\tslowest replica p99 ms\tmissed")
		for _, s := range xs {
			n := s.Replicas
			if children {
				n = s.Children
			}
			fmt.Fprintf(tw, "  %d\t%.0f\t%.3f", n, s.AchievedRate, s.MasterCores)
			if relay {
				fmt.Fprintf(tw, "\t%.3f\t%.4f\t%s\t%s", s.RelayCores, s.RelayCPUPerMB, sizeString(s.RelayRSS), sizeString(s.RelayPeakRSS))
			}
			if children {
				fmt.Fprintf(tw, "\t%.3f", s.ChildrenCores)
			}
			fmt.Fprintf(tw, "\t%.2f\t%.0f%%\t%.2f\t%.2f\t%.2f\t%d\n", s.ReplicasCores, 100*s.HostBusy, s.Lag.P50, s.Lag.P99, s.Worst.P99, s.Missing)
		}
		tw.Flush()
	}
	steps("Redis replicas on one relay (added to the same relay step by step):", "replicas", r.Replicas, true, false)
	steps("Native, side by side: the same replicas following the master directly:", "replicas", r.Native, false, false)
	steps("Child relays on one relay over gRPC (a replica under each child; lag to those replicas):", "children", r.Children, true, true)
	if len(r.Datasets) > 0 {
		p.f("Dataset: a fresh relay full-syncs from the master; the master stops; a replica full-syncs from the relay (its snapshot on disk)\n")
		tw := p.table()
		fmt.Fprintln(tw, "  dataset\tvalues\tfill s\tRDB\trelay store\tnative sync s\trelay sync s\treplica sync s\trelay RSS at start\tsynced\tafter replica\tpeak\tmaster used_memory\tmaster RSS\tlowest MemAvailable")
		for _, d := range r.Datasets {
			values, native := "mix", "-"
			if d.ValueSize > 0 {
				values = sizeString(int64(d.ValueSize))
			}
			if d.NativeSyncSeconds > 0 {
				native = fmt.Sprintf("%.1f", d.NativeSyncSeconds)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.1f\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sizeString(d.DatasetBytes), values, d.FillSeconds,
				sizeString(d.RDBBytes), sizeString(d.StoreBytes), native, d.RelaySyncSeconds, d.ReplicaSyncSeconds,
				sizeString(d.RelayRSSStart), sizeString(d.RelayRSSSynced), sizeString(d.RelayRSSAfter), sizeString(d.RelayPeakRSS),
				sizeString(d.MasterUsedMemory), sizeString(d.MasterRSS), sizeString(d.MemAvailableMin))
		}
		tw.Flush()
	}
	if bad := slices.IndexFunc(r.Digests, func(d DigestCheck) bool { return !d.Match }); bad >= 0 {
		p.f("Consistency: MISMATCH: %s differs from %s in %s\n", r.Digests[bad].Replica, r.Digests[bad].Master, r.Digests[bad].Phase)
	} else {
		p.f("Consistency: DEBUG DIGEST of %d replicas equal to their master's after each step\n", len(r.Digests))
	}
	return p.err
}
