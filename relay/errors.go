package relay

import (
	"context"
	"errors"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/relay/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errShuttingDown = errors.New("relay shutting down")

// errNoSubscribe: a Sync stream sent no subscription within
// SubscribeTimeout.
var errNoSubscribe = errors.New("no subscribe in time")

// cutError cuts a child relay's link; it carries the typed reason, which
// toStatus sends in the status (message and details). err, when set, is
// the domain error behind the cut.
type cutError struct {
	reason arborv1.DisconnectReason
	msg    string
	err    error
}

func (e *cutError) Error() string { return e.msg }

func (e *cutError) Unwrap() error { return e.err }

// toStatus maps the errors that end a Sync to gRPC status codes: the one
// table at this edge. A cut carries its DisconnectReason as a status
// detail (arbor.v1.Disconnect), so a child need not read the message.
func toStatus(err error) error {
	var cut *cutError
	var st interface{ GRPCStatus() *status.Status }
	switch {
	case err == nil:
		return nil
	case errors.As(err, &st):
		return err
	case errors.As(err, &cut):
		code := codes.ResourceExhausted // slow consumer, backlog exceeded, replid changed
		switch {
		case errors.Is(err, errNoSubscribe):
			code = codes.DeadlineExceeded
		case cut.reason == arborv1.DisconnectReason_DISCONNECT_REASON_PROTOCOL_ERROR:
			code = codes.InvalidArgument
		case cut.reason == arborv1.DisconnectReason_DISCONNECT_REASON_CYCLE:
			code = codes.FailedPrecondition
		}
		s := status.Newf(code, "%s: %s", cut.reason, cut.msg)
		if d, derr := s.WithDetails(&arborv1.Disconnect{Reason: cut.reason, Message: cut.msg}); derr == nil {
			s = d
		}
		return s.Err()
	case errors.As(err, new(*identityError)):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, store.ErrReset):
		return status.Error(codes.Aborted, "history replaced by a full sync; subscribe again")
	case errors.Is(err, store.ErrTrimmed):
		return status.Error(codes.OutOfRange, "fell behind the backlog; subscribe again for a full sync")
	case errors.Is(err, store.ErrCorrupt):
		return status.Errorf(codes.DataLoss, "backlog record failed its check: %v", err)
	case errors.Is(err, store.ErrHistoryDiverged):
		// A child relay recognises "unknown history" and subscribes again
		// for a full sync.
		return status.Errorf(codes.FailedPrecondition, "unknown history (%v); subscribe with replid \"?\" for a full sync", err)
	case errors.Is(err, store.ErrFuture):
		return status.Errorf(codes.OutOfRange, "offset ahead of this relay's store (%v)", err)
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, errShuttingDown):
		return status.Error(codes.Unavailable, "relay shutting down")
	}
	return status.Error(codes.Unavailable, err.Error())
}

// errUnknownHistory makes the next subscription ask for a full sync.
var errUnknownHistory = errors.New("parent does not know this relay's history")

// errTransferRefused means an RDB from a parent relay failed its
// end-to-end check or is not a valid RDB: it is discarded, never
// installed, and fetched again from its first chunk.
var errTransferRefused = errors.New("rdb transfer refused")

// retryLater is an upstream refusal that asks to come back soon
// (-NOMASTERLINK, -LOADING).
type retryLater struct{ reply string }

func (e *retryLater) Error() string { return "upstream not ready: " + e.reply }
