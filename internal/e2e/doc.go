// Package e2e is Arbor's Jepsen-style fault suite over the seed topology
// (make e2e): each row of the fault matrix (failover-notes §5) starts a
// fresh fabric (internal/demo's StartFabric, a 3-member etcd, node agents
// as `arbor node` processes), runs a writer and a prober while it injects
// one fault, heals it, and checks the history: writable masters per epoch
// (must be 1), acknowledged writes lost (0 where promised, else within the
// row's stated bound), digests equal after the heal, and full syncs.
//
// The rows live in suite_test.go behind the e2e build tag, so `make test`
// does not run them; this file's package holds the history, the checker
// and the report, which plain tests cover.
package e2e
