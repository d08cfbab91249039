// Package loghist is the bucketing behind Arbor's latency histograms:
// buckets from 1 µs growing by 10%, so a quantile read from them is an
// upper bound within 10% of the true value. Callers keep the counts (per
// second, atomically, ...) as they need; this package maps durations to
// buckets and counts back to quantiles.
package loghist

import (
	"math"
	"time"
)

// Buckets is the number of buckets: 1 µs · 1.1^199 ≈ 170 s, the last one
// holding everything longer.
const Buckets = 200

var growth = math.Log(1.1)

// Bucket returns the bucket of d.
func Bucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(Buckets-1, int(math.Log(us)/growth)+1)
}

// Upper returns the upper bound of bucket b.
func Upper(b int) time.Duration {
	return time.Duration(math.Exp(float64(b)*growth) * float64(time.Microsecond))
}

// Quantile returns quantile q (0 < q ≤ 1) of the n samples counted in
// counts: the upper bound of the bucket holding it, but never more than
// largest, the largest sample seen. It returns 0 when n is 0.
func Quantile(counts *[Buckets]uint64, n uint64, q float64, largest time.Duration) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for b, c := range counts {
		if seen += c; seen >= rank {
			return min(Upper(b), largest)
		}
	}
	return largest
}
