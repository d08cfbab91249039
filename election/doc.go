// Package election decides which Redis node is the master of a cluster, and
// since when.
//
// It is a thin layer over etcd's client/v3/concurrency: candidates campaign
// (Session.Campaign) on a session lease under CampaignPrefix; the winner's
// epoch is the create revision of its leader key, a number etcd makes
// strictly larger for every new leader. Every write a Leader makes (the
// master record under MasterKey, a history entry under HistoryKey) is a
// transaction guarded on that revision, so a deposed leader can never
// overwrite its successor. Followers, relays and node agents read the
// master record (ReadState, Observe) and obey only the newest epoch.
//
// A Session keeps its lease alive with its own loop and knows when the
// last successful keepalive was sent; its FenceDeadline (that send time +
// TTL − margin, on the monotonic clock) is when a leader must have fenced
// itself, and Done closes once it passes without a renewal. Campaign
// checks what it won (its key, its session) before returning.
//
// Rank orders candidates for promotion, a pure function: eligible only on
// the same replication history within a lag limit, then by priority (0 =
// never), then the old master's site first, then id.
package election
