package relay_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/rdb"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/resp"
)

const fakeReplid = "fa4efa4efa4efa4efa4efa4efa4efa4efa4efa4e"

// fakeMaster is a scripted upstream: each accepted connection gets the
// handshake replies, then the next session function with the PSYNC args.
type fakeMaster struct {
	t        *testing.T
	ln       net.Listener
	sessions []func(c net.Conn, psync []string) error
	wg       sync.WaitGroup
	mu       sync.Mutex
	errs     []error
	stop     chan struct{}
}

// fullResync answers a PSYNC with a full resync of history replid at
// offset 0: a minimal RDB, then stream.
func fullResync(c net.Conn, replid, stream string) {
	good := rdb.Minimal(10)
	fmt.Fprintf(c, "+FULLRESYNC %s 0\r\n$%d\r\n%s%s", replid, len(good), good, stream)
}

func startFakeMaster(t *testing.T, sessions ...func(c net.Conn, psync []string) error) *fakeMaster {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMaster{t: t, ln: ln, sessions: sessions, stop: make(chan struct{})}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		close(f.stop)
		ln.Close()
		f.wg.Wait()
		for _, err := range f.errs {
			t.Errorf("fake master: %v", err)
		}
	})
	return f
}

func (f *fakeMaster) serve() {
	defer f.wg.Done()
	for i := 0; ; i++ {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			go func() { <-f.stop; c.Close() }()
			if err := f.session(i, c); err != nil {
				f.mu.Lock()
				f.errs = append(f.errs, fmt.Errorf("session %d: %w", i, err))
				f.mu.Unlock()
			}
		}()
	}
}

func (f *fakeMaster) session(i int, c net.Conn) error {
	rd := resp.NewReader(bufio.NewReader(c))
	for {
		args, err := rd.ReadCommand()
		if err != nil {
			return nil // the relay hung up
		}
		if len(args) == 0 {
			continue
		}
		switch strings.ToUpper(string(args[0])) {
		case "PING":
			c.Write([]byte("+PONG\r\n"))
		case "REPLCONF":
			if !strings.EqualFold(string(args[1]), "ack") {
				c.Write([]byte("+OK\r\n"))
			}
		case "PSYNC":
			ps := []string{string(args[1]), string(args[2])}
			if i >= len(f.sessions) {
				c.Write([]byte("-LOADING please wait\r\n"))
				return nil
			}
			if err := f.sessions[i](c, ps); err != nil {
				return err
			}
			// Keep reading ACKs until the relay hangs up.
			for {
				if _, err := rd.ReadCommand(); err != nil {
					return nil
				}
			}
		default:
			return fmt.Errorf("unexpected command %q", args[0])
		}
	}
}

// waitAck reads what the relay sends on its upstream link until a
// REPLCONF ACK of at least off (the relay acks every second).
func waitAck(c net.Conn, off int64) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	rd := resp.NewReader(bufio.NewReader(c))
	for {
		args, err := rd.ReadCommand()
		if err != nil {
			return fmt.Errorf("waiting for an ACK of %d: %w", off, err)
		}
		if len(args) == 3 && strings.EqualFold(string(args[1]), "ack") {
			if n, _ := strconv.ParseInt(string(args[2]), 10, 64); n >= off {
				return nil
			}
		}
	}
}

func setCmd(k, v string) string {
	return string(resp.AppendCommand(nil, "SET", k, v))
}

// TestBadUpstream: a truncated RDB, an RDB with a bad checksum and a stream
// with garbage are each refused with a clear logged error; the relay stores
// none of it, keeps what it had, reconnects and resumes exactly where its
// good bytes end; its replica never loads a bad byte.
func TestBadUpstream(t *testing.T) {
	good := rdb.Minimal(10)
	badCRC := append([]byte(nil), good...)
	badCRC[len(badCRC)-1] ^= 0xff
	first := "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n" + setCmd("a", "1")
	f := startFakeMaster(t,
		// 1: the RDB transfer is cut.
		func(c net.Conn, _ []string) error {
			fmt.Fprintf(c, "+FULLRESYNC %s 0\r\n$%d\r\n", fakeReplid, len(good)+100)
			c.Write(good)
			return errors.New("unreachable") // closing below ends the session
		},
		// 2: the RDB fails its checksum.
		func(c net.Conn, _ []string) error {
			fmt.Fprintf(c, "+FULLRESYNC %s 0\r\n$%d\r\n", fakeReplid, len(badCRC))
			c.Write(badCRC)
			return nil
		},
		// 3: a good RDB and stream, then garbage.
		func(c net.Conn, _ []string) error {
			fullResync(c, fakeReplid, first)
			// The relay acks what it stored: once it acks the good bytes,
			// the garbage arrives in a read of its own.
			if err := waitAck(c, int64(len(first))); err != nil {
				return err
			}
			c.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nb\r\nthis is not RESP\r\n"))
			return nil
		},
		// 4: the relay resumes where its good bytes end.
		func(c net.Conn, ps []string) error {
			if want := []string{fakeReplid, fmt.Sprint(len(first) + 1)}; ps[0] != want[0] || ps[1] != want[1] {
				return fmt.Errorf("PSYNC %v, want %v", ps, want)
			}
			fmt.Fprintf(c, "+CONTINUE %s\r\n", fakeReplid)
			c.Write([]byte(setCmd("b", "2")))
			return nil
		},
	)
	// Session 1 must close the link after its partial RDB.
	f.sessions[0] = func(c net.Conn, _ []string) error {
		fmt.Fprintf(c, "+FULLRESYNC %s 0\r\n$%d\r\n", fakeReplid, len(good)+100)
		c.Write(good)
		c.Close()
		return nil
	}

	r := startRelay(t, newRelayConfig(t, "redis://"+f.ln.Addr().String()))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	ctx := context.Background()
	redistest.WaitFor(t, 30*time.Second, func() error {
		v, err := rep.Client().Get(ctx, "b").Result()
		if err != nil || v != "2" {
			return fmt.Errorf("replica GET b = %q, %v", v, err)
		}
		return nil
	})
	if v, _ := rep.Client().Get(ctx, "a").Result(); v != "1" {
		t.Errorf("replica GET a = %q, want 1", v)
	}
	logs := r.logBuf.String()
	for _, want := range []string{"rdb transfer cut", "bad checksum", "not a replication stream"} {
		if !strings.Contains(logs, want) {
			t.Errorf("relay log lacks %q", want)
		}
	}
	expectEq(t, "relay arbor_upstream_rejected_streams", r.InfoInt(t, "stats", "arbor_upstream_rejected_streams"), 1)
	expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay arbor_upstream_partial_syncs", r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 1)
	// The replica loaded one RDB, the good one: a full sync it began on a
	// refused RDB (cut-through: it follows the RDB the relay receives) was
	// cut before the end mark, so every full sync but one was such a cut.
	expectEq(t, "replica syncs finished", countLog(t, rep, syncSuccess), 1)
	expectEq(t, "relay sync_full", r.InfoInt(t, "stats", "sync_full"), 1+r.InfoInt(t, "stats", "arbor_cut_through_cut"))
	if n, _ := rep.InfoInt(ctx, "replication", "master_repl_offset"); n != int64(len(first)+len(setCmd("b", "2"))) {
		t.Errorf("replica offset %d, want %d", n, len(first)+len(setCmd("b", "2")))
	}
}

// TestGarbageFromClients: a client that sends garbage before PSYNC gets a
// protocol error and is closed; a replica that sends garbage on its link is
// cut; a real replica beside them is unaffected.
func TestGarbageFromClients(t *testing.T) {
	master := redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
	r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	// Garbage before PSYNC.
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("*2\r\n$abc\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(reply, "-ERR Protocol error") {
		t.Errorf("reply to garbage: %q, want -ERR Protocol error", reply)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after a protocol error")
	}
	c.Close()

	// A "replica" that syncs, then sends garbage.
	c, err = net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(resp.AppendCommand(nil, "PSYNC", "?", "-1"))
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "+FULLRESYNC") {
		t.Fatalf("PSYNC reply %q", line)
	}
	redistest.WaitFor(t, 5*time.Second, func() error {
		if n := r.InfoInt(t, "replication", "connected_slaves"); n != 2 {
			return fmt.Errorf("connected_slaves %d, want 2", n)
		}
		return nil
	})
	c.Write([]byte("*1\r\n$-9zz\r\n"))
	redistest.WaitFor(t, 5*time.Second, func() error {
		if n := r.InfoInt(t, "replication", "connected_slaves"); n != 1 {
			return fmt.Errorf("connected_slaves %d, want 1", n)
		}
		return nil
	})
	if !strings.Contains(r.logBuf.String(), "replica sent invalid protocol") {
		t.Error("relay log lacks the replica's protocol error")
	}
	load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay sync_full", r.InfoInt(t, "stats", "sync_full"), 2)
}

// TestCorruptSegmentOnDisk: a byte flipped in a backlog segment while the
// relay is down is found at start, the backlog is cut there and the relay
// fetches the rest again from the master with a partial resync; the corrupt
// bytes never reach the replica.
func TestCorruptSegmentOnDisk(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 3000, Seed: 1})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	r.Stop()

	segs, err := filepath.Glob(filepath.Join(r.cfg.DataDir, "backlog-*", "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments: %v", err)
	}
	victim := segs[len(segs)-1]
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x5a
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	load(t, master, redistest.LoadOptions{SmallKeys: 200, Seed: 2})
	r.start()
	redistest.WaitInSync(t, syncTimeout, master, rep)
	if !strings.Contains(r.logBuf.String(), "corrupt tail; cutting it") {
		t.Error("relay log does not report the cut")
	}
	expectEq(t, "master sync_full", masterInt(t, master, "stats", "sync_full"), 1)
	expectEq(t, "relay arbor_upstream_partial_syncs", r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 1)
}

// TestHungMasterReconnects: a master that accepted the link and then stops
// reading and sending is noticed within repl-timeout and the relay
// reconnects (a partial resync at the offset it holds), well before the
// 60 s a default deadline would take. Over TCP a REPLCONF ACK a second
// never fills the socket buffers, so the ACK write does not block here and
// the read deadline alone ends the session (this passed before the
// blocked-ACK fix too); TestBlockedAckEndsSession covers the ACK write
// that blocks.
func TestHungMasterReconnects(t *testing.T) {
	hung := make(chan struct{})
	resumed := make(chan []string, 1)
	f := startFakeMaster(t,
		func(c net.Conn, _ []string) error {
			fullResync(c, fakeReplid, setCmd("a", "1"))
			<-hung // neither reads nor sends again
			return nil
		},
		func(c net.Conn, ps []string) error {
			resumed <- ps
			fmt.Fprintf(c, "+CONTINUE %s\r\n", fakeReplid)
			return nil
		},
	)
	t.Cleanup(func() { close(hung) }) // before the fake master's cleanup
	cfg := newRelayConfig(t, "redis://"+f.ln.Addr().String())
	cfg.ReplTimeout = time.Second
	startRelay(t, cfg)
	select {
	case ps := <-resumed:
		if want := fmt.Sprint(len(setCmd("a", "1")) + 1); ps[0] != fakeReplid || ps[1] != want {
			t.Errorf("PSYNC %v after the hung master, want %s %s", ps, fakeReplid, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not reconnect to a hung master within 30 s (repl-timeout 1 s)")
	}
}
