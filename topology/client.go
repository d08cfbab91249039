package topology

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// DialOptions returns the gRPC dial options Arbor's etcd clients should add
// to clientv3.Config.DialOptions: reconnect within about a second of etcd
// coming back. (gRPC's default backoff grows to two minutes, so a client
// that saw etcd down for a while would keep watchers and leases idle long
// after etcd returned.)
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: 2 * time.Second,
		}),
	}
}
