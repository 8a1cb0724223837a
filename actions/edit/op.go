package edit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rs/zerolog"
)

// opRun carries one operation through its steps.
type opRun struct {
	w     *Worker
	ws    *wikiState
	a     *event.Alert
	op    string
	log   zerolog.Logger
	msg   jetstream.Msg
	audit Audit
	// mark is when the current step began (rcwatch_edit_step_seconds).
	mark time.Time
	// stops answers the read of the wiki's stop conditions (kill switch,
	// talk page) that check began (guard.checkAsync).
	stops func() (reason, detail string, err error)
}

// memory is the KV record of an earlier operation on the same page (and
// user): edit.tagged, edit.reported or edit.reverted.
type memory struct {
	key string
	ttl time.Duration
	rev uint64 // 0: no record
}

func (w *Worker) newOpRun(msg jetstream.Msg, a *event.Alert, op string, now time.Time) *opRun {
	return &opRun{w: w, a: a, op: op, msg: msg, mark: now,
		log: w.log.With().Str("alert", a.ID).Str("wiki", a.Event.Wiki).Str("op", op).Str("title", a.Event.Title).Logger(),
		audit: Audit{AlertID: a.ID, Wiki: a.Event.Wiki, Rule: a.Rule.ID, Operation: op, Title: a.Event.Title,
			User: a.Event.User, DryRun: !w.cfg.Live, Started: now.UTC()}}
}

// step ends the current step, observing its time as name, and begins the
// next one.
func (r *opRun) step(name string) {
	now := r.w.now()
	r.w.m.steps.WithLabelValues(r.op, name).Observe(max(now.Sub(r.mark), 0).Seconds())
	r.mark = now
}

// handleOp carries one operation of an alert through its steps: the checks
// (check), the dry-run (dryRun) or else the claim (claim), the memory of
// earlier operations (recall), then deciding and writing (attempt), again
// after an edit conflict.
func (w *Worker) handleOp(ctx context.Context, msg jetstream.Msg, a *event.Alert, op string) error {
	now := w.now()
	r := w.newOpRun(msg, a, op, now)
	stop, err := r.check(ctx, now)
	r.step(stepCheck)
	if stop {
		return err
	}
	if !w.cfg.Live {
		return r.dryRun(ctx, now)
	}
	release, err := r.claim(ctx, now)
	if err != nil {
		return err
	}
	keepClaim := false
	defer func() {
		if !keepClaim {
			release()
		}
	}()
	mem, stop, err := r.recall(ctx, now)
	r.step(stepClaim)
	if stop {
		return err
	}
	for attempt := 0; ; attempt++ {
		var conflict bool
		conflict, keepClaim, err = r.attempt(ctx, now, &mem)
		if conflict && attempt < 3 {
			w.m.conflict.WithLabelValues(r.ws.name, op).Inc()
			r.log.Info().Int("attempt", attempt+1).Msg("edit conflict; reading the page again and deciding again")
			now = w.now()
			continue
		}
		return err
	}
}

func (r *opRun) doneKey() string { return "edit.done." + hash(r.a.ID, r.op) }

// check runs what needs no claim: the wiki is configured and the operation
// enabled on it, the alert is fresh, and the operation was not done before
// (live). It starts reading the wiki's stop conditions, which the operation
// awaits once it has read the page (awaitStops), before deciding anything.
// stop is true when the operation ends here, with err the handler's answer.
func (r *opRun) check(ctx context.Context, now time.Time) (stop bool, err error) {
	w, a, op := r.w, r.a, r.op
	ws, err := w.wiki(a.Event.Wiki)
	if err != nil {
		return true, err
	}
	if ws == nil {
		return true, r.skip(ctx, SkipUnknownWiki, "no configuration for wiki "+a.Event.Wiki)
	}
	r.ws = ws
	if !slices.Contains([]string{OpTag, OpReport, OpRevert}, op) || !ws.cfg.enabled(op) {
		return true, r.skip(ctx, SkipDisabled, "operation "+op+" is not enabled on "+ws.name)
	}
	if w.cfg.MaxAlertAge > 0 && !a.DetectedAt.IsZero() && now.Sub(a.DetectedAt) > w.cfg.MaxAlertAge {
		return true, r.skip(ctx, SkipStale, fmt.Sprintf("detected %s ago", now.Sub(a.DetectedAt).Round(time.Second)))
	}
	if e := ws.loginStopped.Load(); e != nil {
		return true, r.loginWait(errors.New(*e))
	}
	r.stops = ws.guard.checkAsync(ctx, ws.client, now)
	if w.cfg.Live {
		if e, err := w.kv.Get(ctx, r.doneKey()); err == nil {
			return true, r.skip(ctx, SkipAlreadyDone, "done before: "+string(e.Value()))
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return true, r.fail(ctx, "kv", fmt.Errorf("reading %s: %w", r.doneKey(), err))
		}
	}
	return false, nil
}

// awaitStops waits for the stop conditions check began reading: a stopped
// wiki skips the operation with the stop's reason, whatever the page said.
// stop is true when the operation ends here, with err the handler's answer.
func (r *opRun) awaitStops(ctx context.Context) (stop bool, err error) {
	reason, detail, err := r.stops()
	if err != nil {
		return true, r.fail(ctx, "", err)
	}
	if reason != "" {
		return true, r.skip(ctx, reason, detail)
	}
	return false, nil
}

// claim takes the (alert, operation) so that a redelivery to another
// replica while this one edits waits; a dead replica's claim expires after
// claim_ttl. release deletes the claim.
func (r *opRun) claim(ctx context.Context, now time.Time) (release func(), err error) {
	w := r.w
	key := "edit.claim." + hash(r.a.ID, r.op)
	if _, err := w.kv.Create(ctx, key, []byte(now.UTC().Format(time.RFC3339Nano)), jetstream.KeyTTL(w.cfg.ClaimTTL)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			w.m.retries.WithLabelValues(r.ws.name, "claimed").Inc()
			r.log.Info().Msg("another replica is handling this operation; retrying later")
			return nil, pipeline.Retry(fmt.Errorf("operation %s of %s is claimed", r.op, r.a.ID), w.cfg.ClaimTTL/4)
		}
		return nil, r.fail(ctx, "kv", fmt.Errorf("claiming %s: %w", key, err))
	}
	return func() { _ = w.kv.Delete(context.WithoutCancel(ctx), key) }, nil
}

// recall reads the memory of earlier operations on the same page and
// template (tag), page and user (report), or page and user (revert: one
// revert per pair within revert_memory). A record younger than its memory
// ends the operation (stop, with err the handler's answer).
func (r *opRun) recall(ctx context.Context, now time.Time) (mem memory, stop bool, err error) {
	w, ws, a := r.w, r.ws, r.a
	title := normalizeTitlePart(a.Event.Title)
	switch r.op {
	case OpTag:
		mem = memory{key: "edit.tagged." + hash(ws.name, title, templateName(tagTemplate(ws.cfg, a, now))), ttl: ws.cfg.Tag.Memory}
	case OpReport:
		mem = memory{key: "edit.reported." + hash(ws.name, title, normName(a.Event.User)), ttl: ws.cfg.Report.Memory}
	case OpRevert:
		mem = memory{key: "edit.reverted." + hash(ws.name, title, normName(a.Event.User)), ttl: w.cfg.RevertMemory}
	}
	e, err := w.kv.Get(ctx, mem.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return mem, false, nil
	}
	if err != nil {
		return mem, true, r.fail(ctx, "kv", fmt.Errorf("reading %s: %w", mem.key, err))
	}
	mem.rev = e.Revision()
	var rec struct {
		At time.Time `json:"at"`
	}
	if json.Unmarshal(e.Value(), &rec) != nil || now.Sub(rec.At) >= mem.ttl {
		return mem, false, nil
	}
	reason, did := SkipAlreadyDone, map[string]string{OpTag: "tagged", OpReport: "reported", OpRevert: "reverted"}[r.op]
	if r.op == OpRevert {
		reason = Skip1RR
	}
	return mem, true, r.skip(ctx, reason, fmt.Sprintf("%s %s ago (%s)", did, now.Sub(rec.At).Round(time.Second), string(e.Value())))
}

// attempt decides on the page as it is now and writes. A revert first
// takes the (page, user) memory, which only one replica can (1RR across
// replicas). err is the handler's answer; conflict asks to decide again
// (edit conflict); keepClaim that the write's outcome is unknown, so the
// claim must expire before another attempt.
func (r *opRun) attempt(ctx context.Context, now time.Time, mem *memory) (conflict, keepClaim bool, err error) {
	d, err := r.decide(ctx, now)
	r.step(stepDecide)
	if stop, serr := r.awaitStops(ctx); stop {
		return false, false, serr
	}
	if err != nil {
		return false, false, r.fail(ctx, "", err)
	}
	if d.skip != "" {
		return false, false, r.skip(ctx, d.skip, d.detail)
	}
	p := d.plan
	r.fillAudit(p)
	if r.op == OpRevert {
		if stop, err := r.takeRevertMemory(ctx, now, mem); stop {
			return false, false, err
		}
	}
	res, err := r.apply(ctx, p)
	if err != nil {
		if r.op == OpRevert {
			_ = r.w.kv.Delete(context.WithoutCancel(ctx), mem.key)
			mem.rev = 0
		}
		return r.classify(ctx, err)
	}
	r.done(ctx, p, res, mem)
	return false, false, nil
}

// takeRevertMemory records the revert before it is made; when another
// replica recorded one first, the revert is skipped (stop, with err the
// handler's answer).
func (r *opRun) takeRevertMemory(ctx context.Context, now time.Time, mem *memory) (stop bool, err error) {
	w := r.w
	rec, _ := json.Marshal(map[string]any{"at": now.UTC(), "alert": r.a.ID, "state": "reverting"})
	if mem.rev == 0 {
		_, err = w.kv.Create(ctx, mem.key, rec, jetstream.KeyTTL(mem.ttl))
	} else {
		// An old record our clock says has expired: replace it.
		_, err = pipeline.KVPutTTL(ctx, w.js, w.kv, mem.key, rec, mem.ttl, mem.rev)
	}
	if err == nil {
		return false, nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, pipeline.ErrRevisionMismatch) {
		return true, r.skip(ctx, Skip1RR, "another revert of this page and user is recorded")
	}
	return true, r.fail(ctx, "kv", fmt.Errorf("recording the revert of %s: %w", r.a.Event.Title, err))
}

// done records a write that was made, before the runner acks the alert:
// the done key (a redelivery skips it), the memory of the page, the audit
// record, the metric and the log line.
func (r *opRun) done(ctx context.Context, p *plan, res applied, mem *memory) {
	w, ws := r.w, r.ws
	rec, _ := json.Marshal(map[string]any{"at": w.now().UTC(), "alert": r.a.ID, "revid": res.revID})
	dctx := context.WithoutCancel(ctx)
	if _, err := w.kv.Create(dctx, r.doneKey(), rec, jetstream.KeyTTL(w.cfg.IdempotencyTTL)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		r.log.Error().Err(err).Msg("recording the done operation failed; a redelivery will find the change on the page")
	}
	if r.op == OpRevert {
		if e, err := w.kv.Get(dctx, mem.key); err == nil {
			_, _ = pipeline.KVPutTTL(dctx, w.js, w.kv, mem.key, rec, mem.ttl, e.Revision())
		}
	} else if _, err := w.kv.Create(dctx, mem.key, rec, jetstream.KeyTTL(mem.ttl)); errors.Is(err, jetstream.ErrKeyExists) {
		if e, err := w.kv.Get(dctx, mem.key); err == nil {
			_, _ = pipeline.KVPutTTL(dctx, w.js, w.kv, mem.key, rec, mem.ttl, e.Revision())
		}
	}
	r.audit.Result, r.audit.NewRevID, r.audit.WikiTime, r.audit.Slot, r.audit.Sent, r.audit.At = "edited", res.revID, res.wikiTime, res.slot, res.sentAt.UTC(), w.now().UTC()
	w.m.edits.WithLabelValues(ws.name, r.op).Inc()
	r.log.Info().Int64("revid", res.revID).Str("slot", res.slot.UTC().Format(time.RFC3339Nano)).
		Str("sent_at", res.sentAt.UTC().Format(time.RFC3339Nano)).Str("wiki_timestamp", res.wikiTime.UTC().Format(time.RFC3339)).
		Str("method", p.Method).Int64("base_revid", p.BaseRevID).Str("summary", p.Summary).Msg("edit made")
	// The edit is made and its done key stored: a redelivery would only
	// find it done, so the record is retried here and a failure logged.
	_ = r.publish(dctx)
	r.step(stepRecord)
}

func (r *opRun) decide(ctx context.Context, now time.Time) (decision, error) {
	wc := r.ws.cfg
	switch r.op {
	case OpTag:
		return decideTag(ctx, r.ws.client, wc, r.a, now)
	case OpReport:
		return decideReport(ctx, r.ws.client, wc, r.a, now)
	default:
		method, err := r.revertMethod(ctx, now)
		if err != nil {
			return decision{}, err
		}
		return decideRevert(ctx, r.ws.client, wc, r.a, method, !r.w.cfg.Live, now)
	}
}

// revertMethod picks rollback or undo (auto: rollback when the account
// has the right, checked every 10 minutes).
func (r *opRun) revertMethod(ctx context.Context, now time.Time) (string, error) {
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

func (r *opRun) fillAudit(p *plan) {
	r.audit.Title, r.audit.Method, r.audit.BaseRevID, r.audit.Summary, r.audit.Tags = p.Title, p.Method, p.BaseRevID, p.Summary, p.Tags
	r.audit.Added, r.audit.Diff = p.Added, p.Diff
	if len(p.NewText) <= maxAuditText {
		r.audit.NewText = p.NewText
	}
}

func (r *opRun) dryRun(ctx context.Context, now time.Time) error {
	d, err := r.decide(ctx, now)
	r.step(stepDecide)
	if stop, serr := r.awaitStops(ctx); stop {
		return serr
	}
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
	if err := r.publish(ctx); err != nil {
		return err
	}
	r.step(stepRecord)
	return nil
}
