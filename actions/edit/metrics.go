package edit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	edits    *prometheus.CounterVec
	dry      *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	rate     *prometheus.GaugeVec
	wait     *prometheus.GaugeVec
	retries  *prometheus.CounterVec
	conflict *prometheus.CounterVec
	login    *prometheus.GaugeVec
	steps    *prometheus.HistogramVec
}

// Steps of an operation (the step label of rcwatch_edit_step_seconds), in
// order: the checks that need no claim (configuration, age, done key), the
// claim and the memory of earlier operations, deciding on the page as it is
// (its read, and the read of the kill switch and talk page begun in check),
// preparing the write (revert memory, token, budget slot and its wait, the
// stop conditions again), the write itself (the wiki's answer), and
// recording it (KV and the audit record).
const (
	stepCheck   = "check"
	stepClaim   = "claim"
	stepDecide  = "decide"
	stepPrepare = "prepare"
	stepWrite   = "write"
	stepRecord  = "record"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
		login: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rcwatch_edit_login_stopped",
			Help: "1 while editing on the wiki is stopped because its logins failed repeatedly (fix the credentials and restart)."}, []string{"wiki"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rcwatch_edit_step_seconds",
			Help:    "Time an operation spent in each step (check, claim, decide, prepare, write, record), for the steps it reached.",
			Buckets: prometheus.ExponentialBuckets(0.001, 1.6, 22)}, []string{"op", "step"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.edits, m.dry, m.skipped, m.errors, m.rate, m.wait, m.retries, m.conflict, m.login, m.steps} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering edit metrics: %w", err)
			}
		}
	}
	return m, nil
}
