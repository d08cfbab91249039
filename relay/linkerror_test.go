package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestLastErrorClearedOnceConnected: the upstream's last error shows while
// the link is down and is gone once the relay streams again, so a healthy
// relay does not show a stale failure in INFO, Status and arbor status.
func TestLastErrorClearedOnceConnected(t *testing.T) {
	dead := fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t))
	r := startRelay(t, newRelayConfig(t, dead))
	redistest.WaitFor(t, 20*time.Second, func() error {
		if r.relay().Status().GetLastError() == "" {
			return fmt.Errorf("no last error while the upstream %s refuses connections", dead)
		}
		return nil
	})
	master := redistest.Start(t)
	if err := r.relay().SetUpstream(upstreamOf(master)); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 20*time.Second, func() error {
		if up := r.Info(t, "replication")["master_link_status"]; up != "up" {
			return fmt.Errorf("master_link_status %q", up)
		}
		if e := r.relay().Status().GetLastError(); e != "" {
			return fmt.Errorf("last error %q while the link is up", e)
		}
		if e := r.Info(t, "arbor")["arbor_upstream_last_error"]; e != "" {
			return fmt.Errorf("INFO arbor_upstream_last_error %q while the link is up", e)
		}
		return nil
	})
}
