package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// OutcomeStorageWait: NATS could not store the handler's output (a full
	// store, no JetStream, a timeout). The message is redelivered after a
	// capped, jittered backoff for as long as it takes; it never counts
	// towards MaxDeliver and is never dead-lettered for it.
	OutcomeStorageWait
)

func (o Outcome) String() string {
	return [...]string{"ok", "retry", "dead_letter", "error", "storage_wait"}[o]
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
	case IsStorageError(err):
		return OutcomeStorageWait
	case errors.As(err, &retry):
		return OutcomeRetry
	case maxDeliver > 0 && delivered >= maxDeliver:
		return OutcomeDeadLetter
	}
	return OutcomeNak
}

// IsStorageError reports whether err means NATS could not store a message
// for now: the store is full or out of resources (JetStream answers 503),
// no JetStream answered, the connection is down, or the wait for the
// acknowledgement ran out. Waiting and trying again is the only remedy.
func IsStorageError(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code == 503 || api.ErrorCode == errCodeInsufficientResources
	}
	for _, e := range []error{jetstream.ErrNoStreamResponse, nats.ErrNoResponders, nats.ErrTimeout,
		context.DeadlineExceeded, nats.ErrConnectionClosed, nats.ErrDisconnected, nats.ErrConnectionDraining} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errCodeInsufficientResources is JetStream's "insufficient resources".
const errCodeInsufficientResources = 10023

// RunnerConfig declares a consumer stage.
type RunnerConfig struct {
	Stage          string   // metric label, dead-letter subject dlq.<Stage>
	Stream         string   // stream to consume
	Durable        string   // durable consumer name, shared by replicas
	FilterSubjects []string // optional
	Workers        int      // concurrent handlers (default 4)
	AckWait        time.Duration
	// MaxDeliver: a message whose handler keeps failing (an unclassified
	// error) is dead-lettered at this delivery (default 10; -1: never).
	// Storage waits and Retry never end in a dead letter: the server's own
	// delivery limit is off, so nothing is dropped without a dead letter.
	MaxDeliver    int
	MaxAckPending int           // default 1024
	Backoff       time.Duration // base delay of Nak after a handler error (default 1s, doubled per delivery, max 1m)
	// DeliverPolicy for a new consumer (default all).
	DeliverPolicy jetstream.DeliverPolicy
	// PlainAck acknowledges without waiting for the server's confirmation
	// (no round trip per message). A lost ack only means a redelivery: use it
	// when the handler's output is deduplicated (the evaluator's alerts by id).
	PlainAck bool
	// StorageBackoffMax caps the wait between attempts while NATS cannot
	// store the stage's output (default 10s; full jitter over its upper half).
	StorageBackoffMax time.Duration
	// WatchInterval is how often the consumer and its stream are checked:
	// pending gauge, stall watchdog, retention (default 2s).
	WatchInterval time.Duration
	// StallAfter: with messages pending, none held by the stage and none
	// delivered for this long, the stage is stalled: logged, counted, not
	// ready (default 5s).
	StallAfter time.Duration
	// PullBatch is the most messages one pull request asks for (default
	// max(2×Workers, 16)). Each request is a round trip and a subscription:
	// a larger batch costs less per message (issue 12: 256 instead of 16,
	// about +25% evaluated events/s and -15% CPU per event). A batch's
	// messages wait in the client for a worker, so the runner asks for
	// fewer when its handlers are slow: no more than the workers finish in
	// a quarter of AckWait at their recent pace (see pullBatch).
	PullBatch int
	// PullExpiry is how long one pull request waits at the server for
	// messages (default 2.5s): how long an idle stage takes to notice a
	// lost request (a server restart) and how long a drain may wait for the
	// requests still open.
	PullExpiry time.Duration
}

// Runner is the generic consume→handle→ack loop every consumer stage uses.
// It returns a message to the stream only when its handler's output (or
// its dead letter) is stored; while NATS cannot store, it waits, logs,
// counts and reports itself not ready.
type Runner struct {
	cfg     RunnerConfig
	js      jetstream.JetStream
	handler Handler
	log     zerolog.Logger
	m       *runnerMetrics
	now     func() time.Time

	lastDelivery atomic.Int64 // unix ns of the newest delivery or handler end (or of the start)
	handleAvg    atomic.Int64 // moving average of the handler's time, ns (0: none yet)
	inflight     atomic.Int64 // messages received and not yet acknowledged
	consuming    atomic.Bool
	stalled      atomic.Bool
	hi           uint64 // highest stream sequence delivered (puller only)

	mu           sync.Mutex
	storageErr   error     // last storage failure
	storageAt    time.Time // when
	storageSince time.Time // first of the current run of failures
	storageFails int       // consecutive failures (backoff exponent)
	storageLog   time.Time // last error log line about it
	behind       string    // why the consumer is behind the stream's retention ("": it is not)
	skipAt       time.Time // last events found removed before they were handled
	skipWhat     string    // what was found removed then (for Ready)
	skipThrough  uint64    // stream sequences up to this one were checked for loss
	firstSeq     uint64    // the stream's first sequence, last seen
	firstSeqAt   time.Time
	lastSeq      uint64 // the stream's last sequence, last seen
	// watchLast is the stream's last sequence seen by the previous watch
	// (before this watch's consumer info was asked for).
	watchLast uint64
	// passed: the consumer had every one of its messages up to this stream
	// sequence (a watch found none pending); with a subject filter its
	// delivered sequence can lag behind, as the server does not move an
	// idle consumer past messages that do not match.
	passed uint64
}

type runnerMetrics struct {
	messages       *prometheus.CounterVec
	latency        prometheus.Histogram
	redeliveries   prometheus.Counter
	pending        prometheus.Gauge
	storageFailing prometheus.Gauge
	skipped        prometheus.Counter
	skippedSeqs    prometheus.Counter
	behind         prometheus.Gauge
	stalls         prometheus.Counter
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
	if cfg.StorageBackoffMax <= 0 {
		cfg.StorageBackoffMax = 10 * time.Second
	}
	if cfg.WatchInterval <= 0 {
		cfg.WatchInterval = 2 * time.Second
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = 5 * time.Second
	}
	if cfg.PullBatch <= 0 {
		cfg.PullBatch = max(2*cfg.Workers, 16)
	}
	cfg.PullBatch = min(cfg.PullBatch, cfg.MaxAckPending)
	if cfg.PullExpiry <= 0 {
		cfg.PullExpiry = 2500 * time.Millisecond
	}
	cfg.PullExpiry = min(max(cfg.PullExpiry, 100*time.Millisecond), time.Minute)
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
		storageFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rcwatch_stage_storage_failing",
			Help: "1 while NATS cannot store the stage's output (messages wait and are retried), else 0.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_stage_skipped_total",
			Help: "Messages removed by the stream's retention before the stage's consumer reached them (never handled).",
		}),
		skippedSeqs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_stage_skipped_sequences_total",
			Help: "Stream sequences removed by the stream's retention before the stage's consumer reached them. " +
				"Without a subject filter these are the messages lost (= rcwatch_stage_skipped_total); with one (the action " +
				"workers) an upper bound of them: how many of the removed messages matched the filter cannot be known.",
		}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rcwatch_stage_behind_retention",
			Help: "1 while the consumer's next message is older than the stream's first (messages are being lost), else 0.",
		}),
		stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_stage_pull_stalls_total",
			Help: "Times the consumer was found stalled: messages pending, none held and none delivered for StallAfter.",
		}),
	}
	if reg != nil {
		w := prometheus.WrapRegistererWith(prometheus.Labels{"stage": cfg.Stage}, reg)
		for _, c := range []prometheus.Collector{m.messages, m.latency, m.redeliveries, m.pending,
			m.storageFailing, m.skipped, m.skippedSeqs, m.behind, m.stalls} {
			if err := w.Register(c); err != nil {
				return nil, fmt.Errorf("registering %s stage metrics: %w", cfg.Stage, err)
			}
		}
	}
	return &Runner{cfg: cfg, js: js, handler: h, log: d.Logger(cfg.Stage), m: m, now: d.Clock()}, nil
}

// Consumer creates or updates the durable consumer and returns it.
func (r *Runner) Consumer(ctx context.Context) (jetstream.Consumer, error) {
	cc := jetstream.ConsumerConfig{
		Durable:   r.cfg.Durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   r.cfg.AckWait,
		// No server-side delivery limit: the runner dead-letters at
		// MaxDeliver itself, and only once the dead letter is stored.
		MaxDeliver:     -1,
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

// Ready reports whether the stage is doing its job: its consumer is
// running, it is not stalled with messages pending, it is not behind the
// stream's retention nor has lost messages to it in the last skipWindow
// (at least 5 minutes), and NATS stores what it publishes.
func (r *Runner) Ready() error {
	if !r.consuming.Load() {
		return fmt.Errorf("consumer %s on %s not running", r.cfg.Durable, r.cfg.Stream)
	}
	var errs []error
	if r.stalled.Load() {
		errs = append(errs, fmt.Errorf("consumer %s stalled: messages pending, none delivered for %v",
			r.cfg.Durable, r.cfg.StallAfter))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.storageErr != nil && now.Sub(r.storageAt) < r.storageWindow() {
		errs = append(errs, fmt.Errorf("NATS cannot store this stage's output since %s (messages wait): %w",
			r.storageSince.UTC().Format(time.RFC3339), r.storageErr))
	}
	if r.behind != "" {
		errs = append(errs, errors.New(r.behind))
	} else if !r.skipAt.IsZero() && now.Sub(r.skipAt) < r.skipWindow() {
		errs = append(errs, fmt.Errorf("messages of %s were removed by retention before %s handled them (%s at %s; reported for %v)",
			r.cfg.Stream, r.cfg.Stage, r.skipWhat, r.skipAt.UTC().Format(time.RFC3339), r.skipWindow()))
	}
	return errors.Join(errs...)
}

// storageWindow is how long after its last storage failure the stage
// still reports it (the retries of a failing message are this far apart).
func (r *Runner) storageWindow() time.Duration { return 2 * r.cfg.StorageBackoffMax }

// skipWindow is how long after messages were found removed by retention
// the stage still reports it, once its consumer has caught up: long
// enough for a readiness probe of any usual period to see it. The counters
// (rcwatch_stage_skipped_total, rcwatch_stage_skipped_sequences_total)
// keep it for good.
func (r *Runner) skipWindow() time.Duration { return max(10*r.cfg.WatchInterval, minSkipWindow) }

// minSkipWindow is the shortest time a loss to retention keeps the stage
// not ready.
const minSkipWindow = 5 * time.Minute

// delivery is a message with its parsed metadata.
type delivery struct {
	msg jetstream.Msg
	md  *jetstream.MsgMetadata
}

// Run consumes until ctx is cancelled, then drains: it stops pulling, lets
// in-flight handlers finish and ack, and returns. Handlers get a context that
// is not cancelled by ctx, so a side effect in progress completes.
func (r *Runner) Run(ctx context.Context) error {
	cons, err := r.start(ctx)
	if err != nil {
		return err
	}
	if cons == nil {
		return nil // stopped during start-up: a normal stop
	}
	r.started(ctx, cons)
	stopped := make(chan struct{})
	watchDone := make(chan struct{})
	consCh := make(chan jetstream.Consumer, 1)
	go func(cons jetstream.Consumer) {
		defer close(watchDone)
		r.watch(ctx, cons, consCh, stopped)
	}(cons)

	work := make(chan delivery)
	hctx := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				r.handle(hctx, ctx.Done(), d)
			}
		}()
	}
	r.log.Info().Str("consumer", r.cfg.Durable).Int("workers", r.cfg.Workers).Msg("stage consuming")
	r.consuming.Store(true)
	retry := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := r.pull(ctx, cons, work); err != nil {
			// The server went away, the consumer was deleted or moved: start
			// pulling again (recreating the consumer) until ctx ends.
			r.consuming.Store(false)
			r.log.Warn().Err(err).Dur("retry_in", retry).Msg("pulling interrupted; resuming")
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
			retry = min(2*retry, 5*time.Second)
			if c, err := r.Consumer(ctx); err == nil {
				cons = c
				r.started(ctx, c)
				select {
				case consCh <- c:
				default:
				}
			}
			continue
		}
		r.consuming.Store(true)
		retry = 100 * time.Millisecond
	}
	r.consuming.Store(false)
	close(stopped)
	close(work)
	wg.Wait()
	<-watchDone
	r.log.Info().Msg("stage drained")
	return nil
}

// start creates the consumer, waiting while NATS cannot answer
// (WhileNATSUnavailable) rather than stopping the stage; any other error is
// returned. A nil consumer means ctx ended first.
func (r *Runner) start(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := WhileNATSUnavailable(ctx, r.log, "create the consumer", r.now, r.Consumer)
	if ctx.Err() != nil {
		return nil, nil
	}
	return cons, err
}

// started notes where the consumer is: messages before its delivered
// sequence are not ours to report lost.
func (r *Runner) started(ctx context.Context, cons jetstream.Consumer) {
	r.lastDelivery.Store(r.now().UnixNano())
	ci := cons.CachedInfo()
	if ci == nil {
		return
	}
	r.hi = max(r.hi, ci.Delivered.Stream)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ci.Delivered.Stream == 0 && r.skipThrough == 0 {
		// Nothing delivered yet: what retention removed before this
		// consumer existed was never this stage's to handle.
		if first, err := r.streamFirstSeq(ctx); err == nil && first > 0 {
			r.skipThrough = first - 1
		}
	}
	r.skipThrough = max(r.skipThrough, ci.Delivered.Stream)
}

// pull hands messages to the workers until ctx ends (then it drains: the
// messages already requested are still handled) or the consumer fails for
// good.
//
// It pulls with Fetch: one request of a batch at a time, each ending on its
// own terms (its batch filled, or the server's expiry status), and the next
// one sent as soon as the server has delivered the whole batch, so that it
// arrives while this one is handled. Only then: with two requests open the
// server deals messages out between them, and they would reach the workers
// out of order. It does not use the client's Consume: Consume keeps one
// running count of the messages it expects and re-pulls only from its
// message callback, and that check is skipped while the previous pull
// request is still being sent; when the callback handles the last expected
// message inside that window (the pull goroutine preempted on a loaded
// machine), no request is left open and nothing arrives until two missed
// idle heartbeats (1s at the client's 500ms minimum), and the re-pull can
// fall into the same window again: issue 12's 1–5s stalls, reproduced with
// the client's count printed (0 expected, no request open at the server).
// No idle heartbeat is asked for either: a fetch ended by a missed
// heartbeat unsubscribes, and a message still on its way would wait out
// AckWait (30s).
func (r *Runner) pull(ctx context.Context, cons jetstream.Consumer, work chan<- delivery) error {
	type request struct {
		batch jetstream.MessageBatch
		msgs  <-chan jetstream.Msg
		size  int
		taken int
	}
	var perr error
	fetch := func() *request {
		if perr != nil || ctx.Err() != nil {
			return nil
		}
		size := pullBatch(r.cfg.PullBatch, r.cfg.Workers, r.cfg.AckWait, time.Duration(r.handleAvg.Load()))
		b, err := cons.Fetch(size, jetstream.FetchMaxWait(r.cfg.PullExpiry))
		if err != nil {
			perr = fmt.Errorf("requesting messages from %s: %w", r.cfg.Durable, err)
			return nil
		}
		return &request{batch: b, msgs: b.Messages(), size: size}
	}
	done := ctx.Done()
	cur := fetch()
	var next *request
	for cur != nil {
		r.consuming.Store(true)
		if next == nil && cur.taken+len(cur.msgs) >= cur.size {
			next = fetch() // the server has delivered all of cur: none of next's can come before
		}
		var (
			msg jetstream.Msg
			ok  bool
		)
		select {
		case msg, ok = <-cur.msgs:
		case <-done:
			done = nil // no new requests; the open ones are still handled
			continue
		}
		if !ok {
			// Any failure of a request (consumer deleted or moved, no
			// responders, the connection closed) ends this pull: Run
			// recreates the consumer and pulls again, with capped backoff.
			if err := cur.batch.Error(); err != nil && perr == nil {
				perr = fmt.Errorf("pulling from %s: %w", r.cfg.Durable, err)
			}
			cur, next = next, nil
			if cur == nil {
				cur = fetch()
			}
			continue
		}
		cur.taken++
		md, _ := msg.Metadata()
		r.lastDelivery.Store(r.now().UnixNano())
		r.stalled.Store(false)
		r.inflight.Add(1)
		if md != nil && md.NumDelivered == 1 {
			r.checkGap(ctx, md.Sequence.Stream)
		}
		work <- delivery{msg: msg, md: md} // blocks while every worker is busy: back-pressure
	}
	if ctx.Err() != nil {
		return nil
	}
	return perr
}

// pullBatch is the size of the next pull request: up to most, but no more
// than workers can handle within a quarter of ackWait at avg per message
// (the messages of a batch wait in the client for a worker, and one that
// waits past AckWait is redelivered), and at least one per worker. Before
// any handler has finished (avg 0) it is the small default batch: the
// first handlers may be slow (cold caches, enrichment).
func pullBatch(most, workers int, ackWait, avg time.Duration) int {
	if avg <= 0 {
		return min(most, max(2*workers, 16))
	}
	n := int64(workers) * int64(ackWait/4) / int64(avg)
	return int(min(int64(most), max(n, int64(workers))))
}

// checkGap is called in delivery order with the stream sequence of each
// first delivery. A jump past the highest sequence delivered so far means
// the messages between were never delivered to this consumer; those below
// the stream's first sequence were removed by retention: lost to the stage.
// (Replicas sharing the durable see each other's messages as gaps; those
// are still in the stream and not counted.) With a subject filter, jumps
// are normal (the messages between did not match): the sequences between
// that the consumer had not yet passed (skipThrough follows its position
// at each watch) and that are below the stream's first are counted as
// skipped sequences, an upper bound of its loss.
func (r *Runner) checkGap(ctx context.Context, seq uint64) {
	hi := r.hi
	if seq > hi {
		r.hi = seq
	}
	if hi == 0 || seq <= hi+1 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq-1 <= r.skipThrough {
		return
	}
	first := r.firstSeq
	if r.now().Sub(r.firstSeqAt) > 50*time.Millisecond {
		if f, err := r.streamFirstSeq(ctx); err == nil {
			first = f
		}
	}
	from := max(hi, r.skipThrough) + 1
	through := min(seq-1, first-1)
	if first == 0 || through < from {
		return
	}
	r.skipped(from, through)
}

// skipped records that stream sequences from..through were removed before
// the stage handled them. Without a subject filter each was a message of
// the stage, lost; with one, how many matched cannot be known once they are
// removed: the sequences are counted (rcwatch_stage_skipped_sequences_total),
// an upper bound. Called with r.mu held.
func (r *Runner) skipped(from, through uint64) {
	n := through - from + 1
	r.skipThrough = through
	r.skipAt = r.now()
	r.m.skippedSeqs.Add(float64(n))
	if len(r.cfg.FilterSubjects) == 0 {
		r.m.skipped.Add(float64(n))
		r.skipWhat = fmt.Sprintf("%d lost", n)
		r.log.Error().Uint64("first_seq", from).Uint64("last_seq", through).Uint64("count", n).Str("stream", r.cfg.Stream).
			Msg("messages removed by the stream's retention before this stage handled them: they are lost to it")
		return
	}
	r.skipWhat = fmt.Sprintf("up to %d lost: %d stream sequences skipped, those matching %s unknown",
		n, n, strings.Join(r.cfg.FilterSubjects, ", "))
	r.log.Error().Uint64("first_seq", from).Uint64("last_seq", through).Uint64("sequences", n).Str("stream", r.cfg.Stream).
		Strs("filter", r.cfg.FilterSubjects).
		Msg("stream sequences removed by retention before this stage reached them: the messages among them matching its filter are lost to it (how many cannot be known)")
}

// streamFirstSeq asks the stream for its first sequence. Called with r.mu held.
func (r *Runner) streamFirstSeq(ctx context.Context) (uint64, error) {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s, err := r.js.Stream(ictx, r.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("looking up stream %s: %w", r.cfg.Stream, err)
	}
	info := s.CachedInfo()
	r.firstSeq, r.firstSeqAt, r.lastSeq = info.State.FirstSeq, r.now(), info.State.LastSeq
	return info.State.FirstSeq, nil
}

func (r *Runner) handle(ctx context.Context, stop <-chan struct{}, d delivery) {
	msg, md := d.msg, d.md
	delivered := 1
	if md != nil {
		delivered = int(md.NumDelivered)
	}
	if delivered > 1 {
		r.m.redeliveries.Inc()
	}
	start := time.Now()
	herr := r.handler(ctx, msg)
	took := time.Since(start)
	r.m.latency.Observe(took.Seconds())
	if avg := r.handleAvg.Load(); avg == 0 {
		r.handleAvg.Store(max(int64(took), 1))
	} else { // an update lost to another worker's is of no matter
		r.handleAvg.Store(max(avg+(int64(took)-avg)/8, 1))
	}
	out := Classify(herr, delivered, r.cfg.MaxDeliver)
	var err error
	switch out {
	case OutcomeAck:
		if r.cfg.PlainAck {
			err = msg.Ack()
		} else {
			err = msg.DoubleAck(ctx)
		}
	case OutcomeRetry:
		var re *RetryError
		errors.As(herr, &re)
		r.log.Debug().Err(herr).Msg("handler asked for a retry")
		err = msg.NakWithDelay(re.Wait)
	case OutcomeStorageWait:
		wait := r.storageFailed(herr)
		err = msg.NakWithDelay(wait)
	case OutcomeDeadLetter:
		err = r.deadLetter(ctx, stop, d, herr)
	case OutcomeNak:
		wait := min(r.cfg.Backoff<<min(delivered-1, 6), time.Minute)
		r.log.Warn().Err(herr).Int("delivered", delivered).Dur("retry_in", wait).Msg("handler failed; will redeliver")
		err = msg.NakWithDelay(wait)
	}
	if err != nil {
		r.log.Warn().Err(err).Str("outcome", out.String()).Msg("acknowledging message failed; it will be redelivered")
	}
	r.m.messages.WithLabelValues(out.String()).Inc()
	r.inflight.Add(-1)
	r.lastDelivery.Store(r.now().UnixNano())
}

// deadLetter stores the message on dlq.<stage> and only then terminates it.
// While NATS cannot store the dead letter, it keeps the message (telling
// the server it is in progress) and tries again with capped, jittered
// backoff; at shutdown, or on any other failure, the message is handed
// back for redelivery. A message never ends without its dead letter.
func (r *Runner) deadLetter(ctx context.Context, stop <-chan struct{}, d delivery, herr error) error {
	msg := d.msg
	reason := "max_deliver"
	var inv *InvalidError
	if errors.As(herr, &inv) {
		reason = inv.Reason
	}
	seq := uint64(0)
	if d.md != nil {
		seq = d.md.Sequence.Stream
	}
	r.log.Error().Err(herr).Str("reason", reason).Uint64("stream_seq", seq).Str("subject", msg.Subject()).
		Msg("message dead-lettered")
	source := r.cfg.Stream + ":" + strconv.FormatUint(seq, 10)
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := DeadLetter(pctx, r.js, r.cfg.Stage, reason, source, msg.Subject(), msg.Data())
		cancel()
		if err == nil {
			return msg.Term()
		}
		if !IsStorageError(err) {
			_ = msg.NakWithDelay(r.cfg.Backoff)
			return err
		}
		wait := r.storageFailed(err)
		_ = msg.InProgress() // we still hold it: no redelivery to another worker meanwhile
		select {
		case <-stop:
			_ = msg.Nak()
			return err
		case <-time.After(min(wait, r.cfg.AckWait/2)):
		}
	}
}

// storageFailed records a failure to store, logs it (at most every 10s)
// and returns how long to wait before the next attempt: capped exponential
// backoff with jitter over its upper half.
func (r *Runner) storageFailed(err error) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.storageErr == nil || now.Sub(r.storageAt) >= r.storageWindow() {
		r.storageSince, r.storageFails = now, 0
	}
	r.storageErr, r.storageAt = err, now
	r.storageFails++
	r.m.storageFailing.Set(1)
	d := min(100*time.Millisecond<<min(r.storageFails-1, 16), r.cfg.StorageBackoffMax)
	wait := Jitter(d)
	if now.Sub(r.storageLog) >= 10*time.Second {
		r.storageLog = now
		r.log.Error().Err(err).Int("failures", r.storageFails).Time("since", r.storageSince).Dur("retry_in", wait).
			Msg("NATS cannot store this stage's output; messages wait and are retried (none is dropped)")
	}
	return wait
}

// watch checks the consumer and its stream every WatchInterval: the
// pending gauge, the stall watchdog, the retention check, and the end of
// a storage failure.
func (r *Runner) watch(ctx context.Context, cons jetstream.Consumer, consCh <-chan jetstream.Consumer, stopped <-chan struct{}) {
	t := time.NewTicker(r.cfg.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case c := <-consCh:
			cons = c
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ci, err := cons.Info(ictx)
		cancel()
		if err != nil {
			continue
		}
		r.m.pending.Set(float64(ci.NumPending))
		r.checkStall(ci)
		r.checkRetention(ctx, ci)
		r.mu.Lock()
		if r.storageErr != nil && r.now().Sub(r.storageAt) >= r.storageWindow() {
			r.log.Info().Time("since", r.storageSince).Msg("NATS stores this stage's output again")
			r.storageErr = nil
			r.m.storageFailing.Set(0)
		}
		r.mu.Unlock()
	}
}

// checkStall reports a stall when messages wait, the stage holds none (no
// handler running, none queued), and nothing was delivered or handled for
// StallAfter. It does not restart the pull: unsubscribing drops the
// messages already on their way, which then wait out AckWait (30s); every
// pull request ends by itself within PullExpiry and is followed by another.
func (r *Runner) checkStall(ci *jetstream.ConsumerInfo) {
	idle := r.now().Sub(time.Unix(0, r.lastDelivery.Load()))
	if ci.NumPending == 0 || r.inflight.Load() > 0 || idle < r.cfg.StallAfter {
		r.stalled.Store(false)
		return
	}
	if !r.stalled.Swap(true) {
		r.m.stalls.Inc()
		r.log.Error().Uint64("pending", ci.NumPending).Int("waiting_pulls", ci.NumWaiting).Dur("idle", idle).
			Msg("consumer stalled: messages pending and none delivered")
	}
}

// checkRetention compares the consumer's next sequence with the stream's
// first: below it, messages this stage never reached were removed. Where
// the consumer is within retention, the sequences it has passed are
// checked: a later gap below them is no loss. A consumer with a subject
// filter is not moved past messages that do not match while it is idle:
// when it has none pending and nothing past what it had was removed, every
// message it could have had up to the stream's last sequence seen by the
// previous watch (asked for before this consumer info) was delivered
// (passed), and retention removing those is no loss either.
func (r *Runner) checkRetention(ctx context.Context, ci *jetstream.ConsumerInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prevLast := r.watchLast
	first, err := r.streamFirstSeq(ctx)
	if err != nil || first == 0 {
		return
	}
	r.watchLast = r.lastSeq
	next := ci.Delivered.Stream + 1
	within := next >= first || first-1 <= r.passed
	if within && ci.NumPending == 0 && prevLast > r.passed {
		// Nothing past what it had was removed, and none is pending: it
		// had every message of its up to prevLast.
		r.passed = prevLast
		r.skipThrough = max(r.skipThrough, prevLast)
		r.log.Debug().Uint64("passed", prevLast).Msg("consumer has every message of its up to this stream sequence")
	}
	if within {
		if r.behind != "" {
			r.log.Info().Str("stream", r.cfg.Stream).Msg("consumer is within the stream's retention again")
		}
		r.behind = ""
		r.m.behind.Set(0)
		r.skipThrough = max(r.skipThrough, ci.Delivered.Stream)
		return
	}
	r.behind = fmt.Sprintf("consumer %s is behind the retention of %s: its next message %d is before the first kept, %d",
		r.cfg.Durable, r.cfg.Stream, max(next, r.passed+1), first)
	r.m.behind.Set(1)
	if first-1 > r.skipThrough {
		r.skipped(max(next, r.skipThrough+1), first-1)
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
	// A retry after a lost acknowledgement stores it once.
	m.Header.Set(jetstream.MsgIDHeader, "dlq:"+stage+":"+source)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publishing dead letter for %s: %w", source, err)
	}
	return nil
}
