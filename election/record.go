package election

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/arbor-fabric/arbor/topology"
)

// Key names under /arbor/<cluster>/election/ and /arbor/<cluster>/history/.
const (
	electionDir   = "election/"
	campaignRel   = "campaign/"
	masterRecRel  = "master"
	historyDir    = "history/"
	historyKeyFmt = "%020d"
)

// Prefix returns "/arbor/<cluster>/election/".
func Prefix(cluster string) string { return topology.ClusterPrefix(cluster) + electionDir }

// CampaignPrefix returns the prefix candidates campaign under (the
// concurrency.Election prefix); the oldest key under it is the leader.
func CampaignPrefix(cluster string) string { return Prefix(cluster) + campaignRel }

// MasterKey returns the key of the elected master's record (a Master as
// JSON), written by the leader in a transaction guarded on its epoch.
func MasterKey(cluster string) string { return Prefix(cluster) + masterRecRel }

// HistoryPrefix returns "/arbor/<cluster>/history/".
func HistoryPrefix(cluster string) string { return topology.ClusterPrefix(cluster) + historyDir }

// HistoryKey returns the key of the history entry of one epoch (zero-padded,
// so keys sort by epoch).
func HistoryKey(cluster string, epoch int64) string {
	return HistoryPrefix(cluster) + fmt.Sprintf(historyKeyFmt, epoch)
}

// Master is the record of the elected master: who, since which epoch, and
// where its replication history stood when it was promoted. Relays and node
// agents follow the master of the newest epoch only and ignore a record
// whose epoch is older than one they have seen.
type Master struct {
	// Epoch is the create revision of the winner's leader key: strictly
	// larger for every new leader. 0 is the bootstrap master named by
	// topology/master before any election.
	Epoch int64 `json:"epoch"`
	// Node is the id of the master node.
	Node string `json:"node"`
	// RedisAddr is the master's Redis address (host:port), as in its NodeSpec.
	RedisAddr string `json:"redis_addr"`
	// Replid is the replication ID the master started its epoch with (after
	// REPLICAOF NO ONE) and Offset its master_repl_offset then.
	Replid string `json:"replid,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	// Reason says why this master was elected (failover, switchover, ...).
	Reason string `json:"reason,omitempty"`
	// At is when the record was written (wall clock, for people).
	At time.Time `json:"at"`
}

// ErrBadRecord is returned (wrapped) for a master record that does not parse
// or lacks a field.
var ErrBadRecord = errors.New("bad master record")

// ParseMaster decodes and checks a master record.
func ParseMaster(b []byte) (Master, error) {
	var m Master
	if err := json.Unmarshal(b, &m); err != nil {
		return Master{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	switch {
	case m.Epoch < 0:
		return Master{}, fmt.Errorf("%w: negative epoch %d", ErrBadRecord, m.Epoch)
	case m.Node == "":
		return Master{}, fmt.Errorf("%w: no node", ErrBadRecord)
	case m.RedisAddr == "":
		return Master{}, fmt.Errorf("%w: no redis_addr", ErrBadRecord)
	}
	return m, nil
}

// Marshal encodes the record as JSON.
func (m Master) Marshal() []byte {
	b, _ := json.Marshal(m) // a struct of plain fields always encodes
	return b
}
