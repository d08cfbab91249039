package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The dead-man switch is a small process (arbor node dead-man-switch) the
// agent of an elected master starts beside itself and talks to over its
// standard input, one line at a time:
//
//	redis <url>                      the Redis to fence (first line only)
//	arm <deadline_ms> <pause_ms> <follow>
//	                                 the agent leads: its fence deadline is
//	                                 deadline_ms from now; follow is the
//	                                 host:port to demote to, "-" for none
//	disarm                           the agent does not lead (or stops)
//
// The kernel closes the pipe when the agent dies, however it dies (SIGKILL,
// a crash, OOM). If that happens while armed, the switch waits until the
// fence deadline the agent last sent, then does what the agent would have
// done had it lived: CLIENT PAUSE WRITE, REPLICAOF the follow address,
// CLIENT UNPAUSE (failover-notes §3.3, Patroni's watchdog). Without it a
// master whose agent is dead keeps taking writes after a backup is
// promoted, unless --min-replicas stops it; with it the master stops
// before its lease can have expired, so before any new epoch exists.
//
// A clean stop of the agent disarms the switch first: stopping an agent
// is no switchover and leaves its Redis as it is.

// ErrDeadManProtocol is returned (wrapped) for a line the switch does not
// understand.
var ErrDeadManProtocol = errors.New("dead-man switch: bad line")

// deadManState is what the switch knows from the agent's last line.
type deadManState struct {
	armed    bool
	deadline time.Time // monotonic, this process's clock
	pause    time.Duration
	follow   string
}

// parseDeadManLine applies one line to st (received at now).
func parseDeadManLine(st *deadManState, line string, now time.Time) error {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "disarm":
		*st = deadManState{}
		return nil
	case len(f) == 4 && f[0] == "arm":
		d, err1 := strconv.ParseInt(f[1], 10, 64)
		p, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || d < 0 || p <= 0 {
			return fmt.Errorf("%w: %q", ErrDeadManProtocol, line)
		}
		*st = deadManState{armed: true, deadline: now.Add(time.Duration(d) * time.Millisecond), pause: time.Duration(p) * time.Millisecond}
		if f[3] != "-" {
			st.follow = f[3]
		}
		return nil
	}
	return fmt.Errorf("%w: %q", ErrDeadManProtocol, line)
}

// RunDeadManSwitch is the dead-man switch process's body: it reads the
// agent's lines from in until EOF, then, if armed, fences the Redis at the
// deadline. It returns when it is done, or ctx ends.
func RunDeadManSwitch(ctx context.Context, in io.Reader, log *slog.Logger) error {
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return nil // the agent went before it said anything
	}
	url, ok := strings.CutPrefix(sc.Text(), "redis ")
	if !ok {
		return fmt.Errorf("%w: want redis <url> first", ErrDeadManProtocol)
	}
	target, err := parseRedisURL(url)
	if err != nil {
		return fmt.Errorf("dead-man switch: %w", err)
	}
	var st deadManState
	for sc.Scan() {
		if err := parseDeadManLine(&st, sc.Text(), time.Now()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		// Not EOF, but the pipe is as unusable: the agent can tell the
		// switch nothing more, so it is treated as gone all the same.
		log.Warn("dead-man switch: reading the agent's pipe", "err", err)
	}
	if !st.armed {
		return nil
	}
	log.Warn("dead-man switch: the agent is gone while its redis is the elected master; fencing at the deadline",
		"redis", target.addr, "in", time.Until(st.deadline).Round(time.Millisecond))
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Until(st.deadline)):
	}
	c := newRedisClient(target, 2*time.Second)
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := fenceRedis(cctx, c, st.pause, st.follow); err != nil {
		return fmt.Errorf("dead-man switch: %w", err)
	}
	if st.follow == "" {
		log.Warn("dead-man switch: writes paused; nothing to demote to", "for", st.pause)
		return nil
	}
	log.Warn("dead-man switch: redis demoted", "to", st.follow)
	return nil
}

// deadMan is the agent's side of the switch: the process and the pipe.
// Owned by the agent's loop.
type deadMan struct {
	log    *slog.Logger
	cmd    *exec.Cmd
	in     io.WriteCloser
	last   string // the last state line sent ("arm" lines are re-sent as the deadline moves)
	closed bool   // the pipe is closed
	failed bool   // a write to the switch failed: it is gone
	once   sync.Once
	// onSend, if set, sees every line sent (tests).
	onSend func(line string)
}

// startDeadMan starts the switch process argv and tells it the Redis.
func startDeadMan(argv []string, redisURL string, log *slog.Logger) (*deadMan, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	// Its own process group: a signal to the agent's group (a terminal's
	// Ctrl-C, a supervisor killing the group) must not take it down with
	// a dying agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr // its logs beside the agent's
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("dead-man switch: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dead-man switch: start %s: %w", argv[0], err)
	}
	d := &deadMan{log: log, cmd: cmd, in: in}
	if _, err := io.WriteString(in, "redis "+redisURL+"\n"); err != nil {
		d.close()
		return nil, fmt.Errorf("dead-man switch: %w", err)
	}
	return d, nil
}

// arm tells the switch the leader's fence deadline and what to demote to.
func (d *deadMan) arm(deadline time.Time, pause time.Duration, follow string) {
	if follow == "" {
		follow = "-"
	}
	d.send(fmt.Sprintf("arm %d %d %s", max(time.Until(deadline).Milliseconds(), 0), pause.Milliseconds(), follow))
}

// disarm tells the switch the agent does not lead.
func (d *deadMan) disarm() {
	if d.last != "disarm" {
		d.send("disarm")
	}
}

func (d *deadMan) send(line string) {
	if d.closed {
		return
	}
	if _, err := io.WriteString(d.in, line+"\n"); err != nil {
		d.log.Error("dead-man switch: not reachable", "err", err)
		d.failed = true
		return
	}
	d.last = line
	if d.onSend != nil {
		d.onSend(line)
	}
}

// close disarms the switch (unless abandoned) and waits for it to exit.
func (d *deadMan) close() {
	d.once.Do(func() {
		if !d.closed {
			if !d.failed {
				d.disarm()
			}
			_ = d.in.Close()
			d.closed = true
		}
		_ = d.cmd.Wait()
	})
}
