package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// loadOutage is how long the write load goes on trying while the master
// does not take writes (a failover), before it gives up.
const loadOutage = 15 * time.Second

// ackPrefix names the keys the writer checks at the end: one key per
// acknowledged write it tracks, ack:<seq>.
const ackPrefix = "ack:"

// writer is the demo's write load. Besides a mix of commands it writes one
// key of its own (ack:<seq>) every four commands and remembers each one
// the master acknowledged, so the demo can check at the end that the final
// master holds them all.
type writer struct {
	mu sync.Mutex
	n  int64 // commands acknowledged
	// risky names the master whose acknowledged writes may be lost by
	// design (the one the demo kills, until it is killed): replication
	// is asynchronous, so what it acked but no relay had pulled yet dies
	// with it.
	risky     string
	riskyAcks []int64 // ack:<seq> keys acked by the risky master
	acks      []int64 // every other ack:<seq> key acknowledged
	// Per phase: when the last batch was acknowledged, the longest gap
	// between two acknowledged batches, and the first acknowledgement by
	// each master.
	lastAck  time.Time
	maxGap   time.Duration
	firstAck map[string]time.Time
}

func newWriter() *writer { return &writer{firstAck: map[string]time.Time{}} }

// setPhase starts a new phase of the story; risky is the master whose
// acknowledged writes may be lost by design from now on ("" for none).
func (w *writer) setPhase(risky string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.risky, w.maxGap = risky, 0
	w.firstAck = map[string]time.Time{}
}

// written returns how many commands were acknowledged.
func (w *writer) written() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// firstAckBy returns when master first acknowledged a batch in this phase.
func (w *writer) firstAckBy(master string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.firstAck[master]
	return t, ok
}

// longestGap returns the longest time between two acknowledged batches in
// this phase.
func (w *writer) longestGap() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxGap
}

func (w *writer) acked(master string, n int64, keys []int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	if !w.lastAck.IsZero() {
		w.maxGap = max(w.maxGap, now.Sub(w.lastAck))
	}
	w.lastAck = now
	if _, ok := w.firstAck[master]; !ok {
		w.firstAck[master] = now
	}
	w.n += n
	if master == w.risky {
		w.riskyAcks = append(w.riskyAcks, keys...)
	} else {
		w.acks = append(w.acks, keys...)
	}
}

// writeBatch is how many commands the writer sends in one pipeline.
const writeBatch = 100

// batchInterval is the time between two batches at rate commands per
// second.
func batchInterval(rate int) time.Duration {
	return time.Duration(float64(time.Second) * writeBatch / float64(rate))
}

// run writes a mix of commands at about rate per second to the master
// until ctx ends. master is asked for the master before each batch, so
// the load follows a failover.
func (w *writer) run(ctx context.Context, master func(context.Context) *server, rate int) error {
	t := time.NewTicker(batchInterval(rate))
	defer t.Stop()
	rnd := rand.New(rand.NewPCG(1, 2))
	// Its own clients, one per master, that fail fast: a batch to a dead
	// master must not hold the writer in retries while a new master
	// already takes writes (that would add to the measured outage).
	clients := map[string]*redis.Client{}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	var seq int64
	var failing time.Time // when the current run of failed batches began
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		m := master(ctx)
		c, known := clients[m.name]
		if !known {
			c = redis.NewClient(&redis.Options{
				Addr: m.addr(), Protocol: 2, DisableIdentity: true,
				MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second,
				// Longer than a switchover's write pause (CLIENT PAUSE).
				ReadTimeout: 10 * time.Second,
			})
			clients[m.name] = c
		}
		p := c.Pipeline()
		mine := map[int64]*redis.StatusCmd{}
		for i := 0; i < writeBatch; i++ {
			k := rnd.IntN(10000)
			switch i % 4 {
			case 0:
				seq++
				mine[seq] = p.Set(ctx, ackPrefix+strconv.FormatInt(seq, 10), seq, 0)
			case 1:
				p.HIncrBy(ctx, fmt.Sprintf("stats:%d", k%100), "hits", 1)
			case 2:
				p.ZAdd(ctx, "leaderboard", redis.Z{Score: float64(rnd.IntN(100000)), Member: fmt.Sprintf("user:%d", k)})
			case 3:
				p.Set(ctx, fmt.Sprintf("user:%d", k), fmt.Sprintf(`{"id":%d,"name":"user-%d","score":%d}`, k, k, rnd.IntN(1000)), 0)
			}
		}
		cmds, err := p.Exec(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A write counts as acknowledged when its own reply is OK, even in
		// a batch where others failed.
		var keys []int64
		for s, c := range mine {
			if c.Err() == nil {
				keys = append(keys, s)
			}
		}
		var ok int64
		for _, c := range cmds {
			if c.Err() == nil {
				ok++
			}
		}
		if ok > 0 {
			w.acked(m.name, ok, keys)
		}
		if err != nil {
			if failing.IsZero() {
				failing = time.Now()
			}
			if time.Since(failing) > loadOutage {
				return err
			}
			continue // the master may be moving: ask again next batch
		}
		failing = time.Time{}
	}
}

// lostWrites counts the acknowledged ack:<seq> keys that the master c
// lacks: promised are those that must be there, risky those acked by a
// master before it was killed.
func (w *writer) lostWrites(ctx context.Context, c *redis.Client) (promised, risky, checked, riskyChecked int64, err error) {
	w.mu.Lock()
	acks, riskyAcks := append([]int64(nil), w.acks...), append([]int64(nil), w.riskyAcks...)
	w.mu.Unlock()
	count := func(seqs []int64) (int64, error) {
		var missing int64
		const chunk = 1000
		for i := 0; i < len(seqs); i += chunk {
			keys := make([]string, 0, chunk)
			for _, s := range seqs[i:min(i+chunk, len(seqs))] {
				keys = append(keys, ackPrefix+strconv.FormatInt(s, 10))
			}
			vals, err := c.MGet(ctx, keys...).Result()
			if err != nil {
				return 0, err
			}
			for _, v := range vals {
				if v == nil {
					missing++
				}
			}
		}
		return missing, nil
	}
	if promised, err = count(acks); err != nil {
		return 0, 0, 0, 0, err
	}
	if risky, err = count(riskyAcks); err != nil {
		return 0, 0, 0, 0, err
	}
	return promised, risky, int64(len(acks) + len(riskyAcks)), int64(len(riskyAcks)), nil
}
