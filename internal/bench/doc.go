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
package bench
