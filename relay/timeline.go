package relay

import (
	"sort"
	"sync"
	"time"
)

// timeline remembers when stream offsets were first seen at the root of the
// tree (the origin time travels with the bytes down the tree), so lag can be
// given in time as well as bytes: a consumer that has acked offset a lags by
// now minus the origin time of byte a. It keeps one mark per millisecond at
// most, in a bounded ring.
type timeline struct {
	mu    sync.Mutex
	marks []mark // ring, ordered by end
	head  int    // index of the oldest mark
	n     int
}

type mark struct {
	end    int64 // bytes held after this append
	origin int64 // unix nanos the newest of these bytes was first received
}

const timelineMarks = 8192

func newTimeline() *timeline { return &timeline{marks: make([]mark, timelineMarks)} }

// record notes that the stream reached end with bytes first received at
// origin (unix nanos).
func (t *timeline) record(end, origin int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n > 0 {
		last := &t.marks[(t.head+t.n-1)%len(t.marks)]
		if end <= last.end {
			return
		}
		if origin-last.origin < int64(time.Millisecond) {
			last.end = end
			return
		}
	}
	if t.n == len(t.marks) {
		t.head = (t.head + 1) % len(t.marks)
		t.n--
	}
	t.marks[(t.head+t.n)%len(t.marks)] = mark{end: end, origin: origin}
	t.n++
}

// reset forgets every mark (a new history).
func (t *timeline) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.head, t.n = 0, 0
}

// originOf returns the origin time of the byte at offset pos (the first
// byte not held by a consumer that acked pos), or false when pos is beyond
// every mark.
func (t *timeline) originOf(pos int64) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := sort.Search(t.n, func(i int) bool { return t.marks[(t.head+i)%len(t.marks)].end > pos })
	if i == t.n {
		return 0, false
	}
	return t.marks[(t.head+i)%len(t.marks)].origin, true
}

// lag returns how far behind a consumer that holds acked bytes is, in
// time, given the store's end.
func (t *timeline) lag(acked, end int64, now time.Time) time.Duration {
	if acked >= end {
		return 0
	}
	origin, ok := t.originOf(acked)
	if !ok {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, origin)))
}
