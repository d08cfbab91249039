package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestFailoverSpans: a failover (kill -9 of the master's Redis) is one
// arbor.takeover span of kind failover, recorded by the new master's
// agent, with a child span per step in order (detect, campaign, recheck,
// probe, catch-up, promote, publish), each inside the parent's time.
func TestFailoverSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newElectFabric(t, 1)
	f.agentCfg = func(c *Config) { c.TracerProvider = tp }
	boot, _ := f.start(t, nil)
	before := f.relay().Status().GetCounters()
	f.m.Kill()
	f.checkFailedOver(t, boot, before, time.Now())

	var root sdktrace.ReadOnlySpan
	redistest.WaitFor(t, 10*time.Second, func() error {
		for _, s := range rec.Ended() {
			if s.Name() == TakeOverSpan && attr(s, attrNode) == "b" {
				root = s
				return nil
			}
		}
		return fmt.Errorf("no %s span of b among %d ended spans", TakeOverSpan, len(rec.Ended()))
	})
	if got := attr(root, attrKind); got != "failover" {
		t.Errorf("kind %q, want failover", got)
	}
	if got := attr(root, attrPrevious); got != "m" {
		t.Errorf("previous %q, want m", got)
	}
	if got, want := attr(root, attrEpoch), fmt.Sprint(f.state(t).Master.Epoch); got != want {
		t.Errorf("epoch %s, want the record's %s", got, want)
	}
	var names []string
	var last time.Time
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() != root.SpanContext().SpanID() {
			continue
		}
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("step %s in trace %s, want %s", s.Name(), s.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
		if s.StartTime().Before(root.StartTime()) || s.EndTime().After(root.EndTime()) || s.StartTime().Before(last) {
			t.Errorf("step %s [%v, %v] outside its parent [%v, %v] or before the previous step's end %v",
				s.Name(), s.StartTime(), s.EndTime(), root.StartTime(), root.EndTime(), last)
		}
		last = s.EndTime()
		names = append(names, s.Name())
	}
	want := []string{"detect", "campaign", "recheck", "probe", "catch-up", "promote", "publish"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	t.Logf("failover span %v: steps %v", root.EndTime().Sub(root.StartTime()), names)
}

// attr returns the span's attribute key as a string ("" if absent).
func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if kv.Key == attribute.Key(key) {
			return kv.Value.String()
		}
	}
	return ""
}
