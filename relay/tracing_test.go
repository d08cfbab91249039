package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/internal/wan"
	"github.com/arbor-fabric/arbor/relay"
)

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func spanInt(s sdktrace.ReadOnlySpan, k attribute.Key) int64 {
	v, _ := spanAttr(s, k)
	return v.AsInt64()
}

func spanStr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	v, _ := spanAttr(s, k)
	return v.AsString()
}

// hop is one sampled frame's path through the tree: the root's replicate
// span, then per relay below it its store span and (but at the leaf) its
// replicate span to the next.
type hop struct {
	replicate, store sdktrace.ReadOnlySpan
}

// findPaths finds the traces that go from the root through relays (ids,
// the root first) to the leaf: replicate on ids[0] → store on ids[1] →
// replicate on ids[1] → … → store on the last.
func findPaths(spans []sdktrace.ReadOnlySpan, ids ...string) ([][]hop, error) {
	byParent := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byParent[s.Parent().SpanID()] = append(byParent[s.Parent().SpanID()], s)
	}
	var roots int
	var found [][]hop
	for _, root := range spans {
		if root.Name() != relay.SpanReplicate || root.Parent().IsValid() || spanStr(root, relay.AttrRelayID) != ids[0] ||
			spanStr(root, relay.AttrChildID) != ids[1] {
			continue
		}
		roots++
		path := []hop{{replicate: root}}
		cur := root
		for i, id := range ids[1:] {
			var next hop
			for _, s := range byParent[cur.SpanContext().SpanID()] {
				if s.Name() == relay.SpanStore && spanStr(s, relay.AttrRelayID) == id {
					next.store = s
				}
			}
			if next.store == nil {
				break
			}
			if i+2 < len(ids) {
				for _, s := range byParent[next.store.SpanContext().SpanID()] {
					if s.Name() == relay.SpanReplicate && spanStr(s, relay.AttrChildID) == ids[i+2] {
						next.replicate = s
					}
				}
			}
			path[len(path)-1].store = next.store
			if next.replicate == nil {
				break
			}
			path = append(path, hop{replicate: next.replicate})
			cur = next.replicate
		}
		if len(path) == len(ids)-1 && path[len(path)-1].store != nil {
			found = append(found, path)
		}
	}
	if len(found) > 0 {
		return found, nil
	}
	return nil, fmt.Errorf("no trace goes through %v (%d root spans of %d spans)", ids, roots, len(spans))
}

// recordSpans returns a span recorder and a config mod that traces a relay
// into it, sampling one frame per every at the root.
func recordSpans(t *testing.T, every time.Duration) (*tracetest.SpanRecorder, func(*relay.Config)) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return rec, func(c *relay.Config) { c.TracerProvider, c.TraceEvery = tp, every }
}

// TestReplicationTraces: relay-a (the root) → relay-b → relay-c, sharing
// one span recorder. The root samples one frame per TraceEvery per child
// link; relay-b stores it under the root's span and passes the context on
// to relay-c, so one trace shows every hop with its offsets, timing and
// lag.
func TestReplicationTraces(t *testing.T) {
	const every = 200 * time.Millisecond
	rec, traced := recordSpans(t, every)

	master := redistest.Start(t, "--repl-backlog-size", "64mb")
	load(t, master, redistest.LoadOptions{SmallKeys: 500, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), traced)
	b := treeRelay(t, "relay-b", "B", a.arborURL(), traced)
	c := treeRelay(t, "relay-c", "C", b.arborURL(), traced)
	rep := redistest.Start(t)
	replicaOf(t, rep, c.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := redistest.WriteLoad(ctx, master.Client(), 100_000); err != nil {
		t.Fatalf("write load: %v", err)
	}
	elapsed := time.Since(began)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	var paths [][]hop
	redistest.WaitFor(t, 10*time.Second, func() error {
		var err error
		paths, err = findPaths(rec.Ended(), "relay-a", "relay-b", "relay-c")
		return err
	})
	// The last one was sampled under load.
	path := paths[len(paths)-1]
	root := path[0].replicate
	tid := root.SpanContext().TraceID()
	for i, h := range path {
		for _, s := range []sdktrace.ReadOnlySpan{h.replicate, h.store} {
			if s.SpanContext().TraceID() != tid {
				t.Errorf("hop %d: span %s in trace %s, want %s", i, s.Name(), s.SpanContext().TraceID(), tid)
			}
			if !s.SpanContext().IsSampled() {
				t.Errorf("hop %d: span %s not sampled", i, s.Name())
			}
		}
		rp, st := h.replicate, h.store
		if rp.SpanKind() != trace.SpanKindProducer || st.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("hop %d: kinds %v, %v; want producer, consumer", i, rp.SpanKind(), st.SpanKind())
		}
		if st.Parent().SpanID() != rp.SpanContext().SpanID() {
			t.Errorf("hop %d: store span's parent %s, want the replicate span %s", i, st.Parent().SpanID(), rp.SpanContext().SpanID())
		}
		// The stored frame ends inside the frame sent on this hop (the
		// root's frame is the very one relay-b stores).
		sStart, sEnd := spanInt(rp, relay.AttrOffsetStart), spanInt(rp, relay.AttrOffsetEnd)
		mEnd := spanInt(st, relay.AttrOffsetEnd)
		if !(sStart < mEnd && mEnd <= sEnd) {
			t.Errorf("hop %d: sent [%d, %d), stored a frame ending at %d", i, sStart, sEnd, mEnd)
		}
		if spanInt(rp, relay.AttrFrameBytes) != sEnd-sStart || spanInt(rp, relay.AttrWireBytes) <= 0 {
			t.Errorf("hop %d: frame bytes %d (wire %d), want %d", i, spanInt(rp, relay.AttrFrameBytes), spanInt(rp, relay.AttrWireBytes), sEnd-sStart)
		}
		if _, ok := spanAttr(st, relay.AttrLagMs); !ok {
			t.Errorf("hop %d: store span has no %s", i, relay.AttrLagMs)
		}
		if lag := spanInt(st, relay.AttrLagMs); lag < 0 || lag > 10_000 {
			t.Errorf("hop %d: lag %d ms", i, lag)
		}
		if rp.StartTime().After(rp.EndTime()) || st.StartTime().After(st.EndTime()) || st.StartTime().Before(rp.StartTime()) {
			t.Errorf("hop %d: replicate %v–%v, store %v–%v: out of order", i, rp.StartTime(), rp.EndTime(), st.StartTime(), st.EndTime())
		}
	}
	if h := path[0]; spanStr(h.replicate, relay.AttrChildSite) != "B" || spanStr(h.store, relay.AttrRelaySite) != "B" ||
		spanInt(h.replicate, relay.AttrOffsetStart) != spanInt(h.store, relay.AttrOffsetStart) {
		t.Errorf("root hop: child site %q, store site %q, offsets %d and %d",
			spanStr(h.replicate, relay.AttrChildSite), spanStr(h.store, relay.AttrRelaySite),
			spanInt(h.replicate, relay.AttrOffsetStart), spanInt(h.store, relay.AttrOffsetStart))
	}
	if h := path[1]; spanStr(h.replicate, relay.AttrRelayID) != "relay-b" || spanStr(h.store, relay.AttrRelayID) != "relay-c" ||
		spanStr(h.store, relay.AttrRelaySite) != "C" {
		t.Errorf("second hop: replicate on %q, store on %q (site %q)",
			spanStr(h.replicate, relay.AttrRelayID), spanStr(h.store, relay.AttrRelayID), spanStr(h.store, relay.AttrRelaySite))
	}
	// Sampling is bounded: at most one trace per TraceEvery per link, and
	// only the root starts traces.
	var roots, others int
	for _, s := range rec.Ended() {
		if s.Name() == relay.SpanReplicate && !s.Parent().IsValid() {
			if spanStr(s, relay.AttrRelayID) == "relay-a" {
				roots++
			} else {
				others++
			}
		}
	}
	t.Logf("relay-a started %d traces in %v, %d reach relay-c; the last: %d hops, root span %v (frame [%d, %d)), relay-c stored it %v after the root read it",
		roots, time.Since(began), len(paths), len(path), root.EndTime().Sub(root.StartTime()),
		spanInt(root, relay.AttrOffsetStart), spanInt(root, relay.AttrOffsetEnd), path[1].store.EndTime().Sub(root.StartTime()))
	if limit := int(time.Since(began)/every) + 10; roots > limit || roots < int(elapsed/every)/2 {
		t.Errorf("relay-a started %d traces in %v with one per %v: want about one per period", roots, time.Since(began), every)
	}
	if len(paths) < roots/2 {
		t.Errorf("%d of %d traces reach relay-c; want most", len(paths), roots)
	}
	if others != 0 {
		t.Errorf("%d traces started below the root, want none", others)
	}
}

// TestTraceContextCrossesUntracedRelay: relay-b has no TracerProvider, yet
// it passes the root's trace context on, so relay-c's store spans hang
// under relay-a's replicate spans.
func TestTraceContextCrossesUntracedRelay(t *testing.T) {
	rec, traced := recordSpans(t, 100*time.Millisecond)

	master := redistest.Start(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), traced)
	b := treeRelay(t, "relay-b", "B", a.arborURL())
	c := treeRelay(t, "relay-c", "C", b.arborURL(), traced)
	rep := redistest.Start(t)
	replicaOf(t, rep, c.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := redistest.WriteLoad(ctx, master.Client(), 30_000); err != nil {
		t.Fatalf("write load: %v", err)
	}
	redistest.WaitInSync(t, syncTimeout, master, rep)
	redistest.WaitFor(t, 10*time.Second, func() error {
		spans := rec.Ended()
		byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			byID[s.SpanContext().SpanID()] = s
		}
		for _, s := range spans {
			if s.Name() != relay.SpanStore {
				continue
			}
			if id := spanStr(s, relay.AttrRelayID); id != "relay-c" {
				return fmt.Errorf("a store span on %s, which has no tracer", id)
			}
			p, ok := byID[s.Parent().SpanID()]
			if ok && p.Name() == relay.SpanReplicate && spanStr(p, relay.AttrRelayID) == "relay-a" &&
				spanStr(p, relay.AttrChildID) == "relay-b" && p.SpanContext().TraceID() == s.SpanContext().TraceID() {
				return nil
			}
		}
		return fmt.Errorf("no relay-c store span under a relay-a replicate span among %d spans", len(spans))
	})
}

// TestReplicaAckTraces: the traces end at the Redis replicas. relay-a (the
// root) → relay-b, a replica under each. Under relay-b's store span of a
// frame sampled at the root, an arbor.replica.ack span for relay-b's
// replica ends, without error, once that replica acked the frame's end;
// the root's own replica gets a trace of its own per TraceEvery.
func TestReplicaAckTraces(t *testing.T) {
	rec, traced := recordSpans(t, 200*time.Millisecond)

	master := redistest.Start(t)
	load(t, master, redistest.LoadOptions{SmallKeys: 200, Seed: 1})
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), traced)
	b := treeRelay(t, "relay-b", "B", a.arborURL(), traced)
	repA, repB := redistest.Start(t), redistest.Start(t)
	replicaOf(t, repA, a.Port)
	replicaOf(t, repB, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, repA, repB)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := redistest.WriteLoad(ctx, master.Client(), 20_000); err != nil {
		t.Fatalf("write load: %v", err)
	}
	redistest.WaitInSync(t, syncTimeout, master, repA, repB)

	replicaOf := func(s sdktrace.ReadOnlySpan, rep *redistest.Server) bool {
		return strings.HasSuffix(spanStr(s, relay.AttrReplicaID), fmt.Sprintf(":%d", rep.Port))
	}
	redistest.WaitFor(t, 20*time.Second, func() error {
		spans := rec.Ended()
		byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		for _, s := range spans {
			byID[s.SpanContext().SpanID()] = s
		}
		var leaf, rootLeaf bool
		for _, s := range spans {
			if s.Name() != relay.SpanReplicaAck || s.Status().Code == codes.Error {
				continue
			}
			if _, ok := spanAttr(s, relay.AttrLagMs); !ok {
				continue
			}
			switch {
			case spanStr(s, relay.AttrRelayID) == "relay-b" && replicaOf(s, repB):
				// Its parent is relay-b's store span of a frame the root
				// sampled, in the same trace, whose end it waited for.
				p := byID[s.Parent().SpanID()]
				if p != nil && p.Name() == relay.SpanStore && spanStr(p, relay.AttrRelayID) == "relay-b" &&
					p.SpanContext().TraceID() == s.SpanContext().TraceID() &&
					spanInt(s, relay.AttrOffsetEnd) == spanInt(p, relay.AttrOffsetEnd) {
					leaf = true
				}
			case spanStr(s, relay.AttrRelayID) == "relay-a" && replicaOf(s, repA) && !s.Parent().IsValid():
				rootLeaf = true
			}
		}
		if !leaf || !rootLeaf {
			return fmt.Errorf("acked replica spans: under relay-b's store span %v, at the root %v (of %d spans)", leaf, rootLeaf, len(spans))
		}
		return nil
	})
}

// TestReplicaAckTracesAgreeWithStatusLag: the lag the traces show and the
// lag the relay publishes in its Status (children[].lag_ms, what the
// dashboard's lag view shows) agree on which replica is slow and roughly
// how slow. Two replicas follow one root relay; one is SIGSTOPped for
// pause while a bounded writer runs. Both views measure from the same
// reference point at the root (when the root read the bytes from the
// master) to the replica's REPLCONF ACK, in milliseconds, and name the
// replica alike (its address and listening port).
//
// Tolerance: Redis 7 replicas ack once per second (replicationCron), so
// even a healthy replica reads up to about a second behind in both views,
// and the first sampled write of the pause comes up to TraceEvery after it
// began. So the pause is long (4 s) and the test asserts only a threshold
// that separates the two: the paused replica's longest ack span and its
// largest status lag while paused are both at least pause − 1.5 s, and the
// healthy replica's stay below that (they should be about 1 s; 1.5 s of
// slack for a loaded machine). No upper bound on the paused replica.
func TestReplicaAckTracesAgreeWithStatusLag(t *testing.T) {
	const (
		pause = 4 * time.Second
		every = 500 * time.Millisecond // 8 samples per pause: under the 16 a replica may have waiting
		slow  = pause - 1500*time.Millisecond
	)
	rec, traced := recordSpans(t, every)
	master := redistest.Start(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), traced)
	paused, healthy := redistest.Start(t), redistest.Start(t)
	replicaOf(t, paused, a.Port)
	replicaOf(t, healthy, a.Port)
	redistest.WaitInSync(t, syncTimeout, master, paused, healthy)
	name := func(rep *redistest.Server) string { return fmt.Sprintf("127.0.0.1:%d", rep.Port) }
	pausedID, healthyID := name(paused), name(healthy)

	// A bounded writer: small SETs every few milliseconds, few enough bytes
	// that the paused replica's socket buffers never fill.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var writeErr error
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c := master.Client()
		for i := 0; i < 20_000 && ctx.Err() == nil; i++ {
			if err := c.Set(ctx, fmt.Sprintf("agree:%d", i%100), i, 0).Err(); err != nil {
				if ctx.Err() == nil {
					writeErr = err
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// Stopped on every way out, so no writer outlives the test.
	defer func() { cancel(); <-writerDone }()
	stopWriter := func() {
		cancel()
		<-writerDone
		if writeErr != nil {
			t.Errorf("writer: %v", writeErr)
		}
	}

	// Let a few healthy samples pass, then pause one replica and watch the
	// published status while it is stopped.
	time.Sleep(2 * every)
	statusMax := map[string]time.Duration{}
	pauseStart := time.Now()
	paused.Pause()
	defer paused.Resume() // a stopped redis-server would not shut down
	for time.Since(pauseStart) < pause {
		for _, c := range a.status(t).GetChildren() {
			statusMax[c.GetId()] = max(statusMax[c.GetId()], time.Duration(c.GetLagMs())*time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pauseEnd := time.Now()
	paused.Resume()
	time.Sleep(2 * every) // writes after the pause: samples for both again
	stopWriter()
	redistest.WaitInSync(t, syncTimeout, master, paused, healthy)

	// The ack spans of writes sampled during the pause, per replica: the
	// longest, once every such span of the paused replica has ended acked.
	var spanMax map[string]time.Duration
	redistest.WaitFor(t, 20*time.Second, func() error {
		spanMax = map[string]time.Duration{}
		for _, s := range rec.Ended() {
			if s.Name() != relay.SpanReplicaAck || s.StartTime().Before(pauseStart) || !s.StartTime().Before(pauseEnd) {
				continue
			}
			id := spanStr(s, relay.AttrReplicaID)
			if s.Status().Code == codes.Error {
				return fmt.Errorf("span for %s ended unacked: %s", id, s.Status().Description)
			}
			spanMax[id] = max(spanMax[id], s.EndTime().Sub(s.StartTime()))
		}
		if _, ok := spanMax[pausedID]; !ok {
			return fmt.Errorf("no acked span of %s from the pause yet (have %v)", pausedID, spanMax)
		}
		if _, ok := spanMax[healthyID]; !ok {
			return fmt.Errorf("no acked span of %s from the pause yet (have %v)", healthyID, spanMax)
		}
		return nil
	})
	t.Logf("paused %s for %v: longest ack span %v, status lag %v; healthy %s: %v, %v",
		pausedID, pauseEnd.Sub(pauseStart), spanMax[pausedID], statusMax[pausedID], healthyID, spanMax[healthyID], statusMax[healthyID])
	if _, ok := statusMax[pausedID]; !ok {
		t.Fatalf("status names no child %s (has %v): the traces and the status name replicas differently", pausedID, statusMax)
	}
	for what, m := range map[string]map[string]time.Duration{"longest ack span": spanMax, "largest status lag_ms": statusMax} {
		if m[pausedID] < slow {
			t.Errorf("%s of the paused replica %s: %v, want at least %v (paused %v)", what, pausedID, m[pausedID], slow, pause)
		}
		if m[healthyID] >= slow {
			t.Errorf("%s of the healthy replica %s: %v, want below %v", what, healthyID, m[healthyID], slow)
		}
	}
}

// TestReplicaAckLagCountsFromTheRoot: below the root, a replica's
// arbor.replica.ack lag (arbor.lag_ms) and its lag_ms in the relay's
// status count from the same point, when the root read the bytes from the
// master, so both show the time the bytes spent on the hops above. relay-b
// follows relay-a over a link that delays each direction by hop; a Redis 7
// replica acks once a second, so a lag counted from relay-b's receipt of
// the bytes stays about a second, under hop − margin, while one counted
// from the root is at least hop. (Before the spans counted from the root,
// relay-b's replica spans said 81–490 ms while its status said 1.52 s.)
func TestReplicaAckLagCountsFromTheRoot(t *testing.T) {
	const hop, margin = 1500 * time.Millisecond, 200 * time.Millisecond
	rec, traced := recordSpans(t, 200*time.Millisecond)

	master := redistest.Start(t)
	a := treeRelay(t, "relay-a", "A", upstreamOf(master), traced)
	link := bridgeTo(t, a, wan.WithLatency(hop))
	b := treeRelay(t, "relay-b", "B", "arbor://"+link.Addr(), traced)
	rep := redistest.Start(t)
	replicaOf(t, rep, b.Port)
	redistest.WaitInSync(t, syncTimeout, master, rep)

	// A steady, bounded writer: a write every 10 ms, at most a minute.
	defer writeSteadily(master, func(i int) string { return fmt.Sprintf("hop:%d", i) })()

	name := fmt.Sprintf(":%d", rep.Port)
	var statusLag time.Duration
	redistest.WaitFor(t, 40*time.Second, func() error {
		for _, c := range b.status(t).GetChildren() {
			if strings.HasSuffix(c.GetId(), name) {
				statusLag = max(statusLag, time.Duration(c.GetLagMs())*time.Millisecond)
			}
		}
		if statusLag < hop-margin {
			return fmt.Errorf("relay-b's status: replica lag at most %v, want ≥ %v", statusLag, hop-margin)
		}
		return nil
	})
	redistest.WaitFor(t, 40*time.Second, func() error {
		var lags []time.Duration
		for _, s := range rec.Ended() {
			if s.Name() != relay.SpanReplicaAck || spanStr(s, relay.AttrRelayID) != "relay-b" ||
				!strings.HasSuffix(spanStr(s, relay.AttrReplicaID), name) || s.Status().Code == codes.Error {
				continue
			}
			if _, ok := spanAttr(s, relay.AttrLagMs); ok {
				lags = append(lags, time.Duration(spanInt(s, relay.AttrLagMs))*time.Millisecond)
			}
		}
		if len(lags) < 3 {
			return fmt.Errorf("%d acked replica spans on relay-b, want 3", len(lags))
		}
		for _, l := range lags {
			if l < hop-margin {
				t.Fatalf("relay-b's replica span lags %v: one under %v, while the status showed %v: the spans do not count the hop above", lags, hop-margin, statusLag)
			}
		}
		return nil
	})
}
