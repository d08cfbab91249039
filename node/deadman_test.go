package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/topology"
)

// TestFailoverDeadManSwitch: the master's agent dies (its pipe to the
// dead-man switch closes without a disarm, its lease is left to expire)
// while its Redis lives and a writer keeps writing to it. The switch
// pauses and demotes the Redis at the agent's fence deadline, before the
// backup can be elected: every write the old master acknowledged is on the
// new master, and there is one master.
func TestFailoverDeadManSwitch(t *testing.T) {
	f := newElectFabric(t, 1)
	ctx := f.ctx
	// The switch is this test binary, run as one (TestMain).
	f.agentCfg = func(c *Config) {
		c.DeadManSwitch = []string{"/usr/bin/env", deadManTestEnv + "=1", os.Args[0]}
	}
	var armed, die, abandoned atomic.Bool
	f.onAgent = func(id string, a *Agent) {
		if id != "m" {
			return
		}
		a.el.dmHook = func(line string) {
			if strings.HasPrefix(line, "arm ") {
				armed.Store(true)
			}
		}
		a.beforeStep = func() {
			// The agent's death, as the switch sees it: the pipe closes
			// with the switch armed. (The agent then stops without
			// touching its Redis and orphans its lease.)
			if die.Load() && !abandoned.Load() {
				a.el.dm.abandon()
				abandoned.Store(true)
			}
		}
	}
	boot, stopM := f.start(t, nil)
	redistest.WaitFor(t, 10*time.Second, func() error {
		if !armed.Load() {
			return fmt.Errorf("m's dead-man switch not armed")
		}
		return nil
	})
	w := f.startWriter(t, f.m)
	die.Store(true)
	redistest.WaitFor(t, 10*time.Second, func() error {
		if !abandoned.Load() {
			return fmt.Errorf("m's agent not dead yet")
		}
		return nil
	})
	t0 := time.Now()
	stopM() // returns once the switch fired and exited

	redistest.WaitFor(t, 30*time.Second, func() error {
		role, err := f.m.Client().Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "slave" {
			return fmt.Errorf("m: ROLE %v, want demoted by the switch", role)
		}
		return nil
	})
	demoted := time.Since(t0)
	after := f.waitElected(t, "b", boot)
	n := w.checkAllOn(t, f.b)
	f.checkOneMaster(t, f.b)
	t.Logf("agent dead: m demoted by the switch %v later, b elected (epoch %d); %d writes acknowledged by m, all on b", demoted, after.Master.Epoch, n)
}

func TestParseDeadManLine(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		line   string
		armed  bool
		follow string
		err    bool
	}{
		{line: "arm 1500 4000 127.0.0.1:7000", armed: true, follow: "127.0.0.1:7000"},
		{line: "arm 0 4000 -", armed: true},
		{line: "disarm"},
		{line: "arm -1 4000 -", err: true},
		{line: "arm 10 0 -", err: true},
		{line: "arm 10 4000", err: true},
		{line: "fire", err: true},
	} {
		st := deadManState{armed: true, follow: "x"}
		err := parseDeadManLine(&st, tc.line, now)
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrDeadManProtocol)) {
			t.Errorf("%q: error %v, want error %v (ErrDeadManProtocol)", tc.line, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if st.armed != tc.armed || st.follow != tc.follow {
			t.Errorf("%q: armed %v follow %q, want %v %q", tc.line, st.armed, st.follow, tc.armed, tc.follow)
		}
	}
	var st deadManState
	if err := parseDeadManLine(&st, "arm 1500 4000 -", now); err != nil || !st.deadline.Equal(now.Add(1500*time.Millisecond)) || st.pause != 4*time.Second {
		t.Errorf("arm 1500 4000: %+v, %v", st, err)
	}
}

// abandon closes the pipe without disarming, as the agent's death would
// (the tests' stand-in for it); close still waits for the process.
func (d *deadMan) abandon() {
	if !d.closed {
		_ = d.in.Close()
		d.closed = true
	}
}

// TestFenceRedis: the agent's fence (its lease lost, or a forced failover
// away from it) pauses its Redis's writes and demotes it to what the node
// follows, then resumes it: a replica refuses writes itself. With nothing
// to follow, or a demotion that fails, the writes stay paused (for two
// lease TTLs), as the dead-man switch leaves them: resuming a master that
// lost the election would have it take writes past its fence deadline.
func TestFenceRedis(t *testing.T) {
	ctx := context.Background()
	other := redistest.Start(t)
	for _, tc := range []struct {
		name   string
		follow string // a node id of top, or ""
		paused bool
	}{
		{name: "demoted", follow: "o"},
		{name: "nothing to follow", paused: true},
		{name: "demotion failed", follow: "bad", paused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := redistest.Start(t)
			log := slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
			a, err := New(electAgentConfig("m", "A", "fence", s.Addr, log), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.met.close(); _ = a.redis.Close() })
			top := topology.New()
			top.Nodes["m"] = topology.NodeSpec{ID: "m", Site: "A", RedisAddr: s.Addr, Follow: tc.follow}
			top.Nodes["o"] = topology.NodeSpec{ID: "o", Site: "A", RedisAddr: other.Addr}
			// An address REPLICAOF cannot take (no port).
			top.Nodes["bad"] = topology.NodeSpec{ID: "bad", Site: "A", RedisAddr: "no-port"}
			a.fenceRedis(ctx, top)
			t.Cleanup(func() { _ = s.Client().Do(context.Background(), "CLIENT", "UNPAUSE").Err() })

			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			err = s.Client().Set(wctx, "after-fence", "1", 0).Err()
			cancel()
			var ne net.Error
			held := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
			switch {
			case tc.paused && !held:
				t.Errorf("write after the fence: %v; want it held by the pause (a timeout)", err)
			case !tc.paused && (err == nil || !strings.HasPrefix(err.Error(), "READONLY")):
				t.Errorf("write after the fence: %v; want READONLY from a demoted, resumed replica", err)
			}
		})
	}
}
