package edit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
)

// applied is what a successful write reports.
type applied struct {
	revID    int64
	wikiTime time.Time
	slot     time.Time
	sentAt   time.Time
}

// apply takes a budget slot, waits for it, checks the stop conditions once
// more and writes.
func (r *opRun) apply(ctx context.Context, p *plan) (applied, error) {
	w, ws := r.w, r.ws
	// Log in and fetch the token before the slot, so the write is sent on time.
	tokenType := "csrf"
	if p.Method == "rollback" {
		tokenType = "rollback"
	}
	if _, err := ws.client.Token(ctx, tokenType); err != nil {
		return applied{}, err
	}
	now := w.now()
	slot, retryIn, iv, err := ws.budget.reserve(ctx, now, w.cfg.MaxHold)
	if err != nil {
		return applied{}, err
	}
	if iv > 0 {
		w.m.rate.WithLabelValues(ws.cfg.Account).Set(float64(time.Minute) / float64(iv))
	}
	if retryIn > 0 {
		w.m.wait.WithLabelValues(ws.cfg.Account).Set(retryIn.Seconds())
		return applied{}, &budgetFullError{wait: retryIn}
	}
	w.m.wait.WithLabelValues(ws.cfg.Account).Set(max(slot.Sub(now), 0).Seconds())
	if err := r.waitUntil(ctx, slot); err != nil {
		return applied{}, err
	}
	if reason, detail, err := ws.guard.check(ctx, ws.client, w.now()); err != nil {
		return applied{}, err
	} else if reason != "" {
		return applied{}, &stoppedError{reason: reason, detail: detail}
	}
	if err := r.beginWrite(ctx, slot); err != nil {
		return applied{}, err
	}
	if w.beforeEdit != nil {
		w.beforeEdit(r.op, p.Title)
	}
	r.step(stepPrepare)
	out := applied{slot: slot, sentAt: r.mark}
	defer func() {
		r.step(stepWrite)
		// A failed write may have been made (its answer lost): its time is
		// recorded as the wiki's.
		if err := ws.budget.endWrite(context.WithoutCancel(ctx), slot, out.wikiTime, w.now()); err != nil {
			r.log.Warn().Err(err).Msg("recording the write in the edit budget failed; the next write waits for its mark to expire")
		}
	}()
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
			return out, &stoppedError{reason: SkipAlreadyDone, detail: "undo changed nothing"}
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
			return out, &stoppedError{reason: SkipAlreadyDone, detail: "the edit changed nothing"}
		}
		out.revID, out.wikiTime = res.NewRevID, res.NewTimestamp
	}
	return out, nil
}

// beginWrite waits until the account's previous write has finished and
// the wiki's clock has left the second of its timestamp (budget.beginWrite).
func (r *opRun) beginWrite(ctx context.Context, slot time.Time) error {
	for {
		wait, err := r.ws.budget.beginWrite(ctx, slot, r.w.now())
		if err != nil || wait <= 0 {
			return err
		}
		if err := r.waitUntil(ctx, r.w.now().Add(wait)); err != nil {
			return err
		}
	}
}

// waitUntil sleeps until t, telling JetStream the message is in progress.
func (r *opRun) waitUntil(ctx context.Context, t time.Time) error {
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

type budgetFullError struct{ wait time.Duration }

func (e *budgetFullError) Error() string {
	return "edit budget: no free slot within max_hold; next in " + e.wait.String()
}

type stoppedError struct{ reason, detail string }

func (e *stoppedError) Error() string { return "stopped: " + e.reason + ": " + e.detail }

// classify turns a failed write into the handler's answer: a retry after
// the wait the wiki asked for (nothing was done), a skip (refused for good),
// or an error; conflict means decide again; keepClaim that the write may
// have been applied (its outcome is unknown), so the claim must expire
// before another attempt, which then checks the page first.
func (r *opRun) classify(ctx context.Context, err error) (conflict, keepClaim bool, out error) {
	w, ws := r.w, r.ws
	var bf *budgetFullError
	var st *stoppedError
	switch {
	case errors.As(err, &bf):
		w.m.retries.WithLabelValues(ws.name, "budget").Inc()
		r.log.Debug().Dur("retry_in", bf.wait).Msg("no edit slot free soon; redelivering later")
		return false, false, pipeline.Retry(err, bf.wait)
	case errors.As(err, &st):
		return false, false, r.skip(ctx, st.reason, st.detail)
	case errors.Is(err, mediawiki.ErrEditConflict), errors.Is(err, mediawiki.ErrAlreadyRolled), errors.Is(err, mediawiki.ErrArticleExists):
		w.m.errors.WithLabelValues(ws.name, r.op, errCode(err)).Inc()
		return true, false, err
	case errors.Is(err, mediawiki.ErrProtected), errors.Is(err, mediawiki.ErrBlocked), errors.Is(err, mediawiki.ErrPermissionDenied),
		errors.Is(err, mediawiki.ErrDisallowed), errors.Is(err, mediawiki.ErrUndoFailed), errors.Is(err, mediawiki.ErrMissingTitle):
		w.m.errors.WithLabelValues(ws.name, r.op, errCode(err)).Inc()
		r.log.Warn().Err(err).Msg("the wiki refused the edit")
		return false, false, r.skip(ctx, SkipRefused, err.Error())
	}
	out = r.fail(ctx, "", err)
	var re *pipeline.RetryError
	if errors.As(out, &re) {
		return false, false, out // nothing was done
	}
	// A network failure or an unknown answer: the write may have happened.
	var ae *mediawiki.APIError
	return false, !errors.As(err, &ae), out
}

// fail counts err and turns the ones the wiki asked to wait out into a
// retry (the alert is redelivered, never lost).
func (r *opRun) fail(ctx context.Context, code string, err error) error {
	w := r.w
	wiki := r.a.Event.Wiki
	if code == "" {
		code = errCode(err)
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
	if errors.Is(err, mediawiki.ErrLoginStopped) && r.ws != nil {
		if r.ws.loginStopped.CompareAndSwap(nil, ptr(err.Error())) {
			w.m.login.WithLabelValues(wiki).Set(1)
			r.log.Error().Err(err).Str("wiki", wiki).
				Msg("logins to the wiki failed repeatedly: editing on it is stopped until the credentials are fixed and the worker restarted; its alerts wait")
		}
		return r.loginWait(err)
	}
	if errors.Is(err, mediawiki.ErrReadOnly) {
		w.m.retries.WithLabelValues(wiki, code).Inc()
		r.log.Warn().Err(err).Dur("retry_in", w.cfg.ReadOnlyWait).Msg("the wiki is read-only; the alert will be redelivered")
		return pipeline.Retry(err, w.cfg.ReadOnlyWait)
	}
	r.log.Error().Err(err).Str("code", code).Msg("edit operation failed; the alert will be redelivered")
	return fmt.Errorf("%s on %s (alert %s): %w", r.op, r.a.Event.Title, r.a.ID, err)
}

// loginWaitMax caps the redelivery delay of an alert whose wiki stopped
// logging in.
const loginWaitMax = 10 * time.Minute

// loginWait sends back an alert of a wiki whose logins stopped: redelivered
// with capped, jittered exponential backoff (error_wait doubling per
// delivery, at most 10 min), so it waits for a restart with fixed
// credentials without a call to the wiki, and ends as stale once older than
// max_alert_age.
func (r *opRun) loginWait(err error) error {
	n := uint64(1)
	if r.msg != nil {
		if md, merr := r.msg.Metadata(); merr == nil && md.NumDelivered > 0 {
			n = md.NumDelivered
		}
	}
	wait := r.w.cfg.ErrorWait << min(n-1, 10)
	if wait <= 0 || wait > loginWaitMax {
		wait = loginWaitMax
	}
	wait = pipeline.Jitter(wait)
	r.w.m.retries.WithLabelValues(r.a.Event.Wiki, "login_stopped").Inc()
	return pipeline.Retry(err, wait)
}

func ptr[T any](v T) *T { return &v }

// errCode is the metric label of an error: the API code, http-<status>, or
// a class.
func errCode(err error) string {
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
func (r *opRun) skip(ctx context.Context, reason, detail string) error {
	wiki := r.a.Event.Wiki
	r.w.m.skipped.WithLabelValues(wiki, r.op, reason).Inc()
	r.log.Info().Str("reason", reason).Str("detail", detail).Msg("edit skipped")
	r.audit.Result, r.audit.Reason, r.audit.Detail, r.audit.At = "skipped", reason, detail, r.w.now().UTC()
	return r.publish(ctx)
}

// publish stores the audit record (deduplicated per alert, operation and
// result), the stage's result: an alert leaves the stage only once it is
// stored. While NATS cannot store it (a cluster electing a leader, a full
// disk) it retries with capped, jittered backoff for up to 30 s, then
// returns the error so that the alert is redelivered (a redelivery stores
// the same record once, by its message id).
func (r *opRun) publish(ctx context.Context) error {
	b, err := json.Marshal(r.audit)
	if err != nil {
		return pipeline.Invalid("audit", fmt.Errorf("encoding the audit record: %w", err))
	}
	m := nats.NewMsg(pipeline.AuditSubject("edit", r.a.Event.Wiki))
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, "edit/"+hash(r.a.ID, r.op, r.audit.Result, r.audit.Reason))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := r.w.js.PublishMsg(pctx, m)
		pcancel()
		if err == nil {
			return nil
		}
		wait = min(2*wait, 2*time.Second)
		t := time.NewTimer(pipeline.Jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			r.log.Error().Err(err).Msg("storing the audit record failed; the alert will be redelivered")
			return pipeline.Retry(fmt.Errorf("storing the audit record: %w", err), time.Second)
		case <-t.C:
		}
	}
}
