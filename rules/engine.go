package rules

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/rules/detect"
)

// EngineConfig tunes an Engine. The zero value is usable.
type EngineConfig struct {
	// Enricher fetches wikitext, diff and user info when a rule still needs
	// them after its cheap conditions passed. Nil: rules are evaluated on
	// what is known and alerts that needed more are marked partial.
	Enricher Enricher
	// MaxMatchRate disables a rule automatically when it matches more than
	// this share of the events it evaluated (after MinEvaluations), as
	// AbuseFilter does. Default 0.05; negative: never.
	MaxMatchRate float64
	// MinEvaluations before the match rate is judged (default 1000).
	MinEvaluations int64
	// MaxNodes bounds each expression's size at compile (default 2000).
	MaxNodes uint
	// MemoryBudget bounds what one expression may allocate at run (expr's
	// VM budget, in its units; default 100000).
	MemoryBudget uint
	// CitationMaxAge is the access-date age past which a citation is stale
	// (default 5 years).
	CitationMaxAge time.Duration
	// MaxThrottleGroups bounds the groups a throttled rule remembers (default 100000).
	MaxThrottleGroups int
	// EnrichTimeout bounds one Enrich call (default 30s); past it the event
	// is evaluated on what is known.
	EnrichTimeout time.Duration
	// MaxStringBytes bounds the bytes of strings one expression may build
	// on one event with +, repeat, join and replace (default 1 MiB).
	MaxStringBytes int64
	// MaxExprTime bounds the time one expression's iterations may take on
	// one event (default 100ms).
	MaxExprTime time.Duration
	// MaxCostErrors disables a rule that went over its budget (bytes,
	// memory or time) this many times (default 5).
	MaxCostErrors int64
}

func (c *EngineConfig) defaults() {
	if c.MaxMatchRate == 0 {
		c.MaxMatchRate = 0.05
	}
	if c.MinEvaluations <= 0 {
		c.MinEvaluations = 1000
	}
	if c.MaxNodes == 0 {
		c.MaxNodes = 2000
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = 100000
	}
	if c.CitationMaxAge <= 0 {
		c.CitationMaxAge = 5 * 365 * 24 * time.Hour
	}
	if c.MaxThrottleGroups <= 0 {
		c.MaxThrottleGroups = 100000
	}
	if c.EnrichTimeout <= 0 {
		c.EnrichTimeout = 30 * time.Second
	}
	if c.MaxStringBytes <= 0 {
		c.MaxStringBytes = 1 << 20
	}
	if c.MaxExprTime <= 0 {
		c.MaxExprTime = 100 * time.Millisecond
	}
	if c.MaxCostErrors <= 0 {
		c.MaxCostErrors = 5
	}
}

// Engine evaluates a set of compiled rules on recent changes. It is safe
// for concurrent use; Load swaps the rule set atomically.
type Engine struct {
	cfg  EngineConfig
	log  zerolog.Logger
	m    *engineMetrics
	rc   *regexCache
	set  atomic.Pointer[ruleSet]
	pool sync.Pool
	tick atomic.Uint64 // picks the evaluations whose time is measured
	kvl  kvLists       // list entries from the KV bucket (WatchLists)
	off  offRules      // automatic disables remembered in KV (WatchDisabled)
	mu   sync.Mutex    // serialises Load
}

type ruleSet struct {
	rules []*activeRule
	lists *Lists
}

// activeRule is a compiled rule with its state.
type activeRule struct {
	*Rule
	st      *ruleState
	maxRate float64
}

// ruleState survives a reload when the rule's version is unchanged.
type ruleState struct {
	version    string
	evals      atomic.Int64
	matches    atomic.Int64
	errors     atomic.Int64
	costErrors atomic.Int64 // errors that were over the evaluation budget
	alerts     atomic.Int64
	nanos      atomic.Int64 // evaluation time (sampled, scaled)
	disabled   atomic.Bool
	reason     atomic.Pointer[string] // why disabled: disabledMatchRate or disabledCost
	lastErrLog atomic.Int64
	throttle   *throttleState
}

// NewEngine builds an engine without rules (Load them). Metrics register on
// reg (nil: not registered).
func NewEngine(cfg EngineConfig, reg prometheus.Registerer, log zerolog.Logger) (*Engine, error) {
	cfg.defaults()
	e := &Engine{cfg: cfg, log: log, rc: newRegexCache(4096)}
	e.off.queue = make(chan disabledRecord, 256)
	m, err := newEngineMetrics(reg, e)
	if err != nil {
		return nil, err
	}
	e.m = m
	e.pool.New = func() any { return newEvalState(&e.cfg, &e.kvl) }
	e.set.Store(&ruleSet{lists: &Lists{}})
	return e, nil
}

// Load compiles the sources and, only if every one is valid, replaces the
// rules. Rules whose version did not change keep their state (counters,
// throttle, auto-disable); metrics of removed rules are deleted. On error
// the previous rules stay and the error lists every problem.
func (e *Engine) Load(srcs []Source) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := compileSources(srcs, CompileOptions{MaxNodes: e.cfg.MaxNodes}, e.rc)
	if err != nil {
		return err
	}
	old := e.set.Load()
	prev := map[string]*ruleState{}
	for _, ar := range old.rules {
		prev[ar.ID] = ar.st
	}
	next := &ruleSet{lists: c.lists}
	for _, r := range c.rules {
		st := prev[r.ID]
		if st == nil || st.version != r.Version {
			st = &ruleState{version: r.Version, throttle: newThrottleState(e.cfg.MaxThrottleGroups)}
			if rec, ok := e.off.get(r.ID, r.Version); ok {
				st.disabled.Store(true)
				st.reason.Store(&rec.Reason)
			}
		}
		delete(prev, r.ID)
		rate := e.cfg.MaxMatchRate
		if r.MaxMatchRate != nil {
			rate = *r.MaxMatchRate
		}
		next.rules = append(next.rules, &activeRule{Rule: r, st: st, maxRate: rate})
	}
	e.set.Store(next)
	e.m.loaded.Set(float64(len(next.rules)))
	return nil
}

// RuleStatus is a rule's identity and counters since it was loaded in its
// current version.
type RuleStatus struct {
	ID           string `json:"id"`
	Version      string `json:"version"`
	File         string `json:"file"`
	Enabled      bool   `json:"enabled"`
	AutoDisabled bool   `json:"auto_disabled,omitempty"`
	// DisabledReason says why a rule was disabled automatically.
	DisabledReason string   `json:"disabled_reason,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	Need           []string `json:"need,omitempty"`
	Evaluations    int64    `json:"evaluations"`
	Matches        int64    `json:"matches"`
	Alerts         int64    `json:"alerts"`
	Errors         int64    `json:"errors"`
	// MaxMatchRate is the rule's own auto-disable threshold, when it sets one.
	MaxMatchRate *float64 `json:"max_match_rate,omitempty"`
}

// Rules reports every loaded rule, in load order.
func (e *Engine) Rules() []RuleStatus {
	rs := e.set.Load()
	out := make([]RuleStatus, 0, len(rs.rules))
	for _, ar := range rs.rules {
		out = append(out, RuleStatus{
			ID: ar.ID, Version: ar.Version, File: ar.File, Enabled: ar.IsEnabled(),
			AutoDisabled: ar.st.disabled.Load(), DisabledReason: ar.st.disabledReason(), Tags: ar.Tags, Need: ar.Need.names(),
			Evaluations: ar.st.evals.Load(), Matches: ar.st.matches.Load(),
			Alerts: ar.st.alerts.Load(), Errors: ar.st.errors.Load(), MaxMatchRate: ar.Rule.MaxMatchRate,
		})
	}
	return out
}

// Need is the union of what the enabled rules may need.
func (e *Engine) Need() Need {
	var n Need
	for _, ar := range e.set.Load().rules {
		if ar.IsEnabled() {
			n = n.union(ar.Need)
		}
	}
	return n
}

// evalState is the per-evaluation scratch space, pooled.
type evalState struct {
	vars     Vars
	meter    costMeter
	vm       vm.VM
	lists    *Lists
	now      time.Time
	evTime   time.Time
	done     derived
	feat     detect.Features
	status   []int8 // per rule: 0 undecided, 1 all evaluated operands true, -1 no match or error
	timed    bool   // measure each rule's time in this evaluation
	inList   func(string, string) bool
	contains func(string, string) bool
	// The performer as the enricher fetched it (userKnown false: not
	// fetched); alerts carry it in their event reference.
	userKnown     bool
	userEditCount int64
	userReg       time.Time
}

func newEvalState(cfg *EngineConfig, kvl *kvLists) *evalState {
	st := &evalState{vm: vm.VM{MemoryBudget: cfg.MemoryBudget},
		meter: costMeter{maxBytes: cfg.MaxStringBytes, maxTime: cfg.MaxExprTime}}
	st.inList = func(list, s string) bool {
		l := st.lists.Get(list)
		return l != nil && l.Contains(s, st.now) || kvl.contains(list, s, st.now)
	}
	st.contains = func(list, text string) bool {
		l := st.lists.Get(list)
		return l != nil && l.Match(text, st.now) || kvl.match(list, text, st.now)
	}
	return st
}

func (st *evalState) reset(lists *Lists, now time.Time, n int) {
	st.vars = Vars{InList: st.inList, ListContains: st.contains, meter: &st.meter}
	st.lists, st.now, st.done = lists, now, 0
	st.feat = detect.Features{}
	st.userKnown, st.userEditCount, st.userReg = false, 0, time.Time{}
	if cap(st.status) < n {
		st.status = make([]int8, n)
	}
	st.status = st.status[:n]
	clear(st.status)
}

// derive computes the detector outputs in want that are not computed yet.
func (st *evalState) derive(want derived, maxAge time.Duration) {
	want &^= st.done
	if want == 0 {
		return
	}
	v := &st.vars
	if want&derivedLinks != 0 {
		if v.AddedLinks == nil && v.RemovedLinks == nil {
			v.AddedLinks = detect.AddedLinks(v.AddedLines, v.RemovedLines)
			v.RemovedLinks = detect.AddedLinks(v.RemovedLines, v.AddedLines)
		}
		st.done |= derivedLinks
	}
	if want&(derivedText|derivedScore) != 0 && st.done&derivedText == 0 {
		st.feat = v.textFeatures() // also sets the text signals' variables
		st.done |= derivedText
	}
	if want&derivedScore != 0 {
		v.VandalismScore = detect.VandalismScore(st.feat)
		st.done |= derivedScore
	}
	if want&derivedCitations != 0 {
		r := detect.Citations(v.NewWikitext, st.evTime, maxAge)
		v.CitationStale, v.CitationDead, v.CitationBareURLs = r.StaleAccessDates, r.DeadNoArchive, r.BareURLs
		st.done |= derivedCitations
	}
	if want&derivedAddedCite != 0 {
		v.CitationBareURLsAdded = detect.Citations(strings.Join(v.AddedLines, "\n"), st.evTime, maxAge).BareURLs
		st.done |= derivedAddedCite
	}
}

// run evaluates one operand to a bool.
func (e *Engine) run(st *evalState, op *operand) (bool, error) {
	st.derive(op.derived, e.cfg.CitationMaxAge)
	st.meter.reset()
	out, err := st.vm.Run(op.prog, &st.vars)
	if err != nil {
		return false, costly(err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("condition gave %T, not a boolean", out)
	}
	return b, nil
}

// evalRule runs the operands of ar that are evaluable with have and not
// with before (phase 1: before is nothing evaluable, i.e. all with need ⊆
// have). It returns -1 on a false operand or an error, 1 when every
// operand is decided true, and 0 when some still need enrichment.
func (e *Engine) evalRule(st *evalState, ar *activeRule, have, before Need, phase2 bool, now time.Time) int8 {
	if st.timed {
		start := time.Now()
		defer func() { ar.st.nanos.Add(int64(time.Since(start)) * timeSample) }()
	}
	undecided := false
	for _, op := range ar.operands {
		evaluable := !op.need.minus(have).Any()
		already := phase2 && !op.need.minus(before).Any()
		if already {
			continue
		}
		if !evaluable && !phase2 {
			undecided = true
			continue
		}
		ok, err := e.run(st, op)
		if err != nil {
			e.ruleError(ar, err, now)
			return -1
		}
		if !ok {
			return -1
		}
	}
	if undecided {
		return 0
	}
	return 1
}

// costly marks expr's own memory budget error as ErrCost.
func costly(err error) error {
	if !errors.Is(err, ErrCost) && strings.Contains(err.Error(), "memory budget exceeded") {
		return fmt.Errorf("%w: %w", ErrCost, err)
	}
	return err
}

// Why a rule was disabled automatically.
var (
	disabledMatchRate = "match_rate"
	disabledCost      = "cost"
)

func (st *ruleState) disabledReason() string {
	if r := st.reason.Load(); r != nil && st.disabled.Load() {
		return *r
	}
	return ""
}

// disable turns a rule off automatically, once; it reports whether this
// call did.
func (e *Engine) disable(ar *activeRule, reason *string, now time.Time) bool {
	if !ar.st.disabled.CompareAndSwap(false, true) {
		return false
	}
	ar.st.reason.Store(reason)
	e.m.autoDisabled.Inc()
	e.m.autoDisabledBy.WithLabelValues(*reason).Inc()
	e.remember(disabledRecord{Rule: ar.ID, Version: ar.Version, Reason: *reason, At: now,
		Matches: ar.st.matches.Load(), Evaluations: ar.st.evals.Load(), Errors: ar.st.errors.Load()})
	return true
}

func (e *Engine) ruleError(ar *activeRule, err error, now time.Time) {
	ar.st.errors.Add(1)
	if errors.Is(err, ErrCost) {
		if n := ar.st.costErrors.Add(1); n >= e.cfg.MaxCostErrors && e.disable(ar, &disabledCost, now) {
			e.log.Error().Err(err).Str("rule", ar.ID).Str("version", ar.Version).Int64("over_budget", n).
				Msg("rule went over its evaluation budget too often and was disabled automatically; fix it and reload")
			return
		}
	}
	last := ar.st.lastErrLog.Load()
	if now.UnixNano()-last >= int64(time.Minute) && ar.st.lastErrLog.CompareAndSwap(last, now.UnixNano()) {
		e.log.Warn().Err(err).Str("rule", ar.ID).Str("version", ar.Version).
			Int64("errors", ar.st.errors.Load()).Msg("rule failed at run time; other rules go on (logged at most once a minute)")
	}
}

// Eval evaluates every enabled rule on ev and returns the alerts to
// publish. known holds variables already known by their rule names (an
// offline case's enrichment); nil live. now is the detection time (the
// alert's detected_at and list expiry); throttle windows and citation ages
// use the event's own time, so a backtest behaves as live did.
//
// Cheap conditions run first: the top-level && operands that need no
// enrichment. Only when some rule passes them and still needs more is the
// Enricher called, once, for the union of what those rules need.
func (e *Engine) Eval(ctx context.Context, ev *event.RecentChange, known map[string]any, now time.Time) []event.Alert {
	rs := e.set.Load()
	if len(rs.rules) == 0 {
		return nil
	}
	st := e.pool.Get().(*evalState)
	defer e.pool.Put(st)
	st.reset(rs.lists, now, len(rs.rules))
	st.timed = e.tick.Add(1)%timeSample == 0
	st.vars.fillEvent(ev)
	st.evTime = ev.Time()
	if st.evTime.IsZero() {
		st.evTime = now
	}
	var have Need
	if len(known) > 0 {
		h, err := st.vars.setKnown(known)
		if err != nil {
			e.log.Warn().Err(err).Str("meta_id", ev.Meta.ID).Msg("ignoring a bad case variable")
		}
		have = h
	}
	// Phase 1: what can be decided without fetching anything.
	var want Need
	pending := false
	for i, ar := range rs.rules {
		if !ar.IsEnabled() || ar.st.disabled.Load() {
			st.status[i] = -1
			continue
		}
		ar.st.evals.Add(1)
		st.status[i] = e.evalRule(st, ar, have, have, false, now)
		if st.status[i] == 0 {
			pending = true
			want = want.union(ar.Need.minus(have))
		} else if st.status[i] == 1 && ar.score != nil {
			want = want.union(ar.score.need.minus(have))
		}
	}
	// Enrichment, once, for what the remaining rules need.
	var notes []string
	before := have
	if want.Any() {
		e.m.events.WithLabelValues("true").Inc()
		have, notes = e.enrich(ctx, st, ev, have, want)
	} else {
		e.m.events.WithLabelValues("false").Inc()
	}
	if pending {
		for i, ar := range rs.rules {
			if st.status[i] == 0 {
				st.status[i] = e.evalRule(st, ar, have, before, true, now)
			}
		}
	}
	var alerts []event.Alert
	for i, ar := range rs.rules {
		if st.status[i] != 1 {
			continue
		}
		if a, ok := e.matched(st, ar, ev, have, notes, now); ok {
			alerts = append(alerts, a)
		}
	}
	return alerts
}

// enrich calls the Enricher for want and fills what it got.
func (e *Engine) enrich(ctx context.Context, st *evalState, ev *event.RecentChange, have, want Need) (Need, []string) {
	if e.cfg.Enricher == nil {
		return have, []string{"not fetched (no enricher): " + strings.Join(want.names(), ", ")}
	}
	ectx, cancel := context.WithTimeout(ctx, e.cfg.EnrichTimeout)
	defer cancel()
	en, err := e.cfg.Enricher.Enrich(ectx, ev, want)
	if err != nil || en == nil {
		if err == nil {
			err = errors.New("no enrichment returned")
		}
		e.log.Debug().Err(err).Str("meta_id", ev.Meta.ID).Msg("enrichment failed; evaluating on what is known")
		return have, []string{"enrichment failed: " + err.Error()}
	}
	got := want
	var notes []string
	for _, m := range en.Missing {
		switch m {
		case "wikitext":
			got.Wikitext = false
		case "diff":
			got.Diff = false
		case "user":
			got.User = false
		}
		notes = append(notes, "missing: "+m)
	}
	st.vars.fillEnrichment(en, got, st.evTime)
	if got.User {
		st.userKnown, st.userEditCount, st.userReg = true, en.UserEditCount, en.UserRegistration
	}
	return have.union(got), notes
}

// matched handles a rule whose conditions all held: counts, auto-disable,
// score, throttle, and the alert.
func (e *Engine) matched(st *evalState, ar *activeRule, ev *event.RecentChange, have Need, notes []string, now time.Time) (event.Alert, bool) {
	matches := ar.st.matches.Add(1)
	if evals := ar.st.evals.Load(); ar.maxRate > 0 && evals >= e.cfg.MinEvaluations &&
		float64(matches)/float64(evals) > ar.maxRate && e.disable(ar, &disabledMatchRate, now) {
		e.log.Error().Str("rule", ar.ID).Str("version", ar.Version).Int64("matches", matches).
			Int64("evaluations", evals).Float64("max_match_rate", ar.maxRate).
			Msg("rule matched too many events and was disabled automatically; fix it and reload")
	}
	score := ar.static
	if ar.score != nil {
		st.derive(ar.score.derived, e.cfg.CitationMaxAge)
		st.meter.reset()
		out, err := st.vm.Run(ar.score.prog, &st.vars)
		if err != nil {
			e.ruleError(ar, costly(err), now)
			return event.Alert{}, false
		}
		score, _ = out.(float64)
	}
	var reasons []string
	for _, op := range ar.operands {
		reasons = append(reasons, st.reason(op))
	}
	if ar.Throttle != nil {
		t := *ar.Throttle
		fire, n := ar.st.throttle.hit(t, throttleKey(t.GroupBy, ev), ev.Meta.ID, st.evTime)
		if !fire {
			return event.Alert{}, false
		}
		reasons = append(reasons, fmt.Sprintf("throttle: %d matches by the same %s within %v", n, t.GroupBy, t.Window))
	}
	if slices.Contains(ar.Vars, "vandalism_score") {
		reasons = append(reasons, detect.VandalismReasons(st.feat)...)
	}
	a := event.Alert{
		ID: event.AlertID(ar.ID, ev.Meta.ID), Rule: event.RuleRef{ID: ar.ID, Version: ar.Version},
		Severity: ar.Severity, Score: score, Reasons: reasons, Event: st.ref(ev),
		DetectedAt: now, Actions: ar.Actions, Tags: ar.Tags,
	}
	if missing := ar.Need.minus(have); missing.Any() {
		a.Partial = true
		a.Notes = append([]string{"evaluated without " + strings.Join(missing.names(), ", ")}, notes...)
	}
	ar.st.alerts.Add(1)
	return a, true
}

// ref is the alert's event reference, with the performer's edit count and
// registration when the enricher fetched them for an account.
func (st *evalState) ref(ev *event.RecentChange) event.Ref {
	r := event.RefOf(ev)
	if st.userKnown && (r.UserType == "named" || r.UserType == "temp") {
		n := st.userEditCount
		r.UserEditCount = &n
		if !st.userReg.IsZero() {
			r.UserRegistration = st.userReg.Unix()
		}
	}
	return r
}

// reason describes a condition that held, with the values of the
// variables it references.
func (st *evalState) reason(op *operand) string {
	if len(op.vars) == 0 {
		return op.src
	}
	var b strings.Builder
	b.WriteString(op.src)
	b.WriteString(" (")
	for i, name := range op.vars {
		if i > 0 {
			b.WriteString(", ")
		}
		v, _ := st.vars.valueOf(name)
		b.WriteString(name)
		b.WriteString("=")
		b.WriteString(showValue(v))
	}
	b.WriteString(")")
	return b.String()
}

func showValue(v any) string {
	const max = 60
	switch x := v.(type) {
	case string:
		if len([]rune(x)) > max {
			return fmt.Sprintf("%q… (%d chars)", string([]rune(x)[:max]), len([]rune(x)))
		}
		return fmt.Sprintf("%q", x)
	case []string:
		if len(x) > 3 {
			return fmt.Sprintf("%d lines", len(x))
		}
		parts := make([]string, len(x))
		for i, s := range x {
			parts[i] = showValue(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case float64:
		return fmt.Sprintf("%.3g", x)
	}
	return fmt.Sprint(v)
}

// timeSample: one evaluation in timeSample is timed, and its time counted
// timeSample times (reading the clock per rule per event costs more than
// many rules do).
const timeSample = 16

// engineMetrics: the per-rule figures are read from the rules' own
// counters when scraped (ruleCollector), so evaluation touches no metric.
type engineMetrics struct {
	autoDisabled         prometheus.Counter
	autoDisabledBy       *prometheus.CounterVec
	disableStoreErrors   prometheus.Counter
	events               *prometheus.CounterVec
	loaded               prometheus.Gauge
	reloadOK, reloadTime prometheus.Gauge
	reloads              *prometheus.CounterVec
}

func newEngineMetrics(reg prometheus.Registerer, e *Engine) (*engineMetrics, error) {
	m := &engineMetrics{
		autoDisabled: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_rules_auto_disabled_total",
			Help: "Rules disabled automatically (for matching too many events, or going over their evaluation budget)."}),
		autoDisabledBy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_rules_auto_disabled_by_reason_total",
			Help: "Rules disabled automatically, by reason: match_rate or cost."}, []string{"reason"}),
		disableStoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_rules_auto_disable_store_errors_total",
			Help: "Automatic disables that could not be stored in KV (they will not survive a restart)."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_rules_events_total",
			Help: "Events evaluated, by whether enrichment was wanted after the cheap conditions."}, []string{"enriched"}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_rules_loaded", Help: "Rules loaded."}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_rules_last_reload_successful",
			Help: "1 if the last load of the rule files succeeded, 0 if the old rules are still running."}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_rules_last_reload_success_timestamp_seconds",
			Help: "When the rule files were last loaded successfully."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_rules_reloads_total",
			Help: "Loads of the rule files, by result."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.autoDisabled, m.autoDisabledBy, m.disableStoreErrors, m.events, m.loaded, m.reloadOK, m.reloadTime,
			m.reloads, ruleCollector{e}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering rule metrics: %w", err)
			}
		}
	}
	return m, nil
}

var (
	descEvals = prometheus.NewDesc("rcwatch_rule_evaluations_total", "Events a rule was evaluated on (since its current version was loaded).", []string{"rule", "version"}, nil)
	descMatch = prometheus.NewDesc("rcwatch_rule_matches_total", "Events whose when held (before throttle).", []string{"rule", "version"}, nil)
	descAlert = prometheus.NewDesc("rcwatch_rule_alerts_total", "Alerts a rule raised (after throttle).", []string{"rule", "version"}, nil)
	descErrs  = prometheus.NewDesc("rcwatch_rule_errors_total", "Run-time errors of a rule's expressions.", []string{"rule", "version"}, nil)
	descCost  = prometheus.NewDesc("rcwatch_rule_over_budget_total", "Evaluations of a rule stopped for going over its budget (string bytes, memory or time); also counted in rcwatch_rule_errors_total.", []string{"rule", "version"}, nil)
	descSecs  = prometheus.NewDesc("rcwatch_rule_evaluation_seconds_total", "Time spent evaluating a rule (sampled 1 in 16 evaluations, scaled).", []string{"rule", "version"}, nil)
	descOff   = prometheus.NewDesc("rcwatch_rule_auto_disabled", "1 when the rule was disabled automatically (for matching too many events, or going over its evaluation budget).", []string{"rule", "version"}, nil)
)

// ruleCollector exports every loaded rule's counters; removed rules
// disappear with the rule.
type ruleCollector struct{ e *Engine }

func (c ruleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvals, descMatch, descAlert, descErrs, descCost, descSecs, descOff} {
		ch <- d
	}
}

func (c ruleCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ar := range c.e.set.Load().rules {
		st := ar.st
		off := 0.0
		if st.disabled.Load() {
			off = 1
		}
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{descEvals, prometheus.CounterValue, float64(st.evals.Load())},
			{descMatch, prometheus.CounterValue, float64(st.matches.Load())},
			{descAlert, prometheus.CounterValue, float64(st.alerts.Load())},
			{descErrs, prometheus.CounterValue, float64(st.errors.Load())},
			{descCost, prometheus.CounterValue, float64(st.costErrors.Load())},
			{descSecs, prometheus.CounterValue, float64(st.nanos.Load()) / 1e9},
			{descOff, prometheus.GaugeValue, off},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v, ar.ID, ar.Version)
		}
	}
}
