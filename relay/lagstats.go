package relay

import (
	"sync"
	"time"

	"github.com/arbor-fabric/arbor/internal/loghist"
)

// lagWindow keeps, per second of the last lagWindowSeconds, a histogram of
// how long stream bytes took from the root relay (their origin time) to
// being stored here: what the relay tree adds to replication lag, link
// latency included. Buckets grow by 10% (loghist), so quantiles are within
// 10%.
type lagWindow struct {
	mu   sync.Mutex
	secs [lagWindowSeconds]lagSecond // ring indexed by unix second
}

const lagWindowSeconds = 10

type lagSecond struct {
	sec    int64
	counts [loghist.Buckets]uint32
	max    time.Duration
}

func (w *lagWindow) record(now time.Time, d time.Duration) {
	d = max(d, 0)
	sec := now.Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.secs[sec%lagWindowSeconds]
	if s.sec != sec {
		*s = lagSecond{sec: sec}
	}
	s.counts[loghist.Bucket(d)]++
	s.max = max(s.max, d)
}

// quantiles returns p50, p99 and the maximum over the last
// lagWindowSeconds, and how many frames they cover.
func (w *lagWindow) quantiles(now time.Time) (p50, p99, maxLag time.Duration, n uint64) {
	var counts [loghist.Buckets]uint64
	w.mu.Lock()
	for i := range w.secs {
		s := &w.secs[i]
		if now.Unix()-s.sec >= lagWindowSeconds {
			continue
		}
		for b, c := range s.counts {
			counts[b] += uint64(c)
			n += uint64(c)
		}
		maxLag = max(maxLag, s.max)
	}
	w.mu.Unlock()
	return loghist.Quantile(&counts, n, 0.50, maxLag), loghist.Quantile(&counts, n, 0.99, maxLag), maxLag, n
}
