// Package election decides which Redis node is the master of a cluster, and
// since when.
//
// It is a thin layer over etcd's client/v3/concurrency: candidates campaign
// on a session lease under CampaignPrefix; the winner's epoch is the create
// revision of its leader key, a number etcd makes strictly larger for every
// new leader. Every write a leader makes (the master record under
// MasterKey, a history entry) is a transaction guarded on that revision, so
// a deposed leader can never overwrite its successor. Followers, relays and
// node agents read the master record and obey only the newest epoch.
package election
