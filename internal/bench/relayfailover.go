package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/arbor-fabric/arbor/topology"
)

// RelayFailoverConfig configures RunRelayFailover.
type RelayFailoverConfig struct {
	// Runs is how many times a root relay is killed (fresh processes each).
	Runs int
	// MoveAfter, MoveAfterDown and HoldDown are the child relays'
	// --move-after, --move-after-down and --hold-down.
	MoveAfter, MoveAfterDown, HoldDown time.Duration
	// RedisServer and RelayBin are the binaries; Dir the parent of the
	// temporary directory ("" for the system's); Keep keeps it.
	RedisServer, RelayBin, Dir string
	Keep                       bool
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// DefaultRelayFailoverConfig returns the defaults: 20 runs at the relays'
// own defaults.
func DefaultRelayFailoverConfig() RelayFailoverConfig {
	return RelayFailoverConfig{Runs: 20, MoveAfter: topology.DefaultSilence, MoveAfterDown: topology.DefaultDown,
		HoldDown: topology.DefaultHoldDown, RedisServer: "redis-server"}
}

// RelayFailoverRun is one kill of a root relay.
type RelayFailoverRun struct {
	// StreamingMs is the time from the SIGKILL of a1 to both child
	// relays streaming from a2.
	StreamingMs float64 `json:"streaming_ms"`
	// StallMs is the longest time between two writes the master accepted
	// around the kill (the writer writes one at a time, 1 ms apart).
	StallMs float64 `json:"stall_ms"`
	// WriteErrors counts writes the master refused.
	WriteErrors int `json:"write_errors"`
	// FullSyncs counts full syncs anywhere: the master's, the child
	// relays' from their upstream and to their replicas.
	FullSyncs int64 `json:"full_syncs"`
	// DigestsEqual says the replicas under the child relays ended equal to
	// the master.
	DigestsEqual bool `json:"digests_equal"`
}

// RelayFailoverReport is what RunRelayFailover measured.
type RelayFailoverReport struct {
	MoveAfterMs float64 `json:"move_after_ms"`
	// MoveAfterDownMs is the children's --move-after-down; 0 in reports
	// from before the flag, when --move-after bounded a down link too.
	MoveAfterDownMs float64            `json:"move_after_down_ms,omitempty"`
	Runs            []RelayFailoverRun `json:"runs"`
	Streaming       Dist               `json:"streaming"`
	Stall           Dist               `json:"stall"`
	WriteErrors     int                `json:"write_errors"`
	FullSyncs       int64              `json:"full_syncs"`
	Digests         bool               `json:"digests_equal"`
}

// Relay failover targets.
const (
	relayFailoverStreamingTarget = time.Second
	relayFailoverStallTarget     = time.Second
)

// RunRelayFailover measures relay failover: a master with
// min-replicas-to-write 1 and two relays following it (a1, a2), two child
// relays following "arbor://a1,arbor://a2" (the --upstream list: no etcd),
// a replica under each child. Under steady writes a1 is SIGKILLed; it
// measures the time until both children stream from a2, the longest
// write stall, refused writes and full syncs, and checks digests.
func RunRelayFailover(ctx context.Context, cfg RelayFailoverConfig) (*RelayFailoverReport, error) {
	if cfg.Runs < 1 {
		return nil, errors.New("runs: at least 1")
	}
	w, err := newWorkspace(cfg.RedisServer, cfg.RelayBin, cfg.Dir, cfg.Keep, nil, cfg.Progress)
	if err != nil {
		return nil, err
	}
	defer w.close()
	rep := &RelayFailoverReport{MoveAfterMs: ms(cfg.MoveAfter), MoveAfterDownMs: ms(cfg.MoveAfterDown), Digests: true}
	var streaming, stalls []time.Duration
	for i := range cfg.Runs {
		e := w.newEnv("run-" + strconv.Itoa(i+1))
		run, err := relayFailoverOnce(ctx, cfg, e)
		e.close()
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		w.progress("run %d: children streaming %.0f ms after the kill, longest write stall %.0f ms, %d refused writes, %d full syncs",
			i+1, run.StreamingMs, run.StallMs, run.WriteErrors, run.FullSyncs)
		rep.Runs = append(rep.Runs, run)
		streaming = append(streaming, time.Duration(run.StreamingMs*float64(time.Millisecond)))
		stalls = append(stalls, time.Duration(run.StallMs*float64(time.Millisecond)))
		rep.WriteErrors += run.WriteErrors
		rep.FullSyncs += run.FullSyncs
		rep.Digests = rep.Digests && run.DigestsEqual
	}
	rep.Streaming, rep.Stall = summarize(streaming), summarize(stalls)
	return rep, nil
}

func relayFailoverOnce(ctx context.Context, cfg RelayFailoverConfig, e *env) (RelayFailoverRun, error) {
	var run RelayFailoverRun
	master, err := e.startRedis(ctx, "master", "", "--repl-backlog-size", "64mb")
	if err != nil {
		return run, err
	}
	a := map[string]*relayServer{}
	for _, id := range []string{"a1", "a2"} {
		if a[id], err = e.startRelayWith(ctx, id, relaySpec{upstream: "redis://" + master.addr, site: "A", grpc: true}); err != nil {
			return run, err
		}
	}
	list := "arbor://" + a["a1"].grpcAddr + ",arbor://" + a["a2"].grpcAddr
	var children, replicas []*server
	for _, id := range []string{"b1", "b2"} {
		b, err := e.startRelayWith(ctx, id, relaySpec{upstream: list, site: "B",
			args: []string{"--move-after", cfg.MoveAfter.String(), "--move-after-down", cfg.MoveAfterDown.String(), "--hold-down", cfg.HoldDown.String()}})
		if err != nil {
			return run, err
		}
		children = append(children, b.server)
		r, err := e.startRedis(ctx, "replica-"+id, b.addr)
		if err != nil {
			return run, err
		}
		replicas = append(replicas, r)
	}
	if _, err := waitStreaming(ctx, linkTimeout, master.addr, replicas); err != nil {
		return run, err
	}
	for _, kv := range [][2]string{{"min-replicas-to-write", "1"}, {"min-replicas-max-lag", "3"}} {
		if _, err := query(ctx, master.addr, "CONFIG", "SET", kv[0], kv[1]); err != nil {
			return run, err
		}
	}
	before, err := treeFullSyncs(ctx, master, children)
	if err != nil {
		return run, err
	}

	wctx, stopWriter := context.WithCancel(ctx)
	done := make(chan stallWriter, 1)
	go func() { done <- writeSteadily(wctx, master.addr, 500000) }()
	stop := func() stallWriter { stopWriter(); return <-done }
	time.Sleep(300 * time.Millisecond) // writes flow before the kill
	a["a1"].kill()
	killed := time.Now()
	want := "arbor://" + a["a2"].grpcAddr
	err = poll(ctx, linkTimeout, pollInterval, "child relays not streaming from a2", children, func() (bool, error) {
		for _, c := range children {
			m, err := infoOn(ctx, c.addr, "all")
			if err != nil {
				return false, err
			}
			if m["arbor_upstream"] != want || m["master_link_status"] != "up" {
				return false, fmt.Errorf("%s follows %s, link %s", c.name, m["arbor_upstream"], m["master_link_status"])
			}
		}
		return true, nil
	})
	if err != nil {
		stop()
		return run, err
	}
	run.StreamingMs = ms(time.Since(killed))
	time.Sleep(500 * time.Millisecond) // writes flow after the move
	w := stop()
	run.StallMs, run.WriteErrors = ms(w.longest), w.errs
	if err := waitFlowing(ctx, master.addr, replicas); err != nil {
		return run, err
	}
	after, err := treeFullSyncs(ctx, master, children)
	if err != nil {
		return run, err
	}
	run.FullSyncs = after - before
	checks, err := compareDigests(ctx, "relay failover", master, replicas...)
	if err != nil {
		return run, err
	}
	run.DigestsEqual = true
	for _, c := range checks {
		run.DigestsEqual = run.DigestsEqual && c.Match
	}
	return run, nil
}

// treeFullSyncs sums the full syncs of the master (served), and of each child
// relay (received from its upstream and served to its replica).
func treeFullSyncs(ctx context.Context, master *server, children []*server) (int64, error) {
	m, err := infoOn(ctx, master.addr, "stats")
	if err != nil {
		return 0, err
	}
	n, err := infoInt(m, "sync_full")
	if err != nil {
		return 0, err
	}
	for _, c := range children {
		ci, err := infoOn(ctx, c.addr, "all")
		if err != nil {
			return 0, err
		}
		for _, k := range []string{"sync_full", "arbor_upstream_full_syncs"} {
			v, err := infoInt(ci, k)
			if err != nil {
				return 0, err
			}
			n += v
		}
	}
	return n, nil
}

// stallWriter is what writeSteadily saw.
type stallWriter struct {
	longest time.Duration
	errs    int
}

// writeSteadily SETs one key at a time, 1 ms apart, until ctx ends or
// maxOps writes, and measures the longest time between two accepted ones.
func writeSteadily(ctx context.Context, addr string, maxOps int) stallWriter {
	var s stallWriter
	last := time.Now()
	var c *conn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for i := 0; i < maxOps && ctx.Err() == nil; i++ {
		if c == nil {
			var err error
			if c, err = dial(ctx, addr); err != nil {
				s.errs++
				time.Sleep(5 * time.Millisecond)
				continue
			}
		}
		_, err := c.do("SET", "rf:"+strconv.Itoa(i%5000), strconv.Itoa(i))
		if err != nil {
			if ctx.Err() == nil {
				s.errs++
			}
			c.close()
			c = nil
			time.Sleep(5 * time.Millisecond)
			continue
		}
		now := time.Now()
		s.longest = max(s.longest, now.Sub(last))
		last = now
		time.Sleep(time.Millisecond)
	}
	return s
}

// WriteText renders the report.
func (r *RelayFailoverReport) WriteText(w io.Writer) error {
	miss := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISS"
	}
	_, err := fmt.Fprintf(w, `relay failover: %d runs · SIGKILL of a root relay under writes (min-replicas-to-write 1), children on --upstream lists, %s
  children streaming again   p50 %7.0f ms  p99 %7.0f ms  max %7.0f ms   target p99 <= %v: %s
  longest write stall        p50 %7.0f ms  p99 %7.0f ms  max %7.0f ms   target max <= %v: %s
  refused writes %d · full syncs %d (target 0: %s) · digests %s
`, len(r.Runs), r.bounds(),
		r.Streaming.P50, r.Streaming.P99, r.Streaming.Max, relayFailoverStreamingTarget, miss(r.Streaming.P99 <= ms(relayFailoverStreamingTarget)),
		r.Stall.P50, r.Stall.P99, r.Stall.Max, relayFailoverStallTarget, miss(r.Stall.Max <= ms(relayFailoverStallTarget)),
		r.WriteErrors, r.FullSyncs, miss(r.FullSyncs == 0), map[bool]string{true: "equal", false: "DIFFER"}[r.Digests])
	return err
}

// bounds says the children's bounds as flags: --move-after, and
// --move-after-down unless the report is from before it.
func (r *RelayFailoverReport) bounds() string {
	d := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	s := fmt.Sprintf("--move-after %v", d(r.MoveAfterMs))
	if r.MoveAfterDownMs > 0 {
		s += fmt.Sprintf(" --move-after-down %v", d(r.MoveAfterDownMs))
	}
	return s
}
