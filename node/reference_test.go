package node

import (
	"testing"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// TestReferenceRaisedByNodeAhead: the relay's status in etcd trails a
// replica on its history (statuses are published on their own clocks), so
// the reference is the replica's offset: a candidate at the relay's stale
// offset lags. A node on another history, or unhealthy, or the ranking
// node itself on another history, does not move the reference.
func TestReferenceRaisedByNodeAhead(t *testing.T) {
	const h, other = "aaaa", "bbbb"
	replica := arborv1.NodeRole_NODE_ROLE_REPLICA
	sts := &topology.Statuses{
		Relays: map[string]*arborv1.RelayStatus{
			"r1": {Replid: h, StoredOffset: 1000},
		},
		Nodes: map[string]*arborv1.NodeStatus{
			"b":     {Replid: h, Offset: 1000, Healthy: true, Role: replica},
			"r":     {Replid: h, Offset: 1500, Healthy: true, Role: replica},
			"rogue": {Replid: other, Offset: 9000, Healthy: true, Role: replica},
			"sick":  {Replid: h, Offset: 7000, Healthy: false, Role: replica},
		},
	}
	ref := reference(sts, "b", replInfo{replid: h, offset: 1000})
	if ref.Replid != h || ref.Offset != 1500 {
		t.Fatalf("reference %+v: want %s at 1500 (r, ahead of the relay's status)", ref, h)
	}
	ref = reference(sts, "x", replInfo{replid: other, offset: 5000})
	if ref.Replid != h || ref.Offset != 1500 {
		t.Fatalf("reference %+v: want %s at 1500 (the ranking node's other history ignored)", ref, h)
	}

	// Without a relay status, the most advanced healthy node's history.
	sts.Relays = nil
	ref = reference(sts, "b", replInfo{replid: h, offset: 1000})
	if ref.Replid != other || ref.Offset != 9000 {
		t.Fatalf("reference %+v: want %s at 9000 (no relay: the most advanced node)", ref, other)
	}
}
