package relay

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/arbor-fabric/arbor/internal/rdb"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// TestFullSyncForgetsTraceMarks: after a full sync (resetTo) the marks of
// sampled frames of the old history, which may stand at the offsets of the
// new one, are not passed on with the new history's frames.
func TestFullSyncForgetsTraceMarks(t *testing.T) {
	r := storeTestRelay(t)
	r.upstream = Upstream{Kind: UpstreamRelay}
	f := &feeder{r: r, c: &childLink{id: "relay-c"}}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	r.tracing.mark(traceMark{start: 900, end: 1000, sc: sc, received: time.Now()})
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(rdb.Minimal(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.resetTo(w, "1123456789abcdef0123456789abcdef01234567", 0); err != nil {
		t.Fatal(err)
	}
	s := &arborv1.Stream{StartOffset: 950, RawLen: 100} // the new history's bytes
	if sp := f.traceFrame(s); sp != nil {
		endSpan(sp, nil)
		t.Fatalf("a frame of the new history carries the old history's trace context %v", s.GetTraceContext())
	}
}

// TestTraceFrameHotPath: a frame that is not sampled costs no allocation,
// whether or not sampled frames from the parent lie ahead of it; the frame
// that holds a sampled frame's last byte carries its context on.
func TestTraceFrameHotPath(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	cfg := DefaultConfig()
	cfg.ID, cfg.TracerProvider = "relay-b", tp
	r := &Relay{cfg: cfg, tracing: newTracing(cfg), upstream: Upstream{Kind: UpstreamRelay}}
	f := &feeder{r: r, c: &childLink{id: "relay-c"}}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	for i := int64(1); i <= traceMarks; i++ {
		r.tracing.mark(traceMark{start: i*1000 - 10, end: i * 1000, sc: sc, received: time.Now()})
	}
	for _, tc := range []struct {
		name       string
		start, len int64
	}{
		{"marks ahead", 100, 50},
		{"no marks ahead", 1 << 20, 50},
	} {
		s := &arborv1.Stream{StartOffset: tc.start, RawLen: uint32(tc.len)}
		if n := testing.AllocsPerRun(1000, func() {
			if f.traceFrame(s) != nil {
				t.Fatalf("%s: frame sampled", tc.name)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per frame, want 0", tc.name, n)
		}
	}
	s := &arborv1.Stream{StartOffset: 63990, RawLen: 20} // holds the byte before 64000
	sp := f.traceFrame(s)
	if sp == nil {
		t.Fatal("the frame holding a sampled frame's end was not traced")
	}
	endSpan(sp, nil)
	if got := s.GetTraceContext()["traceparent"]; len(got) != 55 || got[3:35] != sc.TraceID().String() {
		t.Errorf("traceparent %q, want one in trace %s", got, sc.TraceID())
	}
}
