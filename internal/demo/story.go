package demo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/arbor-fabric/arbor/election"
)

const (
	// failoverTimeout bounds the wait for a new master record after the
	// kill: a lease TTL and a promotion, with room for a slow machine.
	failoverTimeout = 30 * time.Second
	// storyStepTimeout bounds every other wait of the story.
	storyStepTimeout = 30 * time.Second
	// switchoverTimeout is the bound given to the switchover's catch-up.
	switchoverTimeout = 5 * time.Second
	// failoverTarget is the node the failover is expected to promote.
	failoverTarget = "A-M-Backup"
)

// ErrCheck is returned (wrapped) when one of the demo's checks fails.
var ErrCheck = errors.New("demo check failed")

// Summary is what a demo run found; Run returns it with an error wrapping
// ErrCheck when a check failed.
type Summary struct {
	// Reparented: relay-c was re-parented live with no full sync.
	Reparented bool
	// The failover: the epochs before and after, the new master, its
	// history entry's steps, and the time from the kill to the first
	// write the new master acknowledged.
	FailedOver        bool
	EpochBefore       int64
	EpochAfter        int64
	NewMaster         string
	Steps             []election.Step
	KillToFirstWrite  time.Duration
	FailoverFullSyncs int64 // new full syncs (relays and replicas) across the failover
	// The old master's return: it follows its relay again, a replica;
	// ReturnFullSyncs is the full syncs that cost (its own, expected 1).
	Rejoined        bool
	ReturnFullSyncs int64
	// The switchover back: the master it named and the longest pause
	// between two acknowledged write batches during it.
	SwitchedOver     bool
	SwitchoverMaster string
	SwitchoverPause  time.Duration
	// The writer: acknowledged ack:<seq> keys checked on the final
	// master, those lost where none may be (must be 0), and those the
	// killed master acked before its death and that no relay had pulled
	// (lost by design: asynchronous replication).
	AckedChecked int64
	LostPromised int64
	LostAtKill   int64
	// DigestsEqual: every server's DEBUG DIGEST equals the final
	// master's.
	DigestsEqual bool
	// Failures lists every check that failed.
	Failures []string
}

func (s *Summary) fail(format string, args ...any) {
	s.Failures = append(s.Failures, fmt.Sprintf(format, args...))
}

func stamp() string { return time.Now().Format("15:04:05.000") }

// fullSyncs sums the full syncs of the fabric: those every relay took
// from its upstream and those it served to replicas.
func (d *demo) fullSyncs() int64 {
	var n int64
	for _, rn := range d.relays {
		upstream, served := rn.fullSyncs()
		n += upstream + served
	}
	return n
}

func (d *demo) server(name string) *server {
	for _, n := range d.nodes {
		if n.name == name {
			return n
		}
	}
	panic("demo: no server " + name)
}

// poll calls f every 20 ms until it returns true, ctx ends or timeout
// passes.
func poll(ctx context.Context, timeout time.Duration, f func() bool) error {
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (d *demo) readState(ctx context.Context) (election.State, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return election.ReadState(rctx, d.cli, d.o.Cluster)
}

// failover kill -9's the master's redis-server and waits for the node
// agents to elect and promote its backup.
func (d *demo) failover(ctx context.Context) bool {
	s := d.sum
	st, err := d.readState(ctx)
	if err != nil || st.Master == nil {
		s.fail("failover: no master record before the kill (%v)", err)
		return false
	}
	old := d.server(st.Master.Node)
	s.EpochBefore = st.Master.Epoch
	before := d.fullSyncs()
	fmt.Fprintf(d.o.Out, "\n[%s] Failover: kill -9 %d (%s's redis-server, master at epoch %d); fabric full syncs so far: %d.\n",
		stamp(), old.cmd.Process.Pid, old.name, st.Master.Epoch, before)
	killed := time.Now()
	_ = syscall.Kill(-old.cmd.Process.Pid, syscall.SIGKILL)
	<-old.done
	var now election.State
	err = poll(ctx, failoverTimeout, func() bool {
		now, err = d.readState(ctx)
		return err == nil && now.Master != nil && now.Master.Epoch > s.EpochBefore
	})
	if err != nil {
		if ctx.Err() != nil {
			return false // interrupted: not a finding
		}
		s.fail("failover: no new master record within %v of the kill", failoverTimeout)
		fmt.Fprintf(d.o.Out, "  FAILED: %s\n", s.Failures[len(s.Failures)-1])
		return false
	}
	recorded := time.Since(killed)
	s.FailedOver, s.EpochAfter, s.NewMaster = true, now.Master.Epoch, now.Master.Node
	d.w.setPhase("") // after the failover
	fmt.Fprintf(d.o.Out, "  %v after the kill: epoch %d → %d, new master %s (%s).\n",
		recorded.Round(time.Millisecond), s.EpochBefore, s.EpochAfter, s.NewMaster, now.Master.Reason)
	if s.NewMaster != failoverTarget {
		s.fail("failover: new master %s, want %s", s.NewMaster, failoverTarget)
	}
	var h election.History
	_ = poll(ctx, 5*time.Second, func() bool {
		hs, err := election.ReadHistory(ctx, d.cli, d.o.Cluster, 1)
		if err == nil && len(hs) == 1 && hs[0].Epoch == s.EpochAfter {
			h = hs[0]
			return true
		}
		return false
	})
	if h.Epoch == s.EpochAfter {
		s.Steps = h.Steps
		var steps []string
		for _, st := range h.Steps {
			steps = append(steps, fmt.Sprintf("%s %v", st.Name, st.Took.Round(100*time.Microsecond)))
		}
		fmt.Fprintf(d.o.Out, "  history (arbor status shows it too): %s\n", strings.Join(steps, ", "))
	} else {
		fmt.Fprintf(d.o.Out, "  (no history entry for epoch %d yet)\n", s.EpochAfter)
	}
	nm := d.server(s.NewMaster)
	var first time.Time
	if err := poll(ctx, storyStepTimeout, func() bool {
		t, ok := d.w.firstAckBy(nm.name)
		first = t
		return ok
	}); err != nil {
		if ctx.Err() != nil {
			return false
		}
		s.fail("failover: %s acknowledged no write within %v", nm.name, storyStepTimeout)
		return false
	}
	s.KillToFirstWrite = first.Sub(killed)
	fmt.Fprintf(d.o.Out, "  the writer's first write acknowledged by %s came %v after the kill.\n", nm.name, s.KillToFirstWrite.Round(time.Millisecond))
	d.waitLinked(ctx, nm)
	s.FailoverFullSyncs = d.fullSyncs() - before
	fmt.Fprintf(d.o.Out, "  full syncs across the failover (relays and replicas): %d → %d", before, before+s.FailoverFullSyncs)
	if s.FailoverFullSyncs != 0 {
		s.fail("failover: %d full syncs, want 0", s.FailoverFullSyncs)
		fmt.Fprintln(d.o.Out, "  FAILED: want no new one.")
	} else {
		fmt.Fprintln(d.o.Out, ", none new: every relay and replica continued with a partial resync.")
	}
	return true
}

// waitLinked waits (bounded) until every running replica streams from a
// relay and every relay of site A from the master m, so counters read
// afterwards include what the change of master cost.
func (d *demo) waitLinked(ctx context.Context, m *server) {
	_ = poll(ctx, storyStepTimeout, func() bool {
		for _, rn := range d.relays {
			info := infoMap(ctx, rn.client, "all")
			if rn.site == "A" && !strings.HasSuffix(info["arbor_upstream"], "://"+m.addr()) {
				return false
			}
		}
		for _, n := range d.nodes {
			if n == m || n.exited() {
				continue
			}
			info := infoMap(ctx, n.client, "replication")
			if info["role"] != "slave" || info["master_link_status"] != "up" {
				return false
			}
		}
		return true
	})
}

// oldMasterReturns restarts the killed master's redis-server on its port
// and directory; its node agent makes it follow its relay.
func (d *demo) oldMasterReturns(ctx context.Context) bool {
	s := d.sum
	old := d.server(seedMaster)
	before := d.fullSyncs()
	fmt.Fprintf(d.o.Out, "\n[%s] The old master returns: %s's redis-server restarts on port %d, same directory.\n", stamp(), old.name, old.port)
	began := time.Now()
	if err := d.launch(ctx, old); err != nil {
		s.fail("return: restart %s: %v", old.name, err)
		return false
	}
	err := poll(ctx, storyStepTimeout, func() bool {
		info := infoMap(ctx, old.client, "replication")
		return info["role"] == "slave" && info["master_link_status"] == "up"
	})
	if err != nil {
		if ctx.Err() != nil {
			return false // interrupted: not a finding
		}
		s.fail("return: %s did not become a replica within %v", old.name, storyStepTimeout)
		fmt.Fprintf(d.o.Out, "  FAILED: %s\n", s.Failures[len(s.Failures)-1])
		return false
	}
	info := infoMap(ctx, old.client, "replication")
	via := d.nameAt(info["master_host"] + ":" + info["master_port"])
	s.Rejoined = true
	s.ReturnFullSyncs = d.fullSyncs() - before
	fmt.Fprintf(d.o.Out, "  %v later its agent had made it a replica of %s (never a second master).\n"+
		"  It cost %d full sync: Redis gives a master restarted from scratch a new replication ID, so the returning node alone loads a snapshot.\n",
		time.Since(began).Round(time.Millisecond), orDash(via), s.ReturnFullSyncs)
	if s.ReturnFullSyncs > 1 {
		s.fail("return: %d full syncs, want at most the returning node's one", s.ReturnFullSyncs)
	}
	return true
}

// switchoverBack asks for a planned switchover to the seed's master, as
// `arbor switchover --to A-Master` does.
func (d *demo) switchoverBack(ctx context.Context) {
	s := d.sum
	// The target must have caught up to be eligible: wait for its agent
	// to publish it in sync.
	m := d.currentMaster(ctx)
	old := d.server(seedMaster)
	_ = poll(ctx, storyStepTimeout, func() bool {
		return infoInt(ctx, old.client, "replication", "master_repl_offset") >= infoInt(ctx, m.client, "replication", "master_repl_offset")-1<<20
	})
	before := d.fullSyncs()
	fmt.Fprintf(d.o.Out, "\n[%s] Planned switchover back, as this would do:\n  arbor switchover --to %s --etcd %s --cluster %s\n",
		stamp(), seedMaster, strings.Join(d.endpoints, ","), d.o.Cluster)
	d.w.setPhase("") // the switchover
	began := time.Now()
	var rec election.Master
	var err error
	// The target's agent may not rank it eligible the first instant it
	// caught up: a refused request changes nothing, so ask again.
	perr := poll(ctx, storyStepTimeout, func() bool {
		rec, err = election.RequestSwitchover(ctx, d.cli, d.o.Cluster, seedMaster, switchoverTimeout)
		return err == nil
	})
	if perr != nil {
		if ctx.Err() != nil {
			return
		}
		s.fail("switchover: %v", err)
		fmt.Fprintf(d.o.Out, "  FAILED: %s\n", s.Failures[len(s.Failures)-1])
		return
	}
	took := time.Since(began)
	// The writer's first batch on the new master ends the pause.
	_ = poll(ctx, storyStepTimeout, func() bool { _, ok := d.w.firstAckBy(rec.Node); return ok })
	s.SwitchedOver, s.SwitchoverMaster, s.SwitchoverPause = true, rec.Node, d.w.longestGap()
	fmt.Fprintf(d.o.Out, "  switched over to %s (epoch %d) in %v; the writer's longest pause between acknowledged batches: %v (it writes a batch every %v).\n",
		rec.Node, rec.Epoch, took.Round(time.Millisecond), s.SwitchoverPause.Round(time.Millisecond), batchInterval(d.o.Rate).Round(time.Millisecond))
	if rec.Node != seedMaster {
		s.fail("switchover: master %s, want %s", rec.Node, seedMaster)
	}
	d.waitLinked(ctx, old)
	if n := d.fullSyncs() - before; n != 0 {
		s.fail("switchover: %d full syncs, want 0", n)
		fmt.Fprintf(d.o.Out, "  FAILED: %d full syncs, want 0.\n", n)
	} else {
		fmt.Fprintln(d.o.Out, "  no full sync: relays and replicas continued with partial resyncs.")
	}
}
