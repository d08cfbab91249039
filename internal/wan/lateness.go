package wan

import (
	"sync/atomic"
	"time"

	"github.com/arbor-fabric/arbor/internal/loghist"
)

// Lateness describes how late a bridge delivered chunks after their due
// time (arrival + latency): the simulator's own jitter (timers firing late,
// the scheduler), which a real link does not add. Quantiles are upper
// bounds within 10% (loghist).
type Lateness struct {
	Chunks        int64
	P50, P99, Max time.Duration
}

// lateHist counts lateness in loghist buckets; safe for concurrent use.
type lateHist struct {
	counts [loghist.Buckets]atomic.Int64
	max    atomic.Int64
}

func (h *lateHist) record(d time.Duration) {
	d = max(d, 0)
	h.counts[loghist.Bucket(d)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *lateHist) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.max.Store(0)
}

func (h *lateHist) stats() Lateness {
	var counts [loghist.Buckets]uint64
	var n uint64
	for i := range h.counts {
		counts[i] = uint64(h.counts[i].Load())
		n += counts[i]
	}
	l := Lateness{Chunks: int64(n), Max: time.Duration(h.max.Load())}
	l.P50 = loghist.Quantile(&counts, n, 0.50, l.Max)
	l.P99 = loghist.Quantile(&counts, n, 0.99, l.Max)
	return l
}
