package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/ops"
)

func newReplayCmd() *cobra.Command {
	var (
		listen, logLevel, logFormat string
		files                       []string
		cfg                         ingest.ReplayConfig
		rcfeed                      string
		rcfeedBuffer                int
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Serve recorded events as an EventStreams-compatible SSE endpoint (for demos and tests)",
		Long: `Serves recorded recentchange events (.sse captures, .jsonl, or concatenated .json) at
/v2/stream/recentchange: ":ok" first, "event: message", "id: <JSON array>", one "data:" line.
It honours Last-Event-ID and ?since=, can loop (rewriting meta.id on each pass so the events are new),
pace to N events/s, and cut connections every N events or D seconds as Wikimedia does.

With --from-mediawiki-rcfeed udp://HOST:PORT it serves a live MediaWiki instead: the wiki pushes its
recent changes there ($wgRCFeeds with 'formatter' => 'JSONRCFeedFormatter', 'uri' => 'udp://HOST:PORT'),
each is given EventStreams' envelope (a meta.id stable per wiki and rc id, meta.dt, meta.domain,
meta.stream) and served at the same paths; Last-Event-ID resumes from the last --rcfeed-buffer
events (older: from the oldest kept, the gap logged and counted). /metrics is served beside it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(os.Stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			if rcfeed != "" {
				return serveRCFeed(cmd.Context(), listen, rcfeed, rcfeedBuffer, log)
			}
			if len(files) == 0 {
				files, _ = filepath.Glob("testdata/fixtures/recentchange.*.jsonl")
				if len(files) == 0 {
					return errors.New("no --events given and no testdata/fixtures/recentchange.*.jsonl here")
				}
			}
			cfg.Events, err = ingest.LoadEvents(files...)
			if err != nil {
				return err
			}
			r := ingest.NewReplay(cfg, log)
			mux := http.NewServeMux()
			mux.Handle("/v2/stream/recentchange", r)
			mux.Handle("/v2/stream/mediawiki.recentchange", r)
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", listen, err)
			}
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			log.Info().Int("events", len(cfg.Events)).Strs("files", files).
				Str("url", "http://"+ln.Addr().String()+"/v2/stream/recentchange").Msg("replay serving")
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
				_ = srv.Close()
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&listen, "listen", "127.0.0.1:8092", "listen address")
	fs.StringSliceVar(&files, "events", nil, "event files (.sse, .jsonl, .json); default testdata/fixtures/recentchange.*.jsonl")
	fs.BoolVar(&cfg.Loop, "loop", false, "serve the events again and again")
	fs.BoolVar(&cfg.UniqueIDs, "unique-ids", true, "with --loop, rewrite meta.id on each pass so events are new")
	fs.IntVar(&cfg.Limit, "limit", 0, "stop after this many events (0: all, or forever with --loop)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "events per second per connection (0: as fast as possible)")
	fs.IntVar(&cfg.CutEvery, "cut-every", 0, "close each connection after N events (0: never)")
	fs.DurationVar(&cfg.CutAfter, "cut-after", 0, "close each connection after this long (Wikimedia: ~15m; 0: never)")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "answer 429 beyond this many connections (Wikimedia: 2 per IP; 0: no limit)")
	fs.BoolVar(&cfg.CloseAtEnd, "close-at-end", false, "close the connection when everything was served")
	fs.StringVar(&rcfeed, "from-mediawiki-rcfeed", "", "serve the RC feed a MediaWiki pushes to this udp://HOST:PORT instead of files")
	fs.IntVar(&rcfeedBuffer, "rcfeed-buffer", 100_000, "with --from-mediawiki-rcfeed, events kept for Last-Event-ID resumes")
	fs.StringVar(&logLevel, "log-level", "info", "log level")
	fs.StringVar(&logFormat, "log-format", "auto", "log format: json, console, auto")
	return cmd
}

// serveRCFeed is `replay --from-mediawiki-rcfeed`: UDP in, SSE out.
func serveRCFeed(ctx context.Context, listen, feedURI string, buffer int, log zerolog.Logger) error {
	u, err := url.Parse(feedURI)
	if err != nil || u.Scheme != "udp" || u.Host == "" {
		return fmt.Errorf("--from-mediawiki-rcfeed %q: want udp://HOST:PORT", feedURI)
	}
	reg := ops.NewRegistry()
	feed, err := ingest.NewRCFeed(ingest.RCFeedConfig{Buffer: buffer}, reg, log)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", u.Host)
	if err != nil {
		return fmt.Errorf("listening for the RC feed on %s: %w", u.Host, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		pc.Close()
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/stream/recentchange", feed)
	mux.Handle("/v2/stream/mediawiki.recentchange", feed)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info().Str("rcfeed", "udp://"+pc.LocalAddr().String()).Int("buffer", buffer).
		Str("url", "http://"+ln.Addr().String()+"/v2/stream/recentchange").Msg("replay serving a MediaWiki RC feed")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listenErr := make(chan error, 1)
	go func() {
		listenErr <- feed.Listen(ctx, pc)
		cancel() // a failed socket stops the server too
	}()
	go func() {
		<-ctx.Done()
		feed.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		cancel()
		<-listenErr
		return err
	}
	cancel()
	return <-listenErr
}
