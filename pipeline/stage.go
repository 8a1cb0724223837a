package pipeline

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Deps are what every stage is built from: the dependencies cmd/rcwatch
// builds once per process and hands to each stage's constructor, always as
// its first argument (New(deps, cfg, …)). A stage opens its KV buckets and
// consumers in Run with Run's ctx, never in its constructor.
type Deps struct {
	// NC is the NATS connection; a stage that needs a JetStream context with
	// its own options (ingest's async publish window) builds it from NC.
	NC *nats.Conn
	// JS is the shared JetStream context on NC.
	JS jetstream.JetStream
	// Reg receives the stage's metrics (nil: no metrics). Registration
	// errors are returned by the constructor, never panics.
	Reg prometheus.Registerer
	// Log is the process logger; the stage adds its own "stage" field.
	Log zerolog.Logger
	// Now is the clock (nil: time.Now). No stage calls time.Now itself.
	Now func() time.Time
}

// Clock returns d.Now, or time.Now when it is nil.
func (d Deps) Clock() func() time.Time {
	if d.Now == nil {
		return time.Now
	}
	return d.Now
}

// Logger returns d.Log with the stage's name as a field.
func (d Deps) Logger(stage string) zerolog.Logger {
	return d.Log.With().Str("stage", stage).Logger()
}

// Stage is the shape of every stage (ingest, rules, irc, edit, feed).
type Stage interface {
	// Run does the stage's work until ctx is cancelled, then drains (stops
	// taking work, finishes and acknowledges what it holds) and returns nil.
	// A cancellation during start-up is a normal stop, not an error.
	Run(ctx context.Context) error
	// Ready reports whether the stage is doing its job (nil) or why not.
	// It is cheap and never blocks: it backs /readyz.
	Ready() error
}
