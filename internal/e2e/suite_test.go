//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/demo"
	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/wan"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// Environment of the suite.
const (
	// reportEnv names the file the markdown table is written to (besides
	// the test's output).
	reportEnv = "ARBOR_E2E_REPORT"
	// binEnv names a built arbor binary (make e2e passes bin/arbor); unset,
	// TestMain builds one.
	binEnv = "ARBOR_BIN"
	// keepEnv names a directory under which each row's files (Redis,
	// agent and relay data and logs) are kept; unset, they are removed.
	keepEnv = "ARBOR_E2E_KEEP"
)

// The agents' election settings: the fast profile (2 s lease), relays
// counted by min-replicas-to-write, and a small lag bound so the lagging
// row needs little data.
const (
	leaseTTL    = 2 * time.Second
	maxLagBytes = 64 << 10
	// rowTimeout bounds one row, start to heal.
	rowTimeout = 2 * time.Minute
	// waitTimeout bounds every wait inside a row.
	waitTimeout = 30 * time.Second
	// lossWindow: writes a master acknowledged this long before it died
	// may be lost by design (asynchronous replication: what no relay had
	// pulled dies with it). Relays pull continuously; expect 0.
	lossWindow = time.Second
)

var agentArgs = []string{"--fast", "--min-replicas", "1", "--min-replicas-max-lag", "1s",
	"--max-lag-bytes", fmt.Sprint(maxLagBytes)}

// Every redis-server refuses writes while no replica (relay) acks it: a
// restarted node is then no writable master before its agent makes it a
// replica (the agents set the same on an elected master).
var redisArgs = []string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"}

var arborBin string

func TestMain(m *testing.M) {
	code := func() int {
		arborBin = os.Getenv(binEnv)
		if arborBin == "" {
			dir, err := os.MkdirTemp("", "arbor-e2e-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			arborBin = filepath.Join(dir, "arbor")
			out, err := exec.Command("go", "build", "-o", arborBin, "github.com/arbor-fabric/arbor/cmd/arbor").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build arbor: %v\n%s", err, out)
				return 1
			}
		} else if abs, err := filepath.Abs(arborBin); err == nil {
			arborBin = abs
		}
		code := m.Run()
		if code == 0 {
			// go-redis redials a dead server in the background for a
			// second after its client is closed.
			if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				return 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// row is one row of the suite.
type row struct {
	name   string // the subtest's name
	matrix string // the row of failover-notes §5
	fault  string
	// notBuilt, when set, says why the row is not run; the table shows it.
	// notApplicable marks such a row as one that cannot apply here.
	notBuilt      string
	notApplicable bool
	// setup runs before the fabric starts (bridges).
	setup func(t *testing.T, r *rig)
	run   func(t *testing.T, r *rig)
}

// rig is one row's fabric, clients and findings.
type rig struct {
	ctx     context.Context
	etcd    *etcdtest.Cluster
	cli     *clientv3.Client
	f       *demo.Fabric
	h       *History
	res     *Result
	boot    Epoch
	syncs0  map[string]int64   // full syncs by relay and node at the baseline
	fabric0 int64              // the relays' own count (taken and served) then
	stop    context.CancelFunc // ends the writer and probers
	loadWG  sync.WaitGroup
	writers *Clients
	probers *Clients

	// Set by setup.
	agentEtcd map[string][]string
	bridged   map[string]bool // relays whose children dial them through a bridge
	siteLinks []*wan.Bridge   // the bridges a row cuts or pauses

	// The row's promises.
	mayLose      func(Op) bool // nil: no acknowledged write may be lost
	lossBound    string
	syncsAllowed map[string]int64 // full syncs a node may take, of its own
	syncsReasons []string
	// failedOver: the row expects a new epoch (else the epoch must stay).
	failedOver bool
}

func TestFaults(t *testing.T) {
	began := time.Now()
	var results []Result
	for _, rw := range rows() {
		res := Result{Row: rw.name, Matrix: rw.matrix, Fault: rw.fault}
		if rw.notBuilt != "" {
			res.Status = NotBuilt
			if rw.notApplicable {
				res.Status = NotApplies
			}
			res.Notef("%s", rw.notBuilt)
			results = append(results, res)
			t.Logf("row %s: %s: %s", rw.name, res.Status, rw.notBuilt)
			continue
		}
		rowBegan := time.Now()
		ok := t.Run(rw.name, func(t *testing.T) {
			runRow(t, rw, &res)
		})
		res.Took = time.Since(rowBegan)
		if ok && res.Status == "" {
			res.Status, res.Took = NotRun, 0
		}
		if !ok && res.Status != Fail {
			res.Status = Fail
			res.Notef("the row's test failed (see its log)")
		}
		results = append(results, res)
	}
	var buf bytes.Buffer
	Table(&buf, results, time.Since(began))
	fmt.Printf("\n## Fault suite (make e2e)\n\n%s", buf.String())
	if path := os.Getenv(reportEnv); path != "" {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Errorf("write the report: %v", err)
		}
	}
}

// runRow starts a fresh fabric, the writer and the probers, runs the row
// and checks the history.
func runRow(t *testing.T, rw row, res *Result) {
	ctx, cancel := context.WithTimeout(context.Background(), rowTimeout)
	defer cancel()
	r := &rig{ctx: ctx, res: res, h: &History{}, agentEtcd: map[string][]string{}, bridged: map[string]bool{}}
	r.etcd = etcdtest.Start(t, 3)
	r.cli = r.etcd.Client(t)
	if rw.setup != nil {
		rw.setup(t, r)
	}
	dir := t.TempDir()
	if keep := os.Getenv(keepEnv); keep != "" {
		var err error
		if dir, err = os.MkdirTemp(keep, rw.name+"-"); err != nil {
			t.Fatal(err)
		}
		t.Logf("row files in %s", dir)
	}
	f, err := demo.StartFabric(ctx, demo.FabricOptions{
		Dir:       dir,
		Etcd:      r.etcd.Endpoints(),
		Cluster:   "e2e",
		RedisArgs: redisArgs,
		AgentBin:  arborBin,
		AgentArgs: agentArgs,
		AgentEtcd: func(node string) []string { return r.agentEtcd[node] },
		AdvertiseGRPC: func(relay, addr string) string {
			if !r.bridged[relay] {
				return addr
			}
			b := newBridge(t, addr)
			r.siteLinks = append(r.siteLinks, b)
			return b.Addr()
		},
	})
	if err != nil {
		res.Failf("start the fabric: %v", err)
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	r.f = f
	obsCtx, stopObs := context.WithCancel(ctx)
	observed := r.h.Observe(obsCtx, r.cli, f.Cluster())
	t.Cleanup(func() { stopObs(); <-observed })
	r.boot = r.h.Current()
	if r.boot.Master != demo.SeedMaster() {
		res.Failf("no master record for %s at the start (%+v)", demo.SeedMaster(), r.boot)
		t.Fatal(res.Notes)
	}
	f.WaitLinked(ctx, r.boot.Master)
	r.startLoad()
	t.Cleanup(r.stopLoad)
	// A second of load before the fault; the baseline of full syncs then
	// (the first syncs of relays and replicas are behind).
	r.sleep(time.Second)
	r.syncs0, r.fabric0 = r.fullSyncs(), f.FullSyncs()

	rw.run(t, r)
	if t.Failed() || res.Status == Fail {
		r.stopLoad()
		if res.Status != Fail {
			res.Failf("the row stopped early")
		}
		t.Errorf("row %s failed: %s", res.Row, strings.Join(res.Notes, "; "))
		return
	}
	r.sleep(time.Second) // load on the healed fabric
	r.finish(t)
}

func (r *rig) startLoad() {
	ctx, cancel := context.WithCancel(r.ctx)
	r.stop = cancel
	r.writers = NewClients(r.f.Addr, time.Second)
	r.probers = NewClients(r.f.Addr, 300*time.Millisecond)
	r.loadWG.Add(1)
	go func() {
		defer r.loadWG.Done()
		r.h.Write(ctx, r.writers, 10*time.Millisecond)
	}()
	for _, n := range r.f.Nodes() {
		r.loadWG.Add(1)
		go func() {
			defer r.loadWG.Done()
			r.h.Probe(ctx, r.probers, n, 50*time.Millisecond)
		}()
	}
}

// stopLoad ends the writer and the probers (idempotent).
func (r *rig) stopLoad() {
	if r.stop == nil {
		return
	}
	r.stop()
	r.loadWG.Wait()
	r.writers.Close()
	r.probers.Close()
	r.stop = nil
}

func (r *rig) sleep(d time.Duration) {
	select {
	case <-r.ctx.Done():
	case <-time.After(d):
	}
}

// poll calls f every 20 ms until it returns nil or timeout passes, and
// returns its last error.
func (r *rig) poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || r.ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFailover waits for a record newer than the boot's and fills the
// Failover cell; want, if set, is the master expected.
func (r *rig) waitFailover(since time.Time, want string, bound time.Duration) (Epoch, bool) {
	r.failedOver = true
	var e Epoch
	err := r.poll(waitTimeout, func() error {
		e = r.h.Current()
		if e.Epoch <= r.boot.Epoch {
			return fmt.Errorf("no new master record within %v (still epoch %d, %s)", waitTimeout, e.Epoch, e.Master)
		}
		return nil
	})
	if err != nil {
		r.res.Failover = "none"
		r.res.Failf("%v", err)
		return e, false
	}
	took := e.Seen.Sub(since)
	r.res.Failover = fmt.Sprintf("epoch %d → %d, %s; record %v after the fault", r.boot.Epoch, e.Epoch, e.Master, took.Round(time.Millisecond))
	if bound > 0 {
		r.res.Failover += fmt.Sprintf(" (bound %v)", bound)
	}
	if first, ok := r.firstAck(e.Master, since); ok {
		r.res.Failover += fmt.Sprintf(", first write %v", first.Sub(since).Round(time.Millisecond))
	}
	if want != "" && e.Master != want {
		r.res.Failf("new master %s, want %s", e.Master, want)
	}
	// The bounds of §5 are for a machine of its own; this one is shared
	// (2 cores, other tests running): past the bound is reported, past
	// three times the bound fails.
	switch {
	case bound > 0 && took > 3*bound:
		r.res.Failf("failover took %v, bound %v (fails past 3× on a shared machine)", took.Round(time.Millisecond), bound)
	case bound > 0 && took > bound:
		r.res.Notef("failover took %v, over its bound %v (a shared, loaded machine; fails past 3×)", took.Round(time.Millisecond), bound)
	}
	return e, true
}

// firstAck waits (bounded) for the writer's first write acknowledged by
// node at or after since.
func (r *rig) firstAck(node string, since time.Time) (time.Time, bool) {
	var at time.Time
	err := r.poll(waitTimeout, func() error {
		var ok bool
		if at, ok = r.h.FirstAck(node, since); !ok {
			return errors.New("no write acknowledged")
		}
		return nil
	})
	if err != nil {
		r.res.Failf("%s acknowledged no write within %v", node, waitTimeout)
		return at, false
	}
	return at, true
}

// noFailover checks that the epoch did not change.
func (r *rig) noFailover() {
	if e := r.h.Current(); e.Epoch != r.boot.Epoch {
		r.res.Failover = fmt.Sprintf("epoch %d → %d (%s)", r.boot.Epoch, e.Epoch, e.Master)
		r.res.Failf("a failover happened; none may")
		return
	}
	r.res.Failover = fmt.Sprintf("none (epoch %d, %s)", r.boot.Epoch, r.boot.Master)
}

// waitReplica waits until node's Redis is a replica with its link up.
func (r *rig) waitReplica(node string) {
	if err := r.poll(waitTimeout, func() error { return r.replicasLinked(node) }); err != nil {
		r.res.Failf("%s did not become a replica within %v: %v", node, waitTimeout, err)
	}
}

// restartRedis starts node's killed redis-server again and waits until it
// is a replica; a restarted Redis has a new replication ID, so node may
// take a full sync. It returns false if the restart failed.
func (r *rig) restartRedis(node string) bool {
	if err := r.f.RestartRedis(r.ctx, node); err != nil {
		r.res.Failf("restart: %v", err)
		return false
	}
	r.waitReplica(node)
	r.allowSyncs(node, 1, "a restarted Redis has a new replication ID")
	return true
}

// mayLoseAckedBy allows losing the writes node acknowledged in the
// lossWindow before at (it died then).
func (r *rig) mayLoseAckedBy(node string, at time.Time) {
	r.mayLose = func(op Op) bool {
		return op.Node == node && !op.Acked.After(at) && at.Sub(op.Acked) <= lossWindow
	}
	r.lossBound = fmt.Sprintf("≤ those %s acked in its last %v", node, lossWindow)
}

// allowSyncs allows node n full syncs of its own, and says why.
func (r *rig) allowSyncs(node string, n int64, why string) {
	if r.syncsAllowed == nil {
		r.syncsAllowed = map[string]int64{}
	}
	r.syncsAllowed[node] = n
	r.syncsReasons = append(r.syncsReasons, fmt.Sprintf("%s ≤ %d: %s", node, n, why))
}

// fullSyncs counts full syncs by relay (taken from its upstream) and by
// node (its redis.log's "Full resync from master" lines).
func (r *rig) fullSyncs() map[string]int64 {
	out := r.f.UpstreamFullSyncs()
	for _, n := range r.f.Nodes() {
		b, _ := os.ReadFile(r.f.RedisLog(n))
		out[n] = int64(bytes.Count(b, []byte("Full resync from master")))
	}
	return out
}

// finish stops the load, waits for the digests and checks the history.
func (r *rig) finish(t *testing.T) {
	res := r.res
	r.stopLoad()
	ctx, cancel := context.WithTimeout(r.ctx, waitTimeout)
	defer cancel()
	if err := r.f.Converge(ctx); err != nil {
		res.Digests = "differ"
		res.Failf("digests: %v", err)
	} else {
		running := 0
		for _, n := range r.f.Nodes() {
			if r.f.RedisRunning(n) {
				running++
			}
		}
		res.Digests = fmt.Sprintf("equal (%d servers)", running)
	}
	st, err := r.f.State(ctx)
	if err != nil || st.Master == nil {
		res.Failf("read the final master: %v", err)
		return
	}
	if !r.failedOver {
		r.noFailover()
	}
	ops := r.h.Ops()
	wm, most := FormatWritable(WritableMasters(ops, r.h.Epochs()))
	res.Writable = fmt.Sprintf("%d (%s)", most, wm)
	if most != 1 {
		res.Failf("%d writable masters in one epoch", most)
	}
	lost, err := Lost(ctx, r.f.Client(st.Master.Node), ops)
	if err != nil {
		res.Failf("%v", err)
		return
	}
	var beyond int
	for _, op := range lost {
		if r.mayLose == nil || !r.mayLose(op) {
			beyond++
		}
	}
	res.Lost = fmt.Sprintf("%d of %d", len(lost), Writes(ops))
	if r.mayLose == nil {
		res.Lost += " (promised 0)"
	} else {
		res.Lost += fmt.Sprintf(" (bound: %s)", r.lossBound)
	}
	if beyond > 0 {
		res.Failf("%d acknowledged writes lost beyond the promise (first: ack:%d by %s at epoch %d)", beyond, lost[0].Seq, lost[0].Node, lost[0].EpochBefore)
	}
	now := r.fullSyncs()
	var who []string
	var total int64
	for _, name := range append(r.f.Relays(), r.f.Nodes()...) {
		d := now[name] - r.syncs0[name]
		if d == 0 {
			continue
		}
		total += d
		who = append(who, fmt.Sprintf("%s %d", name, d))
		if d > r.syncsAllowed[name] {
			res.Failf("%s: %d full syncs, at most %d", name, d, r.syncsAllowed[name])
		}
	}
	res.FullSyncs = fmt.Sprintf("%d", total)
	if len(who) > 0 {
		res.FullSyncs += " (" + strings.Join(who, ", ") + ")"
	}
	res.FullSyncs += "; promised 0"
	if len(r.syncsReasons) > 0 {
		res.FullSyncs += " but " + strings.Join(r.syncsReasons, "; ")
	}
	res.FullSyncs += fmt.Sprintf("; relays' counters %d", r.f.FullSyncs()-r.fabric0)
	if res.Status == "" {
		res.Status = Pass
	}
	t.Logf("%s: %s; %s", res.Row, r.h, strings.Join(res.Notes, "; "))
	if res.Status == Fail {
		t.Errorf("row %s failed: %s", res.Row, strings.Join(res.Notes, "; "))
	}
}

// newBridge makes a wan.Bridge to target, closed at the test's end.
func newBridge(t *testing.T, target string) *wan.Bridge {
	b, err := wan.NewBridge(strings.TrimPrefix(target, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// cutMasterFromEtcd: the master's agent reaches every etcd member through
// a bridge.
func cutMasterFromEtcd(t *testing.T, r *rig) {
	var eps []string
	for _, m := range r.etcd.Members {
		b := newBridge(t, m.ClientURL)
		r.siteLinks = append(r.siteLinks, b)
		eps = append(eps, "http://"+b.Addr())
	}
	r.agentEtcd[demo.SeedMaster()] = eps
}

// bridgeSiteA puts a bridge in front of site A's relays' gRPC: the links of
// sites B and C to site A cross them.
func bridgeSiteA(t *testing.T, r *rig) {
	// A relay's listen address is known only once the fabric starts: the
	// bridges are made in AdvertiseGRPC.
	r.bridged["relay-a1"], r.bridged["relay-a2"] = true, true
}

const backup = "A-M-Backup"

func rows() []row {
	m := demo.SeedMaster()
	return []row{
		{
			name: "kill_redis", matrix: "1, 2", fault: "kill -9 of the master's redis-server; it restarts",
			run: func(t *testing.T, r *rig) {
				t0 := time.Now()
				r.f.KillRedis(m)
				r.mayLoseAckedBy(m, t0)
				if _, ok := r.waitFailover(t0, backup, leaseTTL+2*time.Second); !ok {
					return
				}
				r.restartRedis(m)
			},
		},
		{
			name: "kill_agent", matrix: "2", fault: "kill -9 of the master's agent (its Redis runs on); it restarts",
			run: func(t *testing.T, r *rig) {
				t0 := time.Now()
				if err := r.f.KillAgent(m); err != nil {
					r.res.Failf("%v", err)
					return
				}
				if _, ok := r.waitFailover(t0, backup, leaseTTL+2*time.Second); !ok {
					return
				}
				// The winner paused the agentless old master's writes for
				// 2·TTL (CLIENT PAUSE); past that only min-replicas-to-write
				// (no relay acks it any more) keeps it from taking writes:
				// the probers watch it that long and more.
				r.sleep(2*leaseTTL + 2*time.Second)
				if err := r.f.RestartAgent(m); err != nil {
					r.res.Failf("restart: %v", err)
					return
				}
				r.waitReplica(m)
			},
		},
		{
			name: "kill_host", matrix: "1", fault: "kill -9 of the master's redis-server and agent (host death); both restart",
			run: func(t *testing.T, r *rig) {
				t0 := time.Now()
				r.f.KillRedis(m)
				if err := r.f.KillAgent(m); err != nil {
					r.res.Failf("%v", err)
					return
				}
				r.mayLoseAckedBy(m, t0)
				if _, ok := r.waitFailover(t0, backup, leaseTTL+2*time.Second); !ok {
					return
				}
				if err := r.f.RestartRedis(r.ctx, m); err != nil {
					r.res.Failf("restart: %v", err)
					return
				}
				if err := r.f.RestartAgent(m); err != nil {
					r.res.Failf("restart: %v", err)
					return
				}
				r.waitReplica(m)
				r.allowSyncs(m, 1, "a restarted Redis has a new replication ID")
			},
		},
		{
			name: "sigstop_master", matrix: "3", fault: "SIGSTOP of the master's redis-server and agent past the lease TTL, then SIGCONT (Redis first)",
			run: func(t *testing.T, r *rig) {
				t0 := time.Now()
				if err := r.f.StopAgent(m); err != nil {
					r.res.Failf("%v", err)
					return
				}
				r.f.StopRedis(m)
				cont := sync.OnceFunc(func() {
					r.f.ContRedis(m)
					_ = r.f.ContAgent(m)
				})
				t.Cleanup(cont)
				r.mayLoseAckedBy(m, t0)
				_, ok := r.waitFailover(t0, backup, leaseTTL+2*time.Second)
				if !ok {
					return
				}
				r.sleep(time.Second)
				cont()
				r.waitReplica(m)
				// node's TestFailoverMasterPaused: a continued Redis first runs
				// the writes the kernel held for it (of clients that gave up)
				// and may rejoin with a full sync of its own.
				r.allowSyncs(m, 2, "a continued Redis first runs the writes the kernel held for it")
			},
		},
		{
			name: "master_cut_from_etcd", matrix: "5", fault: "the master's agent cut from every etcd member (link simulator), then healed",
			setup: cutMasterFromEtcd,
			run: func(t *testing.T, r *rig) {
				t0 := time.Now()
				r.eachLink((*wan.Bridge).Cut)
				_, ok := r.waitFailover(t0, backup, leaseTTL+2*time.Second)
				r.eachLink((*wan.Bridge).Restore)
				if ok {
					r.waitReplica(m)
				}
			},
		},
		{
			name: "etcd_member_killed", matrix: "6", fault: "kill -9 of the etcd leader in steady state for 5 s; it restarts",
			run: func(t *testing.T, r *rig) {
				l := r.etcd.Leader(t)
				if l == nil {
					r.res.Failf("no etcd leader")
					return
				}
				t0 := time.Now()
				l.Kill()
				r.sleep(5 * time.Second)
				l.Start(t)
				r.res.Notef("writer's longest gap %v", r.h.LongestGap(t0, time.Now()).Round(time.Millisecond))
			},
		},
		{
			name: "etcd_member_killed_in_failover", matrix: "6", fault: "kill -9 of the etcd leader and of the master's redis-server at once",
			run: func(t *testing.T, r *rig) {
				l := r.etcd.Leader(t)
				if l == nil {
					r.res.Failf("no etcd leader")
					return
				}
				t0 := time.Now()
				l.Kill()
				r.f.KillRedis(m)
				r.mayLoseAckedBy(m, t0)
				// §5 row 6: failover ≤ 2·TTL + E (E: etcd's own election,
				// 100 ms here; 2 s given for a slow machine).
				_, ok := r.waitFailover(t0, backup, 2*leaseTTL+2*time.Second)
				l.Start(t)
				if !ok {
					return
				}
				r.restartRedis(m)
			},
		},
		{
			name: "site_cut", matrix: "7 (data links)", fault: "sites B and C cut from site A's relays (link simulator: connections closed, new ones refused) for 5 s",
			setup: bridgeSiteA,
			run:   siteLinksDown((*wan.Bridge).Cut),
		},
		{
			name: "site_paused", matrix: "9 (one link state)", fault: "sites B and C's links to site A paused (link simulator: connections open, nothing forwarded) for 5 s",
			setup: bridgeSiteA,
			run:   siteLinksDown((*wan.Bridge).Pause),
		},
		{
			name: "switchover_under_load", matrix: "12", fault: "arbor switchover to A-M-Backup under the writer",
			run: func(t *testing.T, r *rig) {
				t0 := time.Now()
				var rec election.Master
				err := r.poll(waitTimeout, func() error {
					var err error
					rec, err = election.RequestSwitchover(r.ctx, r.cli, r.f.Cluster(), backup, 5*time.Second)
					return err
				})
				if err != nil {
					r.res.Failf("switchover: %v", err)
					return
				}
				if _, ok := r.waitFailover(t0, backup, 0); !ok {
					return
				}
				gap := r.h.LongestGap(t0, time.Now())
				r.res.Notef("switchover to %s at epoch %d; the writer's longest gap %v (pause bound 2 s)", rec.Node, rec.Epoch, gap.Round(time.Millisecond))
				if gap > 2*time.Second {
					r.res.Failf("write pause %v, bound 2 s", gap.Round(time.Millisecond))
				}
				r.waitReplica(m)
			},
		},
		{
			name: "lagging_backup", matrix: "10", fault: "A-M-Backup held back (CLIENT PAUSE WRITE) past the lag bound, then the master's redis-server killed",
			run: func(t *testing.T, r *rig) {
				b := r.f.Client(backup)
				if err := b.Do(r.ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
					r.res.Failf("pause %s: %v", backup, err)
					return
				}
				unpause := sync.OnceFunc(func() { _ = b.Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
				t.Cleanup(unpause)
				if !r.holdBack(backup) {
					return
				}
				t0 := time.Now()
				r.f.KillRedis(m)
				r.mayLoseAckedBy(m, t0)
				e, ok := r.waitFailover(t0, "", 0)
				if !ok {
					return
				}
				if e.Master == backup {
					r.res.Failf("the lagging %s was promoted", backup)
				}
				r.res.Notef("%s promoted instead of the lagging %s", e.Master, backup)
				unpause()
				if !r.restartRedis(m) {
					return
				}
				r.waitReplica(backup)
				// The lag is injected with CLIENT PAUSE WRITE, which blocks
				// the backup's master client; Redis caches no blocked master
				// client when its link drops (relay-a1 restarts its
				// children's links when its upstream changes), so the
				// backup cannot PSYNC and loads a snapshot.
				r.allowSyncs(backup, 1, "Redis keeps no cached master for a blocked (paused) master link")
			},
		},
		{
			name: "root_relay_stopped", matrix: "relay HA", fault: "relay-a1 (a root relay: parent of relay-b, relay-c, A-M-Backup, A-S-1) stopped; it restarts",
			run: func(t *testing.T, r *rig) {
				const dead = "relay-a1"
				t0 := time.Now()
				r.f.StopRelay(dead)
				var to []string
				err := r.poll(waitTimeout, func() error {
					// The move is in the status the relay publishes.
					sts, err := topology.ReadStatus(r.ctx, r.cli, r.f.Cluster())
					if err != nil {
						return err
					}
					to = to[:0]
					for _, id := range []string{"relay-b", "relay-c"} {
						st := sts.Relays[id]
						if st.GetLinkState() != arborv1.LinkState_LINK_STATE_STREAMING || st.GetMove() == nil {
							return fmt.Errorf("%s: link %v, move %v", id, st.GetLinkState(), st.GetMove())
						}
						to = append(to, id+" → "+st.GetEffectiveUpstream())
					}
					return r.replicasLinked("A-M-Backup", "A-S-1")
				})
				if err != nil {
					r.res.Failf("the children of %s did not move within %v: %v", dead, waitTimeout, err)
					return
				}
				r.res.Notef("children streaming again %v after the stop (%s)", time.Since(t0).Round(time.Millisecond), strings.Join(to, ", "))
				r.sleep(time.Second)
				if err := r.f.RestartRelay(r.ctx, dead); err != nil {
					r.res.Failf("restart %s: %v", dead, err)
				}
			},
		},
		{
			name: "site_A_lost", matrix: "7", fault: "site A lost: its four redis-servers and agents killed, relay-a1 and relay-a2 stopped, one etcd member killed; A stays down",
			run: func(t *testing.T, r *rig) {
				siteA := []string{m, backup, "A-S-1", "A-S-2"}
				l := r.etcd.Members[0]
				t0 := time.Now()
				for _, n := range siteA {
					r.f.KillRedis(n)
					if err := r.f.KillAgent(n); err != nil {
						r.res.Failf("%v", err)
						return
					}
				}
				r.f.StopRelay("relay-a1")
				r.f.StopRelay("relay-a2")
				l.Kill()
				// Asynchronous replication (the writer does not WAIT): what
				// no relay of B had pulled dies with site A.
				r.mayLoseAckedBy(m, t0)
				_, ok := r.waitFailover(t0, "B-M-Backup", 0)
				l.Start(t)
				if !ok {
					return
				}
				if err := r.poll(waitTimeout, func() error { return r.replicasLinked("B-S-1", "B-S-2", "C-S-1", "C-S-2") }); err != nil {
					r.res.Failf("sites B and C did not follow B-M-Backup: %v", err)
				}
				r.res.Notef("site A not restarted (no persistence: its nodes would return by full sync); digests over sites B and C")
			},
		},
		{
			name: "etcd_majority_in_A", matrix: "8", fault: "A | B with the etcd majority in A",
			notBuilt: "etcd members are not placed in sites, and the relays run in the suite's process on one etcd client, so site B cannot be cut from etcd on its own; the node side is covered by master_cut_from_etcd and etcd_quorum_loss",
		},
		{
			name: "etcd_quorum_loss", matrix: "6", fault: "two etcd members of three and the master's redis-server killed; quorum back after 2·TTL+2 s",
			run: func(t *testing.T, r *rig) {
				lost := r.etcd.Members[1:]
				t0 := time.Now()
				for _, em := range lost {
					em.Kill()
				}
				r.f.KillRedis(m)
				r.mayLoseAckedBy(m, t0)
				// §5 row 6: no promotion without quorum. No candidate's
				// Redis may turn master while etcd has no quorum.
				for end := time.Now().Add(2*leaseTTL + 2*time.Second); time.Now().Before(end); r.sleep(100 * time.Millisecond) {
					for _, n := range []string{backup, "B-M-Backup"} {
						info, err := r.f.Client(n).Info(r.ctx, "replication").Result()
						if err == nil && strings.Contains(info, "role:master") {
							r.res.Failf("%s promoted itself without an etcd quorum", n)
							return
						}
					}
				}
				for _, em := range lost {
					em.Start(t)
				}
				t1 := time.Now()
				r.res.Notef("no candidate promoted during %v without quorum; the failover is timed from the quorum's return", t1.Sub(t0).Round(100*time.Millisecond))
				if _, ok := r.waitFailover(t1, backup, 2*leaseTTL+2*time.Second); !ok {
					return
				}
				r.restartRedis(m)
			},
		},
		{
			name: "flapping_links", matrix: "9", fault: "one-way cuts and flapping (5 s random halves)",
			notBuilt: "the link simulator cuts both directions of a TCP link at once; one-way cuts need netns/iptables (internal/wan.Network, root only)",
		},
		{
			name: "equal_candidates_priority0", matrix: "11", fault: "equal offsets, priority-0 best node, simultaneous candidates",
			notBuilt: "no tie in the seed topology: once the master is gone its candidates are A-M-Backup (priority 100) and B-M-Backup (50), none with priority 0; covered by node tests (TestFailoverEqualCandidatesDeterministic, TestFailoverPriorityZeroNeverWins)",
		},
		{
			name: "clock_jumps", matrix: "13", fault: "clock jump ±30 s on the agents",
			notApplicable: true, notBuilt: "the processes share the machine's clock; the timers are monotonic (election.Session)",
		},
		{
			name: "campaign_lease_revoked", matrix: "14", fault: "lease revoked while queued in Campaign; compaction mid-campaign",
			notBuilt: "covered by election's TestCampaignChecksItsKey; not injectable from outside the agents",
		},
		{
			name: "router_cut", matrix: "15", fault: "router cut from etcd",
			notApplicable: true, notBuilt: "Arbor has no router; clients follow the master record",
		},
		{
			name: "cold_restart", matrix: "16", fault: "cold restart of every node",
			notBuilt: "the redis-servers run without persistence (--save \"\"), so a cold restart loses the data set by construction",
		},
		{
			name: "slow_etcd_disk", matrix: "17", fault: "slow etcd disk/fsync",
			notBuilt: "etcd runs with --unsafe-no-fsync on tmpfs here; a slow disk needs a FUSE or dm-delay device",
		},
	}
}

// holdBack waits until node's published status trails the master by more
// than the lag bound, the writer's load and a burst of 1 KiB writes
// pushing the master on.
func (r *rig) holdBack(node string) bool {
	mc := r.f.Client(r.boot.Master)
	big := strings.Repeat("x", 1024)
	for i := range 2 * maxLagBytes / 1024 {
		if err := mc.Set(r.ctx, fmt.Sprintf("lag:%d", i), big, 0).Err(); err != nil {
			r.res.Failf("burst on the master: %v", err)
			return false
		}
	}
	err := r.poll(waitTimeout, func() error {
		want, err := mc.Info(r.ctx, "replication").Result()
		if err != nil {
			return err
		}
		var off int64
		for _, l := range strings.Split(want, "\r\n") {
			if v, ok := strings.CutPrefix(l, "master_repl_offset:"); ok {
				fmt.Sscan(v, &off)
			}
		}
		sts, err := topology.ReadStatus(r.ctx, r.cli, r.f.Cluster())
		if err != nil {
			return err
		}
		st, ok := sts.Nodes[node]
		if !ok || off-st.GetOffset() <= maxLagBytes {
			return fmt.Errorf("%s's status: offset %d, master at %d; not lagging yet", node, st.GetOffset(), off)
		}
		return nil
	})
	if err != nil {
		r.res.Failf("%v", err)
		return false
	}
	return true
}

// replicasLinked says why one of the nodes is no replica with its link up.
func (r *rig) replicasLinked(nodes ...string) error {
	for _, n := range nodes {
		info, err := r.f.Client(n).Info(r.ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("%s is no linked replica", n)
		}
	}
	return nil
}

// eachLink applies op (Cut, Pause, Restore) to every bridge the row's
// setup put on a link.
func (r *rig) eachLink(op func(*wan.Bridge)) {
	for _, b := range r.siteLinks {
		op(b)
	}
}

// siteLinksDown is the run of a site row: the links of sites B and C to
// site A put down by down for 5 s, restored, and relay-b and relay-c
// streaming again.
func siteLinksDown(down func(*wan.Bridge)) func(*testing.T, *rig) {
	return func(_ *testing.T, r *rig) {
		r.eachLink(down)
		r.sleep(5 * time.Second)
		r.eachLink((*wan.Bridge).Restore)
		r.waitSitesStreaming()
	}
}

// waitSitesStreaming waits until relay-b and relay-c stream again.
func (r *rig) waitSitesStreaming() {
	err := r.poll(waitTimeout, func() error {
		for _, id := range []string{"relay-b", "relay-c"} {
			rl := r.f.RelayStatus(id)
			if rl == nil {
				return fmt.Errorf("%s not running", id)
			}
			if st := rl.Status().GetLinkState(); st != arborv1.LinkState_LINK_STATE_STREAMING {
				return fmt.Errorf("%s's upstream link %v", id, st)
			}
		}
		return nil
	})
	if err != nil {
		r.res.Failf("sites did not resume: %v", err)
	}
}
