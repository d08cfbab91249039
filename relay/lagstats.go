package relay

import (
	"math"
	"sync"
	"time"
)

// lagWindow keeps, per second of the last lagWindowSeconds, a histogram of
// how long stream bytes took from the root relay (their origin time) to
// being stored here: what the relay tree adds to replication lag, link
// latency included. Buckets grow by 10%, so quantiles are within 10%.
type lagWindow struct {
	mu   sync.Mutex
	secs [lagWindowSeconds]lagSecond // ring indexed by unix second
}

const (
	lagWindowSeconds = 10
	lagBuckets       = 200 // 1 µs · 1.1^199 ≈ 170 s
)

var lagGrowth = math.Log(1.1)

type lagSecond struct {
	sec    int64
	counts [lagBuckets]uint32
	max    time.Duration
}

func lagBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(lagBuckets-1, int(math.Log(us)/lagGrowth)+1)
}

// bucketUpper is the upper bound of bucket b.
func bucketUpper(b int) time.Duration {
	return time.Duration(math.Exp(float64(b)*lagGrowth) * float64(time.Microsecond))
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
	s.counts[lagBucket(d)]++
	s.max = max(s.max, d)
}

// quantiles returns p50, p99 and the maximum over the last
// lagWindowSeconds, and how many frames they cover.
func (w *lagWindow) quantiles(now time.Time) (p50, p99, maxLag time.Duration, n uint64) {
	var counts [lagBuckets]uint64
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
	if n == 0 {
		return 0, 0, 0, 0
	}
	quantile := func(q float64) time.Duration {
		rank := uint64(math.Ceil(q * float64(n)))
		var seen uint64
		for b, c := range counts {
			seen += c
			if seen >= rank {
				return min(bucketUpper(b), maxLag)
			}
		}
		return maxLag
	}
	return quantile(0.50), quantile(0.99), maxLag, n
}
