package statusview

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/topology"
)

// WatchConfig configures Watch.
type WatchConfig struct {
	// Every is the least time between two calls of Show: a burst of
	// changes is coalesced into one call.
	Every time.Duration
	// Refresh, if positive, calls Show at least this often even without a
	// change (so times shown as "ago" move on).
	Refresh time.Duration
	// Show is called now and after every change under the cluster's
	// prefix. An error is retried at the next tick.
	Show func(ctx context.Context) error
	// OnError, if set, receives an error of Show when it differs from the
	// last one reported since Show last succeeded.
	OnError func(err error)
}

// Watch calls cfg.Show now and after every change under the cluster's
// prefix in etcd (one watch, however many consumers Show feeds), until ctx
// ends. Both `arbor status --watch` and the dashboard run on it.
func Watch(ctx context.Context, cli *clientv3.Client, cluster string, cfg WatchConfig) {
	ticker := time.NewTicker(cfg.Every)
	defer ticker.Stop()
	var refresh <-chan time.Time
	if cfg.Refresh > 0 {
		rt := time.NewTicker(cfg.Refresh)
		defer rt.Stop()
		refresh = rt.C
	}
	dirty := true
	lastErr := ""
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, topology.ClusterPrefix(cluster), clientv3.WithPrefix())
	inner:
		for {
			if dirty {
				if err := cfg.Show(ctx); err != nil && ctx.Err() == nil {
					if err.Error() != lastErr && cfg.OnError != nil {
						cfg.OnError(err)
					}
					lastErr = err.Error()
				} else {
					dirty, lastErr = false, ""
				}
			}
			select {
			case <-ctx.Done():
				break inner
			case _, ok := <-wch:
				if !ok {
					break inner // watch ended: make a new one
				}
				dirty = true
				// Coalesce a burst of changes into one call.
				select {
				case <-ticker.C:
				case <-ctx.Done():
					break inner
				}
			case <-ticker.C:
			case <-refresh:
				dirty = true
			}
		}
		cancel()
		dirty = true
		// Do not spin making watches while etcd has no leader.
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}
