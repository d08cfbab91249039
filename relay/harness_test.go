package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis keeps a pool reaper and connection-check goroutines
		// until its clients are closed in test cleanups.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// testRelay is an in-process relay with a fixed port and data dir, so it
// can be stopped and started again like a restarted process.
type testRelay struct {
	t      *testing.T
	cfg    relay.Config
	Port   int
	Addr   string
	logBuf *syncBuffer

	cancel context.CancelFunc
	done   chan error
	r      *relay.Relay
}

func (tr *testRelay) relay() *relay.Relay { return tr.r }

// syncBuffer collects log output for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRelayConfig(t *testing.T, upstream string) relay.Config {
	cfg := relay.DefaultConfig()
	cfg.ID = "relay-test"
	cfg.Site = "A"
	// zstd on every child link, though most tests' relays share site A
	// (where the default, auto, picks s2): zstd's stream across frames
	// (and its resets when a link joins shared frames) is what the tests
	// of the link exercise. TestCompressionAutoBySite covers auto.
	cfg.Compression = "zstd"
	cfg.DataDir = t.TempDir()
	cfg.Upstream = upstream
	cfg.BacklogSize = 256 << 20
	cfg.FutureOffsetWait = 2 * time.Second
	return cfg
}

// startRelay starts a relay following upstream (redis://host:port).
func startRelay(t *testing.T, cfg relay.Config) *testRelay {
	t.Helper()
	if cfg.RedisAddr == "" || cfg.RedisAddr == relay.DefaultConfig().RedisAddr {
		cfg.RedisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	}
	tr := &testRelay{t: t, cfg: cfg, logBuf: &syncBuffer{}}
	_, port, _ := net.SplitHostPort(cfg.RedisAddr)
	tr.Port, _ = strconv.Atoi(port)
	tr.Addr = cfg.RedisAddr
	tr.start()
	t.Cleanup(func() {
		tr.Stop()
		if t.Failed() {
			logs := tr.logBuf.String()
			if len(logs) > 6000 {
				logs = "…" + logs[len(logs)-6000:]
			}
			t.Logf("relay log:\n%s", logs)
		}
	})
	return tr
}

func (tr *testRelay) start() {
	tr.t.Helper()
	cfg := tr.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(tr.logBuf, testLogSink()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	var r *relay.Relay
	var err error
	// The port was free a moment ago; a just-stopped relay may need a beat.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err = relay.New(cfg)
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tr.t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel, tr.done, tr.r = cancel, make(chan error, 1), r
	go func() { tr.done <- r.Run(ctx) }()
}

// Stop stops the relay gracefully and waits for it.
func (tr *testRelay) Stop() {
	if tr.cancel == nil {
		return
	}
	tr.cancel()
	select {
	case err := <-tr.done:
		if err != nil {
			tr.t.Errorf("relay Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		tr.t.Errorf("relay did not stop within 20s")
	}
	tr.cancel = nil
}

// Restart stops and starts the relay on the same port and data dir.
func (tr *testRelay) Restart() {
	tr.Stop()
	tr.start()
}

// Info reads the relay's INFO through a real Redis client.
func (tr *testRelay) Info(t *testing.T, section string) map[string]string {
	t.Helper()
	c, err := net.DialTimeout("tcp", tr.Addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	defer c.Close()
	out, err := roundTrip(c, "INFO", section)
	if err != nil {
		t.Fatalf("relay INFO: %v", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

// logLine returns the first line of the relay's log that holds every part,
// "" if none does.
func (tr *testRelay) logLine(parts ...string) string {
	for _, line := range strings.Split(tr.logBuf.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return line
		}
	}
	return ""
}

func (tr *testRelay) InfoInt(t *testing.T, section, key string) int64 {
	t.Helper()
	v, ok := tr.Info(t, section)[key]
	if !ok {
		t.Fatalf("relay INFO %s has no %s", section, key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("relay INFO %s: %v", key, err)
	}
	return n
}

func testLogSink() io.Writer {
	if os.Getenv("ARBOR_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func masterInt(t *testing.T, s *redistest.Server, section, key string) int64 {
	t.Helper()
	n, err := s.InfoInt(context.Background(), section, key)
	if err != nil {
		t.Fatalf("%s INFO %s: %v", s.Addr, key, err)
	}
	return n
}

func upstreamOf(s *redistest.Server) string { return "redis://" + s.Addr }

func replicaOf(t *testing.T, s *redistest.Server, port int) {
	t.Helper()
	if err := s.ReplicaOf(context.Background(), "127.0.0.1", port); err != nil {
		t.Fatalf("REPLICAOF: %v", err)
	}
}

func load(t *testing.T, s *redistest.Server, o redistest.LoadOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := redistest.LoadAllTypes(ctx, s.Client(), o); err != nil {
		t.Fatalf("LoadAllTypes: %v", err)
	}
}

// expectEq fails with got/want.
func expectEq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

var _ = fmt.Sprint
