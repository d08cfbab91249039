// Package dashboard serves `arbor dashboard`: one page, its assets
// embedded in the binary, that shows a cluster's fabric live. The view is
// statusview's (what `arbor status` shows), read after every change under
// the cluster's prefix in etcd by one watch, coalesced, and fanned out to
// every open page as server-sent events. The dashboard is read-only unless
// started with actions allowed (Config.AllowActions): then POST
// /api/switchover, with the action token, moves the master.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/election"
	"github.com/arbor-fabric/arbor/internal/statusview"
	"github.com/arbor-fabric/arbor/topology"
)

// Defaults of Config.
const (
	// DefaultEvery is the least time between two views sent to the pages:
	// the fabric's status changes every second per component, so a burst
	// becomes one update.
	DefaultEvery = 500 * time.Millisecond
	// DefaultRefresh is how often the view is read even without a change.
	DefaultRefresh = 5 * time.Second
	// DefaultMaxClients bounds the open event streams.
	DefaultMaxClients = 64
	// keepAlive is how often an idle event stream gets a comment, so
	// proxies and browsers keep it open.
	keepAlive = 15 * time.Second
)

// Bounds of a switchover's write pause asked for through the API.
const (
	// DefaultSwitchoverTimeout is the pause bound when the request names
	// none (what `arbor switchover` uses).
	DefaultSwitchoverTimeout = 5 * time.Second
	// MaxSwitchoverTimeout is the largest pause bound a request may ask.
	MaxSwitchoverTimeout = time.Minute
)

// ErrTooManyClients is the answer to an event stream beyond MaxClients.
var ErrTooManyClients = errors.New("too many event streams open")

// ErrNoActionToken is returned by Serve when actions are allowed with no
// token: anyone who reaches the port could move the master.
var ErrNoActionToken = errors.New("actions allowed without an action token")

//go:embed web
var webFS embed.FS

// Config configures a Server.
type Config struct {
	// Etcd is the client the view is read with; Cluster names the cluster.
	Etcd    *clientv3.Client
	Cluster string
	// History is how many of the newest failovers the view holds (0: all).
	History int
	// Every, Refresh and MaxClients default to DefaultEvery,
	// DefaultRefresh and DefaultMaxClients when 0.
	Every      time.Duration
	Refresh    time.Duration
	MaxClients int
	// Logger receives read errors; nil means slog.Default().
	Logger *slog.Logger
	// AllowActions enables POST /api/switchover; without it the
	// dashboard is read-only. ActionToken is the shared secret a request
	// must carry as "Authorization: Bearer <token>"; it must not be empty
	// when AllowActions is set.
	AllowActions bool
	ActionToken  string
}

// Server is the dashboard: Serve runs it.
type Server struct {
	cfg   Config
	log   *slog.Logger
	track *tracker

	mu      sync.Mutex
	view    []byte        // guarded by mu: the newest view's JSON, nil before the first
	seq     uint64        // guarded by mu: bumped with every new view
	changed chan struct{} // guarded by mu: closed (and replaced) when view changes
	clients int           // guarded by mu: open event streams
}

// New returns a dashboard server; call Serve.
func New(cfg Config) *Server {
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger, track: newTracker(), changed: make(chan struct{})}
}

// Serve watches the fabric and serves the page and its API on ln until ctx
// ends; then it closes the event streams and the listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.AllowActions && s.cfg.ActionToken == "" {
		_ = ln.Close()
		return ErrNoActionToken
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		statusview.Watch(ctx, s.cfg.Etcd, s.cfg.Cluster, statusview.WatchConfig{
			Every:   s.cfg.Every,
			Refresh: s.cfg.Refresh,
			Show:    s.read,
			OnError: func(err error) { s.log.Warn("dashboard: read the fabric", "err", err) },
		})
	}()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Requests end with ctx: the event streams return, so Shutdown
		// does not wait for them.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if err == nil {
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
			err = serr
		}
	}
	wg.Wait()
	return err
}

// read reads the view, adds the dashboard's figures over time (lag
// history, full-sync rates) and hands it to the event streams.
func (s *Server) read(ctx context.Context) error {
	v, err := statusview.ReadHistory(ctx, s.cfg.Etcd, s.cfg.Cluster, s.cfg.History)
	if err != nil {
		return err
	}
	b, err := json.Marshal(s.track.observe(v))
	if err != nil {
		return err
	}
	s.publish(b)
	return nil
}

// publish makes b the newest view and wakes the event streams.
func (s *Server) publish(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view = b
	s.seq++
	close(s.changed)
	s.changed = make(chan struct{})
}

// current returns the newest view, its sequence number and a channel
// closed when a newer one comes.
func (s *Server) current() ([]byte, uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view, s.seq, s.changed
}

// Handler returns the dashboard's routes:
//
//	GET /             the page
//	GET /static/...   its script and style
//	GET /api/view     the whole view as JSON (statusview.Fabric with
//	                  site_lag and full_syncs: see pageView)
//	GET /api/events   the view as server-sent events ("view"), one per change
//	GET /api/lag-history  each site's lag over the last HistoryAge
//	GET /api/config   what the page may offer: {"actions": bool}
//	POST /api/switchover  {"to": node, "timeout_ms": n}: a switchover (see
//	                  serveSwitchover), refused unless actions are allowed
//
// Anything else is refused.
func (s *Server) Handler() http.Handler {
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/view", s.serveView)
	mux.HandleFunc("GET /api/events", s.serveEvents)
	mux.HandleFunc("GET /api/lag-history", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"age_ms": HistoryAge.Milliseconds(), "sites": s.track.lagHistory()})
	})
	mux.HandleFunc("GET /api/config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]bool{"actions": s.cfg.AllowActions})
	})
	mux.HandleFunc("POST /api/switchover", s.serveSwitchover)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			jsonError(w, http.StatusMethodNotAllowed, "the dashboard's only action is POST /api/switchover")
			return
		}
		jsonError(w, http.StatusNotFound, "no such endpoint: see /api/view, /api/events, /api/lag-history and /api/config")
	})
	return headers(mux)
}

// headers sets the headers of every answer: the page loads nothing but its
// own assets.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// serveView answers the newest view; before the watch read one, it reads
// one itself.
func (s *Server) serveView(w http.ResponseWriter, r *http.Request) {
	b, _, _ := s.current()
	if b == nil {
		v, err := statusview.ReadHistory(r.Context(), s.cfg.Etcd, s.cfg.Cluster, s.cfg.History)
		if err != nil {
			jsonError(w, http.StatusServiceUnavailable, fmt.Sprintf("read the fabric: %v", err))
			return
		}
		if b, err = json.Marshal(v); err != nil {
			jsonError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// serveEvents streams every new view as an event "view" whose data is the
// view's JSON. A slow page skips views: it always gets the newest one.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		jsonError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	s.mu.Lock()
	if s.clients >= s.cfg.MaxClients {
		s.mu.Unlock()
		jsonError(w, http.StatusServiceUnavailable, ErrTooManyClients.Error())
		return
	}
	s.clients++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.clients--
		s.mu.Unlock()
	}()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// The browser reconnects after retry ms if the stream breaks.
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	flusher.Flush()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	var sent uint64
	for {
		b, seq, changed := s.current()
		if b != nil && seq != sent {
			// JSON has no raw newlines, so one data line holds it.
			if _, err := fmt.Fprintf(w, "event: view\nid: %d\ndata: %s\n\n", seq, b); err != nil {
				return
			}
			flusher.Flush()
			sent = seq
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// switchoverRequest is the body of POST /api/switchover.
type switchoverRequest struct {
	// To is the target node; "" lets the leader pick.
	To string `json:"to"`
	// TimeoutMS bounds the write pause (0: DefaultSwitchoverTimeout).
	TimeoutMS int64 `json:"timeout_ms"`
}

// serveSwitchover runs election.RequestSwitchover, as `arbor switchover`
// does, and answers the new master's record. Refusals: 403 without
// AllowActions, 401 without the token, 400 for a bad body or a node not in
// the topology, 409 when the agents refused or aborted it (nothing
// changed; a pending switchover, no live master, the target not eligible
// or not caught up in time), 503 when etcd cannot be read.
func (s *Server) serveSwitchover(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.AllowActions {
		jsonError(w, http.StatusForbidden, "actions are disabled: start with --allow-actions")
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="arbor dashboard"`)
		jsonError(w, http.StatusUnauthorized, "missing or wrong action token (Authorization: Bearer <token>)")
		return
	}
	var req switchoverRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("bad request body: %v", err))
		return
	}
	timeout := DefaultSwitchoverTimeout
	if req.TimeoutMS != 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	if timeout <= 0 || timeout > MaxSwitchoverTimeout {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("timeout_ms %d: must be in (0, %d]", req.TimeoutMS, MaxSwitchoverTimeout.Milliseconds()))
		return
	}
	if req.To != "" {
		top, _, err := topology.Load(r.Context(), s.cfg.Etcd, s.cfg.Cluster)
		if err != nil {
			jsonError(w, http.StatusServiceUnavailable, fmt.Sprintf("read the topology: %v", err))
			return
		}
		if _, ok := top.Nodes[req.To]; !ok {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("no node %q in cluster %s", req.To, s.cfg.Cluster))
			return
		}
	}
	s.log.Info("dashboard: switchover requested", "to", req.To, "timeout", timeout, "from", r.RemoteAddr)
	start := time.Now()
	m, err := election.RequestSwitchover(r.Context(), s.cfg.Etcd, s.cfg.Cluster, req.To, timeout)
	switch {
	case errors.Is(err, election.ErrSwitchover):
		s.log.Warn("dashboard: switchover refused", "to", req.To, "err", err)
		jsonError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		s.log.Warn("dashboard: switchover", "to", req.To, "err", err)
		jsonError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	s.log.Info("dashboard: switched over", "to", m.Node, "epoch", m.Epoch, "took", time.Since(start))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(m)
}

// authorized reports whether r carries the action token. The compare takes
// the same time wherever the tokens differ, so it leaks nothing of the
// token.
func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s.cfg.ActionToken == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.ActionToken)) == 1
}
