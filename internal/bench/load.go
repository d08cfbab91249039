package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

const (
	// keyDigits is the fixed width of the number in key:<n>, so that a
	// prebuilt pipeline can be patched in place.
	keyDigits = 10
	// maxKey bounds Config.Keyspace well inside keyDigits.
	maxKey = 1_000_000_000
	// maxOpsPerSecond caps every load loop by count as well as by time.
	maxOpsPerSecond = 10_000_000
	// ioGrace is how long past its end a load connection may still wait
	// for replies before it counts as stuck.
	ioGrace = 30 * time.Second
	// maxRoundOps bounds Config.Ops, and countRoundLimit the time of a
	// round of Config.Ops SETs (it ends there with what it wrote).
	maxRoundOps     = 1_000_000_000
	countRoundLimit = 5 * time.Minute
)

// okReply is what every SET returns.
var okReply = []byte("+OK\r\n")

// setPrefix starts every SET of a key:<n> key, up to its digits.
var setPrefix = "*3\r\n$3\r\nSET\r\n$" + strconv.Itoa(len("key:")+keyDigits) + "\r\nkey:"

// newValue returns the value every SET writes: size printable bytes.
func newValue(size int) []byte {
	v := make([]byte, size)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// appendSet appends SET key:<n> value.
func appendSet(b []byte, n int, value []byte) []byte {
	b = append(b, setPrefix...)
	start := len(b)
	b = append(b, make([]byte, keyDigits)...)
	putDigits(b[start:], n)
	return appendValue(b, value)
}

// appendValue appends the value argument of a SET, and the command's end.
func appendValue(b []byte, value []byte) []byte {
	b = append(b, "\r\n$"...)
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, "\r\n"...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// putDigits writes n zero-padded into dst[:keyDigits].
func putDigits(dst []byte, n int) {
	for i := keyDigits - 1; i >= 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
}

// setBatch is a prebuilt pipeline of SETs whose key numbers are patched in
// place, so the load loop neither allocates nor formats.
type setBatch struct {
	buf    []byte
	n      int
	cmdLen int
}

func newSetBatch(n int, value []byte) *setBatch {
	b := &setBatch{n: n}
	for range n {
		b.buf = appendSet(b.buf, 0, value)
	}
	b.cmdLen = len(b.buf) / n
	return b
}

// setKeys numbers the batch's keys next, next+1, ... modulo keyspace and
// returns the number after the last.
func (b *setBatch) setKeys(next, keyspace int) int {
	for i := range b.n {
		putDigits(b.buf[i*b.cmdLen+len(setPrefix):], next)
		if next++; next >= keyspace {
			next = 0
		}
	}
	return next
}

// checkOK checks that p is a run of +OK replies.
func checkOK(p []byte) error {
	for i := 0; i < len(p); i += len(okReply) {
		if !bytes.Equal(p[i:min(i+len(okReply), len(p))], okReply) {
			bad := p[i:min(i+120, len(p))]
			if j := bytes.IndexByte(bad, '\n'); j >= 0 {
				bad = bad[:j]
			}
			return fmt.Errorf("reply %q: want +OK", bytes.TrimSpace(bad))
		}
	}
	return nil
}

// loadClient is one pipelined connection of a load.
type loadClient struct {
	nc    net.Conn
	batch *setBatch
	reply []byte
	next  int // next key number
}

func dialLoad(ctx context.Context, addr string, pipeline int, value []byte) (*loadClient, error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &loadClient{nc: nc, batch: newSetBatch(pipeline, value), reply: make([]byte, pipeline*len(okReply))}, nil
}

// roundTrip sends one batch with keys from c.next and reads its replies.
func (c *loadClient) roundTrip(keyspace int) error {
	c.next = c.batch.setKeys(c.next, keyspace)
	if _, err := c.nc.Write(c.batch.buf); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.nc, c.reply); err != nil {
		return err
	}
	return checkOK(c.reply)
}

// loadResult is what a saturating load achieved.
type loadResult struct {
	ops     int64
	elapsed time.Duration
}

func (l loadResult) rate() float64 { return float64(l.ops) / l.elapsed.Seconds() }

// saturate writes pipelined SETs from nclients connections to addr for
// cfg.Duration, or cfg.Ops of them when it is set, each client waiting
// for a batch's replies before it sends the next.
func saturate(ctx context.Context, addr string, cfg *Config, nclients int) (loadResult, error) {
	value := newValue(cfg.ValueSize)
	clients := make([]*loadClient, 0, nclients)
	defer func() {
		for _, c := range clients {
			c.nc.Close()
		}
	}()
	for i := range nclients {
		c, err := dialLoad(ctx, addr, cfg.Pipeline, value)
		if err != nil {
			return loadResult{}, err
		}
		c.next = i * (cfg.Keyspace / nclients)
		clients = append(clients, c)
	}
	// Closing the connections is what interrupts the clients' I/O.
	stop := context.AfterFunc(ctx, func() {
		for _, c := range clients {
			c.nc.Close()
		}
	})
	defer stop()

	batches := batchesPerClient(cfg, nclients)
	limit := cfg.Duration
	if cfg.Ops > 0 {
		limit = countRoundLimit
	}
	start := time.Now()
	deadline := start.Add(limit)
	ops := make([]int64, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		c.nc.SetDeadline(deadline.Add(ioGrace))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(0); n < batches[i] && time.Now().Before(deadline); n++ {
				if err := c.roundTrip(cfg.Keyspace); err != nil {
					errs[i] = fmt.Errorf("load client %d on %s: %w", i, addr, err)
					return
				}
				ops[i] += int64(c.batch.n)
			}
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start)}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for i := range clients {
		if errs[i] != nil {
			return res, errs[i]
		}
		res.ops += ops[i]
	}
	return res, nil
}

// batchesPerClient returns how many pipelines each of nclients clients
// sends at most: cfg.Ops SETs in whole pipelines, the remainder spread
// one each over the first clients; without cfg.Ops, as many as
// maxOpsPerSecond for cfg.Duration allow (the time ends the load first).
func batchesPerClient(cfg *Config, nclients int) []int64 {
	n := make([]int64, nclients)
	if cfg.Ops <= 0 {
		for i := range n {
			n[i] = int64(cfg.Duration.Seconds()*maxOpsPerSecond) / int64(cfg.Pipeline*nclients)
		}
		return n
	}
	total := int64((cfg.Ops + cfg.Pipeline - 1) / cfg.Pipeline)
	for i := range n {
		n[i] = total / int64(nclients)
		if int64(i) < total%int64(nclients) {
			n[i]++
		}
	}
	return n
}

// prefill sets every key of the keyspace once, so that every measured SET
// overwrites a key and the rounds compare like with like.
func prefill(ctx context.Context, addr string, cfg *Config) error {
	value := newValue(cfg.ValueSize)
	c, err := dialLoad(ctx, addr, cfg.Pipeline, value)
	if err != nil {
		return err
	}
	defer c.nc.Close()
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	c.nc.SetDeadline(time.Now().Add(time.Minute + time.Duration(cfg.Keyspace)*time.Microsecond))
	for done := 0; done < cfg.Keyspace; done += c.batch.n {
		if rest := cfg.Keyspace - done; rest < c.batch.n {
			c.batch = newSetBatch(rest, value)
			c.reply = c.reply[:rest*len(okReply)]
		}
		if err := c.roundTrip(cfg.Keyspace); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("prefill %s: %w", addr, err)
		}
	}
	return nil
}
