package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// TestReplicaNameStableAcrossReconnect: a Redis replica is named, in the
// relay's status (and so in its metrics' child.id and its acks up the
// tree), by the address it announces (its IP and REPLCONF listening-port),
// never by its connection's ephemeral source port: the name is the same
// after the replica reconnects from another source port.
func TestReplicaNameStableAcrossReconnect(t *testing.T) {
	master := redistest.Start(t)
	tr := startRelay(t, newRelayConfig(t, upstreamOf(master)))
	rep := redistest.Start(t)
	replicaOf(t, rep, tr.Port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// streaming waits for the one Redis child streaming, named want, and
	// returns the replica's source port towards the relay then.
	streaming := func(want string) string {
		t.Helper()
		var src string
		redistest.WaitFor(t, 30*time.Second, func() error {
			var redis []*arborv1.ChildStatus
			for _, c := range tr.relay().Status().GetChildren() {
				if c.GetKind() == arborv1.ChildKind_CHILD_KIND_REDIS {
					redis = append(redis, c)
				}
			}
			if len(redis) != 1 || redis[0].GetState() != arborv1.LinkState_LINK_STATE_STREAMING {
				return fmt.Errorf("redis children %v", redis)
			}
			if redis[0].GetId() != want || redis[0].GetAddr() != want {
				return fmt.Errorf("redis child named %q (addr %q), want %q", redis[0].GetId(), redis[0].GetAddr(), want)
			}
			// The replica's side of its link: CLIENT LIST TYPE master on
			// the replica names it by the relay; its laddr is the source
			// port the relay sees.
			list, err := rep.Client().Do(ctx, "CLIENT", "LIST", "TYPE", "master").Text()
			if err != nil {
				return err
			}
			src = clientField(list, "laddr")
			if src == "" {
				return fmt.Errorf("no master link in CLIENT LIST: %q", list)
			}
			return nil
		})
		return src
	}
	first := streaming(rep.Addr)
	if first == rep.Addr {
		t.Fatalf("the link's source address %s is the listening address", first)
	}
	served := tr.relay().Status().GetCounters().GetPartialSyncsServed()

	// Cut the link from the replica's side: it reconnects from a new
	// source port and continues.
	if err := rep.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "master").Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		if n := tr.relay().Status().GetCounters().GetPartialSyncsServed(); n <= served {
			return fmt.Errorf("partial syncs served %d: the replica has not reconnected", n)
		}
		return nil
	})
	second := streaming(rep.Addr)
	if second == first {
		t.Fatalf("the replica reconnected from the same source %s", first)
	}
	t.Logf("replica %s linked from %s, then from %s: named %s both times", rep.Addr, first, second, rep.Addr)
}

// clientField returns field key of the first line of a CLIENT LIST reply.
func clientField(list, key string) string {
	line, _, _ := strings.Cut(list, "\n")
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
