package actions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StartFrom wraps js for a worker's pipeline.Runner so that a durable
// consumer that does not exist yet starts at the alerts stored since
// since() (DeliverByStartTime), not at new ones: a worker that starts after
// the evaluator has published its first alerts still gets them (bounded by
// the worker's max_alert_age; the worker's idempotency keys keep a replayed
// alert from being acted on twice). An existing consumer keeps its start
// policy (JetStream refuses to change it), so the runner's update only
// changes what may change.
func StartFrom(js jetstream.JetStream, since func() time.Time) jetstream.JetStream {
	return startFrom{JetStream: js, since: since}
}

type startFrom struct {
	jetstream.JetStream
	since func() time.Time
}

// CreateOrUpdateConsumer creates cfg's durable starting at since(), or
// updates the existing one keeping its start policy.
func (s startFrom) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.Durable == "" {
		return s.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
	}
	for attempt := 0; ; attempt++ {
		c, err := s.JetStream.Consumer(ctx, stream, cfg.Durable)
		switch {
		case err == nil:
			have := c.CachedInfo().Config
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = have.DeliverPolicy, have.OptStartSeq, have.OptStartTime
			return s.JetStream.UpdateConsumer(ctx, stream, cfg)
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, fmt.Errorf("looking up consumer %s: %w", cfg.Durable, err)
		}
		start := s.since().UTC()
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, 0, &start
		c, err = s.JetStream.CreateConsumer(ctx, stream, cfg)
		if errors.Is(err, jetstream.ErrConsumerExists) && attempt == 0 {
			continue // another replica created it first: update that one
		}
		return c, err
	}
}
