package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/resp"
)

const syncTimeout = 90 * time.Second

// roundTrip sends one command and returns the reply as text.
func roundTrip(c net.Conn, args ...string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(resp.AppendCommand(nil, args...)); err != nil {
		return "", err
	}
	v, err := resp.NewReader(bufio.NewReader(c)).ReadReply()
	if err != nil {
		return "", err
	}
	if err := v.Err(); err != nil {
		return "", err
	}
	return string(v.Str), nil
}

// TestEveryTypeThroughRelay: data written before the relay attaches (it
// travels in the RDB) and after (in the stream), of every type and encoding,
// in several DBs, reaches two replicas of the relay intact, with both RDB
// framings from the master.
func TestEveryTypeThroughRelay(t *testing.T) {
	for _, diskless := range []string{"no", "yes"} {
		t.Run("diskless="+diskless, func(t *testing.T) {
			master := redistest.Start(t, "--repl-diskless-sync", diskless, "--repl-backlog-size", "64mb")
			load(t, master, redistest.LoadOptions{SmallKeys: 5000, Seed: 1})

			r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
			replicas := []*redistest.Server{redistest.Start(t), redistest.Start(t)}
			for _, rep := range replicas {
				replicaOf(t, rep, r.Port)
			}
			redistest.WaitInSync(t, syncTimeout, master, replicas...)
			if got, want := strings.Contains(r.logBuf.String(), "EOF framing"), diskless == "yes"; got != want {
				t.Errorf("relay received the RDB in the EOF framing: %v, want %v", got, want)
			}

			// Now through the stream: every type again, a 32 MiB value once,
			// FLUSHALL once.
			load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 2, Big: diskless == "no", FlushAll: diskless == "yes"})
			load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 3})
			redistest.WaitInSync(t, syncTimeout, master, replicas...)

			expectEq(t, "master sync_full", masterInt(t, master, "stats", "sync_full"), 1)
			expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
			expectEq(t, "relay sync_full", r.InfoInt(t, "stats", "sync_full"), 2)
			expectEq(t, "relay connected_slaves", r.InfoInt(t, "replication", "connected_slaves"), 2)
			// The relay shows the master's history: same replid and offset.
			info := r.Info(t, "replication")
			mrepl, _ := master.Info(context.Background(), "replication")
			expectEq(t, "relay master_replid", info["master_replid"], mrepl["master_replid"])
		})
	}
}

// TestReplicaRestartResumesFromRelay: a replica killed and restarted comes
// back with a partial resync from the relay.
func TestReplicaRestartResumesFromRelay(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 2000, Seed: 1})
	r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	// Disk-based loading leaves the RDB (with the replication ID and
	// offset) in the replica's dir, from which it resumes after a restart.
	rep := redistest.Start(t, "--repl-diskless-load", "disabled")
	other := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	replicaOf(t, other, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep, other)
	fullBefore := r.InfoInt(t, "stats", "sync_full")
	partialBefore := r.InfoInt(t, "stats", "sync_partial_ok")

	rep.Kill()
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 2})
	rep.Restart(t)
	redistest.WaitInSync(t, syncTimeout, master, rep, other)

	expectEq(t, "relay sync_full after the replica's restart", r.InfoInt(t, "stats", "sync_full"), fullBefore)
	if got := r.InfoInt(t, "stats", "sync_partial_ok"); got <= partialBefore {
		t.Errorf("relay sync_partial_ok: got %d, want more than %d", got, partialBefore)
	}
	expectEq(t, "master sync_full", masterInt(t, master, "stats", "sync_full"), 1)
}

// TestReplicaMovesBetweenRelayAndMaster: the relay keeps the master's
// replication ID and offsets, so a replica moves both ways with partial
// resyncs.
func TestReplicaMovesBetweenRelayAndMaster(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	masterFull := masterInt(t, master, "stats", "sync_full")
	masterPartial := masterInt(t, master, "stats", "sync_partial_ok")
	replicaOf(t, rep, master.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 300, Seed: 2})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "master sync_full after the move to the master", masterInt(t, master, "stats", "sync_full"), masterFull)
	expectEq(t, "master sync_partial_ok after the move", masterInt(t, master, "stats", "sync_partial_ok"), masterPartial+1)

	relayFull := r.InfoInt(t, "stats", "sync_full")
	relayPartial := r.InfoInt(t, "stats", "sync_partial_ok")
	replicaOf(t, rep, r.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 300, Seed: 3})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay sync_full after the move back", r.InfoInt(t, "stats", "sync_full"), relayFull)
	expectEq(t, "relay sync_partial_ok after the move back", r.InfoInt(t, "stats", "sync_partial_ok"), relayPartial+1)
}

// TestRelayRestartResumes: a relay stopped and started again continues
// from its store with a partial resync, and its replicas continue from it.
func TestRelayRestartResumes(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 1000, Seed: 1})
	r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	r.Stop()
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 2})
	r.start()
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "master sync_full", masterInt(t, master, "stats", "sync_full"), 1)
	expectEq(t, "relay arbor_upstream_partial_syncs", r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 1)
	expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 0)
	expectEq(t, "relay sync_full (the replica resumed)", r.InfoInt(t, "stats", "sync_full"), 0)
}

// TestRelayAnswersLikeRedis: PING, ROLE, INFO, AUTH and errors for the rest.
func TestRelayAnswersLikeRedis(t *testing.T) {
	master := redistest.Start(t)
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.RedisPassword = "s3cret"
	r := startRelay(t, cfg)
	c, err := net.Dial("tcp", r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrip(c, "PING"); err == nil || err.Error()[:6] != "NOAUTH" {
		t.Fatalf("PING before AUTH: got %v, want NOAUTH", err)
	}
	if _, err := roundTrip(c, "AUTH", "wrong"); err == nil {
		t.Fatal("AUTH with a wrong password succeeded")
	}
	if got, err := roundTrip(c, "AUTH", "s3cret"); err != nil || got != "OK" {
		t.Fatalf("AUTH: %q %v", got, err)
	}
	if got, err := roundTrip(c, "PING"); err != nil || got != "PONG" {
		t.Fatalf("PING: %q %v", got, err)
	}
	if _, err := roundTrip(c, "SET", "k", "v"); err == nil {
		t.Fatal("SET on a relay succeeded")
	}
	// The connection still works after an error.
	if got, err := roundTrip(c, "ECHO", "hi"); err != nil || got != "hi" {
		t.Fatalf("ECHO: %q %v", got, err)
	}
	// A replica with masterauth syncs through the password.
	rep := redistest.Start(t, "--masterauth", "s3cret")
	replicaOf(t, rep, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	info, err := roundTrip(c, "INFO", "replication")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"role:slave", "connected_slaves:1", "master_link_status:up", "slave0:ip=127.0.0.1,port=" + strconv.Itoa(rep.Port)} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO replication lacks %q:\n%s", want, info)
		}
	}
	fmt.Fprint(c, "*1\r\n$4\r\nROLE\r\n")
	v, err := resp.NewReader(bufio.NewReader(c)).ReadReply()
	if err != nil || len(v.Array) != 5 || string(v.Array[0].Str) != "slave" || v.Array[2].Int != int64(master.Port) {
		t.Fatalf("ROLE: %v %v", v, err)
	}
}

// outgrowBacklog writes far more to master than relay r's 1 MiB backlog
// holds (LoadAllTypes seeds from firstSeed on) and waits until r has
// refreshed its snapshot past offset after and trimmed its backlog to at
// most 3 MiB.
func outgrowBacklog(t *testing.T, master *redistest.Server, r *testRelay, after, firstSeed int64) {
	t.Helper()
	for seed := firstSeed; seed < firstSeed+4; seed++ {
		load(t, master, redistest.LoadOptions{SmallKeys: 20000, Seed: seed})
	}
	redistest.WaitFor(t, syncTimeout, func() error {
		info := r.Info(t, "arbor")
		snap, _ := strconv.ParseInt(info["arbor_snapshot_offset"], 10, 64)
		backlog, _ := strconv.ParseInt(info["arbor_backlog_bytes"], 10, 64)
		if snap <= after || backlog > 3<<20 {
			return fmt.Errorf("snapshot offset %d (was %d), backlog %d bytes: want a refreshed snapshot and at most 3 MiB", snap, after, backlog)
		}
		return nil
	})
}

// TestBacklogStaysBounded: with a small --backlog-size, the relay fetches
// fresher snapshots (REPLCONF rdb-only) from its configured snapshot
// source, with the source's own password, so the backlog can be trimmed,
// and a replica that arrives later gets a full sync from the fresh
// snapshot plus the backlog, and converges.
func TestBacklogStaysBounded(t *testing.T) {
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	// early, a replica of the relay, is the trusted snapshot source; it
	// requires a password the master does not have.
	early := redistest.Start(t, "--requirepass", "source-secret")
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.BacklogSize = 1 << 20
	cfg.SnapshotSources = []string{early.Addr}
	cfg.SnapshotSourcePassword = "source-secret"
	r := startRelay(t, cfg)
	// gone keeps its RDB (disk loading) and comes back after the backlog
	// moved past its offset: a replica outside the backlog.
	gone := redistest.Start(t, "--repl-diskless-load", "disabled")
	replicaOf(t, early, r.Port)
	replicaOf(t, gone, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, early, gone)
	gone.Kill()
	outgrowBacklog(t, master, r, 0, 1)
	partialErr := r.InfoInt(t, "stats", "sync_partial_err")
	gone.Restart(t)
	late := redistest.Start(t)
	replicaOf(t, late, r.Port)
	redistest.WaitInSync(t, syncTimeout, master, early, late, gone)
	expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	// The fresher snapshots came from the snapshot source: the master
	// forked for the relay once, for its first full sync.
	expectEq(t, "master sync_full", masterInt(t, master, "stats", "sync_full"), 1)
	// Both the returning replica (outside the backlog) and the new one (a
	// former master PSYNCs with its own ID, as Redis 7 does) are refused a
	// partial resync, as a Redis master counts them.
	expectEq(t, "relay sync_partial_err", r.InfoInt(t, "stats", "sync_partial_err"), partialErr+2)
	if !strings.Contains(r.logBuf.String(), "partial resync refused; full sync\" relay=relay-test replica=127.0.0.1:"+strconv.Itoa(gone.Port)) {
		t.Error("relay log does not show the returning replica refused a partial resync")
	}
}
