package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/ops"
)

// DefaultSource is Wikimedia's public recent-changes stream.
const DefaultSource = "https://stream.wikimedia.org/v2/stream/recentchange"

type ingestFlags struct {
	Source       string
	UserAgent    string
	Since        string
	MaxEventSize int
	MaxInFlight  int
	PositionKey  string
	IdleTimeout  time.Duration
	DrainTimeout time.Duration
}

func (f *ingestFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Source, "source", DefaultSource, "EventStreams-compatible SSE endpoint")
	fs.StringVar(&f.UserAgent, "user-agent", ingest.DefaultUserAgent, "User-Agent sent to the source (name a contact, per Wikimedia policy)")
	fs.StringVar(&f.Since, "since", "", "where to start when no position is stored: RFC 3339 time or duration ago (e.g. 2h)")
	fs.IntVar(&f.MaxEventSize, "max-event-size", 1<<20, "events larger than this many bytes are dead-lettered")
	fs.IntVar(&f.MaxInFlight, "max-in-flight", 1024, "unacknowledged publishes before reading pauses")
	fs.StringVar(&f.PositionKey, "position-key", "position.recentchange", "KV key (bucket ingest) of the resume position")
	fs.DurationVar(&f.IdleTimeout, "idle-timeout", 2*time.Minute, "reconnect when the source sends nothing for this long")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 20*time.Second, "on SIGTERM, wait this long for outstanding publish acks")
}

// stage builds the ingest stage on rt.
func (f *ingestFlags) stage(rt *runtime) (stage, error) {
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: f.Source, UserAgent: f.UserAgent, IdleTimeout: f.IdleTimeout})
	if err != nil {
		return stage{}, err
	}
	in, err := ingest.New(rt.deps, ingest.Config{
		PositionKey: f.PositionKey, Since: f.Since, MaxEventSize: f.MaxEventSize,
		MaxInFlight: f.MaxInFlight, DrainTimeout: f.DrainTimeout,
	}, src)
	if err != nil {
		return stage{}, err
	}
	rt.log.Info().Str("source", f.Source).Msg("ingest configured")
	return stage{"ingest", in}, nil
}

func newIngestCmd() *cobra.Command {
	var c commonFlags
	var f ingestFlags
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Run the ingest stage alone: EventStreams SSE → JetStream RECENTCHANGE",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStages(cmd.Context(), "ingest", c, nil, f.stage)
		},
	}
	c.register(cmd.Flags(), ":9090")
	f.register(cmd.Flags())
	return cmd
}

// runStages sets up the runtime, builds the stages and runs them with the
// ops HTTP server until ctx ends (SIGTERM), then drains them. Each stage's
// Ready is a /readyz check under its name.
func runStages(ctx context.Context, name string, c commonFlags, emb *embeddedFlags, builders ...func(*runtime) (stage, error)) error {
	rt, closeRT, err := setup(ctx, name, c, emb)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil // SIGTERM during start-up: nothing to drain yet
		}
		return err
	}
	defer closeRT()
	actors := make([]actor, 0, len(builders)+1)
	for _, b := range builders {
		s, err := b(rt)
		if err != nil {
			return err
		}
		rt.health.AddCheck(s.name, s.Ready)
		actors = append(actors, actor{name: s.name, run: s.Run})
	}
	mux := ops.Handler(rt.reg, rt.health)
	if c.Pprof {
		ops.MountPprof(mux)
	}
	actors = append(actors, actor{name: "ops", run: func(ctx context.Context) error {
		return ops.Serve(ctx, c.OpsAddr, mux, rt.log)
	}})
	return runActors(ctx, rt.log, actors...)
}
