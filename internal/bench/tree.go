package bench

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/arbor-fabric/arbor/internal/wan"
)

// remoteSites are the sites behind an inter-site link; the master and
// relay-a are in site A.
var remoteSites = []string{"B", "C"}

// masterArgs configure every master of the tree benchmark: no output
// buffer limit for replicas, so a native replica behind a saturated link
// queues instead of being cut and fully resynced over and over, and a
// backlog that survives a short disconnection.
var masterArgs = []string{
	"--client-output-buffer-limit", "replica 0 0 0",
	"--repl-backlog-size", "256mb",
}

// treeRunner runs the phases of one RunTree.
type treeRunner struct {
	*workspace
	cfg TreeConfig
	gen *docGen // the steady loads' generator, shared by the phases
}

// RunTree runs cfg's phases of the relay tree benchmark and returns their
// report. Every process it starts is killed, every bridge closed, and the
// temporary directory removed (unless cfg.Keep) before it returns, also
// when ctx ends early. On error the report holds the phases completed so
// far.
func RunTree(ctx context.Context, cfg TreeConfig) (*TreeReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench config: %w", err)
	}
	w, err := newWorkspace(cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, cfg.RelayArgs, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer w.close()
	unpin, err := w.pinBy(cfg.Pin, relaysApart)
	if err != nil {
		return nil, err
	}
	defer unpin()
	t := &treeRunner{workspace: w, cfg: cfg, gen: newDocGen(cfg.Mix, cfg.Keyspace, false, cfg.Seed)}
	rep := &TreeReport{Host: newHost(), Settings: newTreeSettings(&cfg)}
	if cfg.Keep {
		rep.Dir = w.root
	}
	if cfg.has(TreePhaseBytes) || cfg.has(TreePhaseLag) {
		if err := t.streamPhases(ctx, rep); err != nil {
			return rep, err
		}
	}
	if cfg.has(TreePhaseFullSync) {
		t.progress("phase %s", TreePhaseFullSync)
		if rep.FullSync, err = t.fullSync(ctx, rep); err != nil {
			return rep, fmt.Errorf("phase %s: %w", TreePhaseFullSync, err)
		}
	}
	rep.Targets = rep.targets()
	return rep, nil
}

// newBridge starts one inter-site link to target. Its delay line holds
// twice the link's bandwidth-delay product (at least the default), so the
// latency never limits the rate below the bandwidth.
func (t *treeRunner) newBridge(target string) (*wan.Bridge, error) {
	queue := 4 << 20
	if bdp := 2 * float64(t.cfg.Bandwidth) * t.cfg.Latency.Seconds(); bdp > float64(queue) {
		queue = int(bdp)
	}
	return wan.NewBridge(target, wan.WithBandwidth(t.cfg.Bandwidth), wan.WithLatency(t.cfg.Latency), wan.WithQueueBytes(queue))
}

// relayArgs are the arguments every relay of the tree gets.
func (t *treeRunner) relayArgs() []string {
	return []string{"--compression", t.cfg.Compression}
}

// treeSite is one remote site of the tree: its two links and servers.
type treeSite struct {
	name string
	// nativeLink carries S-1's replication from the master; arborLink
	// carries relay-S's gRPC stream from relay-a.
	nativeLink, arborLink *wan.Bridge
	native1, native2      *server // S-1 replicates from M, S-2 from S-1
	relay                 *relayServer
	arbor1, arbor2        *server // both replicate from relay-S
}

// tree is the seed shape, native and Arbor, fed by one master.
type tree struct {
	env    *env
	master *server
	relayA *relayServer
	sites  []*treeSite
}

// close kills the processes and closes the links.
func (tr *tree) close() {
	tr.env.close()
	for _, s := range tr.sites {
		for _, b := range []*wan.Bridge{s.nativeLink, s.arborLink} {
			if b != nil {
				b.Close()
			}
		}
	}
}

// replicas returns every replica and relay, upstream first.
func (tr *tree) replicas() []*server {
	out := []*server{tr.relayA.server}
	for _, s := range tr.sites {
		out = append(out, s.native1, s.native2, s.relay.server, s.arbor1, s.arbor2)
	}
	return out
}

// redisReplicas returns every redis-server replica (the servers a digest
// can be compared on).
func (tr *tree) redisReplicas() []*server {
	var out []*server
	for _, s := range tr.sites {
		out = append(out, s.native1, s.native2, s.arbor1, s.arbor2)
	}
	return out
}

// processes returns the master's process and every replica's.
func (tr *tree) processes() []*process {
	ps := []*process{tr.master.process}
	for _, r := range tr.replicas() {
		ps = append(ps, r.process)
	}
	return ps
}

// buildTree starts the seed shape: master M and relay-a in site A; in each
// remote site, S-1 replicating from M through the site's native link and
// S-2 from S-1, and relay-S following relay-a through the site's Arbor
// link with its two replicas. It returns once everything is in sync.
func (t *treeRunner) buildTree(ctx context.Context, rep *TreeReport) (tr *tree, err error) {
	tr = &tree{env: t.newEnv("tree")}
	defer func() {
		if err != nil {
			tr.close()
			tr = nil
		}
	}()
	if tr.master, err = tr.env.startRedis(ctx, "master", "", masterArgs...); err != nil {
		return tr, err
	}
	if err := noteRedisVersion(ctx, &rep.Host, tr.master); err != nil {
		return tr, err
	}
	tr.relayA, err = tr.env.startRelayWith(ctx, "relay-a", relaySpec{
		upstream: "redis://" + tr.master.addr, site: "A", grpc: true, args: t.relayArgs()})
	if err != nil {
		return tr, err
	}
	if err := waitLinked(ctx, tr.relayA.server); err != nil {
		return tr, err
	}
	for _, name := range remoteSites {
		lower := strings.ToLower(name)
		s := &treeSite{name: name}
		tr.sites = append(tr.sites, s)
		if s.nativeLink, err = t.newBridge(tr.master.addr); err != nil {
			return tr, err
		}
		if s.arborLink, err = t.newBridge(tr.relayA.grpcAddr); err != nil {
			return tr, err
		}
		if s.native1, err = tr.env.startRedis(ctx, "native-"+lower+"1", s.nativeLink.Addr(), masterArgs...); err != nil {
			return tr, err
		}
		if s.native2, err = tr.env.startRedis(ctx, "native-"+lower+"2", s.native1.addr); err != nil {
			return tr, err
		}
		s.relay, err = tr.env.startRelayWith(ctx, "relay-"+lower, relaySpec{
			upstream: "arbor://" + s.arborLink.Addr(), site: name, args: t.relayArgs()})
		if err != nil {
			return tr, err
		}
	}
	// The relays first: a replica asking a relay without data retries
	// only after a second.
	for _, s := range tr.sites {
		if err := waitLinked(ctx, s.relay.server); err != nil {
			return tr, err
		}
	}
	for _, s := range tr.sites {
		lower := strings.ToLower(s.name)
		if s.arbor1, err = tr.env.startRedis(ctx, "arbor-"+lower+"1", s.relay.addr); err != nil {
			return tr, err
		}
		if s.arbor2, err = tr.env.startRedis(ctx, "arbor-"+lower+"2", s.relay.addr); err != nil {
			return tr, err
		}
	}
	if err := waitLinked(ctx, tr.replicas()...); err != nil {
		return tr, err
	}
	if _, err := waitCaughtUp(ctx, tr.master, tr.replicas()...); err != nil {
		return tr, err
	}
	t.progress("tree in sync: master, relay-a; sites %s each with a native chain and a relay with two replicas, links %s each way +%v",
		strings.Join(remoteSites, ", "), rateString(t.cfg.Bandwidth), t.cfg.Latency)
	return tr, nil
}

// linkBytes are a link's byte counters.
type linkBytes struct{ to, from int64 }

func readLink(b *wan.Bridge) linkBytes {
	to, from := b.BytesForwarded()
	return linkBytes{to, from}
}

// streamPhases runs the bytes and lag phases on one tree.
func (t *treeRunner) streamPhases(ctx context.Context, rep *TreeReport) error {
	t.progress("building the tree")
	tr, err := t.buildTree(ctx, rep)
	if err != nil {
		return fmt.Errorf("build tree: %w", err)
	}
	defer tr.close()
	if t.cfg.has(TreePhaseBytes) {
		t.progress("phase %s", TreePhaseBytes)
		if rep.Bytes, err = t.bytesPhase(ctx, tr, rep); err != nil {
			return fmt.Errorf("phase %s: %w", TreePhaseBytes, err)
		}
	}
	if t.cfg.has(TreePhaseLag) {
		t.progress("phase %s", TreePhaseLag)
		if rep.Lag, err = t.lagPhase(ctx, tr, rep, TreePhaseLag, t.cfg.LagRate); err != nil {
			return fmt.Errorf("phase %s: %w", TreePhaseLag, err)
		}
		for _, rate := range t.cfg.LagSweep {
			phase := fmt.Sprintf("%s@%d", TreePhaseLag, rate)
			t.progress("phase %s", phase)
			l, err := t.lagPhase(ctx, tr, rep, phase, rate)
			if err != nil {
				return fmt.Errorf("phase %s: %w", phase, err)
			}
			rep.LagSweep = append(rep.LagSweep, l)
		}
	}
	return nil
}

// snapshotLinks reads every site's link counters.
func snapshotLinks(tr *tree) (native, arbor []linkBytes) {
	for _, s := range tr.sites {
		native = append(native, readLink(s.nativeLink))
		arbor = append(arbor, readLink(s.arborLink))
	}
	return native, arbor
}

// linkDelta returns the bytes each way between two readings: toTarget
// went from the site toward its upstream in site A (acks), fromTarget from
// site A into the site (the stream).
func linkDelta(a, b linkBytes) (toTarget, fromTarget int64) { return b.to - a.to, b.from - a.from }

// bytesPhase writes at BytesRate for Duration and compares the bytes each
// site's native and Arbor links carried with the master's stream.
func (t *treeRunner) bytesPhase(ctx context.Context, tr *tree, rep *TreeReport) (*TreeBytesResult, error) {
	if _, err := waitCaughtUp(ctx, tr.master, tr.replicas()...); err != nil {
		return nil, err
	}
	meter := newCPUMeter(tr.processes()...)
	off0, err := masterOffset(ctx, tr.master)
	if err != nil {
		return nil, err
	}
	n0, a0 := snapshotLinks(tr)
	if err := meter.begin(); err != nil {
		return nil, err
	}
	t.progress("writing %d writes/s (%s) for %v", t.cfg.BytesRate, t.cfg.Mix, t.cfg.Duration)
	fr := fixedRate{rate: t.cfg.BytesRate, duration: t.cfg.Duration, batchInterval: t.cfg.BatchInterval}
	wr, err := writeFixedRate(ctx, tr.master.addr, fr, t.gen, time.Now(), nil)
	if err != nil {
		return nil, err
	}
	loadEnd := time.Now()
	off1, err := waitCaughtUp(ctx, tr.master, tr.replicas()...)
	if err != nil {
		return nil, err
	}
	catchUp := time.Since(loadEnd)
	n1, a1 := snapshotLinks(tr)
	usage, err := meter.end()
	if err != nil {
		return nil, err
	}
	res := &TreeBytesResult{
		Rate:         t.cfg.BytesRate,
		AchievedRate: float64(wr.writes) / wr.elapsed.Seconds(),
		Writes:       wr.writes,
		Seconds:      wr.elapsed.Seconds(),
		StreamBytes:  off1 - off0,
		CatchUpMs:    ms(catchUp),
		Usage:        newUsage(usage),
	}
	var total SiteBytes
	total.Site = "total"
	for i, s := range tr.sites {
		sb := SiteBytes{Site: s.name}
		sb.NativeFromSite, sb.NativeToSite = linkDelta(n0[i], n1[i])
		sb.ArborFromSite, sb.ArborToSite = linkDelta(a0[i], a1[i])
		sb.fill(res.StreamBytes)
		res.Sites = append(res.Sites, sb)
		total.NativeToSite += sb.NativeToSite
		total.NativeFromSite += sb.NativeFromSite
		total.ArborToSite += sb.ArborToSite
		total.ArborFromSite += sb.ArborFromSite
	}
	total.fill(res.StreamBytes)
	res.Total = total
	t.progress("bytes: %d writes at %.0f/s, %s of master stream; native links %s, Arbor links %s (ratio %.3f)",
		res.Writes, res.AchievedRate, sizeString(res.StreamBytes), sizeString(total.NativeToSite+total.NativeFromSite),
		sizeString(total.ArborToSite+total.ArborFromSite), total.Ratio)
	if err := t.checkDigests(ctx, rep, TreePhaseBytes, tr.master, tr.redisReplicas()...); err != nil {
		return nil, err
	}
	return res, nil
}

// lagPhase writes rate commands per second for Duration with lag probes,
// timed through keyspace notifications on S-2 of site B on both paths.
func (t *treeRunner) lagPhase(ctx context.Context, tr *tree, rep *TreeReport, phase string, rate int) (*TreeLagResult, error) {
	b := tr.sites[0]
	if _, err := waitCaughtUp(ctx, tr.master, tr.replicas()...); err != nil {
		return nil, err
	}
	samples := min(t.cfg.LagSamples, rate)
	probes := int(t.cfg.Duration.Seconds()*float64(samples)) + 1
	subs, base, waitSubs, err := startSubscribers(ctx, probes, b.native2, b.arbor2)
	if err != nil {
		return nil, err
	}
	defer waitSubs()

	meter := newCPUMeter(tr.processes()...)
	off0, err := masterOffset(ctx, tr.master)
	if err != nil {
		return nil, err
	}
	b.arborLink.ResetCounters() // its lateness, for this phase
	n0, a0 := snapshotLinks(tr)
	if err := meter.begin(); err != nil {
		return nil, err
	}
	sentAt := make([]time.Duration, probes)
	t.progress("writing %d writes/s (%s) for %v with %d lag probes/s", rate, t.cfg.Mix, t.cfg.Duration, samples)
	fr := fixedRate{rate: rate, duration: t.cfg.Duration, batchInterval: t.cfg.BatchInterval,
		lagSamples: samples, probeValue: []byte(`{"probe":true}`)}
	wr, err := writeFixedRate(ctx, tr.master.addr, fr, t.gen, base, sentAt)
	if err != nil {
		return nil, err
	}
	loadEnd := time.Now()
	offEnd, err := masterOffset(ctx, tr.master)
	if err != nil {
		return nil, err
	}
	nEnd, aEnd := snapshotLinks(tr)
	off1, err := waitCaughtUp(ctx, tr.master, tr.replicas()...)
	if err != nil {
		return nil, err
	}
	catchUp := time.Since(loadEnd)
	usage, err := meter.end()
	if err != nil {
		return nil, err
	}
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
	secs := wr.elapsed.Seconds()
	nTo, nFrom := linkDelta(n0[0], nEnd[0])
	aTo, aFrom := linkDelta(a0[0], aEnd[0])
	res := &TreeLagResult{
		Rate:            rate,
		AchievedRate:    float64(wr.writes) / secs,
		Writes:          wr.writes,
		Probes:          wr.probes,
		LinkLatencyMs:   ms(t.cfg.Latency),
		LinkBandwidth:   t.cfg.Bandwidth,
		StreamBytes:     off1 - off0,
		StreamRate:      float64(offEnd-off0) / secs,
		NativeLinkRate:  float64(nTo+nFrom) / secs,
		ArborLinkRate:   float64(aTo+aFrom) / secs,
		CatchUpMs:       ms(catchUp),
		RelayHops:       2,
		NativeRedisHops: 2,
		Usage:           newUsage(usage),
	}
	res.Native, res.Arbor, res.Paired = lagStats(sentAt[:wr.probes], subs[0], subs[1])
	res.NativeBeyondLinkP99 = res.Native.P99 - res.LinkLatencyMs
	res.ArborBeyondLinkP99 = res.Arbor.P99 - res.LinkLatencyMs
	res.NativeBeyondLinkP50 = res.Native.P50 - res.LinkLatencyMs
	res.ArborBeyondLinkP50 = res.Arbor.P50 - res.LinkLatencyMs
	res.PerRelayHopP99 = res.ArborBeyondLinkP99 / float64(res.RelayHops)
	res.PerRelayHopP50 = res.ArborBeyondLinkP50 / float64(res.RelayHops)
	// The relays' own measurement: how long bytes took from relay-a's
	// receipt to being stored at relay-b (INFO arbor, last 10 s).
	if ai, err := infoOn(ctx, tr.sites[0].relay.addr, "arbor"); err == nil {
		p50, _ := infoInt(ai, "arbor_tree_lag_p50_us")
		p99, _ := infoInt(ai, "arbor_tree_lag_p99_us")
		mx, _ := infoInt(ai, "arbor_tree_lag_max_us")
		n, _ := infoInt(ai, "arbor_tree_lag_frames")
		res.RelayPath = &RelayPathLag{Frames: n, P50: float64(p50) / 1000, P99: float64(p99) / 1000, Max: float64(mx) / 1000}
		res.RelayPath.PerHopP50 = (res.RelayPath.P50 - res.LinkLatencyMs) / float64(res.RelayHops)
		res.RelayPath.PerHopP99 = (res.RelayPath.P99 - res.LinkLatencyMs) / float64(res.RelayHops)
		// relay-a is the bridge's target: its bytes flow toward clients.
		_, late := b.arborLink.Lateness()
		res.RelayPath.LinkLate = &LinkLateness{Chunks: late.Chunks, P50: ms(late.P50), P99: ms(late.P99), Max: ms(late.Max)}
	}
	t.progress("lag: %d writes at %.0f/s, %d probes; site B S-2 p99 native %.3f ms, Arbor %.3f ms (link %v)",
		res.Writes, res.AchievedRate, res.Probes, res.Native.P99, res.Arbor.P99, t.cfg.Latency)
	if err := t.checkDigests(ctx, rep, phase, tr.master, tr.redisReplicas()...); err != nil {
		return nil, err
	}
	return res, nil
}

// checkDigests compares every replica's DEBUG DIGEST with the master's and
// records the checks.
func (t *treeRunner) checkDigests(ctx context.Context, rep *TreeReport, phase string, master *server, replicas ...*server) error {
	t.progress("%s: comparing the DEBUG DIGEST of %d replicas with the master's", phase, len(replicas))
	d, err := compareDigests(ctx, phase, master, replicas...)
	if err != nil {
		return err
	}
	rep.Digests = append(rep.Digests, d...)
	return nil
}

// syncTimeout bounds a full sync of size bytes over the limited link.
func (t *treeRunner) syncTimeout(size int64) time.Duration {
	d := linkTimeout + 2*time.Minute
	if t.cfg.Bandwidth > 0 {
		d += 4 * time.Duration(float64(size)/float64(t.cfg.Bandwidth)*float64(time.Second))
	}
	return d
}

// waitSynced waits until s reports its master link up and has reached the
// master's offset, or timeout passes.
func waitSynced(ctx context.Context, master, s *server, timeout time.Duration) error {
	target, err := masterOffset(ctx, master)
	if err != nil {
		return err
	}
	return awaitLink(ctx, s, master, target, timeout, pollInterval, s.name+" full sync", nil)
}

// awaitLink polls s every interval until it reports its master link up at
// offset target or beyond, or timeout passes (src and s are checked to be
// still running). tick, when not nil, runs before each poll.
func awaitLink(ctx context.Context, s, src *server, target int64, timeout, every time.Duration, what string, tick func()) error {
	c, err := dial(ctx, s.addr)
	if err != nil {
		return err
	}
	defer c.close()
	var status string
	var off int64
	err = poll(ctx, timeout, every, what, []*server{src, s}, func() (bool, error) {
		if tick != nil {
			tick()
		}
		m, err := c.info("replication")
		if err != nil {
			return false, err
		}
		status = m["master_link_status"]
		if status != "up" {
			return false, nil
		}
		off, err = infoInt(m, "slave_repl_offset")
		return off >= target, err
	})
	if err != nil {
		return fmt.Errorf("%w; master_link_status %q, offset %d, target %d", err, status, off, target)
	}
	return nil
}

// replicaOf sends REPLICAOF addr to s.
func replicaOf(ctx context.Context, s *server, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	_, err = query(ctx, s.addr, "REPLICAOF", host, port)
	return err
}

// fullSync fills a master with DatasetSize bytes of the workload, then
// times a fresh native replica in site B syncing from it through a link,
// and a fresh relay in site B syncing from relay-a through a link together
// with a replica of that relay that asks it as it starts.
func (t *treeRunner) fullSync(ctx context.Context, rep *TreeReport) (*FullSyncResult, error) {
	e := t.newEnv(TreePhaseFullSync)
	var links []*wan.Bridge
	defer func() {
		e.close()
		for _, b := range links {
			b.Close()
		}
	}()
	m, err := e.startRedis(ctx, "master", "", masterArgs...)
	if err != nil {
		return nil, err
	}
	if err := noteRedisVersion(ctx, &rep.Host, m); err != nil {
		return nil, err
	}
	t.progress("filling the master with %s of keys and values (%s)", sizeString(t.cfg.DatasetSize), t.cfg.Mix)
	gen := newDocGen(t.cfg.Mix, 0, true, t.cfg.Seed+1)
	fr, err := fillDataset(ctx, m.addr, gen, t.cfg.DatasetSize, t.cfg.FillWindow, t.progress)
	if err != nil {
		return nil, err
	}
	res := &FullSyncResult{
		DatasetTarget: t.cfg.DatasetSize,
		DataBytes:     fr.dataBytes,
		FillWrites:    fr.writes,
		FillSeconds:   fr.elapsed.Seconds(),
		FillCounts:    gen.count,
		LinkBandwidth: t.cfg.Bandwidth,
	}
	mem, err := infoOn(ctx, m.addr, "memory")
	if err != nil {
		return nil, err
	}
	res.UsedMemory, _ = infoInt(mem, "used_memory")
	res.UsedMemoryDataset, _ = infoInt(mem, "used_memory_dataset")
	keys, err := query(ctx, m.addr, "DBSIZE")
	if err != nil {
		return nil, err
	}
	res.Keys = keys.Int
	t.progress("filled %s of data in %d writes, %.1f s; master used_memory %s, %d keys",
		sizeString(fr.dataBytes), fr.writes, fr.elapsed.Seconds(), sizeString(res.UsedMemory), res.Keys)
	timeout := t.syncTimeout(res.UsedMemory)

	// Native: a fresh replica in site B, REPLICAOF the master through
	// the link.
	nativeLink, err := t.newBridge(m.addr)
	if err != nil {
		return nil, err
	}
	links = append(links, nativeLink)
	loadArgs := []string{"--repl-diskless-load", t.cfg.ReplicaDisklessLoad}
	res.ReplicaDisklessLoad = t.cfg.ReplicaDisklessLoad
	nr, err := e.startRedis(ctx, "native-b1", "", loadArgs...)
	if err != nil {
		return nil, err
	}
	t.progress("native: %s REPLICAOF the master through the site B link", nr.name)
	began := time.Now()
	if err := replicaOf(ctx, nr, nativeLink.Addr()); err != nil {
		return nil, err
	}
	if err := waitSynced(ctx, m, nr, timeout); err != nil {
		return nil, err
	}
	res.NativeSeconds = time.Since(began).Seconds()
	to, from := nativeLink.BytesForwarded()
	res.NativeLinkBytes = to + from
	t.progress("native: in sync after %.1f s, %s over the link", res.NativeSeconds, sizeString(res.NativeLinkBytes))

	// Arbor: relay-a next to the master takes its snapshot locally (not
	// timed against native), then a fresh relay in site B follows it
	// through the link, and a fresh replica there follows that relay.
	began = time.Now()
	relayA, err := e.startRelayWith(ctx, "relay-a", relaySpec{
		upstream: "redis://" + m.addr, site: "A", grpc: true, args: t.relayArgs()})
	if err != nil {
		return nil, err
	}
	if err := waitSynced(ctx, m, relayA.server, timeout); err != nil {
		return nil, err
	}
	res.RelayASeconds = time.Since(began).Seconds()
	ai, err := infoOn(ctx, relayA.addr, "arbor")
	if err != nil {
		return nil, err
	}
	res.RDBBytes, err = infoInt(ai, "arbor_snapshot_bytes")
	if err != nil {
		return nil, err
	}
	t.progress("relay-a: snapshot of %s (RDB) taken locally in %.1f s", sizeString(res.RDBBytes), res.RelayASeconds)
	arborLink, err := t.newBridge(relayA.grpcAddr)
	if err != nil {
		return nil, err
	}
	links = append(links, arborLink)
	ar, err := e.startRedis(ctx, "arbor-b1", "", loadArgs...)
	if err != nil {
		return nil, err
	}
	// The site's full sync: relay-b and its replica, which asks relay-b as
	// relay-b starts (a site coming up), both timed from relay-b's start;
	// the site is synced when both are.
	t.progress("arbor: relay-b follows relay-a through the site B link, %s REPLICAOF relay-b as it starts", ar.name)
	began = time.Now()
	relayB, err := e.startRelayWith(ctx, "relay-b", relaySpec{
		upstream: "arbor://" + arborLink.Addr(), site: "B", args: t.relayArgs()})
	if err != nil {
		return nil, err
	}
	if err := replicaOf(ctx, ar, relayB.addr); err != nil {
		return nil, err
	}
	if err := waitSynced(ctx, m, relayB.server, timeout); err != nil {
		return nil, err
	}
	res.ArborRelaySeconds = time.Since(began).Seconds()
	to, from = arborLink.BytesForwarded()
	res.ArborLinkBytes = to + from
	t.progress("arbor: relay-b in sync after %.1f s, %s over the link", res.ArborRelaySeconds, sizeString(res.ArborLinkBytes))
	if err := waitSynced(ctx, m, ar, timeout); err != nil {
		return nil, err
	}
	res.ArborReplicaSeconds = time.Since(began).Seconds()
	res.ArborSeconds = max(res.ArborRelaySeconds, res.ArborReplicaSeconds)
	res.Ratio = ratio(res.ArborSeconds, res.NativeSeconds)
	if t.cfg.Bandwidth > 0 {
		res.LinkFloorSeconds = float64(res.ArborLinkBytes) / float64(t.cfg.Bandwidth)
		res.FloorRatio = ratio(res.LinkFloorSeconds, res.NativeSeconds)
	}
	t.progress("arbor: %s in sync %.1f s after relay-b started; site synced in %.1f s (native %.1f s, ratio %.3f; link floor %.1f s)",
		ar.name, res.ArborReplicaSeconds, res.ArborSeconds, res.NativeSeconds, res.Ratio, res.LinkFloorSeconds)
	if err := t.checkDigests(ctx, rep, TreePhaseFullSync, m, nr, ar); err != nil {
		return nil, err
	}
	return res, nil
}
