package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arbor-fabric/arbor/internal/resp"
	"github.com/arbor-fabric/arbor/relay/store"
)

// replica is one Redis replica attached to the relay (after PSYNC or SYNC).
type replica struct {
	id            int64
	conn          net.Conn
	addr          string // ip of the replica as seen or announced
	listeningPort int
	capaEOF       bool
	capaPsync2    bool
	sync          bool // attached with SYNC: no ACKs expected

	state     atomic.Value // string: wait_bgsave, send_bulk, online
	ackOffset atomic.Int64
	ackTime   atomic.Int64 // unix nanos of the last ACK
	sent      atomic.Int64 // stream offset sent up to
	closed    atomic.Bool
	reason    atomic.Value  // string: why the relay closed it
	traces    replicaTraces // sampled offsets waiting for its acks (tracing.go)
	// markSent: its RDB ended with an EOF mark, after which nothing may be
	// sent before its first ACK (firstAck, closed by readAcks).
	markSent bool
	firstAck chan struct{}
}

// name is how the replica is shown: its address and listening port.
func (rp *replica) name() string { return fmt.Sprintf("%s:%d", rp.addr, rp.listeningPort) }

func (rp *replica) close(reason string) {
	if rp.closed.CompareAndSwap(false, true) {
		rp.reason.Store(reason)
		rp.conn.Close()
	}
}

// client is the state of one Redis connection before it becomes a replica.
type client struct {
	conn          net.Conn
	authed        bool
	listeningPort int
	ipAddress     string
	capaEOF       bool
	capaPsync2    bool
	out           []byte
}

// Redis' limits for a client that has not authenticated (networking.c): a
// larger multibulk count or bulk length is a protocol error before any of
// the command is buffered, so a client that does not know the password
// cannot make the relay hold more than a few KiB for it.
const (
	unauthMaxArgs    = 10
	unauthMaxBulkLen = 16 << 10
)

// serveRedis accepts Redis connections until ctx ends and waits for their
// handlers. Beyond MaxClients connections, a new one is refused as Redis
// refuses it.
func (r *Relay) serveRedis(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.log.Error("accept redis connection", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		r.stats.totalConnections.Add(1)
		mu.Lock()
		full := len(conns) >= r.cfg.MaxClients
		if !full {
			conns[conn] = struct{}{}
		}
		mu.Unlock()
		if full {
			r.stats.rejectedConnections.Add(1)
			refuseConn(conn)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stats.connectedClients.Add(1)
			defer r.stats.connectedClients.Add(-1)
			r.handleConn(ctx, conn)
			conn.Close()
			mu.Lock()
			delete(conns, conn)
			mu.Unlock()
		}()
	}
}

// refuseConn answers a connection over MaxClients with Redis' error and
// closes it. The write goes to an empty socket buffer, so it does not
// block; the deadline only keeps the accept loop safe if it ever did.
func refuseConn(conn net.Conn) {
	conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	conn.Write(resp.AppendError(nil, "ERR max number of clients reached"))
	conn.Close()
}

// handleConn serves one Redis connection: a few commands, and PSYNC/SYNC,
// after which the connection is a replication link. Until then each
// command must arrive within HandshakeTimeout, and a client that has not
// authenticated is held to Redis' unauthenticated limits.
func (r *Relay) handleConn(ctx context.Context, conn net.Conn) {
	br := bufio.NewReaderSize(conn, 16<<10)
	rd := resp.NewReader(br)
	c := &client{conn: conn, authed: r.cfg.RedisPassword == ""}
	for {
		if !c.authed {
			rd.SetCommandLimits(unauthMaxArgs, unauthMaxBulkLen)
		} else {
			rd.SetCommandLimits(resp.MaxArgs, resp.MaxBulkLen)
		}
		conn.SetReadDeadline(time.Now().Add(r.cfg.HandshakeTimeout))
		args, err := rd.ReadCommand()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, resp.ErrProtocol):
				r.log.Warn("redis client sent invalid protocol; closing", "remote", conn.RemoteAddr().String(), "err", err)
				conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
				conn.Write(resp.AppendError(nil, protocolErrorReply(err, c.authed)))
			case errors.As(err, &ne) && ne.Timeout():
				r.log.Info("redis client sent no complete command in time; closing", "remote", conn.RemoteAddr().String(),
					"handshake_timeout", r.cfg.HandshakeTimeout)
			}
			return
		}
		if len(args) == 0 {
			continue // a bare newline
		}
		r.stats.totalCommands.Add(1)
		name := strings.ToLower(string(args[0]))
		c.out = c.out[:0]
		switch {
		case !c.authed && name != "auth" && name != "quit":
			c.out = resp.AppendError(c.out, "NOAUTH Authentication required.")
		case name == "psync" || name == "sync":
			// From here ReplTimeout governs the link (a SYNC link sends
			// nothing at all), not the handshake deadline.
			conn.SetReadDeadline(time.Time{})
			r.startReplica(ctx, c, br, args)
			return
		default:
			if quit := r.command(c, name, args); quit {
				conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
				conn.Write(c.out)
				return
			}
		}
		if len(c.out) > 0 {
			conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
			if _, err := conn.Write(c.out); err != nil {
				return
			}
		}
	}
}

// protocolErrorReply is the error line Redis sends for invalid protocol
// before it closes the connection (networking.c).
func protocolErrorReply(err error, authed bool) string {
	switch {
	case errors.Is(err, resp.ErrArgsLimit) && !authed:
		return "ERR Protocol error: unauthenticated multibulk length"
	case errors.Is(err, resp.ErrArgsLimit):
		return "ERR Protocol error: invalid multibulk length"
	case errors.Is(err, resp.ErrBulkLimit) && !authed:
		return "ERR Protocol error: unauthenticated bulk length"
	case errors.Is(err, resp.ErrBulkLimit):
		return "ERR Protocol error: invalid bulk length"
	case errors.Is(err, resp.ErrLineLimit):
		return "ERR Protocol error: too big inline request"
	}
	return "ERR Protocol error: " + strings.TrimPrefix(err.Error(), resp.ErrProtocol.Error()+": ")
}

// command runs one ordinary command, appending its reply to c.out. It
// returns true when the connection should close after the reply.
func (r *Relay) command(c *client, name string, args [][]byte) (quit bool) {
	switch name {
	case "ping":
		switch len(args) {
		case 1:
			c.out = resp.AppendSimple(c.out, "PONG")
		case 2:
			c.out = resp.AppendBulk(c.out, args[1])
		default:
			c.out = wrongArgs(c.out, name)
		}
	case "echo":
		if len(args) != 2 {
			c.out = wrongArgs(c.out, name)
		} else {
			c.out = resp.AppendBulk(c.out, args[1])
		}
	case "auth":
		r.auth(c, args)
	case "quit":
		c.out = resp.AppendSimple(c.out, "OK")
		return true
	case "replconf":
		r.replconf(c, args)
	case "info":
		section := "default"
		if len(args) > 1 {
			section = strings.ToLower(string(args[1]))
		}
		c.out = resp.AppendBulkString(c.out, r.info(section))
	case "role":
		c.out = r.appendRole(c.out)
	case "select":
		if len(args) == 2 && string(args[1]) == "0" {
			c.out = resp.AppendSimple(c.out, "OK")
		} else {
			c.out = resp.AppendError(c.out, "ERR the relay serves replication only; it holds no keyspace")
		}
	default:
		c.out = resp.AppendError(c.out, fmt.Sprintf("ERR unknown command '%.64s', this is an Arbor relay: it serves PING, AUTH, INFO, ROLE, REPLCONF, PSYNC and SYNC", args[0]))
	}
	return false
}

func wrongArgs(b []byte, name string) []byte {
	return resp.AppendError(b, fmt.Sprintf("ERR wrong number of arguments for '%s' command", name))
}

func (r *Relay) auth(c *client, args [][]byte) {
	var user, pass string
	switch len(args) {
	case 2:
		pass = string(args[1])
	case 3:
		user, pass = string(args[1]), string(args[2])
	default:
		c.out = wrongArgs(c.out, "auth")
		return
	}
	if r.cfg.RedisPassword == "" {
		c.out = resp.AppendError(c.out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	if (user == "" || user == "default") && pass == r.cfg.RedisPassword {
		c.authed = true
		c.out = resp.AppendSimple(c.out, "OK")
		return
	}
	c.out = resp.AppendError(c.out, "WRONGPASS invalid username-password pair or user is disabled.")
}

// replconf handles REPLCONF before PSYNC. ACK and GETACK get no reply: a
// reply would reach a replica as inline protocol and break its link.
func (r *Relay) replconf(c *client, args [][]byte) {
	if len(args)%2 == 0 {
		c.out = resp.AppendError(c.out, "ERR syntax error")
		return
	}
	for i := 1; i+1 < len(args); i += 2 {
		key, val := strings.ToLower(string(args[i])), string(args[i+1])
		switch key {
		case "ack", "getack":
			return
		case "listening-port":
			p, err := strconv.Atoi(val)
			if err != nil || p < 0 || p > 65535 {
				c.out = resp.AppendError(c.out, "ERR value is not an integer or out of range")
				return
			}
			c.listeningPort = p
		case "ip-address":
			c.ipAddress = val
		case "capa":
			switch strings.ToLower(val) {
			case "eof":
				c.capaEOF = true
			case "psync2":
				c.capaPsync2 = true
			}
		}
	}
	c.out = resp.AppendSimple(c.out, "OK")
}

// startReplica answers PSYNC or SYNC and, when data can be served, turns the
// connection into a replication link until it ends.
func (r *Relay) startReplica(ctx context.Context, c *client, br *bufio.Reader, args [][]byte) {
	isSync := strings.EqualFold(string(args[0]), "sync")
	if !isSync && len(args) < 3 {
		c.conn.Write(wrongArgs(nil, "psync"))
		return
	}
	if !isSync && len(args) > 3 {
		// PSYNC id off FAILOVER: an old master in FAILOVER; refuse so it aborts.
		c.conn.Write(resp.AppendError(nil, "ERR PSYNC FAILOVER is not supported by an Arbor relay"))
		return
	}
	if !isSync && !r.waitServable(ctx, c) {
		c.conn.Write(resp.AppendError(nil, "NOMASTERLINK Can't SYNC while not connected with my master"))
		r.log.Info("replica asked for a sync before the relay holds data", "remote", c.conn.RemoteAddr().String())
		return
	}
	if isSync && !r.store.State().HasData() {
		c.conn.Write(resp.AppendError(nil, "NOMASTERLINK Can't SYNC while not connected with my master"))
		r.log.Info("replica asked for a sync before the relay holds data", "remote", c.conn.RemoteAddr().String())
		return
	}
	host, _, _ := net.SplitHostPort(c.conn.RemoteAddr().String())
	if c.ipAddress != "" {
		host = c.ipAddress
	}
	rp := &replica{conn: c.conn, addr: host, listeningPort: c.listeningPort, capaEOF: c.capaEOF, capaPsync2: c.capaPsync2, sync: isSync,
		firstAck: make(chan struct{})}
	rp.state.Store("wait_bgsave")
	rp.ackTime.Store(time.Now().UnixNano())
	r.replicas.add(rp)
	defer r.replicas.remove(rp)
	log := r.log.With("replica", fmt.Sprintf("%s:%d", rp.addr, rp.listeningPort))

	var stream *store.Reader
	if !isSync {
		replid, off := string(args[1]), int64(-1)
		if v, err := strconv.ParseInt(string(args[2]), 10, 64); err == nil {
			off = v
		}
		var err error
		stream, err = r.tryPartial(ctx, rp, replid, off)
		switch {
		case err == nil:
			r.stats.partialOK.Add(1)
			log.Info("partial resync accepted", "replid", replid, "offset", off, "backlog_bytes", stream.Buffered())
		case continueRefused(err):
			if replid != "?" {
				r.stats.partialErr.Add(1)
				log.Info("partial resync refused; full sync", "replid", replid, "offset", off, "reason", err)
			}
		default:
			log.Info("replica link ended before it began", "err", err)
			return
		}
	}
	if stream == nil {
		var err error
		if stream, err = r.fullSync(ctx, rp, isSync, log); err != nil {
			log.Warn("full sync to replica failed", "err", err)
			return
		}
	}
	defer stream.Close()
	defer rp.traces.close()
	rp.state.Store("online")
	err := r.feedReplica(ctx, rp, br, stream)
	reason, _ := rp.reason.Load().(string)
	if reason == "" {
		reason = fmt.Sprint(err)
	}
	log.Info("replica link closed", "reason", reason, "sent_offset", rp.sent.Load(), "acked_offset", rp.ackOffset.Load())
}

// tryPartial decides a PSYNC <replid> <off> by the store's continuation
// rule (store.Continue: Redis 7's rule; off is the replica's processed
// offset + 1, so it holds off-1 bytes). An offset ahead of the store on its
// current history is waited for (continueAt). It replies +CONTINUE with the
// replication ID of the state the reader serves from and returns the
// reader, or returns an error for which continueRefused is true when the
// replica needs a full sync.
func (r *Relay) tryPartial(ctx context.Context, rp *replica, replid string, off int64) (*store.Reader, error) {
	keepalive := func() error {
		// The replica skips newlines while it waits for the PSYNC reply.
		rp.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
		_, err := rp.conn.Write([]byte{'\n'})
		return err
	}
	stream, st, err := r.continueAt(ctx, replid, off-1, keepalive)
	if err != nil {
		return nil, err
	}
	line := "+CONTINUE\r\n"
	if rp.capaPsync2 {
		line = "+CONTINUE " + st.Replid + "\r\n"
	}
	rp.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
	if _, err := io.WriteString(rp.conn, line); err != nil {
		stream.Close()
		return nil, err
	}
	return stream, nil
}

// waitServable waits, up to FutureOffsetWait, until the relay holds data
// or receives an RDB a replica can follow (store.Incoming), sending the
// newline keepalives a replica skips while it waits for its PSYNC reply:
// a relay that has just started gets its data in a moment, and a replica
// told NOMASTERLINK would only come back a second later. It reports
// whether the relay can serve the replica.
func (r *Relay) waitServable(ctx context.Context, c *client) bool {
	servable := func(st store.State) bool {
		return st.HasData() || (c.capaEOF && r.store.Incoming() != nil)
	}
	if servable(r.store.State()) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.FutureOffsetWait)
	defer cancel()
	for {
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		st, _ := r.store.WaitFor(wctx, servable)
		wcancel()
		if servable(st) || servable(r.store.State()) {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
		if _, err := c.conn.Write([]byte{'\n'}); err != nil {
			return false
		}
	}
}

// fullSync serves a full sync: it follows the RDB the relay is receiving
// when there is one the replica can take (fullSyncIncoming), else it sends
// +FULLRESYNC (not for SYNC) and the stored RDB in the $len framing. It
// returns a reader of the stream from the snapshot's offset.
func (r *Relay) fullSync(ctx context.Context, rp *replica, isSync bool, log interface {
	Info(string, ...any)
}) (*store.Reader, error) {
	if in := r.store.Incoming(); in != nil && rp.capaEOF && !isSync {
		stream, err := r.fullSyncIncoming(ctx, rp, in, log)
		if !errors.Is(err, errIncomingOver) {
			return stream, err
		}
		// Installed (or given up) before it could be opened: serve the
		// store's snapshot.
	}
	fs, err := r.store.OpenFullSync()
	if err != nil {
		rp.conn.Write(resp.AppendError(nil, "NOMASTERLINK Can't SYNC while not connected with my master"))
		return nil, err
	}
	rp.state.Store("send_bulk")
	var hdr []byte
	if !isSync {
		hdr = fmt.Appendf(hdr, "+FULLRESYNC %s %d\r\n", fs.Replid, fs.Snapshot.Offset)
	}
	hdr = fmt.Appendf(hdr, "$%d\r\n", fs.Snapshot.Size)
	r.stats.fullSyncs.Add(1)
	log.Info("full sync", "replid", fs.Replid, "offset", fs.Snapshot.Offset, "rdb_bytes", fs.Snapshot.Size)
	began := time.Now()
	if err := r.sendRDB(rp.conn, hdr, fs); err != nil {
		fs.Close()
		return nil, err
	}
	fs.File.Close()
	log.Info("RDB sent", "rdb_bytes", fs.Snapshot.Size, "seconds", time.Since(began).Seconds())
	return fs.Stream, nil
}

// errIncomingOver means an incoming RDB was over before a replica could
// follow it.
var errIncomingOver = errors.New("incoming rdb over")

// countCutThroughSent counts n bytes of the followed RDB in sent
// downstream, as early bytes (stats.cutThroughEarly) while the RDB is not
// complete yet, and returns how many it counted as early: 0 or n.
func (r *Relay) countCutThroughSent(in *store.Incoming, n int) int64 {
	if in.Done() {
		return 0
	}
	r.stats.cutThroughEarly.Add(int64(n))
	return int64(n)
}

// countCutThroughCut reports whether err, which ended reading the followed
// RDB, says the relay gave that RDB up before installing it (its link was
// cut, it failed a check, or a newer full sync began), and if so counts a
// cut-through full sync cut (stats.cutThroughCut).
func (r *Relay) countCutThroughCut(err error) bool {
	if !errors.Is(err, store.ErrIncomingAborted) {
		return false
	}
	r.stats.cutThroughCut.Add(1)
	return true
}

// fullSyncIncoming serves a full sync by cut-through: it sends
// +FULLRESYNC with the incoming RDB's replid and offset and the RDB in the
// $EOF framing, from the first byte of the partial file on, as the relay
// receives it. The 40-byte EOF mark, without which the replica neither
// loads the RDB (diskless load reads the mark before it keeps what it
// loaded) nor even renames its temporary file, goes only once the relay has
// checked and installed the RDB. An RDB that fails the relay's check is
// never completed: the replica's link is cut, it discards what it got and
// asks again (its cached master went with the +FULLRESYNC, so with PSYNC ?
// -1, which is never continued).
func (r *Relay) fullSyncIncoming(ctx context.Context, rp *replica, in *store.Incoming, log interface {
	Info(string, ...any)
}) (*store.Reader, error) {
	ir, err := in.Open()
	if err != nil {
		return nil, errIncomingOver
	}
	defer ir.Close()
	rp.state.Store("send_bulk")
	var mark [20]byte
	rand.Read(mark[:])
	eof := hex.EncodeToString(mark[:])
	hdr := fmt.Appendf(nil, "+FULLRESYNC %s %d\r\n$EOF:%s\r\n", in.Replid, in.Offset, eof)
	r.stats.fullSyncs.Add(1)
	r.stats.cutThroughSyncs.Add(1)
	log.Info("full sync, cut-through: sending the RDB as the relay receives it", "replid", in.Replid, "offset", in.Offset,
		"received_bytes", in.Received())
	began := time.Now()
	rp.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
	if _, err := rp.conn.Write(hdr); err != nil {
		return nil, err
	}
	buf := make([]byte, rdbWritePiece)
	var early int64
	for {
		n, err := ir.Read(ctx, buf)
		if n > 0 {
			rp.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
			if _, werr := rp.conn.Write(buf[:n]); werr != nil {
				return nil, fmt.Errorf("send rdb (%d bytes sent): %w", ir.Pos()-int64(n), werr)
			}
			early += r.countCutThroughSent(in, n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.countCutThroughCut(err)
			return nil, fmt.Errorf("cut-through rdb not completed after %d bytes: %w", ir.Pos(), err)
		}
	}
	snap, gen := ir.Installed()
	stream, err := r.store.NewReaderAs(gen, snap.Offset, in.Replid)
	if err != nil {
		return nil, err
	}
	rp.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
	if _, err := io.WriteString(rp.conn, eof); err != nil {
		stream.Close()
		return nil, err
	}
	rp.markSent = true
	log.Info("RDB sent (cut-through); its end mark went after the relay installed it", "rdb_bytes", snap.Size,
		"sent_before_installed", early, "seconds", time.Since(began).Seconds())
	return stream, nil
}

// sendRDB writes hdr and the snapshot file, refreshing the write deadline
// as bytes go (a replica that stops reading for ReplTimeout is dropped).
func (r *Relay) sendRDB(conn net.Conn, hdr []byte, fs *store.FullSync) error {
	conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
	if _, err := conn.Write(hdr); err != nil {
		return err
	}
	// The deadline is renewed every rdbWritePiece bytes: a replica is
	// dropped when it takes nothing for ReplTimeout, not when it is slow
	// (one that loads as it reads, with repl-diskless-load, reads at the
	// pace it loads).
	var sent int64
	for sent < fs.Snapshot.Size {
		conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
		n, err := io.CopyN(conn, fs.File, min(rdbWritePiece, fs.Snapshot.Size-sent))
		sent += n
		if err != nil {
			return fmt.Errorf("send rdb (%d of %d bytes): %w", sent, fs.Snapshot.Size, err)
		}
	}
	return nil
}

// rdbWritePiece is how many RDB bytes a replica must take within
// ReplTimeout.
const rdbWritePiece = 256 << 10

// feedReplica streams from the store to an online replica and reads its
// ACKs, until either side ends.
//
// Like Redis, it does not drop a replica that is alive but slow to read: a
// replica loading a large RDB reads nothing from its master link for as
// long as the load takes, while it shows it is alive with a newline every
// second (and REPLCONF ACKs after). So a write to a PSYNC replica has no
// deadline; liveness is ACK silence (readAcks drops the replica after
// ReplTimeout of it, which closes the connection and ends a blocked write).
// Memory stays bounded: the bytes a replica has not taken wait in the store,
// and one that falls out of the backlog is dropped (ErrTrimmed), as Redis
// drops a replica past its client-output-buffer-limit. A SYNC replica
// sends no ACKs, so its writes keep the ReplTimeout deadline.
func (r *Relay) feedReplica(ctx context.Context, rp *replica, br *bufio.Reader, stream *store.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		r.readAcks(rp, br)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		rp.close("link ended")
	}()
	if rp.markSent {
		// After an EOF mark, nothing before the replica's first ACK: a
		// replica loading from disk would not find the mark at the end of
		// what it read, and one loading diskless would drop the bytes it
		// buffered past the RDB.
		select {
		case <-rp.firstAck:
		case <-ctx.Done():
			return fmt.Errorf("no first ACK after the rdb: %w", ctx.Err())
		}
	}
	rp.sent.Store(stream.Pos())
	if !rp.sync {
		rp.conn.SetWriteDeadline(time.Time{}) // see above; the RDB's deadline must not linger
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := stream.Read(ctx, buf)
		if err != nil {
			switch {
			case errors.Is(err, store.ErrReset):
				rp.close("history replaced by a full sync from upstream")
			case errors.Is(err, store.ErrTrimmed):
				rp.close("fell behind the backlog")
			case errors.Is(err, store.ErrCorrupt):
				rp.close("backlog record failed its checksum")
			case errors.As(err, new(*store.ReplidSwitchError)):
				// Redis children of a chained replica reconnect on an ID
				// change and come back through the replid2 rule.
				rp.close("upstream replication id changed")
			}
			return err
		}
		if rp.sync {
			rp.conn.SetWriteDeadline(time.Now().Add(r.cfg.ReplTimeout))
		}
		if _, err := rp.conn.Write(buf[:n]); err != nil {
			return fmt.Errorf("write to replica: %w", err)
		}
		end := rp.sent.Add(int64(n))
		r.traceReplicaWrite(rp, end-int64(n), end)
		r.stats.replicaOutputByte.Add(int64(n))
	}
}

// readAcks reads what a replica sends on its link: REPLCONF ACK <off>
// (recorded, never answered), other REPLCONFs, PING and newline
// keepalives. Anything else, or invalid protocol, closes the link.
func (r *Relay) readAcks(rp *replica, br *bufio.Reader) {
	rd := resp.NewReader(br)
	acked := false // rp.firstAck is closed
	for {
		if !rp.sync {
			rp.conn.SetReadDeadline(time.Now().Add(r.cfg.ReplTimeout))
		}
		args, err := rd.ReadCommand()
		if err != nil {
			if errors.Is(err, resp.ErrProtocol) {
				rp.close("replica sent invalid protocol")
				r.log.Warn("replica sent invalid protocol; closing its link", "replica", rp.addr, "err", err)
			} else if errors.Is(err, io.EOF) {
				rp.close("replica closed the link")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				rp.close(fmt.Sprintf("no ACK from replica for %v", r.cfg.ReplTimeout))
			}
			return
		}
		switch {
		case len(args) == 0, bytes.EqualFold(args[0], []byte("ping")):
		case len(args) >= 3 && bytes.EqualFold(args[0], []byte("replconf")) && bytes.EqualFold(args[1], []byte("ack")):
			if off, err := strconv.ParseInt(string(args[2]), 10, 64); err == nil && off >= 0 {
				if !acked {
					acked = true
					close(rp.firstAck)
				}
				rp.ackOffset.Store(off)
				rp.ackTime.Store(time.Now().UnixNano())
				rp.traces.acked(off)
			}
		case bytes.EqualFold(args[0], []byte("replconf")):
		default:
			// A replica sends only REPLCONF ACK and newlines; anything
			// else means the peer is not what it claimed to be.
			rp.close("replica sent an unexpected command")
			r.log.Warn("replica sent an unexpected command on its replication link; closing it", "replica", rp.addr,
				"command", fmt.Sprintf("%.32q", args[0]))
			return
		}
	}
}

// replicaSet is the registry of the Redis replicas attached to the relay.
type replicaSet struct {
	mu     sync.Mutex
	m      map[int64]*replica // guarded by mu
	nextID int64              // guarded by mu
}

// add registers rp under a new id.
func (s *replicaSet) add(rp *replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[int64]*replica)
	}
	s.nextID++
	rp.id = s.nextID
	s.m[rp.id] = rp
}

func (s *replicaSet) remove(rp *replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, rp.id)
}

// closeAll drops every replica link (they reconnect and PSYNC).
func (s *replicaSet) closeAll(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rp := range s.m {
		rp.close(reason)
	}
}

// list returns the attached replicas ordered by id.
func (s *replicaSet) list() []*replica {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*replica, 0, len(s.m))
	for _, rp := range s.m {
		out = append(out, rp)
	}
	sortReplicas(out)
	return out
}
