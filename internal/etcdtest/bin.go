package etcdtest

import (
	"context"
	"sync"
	"testing"

	"github.com/arbor-fabric/arbor/internal/etcdbin"
)

// binaries builds (or finds in the cache) both binaries once per process.
var binaries = sync.OnceValues(func() (binPaths, error) {
	var b binPaths
	var err error
	if b.etcd, err = etcdbin.Etcd(context.Background(), nil); err != nil {
		return binPaths{}, err
	}
	if b.etcdctl, err = etcdbin.Etcdctl(context.Background(), nil); err != nil {
		return binPaths{}, err
	}
	return b, nil
})

type binPaths struct{ etcd, etcdctl string }

// EtcdBin returns the path of the etcd server binary, building it on first
// use (see package etcdbin). It fails the test if the build fails.
func EtcdBin(t testing.TB) string {
	t.Helper()
	b, err := binaries()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return b.etcd
}

// EtcdctlBin returns the path of the etcdctl binary, building it on first
// use (see package etcdbin). It fails the test if the build fails.
func EtcdctlBin(t testing.TB) string {
	t.Helper()
	b, err := binaries()
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return b.etcdctl
}
