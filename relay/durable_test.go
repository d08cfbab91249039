package relay_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/relay"
)

// flushHook stands in for the store's fsync: it can hold flushes until
// released, or fail them.
type flushHook struct {
	mu   sync.Mutex
	gate chan struct{}
	fail error
}

func (h *flushHook) sync(f *os.File) error {
	h.mu.Lock()
	gate, fail := h.gate, h.fail
	h.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return fail
	}
	return f.Sync()
}

func (h *flushHook) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate == nil {
		h.gate = make(chan struct{})
	}
}

func (h *flushHook) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
}

func (h *flushHook) failWith(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = err
}

// slaveOffset returns the offset the master last heard acked by the replica
// listening on port (INFO replication, slaveN:…,offset=N), -1 if none.
func slaveOffset(t *testing.T, master *redistest.Server, port int) int64 {
	t.Helper()
	info, err := master.Info(context.Background(), "replication")
	if err != nil {
		t.Fatalf("master INFO: %v", err)
	}
	for k, v := range info {
		if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "port="+strconv.Itoa(port)+",") {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			if n, ok := strings.CutPrefix(f, "offset="); ok {
				off, _ := strconv.ParseInt(n, 10, 64)
				return off
			}
		}
	}
	return -1
}

// wait runs WAIT numreplicas timeout on the master.
func wait(t *testing.T, master *redistest.Server, timeout time.Duration) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	n, err := master.Client().Do(ctx, "WAIT", 1, timeout.Milliseconds()).Int64()
	if err != nil {
		t.Fatalf("WAIT: %v", err)
	}
	return n
}

// waitAcked waits until WAIT 1 on the master returns 1; when says in
// what circumstance, for the failure.
func waitAcked(t *testing.T, master *redistest.Server, when string) {
	t.Helper()
	redistest.WaitFor(t, syncTimeout, func() error {
		if n := wait(t, master, time.Second); n != 1 {
			return errors.New("WAIT 1 still 0 " + when)
		}
		return nil
	})
}

func set(t *testing.T, master *redistest.Server, k, v string) {
	t.Helper()
	if err := master.Client().Set(context.Background(), k, v, 0).Err(); err != nil {
		t.Fatalf("SET %s: %v", k, err)
	}
}

// waitDurable waits until the relay's durable offset reaches the master's
// offset.
func waitDurable(t *testing.T, master *redistest.Server, tr *testRelay) {
	t.Helper()
	redistest.WaitFor(t, syncTimeout, func() error {
		want := masterOffsetOf(t, master)
		if got := tr.InfoInt(t, "arbor", "arbor_durable_offset"); got < want {
			return fmt.Errorf("%s durable offset %d, master at %d", tr.cfg.ID, got, want)
		}
		return nil
	})
}

// TestAcksAreDurableEverySec: with fsync everysec the relay acks its master
// what the store flushed, not what it wrote: while flushes stall the
// master's view of the relay (INFO slave offset, WAIT) never passes the
// relay's durable offset, and WAIT returns as soon as a flush covers it.
func TestAcksAreDurableEverySec(t *testing.T) {
	master := redistest.Start(t)
	h := &flushHook{}
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.Fsync = "everysec"
	relay.SetSyncFile(&cfg, h.sync)
	tr := startRelay(t, cfg)
	defer h.release() // before the relay stops (t.Cleanup)
	load(t, master, redistest.LoadOptions{SmallKeys: 200, Seed: 1})
	waitDurable(t, master, tr)
	if n := wait(t, master, 10*time.Second); n != 1 {
		t.Fatalf("WAIT 1 with the relay's flushes flowing: got %d, want 1", n)
	}

	h.hold()
	before := tr.InfoInt(t, "arbor", "arbor_durable_offset")
	for i := range 20 {
		set(t, master, fmt.Sprintf("held:%d", i), "v")
	}
	want := masterOffsetOf(t, master)
	redistest.WaitFor(t, syncTimeout, func() error {
		if got := tr.InfoInt(t, "arbor", "arbor_stored_offset"); got < want {
			return fmt.Errorf("relay stored %d, master at %d", got, want)
		}
		return nil
	})
	// The relay holds the bytes, has not flushed them, and must not say
	// it has: WAIT times out and the master's figure stays behind.
	if n := wait(t, master, 300*time.Millisecond); n != 0 {
		t.Errorf("WAIT 1 while the relay's flushes are held: got %d, want 0", n)
	}
	for range 3 {
		acked := slaveOffset(t, master, tr.Port)
		durable := tr.InfoInt(t, "arbor", "arbor_durable_offset")
		if acked > durable || acked >= want {
			t.Fatalf("master counts offset %d acked by the relay; relay durable %d (was %d before the held flushes), stored %d",
				acked, durable, before, want)
		}
		if n := wait(t, master, 300*time.Millisecond); n != 0 {
			t.Fatalf("WAIT 1 while the relay's flushes are held: got %d, want 0", n)
		}
	}

	h.release()
	waitAcked(t, master, "after the flushes were released")
	if acked, durable := slaveOffset(t, master, tr.Port), tr.InfoInt(t, "arbor", "arbor_durable_offset"); acked > durable {
		t.Errorf("master counts offset %d acked; relay durable %d", acked, durable)
	}
}

// TestAlwaysFlushFailureStopsRelay: with fsync always a failed flush leaves
// nothing of the unflushed bytes acked or served: the relay stops following
// its master, its replica never gets them, the error shows in INFO and
// Status; a restart (disk fixed) resumes with a partial resync.
func TestAlwaysFlushFailureStopsRelay(t *testing.T) {
	master := redistest.Start(t)
	h := &flushHook{}
	cfg := newRelayConfig(t, upstreamOf(master))
	cfg.Fsync = "always"
	relay.SetSyncFile(&cfg, h.sync)
	tr := startRelay(t, cfg)
	rep := redistest.Start(t)
	replicaOf(t, rep, tr.Port)
	load(t, master, redistest.LoadOptions{SmallKeys: 200, Seed: 1})
	redistest.WaitInSync(t, syncTimeout, master, rep)
	waitDurable(t, master, tr)
	durable := tr.InfoInt(t, "arbor", "arbor_durable_offset")

	h.failWith(errors.New("injected: input/output error"))
	set(t, master, "lost:1", "v")
	redistest.WaitFor(t, syncTimeout, func() error {
		if e := tr.Info(t, "arbor")["arbor_upstream_last_error"]; !strings.Contains(e, "injected") {
			return fmt.Errorf("arbor_upstream_last_error %q", e)
		}
		return nil
	})
	h.failWith(nil) // the disk "recovers": the relay must not trust it
	set(t, master, "lost:2", "v")
	// The master drops the relay (it stopped following) and so counts
	// nothing past what the relay flushed.
	redistest.WaitFor(t, syncTimeout, func() error {
		if off := slaveOffset(t, master, tr.Port); off != -1 {
			return fmt.Errorf("master still lists the relay at offset %d", off)
		}
		return nil
	})
	if n := wait(t, master, 300*time.Millisecond); n != 0 {
		t.Errorf("WAIT 1 after the relay's flush failed: got %d, want 0", n)
	}
	info := tr.Info(t, "arbor")
	if e := info["arbor_store_error"]; !strings.Contains(e, "injected") {
		t.Errorf("INFO arbor_store_error: got %q, want the flush error", e)
	}
	expectEq(t, "relay stored offset after the failed flush", info["arbor_stored_offset"], strconv.FormatInt(durable, 10))
	expectEq(t, "relay durable offset after the failed flush", info["arbor_durable_offset"], strconv.FormatInt(durable, 10))
	if got := rep.Client().Get(context.Background(), "lost:1").Val(); got != "" {
		t.Errorf("the relay served bytes it never flushed: replica has lost:1=%q", got)
	}
	if off := masterOffsetOf(t, rep); off > durable {
		t.Errorf("replica at offset %d, past the relay's durable %d", off, durable)
	}
	if !strings.Contains(tr.logBuf.String(), "flush to disk failed") {
		t.Error("the failed flush is not in the relay's log")
	}

	tr.Restart()
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay full syncs after the restart", tr.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 0)
	expectEq(t, "replica full syncs from the relay", tr.InfoInt(t, "stats", "sync_full"), 0)
}

func masterOffsetOf(t *testing.T, s *redistest.Server) int64 {
	t.Helper()
	return masterInt(t, s, "replication", "master_repl_offset")
}

// TestAckPolicyRemote: a root relay with --ack-policy remote acks its
// master only what a relay of another site durably stored, so WAIT 1
// returns 1 only once site B holds the write; with local it acks its own
// durable offset.
func TestAckPolicyRemote(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		master := redistest.Start(t)
		a := treeRelay(t, "relay-a", "A", upstreamOf(master))
		load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
		waitDurable(t, master, a)
		set(t, master, "k", "v")
		waitAcked(t, master, "with a local-policy root relay")
	})
	t.Run("remote", func(t *testing.T) {
		master := redistest.Start(t)
		a := treeRelay(t, "relay-a", "A", upstreamOf(master), func(c *relay.Config) { c.AckPolicy = "remote" })
		load(t, master, redistest.LoadOptions{SmallKeys: 100, Seed: 1})
		waitDurable(t, master, a)
		set(t, master, "k1", "v")
		waitDurable(t, master, a)
		// relay-a holds it, durably; no other site does.
		if n := wait(t, master, 500*time.Millisecond); n != 0 {
			t.Fatalf("WAIT 1 with no relay in another site: got %d, want 0", n)
		}
		expectEq(t, "relay-a INFO arbor_ack_policy", a.Info(t, "arbor")["arbor_ack_policy"], "remote")

		h := &flushHook{}
		b := treeRelay(t, "relay-b", "B", a.arborURL(), func(c *relay.Config) { relay.SetSyncFile(c, h.sync) })
		defer h.release()
		waitAcked(t, master, "with relay-b (site B) attached")

		// relay-b receives the next write but cannot flush it: not acked.
		h.hold()
		set(t, master, "k2", "v")
		want := masterOffsetOf(t, master)
		redistest.WaitFor(t, syncTimeout, func() error {
			if got := b.InfoInt(t, "arbor", "arbor_stored_offset"); got < want {
				return fmt.Errorf("relay-b stored %d, master at %d", got, want)
			}
			return nil
		})
		for range 3 {
			if n := wait(t, master, 300*time.Millisecond); n != 0 {
				t.Fatalf("WAIT 1 while relay-b holds the write unflushed: got %d, want 0", n)
			}
		}
		if acked := slaveOffset(t, master, a.Port); acked >= want {
			t.Fatalf("master counts offset %d acked by relay-a; relay-b has not flushed past %d", acked, want)
		}
		h.release()
		waitAcked(t, master, "after relay-b flushed")

		// relay-b gone: nothing new is acked.
		b.Stop()
		set(t, master, "k3", "v")
		if n := wait(t, master, 500*time.Millisecond); n != 0 {
			t.Fatalf("WAIT 1 with relay-b stopped: got %d, want 0", n)
		}
	})
}

// TestAckPolicyValidate: local or remote, with any upstream (remote applies
// while the relay follows Redis).
func TestAckPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		upstream, policy string
		ok               bool
	}{
		{"redis://127.0.0.1:6379", "local", true},
		{"redis://127.0.0.1:6379", "remote", true},
		{"arbor://127.0.0.1:7480", "local", true},
		{"arbor://127.0.0.1:7480", "remote", true},
		{"redis://127.0.0.1:6379", "everywhere", false},
	} {
		cfg := relay.DefaultConfig()
		cfg.ID, cfg.DataDir, cfg.Upstream, cfg.AckPolicy = "r", t.TempDir(), tc.upstream, tc.policy
		cfg.TLS.Plaintext = true
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("upstream %s, ack-policy %s: got %v, want ok=%v", tc.upstream, tc.policy, err, tc.ok)
		}
	}
}
