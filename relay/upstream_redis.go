package relay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
	"github.com/arbor-fabric/arbor/relay/store"
)

const (
	dialTimeout   = 5 * time.Second
	progressEvery = 5 * time.Second
)

// upstreamConn is one session with the upstream master.
type upstreamConn struct {
	conn    net.Conn
	br      *bufio.Reader
	rd      *resp.Reader
	timeout time.Duration
}

func (u *upstreamConn) deadline() { u.conn.SetReadDeadline(time.Now().Add(u.timeout)) }

// readLine reads one reply line, skipping the bare newlines a master sends
// as keepalives while it prepares a sync.
func (u *upstreamConn) readLine() (string, error) {
	for {
		u.deadline()
		line, err := u.rd.ReadLine()
		if err != nil {
			return "", err
		}
		if len(line) > 0 {
			return string(line), nil
		}
	}
}

// dialUpstream connects to the upstream master and runs the replica
// handshake. The connection closes when ctx ends, or when the caller calls
// closeConn (more than once is fine).
func (r *Relay) dialUpstream(ctx context.Context, up Upstream, rdbOnly bool) (u *upstreamConn, closeConn func(), err error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", up.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial upstream %s: %w", up.Addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	closeConn = func() {
		stop()
		conn.Close()
	}
	u = &upstreamConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), timeout: r.cfg.ReplTimeout}
	u.rd = resp.NewReader(u.br)
	if err := r.handshake(u, up, rdbOnly); err != nil {
		closeConn()
		return nil, nil, err
	}
	return u, closeConn, nil
}

// syncOnce runs one upstream session: handshake, PSYNC, optional RDB
// transfer, then the stream, until an error or ctx ends.
func (r *Relay) syncOnce(ctx context.Context, up Upstream) error {
	r.link.set("connecting")
	u, closeConn, err := r.dialUpstream(ctx, up, false)
	if err != nil {
		return err
	}
	defer closeConn()
	conn := u.conn
	st := r.store.State()
	psync := resp.AppendCommand(nil, "PSYNC", "?", "-1")
	if st.HasData() {
		psync = resp.AppendCommand(nil, "PSYNC", st.Replid, strconv.FormatInt(st.End+1, 10))
	}
	conn.SetWriteDeadline(time.Now().Add(u.timeout))
	if _, err := conn.Write(psync); err != nil {
		return fmt.Errorf("send PSYNC: %w", err)
	}
	line, err := u.readLine()
	if err != nil {
		return fmt.Errorf("read PSYNC reply: %w", err)
	}
	fields := append(strings.Fields(line), "")
	switch {
	case fields[0] == "+FULLRESYNC":
		replid, off, ok := parseFullResync(line)
		if !ok {
			return fmt.Errorf("upstream sent a bad FULLRESYNC line %q", line)
		}
		r.link.set("sync")
		if err := r.receiveRDB(u, replid, off); err != nil {
			return err
		}
		r.stats.upstreamFull.Add(1)
	case fields[0] == "+CONTINUE" && !st.HasData():
		return fmt.Errorf("upstream answered %q to PSYNC ? -1", line)
	case fields[0] == "+CONTINUE":
		if len(fields[1]) == 40 && fields[1] != st.Replid {
			if err := r.store.SwitchReplid(fields[1]); err != nil {
				return err
			}
			r.log.Info("upstream continued with a new replication id", "old_replid", st.Replid, "new_replid", fields[1], "offset", st.End)
			r.replicas.closeAll("upstream replication id changed")
		}
		r.stats.upstreamPartial.Add(1)
		r.log.Info("partial resync with upstream", "replid", r.store.State().Replid, "offset", st.End)
	case strings.HasPrefix(line, "-NOMASTERLINK"), strings.HasPrefix(line, "-LOADING"):
		return &retryLater{reply: line}
	default:
		return fmt.Errorf("upstream refused PSYNC: %q", line)
	}
	r.link.set("connected")
	return r.stream(ctx, u)
}

// parseFullResync parses "+FULLRESYNC <40-char replid> <offset>".
func parseFullResync(line string) (replid string, off int64, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "+FULLRESYNC" || len(f[1]) != 40 {
		return "", 0, false
	}
	off, err := strconv.ParseInt(f[2], 10, 64)
	return f[1], off, err == nil && off >= 0
}

// handshake sends PING, then AUTH and REPLCONF pipelined, and checks the
// replies as a Redis replica would.
func (r *Relay) handshake(u *upstreamConn, up Upstream, rdbOnly bool) error {
	u.conn.SetWriteDeadline(time.Now().Add(u.timeout))
	if _, err := u.conn.Write(resp.AppendCommand(nil, "PING")); err != nil {
		return fmt.Errorf("send PING: %w", err)
	}
	line, err := u.readLine()
	if err != nil {
		return fmt.Errorf("read PING reply: %w", err)
	}
	if line[0] != '+' && !strings.HasPrefix(line, "-NOAUTH") && !strings.HasPrefix(line, "-NOPERM") &&
		!strings.HasPrefix(line, "-ERR operation not permitted") {
		return fmt.Errorf("upstream answered PING with %q", line)
	}
	var b []byte
	auth := up.Password != ""
	if auth {
		if up.User != "" {
			b = resp.AppendCommand(b, "AUTH", up.User, up.Password)
		} else {
			b = resp.AppendCommand(b, "AUTH", up.Password)
		}
	}
	_, port, _ := net.SplitHostPort(r.ln.Addr().String())
	b = resp.AppendCommand(b, "REPLCONF", "listening-port", port)
	b = resp.AppendCommand(b, "REPLCONF", "capa", "eof", "capa", "psync2")
	replies := 2
	if rdbOnly {
		// An RDB and no stream: for a fresher snapshot of the same history.
		b = resp.AppendCommand(b, "REPLCONF", "rdb-only", "1")
		replies++
	}
	if _, err := u.conn.Write(b); err != nil {
		return fmt.Errorf("send handshake: %w", err)
	}
	if auth {
		line, err := u.readLine()
		if err != nil {
			return fmt.Errorf("read AUTH reply: %w", err)
		}
		if line[0] == '-' {
			return fmt.Errorf("upstream refused AUTH: %s", line[1:])
		}
	}
	for i := range replies {
		line, err := u.readLine()
		if err != nil {
			return fmt.Errorf("read REPLCONF reply: %w", err)
		}
		if line[0] == '-' && i == 2 {
			return fmt.Errorf("upstream refused REPLCONF rdb-only: %s", line)
		}
		if line[0] == '-' {
			r.log.Warn("upstream refused REPLCONF", "reply", line)
		}
	}
	return nil
}

// receiveRDB reads the RDB that follows +FULLRESYNC into a new snapshot and
// installs it. While it arrives it is published for the relay's own
// replicas and child relays to follow (cut-through: store.Incoming). With
// the EOF framing it sends the first ACK at once, since the master streams
// nothing before it.
func (r *Relay) receiveRDB(u *upstreamConn, replid string, offset int64) error {
	fr, err := r.readRDBHeader(u, replid, offset)
	if err != nil {
		return err
	}
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		return err
	}
	if _, err := r.store.PublishIncoming(w, store.IncomingHeader{Replid: replid, Offset: offset, Size: fr.size}); err != nil {
		w.Abort()
		return err
	}
	r.link.mu.Lock()
	r.link.syncBytes, r.link.syncTotal, r.link.syncStarted = 0, fr.size, time.Now()
	r.link.mu.Unlock()
	began := time.Now()
	if err := r.copyRDB(u, w, fr, true); err != nil {
		w.Abort()
		return err
	}
	// Replicas of the old history see store.ErrReset and go; closing them
	// here too would also close the ones already back for the new one.
	snap, err := r.resetTo(w, replid, offset)
	if err != nil {
		return err
	}
	r.log.Info("RDB received and stored", "bytes", snap.Size, "rdb_version", snap.RDBVersion,
		"seconds", time.Since(began).Seconds())
	if fr.eofMark != nil {
		u.conn.SetWriteDeadline(time.Now().Add(u.timeout))
		if _, err := u.conn.Write(ackCommand(r.upstreamAck(r.store.State(), true))); err != nil {
			return fmt.Errorf("send first ACK: %w", err)
		}
	}
	return nil
}

// rdbFraming is how an upstream frames the RDB it sends: the EOF mark
// that ends it, or (eofMark nil) its size.
type rdbFraming struct {
	eofMark []byte
	size    int64 // -1 with the EOF framing
}

// readRDB reads an RDB in either framing into w. track reports progress in
// INFO (the main link's transfer). It returns whether the EOF framing was
// used.
func (r *Relay) readRDB(u *upstreamConn, w io.Writer, replid string, offset int64, track bool) (eof bool, err error) {
	fr, err := r.readRDBHeader(u, replid, offset)
	if err != nil {
		return false, err
	}
	return fr.eofMark != nil, r.copyRDB(u, w, fr, track)
}

// readRDBHeader reads the line that begins an RDB: $EOF:<mark> or $<size>.
func (r *Relay) readRDBHeader(u *upstreamConn, replid string, offset int64) (rdbFraming, error) {
	line, err := u.readLine()
	if err != nil {
		return rdbFraming{}, fmt.Errorf("read RDB header: %w", err)
	}
	switch {
	case strings.HasPrefix(line, "$EOF:") && len(line) == 5+40:
		r.log.Info("receiving RDB from upstream (EOF framing)", "replid", replid, "offset", offset)
		return rdbFraming{eofMark: []byte(line[5:]), size: -1}, nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.ParseInt(line[1:], 10, 64)
		if err != nil || n < 0 {
			return rdbFraming{}, fmt.Errorf("upstream sent a bad RDB header %q", line)
		}
		r.log.Info("receiving RDB from upstream", "replid", replid, "offset", offset, "bytes", n)
		return rdbFraming{size: n}, nil
	}
	return rdbFraming{}, fmt.Errorf("upstream sent %q where an RDB header belongs", line)
}

// copyRDB copies the RDB framed as fr into w.
func (r *Relay) copyRDB(u *upstreamConn, w io.Writer, fr rdbFraming, track bool) error {
	prog := &progressWriter{w: w, r: r, track: track, total: fr.size, next: time.Now().Add(progressEvery)}
	if track {
		r.link.mu.Lock()
		r.link.syncTotal = fr.size
		r.link.mu.Unlock()
	}
	if fr.eofMark != nil {
		return copyUntilMark(u, prog, fr.eofMark)
	}
	return copyN(u, prog, fr.size)
}

// progressWriter counts RDB bytes for INFO and logs the progress of long
// transfers.
type progressWriter struct {
	w     io.Writer
	r     *Relay
	track bool
	n     int64
	total int64
	next  time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.track {
		p.r.link.mu.Lock()
		p.r.link.syncBytes = p.n
		p.r.link.mu.Unlock()
		p.r.link.touch(time.Now())
	}
	if now := time.Now(); now.After(p.next) {
		p.next = now.Add(progressEvery)
		p.r.log.Info("RDB transfer in progress", "received_bytes", p.n, "total_bytes", p.total)
	}
	return n, err
}

// copyN copies exactly n RDB bytes, refreshing the read deadline as bytes
// arrive.
func copyN(u *upstreamConn, w io.Writer, n int64) error {
	buf := make([]byte, 256<<10)
	for n > 0 {
		u.deadline()
		m, err := u.br.Read(buf[:min(int64(len(buf)), n)])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return fmt.Errorf("received rdb rejected: %w", werr)
			}
			n -= int64(m)
		}
		if err != nil && n > 0 {
			return fmt.Errorf("rdb transfer cut with %d bytes to go: %w", n, err)
		}
	}
	return nil
}

// copyUntilMark copies RDB bytes until the 40-byte EOF mark ends a read,
// as Redis does: the master sends nothing after the mark until the first
// ACK, so the mark always ends the data received.
func copyUntilMark(u *upstreamConn, w io.Writer, mark []byte) error {
	const m = 40
	buf := make([]byte, m+256<<10)
	held := 0 // bytes at buf[m-held:m] not yet written
	for {
		u.deadline()
		n, err := u.br.Read(buf[m:])
		if n > 0 {
			data := buf[m-held : m+n]
			if len(data) >= m && bytes.Equal(data[len(data)-m:], mark) {
				if _, werr := w.Write(data[:len(data)-m]); werr != nil {
					return fmt.Errorf("received rdb rejected: %w", werr)
				}
				return nil
			}
			keep := min(len(data), m)
			if _, werr := w.Write(data[:len(data)-keep]); werr != nil {
				return fmt.Errorf("received rdb rejected: %w", werr)
			}
			copy(buf[m-keep:m], data[len(data)-keep:])
			held = keep
		}
		if err != nil {
			return fmt.Errorf("rdb transfer cut before its EOF mark: %w", err)
		}
	}
}

func ackCommand(off int64) []byte {
	return resp.AppendCommand(nil, "REPLCONF", "ACK", strconv.FormatInt(off, 10))
}

// stream appends the upstream's command stream to the store and ACKs what
// is durably stored (see ackLoop).
func (r *Relay) stream(ctx context.Context, u *upstreamConn) error {
	ackNow := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Either half ending ends the other at once, so a hung master cannot
	// hold the session (and the reconnection) open: a read that goes on
	// while no ACK can be written (the master still sends but stopped
	// reading), or an ACK write blocked on a master whose reads have
	// already timed out.
	stop := context.AfterFunc(ctx, func() { u.conn.Close() })
	defer stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		cancel(r.ackLoop(ctx, u, ackNow))
	}()
	end := r.store.End() // this goroutine is the only appender
	// Whole commands outside MULTI…EXEC only are stored; the tail is
	// held for this session (see ingest).
	in := newIngest(r.store.Scanner())
	co := newCoalescer(u.conn, r.cfg.UpstreamCoalesce)
	for {
		u.conn.SetReadDeadline(co.deadline(time.Now(), u.timeout))
		n, err := u.br.Read(in.space())
		if n > 0 {
			now := time.Now()
			co.arrived()
			r.link.touch(now)
			ready, after, getAck, serr := in.add(n)
			if len(ready) > 0 {
				end += int64(len(ready))
				if err := r.storeReady(ready, after, serr, end, now.UnixNano(), "upstream"); err != nil {
					return err
				}
			}
			if getAck {
				select {
				case ackNow <- struct{}{}:
				default:
				}
			}
		}
		if err != nil {
			if co.waited(err) {
				continue
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("upstream stream: %w", err)
		}
	}
}

// ackLoop sends REPLCONF ACK with the offset upstreamAck gives: the
// durable offset (or, with AckRemote, what another site durably holds),
// never merely what was written, because the master's WAIT and
// min-replicas-to-write read these acks as "replicated". It acks every
// second (the master's liveness check of its replicas), at once after a
// REPLCONF GETACK, and whenever the acked offset moves: after each flush of
// the store, or a child's ack under AckRemote, so a WAIT returns as soon as
// the bytes are durable.
//
// It returns nil when ctx ends, or the error of an ACK write, which may
// block for ReplTimeout on a master that stopped reading.
func (r *Relay) ackLoop(ctx context.Context, u *upstreamConn, ackNow <-chan struct{}) error {
	t := time.NewTicker(ackInterval)
	defer t.Stop()
	last, force := int64(-1), true
	for {
		_, moved := r.store.Durable()
		off := r.upstreamAck(r.store.State(), true)
		if force || off != last {
			u.conn.SetWriteDeadline(time.Now().Add(u.timeout))
			if _, err := u.conn.Write(ackCommand(off)); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send ACK upstream: %w", err)
			}
			last, force = off, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			force = true
		case <-ackNow:
			force = true
		case <-moved:
		case <-r.childAcked:
		}
	}
}
