package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
)

// Replication lag as traces. The root relay (the one that follows Redis)
// samples one Stream frame per TraceEvery on each child link: an
// "arbor.replicate" span that starts when the root read the frame's newest
// bytes from the master and ends when the frame is sent, its W3C context in
// Stream.trace_context. A child relay that stores such a frame records an
// "arbor.relay.store" span under it and remembers the frame's offsets; its
// own feeders then send the frame holding those offsets on to its children
// with an "arbor.replicate" span of their own, and so on down the tree. One
// trace thus shows every hop of the sampled bytes with its timing. Frames
// that are not sampled cost a load and a compare.
//
// The leaves are the Redis replicas: a relay that sends a replica the
// bytes of a sampled frame it stored (or, at the root, one write per
// TraceEvery per replica) records an "arbor.replica.ack" span, under the
// frame's store span, that ends when that replica acks the frame's end. So
// one trace shows the whole way from the master to every replica, and
// which hop or replica is slow.

// Span names.
const (
	// SpanReplicate covers one hop of a sampled frame: from when the bytes
	// were ready on the sending relay (at the root: read from the master)
	// until the frame was handed to the child's stream.
	SpanReplicate = "arbor.replicate"
	// SpanStore covers a child relay storing a sampled frame.
	SpanStore = "arbor.relay.store"
	// SpanReplicaAck covers a Redis replica taking a sampled frame: from
	// when the relay received its bytes (at the root: read them from the
	// master) until the replica acked the frame's end. Its AttrLagMs
	// counts from the root's read of the bytes at every depth, as the
	// Status' lag_ms of that replica does.
	SpanReplicaAck = "arbor.replica.ack"
)

// Span attribute keys.
const (
	AttrRelayID     = attribute.Key("arbor.relay.id")     // the relay recording the span
	AttrRelaySite   = attribute.Key("arbor.relay.site")   // its site
	AttrChildID     = attribute.Key("arbor.child.id")     // the child relay a frame is sent to
	AttrChildSite   = attribute.Key("arbor.child.site")   // its site
	AttrOffsetStart = attribute.Key("arbor.offset.start") // the frame's first stream offset
	AttrOffsetEnd   = attribute.Key("arbor.offset.end")   // the offset after its last byte
	AttrFrameBytes  = attribute.Key("arbor.frame.bytes")  // stream bytes in the frame
	AttrWireBytes   = attribute.Key("arbor.frame.wire_bytes")
	AttrLagMs       = attribute.Key("arbor.lag_ms")     // now minus the frame's origin time, when stored (or acked)
	AttrReplicaID   = attribute.Key("arbor.replica.id") // the Redis replica (address and listening port)
)

const (
	tracerName = "github.com/arbor-fabric/arbor/relay"
	// traceMarks bounds the sampled frames a relay remembers to pass on:
	// about a minute of them at one per second.
	traceMarks = 64
)

// tracing is a relay's tracer and its memory of sampled frames received
// from a parent, to be passed on to its own children.
type tracing struct {
	tracer  trace.Tracer
	sample  bool          // a TracerProvider was configured: the root samples frames
	every   time.Duration // how often the root samples a frame per child link
	prop    propagation.TraceContext
	relayID string
	site    string

	newest atomic.Int64 // end of the newest mark, 0 when none: the cheap check
	mu     sync.Mutex
	marks  [traceMarks]traceMark // guarded by mu: a ring ordered by end
	head   int                   // guarded by mu
	n      int                   // guarded by mu
}

// traceMark is a sampled frame this relay stored, and the span context its
// children's hops hang under.
type traceMark struct {
	start, end int64
	sc         trace.SpanContext
	received   time.Time // when the frame reached this relay
	origin     int64     // when the root read the frame's bytes (unix nanos; 0 if unknown)
}

func newTracing(cfg Config) *tracing {
	t := &tracing{every: cfg.TraceEvery, relayID: cfg.ID, site: cfg.Site}
	if cfg.TracerProvider != nil {
		t.tracer, t.sample = cfg.TracerProvider.Tracer(tracerName, trace.WithInstrumentationVersion(Version)), true
	} else {
		t.tracer = noop.NewTracerProvider().Tracer(tracerName)
	}
	return t
}

// mark remembers a stored sampled frame.
func (t *tracing) mark(m traceMark) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n > 0 && m.end <= t.marks[(t.head+t.n-1)%traceMarks].end {
		t.head, t.n = 0, 0 // a new history: older marks name other bytes
	}
	if t.n == traceMarks {
		t.head = (t.head + 1) % traceMarks
		t.n--
	}
	t.marks[(t.head+t.n)%traceMarks] = m
	t.n++
	t.newest.Store(m.end)
}

// unmark forgets the newest mark if it ends at end (its frame was not
// stored).
func (t *tracing) unmark(end int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n > 0 && t.marks[(t.head+t.n-1)%traceMarks].end == end {
		t.n--
		newest := int64(0)
		if t.n > 0 {
			newest = t.marks[(t.head+t.n-1)%traceMarks].end
		}
		t.newest.Store(newest)
	}
}

// forget drops every mark (a new history: they name other bytes).
func (t *tracing) forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.head, t.n = 0, 0
	t.newest.Store(0)
}

// markIn returns the newest mark whose last byte lies in [start, end).
func (t *tracing) markIn(start, end int64) (traceMark, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := t.n - 1; i >= 0; i-- {
		m := &t.marks[(t.head+i)%traceMarks]
		if m.end <= start {
			break
		}
		if m.end <= end {
			return *m, true
		}
	}
	return traceMark{}, false
}

// traceFrame decides whether the frame s, about to be sent to the child of
// f, is traced. If so it starts an arbor.replicate span, puts its context
// in s.TraceContext and returns the span, which the caller ends with
// endSpan once the frame is sent; otherwise it returns nil and allocates
// nothing. Only the feeder's goroutine calls it.
func (f *feeder) traceFrame(s *arborv1.Stream) trace.Span {
	t := f.r.tracing
	start, end := s.GetStartOffset(), s.GetStartOffset()+int64(s.GetRawLen())
	if t.newest.Load() > start {
		// A sampled frame from the parent may end in this one: pass it on.
		if m, ok := t.markIn(start, end); ok {
			return t.startReplicate(trace.ContextWithSpanContext(context.Background(), m.sc), m.received, f.c, s, m.sc)
		}
	}
	now, ok := f.r.sampleAtRoot(&f.nextTrace)
	if !ok {
		return nil
	}
	began := now
	if o := s.GetOriginTimeUnixNano(); o > 0 && o < now.UnixNano() {
		began = time.Unix(0, o)
	}
	return t.startReplicate(context.Background(), began, f.c, s, trace.SpanContext{})
}

// sampleAtRoot tells whether a link (a child relay's, or a replica's)
// starts a trace now: only the root does, with a tracer, at most once per
// TraceEvery per link; next is the link's own sampling clock (unix nanos),
// owned by its one sending goroutine. Without a tracer it does not even
// read the clock.
func (r *Relay) sampleAtRoot(next *int64) (time.Time, bool) {
	t := r.tracing
	if !t.sample || t.every <= 0 {
		return time.Time{}, false
	}
	now := time.Now()
	if now.UnixNano() < *next {
		return now, false
	}
	*next = now.Add(t.every).UnixNano()
	return now, r.currentUpstream().Kind == UpstreamRedis
}

// startReplicate starts the span of one hop of a sampled frame and injects
// its context (or, from a relay without a tracer, the parent's) into s.
func (t *tracing) startReplicate(parent context.Context, began time.Time, c *childLink, s *arborv1.Stream, inherited trace.SpanContext) trace.Span {
	_, sp := t.tracer.Start(parent, SpanReplicate,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithTimestamp(began),
		trace.WithAttributes(
			AttrRelayID.String(t.relayID),
			AttrRelaySite.String(t.site),
			AttrChildID.String(c.id),
			AttrChildSite.String(c.site),
			AttrOffsetStart.Int64(s.GetStartOffset()),
			AttrOffsetEnd.Int64(s.GetStartOffset()+int64(s.GetRawLen())),
			AttrFrameBytes.Int(int(s.GetRawLen())),
			AttrWireBytes.Int(len(s.GetData())),
		))
	sc := sp.SpanContext()
	if !sc.IsValid() {
		sc = inherited
	}
	if !sc.IsValid() {
		sp.End()
		return nil
	}
	s.TraceContext = make(map[string]string, 2)
	t.prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.MapCarrier(s.TraceContext))
	return sp
}

// endSpan ends a span begun by traceFrame (nil is fine), marking it failed
// when err is set.
func endSpan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(otelcodes.Error, err.Error())
	}
	sp.End()
}

// storeFrame stores a Stream frame from the parent relay. A frame that
// carries a trace context gets an arbor.relay.store span under it and is
// remembered, so the feeders pass the context on to this relay's children.
func (r *Relay) storeFrame(s *arborv1.Stream, dec *decoders, in *ingest) error {
	if len(s.GetTraceContext()) == 0 {
		return r.appendFrame(s, dec, in)
	}
	t := r.tracing
	ctx := t.prop.Extract(context.Background(), propagation.MapCarrier(s.GetTraceContext()))
	parent := trace.SpanContextFromContext(ctx)
	if !parent.IsValid() {
		return r.appendFrame(s, dec, in)
	}
	received := time.Now()
	_, sp := t.tracer.Start(ctx, SpanStore,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(received),
		trace.WithAttributes(
			AttrRelayID.String(t.relayID),
			AttrRelaySite.String(t.site),
			AttrOffsetStart.Int64(s.GetStartOffset()),
			AttrOffsetEnd.Int64(s.GetStartOffset()+int64(s.GetRawLen())),
			AttrFrameBytes.Int(int(s.GetRawLen())),
		))
	sc := sp.SpanContext()
	if !sc.IsValid() {
		sc = parent
	}
	// Marked before the bytes are stored: a feeder may send them on the
	// moment they are.
	m := traceMark{start: s.GetStartOffset(), end: s.GetStartOffset() + int64(s.GetRawLen()), sc: sc, received: received,
		origin: s.GetOriginTimeUnixNano()}
	t.mark(m)
	err := r.appendFrame(s, dec, in)
	if err != nil {
		t.unmark(m.end)
		endSpan(sp, err)
		return err
	}
	now := time.Now()
	if o := s.GetOriginTimeUnixNano(); o > 0 {
		sp.SetAttributes(AttrLagMs.Int64(max(0, now.UnixNano()-o) / int64(time.Millisecond)))
	}
	sp.End(trace.WithTimestamp(now))
	return nil
}

// maxReplicaTraces bounds the sampled offsets a replica has not acked yet;
// past it the oldest span ends unacked.
const maxReplicaTraces = 16

// replicaTrace is an arbor.replica.ack span waiting for its replica to ack
// end.
type replicaTrace struct {
	end int64
	// origin is when the root read the frame's last byte from the master
	// (the reference point of Status' lag_ms, so the two agree at every
	// depth); the span itself starts when this relay received the bytes.
	origin time.Time
	span   trace.Span
}

// replicaTraces are a replica's spans waiting for its acks: the feeding
// goroutine adds them, the ack reader ends them.
type replicaTraces struct {
	mu      sync.Mutex
	pending []replicaTrace // guarded by mu, ordered by end
	// next is when the root may sample a write to this replica next (unix
	// nanos); owned by the feeding goroutine.
	next int64
}

// traceReplicaWrite decides whether the bytes [start, end) just written to
// replica rp are traced, and if so starts an arbor.replica.ack span that
// acked ends: under the span of a sampled frame from the parent that ends
// in them, or at the root, once per TraceEvery, as a trace of its own.
// Only the goroutine that feeds rp calls it.
func (r *Relay) traceReplicaWrite(rp *replica, start, end int64) {
	t := r.tracing
	var parent context.Context
	var began, origin time.Time
	off := end
	if t.newest.Load() > start {
		if m, ok := t.markIn(start, end); ok {
			parent, began, off = trace.ContextWithSpanContext(context.Background(), m.sc), m.received, m.end
			// The span starts when this relay got the bytes; its lag
			// counts from when the root read them, as the replica's
			// lag_ms in Status does, so the two agree below the root.
			if m.origin > 0 && m.origin < time.Now().UnixNano() {
				origin = time.Unix(0, m.origin)
			}
		}
	}
	if parent == nil {
		now, ok := r.sampleAtRoot(&rp.traces.next)
		if !ok {
			return
		}
		parent, began = context.Background(), now
		if o, ok := r.timeline.originOf(end - 1); ok && o > 0 && o < now.UnixNano() {
			began = time.Unix(0, o)
		}
	}
	if origin.IsZero() {
		origin = began
	}
	_, sp := t.tracer.Start(parent, SpanReplicaAck,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(began),
		trace.WithAttributes(
			AttrRelayID.String(t.relayID),
			AttrRelaySite.String(t.site),
			AttrReplicaID.String(rp.name()),
			AttrOffsetEnd.Int64(off),
		))
	if !sp.IsRecording() {
		return // no tracer here: nothing is recorded
	}
	rp.traces.mu.Lock()
	defer rp.traces.mu.Unlock()
	if len(rp.traces.pending) == maxReplicaTraces {
		old := rp.traces.pending[0]
		endSpan(old.span, errNotAcked)
		rp.traces.pending = rp.traces.pending[1:]
	}
	rp.traces.pending = append(rp.traces.pending, replicaTrace{end: off, origin: origin, span: sp})
}

// errNotAcked ends a replica's span whose offset it never acked.
var errNotAcked = errors.New("replica did not ack the sampled offset")

// acked ends the spans of the offsets a replica's ack at off covers.
func (rt *replicaTraces) acked(off int64) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.pending) == 0 || rt.pending[0].end > off {
		return
	}
	now := time.Now()
	i := 0
	for ; i < len(rt.pending) && rt.pending[i].end <= off; i++ {
		p := rt.pending[i]
		p.span.SetAttributes(AttrLagMs.Int64(now.Sub(p.origin).Milliseconds()))
		p.span.End(trace.WithTimestamp(now))
	}
	rt.pending = rt.pending[i:]
}

// close ends the spans still waiting when the replica's link ends.
func (rt *replicaTraces) close() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, p := range rt.pending {
		endSpan(p.span, errNotAcked)
	}
	rt.pending = nil
}
