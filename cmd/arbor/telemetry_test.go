package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	"github.com/arbor-fabric/arbor/relay"
)

func TestReadOTLPEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    otlpEnv
		wantErr string
	}{
		{name: "nothing set", want: otlpEnv{}},
		{name: "one endpoint for both", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"},
			want: otlpEnv{traces: true, metrics: true}},
		{name: "traces only", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"},
			want: otlpEnv{traces: true}},
		{name: "metrics only", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4317"},
			want: otlpEnv{metrics: true}},
		{name: "traces exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"},
			want: otlpEnv{metrics: true}},
		{name: "sdk disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"},
			want: otlpEnv{}},
		{name: "grpc protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: otlpEnv{traces: true, metrics: true}},
		{name: "http protocol refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"},
			wantErr: "only grpc"},
		{name: "other exporter refused", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "zipkin"},
			wantErr: "only otlp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readOTLPEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// runArbor runs the command in-process until the test ends.
func runArbor(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		out, err := arbor(ctx, args...)
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("arbor %s: %v", strings.Join(args, " "), err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("arbor %s did not stop", strings.Join(args, " "))
		}
	})
}

func loopbackAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// promValue finds the sample of metric name whose labels include every
// label given ("k=\"v\"").
func promValue(text, name string, labels ...string) (float64, bool) {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, line := range strings.Split(text, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if v, err := strconv.ParseFloat(m[2], 64); ok && err == nil {
			return v, true
		}
	}
	return 0, false
}

// TestRelayMetricsEndpoint: `arbor relay --debug-addr` serves the relay's
// metrics on /metrics in the Prometheus format, with units in the names,
// help text, the child's labels and the process resource in target_info,
// next to /debug/pprof.
func TestRelayMetricsEndpoint(t *testing.T) {
	noLeaks(t)
	master := redistest.Start(t)
	redisAddr, debugAddr := loopbackAddr(t), loopbackAddr(t)
	runArbor(t, "relay", "--id", "relay-prom", "--site", "A", "--data-dir", t.TempDir(), "--upstream", "redis://"+master.Addr,
		"--redis-addr", redisAddr, "--debug-addr", debugAddr, "--log-level", "warn")
	redistest.WaitFor(t, 10*time.Second, func() error { _, err := relayInfoInt(redisAddr, "master_repl_offset"); return err })
	rep := redistest.Start(t)
	_, port, _ := net.SplitHostPort(redisAddr)
	p, _ := strconv.Atoi(port)
	if err := rep.ReplicaOf(context.Background(), "127.0.0.1", p); err != nil {
		t.Fatal(err)
	}
	if err := master.Client().Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	redistest.WaitInSync(t, 60*time.Second, master, rep)

	var text string
	redistest.WaitFor(t, 10*time.Second, func() error {
		var err error
		if text, err = httpGet("http://" + debugAddr + "/metrics"); err != nil {
			return err
		}
		stored, err := relayInfoInt(redisAddr, "arbor_stored_offset")
		if err != nil {
			return err
		}
		if v, ok := promValue(text, "arbor_relay_stored_offset_bytes", `relay_id="relay-prom"`); !ok || int64(v) != stored {
			return fmt.Errorf("arbor_relay_stored_offset_bytes %v (present %v), INFO arbor_stored_offset %d", v, ok, stored)
		}
		if v, ok := promValue(text, "arbor_relay_child_lag_bytes", `child_kind="redis"`, `child_id="`+rep.Addr+`"`, `child_site="A"`); !ok || v != 0 {
			return fmt.Errorf("arbor_relay_child_lag_bytes of %s: %v (present %v), want 0", rep.Addr, v, ok)
		}
		return nil
	})
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"arbor_relay_upstream_up", nil, 1},
		{"arbor_relay_upstream_lag_bytes", nil, 0},
		{"arbor_relay_syncs_served_total", []string{`sync_kind="full"`}, 1},
		{"arbor_relay_syncs_received_total", []string{`sync_kind="full"`}, 1},
		{"arbor_relay_child_lag_time_seconds", []string{`child_kind="redis"`}, 0},
		{"target_info", []string{`service_name="arbor-relay"`, `service_instance_id="relay-prom"`}, 1},
	} {
		if v, ok := promValue(text, want.name, want.labels...); !ok || v != want.value {
			t.Errorf("%s%v: got %v (present %v), want %v", want.name, want.labels, v, ok, want.value)
		}
	}
	for _, want := range []string{
		"# HELP arbor_relay_child_lag_bytes Stored offset minus the child's acknowledged offset.",
		"# TYPE arbor_relay_syncs_served_total counter",
		"# TYPE arbor_relay_child_acked_offset_bytes gauge",
		"arbor_relay_backlog_limit_bytes{",
		"arbor_relay_site_at_risk_bytes{",
		"arbor_relay_site_acked_offset_bytes{",
		"arbor_relay_master_offset_bytes{",
		"arbor_relay_link_sent_bytes_total{",
		"go_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("/metrics:\n%s", text)
	}
	if _, err := httpGet("http://" + debugAddr + "/debug/pprof/"); err != nil {
		t.Errorf("pprof: %v", err)
	}
}

// collector is an OTLP/gRPC receiver that keeps what it is sent.
type collector struct {
	colltracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	traces  []*colltracepb.ExportTraceServiceRequest
	metrics []*collmetricpb.ExportMetricsServiceRequest
}

func (c *collector) Export(_ context.Context, r *colltracepb.ExportTraceServiceRequest) (*colltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.traces = append(c.traces, r)
	return &colltracepb.ExportTraceServiceResponse{}, nil
}

// metricsService adapts the collector to the metrics service, whose method
// has the same name as the trace service's.
type metricsService struct {
	collmetricpb.UnimplementedMetricsServiceServer
	c *collector
}

func (m metricsService) Export(_ context.Context, r *collmetricpb.ExportMetricsServiceRequest) (*collmetricpb.ExportMetricsServiceResponse, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.c.metrics = append(m.c.metrics, r)
	return &collmetricpb.ExportMetricsServiceResponse{}, nil
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	srv := grpc.NewServer()
	colltracepb.RegisterTraceServiceServer(srv, c)
	collmetricpb.RegisterMetricsServiceServer(srv, metricsService{c: c})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return c, ln.Addr().String()
}

func resourceAttr(r *resourcepb.Resource, key string) string {
	for _, kv := range r.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func kvString(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// exportedSpan is a span as the collector got it, with its service.
type exportedSpan struct {
	instance, name, relay string
	traceID, spanID       string
	parent                string
}

func (c *collector) spans() []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []exportedSpan
	for _, req := range c.traces {
		for _, rs := range req.GetResourceSpans() {
			if resourceAttr(rs.GetResource(), "service.name") != "arbor-relay" {
				continue
			}
			inst := resourceAttr(rs.GetResource(), "service.instance.id")
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, exportedSpan{instance: inst, name: s.GetName(), relay: kvString(s.GetAttributes(), string(relay.AttrRelayID)),
						traceID: fmt.Sprintf("%x", s.GetTraceId()), spanID: fmt.Sprintf("%x", s.GetSpanId()), parent: fmt.Sprintf("%x", s.GetParentSpanId())})
				}
			}
		}
	}
	return out
}

// metricNames lists the metrics instance exported.
func (c *collector) metricNames(instance string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, req := range c.metrics {
		for _, rm := range req.GetResourceMetrics() {
			if resourceAttr(rm.GetResource(), "service.instance.id") != instance {
				continue
			}
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					if !slices.Contains(out, m.GetName()) {
						out = append(out, m.GetName())
					}
				}
			}
		}
	}
	return out
}

// TestRelayOTLPExport: with OTEL_EXPORTER_OTLP_ENDPOINT set, two `arbor
// relay` processes (a root and a child relay) export their metrics and the
// replication spans to an OTLP/gRPC collector, as service arbor-relay with
// their relay id as instance: one trace holds the root's arbor.replicate
// and the child's arbor.relay.store under it.
func TestRelayOTLPExport(t *testing.T) {
	noLeaks(t)
	coll, addr := startCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	master := redistest.Start(t)
	rootRedis, rootGRPC, childRedis := loopbackAddr(t), loopbackAddr(t), loopbackAddr(t)
	runArbor(t, "relay", "--id", "relay-root", "--site", "A", "--data-dir", t.TempDir(), "--upstream", "redis://"+master.Addr,
		"--redis-addr", rootRedis, "--grpc-addr", rootGRPC, "--plaintext", "--trace-every", "100ms", "--log-level", "warn")
	runArbor(t, "relay", "--id", "relay-child", "--site", "B", "--data-dir", t.TempDir(), "--upstream", "arbor://"+rootGRPC,
		"--redis-addr", childRedis, "--plaintext", "--log-level", "warn")
	redistest.WaitFor(t, 30*time.Second, func() error {
		n, err := relayInfoInt(childRedis, "master_repl_offset")
		if err == nil && n == 0 {
			err = fmt.Errorf("relay-child holds nothing yet")
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := redistest.WriteLoad(ctx, master.Client(), 20_000); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		spans := coll.spans()
		byID := map[string]exportedSpan{}
		for _, s := range spans {
			byID[s.spanID] = s
		}
		for _, s := range spans {
			if s.name != relay.SpanStore || s.instance != "relay-child" || s.relay != "relay-child" {
				continue
			}
			if p, ok := byID[s.parent]; ok && p.name == relay.SpanReplicate && p.instance == "relay-root" && p.traceID == s.traceID {
				return nil
			}
		}
		return fmt.Errorf("no arbor.relay.store span of relay-child under an arbor.replicate span of relay-root among %d spans", len(spans))
	})
	redistest.WaitFor(t, 10*time.Second, func() error {
		for _, inst := range []string{"relay-root", "relay-child"} {
			names := coll.metricNames(inst)
			for _, want := range []string{"arbor.relay.stored.offset", "arbor.relay.child.lag", "arbor.relay.upstream.up"} {
				if !slices.Contains(names, want) && !(inst == "relay-child" && want == "arbor.relay.child.lag") {
					return fmt.Errorf("%s exported %v, not %s", inst, names, want)
				}
			}
		}
		return nil
	})
}

// TestNodeMetricsEndpoint: `arbor node --debug-addr` serves Prometheus
// metrics under its own service name (arbor-node), with its election role
// and its Redis's state.
func TestNodeMetricsEndpoint(t *testing.T) {
	noLeaks(t)
	c := etcdtest.Start(t, 1)
	rds := redistest.Start(t)
	debugAddr := loopbackAddr(t)
	runArbor(t, "node", "--id", "n-prom", "--site", "A", "--redis", "redis://"+rds.Addr,
		"--etcd", strings.Join(c.Endpoints(), ","), "--cluster", "nodeprom", "--elect",
		"--debug-addr", debugAddr, "--log-level", "warn")
	redistest.WaitFor(t, 20*time.Second, func() error {
		text, err := httpGet("http://" + debugAddr + "/metrics")
		if err != nil {
			return err
		}
		if v, ok := promValue(text, "target_info", `service_name="arbor-node"`, `service_instance_id="n-prom"`); !ok || v != 1 {
			return fmt.Errorf("target_info of arbor-node n-prom: %v (present %v)", v, ok)
		}
		if !strings.Contains(text, "arbor_node_election_role") {
			return fmt.Errorf("no arbor_node_election_role in /metrics")
		}
		// Its Redis: up, healthy, a master (role 1) with an offset.
		for name, want := range map[string]float64{"arbor_node_redis_up": 1, "arbor_node_healthy": 1, "arbor_node_redis_role": 1} {
			if v, ok := promValue(text, name, `node_id="n-prom"`); !ok || v != want {
				return fmt.Errorf("%s: %v (present %v), want %v", name, v, ok, want)
			}
		}
		if _, ok := promValue(text, "arbor_node_offset_bytes", `node_id="n-prom"`); !ok {
			return fmt.Errorf("no arbor_node_offset_bytes in /metrics")
		}
		return nil
	})
}
