package edit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
	"github.com/rcwatch/rcwatch/internal/testbed/mwtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
)

// wikiSettings is a knob of the test wiki: while the file botrollback
// exists in the wiki's directory, the bot group has the rollback right (so
// one wiki serves both the undo and the rollback path).
const wikiSettings = `
if (is_readable(__DIR__ . '/botrollback')) { $wgGroupPermissions['bot']['rollback'] = true; }
`

const testWikiID = "testwiki"

// shiftClock is the real clock plus an offset a test can move.
type shiftClock struct{ off atomic.Int64 }

func (c *shiftClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *shiftClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// testEnv is one subtest's world: the package's wiki, a fresh NATS server,
// an audit subscription and the captured logs.
type testEnv struct {
	t      *testing.T
	w      *mwtest.Wiki
	nc     *nats.Conn
	js     jetstream.JetStream
	srv    *natstest.Server
	logs   *logtest.Sink
	audits chan Audit
	clock  *shiftClock
	seq    int
}

func newTestEnv(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) *testEnv {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	e := &testEnv{t: t, w: w, nc: nc, js: js, srv: srv, logs: logs, audits: make(chan Audit, 256), clock: &shiftClock{}}
	sub, err := nc.Subscribe("audit.edit.>", func(m *nats.Msg) {
		var a Audit
		if json.Unmarshal(m.Data, &a) == nil {
			e.audits <- a
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return e
}

// config is a live config for the test wiki with quick intervals.
func (e *testEnv) config(live bool) Config {
	cfg := DefaultConfig()
	cfg.Live = live
	cfg.RatePerMinute = 6000 // 10 ms: tests that measure the budget set their own
	cfg.KillSwitchInterval = time.Millisecond
	cfg.MaxAlertAge = -1
	cfg.ClaimTTL = 3 * time.Second
	cfg.ReadOnlyWait = 500 * time.Millisecond
	cfg.ErrorWait = 500 * time.Millisecond
	cfg.AckWait = 10 * time.Second
	cfg.Wikis = map[string]*WikiConfig{testWikiID: {
		APIURL: e.w.APIURL, Account: e.w.Bot.Name, AppID: e.w.Bot.AppID,
		UserAgent:  "rcwatch-test (edit worker tests)",
		Operations: []string{OpTag, OpReport, OpRevert},
		Tag:        TagConfig{Template: "{{Update|date={month} {year}}}"},
		Report:     ReportConfig{Page: "Project:Vandalism reports"},
		Revert:     RevertConfig{TrustedGroups: []string{"sysop"}},
	}}
	return cfg
}

func (e *testEnv) creds() Credentials { return Credentials{botPassword: e.w.Bot.Secret} }

// start runs a worker until the subtest ends; it returns the worker and
// its registry.
func (e *testEnv) start(cfg Config, factory ClientFactory, js jetstream.JetStream, name string) (*Worker, *prometheus.Registry) {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	log := zerolog.New(e.logs).With().Str("replica", name).Timestamp().Logger()
	if factory == nil {
		mw, err := mediawiki.NewMetrics(reg)
		require.NoError(e.t, err)
		factory = NewClientFactory(e.creds(), mw, log)
	}
	if js == nil {
		js = e.js
	}
	w, err := New(pipeline.Deps{JS: js, Reg: reg, Log: log, Now: e.clock.now}, cfg, factory, WithDeliverAll())
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(e.t, err)
		case <-time.After(30 * time.Second):
			e.t.Errorf("edit worker %s did not drain", name)
		}
	})
	return w, reg
}

// alert builds an alert on the test wiki asking for ops.
func (e *testEnv) alert(title, user string, oldRev, newRev int64, ops ...string) event.Alert {
	e.seq++
	acts := make([]string, len(ops))
	for i, op := range ops {
		acts[i] = "edit:" + op
	}
	return event.Alert{
		ID:       event.AlertID("test-rule", fmt.Sprintf("%s-%d-%d", e.t.Name(), e.seq, time.Now().UnixNano())),
		Rule:     event.RuleRef{ID: "test-rule", Version: "v1"},
		Severity: event.SeverityHigh, Score: 0.93, Reasons: []string{"test reason [[x]] {{y}}"},
		Event: event.Ref{Wiki: testWikiID, ServerURL: e.w.URL, Type: "edit", Title: title, User: user,
			OldRev: oldRev, NewRev: newRev, Timestamp: time.Now().Unix()},
		DetectedAt: e.clock.now(), Actions: acts,
	}
}

func (e *testEnv) publish(a event.Alert, msgID string) {
	e.t.Helper()
	b, err := json.Marshal(a)
	require.NoError(e.t, err)
	m := nats.NewMsg(pipeline.AlertSubject(a.Event.Wiki, a.Rule.ID))
	m.Data = b
	if msgID == "" {
		msgID = a.ID
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = e.js.PublishMsg(ctx, m)
	require.NoError(e.t, err)
}

// awaitAudits waits for n audit records.
func (e *testEnv) awaitAudits(n int, timeout time.Duration) []Audit {
	e.t.Helper()
	var out []Audit
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case a := <-e.audits:
			out = append(out, a)
		case <-deadline:
			e.t.Fatalf("got %d of %d audit records within %s: %+v", len(out), n, timeout, out)
		}
	}
	return out
}

// botRevs returns the bot's revisions of title.
func botRevs(t *testing.T, w *mwtest.Wiki, title string) []mwtest.Rev {
	var out []mwtest.Rev
	for _, r := range w.PageHistory(t, title) {
		if r.User == w.Bot.Name {
			out = append(out, r)
		}
	}
	return out
}

// botRCs counts the bot's recent changes.
func botRCs(t *testing.T, w *mwtest.Wiki) int {
	n := 0
	for _, rc := range w.RecentChanges(t) {
		if rc.User == w.Bot.Name {
			n++
		}
	}
	return n
}

// rcOf returns the wiki's recent change with revision id rev.
func rcOf(t *testing.T, w *mwtest.Wiki, rev int64) mwtest.RC {
	t.Helper()
	for _, rc := range w.RecentChanges(t) {
		if rc.RevID == rev {
			return rc
		}
	}
	t.Fatalf("revision %d is not in recent changes", rev)
	return mwtest.RC{}
}

// stepCount is the number of observations of rcwatch_edit_step_seconds{op,step}.
func stepCount(reg *prometheus.Registry, op, step string) uint64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "rcwatch_edit_step_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == op && labels["step"] == step {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func skippedCount(reg *prometheus.Registry, reason string) float64 {
	mfs, _ := reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "rcwatch_edit_skipped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// TestWorkerWiki runs the edit worker against one real MediaWiki (shared
// by the subtests, which run in order: the kill switch and talk page are
// per wiki) and a fresh embedded NATS per subtest.
func TestWorkerWiki(t *testing.T) {
	w := mwtest.Start(t, mwtest.Options{ExtraSettings: wikiSettings})
	logs := logtest.NewSink()
	w.Edit(t, w.Admin, "User:TestBot/Run", "true", "kill switch on")
	t.Cleanup(func() {
		// No secret ever reaches a log.
		all := logs.String()
		assert.NotEmpty(t, all)
		assert.NotContains(t, all, w.Bot.Secret, "the BotPassword secret is in the logs")
	})

	t.Run("operations", func(t *testing.T) { testOperations(t, w, logs) })
	t.Run("rollback", func(t *testing.T) { testRollback(t, w, logs) })
	t.Run("stops", func(t *testing.T) { testStops(t, w, logs) })
	t.Run("kill switch interval", func(t *testing.T) { testKillSwitchInterval(t, w, logs) })
	t.Run("revert memory", func(t *testing.T) { testRevertMemory(t, w, logs) })
	t.Run("maxlag", func(t *testing.T) { testMaxLag(t, w, logs) })
	t.Run("readonly", func(t *testing.T) { testReadOnly(t, w, logs) })
	t.Run("stale token", func(t *testing.T) { testStaleToken(t, w, logs) })
	t.Run("edit conflict", func(t *testing.T) { testConflict(t, w, logs) })
	t.Run("crash after edit", func(t *testing.T) { testCrashAfterEdit(t, w, logs) })
	t.Run("dry run", func(t *testing.T) { testDryRun(t, w, logs) })
	t.Run("replicas share the budget", func(t *testing.T) { testReplicas(t, w, logs) })
	t.Run("login stopped", func(t *testing.T) { testLoginStopped(t, w, logs) })
}

// Item 1: each operation makes its change, visible in history and recent
// changes with the bot flag and the summary.
func testOperations(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Ops tag target", "Article text.\n\n== Section ==\nMore.", "create")
	base := w.Edit(t, w.Admin, "Ops revert target", "Good text.", "create")
	bad := w.Edit(t, w.Other, "Ops revert target", "Good text. VANDALISM VANDALISM", "vandalism")
	_, reg := e.start(e.config(true), nil, nil, "r1")

	tagA := e.alert("Ops tag target", "Other User", 0, 0, OpTag)
	repA := e.alert("Ops revert target", "Other User", base, bad, OpReport)
	revA := e.alert("Ops revert target", "Other User", base, bad, OpRevert)
	for _, a := range []event.Alert{tagA, repA, revA} {
		e.publish(a, "")
	}
	audits := e.awaitAudits(3, 30*time.Second)
	for _, a := range audits {
		assert.Equal(t, "edited", a.Result, "%+v", a)
		// Timed: begun, sent to the wiki, answered, in that order.
		assert.False(t, a.Started.IsZero() || a.Sent.IsZero(), "%+v", a)
		assert.False(t, a.Sent.Before(a.Started) || a.At.Before(a.Sent), "%+v", a)
	}
	for _, step := range []string{stepCheck, stepClaim, stepDecide, stepPrepare, stepWrite, stepRecord} {
		assert.Equal(t, uint64(1), stepCount(reg, OpRevert, step), "revert step %s observed once", step)
	}

	// tag: the template at the top, once.
	text, _ := w.PageText(t, "Ops tag target")
	month := time.Now().UTC().Month().String()
	assert.True(t, strings.HasPrefix(text, "{{Update|date="+month), text)
	revs := botRevs(t, w, "Ops tag target")
	require.Len(t, revs, 1)
	assert.Contains(t, revs[0].Comment, "rule test-rule")
	assert.Contains(t, revs[0].Comment, marker(tagA.ID, OpTag))
	assert.Contains(t, revs[0].Comment, "[[User talk:TestBot]]", "false-positive link")
	rc := rcOf(t, w, revs[0].RevID)
	assert.True(t, rc.Bot, "the tag edit is flagged bot in recent changes")
	assert.Equal(t, revs[0].Comment, rc.Comment)

	// report: one line with the user, page and the marker.
	rtext, _ := w.PageText(t, "Project:Vandalism reports")
	assert.Equal(t, 1, strings.Count(rtext, "[[:Ops revert target]]"), rtext)
	assert.Contains(t, rtext, "[[Special:Contributions/Other User|contribs]]")
	assert.Contains(t, rtext, "<nowiki>test reason [[x]] {{y}}</nowiki>", "reasons are inert wikitext")
	rrevs := botRevs(t, w, "Project:Vandalism reports")
	require.Len(t, rrevs, 1)
	assert.True(t, rcOf(t, w, rrevs[0].RevID).Bot)

	// revert (undo: the bot has no rollback right here): the good text is back.
	vtext, _ := w.PageText(t, "Ops revert target")
	assert.Equal(t, "Good text.", vtext)
	vrevs := botRevs(t, w, "Ops revert target")
	require.Len(t, vrevs, 1)
	assert.Contains(t, vrevs[0].Comment, "rcwatch revert")
	vrc := rcOf(t, w, vrevs[0].RevID)
	assert.True(t, vrc.Bot)
	assert.Contains(t, vrc.Comment, marker(revA.ID, OpRevert))

	// A second tag alert for the same page, a second report for the same
	// user and page: never twice. Even with the template removed by a human.
	w.Edit(t, w.Admin, "Ops tag target", "Article text.\n\n== Section ==\nMore.", "remove the tag")
	e.publish(e.alert("Ops tag target", "Other User", 0, 0, OpTag), "")
	e.publish(e.alert("Ops revert target", "Other User", base, bad, OpReport), "")
	for _, a := range e.awaitAudits(2, 30*time.Second) {
		assert.Equal(t, "skipped", a.Result)
		assert.Equal(t, SkipAlreadyDone, a.Reason)
	}
	assert.Len(t, botRevs(t, w, "Ops tag target"), 1)
	assert.Len(t, botRevs(t, w, "Project:Vandalism reports"), 1)
	assert.Equal(t, 3.0, metrictest.Sum(t, reg, "rcwatch_edit_edits_total"))
	assert.Equal(t, 2.0, skippedCount(reg, SkipAlreadyDone))
}

// The rollback path: with the rollback right the bot rolls back (marked bot).
func testRollback(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	knob := filepath.Join(w.Dir, "botrollback")
	require.NoError(t, os.WriteFile(knob, []byte("1"), 0o644))
	t.Cleanup(func() { _ = os.Remove(knob) })
	e := newTestEnv(t, w, logs)
	base := w.Edit(t, w.Admin, "Rollback target", "Fine text.", "create")
	w.Edit(t, w.Other, "Rollback target", "Fine text. junk one", "vandalism 1")
	bad := w.Edit(t, w.Other, "Rollback target", "Fine text. junk one junk two", "vandalism 2")
	e.start(e.config(true), nil, nil, "r1")
	e.publish(e.alert("Rollback target", "Other User", base, bad, OpRevert), "")
	a := e.awaitAudits(1, 30*time.Second)[0]
	require.Equal(t, "edited", a.Result, "%+v", a)
	assert.Equal(t, "rollback", a.Method)
	text, _ := w.PageText(t, "Rollback target")
	assert.Equal(t, "Fine text.", text, "rollback reverts all consecutive edits of the user")
	revs := botRevs(t, w, "Rollback target")
	require.Len(t, revs, 1)
	rc := rcOf(t, w, revs[0].RevID)
	assert.True(t, rc.Bot, "rollback with markbot is flagged bot")
	assert.Contains(t, rc.Comment, "rcwatch revert")
}

// Item 2: nobots, the kill switch, a talk-page message and a trusted user
// each stop the edit, with the reason logged and counted.
func testStops(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Stops nobots", "{{nobots}}\nText.", "create")
	w.Edit(t, w.Admin, "Stops deny", "{{bots|deny=TestBot}}\nText.", "create")
	w.Edit(t, w.Admin, "Stops allow others", "{{bots|allow=OtherBot}}\nText.", "create")
	w.Edit(t, w.Admin, "Stops plain", "Text.", "create")
	trustedBase := w.Edit(t, w.Other, "Stops trusted", "Text.", "create")
	trustedRev := w.Edit(t, w.Admin, "Stops trusted", "Text by an admin.", "admin edit")
	worker, reg := e.start(e.config(true), nil, nil, "r1")
	rcBefore := botRCs(t, w)

	for _, title := range []string{"Stops nobots", "Stops deny", "Stops allow others"} {
		mark := logs.Len()
		e.publish(e.alert(title, "Other User", 0, 0, OpTag), "")
		a := e.awaitAudits(1, 30*time.Second)[0]
		assert.Equal(t, SkipNoBots, a.Reason, title)
		logs.Await(t, mark, 5*time.Second, `"reason":"nobots"`, "edit skipped", title)
	}
	assert.Equal(t, 3.0, skippedCount(reg, SkipNoBots))
	require.NoError(t, worker.Ready(), "consuming, and the only wiki not stopped")

	// Trusted user (sysop): never reverted.
	e.publish(e.alert("Stops trusted", "Admin", trustedBase, trustedRev, OpRevert), "")
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, SkipTrusted, a.Reason)
	assert.Equal(t, 1.0, skippedCount(reg, SkipTrusted))

	// Kill switch set to false.
	w.Edit(t, w.Admin, "User:TestBot/Run", "false", "stop")
	mark := logs.Len()
	e.publish(e.alert("Stops plain", "Other User", 0, 0, OpTag), "")
	a = e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, SkipKillSwitch, a.Reason)
	logs.Await(t, mark, 5*time.Second, `"reason":"killswitch"`, `User:TestBot/Run reads \"false\"`)
	assert.Equal(t, 1.0, skippedCount(reg, SkipKillSwitch))
	require.ErrorContains(t, worker.Ready(), "testwiki (killswitch)", "editing stopped on every wiki: not ready")
	w.Edit(t, w.Admin, "User:TestBot/Run", "true", "go")

	// A message on the bot's talk page stops editing until reset.
	w.Edit(t, w.Other, "User talk:TestBot", "== Hello ==\nPlease stop. ~~~~", "message")
	e.publish(e.alert("Stops plain", "Other User", 0, 0, OpTag), "")
	a = e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, SkipTalkPage, a.Reason)
	assert.Contains(t, a.Detail, "Other User")
	e.publish(e.alert("Stops plain", "Other User", 0, 0, OpTag), "")
	a = e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, SkipTalkPage, a.Reason, "the stop holds until an operator resets it")
	assert.Equal(t, 2.0, skippedCount(reg, SkipTalkPage))
	require.ErrorContains(t, worker.Ready(), "testwiki (talkpage)")
	assert.Equal(t, rcBefore, botRCs(t, w), "no edit was made while stopped")

	kv, err := e.js.KeyValue(context.Background(), pipeline.BucketActions)
	require.NoError(t, err)
	c, err := NewClientFactory(e.creds(), nil, zerolog.New(logs))(testWikiID, e.config(true).Wikis[testWikiID])
	require.NoError(t, err)
	require.NoError(t, ResetTalkStop(context.Background(), kv, c, testWikiID, "TestBot", time.Now()))
	e.publish(e.alert("Stops plain", "Other User", 0, 0, OpTag), "")
	a = e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, "edited", a.Result, "%+v", a)
	require.NoError(t, worker.Ready(), "ready again once the stop is reset")
}

// The kill switch is read before the first edit and then at most every
// kill_switch_interval, by the worker's clock.
func testKillSwitchInterval(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	for _, p := range []string{"Interval one", "Interval two", "Interval three"} {
		w.Edit(t, w.Admin, p, "Text.", "create")
	}
	cfg := e.config(true)
	cfg.KillSwitchInterval = time.Minute
	_, reg := e.start(cfg, nil, nil, "r1")
	t.Cleanup(func() { w.Edit(t, w.Admin, "User:TestBot/Run", "true", "on again") })

	e.publish(e.alert("Interval one", "Other User", 0, 0, OpTag), "")
	require.Equal(t, "edited", e.awaitAudits(1, 30*time.Second)[0].Result)
	w.Edit(t, w.Admin, "User:TestBot/Run", "false", "stop")
	// Within the minute the switch is not read again.
	e.publish(e.alert("Interval two", "Other User", 0, 0, OpTag), "")
	require.Equal(t, "edited", e.awaitAudits(1, 30*time.Second)[0].Result)
	// 61 s later (worker clock) it is, and editing stops.
	e.clock.advance(61 * time.Second)
	e.publish(e.alert("Interval three", "Other User", 0, 0, OpTag), "")
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, SkipKillSwitch, a.Reason)
	assert.Equal(t, 1.0, skippedCount(reg, SkipKillSwitch))
	assert.Empty(t, botRevs(t, w, "Interval three"))
}

// Item 2: the 24-hour revert memory, across replicas (KV) and in time.
func testRevertMemory(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	base := w.Edit(t, w.Admin, "Memory target", "Stable.", "create")
	bad := w.Edit(t, w.Other, "Memory target", "Stable. spam", "spam")
	_, reg1 := e.start(e.config(true), nil, nil, "r1")
	e.publish(e.alert("Memory target", "Other User", base, bad, OpRevert), "")
	require.Equal(t, "edited", e.awaitAudits(1, 30*time.Second)[0].Result)

	// The user vandalises again; a second replica gets the alert: 1RR.
	_, js2 := e.srv.Connect(t)
	_, reg2 := e.start(e.config(true), nil, js2, "r2")
	top := w.PageHistory(t, "Memory target")[0].RevID
	bad2 := w.Edit(t, w.Other, "Memory target", "Stable. spam again", "spam again")
	mark := logs.Len()
	e.publish(e.alert("Memory target", "Other User", top, bad2, OpRevert), "")
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, Skip1RR, a.Reason)
	logs.Await(t, mark, 5*time.Second, `"reason":"1rr"`)
	assert.Equal(t, 1.0, skippedCount(reg1, Skip1RR)+skippedCount(reg2, Skip1RR))
	text, _ := w.PageText(t, "Memory target")
	assert.Equal(t, "Stable. spam again", text)

	// 25 hours later the pair may be reverted again.
	e.clock.advance(25 * time.Hour)
	e.publish(e.alert("Memory target", "Other User", top, bad2, OpRevert), "")
	a = e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, "edited", a.Result, "%+v", a)
	text, _ = w.PageText(t, "Memory target")
	assert.Equal(t, "Stable.", text)
	assert.Len(t, botRevs(t, w, "Memory target"), 2)
}

// Item 3: maxlag (the testbed's lag knob): the alert waits as told and is
// edited once when the lag is gone; the shared budget slows down.
func testMaxLag(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Lag target", "Text.", "create")
	_, reg := e.start(e.config(true), nil, nil, "r1")
	w.SetLag(t, 7)
	t.Cleanup(func() { w.SetLag(t, 0) })
	mark := logs.Len()
	start := time.Now()
	e.publish(e.alert("Lag target", "Other User", 0, 0, OpTag), "")
	line := logs.Await(t, mark, 30*time.Second, "the wiki asked to back off", `"code":"maxlag"`)
	assert.EqualValues(t, 5000, line["retry_in"], "Retry-After is honoured (ms)")
	w.SetLag(t, 0)
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, "edited", a.Result)
	assert.GreaterOrEqual(t, time.Since(start), 5*time.Second, "redelivered after Retry-After")
	assert.Len(t, botRevs(t, w, "Lag target"), 1, "no edit lost or doubled")
	assert.GreaterOrEqual(t, metrictest.Sum(t, reg, "rcwatch_edit_errors_total", "code", "maxlag"), 1.0)
	rate := metrictest.Sum(t, reg, "rcwatch_edit_rate_per_minute")
	assert.Less(t, rate, 6000.0/2, "lag 7 s with maxlag 5 slows the budget by 2.4x: %v/min", rate)
}

// Item 3: a read-only wiki: retried, edited once when writable.
func testReadOnly(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Readonly target", "Text.", "create")
	_, reg := e.start(e.config(true), nil, nil, "r1")
	w.SetReadOnly(t, true)
	t.Cleanup(func() { w.SetReadOnly(t, false) })
	mark := logs.Len()
	e.publish(e.alert("Readonly target", "Other User", 0, 0, OpTag), "")
	logs.Await(t, mark, 30*time.Second, "the wiki is read-only")
	w.SetReadOnly(t, false)
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, "edited", a.Result)
	assert.Len(t, botRevs(t, w, "Readonly target"), 1)
	assert.GreaterOrEqual(t, metrictest.Sum(t, reg, "rcwatch_edit_errors_total", "code", "readonly"), 1.0)
}

// Item 3: a stale CSRF token (the session was replaced by a new login):
// refreshed once, the edit made once.
func testStaleToken(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Token target", "Text.", "create")
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	mreg := prometheus.NewRegistry()
	mm, err := mediawiki.NewMetrics(mreg)
	require.NoError(t, err)
	log := zerolog.New(logs)
	cfg := mediawiki.Config{APIURL: w.APIURL, Auth: mediawiki.BotPassword{User: w.Bot.Name, AppID: w.Bot.AppID, Secret: w.Bot.Secret},
		HTTPClient: &http.Client{Jar: jar, Timeout: 30 * time.Second}, MaxWait: -1, Metrics: mm}
	client, err := mediawiki.New(cfg, log)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = client.Token(ctx, "csrf")
	require.NoError(t, err)
	// A second login in the same cookie jar: a new session, the cached token is stale.
	other, err := mediawiki.New(cfg, log)
	require.NoError(t, err)
	require.NoError(t, other.Login(ctx))

	e.start(e.config(true), func(string, *WikiConfig) (*mediawiki.Client, error) { return client, nil }, nil, "r1")
	e.publish(e.alert("Token target", "Other User", 0, 0, OpTag), "")
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, "edited", a.Result, "%+v", a)
	assert.Len(t, botRevs(t, w, "Token target"), 1)
	assert.Equal(t, 1.0, metrictest.Sum(t, mreg, "rcwatch_mediawiki_token_fetches_total", "type", "csrf", "reason", "refresh"),
		"the token was refreshed once after badtoken")
	assert.GreaterOrEqual(t, metrictest.Sum(t, mreg, "rcwatch_mediawiki_requests_total", "result", "badtoken"), 1.0)
}

// Item 3: another user edits the page between the decision and the write:
// the worker reads again and decides again, keeping the other user's change.
func testConflict(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Conflict target", "First line.\nSecond line.", "create")
	worker, reg := e.start(e.config(true), nil, nil, "r1")
	var once sync.Once
	worker.beforeEdit = func(op, title string) {
		once.Do(func() { w.Edit(t, w.Other, title, "Rewritten first line.\nSecond line.", "concurrent change") })
	}
	e.publish(e.alert("Conflict target", "Other User", 0, 0, OpTag), "")
	a := e.awaitAudits(1, 30*time.Second)[0]
	assert.Equal(t, "edited", a.Result, "%+v", a)
	text, _ := w.PageText(t, "Conflict target")
	assert.Contains(t, text, "Rewritten first line.", "the other user's change is kept")
	assert.True(t, strings.HasPrefix(text, "{{Update|"), text)
	assert.Len(t, botRevs(t, w, "Conflict target"), 1)
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_edit_redecisions_total"))
	assert.GreaterOrEqual(t, metrictest.Sum(t, reg, "rcwatch_edit_errors_total", "code", "editconflict"), 1.0)
}

// Exactly one edit per alert when the worker died after the edit and before
// recording it: the redelivered alert finds the change on the page.
func testCrashAfterEdit(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Crash tag", "Text.", "create")
	base := w.Edit(t, w.Admin, "Crash revert", "Text.", "create")
	bad := w.Edit(t, w.Other, "Crash revert", "Text. junk", "junk")
	_, reg := e.start(e.config(true), nil, nil, "r1")
	tagA := e.alert("Crash tag", "Other User", 0, 0, OpTag)
	revA := e.alert("Crash revert", "Other User", base, bad, OpRevert)
	e.publish(tagA, "")
	e.publish(revA, "")
	for _, a := range e.awaitAudits(2, 30*time.Second) {
		require.Equal(t, "edited", a.Result)
	}
	// Forget everything the worker recorded after the edits.
	kv, err := e.js.KeyValue(context.Background(), pipeline.BucketActions)
	require.NoError(t, err)
	keys, err := kv.Keys(context.Background())
	require.NoError(t, err)
	for _, k := range keys {
		if strings.HasPrefix(k, "edit.done.") || strings.HasPrefix(k, "edit.tagged.") || strings.HasPrefix(k, "edit.reverted.") {
			require.NoError(t, kv.Purge(context.Background(), k))
		}
	}
	// Redeliver both alerts (same alert ids).
	e.publish(tagA, tagA.ID+"/again")
	e.publish(revA, revA.ID+"/again")
	for _, a := range e.awaitAudits(2, 30*time.Second) {
		assert.Equal(t, SkipAlreadyDone, a.Reason, "%+v", a)
	}
	assert.Len(t, botRevs(t, w, "Crash tag"), 1)
	assert.Len(t, botRevs(t, w, "Crash revert"), 1)
	assert.Equal(t, 2.0, metrictest.Sum(t, reg, "rcwatch_edit_edits_total"))
}

// Item 5: dry-run makes no edit at all, and audits the exact change.
func testDryRun(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Dry tag", "Dry text.", "create")
	base := w.Edit(t, w.Admin, "Dry revert", "Dry good.", "create")
	bad := w.Edit(t, w.Other, "Dry revert", "Dry good. bad", "bad")
	before := w.RecentChanges(t)
	_, reg := e.start(e.config(false), nil, nil, "dry")
	e.publish(e.alert("Dry tag", "Other User", 0, 0, OpTag, OpReport), "")
	e.publish(e.alert("Dry revert", "Other User", base, bad, OpRevert), "")
	audits := e.awaitAudits(3, 30*time.Second)
	byOp := map[string]Audit{}
	for _, a := range audits {
		assert.Equal(t, "would_edit", a.Result, "%+v", a)
		assert.True(t, a.DryRun)
		byOp[a.Operation] = a
	}
	assert.True(t, strings.HasPrefix(byOp[OpTag].NewText, "{{Update|"))
	assert.Contains(t, byOp[OpTag].Diff, "+{{Update|")
	assert.NotZero(t, byOp[OpTag].BaseRevID)
	assert.Contains(t, byOp[OpTag].Summary, "rule test-rule")
	assert.Equal(t, "Dry good.", byOp[OpRevert].NewText)
	assert.Equal(t, bad, byOp[OpRevert].BaseRevID)
	assert.Contains(t, byOp[OpReport].Added, "[[:Dry tag]]")
	assert.Equal(t, before, w.RecentChanges(t), "dry-run changed the wiki")
	assert.Equal(t, 3.0, metrictest.Sum(t, reg, "rcwatch_edit_dry_run_total"))
	assert.Zero(t, metrictest.Sum(t, reg, "rcwatch_edit_edits_total"))
}

// Item 4: three replicas, 20 alerts, a budget of one edit per second: no
// two edits less than a second apart by the wiki's timestamps and the
// workers' logs, every alert handled exactly once.
func testReplicas(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	const n = 20
	titles := make([]string, n)
	for i := range titles {
		titles[i] = fmt.Sprintf("Budget page %02d", i)
		w.Edit(t, w.Admin, titles[i], "Text.", "create")
	}
	cfg := e.config(true)
	cfg.RatePerMinute = 60
	cfg.AckWait = time.Minute
	regs := make([]*prometheus.Registry, 3)
	for i := range regs {
		_, js := e.srv.Connect(t)
		_, regs[i] = e.start(cfg, nil, js, fmt.Sprintf("replica-%d", i))
	}
	start := time.Now()
	for _, title := range titles {
		e.publish(e.alert(title, "Other User", 0, 0, OpTag), "")
	}
	// A redelivered alert (its ack wait ran out while it sat in a replica's
	// pull buffer) may be audited again as already done; never edited twice.
	edited := map[string]int{}
	deadline := time.After(90 * time.Second)
	for len(edited) < n {
		select {
		case a := <-e.audits:
			if a.Result == "edited" {
				edited[a.Title]++
			} else {
				assert.Equal(t, SkipAlreadyDone, a.Reason, "%+v", a)
			}
		case <-deadline:
			t.Fatalf("%d of %d alerts edited within 90s", len(edited), n)
		}
	}
	t.Logf("%d edits by 3 replicas at 1/s took %s", n, time.Since(start).Round(time.Millisecond))
	for title, k := range edited {
		assert.Equal(t, 1, k, "%s edited %d times", title, k)
	}
	var stamps []time.Time
	for _, title := range titles {
		revs := botRevs(t, w, title)
		require.Len(t, revs, 1, title)
		stamps = append(stamps, revs[0].Timestamp)
	}
	sort.Slice(stamps, func(i, j int) bool { return stamps[i].Before(stamps[j]) })
	for i := 1; i < len(stamps); i++ {
		assert.GreaterOrEqual(t, stamps[i].Sub(stamps[i-1]), time.Second, "wiki timestamps %s and %s", stamps[i-1], stamps[i])
	}
	// The workers' logs: the slots taken are at least a second apart, and
	// each edit was sent at or after its slot.
	var slots []time.Time
	for _, l := range logs.Matching(`"message":"edit made"`, `"title":"Budget page`) {
		slot, err := time.Parse(time.RFC3339Nano, l["slot"].(string))
		require.NoError(t, err)
		sent, err := time.Parse(time.RFC3339Nano, l["sent_at"].(string))
		require.NoError(t, err)
		assert.False(t, sent.Before(slot))
		slots = append(slots, slot)
	}
	require.Len(t, slots, n)
	sort.Slice(slots, func(i, j int) bool { return slots[i].Before(slots[j]) })
	for i := 1; i < len(slots); i++ {
		assert.GreaterOrEqual(t, slots[i].Sub(slots[i-1]), time.Second)
	}
	total := 0.0
	for _, reg := range regs {
		total += metrictest.Sum(t, reg, "rcwatch_edit_edits_total")
	}
	assert.Equal(t, float64(n), total)
}

// Login stopped: a wrong BotPassword refused once with MaxLoginFailures 1
// (mediawiki.ErrLoginStopped). Editing on the wiki stops: the error log
// names the wiki, Ready says so, the gauge is 1; the alert is not acked
// but sent back with a backoff, and no further login is tried.
func testLoginStopped(t *testing.T, w *mwtest.Wiki, logs *logtest.Sink) {
	e := newTestEnv(t, w, logs)
	w.Edit(t, w.Admin, "Login target", "Text.", "create")
	mreg := prometheus.NewRegistry()
	mm, err := mediawiki.NewMetrics(mreg)
	require.NoError(t, err)
	cfg := mediawiki.Config{APIURL: w.APIURL, Auth: mediawiki.BotPassword{User: w.Bot.Name, AppID: w.Bot.AppID, Secret: "wrongwrongwrongwrongwrongwrongwr"},
		MaxWait: -1, Metrics: mm, MaxLoginFailures: 1}
	client, err := mediawiki.New(cfg, zerolog.New(logs))
	require.NoError(t, err)
	mark := logs.Len()
	worker, reg := e.start(e.config(true), func(string, *WikiConfig) (*mediawiki.Client, error) { return client, nil }, nil, "r1")
	e.publish(e.alert("Login target", "Other User", 0, 0, OpTag), "")
	line := logs.Await(t, mark, 30*time.Second, "editing on it is stopped", testWikiID)
	assert.Equal(t, "error", line["level"])
	assert.NotContains(t, logs.String(), "wrongwrongwrong", "no secret in the logs")
	err = worker.Ready()
	require.Error(t, err)
	assert.Contains(t, err.Error(), testWikiID)
	assert.Equal(t, 1.0, metrictest.Sum(t, reg, "rcwatch_edit_login_stopped", "wiki", testWikiID))
	// The worker logs the stop, then counts the retry: await the count.
	require.Eventually(t, func() bool {
		return metrictest.Sum(t, reg, "rcwatch_edit_retries_total", "reason", "login_stopped") >= 1
	}, 30*time.Second, 10*time.Millisecond, "the alert sent back with a backoff")
	assert.Empty(t, botRevs(t, w, "Login target"), "nothing edited")
}
