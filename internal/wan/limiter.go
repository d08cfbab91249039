package wan

import (
	"sync"
	"sync/atomic"
	"time"
)

// limiter is a token bucket shared by every connection of one direction of
// a bridge. Callers take tokens after a read and before forwarding; the
// bucket may go into debt, so a later caller waits for the debt too and the
// long-run rate holds whatever the chunk sizes.
type limiter struct {
	burst float64      // configured bucket depth
	rate  atomic.Int64 // bytes per second, 0 = unlimited; read without mu

	mu      sync.Mutex
	depth   float64 // bucket depth in use: burst, or more at high rates
	tokens  float64
	last    time.Time
	changed chan struct{} // closed and replaced by set, wakes waiters
}

func newLimiter(rate int64, burst int) *limiter {
	l := &limiter{burst: float64(burst), changed: make(chan struct{})}
	l.set(rate)
	return l
}

// timerSlack is how late a Go timer may fire on an idle process (netpoll
// waits whole milliseconds). The bucket holds at least this long at the
// rate, so oversleeping never loses tokens and high rates stay reachable.
const timerSlack = 2 * time.Millisecond

// set changes the rate and refills the bucket. Waiters take their tokens
// again at the new rate.
func (l *limiter) set(rate int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate.Store(rate)
	l.depth = max(l.burst, float64(rate)*timerSlack.Seconds())
	l.tokens = l.depth
	l.last = time.Now()
	close(l.changed)
	l.changed = make(chan struct{})
}

// take waits until n bytes may pass. It returns false if done closes first.
func (l *limiter) take(n int, done <-chan struct{}) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if l.rate.Load() <= 0 {
			return true
		}
		wait, changed := l.reserve(n)
		if wait <= 0 {
			return true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
			return true
		case <-changed:
			// The rate changed and the debt was forgiven: reserve again.
		case <-done:
			return false
		}
	}
}

func (l *limiter) reserve(n int) (time.Duration, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := float64(l.rate.Load())
	if rate <= 0 {
		return 0, l.changed
	}
	now := time.Now()
	l.tokens = min(l.depth, l.tokens+now.Sub(l.last).Seconds()*rate)
	l.last = now
	l.tokens -= float64(n)
	if l.tokens >= 0 {
		return 0, l.changed
	}
	return time.Duration(-l.tokens / rate * float64(time.Second)), l.changed
}
