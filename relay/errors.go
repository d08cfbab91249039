package relay

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
)

// Why a parent relay ends or refuses a child relay's Sync: the domain
// errors of the Sync contract. The parent returns them wrapped with the
// details; syncErrors, the one table at the gRPC edge, maps each to its
// arbor.v1.DisconnectReason and gRPC code (toStatus); the child gets them
// back as a *LinkError, which errors.Is matches against them, and acts on
// ActionOf its reason.
var (
	// ErrSlowConsumer: the child took nothing for SlowConsumerTimeout, or
	// fell MaxChildLag behind. It resubscribes.
	ErrSlowConsumer = errors.New("slow consumer")
	// ErrBacklogExceeded: the child fell behind the parent's backlog. It
	// resubscribes (and is full-synced).
	ErrBacklogExceeded = errors.New("behind the backlog")
	// ErrShuttingDown: the parent is stopping. The child moves.
	ErrShuttingDown = errors.New("relay shutting down")
	// ErrReplidChanged: the history changed under the link (a full sync
	// upstream, or an ID switch the link cannot carry). It resubscribes.
	ErrReplidChanged = errors.New("replication id changed")
	// ErrCycle: following would close a replication cycle. It stops.
	ErrCycle = errors.New("replication cycle")
	// ErrProtocol: a peer broke the Sync protocol. It stops.
	ErrProtocol = errors.New("sync protocol error")
	// ErrUpstreamLost: the parent no longer follows its own upstream. The
	// child moves.
	ErrUpstreamLost = errors.New("parent lost its upstream")
	// ErrTopologyChanged: the topology moved the child away from this
	// parent (Relay.CutChild). It moves.
	ErrTopologyChanged = errors.New("topology changed")
	// ErrUnknownHistory: the parent does not know the child's history. The
	// child asks for a full sync.
	ErrUnknownHistory = errors.New("unknown history")
	// ErrIdentityRefused: the child's certificate does not name the relay
	// ID it subscribed with. It stops.
	ErrIdentityRefused = errors.New("identity refused")
	// ErrNotReady: the parent holds no data yet. The child resubscribes.
	ErrNotReady = errors.New("parent not ready")
	// ErrAheadOfParent: the child holds more of the stream than the
	// parent, even after the parent waited for it. The child moves.
	ErrAheadOfParent = errors.New("ahead of the parent")
	// ErrDataLoss: the parent's backlog or snapshot failed its check. The
	// child moves.
	ErrDataLoss = errors.New("parent data failed its check")
	// ErrReplaced: a newer link from the same child replaced this one. It
	// resubscribes.
	ErrReplaced = errors.New("replaced by a newer link from the same relay")
)

// errNoSubscribe: a Sync stream sent no subscription within
// SubscribeTimeout (a protocol error with its own code).
var errNoSubscribe = errors.New("no subscribe in time")

// syncErrors is the one table of the Sync contract: for each domain error
// (and the store's errors that mean the same), the DisconnectReason a cut
// carries and the gRPC code it ends the stream with. The first row an
// error matches (errors.Is) applies, so the more specific rows come first.
var syncErrors = []struct {
	errs   []error
	reason arborv1.DisconnectReason
	code   codes.Code
}{
	{[]error{errNoSubscribe}, arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR, codes.DeadlineExceeded},
	{[]error{ErrProtocol}, arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR, codes.InvalidArgument},
	{[]error{ErrCycle}, arborv1.DisconnectReason_DISCONNECT_REASON_CYCLE, codes.FailedPrecondition},
	{[]error{ErrIdentityRefused}, arborv1.DisconnectReason_DISCONNECT_REASON_IDENTITY_REFUSED, codes.PermissionDenied},
	{[]error{ErrUnknownHistory, store.ErrHistoryDiverged}, arborv1.DisconnectReason_DISCONNECT_REASON_UNKNOWN_HISTORY, codes.FailedPrecondition},
	{[]error{ErrAheadOfParent, store.ErrFuture}, arborv1.DisconnectReason_DISCONNECT_REASON_AHEAD_OF_PARENT, codes.OutOfRange},
	{[]error{ErrSlowConsumer}, arborv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER, codes.ResourceExhausted},
	{[]error{ErrBacklogExceeded, store.ErrTrimmed, store.ErrOutOfRange}, arborv1.DisconnectReason_DISCONNECT_REASON_BACKLOG_EXCEEDED, codes.OutOfRange},
	{[]error{ErrReplidChanged, store.ErrReset}, arborv1.DisconnectReason_DISCONNECT_REASON_REPLID_CHANGED, codes.Aborted},
	{[]error{ErrDataLoss, store.ErrCorrupt}, arborv1.DisconnectReason_DISCONNECT_REASON_DATA_LOSS, codes.DataLoss},
	{[]error{ErrReplaced}, arborv1.DisconnectReason_DISCONNECT_REASON_REPLACED, codes.Aborted},
	{[]error{ErrNotReady, store.ErrEmpty}, arborv1.DisconnectReason_DISCONNECT_REASON_NOT_READY, codes.Unavailable},
	{[]error{ErrUpstreamLost}, arborv1.DisconnectReason_DISCONNECT_REASON_UPSTREAM_LOST, codes.Unavailable},
	{[]error{ErrTopologyChanged}, arborv1.DisconnectReason_DISCONNECT_REASON_TOPOLOGY_CHANGED, codes.Unavailable},
	{[]error{ErrShuttingDown, store.ErrClosed, context.Canceled}, arborv1.DisconnectReason_DISCONNECT_REASON_SHUTTING_DOWN, codes.Unavailable},
}

// reasonOf returns the DisconnectReason and gRPC code of an error that ends
// a Sync (UNSPECIFIED and Unavailable for one outside the contract, such as
// a failed read of the parent's own disk).
func reasonOf(err error) (arborv1.DisconnectReason, codes.Code) {
	for _, row := range syncErrors {
		for _, e := range row.errs {
			if errors.Is(err, e) {
				return row.reason, row.code
			}
		}
	}
	return arborv1.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED, codes.Unavailable
}

// toStatus is the gRPC edge of the Sync contract: it ends a Sync with the
// code of err's row in syncErrors, and carries its DisconnectReason as the
// status detail arbor.v1.Disconnect, so a child need not read the message
// (the message says the same for people: "<reason>: <details>"). A status
// that gRPC itself produced (a Send on a stream already gone) passes as it
// is.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	reason, code := reasonOf(err)
	var st interface{ GRPCStatus() *status.Status }
	if reason == arborv1.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED && errors.As(err, &st) {
		return err
	}
	s := status.Newf(code, "%s: %s", reason, err)
	if d, derr := s.WithDetails(&arborv1.Disconnect{Reason: reason, Message: err.Error()}); derr == nil {
		s = d
	}
	return s.Err()
}

// ActionOf says what a child relay does when its parent cut or refused its
// Sync with reason: resubscribe to the same parent, ask it for a full
// sync, move to another parent, or stop retrying this one until the
// configuration changes.
func ActionOf(reason arborv1.DisconnectReason) arborv1.LinkAction {
	switch reason {
	case arborv1.DisconnectReason_DISCONNECT_REASON_UNKNOWN_HISTORY:
		return arborv1.LinkAction_LINK_ACTION_FULL_SYNC
	case arborv1.DisconnectReason_DISCONNECT_REASON_SHUTTING_DOWN,
		arborv1.DisconnectReason_DISCONNECT_REASON_UPSTREAM_LOST,
		arborv1.DisconnectReason_DISCONNECT_REASON_TOPOLOGY_CHANGED,
		arborv1.DisconnectReason_DISCONNECT_REASON_AHEAD_OF_PARENT,
		arborv1.DisconnectReason_DISCONNECT_REASON_DATA_LOSS:
		return arborv1.LinkAction_LINK_ACTION_MOVE
	case arborv1.DisconnectReason_DISCONNECT_REASON_CYCLE,
		arborv1.DisconnectReason_DISCONNECT_REASON_IDENTITY_REFUSED,
		arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR:
		return arborv1.LinkAction_LINK_ACTION_STOP
	}
	return arborv1.LinkAction_LINK_ACTION_RESUBSCRIBE
}

// LinkError is a parent relay's cut or refusal of this relay's Sync link,
// as the parent typed it: the arbor.v1.Disconnect detail of the status the
// stream ended with, or the Disconnect frame the parent sent before it.
// The message text is never read. errors.Is matches a LinkError against
// the Err value of its reason (ErrShuttingDown, ErrCycle, ...), and Action
// says what the relay does next.
type LinkError struct {
	Parent  string                   // the parent's address
	Reason  arborv1.DisconnectReason // why, as the parent said
	Message string                   // the parent's details, for people and logs
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("parent relay %s cut the link: %s: %s", e.Parent, e.Reason, e.Message)
}

// Is matches the domain errors of e's reason.
func (e *LinkError) Is(target error) bool {
	for _, row := range syncErrors {
		if row.reason == e.Reason && row.errs[0] == target {
			return true
		}
	}
	return false
}

// Action is ActionOf(e.Reason).
func (e *LinkError) Action() arborv1.LinkAction { return ActionOf(e.Reason) }

// linkErrorOf maps what a Sync stream to a parent ended with back to a
// *LinkError, by the Disconnect detail of its status; it returns err as it
// is when the parent gave no reason (a transport failure, say).
func linkErrorOf(parent string, err error) error {
	if err == nil {
		return nil
	}
	for _, d := range status.Convert(err).Details() {
		if dc, ok := d.(*arborv1.Disconnect); ok {
			return &LinkError{Parent: parent, Reason: dc.GetReason(), Message: dc.GetMessage()}
		}
	}
	return err
}

// errTransferRefused means an RDB from a parent relay failed its
// end-to-end check or is not a valid RDB: it is discarded, never
// installed, and fetched again from its first chunk.
var errTransferRefused = errors.New("rdb transfer refused")

// retryLater is an upstream refusal that asks to come back soon
// (-NOMASTERLINK, -LOADING).
type retryLater struct{ reply string }

func (e *retryLater) Error() string { return "upstream not ready: " + e.reply }
