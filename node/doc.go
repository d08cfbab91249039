// Package node is the node agent that runs beside each redis-server. It owns
// one Redis: it checks it often (INFO replication, every 100 ms by default),
// keeps it replicating from what the topology in etcd says (REPLICAOF the
// redis_addr of the relay, or node, it follows; the master node is left a
// master), re-points it as soon as an edit of the topology is in force,
// and publishes the node's status (role, replication ID and offset, link
// state, lag behind the master, health, last error) on a lease under
// /arbor/<cluster>/status/node/<id>.
//
// What the agent cannot do it reports, in its status and its logs, and
// otherwise leaves the Redis as it is: a Redis it cannot reach, a node
// missing from the topology, a refused topology edit (the last good
// topology stays in force), a designated master whose Redis is a replica
// (promotion is the election's job), or a live master that is not the
// designated one (demoting it safely needs the election's fencing). Live
// is read from the Redis each time, never remembered, so a restarted
// agent keeps the rule: a master with a replication offset, connected
// replicas, keys or function libraries is live; only a fresh, empty
// redis-server is pointed at what it follows (see Agent.liveMaster).
//
// With Config.Elect the agent also takes part in the master election
// (package election; election.go here): the master's agent holds it and
// resigns when its Redis fails DownAfter checks, or pauses and demotes its
// Redis at the fence deadline when it cannot renew its lease; a candidate
// ranks the nodes when the master no longer holds it, campaigns when its
// turn comes, and promotes its Redis after catching up with the most
// advanced root relay. The master the newest record names is the master
// the agent steers by; a Redis that is a master while the record names
// another node is demoted to what it follows.
//
// The agent is one owner loop (Agent.Run) over its role (follower,
// campaigning, leader): a select on a ticker, topology changes, election
// changes, a campaign's result, the leader's session ending and the
// context. A campaign runs in its own goroutine and reports back.
package node
