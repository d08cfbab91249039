package wan

import (
	"math"
	"sync/atomic"
	"time"
)

// Lateness describes how late a bridge delivered chunks after their due
// time (arrival + latency): the simulator's own jitter (timers firing late,
// the scheduler), which a real link does not add. Quantiles are upper
// bounds of 10%-wide buckets.
type Lateness struct {
	Chunks        int64
	P50, P99, Max time.Duration
}

// lateHist counts lateness in buckets growing by 10% from 1 µs; safe for
// concurrent use.
type lateHist struct {
	counts [lateBuckets]atomic.Int64
	max    atomic.Int64
}

const lateBuckets = 160 // 1 µs · 1.1^159 ≈ 3.8 ks

var lateGrowth = math.Log(1.1)

func lateBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(lateBuckets-1, int(math.Log(us)/lateGrowth)+1)
}

func lateUpper(b int) time.Duration {
	return time.Duration(math.Exp(float64(b)*lateGrowth) * float64(time.Microsecond))
}

func (h *lateHist) record(d time.Duration) {
	d = max(d, 0)
	h.counts[lateBucket(d)].Add(1)
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
	var counts [lateBuckets]int64
	var n int64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		n += counts[i]
	}
	l := Lateness{Chunks: n, Max: time.Duration(h.max.Load())}
	if n == 0 {
		return l
	}
	quantile := func(q float64) time.Duration {
		rank := int64(math.Ceil(q * float64(n)))
		var seen int64
		for b, c := range counts {
			if seen += c; seen >= rank {
				return min(lateUpper(b), l.Max)
			}
		}
		return l.Max
	}
	l.P50, l.P99 = quantile(0.50), quantile(0.99)
	return l
}
