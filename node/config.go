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
	// its rank among candidates. They are recorded (logs, and checked
	// against the topology) for the election to come.
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
	// Logger receives the agent's logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		CheckInterval:  100 * time.Millisecond,
		RedisTimeout:   time.Second,
		StatusInterval: time.Second,
		StatusTTL:      5 * time.Second,
	}
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
