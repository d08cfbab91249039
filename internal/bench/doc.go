// Package bench measures Redis replication through an Arbor relay against
// native Redis replication, side by side on one machine. It owns the whole
// run: it starts redis-server processes and the relay (the arbor binary, as a
// child process, so that its CPU time and peak RSS are its own) on free
// loopback ports under a temporary directory, drives the load, reads CPU time
// and memory from /proc, checks the replicas' DEBUG DIGEST against their
// master's, and kills every process it started before Run returns, also when
// the context ends early.
//
// Two phases exist. PhaseThroughput saturates a master with pipelined SETs,
// alternating between a master with one native replica and a master with a
// relay (and a replica behind it), and compares the masters' write rates and
// the CPU the replication consumers spend per GiB of stream. PhaseLag writes
// at a fixed rate to one master that feeds a native replica and a relay (with
// its replica) at the same time, and times keyspace notifications on both
// replicas to get the end-to-end lag of each path, while measuring CPU per
// GiB of the identical stream.
//
// RunTree ("arbor bench tree") compares a relay tree with native
// replication for the seed shape: one master in site A feeding, at once,
// native chains (S-1 across the link, S-2 from S-1) and relay-a, whose
// child relays in sites B and C serve both of their site's replicas. Every
// inter-site link is an internal/wan Bridge with a bandwidth limit and
// added latency, one per site and path, so the bytes each path sends
// across are counted. The workload is realistic text (docGen: JSON
// profiles, log lines, counters, hashes). It measures inter-site bytes per
// MiB of master stream, the lag of S-2 in site B on both paths, and the
// time to full-sync a filled master over a limited link.
//
// RunFailover ("arbor bench failover") measures what a master's death
// costs under a failover system: the same shape (a master, a backup that
// may be promoted, two read replicas that may not) is started fresh for
// every run, a writer loop writes to whatever address the system names as
// the master, the master's redis-server is killed with SIGKILL, and the run
// times how long until a write is accepted on the new master and until
// every replica streams from it again, then counts the acknowledged writes
// the new master lacks and the full syncs it served. Each system is a
// FailoverSystem: Redis Sentinel is one; Arbor's election plugs in the same
// way.
package bench
