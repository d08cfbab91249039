package redistest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const syncTimeout = 10 * time.Second

// startReplicas starts n servers and points them at master.
func startReplicas(t *testing.T, master *Server, n int) []*Server {
	t.Helper()
	replicas := make([]*Server, n)
	for i := range replicas {
		replicas[i] = Start(t)
		if err := replicas[i].ReplicaOf(t.Context(), "127.0.0.1", master.Port); err != nil {
			t.Fatal(err)
		}
	}
	return replicas
}

func TestReplicasInSync(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		masterArgs  []string
		attachFirst bool // replicas attach before the load: stream path
	}{
		{"disk/stream", []string{"--repl-diskless-sync", "no"}, true},
		{"disk/rdb", []string{"--repl-diskless-sync", "no"}, false},
		{"diskless/rdb", []string{"--repl-diskless-sync", "yes"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, "/", "_"), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			master := Start(t, tt.masterArgs...)
			var replicas []*Server
			if tt.attachFirst {
				replicas = startReplicas(t, master, 2)
				WaitInSync(t, syncTimeout, master, replicas...)
			}
			start := time.Now()
			if err := LoadAllTypes(ctx, master.Client(), LoadOptions{SmallKeys: 5000, Seed: 1}); err != nil {
				t.Fatalf("LoadAllTypes: %v", err)
			}
			t.Logf("LoadAllTypes took %v", time.Since(start))
			if !tt.attachFirst {
				replicas = startReplicas(t, master, 2)
			}
			start = time.Now()
			WaitInSync(t, syncTimeout, master, replicas...)
			t.Logf("WaitInSync took %v", time.Since(start))

			dbsize, err := master.Client().DBSize(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			if dbsize < 5000 {
				t.Errorf("master DB 0 has %d keys, want at least 5000", dbsize)
			}
			for _, r := range replicas {
				if n, err := r.Client().Exists(ctx, "exp:soon", "exp:soon-pexpire").Result(); err != nil || n != 0 {
					t.Errorf("replica %s: EXISTS of expired keys = %d, %v; want 0, nil", r.Addr, n, err)
				}
			}
			wantDiskless := tt.masterArgs[1] == "yes"
			if got := master.LogContains("Starting BGSAVE for SYNC with target: replicas sockets"); got != wantDiskless {
				t.Errorf("master log shows diskless sync = %v, want %v", got, wantDiskless)
			}
		})
	}
}

func TestCompareDigestsDetectsDivergence(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := Start(t)
	replicas := startReplicas(t, master, 1)
	if err := LoadAllTypes(ctx, master.Client(), LoadOptions{SmallKeys: 100, Seed: 2}); err != nil {
		t.Fatalf("LoadAllTypes: %v", err)
	}
	WaitInSync(t, syncTimeout, master, replicas...)
	if err := CompareDigests(ctx, master, replicas...); err != nil {
		t.Fatalf("CompareDigests on replicas in sync: %v", err)
	}

	r := replicas[0]
	if err := r.ReplicaOfNoOne(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Client().Set(ctx, "corrupt", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := CompareDigests(ctx, master, replicas...)
	if err == nil {
		t.Fatal("CompareDigests on a diverged replica = nil, want an error")
	}
	for _, want := range []string{r.Addr, master.Addr, "digest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CompareDigests error %q does not mention %q", err, want)
		}
	}
	if err := checkInSync(ctx, master, replicas); err == nil || !strings.Contains(err.Error(), "master_link_status") {
		t.Errorf("checkInSync on a detached replica = %v, want a master_link_status error", err)
	}
}

func TestRestartPartialResync(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := Start(t)
	replicas := startReplicas(t, master, 1)
	r := replicas[0]
	if err := LoadAllTypes(ctx, master.Client(), LoadOptions{SmallKeys: 1000, Seed: 3}); err != nil {
		t.Fatalf("LoadAllTypes: %v", err)
	}
	WaitInSync(t, syncTimeout, master, r)

	r.StopSave()
	if r.Running() {
		t.Fatal("replica still running after StopSave")
	}
	if n, err := WriteLoad(ctx, master.Client(), 500); err != nil || n != 500 {
		t.Fatalf("WriteLoad = %d, %v; want 500, nil", n, err)
	}
	r.Restart(t)
	WaitInSync(t, syncTimeout, master, r)

	info, err := master.Info(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if info["sync_full"] != "1" || info["sync_partial_ok"] != "1" {
		t.Errorf("master sync_full %s, sync_partial_ok %s; want 1 and 1 (restart from the RDB)",
			info["sync_full"], info["sync_partial_ok"])
	}
}

func TestKillUnderWriteLoad(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := Start(t)
	replicas := startReplicas(t, master, 2)
	WaitInSync(t, syncTimeout, master, replicas...)

	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	type result struct {
		ops int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := WriteLoad(loadCtx, master.Client(), 0)
		done <- result{n, err}
	}()
	WaitFor(t, 5*time.Second, func() error {
		n, err := master.Client().Get(ctx, "wl:counter").Int()
		if err != nil || n < 1000 {
			return errors.New("write load has not reached 1000 INCRs")
		}
		return nil
	})
	replicas[0].Kill()
	replicas[0].Restart(t)
	stop()
	res := <-done
	if res.err != nil || res.ops == 0 {
		t.Fatalf("WriteLoad = %d, %v; want > 0, nil", res.ops, res.err)
	}
	t.Logf("WriteLoad did %d ops", res.ops)
	WaitInSync(t, syncTimeout, master, replicas...)
}

func TestLoadIsDeterministic(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b, c := Start(t), Start(t), Start(t)
	for _, tc := range []struct {
		s *Server
		o LoadOptions
	}{
		{a, LoadOptions{SmallKeys: 100, Seed: 7, FlushAll: true}},
		{b, LoadOptions{SmallKeys: 100, Seed: 7}},
		{c, LoadOptions{SmallKeys: 100, Seed: 8}},
	} {
		if err := LoadAllTypes(ctx, tc.s.Client(), tc.o); err != nil {
			t.Fatalf("LoadAllTypes(%+v): %v", tc.o, err)
		}
	}
	if err := CompareDigests(ctx, a, b); err != nil {
		t.Errorf("same seed: %v", err)
	}
	if err := CompareDigests(ctx, a, c); err == nil {
		t.Error("different seeds gave equal digests")
	}
	for db := range 4 {
		n, err := a.Client().Do(ctx, "EVAL", "redis.call('select', ARGV[1]); return redis.call('dbsize')", 0, db).Int()
		if err != nil || n == 0 {
			t.Errorf("DB %d has %d keys (%v), want some", db, n, err)
		}
	}
}

func TestBigValue(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 32 MiB through replication")
	}
	t.Parallel()
	ctx := t.Context()
	master := Start(t)
	replicas := startReplicas(t, master, 1)
	if err := LoadAllTypes(ctx, master.Client(), LoadOptions{Big: true, Seed: 4}); err != nil {
		t.Fatalf("LoadAllTypes: %v", err)
	}
	WaitInSync(t, syncTimeout, master, replicas...)
	if n, err := replicas[0].Client().StrLen(ctx, "str:big").Result(); err != nil || n != bigSize {
		t.Errorf("replica STRLEN str:big = %d, %v; want %d", n, err, bigSize)
	}
}

func TestRequirePassStop(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := Start(t, "--requirepass", "secret")
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET with password: %v", err)
	}
	s.Stop()
	if s.Running() {
		t.Fatal("server still running after Stop")
	}
	s.Restart(t)
	if n, err := s.Client().DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("DBSIZE after Stop (NOSAVE) and Restart = %d, %v; want 0, nil", n, err)
	}
}

func TestParseInfo(t *testing.T) {
	text := "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n" +
		"slave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=0\r\n" +
		"master_repl_offset:42\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n"
	m := parseInfo(text)
	tests := []struct{ key, want string }{
		{"role", "master"},
		{"slave0", "ip=127.0.0.1,port=6380,state=online,offset=42,lag=0"},
		{"master_repl_offset", "42"},
		{"db0", "keys=3,expires=1,avg_ttl=0"},
	}
	for _, tt := range tests {
		if got := m[tt.key]; got != tt.want {
			t.Errorf("parseInfo()[%q] = %q, want %q", tt.key, got, tt.want)
		}
	}
	if n, err := infoInt(m, "master_repl_offset"); err != nil || n != 42 {
		t.Errorf("infoInt(master_repl_offset) = %d, %v; want 42, nil", n, err)
	}
	if _, err := infoInt(m, "missing"); err == nil {
		t.Error("infoInt(missing) = nil error, want one")
	}
}

func TestPoll(t *testing.T) {
	calls := 0
	err := poll(100*time.Millisecond, func() error {
		calls++
		return errors.New("never")
	})
	if err == nil || err.Error() != "never" || calls < 2 {
		t.Errorf("poll = %v after %d calls, want the last error after several calls", err, calls)
	}
	calls = 0
	if err := poll(time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Errorf("poll = %v after %d calls, want nil after 3", err, calls)
	}
}
