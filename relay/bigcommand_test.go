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

// writeBigSADD sends "SADD key m0 … m<n-1>" on a fresh connection to s,
// streaming the members so the test holds none of them, and returns the
// reply line.
func writeBigSADD(t *testing.T, s *redistest.Server, key string, n int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	w := bufio.NewWriterSize(c, 64<<10)
	fmt.Fprintf(w, "*%d\r\n$4\r\nSADD\r\n$%d\r\n%s\r\n", n+2, len(key), key)
	var m []byte
	for i := range n {
		m = strconv.AppendInt(append(m[:0], 'm'), int64(i), 10)
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(m), m)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("send SADD: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("SADD reply: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

// digestValue returns DEBUG DIGEST-VALUE key from s, allowing it the time
// a large value takes on a busy machine.
func digestValue(t *testing.T, s *redistest.Server, key string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(resp.AppendCommand(nil, "DEBUG", "DIGEST-VALUE", key)); err != nil {
		t.Fatalf("DEBUG DIGEST-VALUE on %s: %v", s.Addr, err)
	}
	v, err := resp.NewReader(bufio.NewReader(c)).ReadReply()
	if err != nil || v.Type != resp.TypeArray || len(v.Array) != 1 {
		t.Fatalf("DEBUG DIGEST-VALUE on %s: got %v, %v", s.Addr, v, err)
	}
	return string(v.Array[0].Str)
}

// TestCommandOverMillionArgs: a master runs a command with more than a
// million arguments (Redis accepts and propagates up to 2^31-1); the relay
// stores and serves it like any other, its replica gets it, and the relay
// never refuses the stream or reconnects. Before the fix the scanner's 1M
// argument limit made the relay drop the link, PSYNC at the same offset,
// receive the same bytes and loop forever.
func TestCommandOverMillionArgs(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a 1.1M-member set through a relay")
	}
	// The backlog holds the command, so a relay that refuses it is
	// continued at the same offset and gets the same bytes again.
	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	r := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	rep := redistest.Start(t)
	replicaOf(t, rep, r.Port)
	ctx := context.Background()
	if err := master.Client().Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, syncTimeout, master, rep)

	const members = 1_100_000
	if got, want := writeBigSADD(t, master, "big", members), ":"+strconv.Itoa(members); got != want {
		t.Fatalf("SADD reply %q, want %q", got, want)
	}
	if err := master.Client().Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	want, err := master.InfoInt(ctx, "replication", "master_repl_offset")
	if err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, syncTimeout, func() error {
		if n := r.InfoInt(t, "stats", "arbor_upstream_rejected_streams"); n != 0 {
			t.Fatalf("relay refused the stream %d times", n)
		}
		// At least: the master's PINGs move its offset on.
		if got := r.InfoInt(t, "replication", "master_repl_offset"); got < want {
			return fmt.Errorf("relay offset %d, want at least %d", got, want)
		}
		got, err := rep.InfoInt(ctx, "replication", "master_repl_offset")
		if err != nil || got < want {
			return fmt.Errorf("replica offset %d (%v), want at least %d", got, err, want)
		}
		return nil
	})
	if n, err := rep.Client().SCard(ctx, "big").Result(); err != nil || n != members {
		t.Errorf("replica SCARD big = %d, %v; want %d", n, err, members)
	}
	// One digest of the set on each side: WaitInSync's DEBUG DIGEST, polled
	// with a 5 s budget, would pile digests of 1.1M members onto a busy
	// master. The rest of the dataset is compared once the set is gone.
	if got, want := digestValue(t, rep, "big"), digestValue(t, master, "big"); got != want {
		t.Errorf("replica DEBUG DIGEST-VALUE big = %s, master %s", got, want)
	}
	if err := master.Client().Unlink(ctx, "big").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, syncTimeout, master, rep)
	expectEq(t, "relay arbor_upstream_rejected_streams", r.InfoInt(t, "stats", "arbor_upstream_rejected_streams"), 0)
	expectEq(t, "relay arbor_upstream_full_syncs", r.InfoInt(t, "stats", "arbor_upstream_full_syncs"), 1)
	expectEq(t, "relay arbor_upstream_partial_syncs", r.InfoInt(t, "stats", "arbor_upstream_partial_syncs"), 0)
	expectEq(t, "master sync_partial_ok", masterInt(t, master, "stats", "sync_partial_ok"), 0)
	expectEq(t, "relay sync_full", r.InfoInt(t, "stats", "sync_full"), 1)
}
