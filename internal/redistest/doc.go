// Package redistest runs real redis-server processes on loopback for
// integration tests of the replication relay. It owns the process lifecycle
// (Start, Kill, Stop, Restart, all cleaned up through testing.TB), the
// polling helpers (WaitFor, WaitInSync, CompareDigests) that decide whether
// replicas hold the master's data, and the workloads (LoadAllTypes,
// WriteLoad) that put every Redis 7.0 data type and replication-stream
// rewrite on the wire.
//
// Every helper that takes a testing.TB may call t.Fatal and so must run on
// the test goroutine. Tests skip when no redis-server binary is installed.
package redistest
