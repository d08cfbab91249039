package election

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testCluster = "electiontest"

// checkFor polls cond every 20 ms until it holds or timeout passes.
func checkFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDone waits until the session ends, at most timeout.
func waitDone(t *testing.T, timeout time.Duration, what string, s *Session) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(timeout):
		t.Fatalf("%s did not end within %v", what, timeout)
	}
}

func newSession(t *testing.T, ctx context.Context, cli *clientv3.Client, ttl, margin time.Duration) *Session {
	t.Helper()
	s, err := NewSession(ctx, cli, SessionConfig{TTL: ttl, FenceMargin: margin, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	return s
}

// campaignResult is the outcome of a campaign run by campaignQueued.
type campaignResult struct {
	leader *Leader
	err    error
}

// campaignQueued starts s's campaign for id and waits until its key is
// queued behind the one leader's; the campaign's outcome comes on the
// returned channel.
func campaignQueued(t *testing.T, ctx context.Context, cli *clientv3.Client, s *Session, id string) <-chan campaignResult {
	t.Helper()
	won := make(chan campaignResult, 1)
	go func() {
		l, err := s.Campaign(ctx, testCluster, id)
		won <- campaignResult{l, err}
	}()
	checkFor(t, 20*time.Second, id+"'s key queued", func() bool {
		r, err := cli.Get(ctx, CampaignPrefix(testCluster), clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && r.Count == 2
	})
	return won
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestEpochsAndGuardedWrites: a second leader gets a larger epoch, and the
// deposed first leader can no longer write the record or history.
func TestEpochsAndGuardedWrites(t *testing.T) {
	ctx := testCtx(t)
	cli := etcdtest.Start(t, 1).Client(t)
	s1 := newSession(t, ctx, cli, 5*time.Second, time.Second)
	s2 := newSession(t, ctx, cli, 5*time.Second, time.Second)

	l1, err := s1.Campaign(ctx, testCluster, "n1")
	if err != nil {
		t.Fatalf("campaign n1: %v", err)
	}
	if _, err := l1.PublishMaster(ctx, Master{Node: "n1", RedisAddr: "127.0.0.1:1", Reason: "bootstrap"}); err != nil {
		t.Fatalf("n1 publish: %v", err)
	}
	st, err := ReadState(ctx, cli, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Live() || st.Leader != "n1" || st.Master.Epoch != l1.Epoch() {
		t.Fatalf("state %+v master %+v: want n1 live at epoch %d", st, st.Master, l1.Epoch())
	}

	// n2 queues behind n1 until n1 resigns.
	won := campaignQueued(t, ctx, cli, s2, "n2")
	if err := l1.Resign(ctx); err != nil {
		t.Fatalf("resign n1: %v", err)
	}
	res := <-won
	if res.err != nil {
		t.Fatalf("campaign n2: %v", res.err)
	}
	l2 := res.leader
	if l2.Epoch() <= l1.Epoch() {
		t.Fatalf("epoch of n2 %d, want > n1's %d", l2.Epoch(), l1.Epoch())
	}
	if _, err := l1.PublishMaster(ctx, Master{Node: "n1", RedisAddr: "127.0.0.1:1"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed n1 publish: got %v, want ErrNotLeader", err)
	}
	if err := l1.RecordHistory(ctx, History{Node: "n1"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed n1 history: got %v, want ErrNotLeader", err)
	}
	if _, err := l2.PublishMaster(ctx, Master{Node: "n2", RedisAddr: "127.0.0.1:2", Reason: "failover"}); err != nil {
		t.Fatalf("n2 publish: %v", err)
	}
	if err := l2.RecordHistory(ctx, History{Node: "n2", Previous: "n1", Steps: []Step{{Name: "promote", Took: time.Millisecond}}}); err != nil {
		t.Fatalf("n2 history: %v", err)
	}
	st, err = ReadState(ctx, cli, testCluster)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Live() || st.Master.Node != "n2" || st.Master.Epoch != l2.Epoch() {
		t.Fatalf("state %+v master %+v: want n2 live at epoch %d", st, st.Master, l2.Epoch())
	}
	hs, err := ReadHistory(ctx, cli, testCluster, 0)
	if err != nil || len(hs) != 1 || hs[0].Epoch != l2.Epoch() || hs[0].Steps[0].Took != time.Millisecond {
		t.Fatalf("history %+v, %v: want n2's entry", hs, err)
	}

	// A leader whose lease is revoked (expired) is deposed too, and its
	// session ends.
	if _, err := cli.Revoke(ctx, s2.Lease()); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.PublishMaster(ctx, Master{Node: "n2", RedisAddr: "127.0.0.1:2"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("n2 publish after its lease was revoked: got %v, want ErrNotLeader", err)
	}
	waitDone(t, 20*time.Second, "n2's session", s2)
}

// TestCampaignChecksItsKey: a campaign queued behind a leader whose own
// lease is revoked meanwhile must not come back as a leader when the
// leader resigns (etcd #11051).
func TestCampaignChecksItsKey(t *testing.T) {
	ctx := testCtx(t)
	cli := etcdtest.Start(t, 1).Client(t)
	s1 := newSession(t, ctx, cli, 5*time.Second, time.Second)
	s2 := newSession(t, ctx, cli, 5*time.Second, time.Second)
	l1, err := s1.Campaign(ctx, testCluster, "n1")
	if err != nil {
		t.Fatal(err)
	}
	won := campaignQueued(t, ctx, cli, s2, "n2")
	if _, err := cli.Revoke(ctx, s2.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := l1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	err = (<-won).err
	if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrSessionLost) {
		t.Fatalf("campaign with a revoked lease: got %v, want ErrNotLeader or ErrSessionLost", err)
	}
	st, err := ReadState(ctx, cli, testCluster)
	if err != nil || st.Leader != "" {
		t.Fatalf("state %+v, %v: want no leader (no phantom)", st, err)
	}
}

// TestFenceDeadline: the deadline moves with each keepalive and stops
// moving when etcd is gone; the session ends once it passes.
func TestFenceDeadline(t *testing.T) {
	ctx := testCtx(t)
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	const ttl, margin = 2 * time.Second, 500 * time.Millisecond
	s := newSession(t, ctx, cli, ttl, margin)
	made := time.Now()
	d0 := s.FenceDeadline()
	if d0.After(made.Add(ttl - margin)) {
		t.Fatalf("first deadline %v after the session was made, want at most TTL-margin", d0.Sub(made))
	}
	checkFor(t, 20*time.Second, "two keepalives", func() bool { return s.Renewals() >= 2 })
	d1 := s.FenceDeadline()
	if !d1.After(d0) {
		t.Fatalf("deadline did not move: %v then %v", d0, d1)
	}

	etcd.Members[0].Kill()
	killed := time.Now()
	waitDone(t, 30*time.Second, "the session", s)
	ended := time.Now()
	d2 := s.FenceDeadline()
	if d2.After(killed.Add(ttl - margin)) {
		t.Fatalf("deadline %v after the kill moved past kill+TTL-margin", d2.Sub(killed))
	}
	if ended.Before(d2) {
		t.Fatalf("session ended %v before its deadline", d2.Sub(ended))
	}
	t.Logf("etcd killed; fence deadline %v after the kill, session ended %v after it", d2.Sub(killed), ended.Sub(killed))
}

// TestObserve: a follower sees the leader and the record change.
func TestObserve(t *testing.T) {
	ctx := testCtx(t)
	cli := etcdtest.Start(t, 1).Client(t)
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := Observe(octx, cli, testCluster, slog.New(slog.DiscardHandler))
	st := <-ch
	if st.Leader != "" || st.Master != nil {
		t.Fatalf("first state %+v: want empty", st)
	}
	s := newSession(t, ctx, cli, 5*time.Second, time.Second)
	l, err := s.Campaign(ctx, testCluster, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.PublishMaster(ctx, Master{Node: "n1", RedisAddr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	for !st.Live() {
		select {
		case st = <-ch:
		case <-time.After(20 * time.Second):
			t.Fatalf("no live state seen; last %+v", st)
		}
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	for st.Live() {
		select {
		case st = <-ch:
		case <-time.After(20 * time.Second):
			t.Fatalf("resign not seen; last %+v", st)
		}
	}
	if st.Master == nil || st.Master.Node != "n1" || st.Leader != "" {
		t.Fatalf("after resign %+v: want n1's record and no leader", st)
	}
	cancel()
	for range ch {
	}
}

// TestSessionLoopIsTheOnlyRenewer: the server renews the session's lease
// only when the session's own loop asks. A second renewer (the
// concurrency.Session's keepalive stream) would keep the lease, and a
// leader key on it, alive after the loop gave up at the fence deadline.
func TestSessionLoopIsTheOnlyRenewer(t *testing.T) {
	ctx := testCtx(t)
	etcd := etcdtest.Start(t, 1)
	cli := etcd.Client(t)
	metrics := etcd.Members[0].ClientURL + "/metrics"
	s := newSession(t, ctx, cli, 3*time.Second, 500*time.Millisecond)
	n0, r0 := s.Renewals(), leaseRenewals(t, ctx, metrics)
	checkFor(t, 30*time.Second, "three keepalives of the loop", func() bool { return s.Renewals() >= n0+3 })
	n1 := s.Renewals()
	r1 := leaseRenewals(t, ctx, metrics)
	// One renewal may be counted by the server and not yet by the loop.
	if loop, server := n1-n0, r1-r0; server > loop+1 {
		t.Fatalf("the server renewed the lease %d times while the session's loop renewed it %d: another keepalive runs", server, loop)
	}
}

// leaseRenewals reads etcd's count of lease renewals from its metrics.
func leaseRenewals(t *testing.T, ctx context.Context, url string) int64 {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("etcd metrics: %v", err)
	}
	defer resp.Body.Close()
	const name = "etcd_debugging_lease_renewed_total "
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("etcd metric %s%s: %v", name, v, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("etcd metrics at %s: no %s (%v)", url, strings.TrimSpace(name), sc.Err())
	return 0
}
