package rules

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
)

func newTestEngine(tb testing.TB, cfg EngineConfig, reg prometheus.Registerer, srcs ...Source) *Engine {
	tb.Helper()
	e, err := NewEngine(cfg, reg, zerolog.Nop())
	require.NoError(tb, err)
	require.NoError(tb, e.Load(srcs))
	return e
}

func src(name, yaml string) Source { return Source{Name: name, Data: []byte(yaml)} }

var t0 = time.Date(2024, 2, 6, 17, 0, 0, 0, time.UTC)

// The metadata rules fire on exactly the fixture events a plain Go
// predicate selects, with deterministic ids and readable reasons.
func TestEvalFixtureEvents(t *testing.T) {
	evs := fixtures.RecentChanges(t)
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, src("m.yaml", `
rules:
  - id: bot-big-new
    when: type == "new" && bot && new_size > 5000
    severity: low
    actions: [feed]
  - id: human-log
    when: type == "log" and not bot and user_type == "named"
    severity: info
  - id: enwiki-talk
    when: wiki == "enwiki" && page_namespace % 2 == 1 && page_title != page_prefixedtitle
    severity: medium
    score: "edit_delta / 1000.0"
`))
	got := map[string][]string{}
	for _, ev := range evs {
		for _, a := range e.Eval(context.Background(), ev, nil, t0) {
			got[a.Rule.ID] = append(got[a.Rule.ID], a.ID)
			assert.Equal(t, event.AlertID(a.Rule.ID, ev.Meta.ID), a.ID)
			assert.Equal(t, ev.Meta.ID, a.Event.MetaID)
			assert.Equal(t, t0, a.DetectedAt)
			assert.False(t, a.Partial)
			assert.NotEmpty(t, a.Reasons)
		}
	}
	want := map[string][]string{}
	for _, ev := range evs {
		if ev.Type == "new" && ev.Bot && ev.Length.New != nil && *ev.Length.New > 5000 {
			want["bot-big-new"] = append(want["bot-big-new"], "bot-big-new/"+ev.Meta.ID)
		}
		if ev.Type == "log" && !ev.Bot && ev.UserType() == "named" {
			want["human-log"] = append(want["human-log"], "human-log/"+ev.Meta.ID)
		}
		if ev.Wiki == "enwiki" && ev.Namespace%2 == 1 {
			want["enwiki-talk"] = append(want["enwiki-talk"], "enwiki-talk/"+ev.Meta.ID)
		}
	}
	for id, w := range want {
		assert.NotEmpty(t, w, id)
		assert.Equal(t, w, got[id], id)
	}
	assert.Len(t, got, len(want))
	st := e.Rules()
	assert.Equal(t, int64(len(evs)), st[0].Evaluations)
}

func TestAlertContents(t *testing.T) {
	e := newTestEngine(t, EngineConfig{}, nil, mustRead(t, "testdata/basic.yaml"))
	ev := mustEvent(t, `{"meta":{"id":"m1","dt":"2024-02-06T16:58:10Z"},"type":"edit","wiki":"enwiki","title":"Foo",
		"user":"192.0.2.7","length":{"old":9000,"new":1000},"revision":{"old":1,"new":2},
		"server_url":"https://en.wikipedia.org","server_script_path":"/w","comment":"x"}`)
	alerts := e.Eval(context.Background(), ev, nil, t0)
	require.Len(t, alerts, 1)
	a := alerts[0]
	assert.Equal(t, "ip-large-removal/m1", a.ID)
	assert.Equal(t, "ip-large-removal", a.Rule.ID)
	assert.Len(t, a.Rule.Version, 12)
	assert.Equal(t, "high", a.Severity)
	assert.Equal(t, 0.8, a.Score)
	assert.Equal(t, []string{"irc:#cvn-test", "feed"}, a.Actions)
	assert.Equal(t, []string{"vandalism"}, a.Tags)
	assert.Equal(t, []string{`user_type == "ip" (user_type="ip")`, `edit_delta < -2000 (edit_delta=-8000)`}, a.Reasons)
	assert.Equal(t, "https://en.wikipedia.org/w/index.php?diff=2&oldid=1", a.Event.DiffURL)
}

func mustEvent(tb testing.TB, s string) *event.RecentChange {
	tb.Helper()
	ev, err := event.Decode([]byte(s))
	require.NoError(tb, err)
	return ev
}

// recordingEnricher is a real Enricher over fixed data that records its calls.
type recordingEnricher struct {
	mu    sync.Mutex
	calls []Need
	fail  error
	out   Enrichment
}

func (r *recordingEnricher) Enrich(_ context.Context, _ *event.RecentChange, need Need) (*Enrichment, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, need)
	if r.fail != nil {
		return nil, r.fail
	}
	en := r.out
	return &en, nil
}

const enrichRules = `
rules:
  - id: new-user-removal
    when: user_type == "named" && edit_delta < -1000 && user_editcount < 10
    severity: high
  - id: ip-profanity
    when: user_type == "ip" && any(added_lines, {# contains "poop"})
    severity: medium
  - id: metadata-only
    when: edit_delta < -1000
    severity: low
`

// Enrichment happens only when a rule's cheap conditions passed, once per
// event, for the union of what the remaining rules need.
func TestCheapConditionsFirst(t *testing.T) {
	en := &recordingEnricher{out: Enrichment{UserEditCount: 3, AddedLines: []string{"poop"}}}
	e := newTestEngine(t, EngineConfig{Enricher: en, MaxMatchRate: -1}, nil, src("r.yaml", enrichRules))
	ctx := context.Background()

	// Neither expensive rule passes its cheap part: no fetch.
	small := mustEvent(t, `{"meta":{"id":"a"},"type":"edit","user":"Alice","length":{"old":10,"new":20}}`)
	assert.Empty(t, e.Eval(ctx, small, nil, t0))
	assert.Empty(t, en.calls)

	// A named user removing a lot: only user info is fetched.
	named := mustEvent(t, `{"meta":{"id":"b"},"type":"edit","user":"Alice","length":{"old":5000,"new":20}}`)
	ids := alertRules(e.Eval(ctx, named, nil, t0))
	assert.Equal(t, []string{"new-user-removal", "metadata-only"}, ids)
	require.Len(t, en.calls, 1)
	assert.Equal(t, Need{User: true}, en.calls[0])

	// An IP: only the diff.
	ip := mustEvent(t, `{"meta":{"id":"c"},"type":"edit","user":"192.0.2.1","length":{"old":10,"new":20}}`)
	assert.Equal(t, []string{"ip-profanity"}, alertRules(e.Eval(ctx, ip, nil, t0)))
	require.Len(t, en.calls, 2)
	assert.Equal(t, Need{Diff: true}, en.calls[1])

	// Known variables (an offline case) are not fetched.
	assert.Equal(t, []string{"ip-profanity"}, alertRules(e.Eval(ctx, ip, map[string]any{"added_lines": []any{"poop!"}}, t0)))
	assert.Len(t, en.calls, 2)
}

func alertRules(as []event.Alert) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Rule.ID)
	}
	return out
}

// When enrichment fails, rules are evaluated on what is known and the
// alert says so.
func TestEnrichmentFailureMarksPartial(t *testing.T) {
	for name, en := range map[string]Enricher{
		"failing": &recordingEnricher{fail: errors.New("api down")},
		"none":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEngine(t, EngineConfig{Enricher: en, MaxMatchRate: -1}, nil, src("r.yaml", enrichRules))
			named := mustEvent(t, `{"meta":{"id":"b"},"type":"edit","user":"Alice","length":{"old":5000,"new":20}}`)
			alerts := e.Eval(context.Background(), named, nil, t0)
			require.Equal(t, []string{"new-user-removal", "metadata-only"}, alertRules(alerts))
			assert.True(t, alerts[0].Partial)
			assert.Contains(t, alerts[0].Notes[0], "evaluated without user")
			assert.False(t, alerts[1].Partial)
		})
	}
}

// Throttle: fire only on the 3rd match by the same user within 10 minutes,
// stepping through event time.
func TestThrottleThroughTime(t *testing.T) {
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, src("t.yaml", `
rules:
  - id: repeat-removal
    when: edit_delta < 0
    severity: medium
    throttle: {count: 3, window: 10m, group_by: user}
`))
	type step struct {
		min  int
		user string
		id   string
		fire bool
	}
	steps := []step{
		{0, "A", "1", false},
		{1, "A", "2", false},
		{2, "B", "3", false}, // another group
		{3, "A", "4", true},  // 3rd by A within 10m
		{4, "A", "5", false}, // count starts again
		{5, "A", "5", false}, // redelivery of the same event does not count
		{6, "A", "6", false},
		{17, "A", "7", false}, // 5 and 6 left the window (at 14 and 16)
		{18, "A", "8", false},
		{19, "A", "9", true},
		{20, "B", "10", false},
		{21, "B", "11", false}, // B's first match (min 2) left the window at 12
		{22, "B", "12", true},
	}
	for _, s := range steps {
		at := t0.Add(time.Duration(s.min) * time.Minute)
		ev := mustEvent(t, `{"meta":{"id":"`+s.id+`","dt":"`+at.Format(time.RFC3339)+`"},"wiki":"enwiki","type":"edit","user":"`+s.user+`","length":{"old":10,"new":5}}`)
		alerts := e.Eval(context.Background(), ev, nil, at)
		assert.Equal(t, s.fire, len(alerts) == 1, "minute %d event %s", s.min, s.id)
		if s.fire && len(alerts) == 1 {
			assert.Contains(t, alerts[0].Reasons[len(alerts[0].Reasons)-1], "throttle: 3 matches by the same user within 10m")
		}
	}
}

func TestThrottleBounded(t *testing.T) {
	s := newThrottleState(100)
	th := Throttle{Count: 2, Window: time.Minute, GroupBy: GroupByUser}
	for i := range 1000 {
		s.hit(th, "u"+string(rune('a'+i%26))+strings.Repeat("x", i%50), "id", t0.Add(time.Duration(i)*time.Second))
	}
	assert.LessOrEqual(t, s.size(), 100)
}

// A rule matching more than the allowed share of events is disabled
// automatically; the others go on.
func TestAutoDisable(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newTestEngine(t, EngineConfig{MaxMatchRate: 0.05, MinEvaluations: 100}, reg, src("a.yaml", `
rules:
  - id: too-broad
    when: type == "edit"
    severity: low
  - id: rare
    when: type == "edit" && rc_id % 50 == 0
    severity: low
  - id: allowed-broad
    when: type == "edit"
    severity: info
    max_match_rate: 1
`))
	counts := map[string]int{}
	for i := range 400 {
		ev := mustEvent(t, `{"meta":{"id":"e`+strconv.Itoa(i)+`"},"id":`+strconv.Itoa(i)+`,"type":"edit"}`)
		for _, a := range e.Eval(context.Background(), ev, nil, t0) {
			counts[a.Rule.ID]++
		}
	}
	// Judged at the first match after 100 evaluations.
	assert.Equal(t, 100, counts["too-broad"])
	assert.Equal(t, 8, counts["rare"])
	assert.Equal(t, 400, counts["allowed-broad"])
	st := e.Rules()
	assert.True(t, st[0].AutoDisabled)
	assert.False(t, st[1].AutoDisabled)
	assert.Equal(t, 1.0, ruleMetric(t, reg, "rcwatch_rule_auto_disabled", "too-broad"))
	assert.Equal(t, 1.0, testutil.ToFloat64(e.m.autoDisabled))

	// Reloading the same rule keeps it disabled; changing it re-enables it.
	require.NoError(t, e.Load([]Source{src("a.yaml", `
rules:
  - id: too-broad
    when: type == "edit"
    severity: low
`)}))
	assert.True(t, e.Rules()[0].AutoDisabled)
	assert.Equal(t, -1.0, ruleMetric(t, reg, "rcwatch_rule_evaluations_total", "rare"), "a removed rule's metrics go")
	assert.Equal(t, 100.0, ruleMetric(t, reg, "rcwatch_rule_evaluations_total", "too-broad"), "kept with the unchanged rule (not evaluated once disabled)")
	require.NoError(t, e.Load([]Source{src("a.yaml", `
rules:
  - id: too-broad
    when: type == "edit" && bot
    severity: low
`)}))
	assert.False(t, e.Rules()[0].AutoDisabled)
	assert.Equal(t, 0.0, ruleMetric(t, reg, "rcwatch_rule_auto_disabled", "too-broad"))
}

// A rule that fails at run time is counted; the others still fire.
func TestRuntimeErrorIsolated(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, reg, src("e.yaml", `
rules:
  - id: index-out-of-range
    when: summary == "" || split(summary, " ")[5] == "x"
    severity: low
  - id: bad-dynamic-regexp
    when: irlike(summary, summary)
    severity: low
  - id: fine
    when: type == "edit"
    severity: low
`))
	ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit","comment":"a b ("}`)
	assert.Equal(t, []string{"fine"}, alertRules(e.Eval(context.Background(), ev, nil, t0)))
	st := e.Rules()
	assert.Equal(t, int64(1), st[0].Errors)
	assert.Equal(t, int64(1), st[1].Errors)
	assert.Equal(t, 1.0, ruleMetric(t, reg, "rcwatch_rule_errors_total", "index-out-of-range"))
	assert.Equal(t, 1.0, ruleMetric(t, reg, "rcwatch_rule_evaluations_total", "fine"))
	assert.Equal(t, 1.0, ruleMetric(t, reg, "rcwatch_rule_alerts_total", "fine"))
}

// The memory budget stops a runaway expression; it errors, it does not hang.
func TestEvaluationBounded(t *testing.T) {
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, src("b.yaml", `
rules:
  - id: huge-range
    when: "len(map(1..10000, [#, #, #, #, #, #, #, #, #, #])) > 0"
    severity: low
`))
	ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit","comment":"abc"}`)
	done := make(chan []event.Alert)
	go func() { done <- e.Eval(context.Background(), ev, nil, t0) }()
	select {
	case a := <-done:
		assert.Empty(t, a)
		assert.Equal(t, int64(1), e.Rules()[0].Errors)
	case <-time.After(10 * time.Second):
		t.Fatal("evaluation did not stop")
	}
}

func TestListsAndFunctions(t *testing.T) {
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil,
		src("dir/bad_words.list", "# words\npoop\nfart ;expires=2024-01-01\nbutt # a comment\n"),
		src("dir/trusted.txt", "Alice\n"),
		src("f.yaml", `
lists:
  watched: [Main Page, {value: Old Page, expires: "2024-01-01"}]
rules:
  - id: watched
    when: in_list("watched", title)
    severity: info
  - id: bad-word-summary
    when: list_contains("bad_words", summary) && !in_list("trusted", user)
    severity: low
  - id: funcs
    when: >-
      contains_any(summary, "foo", "bar") && rcount("o", summary) == 3
      && irlike(summary, "FOO") && !rlike(summary, "FOO") && ccnorm(summary) != ""
      && specialratio(summary) < 1 && length(summary) == 6 && lcase("A") == "a"
    severity: low
  - id: ip-range
    when: ip_in_range(user, "192.0.2.0/24")
    severity: low
`))
	tests := []struct {
		ev   string
		want []string
	}{
		{`{"meta":{"id":"1"},"title":"Main Page","user":"Bob","comment":"hi"}`, []string{"watched"}},
		{`{"meta":{"id":"2"},"title":"Old Page","user":"Bob","comment":"hi"}`, []string{}}, // expired
		{`{"meta":{"id":"3"},"title":"X","user":"Bob","comment":"POOP here"}`, []string{"bad-word-summary"}},
		{`{"meta":{"id":"4"},"title":"X","user":"Alice","comment":"poop"}`, []string{}},     // trusted
		{`{"meta":{"id":"5"},"title":"X","user":"Bob","comment":"nincompoop"}`, []string{}}, // whole words only
		{`{"meta":{"id":"6"},"title":"X","user":"Bob","comment":"fart"}`, []string{}},       // expired entry
		{`{"meta":{"id":"7"},"title":"X","user":"192.0.2.9","comment":"foo bo"}`, []string{"funcs", "ip-range"}},
	}
	for _, tc := range tests {
		ev := mustEvent(t, tc.ev)
		assert.Equal(t, tc.want, alertRules(e.Eval(context.Background(), ev, nil, t0)), tc.ev)
	}
}

func TestCaseVariables(t *testing.T) {
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, src("c.yaml", `
rules:
  - id: warned-newbie
    when: user_warns > 1 && user_age < 86400 && "sysop" not in user_groups && len(added_links) == 1
    severity: low
`))
	ev := mustEvent(t, `{"meta":{"id":"1"},"type":"edit","user":"Bob"}`)
	known := map[string]any{"user_warns": 2.0, "user_age": 3600.0, "user_groups": []any{"user"},
		"added_lines": []any{"see http://spam.example/x"}, "removed_lines": []any{}, "user_editcount": 1.0}
	as := e.Eval(context.Background(), ev, known, t0)
	require.Equal(t, []string{"warned-newbie"}, alertRules(as))
	assert.False(t, as[0].Partial, "the case knows the user and the diff")
	assert.Contains(t, as[0].Reasons, `len(added_links) == 1 (added_links=["http://spam.example/x"])`)
	_, err := (&Vars{}).setKnown(map[string]any{"user_warns": "two"})
	assert.ErrorContains(t, err, "user_warns: want a number")
}

// ruleMetric reads a per-rule metric from the registry (-1 when absent).
func ruleMetric(tb testing.TB, reg *prometheus.Registry, name, rule string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" && l.GetValue() == rule {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
