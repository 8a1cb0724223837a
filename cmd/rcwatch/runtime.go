package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/ops"
	"github.com/rcwatch/rcwatch/pipeline"
)

// commonFlags are shared by every long-running stage.
type commonFlags struct {
	NATS      string
	Replicas  int
	OpsAddr   string
	Pprof     bool
	LogLevel  string
	LogFormat string
	Limits    limitFlags
}

func (c *commonFlags) register(fs *pflag.FlagSet, opsDefault string) {
	fs.StringVar(&c.NATS, "nats", "", "NATS URL(s), comma-separated; empty starts an embedded server (run only)")
	fs.IntVar(&c.Replicas, "stream-replicas", 1, "replicas of the streams and buckets this stage creates (3 in a cluster)")
	fs.StringVar(&c.OpsAddr, "ops-addr", opsDefault, "listen address of /metrics, /healthz and /readyz (empty: off)")
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve Go's profiles on --ops-addr under /debug/pprof/ (for diagnosis)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "log format: json, console, or auto (console on a terminal)")
	c.Limits.register(fs)
}

func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: %w", level, err)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	case "auto":
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
		}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json, console or auto", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// runtime holds what cmd builds once per process and every stage shares:
// the stage Deps (NATS, JetStream, registry, logger, clock), the readiness
// checks and the MediaWiki client metrics.
type runtime struct {
	deps     pipeline.Deps
	log      zerolog.Logger
	reg      *prometheus.Registry
	health   *ops.Health
	nc       *nats.Conn
	js       jetstream.JetStream
	embedded *pipeline.Embedded
	topo     pipeline.Topology

	mw    *mediawiki.Metrics // built on first use, shared by enrich and edit
	mwErr error
}

// mediawikiMetrics returns the process's one set of MediaWiki client
// metrics (the enricher and the edit worker share it).
func (rt *runtime) mediawikiMetrics() (*mediawiki.Metrics, error) {
	if rt.mw == nil && rt.mwErr == nil {
		rt.mw, rt.mwErr = mediawiki.NewMetrics(rt.reg)
	}
	return rt.mw, rt.mwErr
}

// stage is a named stage of a process; its Ready backs /readyz under its name.
type stage struct {
	name string
	pipeline.Stage
}

// embeddedFlags configure the embedded server of `rcwatch run`.
type embeddedFlags struct {
	DataDir string
	Listen  int
}

func (e *embeddedFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&e.DataDir, "data-dir", "./data", "JetStream storage of the embedded NATS server")
	fs.IntVar(&e.Listen, "nats-port", 0, "also serve the embedded NATS on this loopback port (0: in-process only, -1: any free port)")
}

// setup connects (starting the embedded server when c.NATS is empty and
// emb is not nil) and ensures the streams. close releases it all.
func setup(ctx context.Context, name string, c commonFlags, emb *embeddedFlags) (*runtime, func(), error) {
	log, err := newLogger(os.Stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		return nil, nil, err
	}
	if err := c.validate(); err != nil {
		return nil, nil, err
	}
	logMemoryLimit(log, os.Getenv)
	if emb != nil && c.NATS == "" {
		if err := emb.validate(); err != nil {
			return nil, nil, err
		}
	}
	limits, err := c.Limits.limits()
	if err != nil {
		return nil, nil, err
	}
	rt := &runtime{log: log, reg: ops.NewRegistry(), health: ops.NewHealth(),
		topo: pipeline.Topology{Replicas: max(c.Replicas, 1), Storage: jetstream.FileStorage, Limits: limits}}
	if err := rt.topo.Validate(); err != nil {
		return nil, nil, err
	}
	closers := []func(){}
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	switch {
	case c.NATS != "":
		rt.nc, err = pipeline.Connect(c.NATS, "rcwatch-"+name, log)
	case emb != nil:
		rt.embedded, err = pipeline.StartEmbedded(pipeline.EmbeddedConfig{StoreDir: emb.DataDir, Port: emb.Listen})
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, rt.embedded.Shutdown)
		if u := rt.embedded.ClientURL(); u != "" {
			log.Info().Str("url", u).Msg("embedded NATS listening")
		}
		log.Info().Str("store", emb.DataDir).Msg("embedded NATS with JetStream started")
		rt.nc, err = rt.embedded.Connect("rcwatch-"+name, log)
	default:
		err = errors.New("--nats (or RCWATCH_NATS) is required for a single stage; `rcwatch run` embeds a server")
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	closers = append(closers, func() { _ = rt.nc.Drain(); rt.nc.Close() })
	rt.health.AddCheck("nats", func() error {
		if !rt.nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		return nil
	})
	if rt.js, err = pipeline.JetStream(rt.nc); err != nil {
		closeAll()
		return nil, nil, err
	}
	if err := pipeline.WaitJetStream(ctx, rt.js, rt.topo, log); err != nil {
		closeAll()
		return nil, nil, err
	}
	if err := logHistory(ctx, rt); err != nil {
		closeAll()
		return nil, nil, err
	}
	rt.deps = pipeline.Deps{NC: rt.nc, JS: rt.js, Reg: rt.reg, Log: log, Now: time.Now}
	return rt, closeAll, nil
}

// logHistory logs how much history each stream keeps (its limits and what
// it holds) and exports the same as rcwatch_stream_* gauges.
func logHistory(ctx context.Context, rt *runtime) error {
	if _, err := pipeline.NewStreamCollector(rt.reg, rt.js, rt.topo, time.Now); err != nil {
		return err
	}
	us, err := pipeline.Usage(ctx, rt.js, rt.topo)
	if err != nil {
		rt.log.Warn().Err(err).Msg("could not read the streams' usage")
		return nil
	}
	for _, u := range us {
		ev := rt.log.Info().Str("stream", u.Name).Int64("max_bytes", u.MaxBytes).Dur("max_age", u.MaxAge).
			Uint64("bytes", u.Bytes).Uint64("messages", u.Msgs)
		if !u.Oldest.IsZero() {
			ev = ev.Time("oldest", u.Oldest)
		}
		if h := u.LiveHistory(); h > 0 {
			ev = ev.Str("history_at_live_rate", h.String())
		}
		ev.Msg("stream history kept")
	}
	return nil
}
