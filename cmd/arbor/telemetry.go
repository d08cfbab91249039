package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/arbor-fabric/arbor/relay"
)

// The OpenTelemetry service.name of each kind of process
// (OTEL_SERVICE_NAME overrides it).
const (
	relayServiceName = "arbor-relay"
	nodeServiceName  = "arbor-node"
)

// telemetryShutdownTimeout bounds flushing the exporters on exit.
const telemetryShutdownTimeout = 5 * time.Second

// telemetry is a relay process's OpenTelemetry setup: a MeterProvider read
// by Prometheus (/metrics on --debug-addr) and, when the OTLP environment
// asks for it, by an OTLP exporter; and a TracerProvider exporting spans
// over OTLP. A nil provider means the signal is off.
type telemetry struct {
	meters  *sdkmetric.MeterProvider
	tracers *sdktrace.TracerProvider
	// metrics serves the Prometheus text format; nil without prometheus.
	metrics http.Handler
	// stopDebug stops the --debug-addr endpoint; nil without one.
	stopDebug func()
}

// otlpEnv is what the OpenTelemetry environment variables ask of the OTLP
// exporters. The exporters read the rest themselves (headers, TLS,
// insecure, timeout, compression, endpoints).
type otlpEnv struct {
	traces, metrics bool
}

// readOTLPEnv applies the conventions: OTLP export of a signal is on when
// OTEL_EXPORTER_OTLP_ENDPOINT or the signal's own endpoint variable is set,
// unless OTEL_SDK_DISABLED is true or OTEL_{TRACES,METRICS}_EXPORTER says
// none; only the grpc protocol is supported.
func readOTLPEnv(getenv func(string) string) (otlpEnv, error) {
	var e otlpEnv
	if disabled, _ := strconv.ParseBool(getenv("OTEL_SDK_DISABLED")); disabled {
		return e, nil
	}
	signal := func(name string) (bool, error) {
		upper := strings.ToUpper(name)
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_"+upper+"_ENDPOINT") == "" {
			return false, nil
		}
		switch exp := strings.TrimSpace(getenv("OTEL_" + upper + "_EXPORTER")); exp {
		case "", "otlp":
		case "none":
			return false, nil
		default:
			return false, fmt.Errorf("OTEL_%s_EXPORTER=%s: only otlp (or none) is supported", upper, exp)
		}
		proto := getenv("OTEL_EXPORTER_OTLP_" + upper + "_PROTOCOL")
		if proto == "" {
			proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		if proto != "" && proto != "grpc" {
			return false, fmt.Errorf("OTLP protocol %q for %s: only grpc is supported", proto, name)
		}
		return true, nil
	}
	var err error
	if e.traces, err = signal("traces"); err != nil {
		return e, err
	}
	e.metrics, err = signal("metrics")
	return e, err
}

// startTelemetry builds the providers of process id of service (a relay or
// a node agent): with a debugAddr, Prometheus (its own registry, never the
// global one) served as /metrics there beside /debug/pprof; OTLP as the
// environment says. Call shutdown on exit to stop the endpoint and flush
// the providers.
func startTelemetry(ctx context.Context, service, id, debugAddr string, log *slog.Logger) (*telemetry, error) {
	withPrometheus := debugAddr != ""
	env, err := readOTLPEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	t := &telemetry{}
	if !withPrometheus && !env.metrics && !env.traces {
		return t, nil
	}
	// Our attributes first, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// override them.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceInstanceID(id), semconv.ServiceVersion(relay.Version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	var readers []sdkmetric.Option
	if withPrometheus {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		exp, err := otelprom.New(
			otelprom.WithRegisterer(reg),
			otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		)
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
		t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)})
	}
	if env.metrics {
		exp, err := otlpmetricgrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
		// The interval comes from OTEL_METRIC_EXPORT_INTERVAL (60 s).
		readers = append(readers, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		log.Info("exporting metrics over OTLP")
	}
	if len(readers) > 0 {
		t.meters = sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
	}
	if env.traces {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			t.shutdown(ctx, log)
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		// The sampler comes from OTEL_TRACES_SAMPLER (parent-based, always
		// on): the relay samples frames itself (--trace-every).
		t.tracers = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		log.Info("exporting traces over OTLP")
	}
	if withPrometheus {
		if t.stopDebug, err = serveDebug(ctx, debugAddr, log, t.metrics); err != nil {
			t.shutdown(ctx, log)
			return nil, err
		}
	}
	return t, nil
}

// configure gives cfg the providers that are on.
func (t *telemetry) configure(cfg *relay.Config) {
	if t.meters != nil {
		cfg.MeterProvider = t.meters
	}
	if t.tracers != nil {
		cfg.TracerProvider = t.tracers
	}
}

// shutdown stops the debug endpoint, then flushes and stops the
// providers, within a bounded time even once ctx has ended.
func (t *telemetry) shutdown(ctx context.Context, log *slog.Logger) {
	if t.stopDebug != nil {
		t.stopDebug()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
	defer cancel()
	var errs []error
	if t.tracers != nil {
		errs = append(errs, t.tracers.Shutdown(ctx))
	}
	if t.meters != nil {
		errs = append(errs, t.meters.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("telemetry shutdown", "err", err)
	}
}
