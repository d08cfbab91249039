package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arbor-fabric/arbor/relay/store"
)

// Relay pulls one upstream's replication stream into its store and serves it
// to Redis replicas.
type Relay struct {
	cfg      Config
	log      *slog.Logger
	upstream Upstream
	store    *store.Store
	ln       net.Listener
	started  time.Time
	runID    string

	stats stats
	link  linkState

	mu       sync.Mutex
	replicas map[int64]*replica // guarded by mu
	nextID   int64              // guarded by mu
}

// stats are the relay's counters, read by INFO and tests.
type stats struct {
	fullSyncs         atomic.Int64 // full syncs served to replicas
	partialOK         atomic.Int64 // partial resyncs accepted
	partialErr        atomic.Int64 // partial resyncs refused (then full)
	upstreamFull      atomic.Int64 // full syncs received from upstream
	upstreamPartial   atomic.Int64 // partial resyncs received from upstream
	upstreamBytes     atomic.Int64 // stream bytes received from upstream
	connectedClients  atomic.Int64
	rejectedStreams   atomic.Int64 // upstream sessions ended by invalid bytes
	totalConnections  atomic.Int64
	totalCommands     atomic.Int64
	replicaOutputByte atomic.Int64
}

// linkState is what INFO says of the upstream link.
type linkState struct {
	mu          sync.Mutex
	state       string    // "connect", "connecting", "sync", "connected"
	lastIO      time.Time // last byte received
	downSince   time.Time
	lastErr     string
	syncBytes   int64 // RDB bytes received in the current transfer
	syncTotal   int64 // RDB size when known (-1 for EOF framing)
	syncStarted time.Time
}

func (l *linkState) set(state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state != "connected" && l.state == "connected" {
		l.downSince = time.Now()
	}
	l.state = state
}

func (l *linkState) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr = err.Error()
}

// New checks cfg, opens the store and listens on cfg.RedisAddr. Call Run.
func New(cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("relay", cfg.ID)
	up, _ := ParseUpstream(cfg.Upstream)
	fsync, _ := store.ParseFsync(cfg.Fsync)
	st, err := store.Open(store.Options{
		Dir:         cfg.DataDir,
		BacklogSize: cfg.BacklogSize,
		Fsync:       fsync,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.RedisAddr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen redis-addr: %w", err)
	}
	return &Relay{
		cfg:      cfg,
		log:      log,
		upstream: up,
		store:    st,
		ln:       ln,
		started:  time.Now(),
		runID:    newRunID(),
		link:     linkState{state: "connect", downSince: time.Now()},
		replicas: make(map[int64]*replica),
	}, nil
}

// RedisAddr returns the address the Redis master side listens on.
func (r *Relay) RedisAddr() net.Addr { return r.ln.Addr() }

// Run follows the upstream and serves replicas until ctx ends, then stops
// every goroutine it started, flushes the store and returns.
func (r *Relay) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.log.Info("relay running", "redis_addr", r.ln.Addr().String(), "upstream", r.upstream.Addr, "data_dir", r.cfg.DataDir)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		r.runUpstream(ctx)
	}()
	go func() {
		defer wg.Done()
		r.refreshSnapshots(ctx)
	}()
	go func() {
		defer wg.Done()
		r.serveRedis(ctx)
	}()
	<-ctx.Done()
	r.ln.Close()
	r.closeReplicas("relay shutting down")
	wg.Wait()
	if err := r.store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	r.log.Info("relay stopped", "stored_offset", r.store.End())
	return nil
}

func newRunID() string {
	var b [20]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
