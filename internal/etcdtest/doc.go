// Package etcdtest runs the real etcd server and etcdctl binaries for
// integration tests: a single member or a three-member cluster on free
// loopback ports, each member with its own data directory, fast elections
// (heartbeat 10 ms, election timeout 100 ms) and no fsync. Members can be
// stopped, killed and started again on the same ports and data, so tests can
// take etcd away and bring it back under a running client.
//
// The binaries are built from the tools module (tools/go.mod pins
// go.etcd.io/etcd/server/v3 and go.etcd.io/etcd/etcdctl/v3) the first time a
// test needs them, and cached in the system temporary directory under a name
// derived from tools/go.mod, tools/go.sum and the Go version, so parallel
// test packages, `arbor demo` and later runs share one build (package
// etcdbin). A cold build of the server takes about a minute and a half on
// two cores.
//
// Every helper that takes a testing.TB may call t.Fatal and so must run on
// the test goroutine. Processes are killed by the cleanups registered on t.
package etcdtest
