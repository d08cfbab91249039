// Package relay is the Arbor relay daemon. A relay pulls one upstream's
// replication stream once (today: a Redis master, as a replica using PSYNC),
// keeps it in a store on disk (package relay/store), and serves it to any
// number of stock redis-server replicas that run REPLICAOF <relay>, speaking
// the master side of Redis replication with the upstream's own replication ID
// and offsets, so that a replica can move between the relay and the master
// with a partial resync.
//
// The files follow the bytes. In: upstream.go runs the session with the
// upstream, upstream_redis.go (PSYNC from a Redis master) or
// upstream_relay.go (Sync from a parent relay), and both store the stream
// through the one ingest path, ingest.go. Out: downstream.go holds what both
// downstreams share (the one wait to continue, over the store's one
// continuation rule, store.Continue), downstream_redis.go serves Redis
// replicas, downstream_relay.go serves child relays their Sync, whose frames
// feeder.go sends (its own, or a fanout's, fanout.go). errors.go holds the
// domain errors and the one table that maps them to gRPC status codes;
// tree.go the relay's place in the tree (children, chain, cycle checks).
//
// A Relay is built with New and run with Run, which blocks until its context
// ends and waits for every goroutine it started.
package relay
