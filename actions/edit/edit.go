package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
)

// ClientFactory returns the Action API client of one configured wiki. It is
// called once per wiki, on the first alert for it.
type ClientFactory func(wiki string, wc *WikiEditConfig) (*mediawiki.Client, error)

// NewEditClientFactory builds clients that authenticate with creds (OAuth 2
// bearer token, else BotPassword Account@AppID, else anonymous: dry-run
// only). The clients never wait for the server themselves (MaxWait < 0):
// the worker turns maxlag, 429/503 and ratelimited into a slower shared
// budget and a redelivery, so a waiting handler never holds a slot.
func NewEditClientFactory(creds EditCredentials, metrics *mediawiki.Metrics, log zerolog.Logger) ClientFactory {
	return func(wiki string, wc *WikiEditConfig) (*mediawiki.Client, error) {
		cfg := mediawiki.Config{APIURL: wc.APIURL, UserAgent: wc.UserAgent, Assert: wc.Assert, MaxWait: -1, Metrics: metrics}
		switch {
		case creds.oauthToken != "":
			cfg.Auth = mediawiki.OAuth2{Token: creds.oauthToken}
		case creds.botPassword != "":
			if wc.AppID == "" {
				return nil, fmt.Errorf("%w: wiki %s: a BotPassword needs app_id", ErrInvalidEditConfig, wiki)
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

// EditAudit is the record published to audit.edit.<wiki> for every decided
// operation: what was done (live), what would be done (dry-run), or why it
// was skipped.
type EditAudit struct {
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
	At        time.Time `json:"at"`
}

const maxAuditText = 64 << 10

type editMetrics struct {
	edits    *prometheus.CounterVec
	dry      *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	rate     *prometheus.GaugeVec
	wait     *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	conflict *prometheus.CounterVec
}

func newEditMetrics(reg prometheus.Registerer) (*editMetrics, error) {
	m := &editMetrics{
		edits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_edit_edits_total",
			Help: "Edits made on a wiki, by operation."}, []string{"wiki", "op"}),
		dry: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_edit_dry_run_total",
			Help: "Edits that would have been made (dry-run), by operation."}, []string{"wiki", "op"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_edit_skipped_total",
			Help: "Operations not carried out, by reason (nobots, killswitch, talkpage, 1rr, trusted, already_done, not_top, …)."},
			[]string{"wiki", "op", "reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_edit_errors_total",
			Help: "Errors from the wiki or KV, by code (maxlag, readonly, ratelimited, editconflict, http-503, …)."},
			[]string{"wiki", "op", "code"}),
		rate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_edit_rate_per_minute",
			Help: "Edit rate in force for a bot account (the budget, slowed while the wiki reports lag)."}, []string{"account"}),
		wait: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_edit_slot_wait_seconds",
			Help: "Wait until the slot last taken (or the redelivery delay when none was free)."}, []string{"account"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_edit_retries_total",
			Help: "Alerts sent back for redelivery later, by reason (maxlag, readonly, budget, claim, …)."}, []string{"wiki", "reason"}),
		conflict: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_edit_redecisions_total",
			Help: "Operations decided again after an edit conflict."}, []string{"wiki", "op"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.edits, m.dry, m.skipped, m.errors, m.rate, m.wait, m.retries, m.conflict} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering edit metrics: %w", err)
			}
		}
	}
	return m, nil
}

// EditWorker consumes ALERTS (durable consumer "edit", shared by replicas)
// and carries out the edit operations the alerts ask for, under every
// safety mechanism of docs/EDIT.md.
type EditWorker struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	cfg     EditConfig
	clients ClientFactory
	log     zerolog.Logger
	now     func() time.Time
	m       *editMetrics
	runner  *pipeline.Runner

	mu    sync.Mutex
	wikis map[string]*editWikiState

	// beforeEdit, when set (tests), runs right before each write.
	beforeEdit func(op, title string)
}

type editWikiState struct {
	name   string
	cfg    *WikiEditConfig
	client *mediawiki.Client
	guard  *editGuard
	budget *editBudget

	mu       sync.Mutex
	rights   *mediawiki.UserInfo
	rightsAt time.Time
}

// EditOption tunes an EditWorker.
type EditOption func(*editOptions)

type editOptions struct {
	deliverAll bool
}

// WithDeliverAll makes a new "edit" consumer start at the beginning of
// ALERTS instead of at new alerts (tests; a first deployment never replays
// a month of alerts into edits).
func WithDeliverAll() EditOption { return func(o *editOptions) { o.deliverAll = true } }

// NewEditWorker validates cfg and builds the worker. clients makes the API
// client of each wiki (NewEditClientFactory); metrics register on reg; now
// is the clock of every time-based editDecision.
func NewEditWorker(js jetstream.JetStream, cfg EditConfig, clients ClientFactory, reg prometheus.Registerer,
	log zerolog.Logger, now func() time.Time, opts ...EditOption) (*EditWorker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if clients == nil {
		return nil, fmt.Errorf("%w: no client factory", ErrInvalidEditConfig)
	}
	if now == nil {
		now = time.Now
	}
	var o editOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketActions)
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s: %w", pipeline.BucketActions, err)
	}
	m, err := newEditMetrics(reg)
	if err != nil {
		return nil, err
	}
	w := &EditWorker{js: js, kv: kv, cfg: cfg, clients: clients, now: now, m: m, wikis: map[string]*editWikiState{},
		log: log.With().Str("component", "edit").Bool("live", cfg.Live).Logger()}
	var subjects []string
	for name := range cfg.Wikis {
		subjects = append(subjects, "alert."+pipeline.SubjectToken(name)+".>")
	}
	slices.Sort(subjects)
	rc := pipeline.RunnerConfig{Stage: "edit", Stream: pipeline.StreamAlerts, Durable: "edit",
		// No delivery limit: a long lag or read-only period must never drop
		// an alert (retries wait as the wiki asked; malformed alerts are
		// still dead-lettered as invalid).
		FilterSubjects: subjects, Workers: cfg.Workers, AckWait: cfg.AckWait, MaxDeliver: -1,
		DeliverPolicy: jetstream.DeliverNewPolicy}
	if o.deliverAll {
		rc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	if w.runner, err = pipeline.NewRunner(pipeline.Deps{JS: js, Reg: reg, Log: log}, rc, w.handle); err != nil {
		return nil, err
	}
	return w, nil
}

// Run consumes alerts until ctx is cancelled, then drains.
func (w *EditWorker) Run(ctx context.Context) error {
	if w.cfg.Live {
		w.log.Warn().Msg("edit worker is LIVE: it will edit the configured wikis")
	} else {
		w.log.Info().Msg("edit worker in dry-run: no edit is made; would-be edits go to the log and audit.edit.<wiki>")
	}
	return w.runner.Run(ctx)
}

// Consumer creates the durable consumer now (so alerts published after it
// returns are delivered even before Run starts pulling).
func (w *EditWorker) Consumer(ctx context.Context) error {
	_, err := w.runner.Consumer(ctx)
	return err
}

func (w *EditWorker) wiki(name string) (*editWikiState, error) {
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
	ws := &editWikiState{name: name, cfg: wc, client: c,
		guard:  &editGuard{wiki: name, cfg: wc, interval: w.cfg.KillSwitchInterval, kv: w.kv},
		budget: newBudget(w.kv, wc.Account, w.cfg.RatePerMinute)}
	w.wikis[name] = ws
	return ws, nil
}

// handle is the runner's handler: one alert, each edit operation it asks for.
func (w *EditWorker) handle(ctx context.Context, msg jetstream.Msg) error {
	var a event.Alert
	if err := json.Unmarshal(msg.Data(), &a); err != nil {
		return pipeline.Invalid("decode", fmt.Errorf("decoding alert: %w", err))
	}
	if a.ID == "" {
		return pipeline.Invalid("decode", errors.New("alert without id"))
	}
	for _, op := range editOps(a.Actions) {
		if err := w.handleOp(ctx, msg, &a, op); err != nil {
			return err
		}
	}
	return nil
}

// editOpRun carries one operation through its steps.
type editOpRun struct {
	w     *EditWorker
	ws    *editWikiState
	a     *event.Alert
	op    string
	log   zerolog.Logger
	msg   jetstream.Msg
	audit EditAudit
}

func (w *EditWorker) handleOp(ctx context.Context, msg jetstream.Msg, a *event.Alert, op string) error {
	now := w.now()
	r := &editOpRun{w: w, a: a, op: op, msg: msg,
		log: w.log.With().Str("alert", a.ID).Str("wiki", a.Event.Wiki).Str("op", op).Str("title", a.Event.Title).Logger(),
		audit: EditAudit{AlertID: a.ID, Wiki: a.Event.Wiki, Rule: a.Rule.ID, Operation: op, Title: a.Event.Title,
			User: a.Event.User, DryRun: !w.cfg.Live}}
	ws, err := w.wiki(a.Event.Wiki)
	if err != nil {
		return err
	}
	if ws == nil {
		return r.skip(ctx, SkipUnknownWiki, "no configuration for wiki "+a.Event.Wiki)
	}
	r.ws = ws
	if !slices.Contains([]string{EditOpTag, EditOpReport, EditOpRevert}, op) || !ws.cfg.enabled(op) {
		return r.skip(ctx, SkipDisabled, "operation "+op+" is not enabled on "+ws.name)
	}
	if w.cfg.MaxAlertAge > 0 && !a.DetectedAt.IsZero() && now.Sub(a.DetectedAt) > w.cfg.MaxAlertAge {
		return r.skip(ctx, SkipStale, fmt.Sprintf("detected %s ago", now.Sub(a.DetectedAt).Round(time.Second)))
	}
	doneKey := "edit.done." + editHash(a.ID, op)
	if w.cfg.Live {
		if e, err := w.kv.Get(ctx, doneKey); err == nil {
			return r.skip(ctx, SkipAlreadyDone, "done before: "+string(e.Value()))
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return r.fail(ctx, "kv", fmt.Errorf("reading %s: %w", doneKey, err))
		}
	}
	if reason, detail, err := ws.guard.check(ctx, ws.client, now); err != nil {
		return r.fail(ctx, "", err)
	} else if reason != "" {
		return r.skip(ctx, reason, detail)
	}
	if !w.cfg.Live {
		return r.dryRun(ctx, now)
	}

	// Claim the (alert, operation) so a redelivery to another replica while
	// this one edits waits; a claim of a dead replica expires.
	claimKey := "edit.claim." + editHash(a.ID, op)
	if _, err := w.kv.Create(ctx, claimKey, []byte(now.UTC().Format(time.RFC3339Nano)), jetstream.KeyTTL(w.cfg.ClaimTTL)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			w.m.retries.WithLabelValues(ws.name, "claimed").Inc()
			r.log.Info().Msg("another replica is handling this operation; retrying later")
			return pipeline.Retry(fmt.Errorf("operation %s of %s is claimed", op, a.ID), w.cfg.ClaimTTL/4)
		}
		return r.fail(ctx, "kv", fmt.Errorf("claiming %s: %w", claimKey, err))
	}
	keepClaim := false
	defer func() {
		if !keepClaim {
			_ = w.kv.Delete(context.WithoutCancel(ctx), claimKey)
		}
	}()

	// Memories of earlier operations on the same page/user.
	memKey, memTTL := "", time.Duration(0)
	switch op {
	case EditOpTag:
		memKey, memTTL = "edit.tagged."+editHash(ws.name, normalizeTitlePart(a.Event.Title), editTemplateName(tagTemplate(ws.cfg, a, now))), ws.cfg.Tag.Memory
	case EditOpReport:
		memKey, memTTL = "edit.reported."+editHash(ws.name, normalizeTitlePart(a.Event.Title), editNormName(a.Event.User)), ws.cfg.Report.Memory
	case EditOpRevert:
		memKey, memTTL = "edit.reverted."+editHash(ws.name, normalizeTitlePart(a.Event.Title), editNormName(a.Event.User)), w.cfg.RevertMemory
	}
	var memRev uint64
	if e, err := w.kv.Get(ctx, memKey); err == nil {
		memRev = e.Revision()
		var rec struct {
			At time.Time `json:"at"`
		}
		if json.Unmarshal(e.Value(), &rec) == nil && now.Sub(rec.At) < memTTL {
			reason := SkipAlreadyDone
			if op == EditOpRevert {
				reason = Skip1RR
			}
			return r.skip(ctx, reason, fmt.Sprintf("%s %s ago (%s)", map[string]string{EditOpTag: "tagged", EditOpReport: "reported", EditOpRevert: "reverted"}[op],
				now.Sub(rec.At).Round(time.Second), string(e.Value())))
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return r.fail(ctx, "kv", fmt.Errorf("reading %s: %w", memKey, err))
	}

	for attempt := 0; ; attempt++ {
		d, err := r.decide(ctx, now)
		if err != nil {
			return r.fail(ctx, "", err)
		}
		if d.skip != "" {
			return r.skip(ctx, d.skip, d.detail)
		}
		plan := d.plan
		r.fillAudit(plan)
		if op == EditOpRevert {
			// 1RR across replicas: the (page, user) memory is taken before the
			// revert; only one replica can create it.
			rec, _ := json.Marshal(map[string]any{"at": now.UTC(), "alert": a.ID, "state": "reverting"})
			var err error
			if memRev == 0 {
				_, err = w.kv.Create(ctx, memKey, rec, jetstream.KeyTTL(memTTL))
			} else {
				// An old record our clock says has expired: replace it.
				err = editKVPutTTL(ctx, w.js, memKey, rec, memRev, memTTL)
			}
			if err != nil {
				if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, errEditCAS) {
					return r.skip(ctx, Skip1RR, "another revert of this page and user is recorded")
				}
				return r.fail(ctx, "kv", fmt.Errorf("recording the revert of %s: %w", a.Event.Title, err))
			}
		}
		res, err := r.apply(ctx, plan)
		if err == nil {
			// Done: remember it before the ack (the runner acks when we return).
			rec, _ := json.Marshal(map[string]any{"at": w.now().UTC(), "alert": a.ID, "revid": res.revID})
			dctx := context.WithoutCancel(ctx)
			if _, kerr := w.kv.Create(dctx, doneKey, rec, jetstream.KeyTTL(w.cfg.IdempotencyTTL)); kerr != nil && !errors.Is(kerr, jetstream.ErrKeyExists) {
				r.log.Error().Err(kerr).Msg("recording the done operation failed; a redelivery will find the change on the page")
			}
			if op == EditOpRevert {
				if e, gerr := w.kv.Get(dctx, memKey); gerr == nil {
					_ = editKVPutTTL(dctx, w.js, memKey, rec, e.Revision(), memTTL)
				}
			} else if _, kerr := w.kv.Create(dctx, memKey, rec, jetstream.KeyTTL(memTTL)); kerr != nil && errors.Is(kerr, jetstream.ErrKeyExists) {
				if e, gerr := w.kv.Get(dctx, memKey); gerr == nil {
					_ = editKVPutTTL(dctx, w.js, memKey, rec, e.Revision(), memTTL)
				}
			}
			r.audit.Result, r.audit.NewRevID, r.audit.WikiTime, r.audit.Slot, r.audit.At = "edited", res.revID, res.wikiTime, res.slot, w.now().UTC()
			w.m.edits.WithLabelValues(ws.name, op).Inc()
			r.log.Info().Int64("revid", res.revID).Str("slot", res.slot.UTC().Format(time.RFC3339Nano)).
				Str("sent_at", res.sentAt.UTC().Format(time.RFC3339Nano)).Str("wiki_timestamp", res.wikiTime.UTC().Format(time.RFC3339)).Str("method", plan.Method).Int64("base_revid", plan.BaseRevID).
				Str("summary", plan.Summary).Msg("edit made")
			r.publish(dctx)
			return nil
		}
		if op == EditOpRevert {
			_ = w.kv.Delete(context.WithoutCancel(ctx), memKey)
			memRev = 0
		}
		var conflict bool
		err, conflict, keepClaim = r.classify(ctx, err)
		if conflict && attempt < 3 {
			w.m.conflict.WithLabelValues(ws.name, op).Inc()
			r.log.Info().Int("attempt", attempt+1).Msg("edit conflict; reading the page again and deciding again")
			now = w.now()
			continue
		}
		return err
	}
}

func (r *editOpRun) decide(ctx context.Context, now time.Time) (editDecision, error) {
	wc := r.ws.cfg
	switch r.op {
	case EditOpTag:
		return decideTag(ctx, r.ws.client, wc, r.a, now)
	case EditOpReport:
		return decideReport(ctx, r.ws.client, wc, r.a, now)
	default:
		method, err := r.revertMethod(ctx, now)
		if err != nil {
			return editDecision{}, err
		}
		return decideRevert(ctx, r.ws.client, wc, r.a, method, !r.w.cfg.Live, now)
	}
}

// revertMethod picks rollback or undo (auto: rollback when the account
// has the right, checked every 10 minutes).
func (r *editOpRun) revertMethod(ctx context.Context, now time.Time) (string, error) {
	ws := r.ws
	if m := ws.cfg.Revert.Method; m != "auto" {
		return m, nil
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.rights == nil || now.Sub(ws.rightsAt) > 10*time.Minute {
		ui, err := ws.client.UserInfo(ctx)
		if err != nil {
			return "", err
		}
		ws.rights, ws.rightsAt = ui, now
	}
	if ws.rights.HasRight("rollback") {
		return "rollback", nil
	}
	return "undo", nil
}

func (r *editOpRun) fillAudit(p *editPlan) {
	r.audit.Title, r.audit.Method, r.audit.BaseRevID, r.audit.Summary, r.audit.Tags = p.Title, p.Method, p.BaseRevID, p.Summary, p.Tags
	r.audit.Added, r.audit.Diff = p.Added, p.Diff
	if len(p.NewText) <= maxAuditText {
		r.audit.NewText = p.NewText
	}
}

func (r *editOpRun) dryRun(ctx context.Context, now time.Time) error {
	d, err := r.decide(ctx, now)
	if err != nil {
		return r.fail(ctx, "", err)
	}
	if d.skip != "" {
		return r.skip(ctx, d.skip, d.detail)
	}
	r.fillAudit(d.plan)
	r.audit.Result, r.audit.At = "would_edit", r.w.now().UTC()
	r.w.m.dry.WithLabelValues(r.ws.name, r.op).Inc()
	r.log.Info().Str("method", d.plan.Method).Int64("base_revid", d.plan.BaseRevID).Str("summary", d.plan.Summary).
		Str("added", d.plan.Added).Str("diff", d.plan.Diff).Msg("dry-run: would edit")
	r.publish(ctx)
	return nil
}

// editApplied is what a successful write reports.
type editApplied struct {
	revID    int64
	wikiTime time.Time
	slot     time.Time
	sentAt   time.Time
}

// apply takes a budget slot, waits for it, checks the stop conditions once
// more and writes.
func (r *editOpRun) apply(ctx context.Context, p *editPlan) (editApplied, error) {
	w, ws := r.w, r.ws
	// Log in and fetch the token before the slot, so the write is sent on time.
	tokenType := "csrf"
	if p.Method == "rollback" {
		tokenType = "rollback"
	}
	if _, err := ws.client.Token(ctx, tokenType); err != nil {
		return editApplied{}, err
	}
	now := w.now()
	slot, retryIn, iv, err := ws.budget.reserve(ctx, now, w.cfg.MaxHold)
	if err != nil {
		return editApplied{}, err
	}
	if iv > 0 {
		w.m.rate.WithLabelValues(ws.cfg.Account).Set(float64(time.Minute) / float64(iv))
	}
	if retryIn > 0 {
		w.m.wait.WithLabelValues(ws.cfg.Account).Set(retryIn.Seconds())
		return editApplied{}, &editBudgetFullError{wait: retryIn}
	}
	w.m.wait.WithLabelValues(ws.cfg.Account).Set(max(slot.Sub(now), 0).Seconds())
	if err := r.waitUntil(ctx, slot); err != nil {
		return editApplied{}, err
	}
	if reason, detail, err := ws.guard.check(ctx, ws.client, w.now()); err != nil {
		return editApplied{}, err
	} else if reason != "" {
		return editApplied{}, &editStoppedError{reason: reason, detail: detail}
	}
	if w.beforeEdit != nil {
		w.beforeEdit(r.op, p.Title)
	}
	sent := w.now()
	out := editApplied{slot: slot, sentAt: sent}
	switch p.Method {
	case "rollback":
		res, err := ws.client.Rollback(ctx, mediawiki.RollbackRequest{Title: p.Title, User: p.User, Summary: p.Summary,
			Tags: p.Tags, MarkBot: p.MarkBot, Assert: ws.cfg.Assert})
		if err != nil {
			return out, err
		}
		out.revID = res.RevID
	case "undo":
		res, err := ws.client.Undo(ctx, mediawiki.UndoRequest{Title: p.Title, Undo: p.Undo, UndoAfter: p.UndoAfter,
			Summary: p.Summary, BaseRevID: p.BaseRevID, Tags: p.Tags, Assert: ws.cfg.Assert})
		if err != nil {
			return out, err
		}
		if res.NoChange {
			return out, &editStoppedError{reason: SkipAlreadyDone, detail: "undo changed nothing"}
		}
		out.revID, out.wikiTime = res.NewRevID, res.NewTimestamp
	default:
		req := mediawiki.EditRequest{Title: p.Title, Text: p.NewText, Summary: p.Summary, BaseRevID: p.BaseRevID,
			Tags: p.Tags, Assert: ws.cfg.Assert, NoCreate: p.Method == "edit", CreateOnly: p.Method == "create"}
		res, err := ws.client.Edit(ctx, req)
		if err != nil {
			return out, err
		}
		if res.NoChange {
			return out, &editStoppedError{reason: SkipAlreadyDone, detail: "the edit changed nothing"}
		}
		out.revID, out.wikiTime = res.NewRevID, res.NewTimestamp
	}
	return out, nil
}

// waitUntil sleeps until t, telling JetStream the message is in progress.
func (r *editOpRun) waitUntil(ctx context.Context, t time.Time) error {
	beat := max(r.w.cfg.AckWait/3, 100*time.Millisecond)
	for {
		d := t.Sub(r.w.now())
		if d <= 0 {
			return nil
		}
		if r.msg != nil {
			_ = r.msg.InProgress()
		}
		timer := time.NewTimer(min(d, beat))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

type editBudgetFullError struct{ wait time.Duration }

func (e *editBudgetFullError) Error() string {
	return "edit budget: no free slot within max_hold; next in " + e.wait.String()
}

type editStoppedError struct{ reason, detail string }

func (e *editStoppedError) Error() string { return "stopped: " + e.reason + ": " + e.detail }

// classify turns a failed write into the handler's answer: a retry after
// the wait the wiki asked for (nothing was done), a skip (refused for good),
// or an error; conflict means decide again; keepClaim that the write may
// have been editApplied (its outcome is unknown), so the claim must expire
// before another attempt, which then checks the page first.
func (r *editOpRun) classify(ctx context.Context, err error) (out error, conflict, keepClaim bool) {
	w, ws := r.w, r.ws
	var bf *editBudgetFullError
	var st *editStoppedError
	switch {
	case errors.As(err, &bf):
		w.m.retries.WithLabelValues(ws.name, "budget").Inc()
		r.log.Debug().Dur("retry_in", bf.wait).Msg("no edit slot free soon; redelivering later")
		return pipeline.Retry(err, bf.wait), false, false
	case errors.As(err, &st):
		return r.skip(ctx, st.reason, st.detail), false, false
	case errors.Is(err, mediawiki.ErrEditConflict), errors.Is(err, mediawiki.ErrAlreadyRolled), errors.Is(err, mediawiki.ErrArticleExists):
		w.m.errors.WithLabelValues(ws.name, r.op, editErrCode(err)).Inc()
		return err, true, false
	case errors.Is(err, mediawiki.ErrProtected), errors.Is(err, mediawiki.ErrBlocked), errors.Is(err, mediawiki.ErrPermissionDenied),
		errors.Is(err, mediawiki.ErrDisallowed), errors.Is(err, mediawiki.ErrUndoFailed), errors.Is(err, mediawiki.ErrMissingTitle):
		w.m.errors.WithLabelValues(ws.name, r.op, editErrCode(err)).Inc()
		r.log.Warn().Err(err).Msg("the wiki refused the edit")
		return r.skip(ctx, SkipRefused, err.Error()), false, false
	}
	out = r.fail(ctx, "", err)
	var re *pipeline.RetryError
	if errors.As(out, &re) {
		return out, false, false // nothing was done
	}
	// A network failure or an unknown answer: the write may have happened.
	var ae *mediawiki.APIError
	return out, false, !errors.As(err, &ae)
}

// fail counts err and turns the ones the wiki asked to wait out into a
// retry (the alert is redelivered, never lost).
func (r *editOpRun) fail(ctx context.Context, code string, err error) error {
	w := r.w
	wiki := r.a.Event.Wiki
	if code == "" {
		code = editErrCode(err)
	}
	w.m.errors.WithLabelValues(wiki, r.op, code).Inc()
	if wait, ok := mediawiki.RetryAfter(err); ok {
		var be *mediawiki.BackoffError
		errors.As(err, &be)
		if r.ws != nil {
			maxLag := 5 * time.Second
			if serr := r.ws.budget.slowDown(context.WithoutCancel(ctx), w.now(), wait, be.Lag, maxLag); serr != nil {
				r.log.Warn().Err(serr).Msg("slowing the shared budget failed")
			}
			if iv, _, cerr := r.ws.budget.current(context.WithoutCancel(ctx), w.now()); cerr == nil {
				w.m.rate.WithLabelValues(r.ws.cfg.Account).Set(float64(time.Minute) / float64(iv))
			}
		}
		wait = max(wait, time.Second)
		w.m.retries.WithLabelValues(wiki, code).Inc()
		r.log.Warn().Err(err).Str("code", code).Dur("retry_in", wait).Dur("lag", be.Lag).Msg("the wiki asked to back off; the alert will be redelivered")
		return pipeline.Retry(err, wait)
	}
	if errors.Is(err, mediawiki.ErrReadOnly) {
		w.m.retries.WithLabelValues(wiki, code).Inc()
		r.log.Warn().Err(err).Dur("retry_in", w.cfg.ReadOnlyWait).Msg("the wiki is read-only; the alert will be redelivered")
		return pipeline.Retry(err, w.cfg.ReadOnlyWait)
	}
	r.log.Error().Err(err).Str("code", code).Msg("edit operation failed; the alert will be redelivered")
	return fmt.Errorf("%s on %s (alert %s): %w", r.op, r.a.Event.Title, r.a.ID, err)
}

// errCode is the metric label of an error: the API code, http-<status>, or
// a class.
func editErrCode(err error) string {
	var ae *mediawiki.APIError
	var he *mediawiki.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae.Code
	case errors.As(err, &he):
		return "http-" + strconv.Itoa(he.StatusCode)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	return "other"
}

// skip counts, logs and audits a skipped operation; the alert is acked.
func (r *editOpRun) skip(ctx context.Context, reason, detail string) error {
	wiki := r.a.Event.Wiki
	r.w.m.skipped.WithLabelValues(wiki, r.op, reason).Inc()
	r.log.Info().Str("reason", reason).Str("detail", detail).Msg("edit skipped")
	r.audit.Result, r.audit.Reason, r.audit.Detail, r.audit.At = "skipped", reason, detail, r.w.now().UTC()
	r.publish(ctx)
	return nil
}

// publish sends the audit record (deduplicated per alert, operation and
// result); a failure is logged, never fatal.
func (r *editOpRun) publish(ctx context.Context) {
	b, err := json.Marshal(r.audit)
	if err != nil {
		return
	}
	m := nats.NewMsg(pipeline.AuditSubject("edit", r.a.Event.Wiki))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, "edit/"+editHash(r.a.ID, r.op, r.audit.Result, r.audit.Reason))
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.w.js.PublishMsg(pctx, m); err != nil {
		r.log.Warn().Err(err).Msg("publishing the audit record failed")
	}
}
