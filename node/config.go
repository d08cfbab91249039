package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/topology"
)

// Config configures an Agent. Build one with DefaultConfig and check it
// with Validate; New does both.
type Config struct {
	// ID is the node's id in the topology (/arbor/<cluster>/topology/nodes/<ID>).
	ID string
	// Site is the site the node runs in. The topology's site wins; a
	// difference is reported.
	Site string
	// Redis is the node's Redis: redis://[user:password@]host:port.
	Redis string
	// Cluster names the cluster in etcd (/arbor/<Cluster>/...).
	Cluster string
	// Candidate and Priority are the node's wish to be elected master and
	// its rank among candidates, checked against the topology (whose
	// values the election uses; a difference is reported).
	Candidate bool
	Priority  int
	// CheckInterval is how often the agent checks its Redis and its place
	// in the topology.
	CheckInterval time.Duration
	// RedisTimeout bounds one Redis command (and its dial).
	RedisTimeout time.Duration
	// StatusInterval is how often the status is written to etcd when it
	// changed; a change of role, link, health or error is written at once.
	StatusInterval time.Duration
	// StatusTTL is the lease TTL of the status: it disappears this long
	// after the agent died.
	StatusTTL time.Duration
	// Elect makes the agent take part in the master election (package
	// election): the master's agent holds it (campaigns at start when its
	// node is the topology's master and no record exists, or the record
	// names it), and a candidate (the topology's candidate with priority
	// > 0) campaigns when the record's master holds it no more. Off, the
	// agent only steers its Redis by the topology, as before.
	Elect bool
	// LeaseTTL is the election lease's TTL (whole seconds): a dead agent
	// or host is replaced about this long after its last keepalive.
	LeaseTTL time.Duration
	// FenceMargin is how long before its lease can expire on the server
	// the master's agent pauses writes and demotes its Redis, when it
	// could not renew the lease.
	FenceMargin time.Duration
	// DownAfter is how many failed checks in a row (one per
	// CheckInterval) make the master's agent resign at once.
	DownAfter int
	// MaxLagBytes is how far behind the most advanced relay a candidate
	// may be and still be promoted.
	MaxLagBytes int64
	// DeferStep is how long a candidate ranked k waits, times k-1, for a
	// better candidate to take over before it campaigns itself.
	DeferStep time.Duration
	// CatchUpTimeout bounds the winner's wait to reach the most advanced
	// root relay's stored offset before it is promoted; past it the
	// winner resigns.
	CatchUpTimeout time.Duration
	// MinReplicas, if > 0, is set as min-replicas-to-write on the Redis
	// while it is the elected master, with MinReplicasMaxLag (whole
	// seconds) as min-replicas-max-lag: a master that fewer relays ack
	// refuses writes on its own, even with its agent dead or paused.
	// Relays send REPLCONF ACK every second and count as replicas.
	MinReplicas       int
	MinReplicasMaxLag time.Duration
	// MoveAfter is how long the relay the Redis follows may be unhealthy
	// (the Redis' link down, or the relay not answering PING) before the
	// agent points the Redis at another healthy relay (see
	// topology.Mover).
	MoveAfter time.Duration
	// HoldDown is how long the declared relay must be healthy before a
	// Redis that moved away returns to it.
	HoldDown time.Duration
	// Logger receives the agent's logs; nil means slog.Default().
	Logger *slog.Logger
	// MeterProvider, if set, receives the election metrics (epoch, role,
	// failovers and their durations); nil means none.
	MeterProvider metric.MeterProvider
	// DeadManSwitch, if set, is the command (argv) of the dead-man switch
	// process the agent runs beside itself with --elect (arbor node
	// dead-man-switch): while the agent leads, the switch knows its fence
	// deadline, and if the agent dies it fences the Redis then. nil: none.
	DeadManSwitch []string
	// TracerProvider, if set, receives a span per take-over (failover,
	// switchover, forced failover, bootstrap) with a child span per step
	// (see TakeOverSpan); nil means none.
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		CheckInterval:  100 * time.Millisecond,
		RedisTimeout:   time.Second,
		StatusInterval: time.Second,
		StatusTTL:      5 * time.Second,

		LeaseTTL:          election.DefaultTTL,
		FenceMargin:       election.DefaultFenceMargin,
		DownAfter:         3,
		MaxLagBytes:       election.DefaultMaxLagBytes,
		DeferStep:         time.Second,
		CatchUpTimeout:    5 * time.Second,
		MinReplicasMaxLag: 2 * time.Second,
		MoveAfter:         topology.DefaultSilence,
		HoldDown:          topology.DefaultHoldDown,
	}
}

// FastProfile changes c to the fast election profile: a 2 s lease and a
// 500 ms fence margin. A dead host is replaced in about 2-3 s instead of
// 5-6 s; the cost is a keepalive every 667 ms per agent and a master that
// fences itself when etcd does not answer for 1.5 s (an etcd leader
// election, or a slow disk, can then demote a healthy master). etcd's
// minimum lease TTL is 1.5x its election timeout, so etcd members must run
// with --election-timeout at most 1333 ms.
func (c *Config) FastProfile() {
	c.LeaseTTL = election.FastTTL
	c.FenceMargin = 500 * time.Millisecond
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	var errs []error
	if !idPattern.MatchString(c.ID) {
		errs = append(errs, fmt.Errorf("id %q: want letters, digits, '.', '_', '-'", c.ID))
	}
	if c.Site != "" && !idPattern.MatchString(c.Site) {
		errs = append(errs, fmt.Errorf("site %q: want letters, digits, '.', '_', '-'", c.Site))
	}
	if _, err := parseRedisURL(c.Redis); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if !idPattern.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("cluster %q: want letters, digits, '.', '_', '-'", c.Cluster))
	}
	if c.Priority < 0 {
		errs = append(errs, fmt.Errorf("priority %d: must not be negative", c.Priority))
	}
	if c.CheckInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("check-interval %v: must be at least 10ms", c.CheckInterval))
	}
	if c.RedisTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("redis-timeout %v: must be at least 10ms", c.RedisTimeout))
	}
	if c.StatusInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("status-interval %v: must be at least 10ms", c.StatusInterval))
	}
	if c.StatusTTL < time.Second || c.StatusTTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("status-ttl %v: must be whole seconds, at least 1s", c.StatusTTL))
	}
	if err := (election.SessionConfig{TTL: c.LeaseTTL, FenceMargin: c.FenceMargin}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DownAfter < 1 {
		errs = append(errs, fmt.Errorf("down-after %d: must be at least 1", c.DownAfter))
	}
	if c.MaxLagBytes < 0 {
		errs = append(errs, fmt.Errorf("max-lag-bytes %d: must not be negative", c.MaxLagBytes))
	}
	if c.DeferStep < 0 {
		errs = append(errs, fmt.Errorf("defer-step %v: must not be negative", c.DeferStep))
	}
	if c.CatchUpTimeout <= 0 {
		errs = append(errs, fmt.Errorf("catch-up-timeout %v: must be positive", c.CatchUpTimeout))
	}
	if c.MinReplicas < 0 {
		errs = append(errs, fmt.Errorf("min-replicas %d: must not be negative", c.MinReplicas))
	}
	if c.MoveAfter < topology.MinSilence {
		errs = append(errs, fmt.Errorf("move-after %v: must be at least %v, or an idle but live link looks silent", c.MoveAfter, topology.MinSilence))
	}
	if c.HoldDown < 0 {
		errs = append(errs, fmt.Errorf("hold-down %v: must not be negative", c.HoldDown))
	}
	if c.MinReplicas > 0 && (c.MinReplicasMaxLag < time.Second || c.MinReplicasMaxLag%time.Second != 0 || c.MinReplicasMaxLag >= c.LeaseTTL) {
		errs = append(errs, fmt.Errorf("min-replicas-max-lag %v: must be whole seconds, at least 1s, below the lease TTL %v", c.MinReplicasMaxLag, c.LeaseTTL))
	}
	return errors.Join(errs...)
}

// redisTarget is a parsed redis:// URL.
type redisTarget struct {
	addr     string // host:port
	user     string
	password string
}

// parseRedisURL parses redis://[user:password@]host:port (a lone
// redis://password@host:port is a password).
func parseRedisURL(s string) (redisTarget, error) {
	u, err := url.Parse(s)
	if err != nil {
		return redisTarget{}, err
	}
	if u.Scheme != "redis" {
		return redisTarget{}, fmt.Errorf("%q: want redis://[user:password@]host:port", s)
	}
	if u.Path != "" && u.Path != "/" {
		return redisTarget{}, fmt.Errorf("%q: no database number, please", s)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return redisTarget{}, fmt.Errorf("address %q: %w", u.Host, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 || host == "" {
		return redisTarget{}, fmt.Errorf("address %q: want host:port", u.Host)
	}
	r := redisTarget{addr: u.Host}
	if u.User != nil {
		r.user = u.User.Username()
		pw, ok := u.User.Password()
		if ok {
			r.password = pw
		} else {
			r.user, r.password = "", r.user
		}
	}
	return r, nil
}
