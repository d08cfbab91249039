package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// Status publishing defaults.
const (
	// DefaultStatusInterval is how often a status value is read and, if it
	// changed, written.
	DefaultStatusInterval = time.Second
	// DefaultStatusTTL is the lease TTL of a status value: it disappears
	// this long after its publisher died without revoking it.
	DefaultStatusTTL = 5 * time.Second
)

// StatusConfig configures a StatusPublisher.
type StatusConfig struct {
	// Cluster, Kind and ID name the key: /arbor/<Cluster>/status/<Kind>/<ID>.
	Cluster, Kind, ID string
	// Interval is how often Value is called and the value written if it
	// changed; 0 means DefaultStatusInterval. Trigger asks for an
	// earlier round.
	Interval time.Duration
	// TTL is the lease's time to live, in whole seconds (at least 1 s);
	// 0 means DefaultStatusTTL. The lease is kept alive every TTL/3.
	TTL time.Duration
	// Value returns the status to publish (see EncodeStatus). It is called
	// on Run's goroutine and must be safe against the component's own.
	Value func() any
	// Logger receives etcd errors; nil means slog.Default().
	Logger *slog.Logger
}

// StatusPublisher keeps one component's status in etcd on a lease, so the
// value disappears when the component dies. Run drives it; Trigger and Err
// may be called from any goroutine.
type StatusPublisher struct {
	cli     *clientv3.Client
	cfg     StatusConfig
	key     string
	log     *slog.Logger
	trigger chan struct{} // size 1: an early round was asked for
	mu      sync.Mutex
	lastErr error // guarded by mu; nil after a successful round
}

// NewStatusPublisher returns a publisher; call Run.
func NewStatusPublisher(cli *clientv3.Client, cfg StatusConfig) *StatusPublisher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultStatusInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultStatusTTL
	}
	if cfg.TTL < time.Second {
		cfg.TTL = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &StatusPublisher{
		cli:     cli,
		cfg:     cfg,
		key:     StatusKey(cfg.Cluster, cfg.Kind, cfg.ID),
		log:     cfg.Logger.With("key", StatusKey(cfg.Cluster, cfg.Kind, cfg.ID)),
		trigger: make(chan struct{}, 1),
	}
}

// PublishStatus keeps value() at /arbor/<cluster>/status/<kind>/<id> on a
// lease of DefaultStatusTTL, re-reading it every interval, until ctx ends;
// then it revokes the lease so the value disappears at once. See
// StatusPublisher.
func PublishStatus(ctx context.Context, cli *clientv3.Client, cluster, kind, id string, interval time.Duration, value func() any) error {
	return NewStatusPublisher(cli, StatusConfig{Cluster: cluster, Kind: kind, ID: id, Interval: interval, Value: value}).Run(ctx)
}

// Trigger asks for a round now (after a significant change), without
// waiting for the interval. It never blocks.
func (p *StatusPublisher) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Err returns the error of the last round, nil if it succeeded.
func (p *StatusPublisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Run publishes until ctx ends, then revokes the lease and returns nil.
// etcd errors are logged (once per kind of error) and retried each round;
// a lease that expired meanwhile (etcd away longer than the TTL) is
// replaced.
func (p *StatusPublisher) Run(ctx context.Context) error {
	tick := min(p.cfg.Interval, p.cfg.TTL/3)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var (
		lease     clientv3.LeaseID
		written   []byte    // value under the current lease
		refreshed time.Time // last successful keepalive or grant
		loggedErr string
		lost      bool // the lease was found gone this round
	)
	for {
		lost = false
		err := func() error {
			b, err := EncodeStatus(p.cfg.Value())
			if err != nil {
				return fmt.Errorf("encode status: %w", err)
			}
			opCtx, cancel := context.WithTimeout(ctx, max(tick, time.Second))
			defer cancel()
			if lease == 0 {
				g, err := p.cli.Grant(opCtx, int64(p.cfg.TTL/time.Second))
				if err != nil {
					return fmt.Errorf("grant lease: %w", err)
				}
				lease, written, refreshed = g.ID, nil, time.Now()
			}
			if !bytes.Equal(b, written) {
				if _, err := p.cli.Put(opCtx, p.key, string(b), clientv3.WithLease(lease)); err != nil {
					if errors.Is(err, rpctypes.ErrLeaseNotFound) {
						lease, lost = 0, true
					}
					return fmt.Errorf("put status: %w", err)
				}
				written = b
			}
			if time.Since(refreshed) >= p.cfg.TTL/3 {
				if _, err := p.cli.KeepAliveOnce(opCtx, lease); err != nil {
					if errors.Is(err, rpctypes.ErrLeaseNotFound) {
						lease, lost = 0, true
					}
					return fmt.Errorf("keep lease alive: %w", err)
				}
				refreshed = time.Now()
			}
			return nil
		}()
		if ctx.Err() != nil {
			break
		}
		p.mu.Lock()
		p.lastErr = err
		p.mu.Unlock()
		if err != nil && err.Error() != loggedErr {
			p.log.Warn("status not published", "err", err)
			loggedErr = err.Error()
		} else if err == nil && loggedErr != "" {
			p.log.Info("status published again")
			loggedErr = ""
		}
		if lost {
			continue // the lease expired: grant a new one now
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		case <-p.trigger:
		}
		if ctx.Err() != nil {
			break
		}
	}
	if lease != 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = p.cli.Revoke(rctx, lease)
		cancel()
	}
	return nil
}

// Statuses are the live status values of a cluster, read at one revision.
type Statuses struct {
	// Revision is the etcd revision read at.
	Revision int64
	// Nodes are the node agents' statuses, by node id.
	Nodes map[string]*arborv1.NodeStatus
	// Relays are the relays' statuses, by relay id.
	Relays map[string]*arborv1.RelayStatus
	// Raw holds every value by kind and id, including kinds not decoded
	// above.
	Raw map[string]map[string][]byte
	// Problems lists values that could not be decoded.
	Problems []Problem
}

// ReadStatus reads every status value of the cluster.
func ReadStatus(ctx context.Context, cli *clientv3.Client, cluster string) (*Statuses, error) {
	prefix := StatusPrefix(cluster)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read status %s: %w", prefix, err)
	}
	s := &Statuses{
		Revision: resp.Header.Revision,
		Nodes:    map[string]*arborv1.NodeStatus{},
		Relays:   map[string]*arborv1.RelayStatus{},
		Raw:      map[string]map[string][]byte{},
	}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		kind, id, ok := splitStatusKey(cluster, key)
		if !ok {
			s.Problems = append(s.Problems, Problem{Key: key, Msg: "unknown status key"})
			continue
		}
		if s.Raw[kind] == nil {
			s.Raw[kind] = map[string][]byte{}
		}
		s.Raw[kind][id] = kv.Value
		switch kind {
		case KindNode:
			st, err := DecodeNodeStatus(kv.Value)
			if err != nil {
				s.Problems = append(s.Problems, Problem{Key: key, Msg: err.Error()})
				continue
			}
			s.Nodes[id] = st
		case KindRelay:
			st, err := DecodeRelayStatus(kv.Value)
			if err != nil {
				s.Problems = append(s.Problems, Problem{Key: key, Msg: err.Error()})
				continue
			}
			s.Relays[id] = st
		}
	}
	return s, nil
}
