package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
)

// ackPrefix names the writer's keys: ack:<seq>, value <seq>.
const ackPrefix = "ack:"

// Op is one write a node acknowledged: the writer's (Seq > 0, key
// ack:<Seq>) or a probe's (Seq 0). EpochBefore is the epoch the election
// record named when it was sent, EpochAfter when its reply came.
type Op struct {
	Seq         int64
	Node        string
	Sent, Acked time.Time
	EpochBefore int64
	EpochAfter  int64
}

// Epoch is one master record as the observer saw it: its epoch, its
// master and when the record was first seen.
type Epoch struct {
	Epoch  int64
	Master string
	Seen   time.Time
}

// History is what a row's clients saw: every acknowledged write and every
// master record. Its methods are safe for concurrent use.
type History struct {
	mu     sync.Mutex
	ops    []Op
	epochs []Epoch // oldest first: the newest is the current record
	// Writer failures (a batch refused or timed out), for the report.
	failed int64
}

// Observe follows the election record until ctx ends (election.Observe)
// in a goroutine of its own; it returns once the first record was seen or
// ctx ended, with a channel closed when that goroutine has returned.
func (h *History) Observe(ctx context.Context, cli *clientv3.Client, cluster string) (done <-chan struct{}) {
	ch := election.Observe(ctx, cli, cluster, nil)
	first := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		var once sync.Once
		for st := range ch {
			if st.Master != nil {
				h.see(st.Master.Epoch, st.Master.Node, time.Now())
				once.Do(func() { close(first) })
			}
		}
	}()
	select {
	case <-first:
	case <-ctx.Done():
	}
	return ended
}

func (h *History) see(epoch int64, master string, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.epochs); n > 0 && epoch <= h.epochs[n-1].Epoch {
		return
	}
	h.epochs = append(h.epochs, Epoch{Epoch: epoch, Master: master, Seen: at})
}

// Current returns the newest master record seen (zero before the first).
func (h *History) Current() Epoch {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.epochs) == 0 {
		return Epoch{}
	}
	return h.epochs[len(h.epochs)-1]
}

// Epochs returns the master records seen, oldest first.
func (h *History) Epochs() []Epoch {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Epoch(nil), h.epochs...)
}

func (h *History) add(ops ...Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, ops...)
}

// Ops returns every acknowledged write, in the order they were recorded.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// FirstAck returns when node first acknowledged a writer's write at or
// after since.
func (h *History) FirstAck(node string, since time.Time) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, op := range h.ops {
		if op.Seq > 0 && op.Node == node && !op.Acked.Before(since) {
			return op.Acked, true
		}
	}
	return time.Time{}, false
}

// LongestGap returns the longest time between two writer
// acknowledgements in [from, to].
func (h *History) LongestGap(from, to time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var gap time.Duration
	last := from
	for _, op := range h.ops {
		if op.Seq == 0 || op.Acked.Before(from) || op.Acked.After(to) {
			continue
		}
		gap = max(gap, op.Acked.Sub(last))
		last = op.Acked
	}
	return max(gap, to.Sub(last))
}

// Clients makes one client per node address that fails fast: a write to
// a dead or stopped master must not hold the writer in retries.
type Clients struct {
	mu      sync.Mutex
	addr    func(node string) string
	timeout time.Duration
	m       map[string]*redis.Client
}

// NewClients returns Clients for the nodes at addr(node), each command
// bounded by timeout.
func NewClients(addr func(node string) string, timeout time.Duration) *Clients {
	return &Clients{addr: addr, timeout: timeout, m: map[string]*redis.Client{}}
}

// Get returns node's client.
func (c *Clients) Get(node string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.m[node]
	if !ok {
		cl = redis.NewClient(&redis.Options{
			Addr: c.addr(node), Protocol: 2, DisableIdentity: true,
			MaxRetries: -1, DialerRetries: 1, DialTimeout: c.timeout,
			ReadTimeout: c.timeout, WriteTimeout: c.timeout, PoolSize: 2,
		})
		c.m[node] = cl
	}
	return cl
}

// Close closes every client.
func (c *Clients) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.m {
		cl.Close()
	}
}

// WriterBatch is how many ack:<seq> keys the writer sets per pipeline.
const WriterBatch = 20

// Write runs the writer until ctx ends: every interval a pipeline of
// WriterBatch SETs of ack:<seq> to the master the newest record names,
// each acknowledged one logged with that node and the epochs before and
// after.
func (h *History) Write(ctx context.Context, clients *Clients, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var seq int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := h.Current()
		if before.Master == "" {
			continue
		}
		p := clients.Get(before.Master).Pipeline()
		cmds := make(map[int64]*redis.StatusCmd, WriterBatch)
		first := seq + 1
		for range WriterBatch {
			seq++
			cmds[seq] = p.Set(ctx, ackPrefix+strconv.FormatInt(seq, 10), seq, 0)
		}
		sent := time.Now()
		_, err := p.Exec(ctx)
		acked := time.Now()
		if ctx.Err() != nil {
			return
		}
		after := h.Current()
		var ops []Op
		for s := first; s <= seq; s++ {
			if cmds[s].Err() == nil {
				ops = append(ops, Op{Seq: s, Node: before.Master, Sent: sent, Acked: acked, EpochBefore: before.Epoch, EpochAfter: after.Epoch})
			}
		}
		h.add(ops...)
		if err != nil {
			h.mu.Lock()
			h.failed++
			h.mu.Unlock()
		}
	}
}

// Probe tries a write (SET probe:<node>) on node every interval until ctx
// ends and logs each one it acknowledges: a replica refuses it
// (READONLY), a fenced master too (NOREPLICAS, or a pause past the
// client's timeout), so any acknowledged probe shows a writable master.
func (h *History) Probe(ctx context.Context, clients *Clients, node string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	c := clients.Get(node)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := h.Current()
		sent := time.Now()
		err := c.Set(ctx, "probe:"+node, i, 0).Err()
		if err == nil && ctx.Err() == nil {
			h.add(Op{Node: node, Sent: sent, Acked: time.Now(), EpochBefore: before.Epoch, EpochAfter: h.Current().Epoch})
		}
	}
}

// Failures returns how many writer batches failed in part or whole.
func (h *History) Failures() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// String summarises the history for a log.
func (h *History) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("%d acknowledged writes and probes, %d epochs, %d failed batches", len(h.ops), len(h.epochs), h.failed)
}
