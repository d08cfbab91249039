package node

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
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
