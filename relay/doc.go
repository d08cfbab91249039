// Package relay is the Arbor relay daemon. A relay pulls one upstream's
// replication stream once (today: a Redis master, as a replica using PSYNC),
// keeps it in a store on disk (package relay/store), and serves it to any
// number of stock redis-server replicas that run REPLICAOF <relay>, speaking
// the master side of Redis replication with the upstream's own replication ID
// and offsets, so that a replica can move between the relay and the master
// with a partial resync.
//
// A Relay is built with New and run with Run, which blocks until its context
// ends and waits for every goroutine it started.
package relay
