package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/topology"
)

// TestFailoverForced: arbor failover --to b --force. While the master m
// holds the election the request is refused and nothing changes. Then the
// only other candidate b trails the relay by more than --max-lag-bytes
// (CLIENT PAUSE WRITE holds its master link) when m's Redis dies: no
// automatic promotion. The forced request makes b master in a new epoch
// anyway (what the relay holds beyond b is lost, by the operator's
// choice); the record and history say "forced failover by operator", the
// request is gone and b is the one writable master.
func TestFailoverForced(t *testing.T) {
	f := newElectFabric(t, 1)
	ctx := f.ctx
	f.agentCfg = func(c *Config) { c.MaxLagBytes, c.CatchUpTimeout = 4<<10, time.Second }
	boot, _ := f.start(t, nil)

	if _, err := election.ForceFailover(ctx, f.cli, f.cluster, "b", 10*time.Second, nil); !errors.Is(err, election.ErrFailover) || !errors.Is(err, election.ErrLiveMaster) {
		t.Fatalf("forced failover with m alive: %v; want refused (ErrFailover, ErrLiveMaster)", err)
	}
	if st := f.state(t); !st.Live() || st.Master.Node != "m" || st.Master.Epoch != boot.Master.Epoch || st.Switchover != nil {
		t.Fatalf("state %+v after the refusal: want m live at epoch %d and no request", st, boot.Master.Epoch)
	}

	f.holdBackB(t, 4<<10)
	f.m.Kill()
	redistest.WaitFor(t, 30*time.Second, func() error {
		if st := f.state(t); st.Live() {
			return fmt.Errorf("m still holds the election")
		}
		return nil
	})
	// No automatic promotion: the automatic path runs and gives up. Rather
	// than watch the record for a while, wait for b's agent to say it is
	// not eligible because it lags (its status reason, from a ranking of
	// this outage); the record must not move meanwhile, nor by then. A
	// ranking that missed the lag would have b campaign, win and fail its
	// catch-up (b cannot move while paused): the record stays, and the
	// next ranking says why.
	noFailover := func() {
		t.Helper()
		if st := f.state(t); st.Master == nil || st.Master.Epoch != boot.Master.Epoch {
			t.Fatalf("record %+v: want no automatic failover (b lags)", st.Master)
		}
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		noFailover()
		sts, err := topology.ReadStatus(ctx, f.cli, f.cluster)
		if err != nil {
			return err
		}
		if why := sts.Nodes["b"].GetLastError(); !strings.Contains(why, "not eligible") || !strings.Contains(why, "lags") {
			return fmt.Errorf("b's status reason %q: want not eligible, lagging", why)
		}
		return nil
	})
	noFailover()

	m, err := election.ForceFailover(ctx, f.cli, f.cluster, "b", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Node != "b" || m.Epoch <= boot.Master.Epoch || m.Reason != election.ForcedReason {
		t.Fatalf("record %+v: want b at an epoch after %d, forced", m, boot.Master.Epoch)
	}
	h := f.waitHistory(t, "b")
	if h.Previous != "m" || h.Reason != election.ForcedReason {
		t.Fatalf("history %+v: want b taking over from m, %q", h, election.ForcedReason)
	}
	if st := f.state(t); !st.Live() || st.Switchover != nil {
		t.Fatalf("state %+v: want b live and the request gone", st)
	}
	if err := f.b.Client().Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		return f.b.Client().Set(ctx, "after-forced", "1", 0).Err()
	})
	f.checkOneMaster(t, f.b)
	t.Logf("forced: epoch %d, steps %+v", m.Epoch, h.Steps)
}

// TestFailoverForcedLiveLeader: arbor failover --force while the master's
// agent holds the election but its Redis does not answer the operator
// (the probe says so; the agent still reaches it). Refused while the
// probe gets an answer; otherwise the leader's agent demotes its Redis and
// resigns, the target is master in a new epoch with the forced reason,
// and there is one master.
func TestFailoverForcedLiveLeader(t *testing.T) {
	f := newElectFabric(t, 1)
	ctx := f.ctx
	boot, _ := f.start(t, nil)
	var probed string
	answers := func(_ context.Context, addr string) error { probed = addr; return nil }
	if _, err := election.ForceFailover(ctx, f.cli, f.cluster, "b", 10*time.Second, answers); !errors.Is(err, election.ErrFailover) || !errors.Is(err, election.ErrLiveMaster) {
		t.Fatalf("forced failover with m's redis answering: %v; want refused (ErrFailover, ErrLiveMaster)", err)
	}
	if probed != f.m.Addr {
		t.Errorf("probed %q, want m's redis %s", probed, f.m.Addr)
	}
	if st := f.state(t); !st.Live() || st.Master.Node != "m" || st.Master.Epoch != boot.Master.Epoch || st.Switchover != nil {
		t.Fatalf("state %+v after the refusal: want m live at epoch %d and no request", st, boot.Master.Epoch)
	}

	silent := func(context.Context, string) error { return errors.New("no reply from here") }
	m, err := election.ForceFailover(ctx, f.cli, f.cluster, "b", 30*time.Second, silent)
	if err != nil {
		t.Fatal(err)
	}
	if m.Node != "b" || m.Epoch <= boot.Master.Epoch || m.Reason != election.ForcedReason {
		t.Fatalf("record %+v: want b at an epoch after %d, forced", m, boot.Master.Epoch)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		return f.b.Client().Set(ctx, "after-forced", "1", 0).Err()
	})
	// m's agent demoted its Redis; it follows the relay, which follows b.
	redistest.WaitFor(t, 30*time.Second, func() error {
		v, err := f.m.Client().Get(ctx, "after-forced").Result()
		if err != nil || v != "1" {
			return fmt.Errorf("m has %q (%v)", v, err)
		}
		return nil
	})
	f.checkOneMaster(t, f.b)
	redistest.WaitInSync(t, 30*time.Second, f.b, f.m, f.r)
	hs, err := election.ReadHistory(ctx, f.cli, f.cluster, 1)
	if err != nil || len(hs) != 1 || hs[0].Previous != "m" {
		t.Fatalf("history %+v, %v", hs, err)
	}
	t.Logf("forced from a live leader: epoch %d, steps %+v", m.Epoch, hs[0].Steps)
}
