package relay

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/status"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// TestSyncErrorsRoundTrip: every domain error of the Sync contract leaves
// the parent as a status with its row's code and reason detail, and comes
// back at the child as a *LinkError that errors.Is matches against that
// error and no other, whatever the message says.
func TestSyncErrorsRoundTrip(t *testing.T) {
	for _, row := range syncErrors {
		for _, e := range row.errs {
			t.Run(fmt.Sprintf("%v/%v", row.reason, e), func(t *testing.T) {
				// A message that names another reason must not matter.
				st := toStatus(fmt.Errorf("unknown history CYCLE: %w", e))
				if got := status.Code(st); got != row.code {
					t.Errorf("code: got %v, want %v", got, row.code)
				}
				err := linkErrorOf("parent:1", st)
				var le *LinkError
				if !errors.As(err, &le) {
					t.Fatalf("child got %v (%T), want a *LinkError", err, err)
				}
				if le.Reason != row.reason {
					t.Errorf("reason: got %v, want %v", le.Reason, row.reason)
				}
				for _, other := range syncErrors {
					want := other.reason == row.reason
					if got := errors.Is(le, other.errs[0]); got != want {
						t.Errorf("errors.Is(%v, %v): got %v, want %v", le, other.errs[0], got, want)
					}
				}
			})
		}
	}
	// A reason outside the contract still reaches the child typed.
	err := linkErrorOf("parent:1", toStatus(errors.New("read snapshot: disk on fire")))
	var le *LinkError
	if !errors.As(err, &le) || le.Reason != arborv1.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED ||
		le.Action() != arborv1.LinkAction_LINK_ACTION_RESUBSCRIBE {
		t.Errorf("an error outside the table reached the child as %v, want an UNSPECIFIED LinkError to resubscribe on", err)
	}
}
