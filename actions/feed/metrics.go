package feed

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	clients         prometheus.Gauge
	dropped         *prometheus.CounterVec
	alerts          prometheus.Counter
	decodeErrors    *prometheus.CounterVec
	ring            prometheus.Gauge
	open            prometheus.Gauge
	pages           prometheus.Gauge
	retired         prometheus.Counter
	evicted         *prometheus.CounterVec
	claims          prometheus.Gauge
	claimRequests   *prometheus.CounterVec
	limiters        prometheus.Gauge
	backfills       *prometheus.CounterVec
	backfillWaiting prometheus.Gauge
	sent            *prometheus.CounterVec
	latency         prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_clients",
			Help: "Open SSE connections of the patroller feed."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_feed_clients_dropped_total",
			Help: "SSE connections the feed closed: slow (queue full; the browser resumes by Last-Event-ID), full (too many clients)."},
			[]string{"reason"}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_feed_alerts_total",
			Help: "Alerts the feed read from ALERTS."}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_feed_decode_errors_total",
			Help: "Messages the feed could not decode, by stream (skipped)."}, []string{"stream"}),
		ring: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_ring_alerts",
			Help: "Recent alerts held in memory for backfills (bounded by the ring size)."}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_open_alerts",
			Help: "Alerts tracked for retirement (bounded by max open)."}),
		pages: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_pages",
			Help: "Pages whose last edit the feed remembers (bounded by max open)."}),
		retired: prometheus.NewCounter(prometheus.CounterOpts{Name: "rcwatch_feed_retired_total",
			Help: "Alerts retired because their page was edited again."}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_feed_evicted_total",
			Help: "Entries evicted from a full bounded map (open, pages, retired, claims, limiters)."}, []string{"map"}),
		claims: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_claims",
			Help: "Claims held in memory (bounded by max claims)."}),
		claimRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_feed_claim_requests_total",
			Help: "Claim requests by result (ok, invalid, unknown, forged, conflict, limited, error)."}, []string{"result"}),
		limiters: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_rate_limiters",
			Help: "Per-client claim rate limiters held (bounded by max rate clients)."}),
		backfills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_feed_backfills_total",
			Help: "Backfills served, by source (ring: memory, stream: read from ALERTS)."}, []string{"source"}),
		backfillWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rcwatch_feed_backfills_waiting",
			Help: "Backfills waiting for one of the stream backfill slots (bounded by stream backfills)."}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_feed_events_sent_total",
			Help: "SSE events written, by event type."}, []string{"event"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rcwatch_feed_alert_delay_seconds",
			Help:    "From the alert's stream time to its dispatch to the SSE connections.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.clients, m.dropped, m.alerts, m.decodeErrors, m.ring, m.open, m.pages,
		m.retired, m.evicted, m.claims, m.claimRequests, m.limiters, m.backfills, m.backfillWaiting, m.sent, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering feed metrics: %w", err)
		}
	}
	return m, nil
}
