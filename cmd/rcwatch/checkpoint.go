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
		cp := &checkpointer{file: f.File, every: f.Interval, js: rt.js, log: rt.log}
		_, err = kv.Get(ctx, in.PositionKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			c, ok, rerr := pipeline.ReadCheckpoint(f.File)
			if rerr != nil {
				return stage{}, rerr
			}
			if ok {
				cp.last = c.ResumeFrom
				in.Since = c.ResumeFrom.UTC().Format(time.RFC3339) // whole seconds: never later than the event
				rt.log.Info().Str("checkpoint", f.File).Str("since", in.Since).
					Msg("empty store: ingest resumes from the checkpoint")
			}
		case err != nil:
			return stage{}, err
		}
		return stage{"checkpoint", cp}, nil
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
	last    time.Time         // ResumeFrom last written (or read at start)
	lost    map[string]uint64 // stream/consumer: the last lost sequence logged
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
	res, err := pipeline.ResumePoint(ctx, c.js)
	if err == nil {
		c.logLost(res.Lost)
	}
	if err == nil && !res.From.IsZero() && !res.From.Equal(c.last) {
		err = pipeline.WriteCheckpoint(c.file, pipeline.Checkpoint{ResumeFrom: res.From, WrittenAt: time.Now().UTC()})
		if err == nil {
			c.last = res.From
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

// logLost says, once per range, that the checkpoint moves past messages a
// stage had not finished because retention removed them: a restart will
// not read them again. Their event times are gone; they are after the
// previous checkpoint (when there was one) and before kept_from.
func (c *checkpointer) logLost(lost []pipeline.Loss) {
	if c.lost == nil {
		c.lost = make(map[string]uint64)
	}
	for _, l := range lost {
		key := l.Stream + "/" + l.Consumer
		from := max(l.FromSeq, c.lost[key]+1)
		if from > l.ThroughSeq {
			continue // already said
		}
		c.lost[key] = l.ThroughSeq
		ev := c.log.Error().Str("stream", l.Stream).Str("consumer", l.Consumer).
			Uint64("first_seq", from).Uint64("last_seq", l.ThroughSeq).Uint64("count", l.ThroughSeq-from+1).
			Bool("count_is_upper_bound", l.Filtered).Time("kept_from", l.KeptFrom)
		if !c.last.IsZero() && c.last.Before(l.KeptFrom) {
			ev = ev.Time("lost_after", c.last).Dur("span_at_most", l.KeptFrom.Sub(c.last))
		}
		ev.Msg("retention removed messages this consumer had not finished: the checkpoint moves past them and a restart will not read them again")
	}
}

// Ready fails while the checkpoint cannot be written.
func (c *checkpointer) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}
