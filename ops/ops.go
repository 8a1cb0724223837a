// Package ops is the operations side of every rcwatch process: the
// Prometheus registry, the readiness checks and the HTTP server of
// /metrics, /healthz and /readyz.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Health collects readiness checks. Liveness (/healthz) is "the process
// serves HTTP"; readiness (/readyz) is every registered check passing.
type Health struct {
	mu     sync.RWMutex
	checks map[string]func() error
}

// NewHealth returns an empty set of checks (ready until one is added).
func NewHealth() *Health { return &Health{checks: map[string]func() error{}} }

// AddCheck registers a named readiness check. It must be cheap and non-blocking.
func (h *Health) AddCheck(name string, check func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = check
}

// Check runs every check and returns the failures by name.
func (h *Health) Check() map[string]string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	fails := map[string]string{}
	for name, c := range h.checks {
		if err := c(); err != nil {
			fails[name] = err.Error()
		}
	}
	return fails
}

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics, /healthz and /readyz. Extra routes (the web
// feed) can be mounted on the returned mux.
func Handler(reg *prometheus.Registry, h *Health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		fails := h.Check()
		w.Header().Set("Content-Type", "application/json")
		if len(fails) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": len(fails) == 0, "failing": fails})
	})
	return mux
}

// MountPprof adds Go's profiling endpoints under /debug/pprof/ (CPU, heap,
// goroutines, mutex and block profiles, execution traces). Off unless asked
// for: a profile shows the command line, and taking one costs CPU.
func MountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Serve listens on addr and serves handler until ctx ends, then shuts the
// server down gracefully. An empty addr serves nothing and blocks until ctx ends.
func Serve(ctx context.Context, addr string, handler http.Handler, log zerolog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for ops HTTP on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Info().Str("addr", ln.Addr().String()).Msg("ops HTTP listening (/metrics /healthz /readyz)")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving ops HTTP: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down ops HTTP: %w", err)
	}
	return nil
}
