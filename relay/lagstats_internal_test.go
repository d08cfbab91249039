package relay

import (
	"testing"
	"time"
)

func TestLagWindowQuantiles(t *testing.T) {
	var w lagWindow
	now := time.Unix(1000, 0)
	for i := 1; i <= 100; i++ {
		w.record(now, time.Duration(i)*time.Millisecond)
	}
	p50, p99, mx, n := w.quantiles(now)
	if n != 100 || mx != 100*time.Millisecond {
		t.Fatalf("n %d max %v, want 100 and 100ms", n, mx)
	}
	within := func(got, want time.Duration) bool { return got >= want && float64(got) <= float64(want)*1.11 }
	if !within(p50, 50*time.Millisecond) || !within(p99, 99*time.Millisecond) {
		t.Errorf("p50 %v p99 %v, want 50ms and 99ms within 10%%", p50, p99)
	}
	// Seconds older than the window drop out.
	if _, _, _, n := w.quantiles(now.Add(lagWindowSeconds * time.Second)); n != 0 {
		t.Errorf("%d samples after the window passed, want 0", n)
	}
}
