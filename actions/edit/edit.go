// Package edit makes the wiki edits alerts ask for (tag, report, revert)
// under the bot policy of docs/EDIT.md: dry-run unless live, the
// {{bots}}/{{nobots}} templates, a kill switch page and a talk-page stop
// (policy.go), one revert per (page, user) within revert_memory, and one
// edit budget per bot account shared by every replica (budget.go). An
// operation goes through its steps in op.go and is written in write.go.
package edit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
)

// ClientFactory returns the Action API client of one configured wiki. It is
// called once per wiki, on the first alert for it.
type ClientFactory func(wiki string, wc *WikiConfig) (*mediawiki.Client, error)

// NewClientFactory builds clients that authenticate with creds (OAuth 2
// bearer token, else BotPassword Account@AppID, else anonymous: dry-run
// only). The clients never wait for the server themselves (MaxWait < 0):
// the worker turns maxlag, 429/503 and ratelimited into a slower shared
// budget and a redelivery, so a waiting handler never holds a slot.
func NewClientFactory(creds Credentials, metrics *mediawiki.Metrics, log zerolog.Logger) ClientFactory {
	return func(wiki string, wc *WikiConfig) (*mediawiki.Client, error) {
		cfg := mediawiki.Config{APIURL: wc.APIURL, UserAgent: wc.UserAgent, Assert: wc.Assert, MaxWait: -1, Metrics: metrics,
			AllowInsecureAuth: wc.AllowInsecureAuth}
		switch {
		case creds.oauthToken != "":
			cfg.Auth = mediawiki.OAuth2{Token: creds.oauthToken}
		case creds.botPassword != "":
			if wc.AppID == "" {
				return nil, fmt.Errorf("%w: wiki %s: a BotPassword needs app_id", ErrInvalidConfig, wiki)
			}
			cfg.Auth = mediawiki.BotPassword{User: wc.Account, AppID: wc.AppID, Secret: creds.botPassword}
		}
		c, err := mediawiki.New(cfg, log.With().Str("wiki", wiki).Logger())
		if err != nil {
			return nil, fmt.Errorf("building the API client of %s: %w", wiki, err)
		}
		return c, nil
	}
}

// Audit is the record published to audit.edit.<wiki> for every decided
// operation: what was done (live), what would be done (dry-run), or why it
// was skipped.
type Audit struct {
	AlertID   string    `json:"alert_id"`
	Wiki      string    `json:"wiki"`
	Rule      string    `json:"rule"`
	Operation string    `json:"operation"`
	Title     string    `json:"title"`
	User      string    `json:"user,omitempty"`
	Result    string    `json:"result"` // edited, would_edit, skipped
	Reason    string    `json:"reason,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	DryRun    bool      `json:"dry_run"`
	Method    string    `json:"method,omitempty"` // edit, create, rollback, undo
	BaseRevID int64     `json:"base_revid,omitempty"`
	Summary   string    `json:"summary,omitempty"`
	Tags      []string  `json:"tags,omitempty"`
	Added     string    `json:"added,omitempty"`
	Diff      string    `json:"diff,omitempty"`
	NewText   string    `json:"new_text,omitempty"` // only up to 64 KiB
	NewRevID  int64     `json:"new_revid,omitempty"`
	WikiTime  time.Time `json:"wiki_timestamp,omitzero"`
	Slot      time.Time `json:"slot,omitzero"`
	// Started is when the worker began the operation (its delivery), Sent
	// when the write went to the wiki; with Slot and At they time its steps.
	Started time.Time `json:"started,omitzero"`
	Sent    time.Time `json:"sent,omitzero"`
	At      time.Time `json:"at"`
}

const maxAuditText = 64 << 10

// Worker consumes ALERTS (durable consumer "edit", shared by replicas)
// and carries out the edit operations the alerts ask for, under every
// safety mechanism of docs/EDIT.md. It is a pipeline.Stage.
type Worker struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue // set by Run
	cfg     Config
	clients ClientFactory
	log     zerolog.Logger
	now     func() time.Time
	m       *metrics
	runner  *pipeline.Runner

	mu    sync.Mutex
	wikis map[string]*wikiState

	// beforeEdit, when set (tests), runs right before each write.
	beforeEdit func(op, title string)
}

type wikiState struct {
	name   string
	cfg    *WikiConfig
	client *mediawiki.Client
	guard  *guard
	budget *budget

	mu       sync.Mutex
	rights   *mediawiki.UserInfo
	rightsAt time.Time

	// loginStopped holds the login error once the client gave up logging
	// in (mediawiki.ErrLoginStopped): no more calls to the wiki until the
	// worker is restarted with working credentials.
	loginStopped atomic.Pointer[string]
}

// Option tunes a Worker beyond its configuration. An option given a value
// that cannot work returns an error wrapping actions.ErrInvalidOption.
type Option func(*options) error

type options struct {
	startAll bool
}

// WithDeliverAll makes a new "edit" consumer start at the beginning of
// ALERTS instead of at the alerts of the last max_alert_age (tests, whose
// clock may be far from the stream's).
func WithDeliverAll() Option { return func(o *options) error { o.startAll = true; return nil } }

// New validates cfg and builds the worker on d: clients makes the API
// client of each wiki (NewClientFactory), metrics register on d.Reg, and
// d.Clock() is the clock of every time-based decision. The KV bucket and
// the consumer are opened by Run.
func New(d pipeline.Deps, cfg Config, clients ClientFactory, opts ...Option) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clients == nil {
		return nil, fmt.Errorf("%w: no client factory", actions.ErrInvalidOption)
	}
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(d.Reg)
	if err != nil {
		return nil, err
	}
	w := &Worker{js: d.JS, cfg: cfg, clients: clients, now: d.Clock(), m: m, wikis: map[string]*wikiState{},
		log: d.Logger("edit").With().Bool("live", cfg.Live).Logger()}
	rc := pipeline.RunnerConfig{Stage: "edit", Stream: pipeline.StreamAlerts, Durable: "edit",
		// No delivery limit: a long lag or read-only period must never drop
		// an alert (retries wait as the wiki asked; malformed alerts are
		// still dead-lettered as invalid).
		FilterSubjects: actions.FilterSubjects(slices.Sorted(maps.Keys(cfg.Wikis))),
		Workers:        cfg.Workers, AckWait: cfg.AckWait, MaxDeliver: -1}
	rd := d
	if o.startAll {
		rc.DeliverPolicy = jetstream.DeliverAllPolicy
	} else {
		// A new consumer starts at the alerts of the last max_alert_age, so
		// alerts published before the first start are not missed; older
		// ones would be skipped as stale anyway, and the done keys keep an
		// operation from being made twice.
		rd.JS = actions.StartFrom(d.JS, w.firstStart)
	}
	if w.runner, err = pipeline.NewRunner(rd, rc, w.handle); err != nil {
		return nil, err
	}
	return w, nil
}

// firstStart is where a new "edit" consumer starts: max_alert_age ago (an
// hour when it is off).
func (w *Worker) firstStart() time.Time {
	window := w.cfg.MaxAlertAge
	if window <= 0 {
		window = time.Hour
	}
	return w.now().Add(-window)
}

// Run opens the actions KV bucket and consumes alerts until ctx is
// cancelled, then drains.
func (w *Worker) Run(ctx context.Context) error {
	kv, err := pipeline.OpenKV(ctx, w.js, pipeline.BucketActions, w.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped during start-up
		}
		return fmt.Errorf("opening KV bucket %s: %w", pipeline.BucketActions, err)
	}
	w.mu.Lock()
	w.kv = kv
	w.mu.Unlock()
	if w.cfg.Live {
		w.log.Warn().Msg("edit worker is LIVE: it will edit the configured wikis")
	} else {
		w.log.Info().Msg("edit worker in dry-run: no edit is made; would-be edits go to the log and audit.edit.<wiki>")
	}
	return w.runner.Run(ctx)
}

// Ready reports whether the worker is doing its job (for /readyz): its
// consumer is running (pipeline.Runner.Ready), and not every configured
// wiki is stopped by its kill switch or a talk-page message. A wiki counts
// as stopped after a check found it so; one not checked yet (no alert for it
// since the start) counts as editing. In dry-run the stops are checked the
// same way, so a dry-run worker reports what a live one would.
func (w *Worker) Ready() error {
	if err := w.runner.Ready(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var login []string
	for name, ws := range w.wikis {
		if e := ws.loginStopped.Load(); e != nil {
			login = append(login, name+" ("+*e+")")
		}
	}
	if len(login) > 0 {
		slices.Sort(login)
		return fmt.Errorf("logins failed repeatedly; editing stopped until the credentials are fixed and the worker restarted: %s", strings.Join(login, ", "))
	}
	var stopped []string
	for name := range w.cfg.Wikis {
		ws, ok := w.wikis[name]
		if !ok {
			return nil
		}
		reason := ws.guard.stopped()
		if reason == "" {
			return nil
		}
		stopped = append(stopped, name+" ("+reason+")")
	}
	if len(stopped) == 0 {
		return nil
	}
	slices.Sort(stopped)
	return fmt.Errorf("editing is stopped on every wiki: %s", strings.Join(stopped, ", "))
}

func (w *Worker) wiki(name string) (*wikiState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws, ok := w.wikis[name]; ok {
		return ws, nil
	}
	wc, ok := w.cfg.Wikis[name]
	if !ok {
		return nil, nil
	}
	c, err := w.clients(name, wc)
	if err != nil {
		return nil, err
	}
	ws := &wikiState{name: name, cfg: wc, client: c,
		guard:  &guard{wiki: name, cfg: wc, interval: w.cfg.KillSwitchInterval, kv: w.kv},
		budget: newBudget(w.kv, wc.Account, w.cfg.RatePerMinute)}
	w.wikis[name] = ws
	return ws, nil
}

// handle is the runner's handler: one alert, each edit operation it asks for.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) error {
	a, err := actions.DecodeAlert(msg)
	if err != nil {
		return err
	}
	for _, op := range operations(a.Actions) {
		if err := w.handleOp(ctx, msg, a, op); err != nil {
			return err
		}
	}
	return nil
}
