// Package topology owns Arbor's control plane in etcd: the layout of the
// keys, the values stored under them, the rules a topology must obey, and the
// clients that read, write and follow it.
//
// The layout, for a cluster named C:
//
//	/arbor/C/topology/sites/<site>     Site       {"description": ...}
//	/arbor/C/topology/relays/<id>      RelaySpec  {"site", "grpc_addr", "redis_addr", "upstream"}
//	/arbor/C/topology/nodes/<id>       NodeSpec   {"site", "redis_addr", "candidate", "priority", "follow"}
//	/arbor/C/topology/master           Master     {"node": <node id>}
//	/arbor/C/status/<kind>/<id>        live status on a lease (kind "node" or "relay")
//
// Values are JSON a person can read and write with etcdctl (see codec.go):
// protojson of the arbor.v1 messages, strict, so an unknown field is an
// error. Load reads the whole topology at one revision and Validate checks
// it; Apply writes a whole topology in one transaction. A Watcher follows
// the topology prefix and keeps the last good topology in force when an edit
// is bad, exposing the reason (Rejection). PublishStatus keeps a status value
// on a lease; ReadStatus reads them all.
//
// Until the election lands, the master key says which node is the master.
package topology
