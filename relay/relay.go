package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
	"github.com/klauspost/compress/zstd"
)

// Relay pulls one upstream's replication stream into its store and serves it
// to Redis replicas.
type Relay struct {
	cfg         Config
	log         *slog.Logger
	store       *store.Store
	ln          net.Listener        // Redis master side
	grpcLn      net.Listener        // nil without GRPCAddr
	compression arborv1.Compression // explicit, or zstd under auto
	// autoCompression: the codec is chosen per child link by site
	// (linkCompression).
	autoCompression bool
	level           zstd.EncoderLevel // of zstd child links
	timeline        *timeline
	originLag       lagWindow // root-to-here lag of frames from a parent relay
	tracing         *tracing
	metrics         metric.Registration // nil without a MeterProvider
	started         time.Time
	runID           string

	stats         stats
	link          linkState
	masterOffset  atomic.Int64 // the newest master offset heard of
	forceFullSync atomic.Bool  // the parent did not know our history
	upstreamLost  atomic.Bool  // the relay stopped following its upstream for good (store.SyncError)
	ackPolicy     AckPolicy
	// childAcked is a coalescing notify (size 1) from the child relays'
	// ack readers to the upstream session's ack loop (see noteChildAck).
	childAcked chan struct{}

	// upMu guards what the relay is told from outside: the upstream to
	// follow, the snapshot sources, the topology in force, the parent a
	// high-availability runner has it follow.
	upMu      sync.Mutex
	topoRev   int64               // guarded by upMu: revision of the topology in force
	topoErr   string              // guarded by upMu: why the newest edit was refused
	effective string              // guarded by upMu: the parent followed, set by an HA runner (SetParent)
	move      *arborv1.ParentMove // guarded by upMu: the move in force; replaced, never modified
	upstream  Upstream            // guarded by upMu
	upChanged chan struct{}       // closed and replaced by SetUpstream; guarded by upMu
	snapSrcs  []string            // guarded by upMu: trusted snapshot sources (host:port); replaced, never modified

	bg sync.WaitGroup // child relay links, which may outlive their RPC handler briefly

	// The registries, each with its own lock (none is taken while another
	// is held):
	replicas replicaSet // Redis replicas attached over PSYNC or SYNC
	tree     tree       // child relays attached over Sync, and the relays above
	fanouts  fanoutSet  // one fanout per codec, shared by child links
}

// stats are the relay's counters, read by INFO and tests.
type stats struct {
	rawBytes          atomic.Uint64 // bytes sent to child relays before compression
	wireBytes         atomic.Uint64 // ... and after
	sharedRawBytes    atomic.Uint64 // of rawBytes, those sent in frames of a fanout
	upstreamWireBytes atomic.Int64  // bytes received from a parent relay, compressed
	upstreamRawBytes  atomic.Int64  // ... and decompressed (stream and RDB)
	fullSyncs         atomic.Int64  // full syncs served to replicas
	partialOK         atomic.Int64  // partial resyncs accepted
	partialErr        atomic.Int64  // partial resyncs refused (then full)
	upstreamFull      atomic.Int64  // full syncs received from upstream
	parentMoves       atomic.Int64  // changes of the parent followed an HA runner reported (SetParent)
	upstreamPartial   atomic.Int64  // partial resyncs received from upstream
	upstreamBytes     atomic.Int64  // stream bytes received from upstream
	connectedClients  atomic.Int64
	rejectedStreams   atomic.Int64 // upstream sessions ended by invalid bytes
	rejectedSnapshots atomic.Int64 // RDBs from a parent relay refused by the end-to-end check
	totalConnections  atomic.Int64
	// rejectedConnections counts connections refused over MaxClients.
	rejectedConnections atomic.Int64
	totalCommands       atomic.Int64
	replicaOutputByte   atomic.Int64
	// cutThroughSyncs counts the full syncs (of replicas and child relays)
	// served by following an RDB as the relay received it; cutThroughEarly
	// the RDB bytes they were sent before the relay's own transfer ended;
	// cutThroughCut those cut because the RDB was not installed.
	cutThroughSyncs atomic.Int64
	cutThroughEarly atomic.Int64
	cutThroughCut   atomic.Int64
}

// linkState is what INFO says of the upstream link.
type linkState struct {
	// lastIO is when the link last received anything (stream, heartbeat
	// or RDB bytes), unix nanos, 0 if never: set on every read and frame,
	// so outside mu.
	lastIO      atomic.Int64
	mu          sync.Mutex
	state       string    // "connect", "connecting", "sync", "connected"
	since       time.Time // when state last changed
	downSince   time.Time
	lastErr     string // why the link last failed; cleared once it is connected again
	syncBytes   int64  // RDB bytes received in the current transfer
	syncTotal   int64  // RDB size when known (-1 for EOF framing)
	syncStarted time.Time
	// cut is the parent relay's last cut or refusal of the link (nil if
	// none since the relay started); unlike lastErr it stays once the link
	// is up again, with its time, for a runner that moves the relay.
	cut *arborv1.UpstreamCut
}

func (l *linkState) set(state string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state != "connected" && l.state == "connected" {
		l.downSince = time.Now()
	}
	if state != l.state {
		l.since = time.Now()
	}
	if state == "connected" {
		// The link is up again: an error from before it is history (the
		// log keeps it), not something for an operator to act on now.
		l.lastErr = ""
	}
	l.state = state
}

// touch notes that the link received something at now.
func (l *linkState) touch(now time.Time) { l.lastIO.Store(now.UnixNano()) }

// idle returns how long ago the link last received anything, and false if
// it never did.
func (l *linkState) idle() (time.Duration, bool) {
	last := l.lastIO.Load()
	if last == 0 {
		return 0, false
	}
	return time.Since(time.Unix(0, last)), true
}

// setCut records a parent relay's cut or refusal of the link.
func (l *linkState) setCut(e *LinkError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = &arborv1.UpstreamCut{Reason: e.Reason.String(), Action: e.Action(), Message: e.Message, Parent: e.Parent,
		AtUnixMs: time.Now().UnixMilli()}
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
	comp, autoComp, _ := parseCompressionSetting(cfg.Compression)
	level, _ := ParseCompressionLevel(cfg.CompressionLevel)
	ackPolicy, _ := ParseAckPolicy(cfg.AckPolicy)
	st, err := store.Open(store.Options{
		Dir:         cfg.DataDir,
		BacklogSize: cfg.BacklogSize,
		Fsync:       fsync,
		Logger:      log,
		SyncFile:    cfg.syncFile,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.RedisAddr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen redis-addr: %w", err)
	}
	var grpcLn net.Listener
	if cfg.GRPCAddr != "" {
		if grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			ln.Close()
			st.Close()
			return nil, fmt.Errorf("listen grpc-addr: %w", err)
		}
	}
	r := &Relay{
		cfg:             cfg,
		log:             log,
		upstream:        up,
		upChanged:       make(chan struct{}),
		snapSrcs:        slices.Clone(cfg.SnapshotSources),
		store:           st,
		ln:              ln,
		grpcLn:          grpcLn,
		compression:     comp,
		autoCompression: autoComp,
		level:           level,
		ackPolicy:       ackPolicy,
		childAcked:      make(chan struct{}, 1),
		timeline:        newTimeline(),
		tracing:         newTracing(cfg),
		started:         time.Now(),
		runID:           newRunID(),
		link:            linkState{state: "connect", downSince: time.Now(), since: time.Now()},
	}
	if cfg.MeterProvider != nil {
		if r.metrics, err = r.registerMetrics(cfg.MeterProvider); err != nil {
			if grpcLn != nil {
				grpcLn.Close()
			}
			ln.Close()
			st.Close()
			return nil, fmt.Errorf("relay metrics: %w", err)
		}
	}
	return r, nil
}

// ID returns the relay's ID.
func (r *Relay) ID() string { return r.cfg.ID }

// GRPCAddr returns the address of the gRPC service, or nil without one.
func (r *Relay) GRPCAddr() net.Addr {
	if r.grpcLn == nil {
		return nil
	}
	return r.grpcLn.Addr()
}

// SetUpstream makes the relay follow another upstream (redis:// or
// arbor://): the current session ends and the new upstream is asked to
// continue from the store, with no full sync when it holds the same
// history.
func (r *Relay) SetUpstream(s string) error {
	up, err := ParseUpstream(s)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if up.Kind == UpstreamRelay {
		if err := r.cfg.TLS.Validate(); err != nil {
			return err
		}
	}
	r.upMu.Lock()
	defer r.upMu.Unlock()
	if up == r.upstream {
		return nil
	}
	r.log.Info("upstream set", "from", r.upstream.String(), "to", up.String())
	r.upstream = up
	close(r.upChanged)
	r.upChanged = make(chan struct{})
	return nil
}

// SetSnapshotSources replaces the Redis servers (host:port) the relay may
// fetch a fresher snapshot from (see Config.SnapshotSources).
func (r *Relay) SetSnapshotSources(addrs []string) error {
	if err := checkSnapshotSources(addrs); err != nil {
		return err
	}
	addrs = slices.Clone(addrs)
	r.upMu.Lock()
	defer r.upMu.Unlock()
	if slices.Equal(addrs, r.snapSrcs) {
		return nil
	}
	r.log.Info("snapshot sources set", "from", r.snapSrcs, "to", addrs)
	r.snapSrcs = addrs
	return nil
}

// snapshotSources returns the trusted snapshot sources, as upstreams with
// the sources' own credentials.
func (r *Relay) snapshotSources() []Upstream {
	r.upMu.Lock()
	addrs := r.snapSrcs
	r.upMu.Unlock()
	out := make([]Upstream, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, Upstream{Kind: UpstreamRedis, Addr: a, User: r.cfg.SnapshotSourceUser, Password: r.cfg.SnapshotSourcePassword})
	}
	return out
}

// SetTopology records the topology in force (its etcd revision) and why
// the newest edit was refused, if it was, for Status and INFO.
func (r *Relay) SetTopology(revision int64, refused string) {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	r.topoRev, r.topoErr = revision, refused
}

// SetParent records, for Status (the Status RPC and the status an etcd
// runner publishes), the parent a high-availability runner has the relay
// follow (effective: a relay id, "master", or an upstream URL without a
// topology) and its move away from the declared parent (nil while it
// follows that one). The relay keeps its own copy of move.
//
// Each change of effective after the first counts as a move (INFO
// arbor_parent_moves): away from the declared parent, onward, or back to
// it (under etcd, an edit of the relay's upstream in the topology too).
func (r *Relay) SetParent(effective string, move *arborv1.ParentMove) {
	move = proto.CloneOf(move)
	r.upMu.Lock()
	defer r.upMu.Unlock()
	if r.effective != "" && effective != r.effective {
		r.stats.parentMoves.Add(1)
	}
	r.effective, r.move = effective, move
}

// parent returns what SetParent recorded; the move is the caller's copy.
func (r *Relay) parent() (string, *arborv1.ParentMove) {
	r.upMu.Lock()
	effective, move := r.effective, r.move
	r.upMu.Unlock()
	return effective, proto.CloneOf(move)
}

func (r *Relay) topology() (int64, string) {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	return r.topoRev, r.topoErr
}

func (r *Relay) currentUpstream() Upstream {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	return r.upstream
}

// upstreamForSession returns the upstream to follow and a channel closed
// when it changes.
func (r *Relay) upstreamForSession() (Upstream, <-chan struct{}) {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	return r.upstream, r.upChanged
}

// RedisAddr returns the address the Redis master side listens on.
func (r *Relay) RedisAddr() net.Addr { return r.ln.Addr() }

// Run follows the upstream and serves replicas until ctx ends, then stops
// every goroutine it started, flushes the store and returns.
func (r *Relay) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.log.Info("relay running", "redis_addr", r.ln.Addr().String(), "upstream", r.currentUpstream().String(), "data_dir", r.cfg.DataDir)
	var wg sync.WaitGroup
	if r.grpcLn != nil {
		srv, hs, err := r.newGRPCServer()
		if err != nil {
			if r.metrics != nil {
				r.metrics.Unregister()
			}
			r.grpcLn.Close()
			r.ln.Close()
			r.store.Close()
			return err
		}
		r.log.Info("grpc service listening", "grpc_addr", r.grpcLn.Addr().String(), "tls", !r.cfg.TLS.Plaintext)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.serveGRPC(ctx, srv, hs, r.grpcLn)
		}()
	}
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
	r.replicas.closeAll("relay shutting down")
	wg.Wait()
	r.bg.Wait()
	if r.metrics != nil {
		r.metrics.Unregister()
	}
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
