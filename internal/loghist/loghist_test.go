package loghist

import (
	"testing"
	"time"
)

func TestQuantileWithinTenPercent(t *testing.T) {
	var counts [Buckets]uint64
	for i := 1; i <= 100; i++ {
		counts[Bucket(time.Duration(i)*time.Millisecond)]++
	}
	largest := 100 * time.Millisecond
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, largest}} {
		got := Quantile(&counts, 100, c.q, largest)
		if got < c.want || float64(got) > 1.1*float64(c.want) {
			t.Errorf("q %v = %v, want within [%v, +10%%]", c.q, got, c.want)
		}
	}
	if got := Quantile(&counts, 0, 0.5, 0); got != 0 {
		t.Errorf("no samples: %v, want 0", got)
	}
	if Bucket(0) != 0 || Bucket(time.Hour) != Buckets-1 {
		t.Errorf("buckets of 0 and 1h: %d, %d; want 0 and %d", Bucket(0), Bucket(time.Hour), Buckets-1)
	}
}
