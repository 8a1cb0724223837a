package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/ingest"
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

// stage builds the ingest actor on rt.
func (f *ingestFlags) stage(rt *runtime) (actor, error) {
	src, err := ingest.NewSSESource(ingest.SSEConfig{URL: f.Source, UserAgent: f.UserAgent, IdleTimeout: f.IdleTimeout})
	if err != nil {
		return actor{}, err
	}
	in, err := ingest.New(rt.nc, src, ingest.Config{
		PositionKey: f.PositionKey, Since: f.Since, MaxEventSize: f.MaxEventSize,
		MaxInFlight: f.MaxInFlight, DrainTimeout: f.DrainTimeout,
	}, rt.reg, rt.log, time.Now)
	if err != nil {
		return actor{}, err
	}
	rt.health.AddCheck("ingest", in.Ready)
	rt.log.Info().Str("source", f.Source).Msg("ingest configured")
	return actor{name: "ingest", run: in.Run}, nil
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

// runStages sets up the runtime, builds the actors and runs them with the
// ops HTTP server until ctx ends (SIGTERM), then drains them.
func runStages(ctx context.Context, name string, c commonFlags, emb *embeddedFlags, builders ...func(*runtime) (actor, error)) error {
	rt, closeRT, err := setup(ctx, name, c, emb)
	if err != nil {
		return err
	}
	defer closeRT()
	actors := make([]actor, 0, len(builders)+1)
	for _, b := range builders {
		a, err := b(rt)
		if err != nil {
			return err
		}
		actors = append(actors, a)
	}
	mux := opsMux(rt)
	actors = append(actors, actor{name: "ops", run: func(ctx context.Context) error {
		return serveOps(ctx, c.OpsAddr, mux, rt)
	}})
	return runActors(ctx, rt.log, actors...)
}
