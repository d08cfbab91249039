package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// pollInterval is how often WaitFor retries.
	pollInterval = 25 * time.Millisecond
	// checkTimeout bounds one round of the in-sync check.
	checkTimeout = 5 * time.Second
)

// WaitFor calls fn every 25 ms until it returns nil. If timeout passes
// first, it fails the test with fn's last error. It calls t.Fatalf and so
// must run on the test goroutine.
func WaitFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	if err := poll(timeout, fn); err != nil {
		t.Fatalf("WaitFor: not done after %v: %v", timeout, err)
	}
}

// poll calls fn until it returns nil or timeout passes; it returns fn's
// last error in the latter case. fn runs at least once.
func poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// WaitInSync waits until every replica reports master_link_status:up and a
// master_repl_offset equal to the master's, with DEBUG DIGEST and the
// function libraries equal to the master's, all observed while the master's
// offset stood still. A replica may follow a relay rather than the master;
// it is compared with the master all the same. On timeout the test fails
// with the last mismatch, which names the replica, both offsets and both
// digests. It must run on the test goroutine.
func WaitInSync(t testing.TB, timeout time.Duration, master *Server, replicas ...*Server) {
	t.Helper()
	err := poll(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		return checkInSync(ctx, master, replicas)
	})
	if err != nil {
		t.Fatalf("WaitInSync: replicas of %s not in sync after %v: %v", master.Addr, timeout, err)
	}
}

// checkInSync is one round of WaitInSync. The master's offset is read
// before and after the replicas: the master PINGs its replicas every
// 10 s and expires keys on its own, so its offset may move under the check.
func checkInSync(ctx context.Context, master *Server, replicas []*Server) error {
	before, err := master.InfoInt(ctx, "replication", "master_repl_offset")
	if err != nil {
		return err
	}
	for _, r := range replicas {
		m, err := r.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if link := m["master_link_status"]; link != "up" {
			return fmt.Errorf("replica %s: master_link_status %q (role %q, master %s:%s), want \"up\"",
				r.Addr, link, m["role"], m["master_host"], m["master_port"])
		}
		off, err := infoInt(m, "master_repl_offset")
		if err != nil {
			return fmt.Errorf("replica %s: %w", r.Addr, err)
		}
		if off != before {
			return fmt.Errorf("replica %s: master_repl_offset %d, master %s at %d",
				r.Addr, off, master.Addr, before)
		}
	}
	cmpErr := CompareDigests(ctx, master, replicas...)
	after, err := master.InfoInt(ctx, "replication", "master_repl_offset")
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("master %s offset moved from %d to %d during the check (inconclusive: %v)",
			master.Addr, before, after, cmpErr)
	}
	return cmpErr
}

// CompareDigests compares every replica's DEBUG DIGEST and function
// libraries (FUNCTION LIST WITHCODE) with the master's, once. It returns
// nil when all match, else one error per differing replica naming both
// servers, their master_repl_offset and their digests. It does not wait
// for replication to catch up; see WaitInSync.
func CompareDigests(ctx context.Context, master *Server, replicas ...*Server) error {
	want, err := master.Digest(ctx)
	if err != nil {
		return err
	}
	wantLibs, wantNames, err := functionLibraries(ctx, master)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range replicas {
		got, err := r.Digest(ctx)
		if err != nil {
			return err
		}
		if got != want {
			errs = append(errs, fmt.Errorf("replica %s digest %s (offset %s) != master %s digest %s (offset %s)",
				r.Addr, got, offsetOf(ctx, r), master.Addr, want, offsetOf(ctx, master)))
			continue
		}
		gotLibs, gotNames, err := functionLibraries(ctx, r)
		if err != nil {
			return err
		}
		if gotLibs != wantLibs {
			errs = append(errs, fmt.Errorf("replica %s function libraries [%s] != master %s libraries [%s] (or their code differs)",
				r.Addr, gotNames, master.Addr, wantNames))
		}
	}
	return errors.Join(errs...)
}

// offsetOf returns master_repl_offset for an error message.
func offsetOf(ctx context.Context, s *Server) string {
	off, err := s.InfoInt(ctx, "replication", "master_repl_offset")
	if err != nil {
		return "unknown: " + err.Error()
	}
	return fmt.Sprint(off)
}

// functionLibraries renders the server's function libraries sorted by
// name: all with their code for comparing, and just the names for messages.
func functionLibraries(ctx context.Context, s *Server) (full, names string, err error) {
	libs, err := s.Client().FunctionList(ctx, redis.FunctionListQuery{WithCode: true}).Result()
	if err != nil {
		return "", "", fmt.Errorf("function list on %s: %w", s.Addr, err)
	}
	slices.SortFunc(libs, func(a, b redis.Library) int { return strings.Compare(a.Name, b.Name) })
	var f, n strings.Builder
	for i, l := range libs {
		fmt.Fprintf(&f, "%q %q %q\n", l.Name, l.Engine, l.Code)
		if i > 0 {
			n.WriteString(" ")
		}
		n.WriteString(l.Name)
	}
	return f.String(), n.String(), nil
}
