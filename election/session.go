package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Session defaults.
const (
	// DefaultTTL is the session lease's TTL: a dead agent or host is seen
	// this long (plus etcd's reaping, ≤ 0.5 s) after its last keepalive.
	DefaultTTL = 5 * time.Second
	// FastTTL is the fast profile's TTL (etcd's minimum is 1.5× its
	// election timeout: 1.5 s with etcd's default 1 s).
	FastTTL = 2 * time.Second
	// DefaultFenceMargin is how long before the lease can expire on the
	// server the leader fences itself.
	DefaultFenceMargin = time.Second
)

// SessionConfig configures a Session.
type SessionConfig struct {
	// TTL is the lease's time to live, whole seconds, at least 1 s.
	TTL time.Duration
	// FenceMargin is subtracted from the lease's expiry to get the fence
	// deadline: it covers the time to fence (one Redis command) and the
	// difference between this host's clock rate and the etcd leader's.
	// It must be below TTL minus the keepalive interval (TTL/3).
	FenceMargin time.Duration
	// Logger receives the session's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Validate checks every field and names each bad one.
func (c SessionConfig) Validate() error {
	var errs []error
	if c.TTL < time.Second || c.TTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("lease-ttl %v: must be whole seconds, at least 1s", c.TTL))
	}
	if c.FenceMargin <= 0 || c.FenceMargin >= c.TTL-c.TTL/3 {
		errs = append(errs, fmt.Errorf("fence-margin %v: must be positive and below 2/3 of the lease TTL %v", c.FenceMargin, c.TTL))
	}
	return errors.Join(errs...)
}

// ErrSessionLost is returned (wrapped) when the session's lease is gone or
// its fence deadline passed.
var ErrSessionLost = errors.New("election session lost")

// Session is one candidate's lease in etcd, wrapped in a
// concurrency.Session for the Election. Its own keepalive loop
// (KeepAliveOnce every TTL/3) records when each successful keepalive was
// SENT: the server extends the lease at the moment it receives the
// request, which is no earlier than the send, so send time + TTL − margin
// is a deadline the server cannot have passed yet. The concurrency.Session's
// own keepalive cannot tell us that (and its Done can fire more than a
// second after the server expired the lease), so NewSession stops it:
// this loop is the lease's only renewer.
//
// NewSession starts the loop; Close stops it and revokes the lease. Done,
// FenceDeadline and Lease may be called from any goroutine.
type Session struct {
	cli *clientv3.Client
	cfg SessionConfig
	log *slog.Logger
	ses *concurrency.Session
	id  clientv3.LeaseID

	cancel context.CancelFunc
	loopWG sync.WaitGroup
	done   chan struct{} // closed by the keepalive loop when the session is lost

	mu       sync.Mutex
	deadline time.Time // guarded by mu; monotonic: last good keepalive send + TTL − margin
	renewals int64     // guarded by mu; successful keepalives
}

// NewSession grants a lease of cfg.TTL and starts keeping it alive. The
// caller must Close the session.
func NewSession(ctx context.Context, cli *clientv3.Client, cfg SessionConfig) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("election session: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sent := time.Now()
	g, err := cli.Grant(clientv3.WithRequireLeader(ctx), int64(cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("grant election lease: %w", err)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ses, err := concurrency.NewSession(cli, concurrency.WithLease(g.ID), concurrency.WithTTL(int(g.TTL)), concurrency.WithContext(lctx))
	if err != nil {
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, g.ID)
		rcancel()
		return nil, fmt.Errorf("election session: %w", err)
	}
	// The concurrency.Session starts a keepalive stream of its own. Stop
	// it: the Election needs only the lease ID, and a second renewer
	// would keep the lease (and a leader key on it) alive after our loop
	// gave up at the fence deadline, where the holder has already
	// fenced itself. Our loop is the lease's only renewer.
	ses.Orphan()
	s := &Session{
		cli:      cli,
		cfg:      cfg,
		log:      cfg.Logger,
		ses:      ses,
		id:       g.ID,
		cancel:   cancel,
		done:     make(chan struct{}),
		deadline: sent.Add(time.Duration(g.TTL)*time.Second - cfg.FenceMargin),
	}
	s.loopWG.Add(1)
	go func() {
		defer s.loopWG.Done()
		s.keepAlive(lctx)
	}()
	return s, nil
}

// Lease returns the session's lease.
func (s *Session) Lease() clientv3.LeaseID { return s.id }

// Done is closed when the session is lost: the lease was found gone, its
// fence deadline passed without a successful keepalive, or the session
// was closed. A leader must have fenced itself by then.
func (s *Session) Done() <-chan struct{} { return s.done }

// FenceDeadline returns the time (monotonic) by which the holder must have
// stopped acting as leader unless a keepalive succeeds first: the send
// time of the last successful keepalive + TTL − FenceMargin.
func (s *Session) FenceDeadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Renewals returns the number of successful keepalives so far.
func (s *Session) Renewals() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewals
}

// alive reports whether the session is neither lost nor past its deadline.
func (s *Session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
	}
	return time.Now().Before(s.FenceDeadline())
}

// keepAlive renews the lease every TTL/3 (sooner after a failure) until
// ctx ends, the lease is gone or the deadline passes; then it closes done.
func (s *Session) keepAlive(ctx context.Context) {
	defer close(s.done)
	interval := s.cfg.TTL / 3
	retry := max(interval/4, 50*time.Millisecond)
	next := time.Now().Add(interval)
	for {
		deadline := s.FenceDeadline()
		wait := min(time.Until(next), time.Until(deadline))
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !time.Now().Before(deadline) {
			s.log.Warn("election lease: fence deadline passed without a keepalive", "lease", fmt.Sprintf("%x", s.id))
			return
		}
		sent := time.Now()
		// The call must not outlive the deadline: a keepalive answered
		// after it changes nothing, the holder has fenced already.
		kctx, cancel := context.WithDeadline(clientv3.WithRequireLeader(ctx), deadline)
		resp, err := s.cli.KeepAliveOnce(kctx, s.id)
		cancel()
		switch {
		case err == nil:
			s.mu.Lock()
			s.deadline = sent.Add(time.Duration(resp.TTL)*time.Second - s.cfg.FenceMargin)
			s.renewals++
			s.mu.Unlock()
			next = sent.Add(interval)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.log.Warn("election lease expired on the server", "lease", fmt.Sprintf("%x", s.id))
			return
		case ctx.Err() != nil:
			return
		default:
			s.log.Debug("election keepalive failed; retrying", "err", err)
			next = time.Now().Add(retry)
		}
	}
}

// Orphan stops the keepalives without revoking the lease: it (and a
// leader key on it) expires a TTL later, as if the holder had died. It
// waits for the keepalive loop.
func (s *Session) Orphan() {
	s.cancel()
	s.loopWG.Wait()
	s.ses.Orphan()
}

// Close stops the keepalives and revokes the lease (which deletes every
// key on it, such as a leader key), within the TTL (the lease expires by
// then anyway) and ctx. It waits for the keepalive loop.
func (s *Session) Close(ctx context.Context) error {
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.TTL)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, s.id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("revoke election lease: %w", err)
	}
	return nil
}
