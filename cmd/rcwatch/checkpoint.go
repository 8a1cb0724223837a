package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/pipeline"
)

// checkpointFlags keep a small checkpoint outside JetStream (Toolforge: the
// tool's NFS home, while JetStream lives on the container's disk).
type checkpointFlags struct {
	File     string
	Interval time.Duration
}

func (f *checkpointFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.File, "checkpoint", "", "file holding the event time every stage has finished; with an empty store, ingest resumes from it (for JetStream on disposable storage)")
	fs.DurationVar(&f.Interval, "checkpoint-interval", 5*time.Second, "how often the checkpoint file is rewritten")
}

// stage reads the checkpoint before ingest is built: when the store has no
// ingest position (a new container) ingest starts from the checkpoint's
// time. The stage then rewrites the checkpoint every Interval and at stop.
func (f *checkpointFlags) stage(in *ingestFlags) func(*runtime) (stage, error) {
	return func(rt *runtime) (stage, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := rt.js.KeyValue(ctx, pipeline.BucketIngest)
		if err != nil {
			return stage{}, err
		}
		_, err = kv.Get(ctx, in.PositionKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			c, ok, rerr := pipeline.ReadCheckpoint(f.File)
			if rerr != nil {
				return stage{}, rerr
			}
			if ok {
				in.Since = c.ResumeFrom.UTC().Format(time.RFC3339) // whole seconds: never later than the event
				rt.log.Info().Str("checkpoint", f.File).Str("since", in.Since).
					Msg("empty store: ingest resumes from the checkpoint")
			}
		case err != nil:
			return stage{}, err
		}
		return stage{"checkpoint", &checkpointer{file: f.File, every: f.Interval, js: rt.js, log: rt.log}}, nil
	}
}

// checkpointer is the stage that writes the checkpoint.
type checkpointer struct {
	file  string
	every time.Duration
	js    jetstream.JetStream
	log   zerolog.Logger

	mu      sync.Mutex
	lastErr error
	last    time.Time
}

func (c *checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// A last write: the stages are draining, so it may be a little
			// behind, which only means a few more repeats, never a skip.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			c.write(wctx)
			cancel()
			return nil
		case <-t.C:
			wctx, cancel := context.WithTimeout(ctx, c.every)
			c.write(wctx)
			cancel()
		}
	}
}

func (c *checkpointer) write(ctx context.Context) {
	resume, ok, err := pipeline.ResumePoint(ctx, c.js)
	if err == nil && ok && !resume.Equal(c.last) {
		err = pipeline.WriteCheckpoint(c.file, pipeline.Checkpoint{ResumeFrom: resume, WrittenAt: time.Now().UTC()})
		if err == nil {
			c.last = resume
		}
	}
	c.mu.Lock()
	changed := (err == nil) != (c.lastErr == nil)
	c.lastErr = err
	c.mu.Unlock()
	if err != nil && changed && ctx.Err() == nil {
		c.log.Error().Err(err).Str("checkpoint", c.file).Msg("checkpoint not written")
	}
}

// Ready fails while the checkpoint cannot be written.
func (c *checkpointer) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}
