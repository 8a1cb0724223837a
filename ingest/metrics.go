package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	received       prometheus.Counter
	published      prometheus.Counter
	duplicates     prometheus.Counter
	canaries       prometheus.Counter
	malformed      *prometheus.CounterVec
	deadLetters    prometheus.Counter
	reconnects     *prometheus.CounterVec
	connected      prometheus.Gauge
	lag            prometheus.Gauge
	publishLatency prometheus.Histogram
	publishErrors  prometheus.Counter
	inflight       prometheus.Gauge
	positionStores prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_events_received_total", Help: "SSE frames received from the source.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_events_published_total", Help: "Events stored in RECENTCHANGE (new, not duplicates).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_duplicates_total", Help: "Events JetStream already had (same meta.id within the duplicate window).",
		}),
		canaries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_canaries_dropped_total", Help: "Canary events (meta.domain=canary) dropped.",
		}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rcwatch_ingest_malformed_total", Help: "Frames that could not be ingested, by reason.",
		}, []string{"reason"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_dead_letters_total", Help: "Frames stored on the dead-letter subject dlq.ingest.",
		}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rcwatch_ingest_reconnects_total", Help: "SSE reconnections, by the reason the previous connection ended.",
		}, []string{"reason"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rcwatch_ingest_connected", Help: "1 while an SSE connection is open.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rcwatch_ingest_lag_seconds", Help: "now − meta.dt of the newest event acknowledged by JetStream.",
		}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rcwatch_ingest_publish_latency_seconds", Help: "Async publish to JetStream acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_publish_errors_total", Help: "Publishes not acknowledged (retried).",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rcwatch_ingest_inflight", Help: "Publishes awaiting acknowledgement.",
		}),
		positionStores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rcwatch_ingest_position_stores_total", Help: "Resume positions written to KV.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.received, m.published, m.duplicates, m.canaries, m.malformed,
		m.deadLetters, m.reconnects, m.connected, m.lag, m.publishLatency, m.publishErrors, m.inflight, m.positionStores} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering ingest metrics: %w", err)
		}
	}
	return m, nil
}
