package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/arbor-fabric/arbor/relay/store"
)

// Config configures a Relay. Build one with DefaultConfig and check it with
// Validate; New does both.
type Config struct {
	// ID names the relay (in logs, INFO and, later, the topology).
	ID string
	// Site is the datacenter the relay runs in.
	Site string
	// DataDir holds the relay's store. It must not be shared.
	DataDir string
	// Upstream is the Redis master to follow:
	// redis://[user:password@]host:port.
	Upstream string
	// RedisAddr is the address the Redis master side listens on (host:port).
	RedisAddr string
	// GRPCAddr is the address of the gRPC service (child relays, Status,
	// health, reflection). Empty disables it.
	GRPCAddr string
	// TLS secures the gRPC service and the link to a parent relay.
	TLS TLSConfig
	// Compression is the preferred codec for child relay links: auto
	// (CompressionAuto: s2 to a child of this relay's Site, zstd to any
	// other), or zstd, s2 or none on every link. The child may refuse it
	// (negotiate).
	Compression string
	// CompressionLevel is how hard zstd works on child links: fastest,
	// default, better or best (ParseCompressionLevel). A higher level
	// sends fewer bytes for more CPU per byte, once per codec for all the
	// children that keep up (fanout.go), and once more for each that
	// does not.
	CompressionLevel string
	// BatchDelay bounds how long stream bytes may wait to be batched into
	// one frame for a child relay (0: a frame takes what is there, so under
	// load frames grow by themselves and at low rates nothing waits; zstd
	// keeps its context across frames, so small frames cost little ratio);
	// BatchBytes bounds a frame's size.
	BatchDelay time.Duration
	BatchBytes int
	// SlowConsumerTimeout cuts a child whose link accepts nothing for this
	// long.
	SlowConsumerTimeout time.Duration
	// SubscribeTimeout bounds the wait for the first frame of a Sync
	// stream (Subscribe or ResumeRdb): a peer that opens a stream and sends
	// nothing is cut.
	SubscribeTimeout time.Duration
	// MaxChildLag cuts a child relay that falls this many bytes behind; it
	// resumes from the backlog (or gets a full sync beyond it).
	MaxChildLag int64
	// RedisPassword, when set, is required from Redis clients (AUTH), as
	// requirepass; replicas set masterauth to it.
	RedisPassword string
	// SnapshotSources are the Redis servers (host:port) the operator trusts
	// to serve a fresher RDB of the master's history when the snapshot pins
	// the backlog over BacklogSize: typically the site's own backup nodes,
	// replicas of this relay, so that the fork for the RDB happens there
	// and not on the master. Only these are asked, never an address a
	// replica announces; each RDB is checked (history, offset, CRC64, RDB
	// version: see store.RefreshRules). Empty: the upstream alone is
	// asked. Under etcd the runner sets them from the topology
	// (SetSnapshotSources).
	SnapshotSources []string
	// SnapshotSourceUser and SnapshotSourcePassword authenticate the relay
	// to the snapshot sources (AUTH; no password: no AUTH). The upstream's
	// credentials are only ever sent to the upstream.
	SnapshotSourceUser     string
	SnapshotSourcePassword string
	// BacklogSize bounds the stream bytes kept on disk.
	BacklogSize int64
	// Fsync is the flush policy of the store: always, everysec or no. It
	// also says what the relay's acks upstream mean: the relay acks only
	// what the store counts as durable (store.State.Durable): flushed to
	// disk with always (survives a power loss), flushed at most about a
	// second ago with everysec, and merely written to the operating system
	// with no (survives a crash of the relay, not of its host).
	Fsync string
	// AckPolicy is what a root relay acks to its Redis master: "local"
	// (what it durably stored) or "remote" (what a relay in another site
	// durably stored; see AckRemote). It applies while the relay follows a
	// Redis master: while it follows a parent relay it acks its own durable
	// offset whatever the policy, so a relay that becomes a root in a
	// failover (the topology repoints it at the new master) takes the
	// policy up then.
	AckPolicy string
	// ReplTimeout is how long a replication link may stay silent before it
	// is dropped (Redis' repl-timeout).
	ReplTimeout time.Duration
	// UpstreamCoalesce, when above 0, lets a Redis master's stream gather
	// in the relay's socket, up to upstreamCoalesceMark bytes or for this
	// long, before the relay reads it, while the stream flows (see
	// upstream_coalesce.go): fewer wakeups of the relay, which the master
	// pays for in its own write path, for up to this much more lag per
	// hop. 0 (the default) reads each arrival at once.
	UpstreamCoalesce time.Duration
	// FutureOffsetWait is how long a replica that asks for an offset the
	// relay has not received yet waits for it before a full sync.
	FutureOffsetWait time.Duration
	// HandshakeTimeout bounds each command of a Redis connection that is
	// not (yet) a replication link: a client that sends nothing, or does
	// not finish a command, for this long is closed. A replica's handshake
	// takes milliseconds; the bound keeps silent and slow connections from
	// holding slots of MaxClients. Redis closes idle clients only when
	// `timeout` is set, but the relay serves no application clients, so
	// an idle INFO client is dropped too (redis-cli reconnects). Once a
	// connection has sent PSYNC or SYNC, ReplTimeout applies instead.
	HandshakeTimeout time.Duration
	// MaxClients caps the connections on the Redis port, replicas
	// included, as Redis' maxclients: one more is answered "-ERR max number
	// of clients reached" and closed. Redis' default is 10000; the relay's
	// clients are a site's replicas and a few tools, and a lower cap bounds
	// the memory that connections can hold before AUTH (about 200 KiB
	// each: a 16 KiB read buffer and 10 arguments of 16 KiB).
	MaxClients int
	// Logger receives the relay's logs; nil means slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the relay's metrics (see metrics.go); nil
	// means none are recorded.
	MeterProvider metric.MeterProvider
	// TracerProvider receives the relay's spans (see tracing.go); nil means
	// none are recorded, though trace contexts from a parent are still
	// passed on to child relays.
	TracerProvider trace.TracerProvider
	// TraceEvery is how often a root relay (one that follows Redis) samples
	// a stream frame of each child link for tracing; 0 samples none.
	TraceEvery time.Duration

	// syncFile replaces the store's flush (store.Options.SyncFile); set by
	// tests only (export_test.go).
	syncFile func(*os.File) error
	// rdbChunk, when set by tests, sees (and may change or hold) every RDB
	// chunk sent to a child relay before its checksum is computed, as if it
	// had been read so from the disk.
	rdbChunk func(index uint32, raw []byte)
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		RedisAddr:           "127.0.0.1:6380",
		Compression:         CompressionAuto,
		CompressionLevel:    "default",
		BatchDelay:          0,
		BatchBytes:          64 << 10,
		SlowConsumerTimeout: 30 * time.Second,
		SubscribeTimeout:    10 * time.Second,
		MaxChildLag:         512 << 20,
		BacklogSize:         1 << 30,
		Fsync:               "everysec",
		AckPolicy:           "local",
		ReplTimeout:         60 * time.Second,
		FutureOffsetWait:    10 * time.Second,
		HandshakeTimeout:    60 * time.Second,
		MaxClients:          1000,
		TraceEvery:          time.Second,
	}
}

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id: required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: required"))
	}
	if c.Upstream == "" {
		errs = append(errs, errors.New("upstream: required (redis://[user:password@]host:port or arbor://host:port)"))
	} else if _, err := ParseUpstream(c.Upstream); err != nil {
		errs = append(errs, fmt.Errorf("upstream: %w", err))
	}
	if _, _, err := net.SplitHostPort(c.RedisAddr); err != nil {
		errs = append(errs, fmt.Errorf("redis-addr %q: %w", c.RedisAddr, err))
	}
	if err := checkSnapshotSources(c.SnapshotSources); err != nil {
		errs = append(errs, err)
	}
	if c.BacklogSize < 1<<20 {
		errs = append(errs, fmt.Errorf("backlog-size %d: must be at least 1 MiB", c.BacklogSize))
	}
	if _, err := store.ParseFsync(c.Fsync); err != nil {
		errs = append(errs, fmt.Errorf("fsync: %w", err))
	}
	if _, err := ParseAckPolicy(c.AckPolicy); err != nil {
		errs = append(errs, fmt.Errorf("ack-policy: %w", err))
	}
	if c.ReplTimeout < time.Second {
		errs = append(errs, fmt.Errorf("repl-timeout %v: must be at least 1s", c.ReplTimeout))
	}
	if c.UpstreamCoalesce < 0 || c.UpstreamCoalesce > maxUpstreamCoalesce {
		errs = append(errs, fmt.Errorf("upstream-coalesce %v: must be from 0 to %v", c.UpstreamCoalesce, maxUpstreamCoalesce))
	}
	if c.GRPCAddr != "" {
		if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
			errs = append(errs, fmt.Errorf("grpc-addr %q: %w", c.GRPCAddr, err))
		}
	}
	if up, err := ParseUpstream(c.Upstream); err == nil && (up.Kind == UpstreamRelay || c.GRPCAddr != "") {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if _, _, err := parseCompressionSetting(c.Compression); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParseCompressionLevel(c.CompressionLevel); err != nil {
		errs = append(errs, err)
	}
	if c.BatchDelay < 0 || c.BatchDelay > time.Second {
		errs = append(errs, fmt.Errorf("batch-delay %v: want 0 to 1s", c.BatchDelay))
	}
	if c.BatchBytes < 1<<10 || c.BatchBytes > 4<<20 {
		errs = append(errs, fmt.Errorf("batch-bytes %d: want 1 KiB to 4 MiB", c.BatchBytes))
	}
	if c.SlowConsumerTimeout < time.Second {
		errs = append(errs, fmt.Errorf("slow-consumer-timeout %v: must be at least 1s", c.SlowConsumerTimeout))
	}
	if c.SubscribeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("subscribe-timeout %v: must be positive", c.SubscribeTimeout))
	}
	if c.MaxChildLag < 1<<20 {
		errs = append(errs, fmt.Errorf("max-child-lag %d: must be at least 1 MiB", c.MaxChildLag))
	}
	if c.FutureOffsetWait < 0 {
		errs = append(errs, fmt.Errorf("future-offset-wait %v: must not be negative", c.FutureOffsetWait))
	}
	if c.HandshakeTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("handshake-timeout %v: must be at least 100ms", c.HandshakeTimeout))
	}
	if c.MaxClients < 1 {
		errs = append(errs, fmt.Errorf("max-clients %d: must be at least 1", c.MaxClients))
	}
	if c.TraceEvery < 0 {
		errs = append(errs, fmt.Errorf("trace-every %v: must not be negative", c.TraceEvery))
	}
	return errors.Join(errs...)
}

// Upstream kinds.
const (
	UpstreamRedis = "redis" // a Redis master, followed with PSYNC
	UpstreamRelay = "arbor" // a parent relay, followed over gRPC
)

// Upstream is a parsed upstream address.
type Upstream struct {
	Kind     string // UpstreamRedis or UpstreamRelay
	Addr     string // host:port
	User     string // empty: AUTH with the password alone
	Password string // empty: no AUTH
}

// String renders the upstream as a URL without its password.
func (u Upstream) String() string {
	if u.User != "" {
		return fmt.Sprintf("%s://%s@%s", u.Kind, u.User, u.Addr)
	}
	return fmt.Sprintf("%s://%s", u.Kind, u.Addr)
}

// ParseUpstream parses redis://[user:password@]host:port (a password alone
// may be given as redis://:password@host:port) or arbor://host:port (a
// parent relay's gRPC address).
func ParseUpstream(s string) (Upstream, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Upstream{}, err
	}
	if u.Scheme != UpstreamRedis && u.Scheme != UpstreamRelay {
		return Upstream{}, fmt.Errorf("scheme %q: want redis:// (a Redis master) or arbor:// (a parent relay)", u.Scheme)
	}
	if u.Scheme == UpstreamRelay && u.User != nil {
		return Upstream{}, errors.New("arbor:// takes no user or password: relays authenticate with TLS certificates")
	}
	if u.Path != "" && u.Path != "/" {
		return Upstream{}, fmt.Errorf("path %q: a replication upstream has no database number", u.Path)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return Upstream{}, fmt.Errorf("address %q: %w", u.Host, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return Upstream{}, fmt.Errorf("port %q: not a TCP port", port)
	}
	up := Upstream{Kind: u.Scheme, Addr: net.JoinHostPort(host, port)}
	if u.User != nil {
		up.User = u.User.Username()
		up.Password, _ = u.User.Password()
		if up.Password == "" {
			// redis://password@host: the lone field is the password.
			up.User, up.Password = "", up.User
		}
	}
	return up, nil
}

// checkSnapshotSources checks that every snapshot source is a host:port.
func checkSnapshotSources(addrs []string) error {
	var errs []error
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err == nil && host == "" {
			err = errors.New("no host")
		}
		if p, perr := strconv.Atoi(port); err == nil && (perr != nil || p <= 0 || p > 65535) {
			err = fmt.Errorf("port %q: not a TCP port", port)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot-source %q: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
