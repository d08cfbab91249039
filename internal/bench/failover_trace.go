package bench

import (
	"context"
	"time"
)

const (
	// lagTraceEvery is how often a failover run's lag trace samples every
	// server's offset.
	lagTraceEvery = 20 * time.Millisecond
	// lagTraceTail is how long the trace goes on after the replicas stream
	// from the new master, to show the lag settle.
	lagTraceTail = 300 * time.Millisecond
	// lagTraceMax bounds the samples of one trace (a failover that takes
	// long keeps its first ones).
	lagTraceMax = 5000
)

// LagTrace is the replication lag of every server through one failover
// run: each server's master_repl_offset sampled every lagTraceEvery, and
// its lag as the bytes it trails the furthest server of that sample by
// (before the kill the master; after it, the new master once promoted:
// offsets carry on across a promotion, so they compare).
type LagTrace struct {
	// Servers names the servers, the old master first; Lag and Offset
	// follow this order.
	Servers []string `json:"servers"`
	// EveryMs is the sampling interval.
	EveryMs float64     `json:"every_ms"`
	Samples []LagSample `json:"samples"`
}

// LagSample is one sample of a LagTrace.
type LagSample struct {
	// Ms is the time since the master was killed (negative: before).
	Ms float64 `json:"ms"`
	// Lag is each server's lag in bytes; -1 when it did not answer.
	Lag []int64 `json:"lag_bytes"`
}

// lagTracer samples the offsets of servers until stopped. One goroutine
// samples; stop waits for it to end before it reads the samples.
type lagTracer struct {
	servers []*server
	cancel  context.CancelFunc
	done    chan struct{}
	start   time.Time

	// Written by run only.
	at      []time.Duration // since start
	offsets [][]int64       // per sample, per server (-1: no answer)
}

// startLagTracer starts sampling servers: the old master first, then the
// backup, then the replicas (the order they are read in is the reverse).
func startLagTracer(ctx context.Context, servers []*server) *lagTracer {
	ctx, cancel := context.WithCancel(ctx)
	t := &lagTracer{servers: servers, cancel: cancel, done: make(chan struct{}), start: time.Now()}
	go t.run(ctx)
	return t
}

func (t *lagTracer) run(ctx context.Context) {
	defer close(t.done)
	conns := make([]*conn, len(t.servers))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	tick := time.NewTicker(lagTraceEvery)
	defer tick.Stop()
	for n := 0; n < lagTraceMax; n++ {
		at := time.Since(t.start)
		row := make([]int64, len(t.servers))
		for i := range row {
			row[i] = -1
		}
		// Downstream first, the old master last: the servers are read one
		// after the other while writes flow, so a server read later may be
		// further on; reading upstream last keeps a replica from seeming
		// ahead of its master (and the master behind).
		for i := len(t.servers) - 1; i >= 0; i-- {
			s := t.servers[i]
			if conns[i] == nil {
				dctx, cancel := context.WithTimeout(ctx, lagTraceEvery)
				c, err := dial(dctx, s.addr)
				cancel()
				if err != nil {
					continue
				}
				c.timeout = 5 * lagTraceEvery
				conns[i] = c
			}
			m, err := conns[i].info("replication")
			if err != nil {
				conns[i].close()
				conns[i] = nil
				continue
			}
			if off, err := infoInt(m, "master_repl_offset"); err == nil {
				row[i] = off
			}
		}
		t.at = append(t.at, at)
		t.offsets = append(t.offsets, row)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// close ends the sampling and waits for it; after stop it does nothing.
func (t *lagTracer) close() {
	t.cancel()
	<-t.done
}

// stop ends the sampling and returns the trace with times relative to
// killed.
func (t *lagTracer) stop(killed time.Time) *LagTrace {
	t.close() // run has returned: the samples are ours
	tr := &LagTrace{EveryMs: ms(lagTraceEvery)}
	for _, s := range t.servers {
		tr.Servers = append(tr.Servers, s.name)
	}
	base := killed.Sub(t.start)
	for i, row := range t.offsets {
		tr.Samples = append(tr.Samples, LagSample{Ms: ms(t.at[i] - base), Lag: lagsOf(row)})
	}
	return tr
}

// lagsOf turns one sample's offsets into lags behind the furthest of them
// (-1 stays -1).
func lagsOf(offsets []int64) []int64 {
	furthest := int64(-1)
	for _, o := range offsets {
		furthest = max(furthest, o)
	}
	lags := make([]int64, len(offsets))
	for i, o := range offsets {
		if o < 0 {
			lags[i] = -1
			continue
		}
		lags[i] = furthest - o
	}
	return lags
}
