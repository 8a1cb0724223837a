package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Handler processes one message. It must be idempotent: a message can be
// delivered again after a crash. The error decides the ack (see Classify).
type Handler func(ctx context.Context, msg jetstream.Msg) error

// RetryError asks for redelivery after Wait (a server said how long, or a
// rate limit is in force). It does not count as a failure of the message.
type RetryError struct {
	Err  error
	Wait time.Duration
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry in %v: %v", e.Wait, e.Err) }
func (e *RetryError) Unwrap() error { return e.Err }

// Retry wraps err so the runner redelivers the message after wait.
func Retry(err error, wait time.Duration) error { return &RetryError{Err: err, Wait: wait} }

// InvalidError marks a message that can never be handled (malformed,
// unknown shape): it goes to the dead-letter subject and is terminated.
type InvalidError struct {
	Reason string
	Err    error
}

func (e *InvalidError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Invalid wraps err as a poison message with a short reason label.
func Invalid(reason string, err error) error { return &InvalidError{Reason: reason, Err: err} }

// Outcome is what the runner does with a message after its handler returned.
type Outcome int

// Outcomes, decided in one place (Classify).
const (
	OutcomeAck Outcome = iota
	OutcomeRetry
	OutcomeDeadLetter
	OutcomeNak
)

func (o Outcome) String() string {
	return [...]string{"ok", "retry", "dead_letter", "error"}[o]
}

// Classify maps a handler error and the delivery count to an outcome: the one
// table of ack decisions.
func Classify(err error, delivered, maxDeliver int) Outcome {
	var inv *InvalidError
	var retry *RetryError
	switch {
	case err == nil:
		return OutcomeAck
	case errors.As(err, &inv):
		return OutcomeDeadLetter
	case errors.As(err, &retry):
		return OutcomeRetry
	case maxDeliver > 0 && delivered >= maxDeliver:
		return OutcomeDeadLetter
	}
	return OutcomeNak
}

// RunnerConfig declares a consumer stage.
type RunnerConfig struct {
	Stage          string   // metric label, dead-letter subject dlq.<Stage>
	Stream         string   // stream to consume
	Durable        string   // durable consumer name, shared by replicas
	FilterSubjects []string // optional
	Workers        int      // concurrent handlers (default 4)
	AckWait        time.Duration
	MaxDeliver     int           // then dead-letter (default 10)
	MaxAckPending  int           // default 1024
	Backoff        time.Duration // base delay of Nak after a handler error (default 1s, doubled per delivery, max 1m)
	// DeliverPolicy for a new consumer (default all).
	DeliverPolicy jetstream.DeliverPolicy
}

// Runner is the generic consume→handle→ack loop every consumer stage uses.
type Runner struct {
	cfg     RunnerConfig
	js      jetstream.JetStream
	handler Handler
	log     zerolog.Logger
	m       *runnerMetrics
}

type runnerMetrics struct {
	messages     *prometheus.CounterVec
	latency      prometheus.Histogram
	redeliveries prometheus.Counter
	pending      prometheus.Gauge
}

// NewRunner builds a runner on d.JS. Metrics register on d.Reg (nil: not
// registered) with a constant label stage=<Stage>.
func NewRunner(d Deps, cfg RunnerConfig, h Handler) (*Runner, error) {
	js, reg := d.JS, d.Reg
	if cfg.Stage == "" || cfg.Stream == "" || cfg.Durable == "" || h == nil {
		return nil, errors.New("pipeline: runner needs Stage, Stream, Durable and a handler")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = 10
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 1024
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	m := &runnerMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rcwatch_stage_messages_total", Help: "Messages handled by a consumer stage, by result.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rcwatch_stage_handle_seconds", Help: "Time spent in the stage handler per message.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_stage_redeliveries_total", Help: "Messages received more than once.",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rcwatch_consumer_pending", Help: "Messages in the stream not yet delivered to the stage's consumer.",
		}),
	}
	if reg != nil {
		w := prometheus.WrapRegistererWith(prometheus.Labels{"stage": cfg.Stage}, reg)
		for _, c := range []prometheus.Collector{m.messages, m.latency, m.redeliveries, m.pending} {
			if err := w.Register(c); err != nil {
				return nil, fmt.Errorf("registering %s stage metrics: %w", cfg.Stage, err)
			}
		}
	}
	return &Runner{cfg: cfg, js: js, handler: h, log: d.Logger(cfg.Stage), m: m}, nil
}

// Consumer creates or updates the durable consumer and returns it.
func (r *Runner) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable:        r.cfg.Durable,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     r.cfg.MaxDeliver + 1, // the runner dead-letters at MaxDeliver itself
		MaxAckPending:  r.cfg.MaxAckPending,
		DeliverPolicy:  r.cfg.DeliverPolicy,
		FilterSubjects: r.cfg.FilterSubjects,
	}
	c, err := r.js.CreateOrUpdateConsumer(ctx, r.cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on %s: %w", r.cfg.Durable, r.cfg.Stream, err)
	}
	return c, nil
}

// Run consumes until ctx is cancelled, then drains: it stops pulling, lets
// in-flight handlers finish and ack, and returns. Handlers get a context that
// is not cancelled by ctx, so a side effect in progress completes.
func (r *Runner) Run(ctx context.Context) error {
	cons, err := r.Consumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped during start-up: a normal stop
		}
		return err
	}
	stopped := make(chan struct{})
	go r.watchPending(ctx, cons, stopped)

	work := make(chan jetstream.Msg)
	hctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range work {
				r.handle(hctx, msg)
			}
		}()
	}
	r.log.Info().Str("consumer", r.cfg.Durable).Int("workers", r.cfg.Workers).Msg("stage consuming")
	retry := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := r.pull(ctx, cons, work); err != nil {
			// The server went away, the consumer was deleted or moved: start
			// pulling again (recreating the consumer) until ctx ends.
			r.log.Warn().Err(err).Dur("retry_in", retry).Msg("pulling interrupted; resuming")
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
			retry = min(2*retry, 5*time.Second)
			if c, err := r.Consumer(ctx); err == nil {
				cons = c
			}
			continue
		}
		retry = 100 * time.Millisecond
	}
	close(stopped)
	close(work)
	wg.Wait()
	r.log.Info().Msg("stage drained")
	return nil
}

// pull hands messages to the workers until ctx ends (then it drains the
// iterator: the messages already fetched are still handled) or the
// iterator fails for good. A missed heartbeat is not fatal: the iterator
// issues a new pull request by itself.
func (r *Runner) pull(ctx context.Context, cons jetstream.Consumer, work chan<- jetstream.Msg) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(max(2*r.cfg.Workers, 16)))
	if err != nil {
		return fmt.Errorf("starting to pull from %s: %w", r.cfg.Durable, err)
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	for {
		msg, err := iter.Next()
		switch {
		case err == nil:
			work <- msg
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pulling from %s: iterator closed", r.cfg.Durable)
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			r.log.Warn().Err(err).Msg("no heartbeat from the consumer; pulling again")
		default:
			iter.Stop()
			return fmt.Errorf("pulling from %s: %w", r.cfg.Durable, err)
		}
	}
}

func (r *Runner) handle(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	delivered := 1
	if err == nil {
		delivered = int(md.NumDelivered)
	}
	if delivered > 1 {
		r.m.redeliveries.Inc()
	}
	start := time.Now()
	herr := r.handler(ctx, msg)
	r.m.latency.Observe(time.Since(start).Seconds())
	out := Classify(herr, delivered, r.cfg.MaxDeliver)
	switch out {
	case OutcomeAck:
		err = msg.DoubleAck(ctx)
	case OutcomeRetry:
		var re *RetryError
		errors.As(herr, &re)
		r.log.Debug().Err(herr).Msg("handler asked for a retry")
		err = msg.NakWithDelay(re.Wait)
	case OutcomeDeadLetter:
		reason := "max_deliver"
		var inv *InvalidError
		if errors.As(herr, &inv) {
			reason = inv.Reason
		}
		seq := uint64(0)
		if md != nil {
			seq = md.Sequence.Stream
		}
		r.log.Error().Err(herr).Str("reason", reason).Uint64("stream_seq", seq).Str("subject", msg.Subject()).
			Msg("message dead-lettered")
		if err = DeadLetter(ctx, r.js, r.cfg.Stage, reason, r.cfg.Stream+":"+strconv.FormatUint(seq, 10), msg.Subject(), msg.Data()); err == nil {
			err = msg.Term()
		} else {
			_ = msg.Nak()
		}
	case OutcomeNak:
		wait := min(r.cfg.Backoff<<min(delivered-1, 6), time.Minute)
		r.log.Warn().Err(herr).Int("delivered", delivered).Dur("retry_in", wait).Msg("handler failed; will redeliver")
		err = msg.NakWithDelay(wait)
	}
	if err != nil {
		r.log.Warn().Err(err).Str("outcome", out.String()).Msg("acknowledging message failed; it will be redelivered")
	}
	r.m.messages.WithLabelValues(out.String()).Inc()
}

func (r *Runner) watchPending(ctx context.Context, cons jetstream.Consumer, stopped <-chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if info, err := cons.Info(ictx); err == nil {
			r.m.pending.Set(float64(info.NumPending))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case <-t.C:
		}
	}
}

// DeadLetter publishes data to dlq.<stage> with the reason and source in
// headers, and waits for JetStream to store it.
func DeadLetter(ctx context.Context, js jetstream.JetStream, stage, reason, source, subject string, data []byte) error {
	m := nats.NewMsg(DeadLetterSubject(stage))
	m.Data = data
	m.Header.Set(HeaderReason, reason)
	m.Header.Set(HeaderSource, source)
	if subject != "" {
		m.Header.Set("Rc-Original-Subject", subject)
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publishing dead letter for %s: %w", source, err)
	}
	return nil
}
