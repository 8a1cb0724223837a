package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StreamUsage is how much history a stream keeps: its limits and what it
// holds now.
type StreamUsage struct {
	Name     string
	MaxBytes int64
	MaxAge   time.Duration
	Bytes    uint64
	Msgs     uint64
	FirstSeq uint64
	// Oldest is the time the oldest message was stored (zero when empty).
	Oldest time.Time
}

// LiveHistory is how long MaxBytes of RECENTCHANGE lasts at the live rate
// (0 for other streams, whose rate depends on the rules).
func (u StreamUsage) LiveHistory() time.Duration {
	if u.Name != StreamRecentChange || u.MaxBytes <= 0 {
		return 0
	}
	perDay := float64(LiveEventsPerDay * LiveEventBytes)
	return time.Duration(float64(u.MaxBytes) / perDay * float64(24*time.Hour)).Round(time.Minute)
}

// Usage reads the usage of every rcwatch stream.
func Usage(ctx context.Context, js jetstream.JetStream, t Topology) ([]StreamUsage, error) {
	var out []StreamUsage
	for _, c := range t.StreamConfigs() {
		s, err := js.Stream(ctx, c.Name)
		if err != nil {
			return out, fmt.Errorf("reading stream %s: %w", c.Name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return out, fmt.Errorf("reading stream %s info: %w", c.Name, err)
		}
		u := StreamUsage{Name: c.Name, MaxBytes: info.Config.MaxBytes, MaxAge: info.Config.MaxAge,
			Bytes: info.State.Bytes, Msgs: info.State.Msgs, FirstSeq: info.State.FirstSeq}
		if info.State.Msgs > 0 {
			u.Oldest = info.State.FirstTime
		}
		out = append(out, u)
	}
	return out, nil
}

// StreamCollector exports each stream's usage on every scrape:
// rcwatch_stream_bytes, _messages, _max_bytes, _max_age_seconds,
// _first_sequence and _oldest_age_seconds (how much history is kept).
type StreamCollector struct {
	js      jetstream.JetStream
	t       Topology
	now     func() time.Time
	timeout time.Duration

	bytes, msgs, maxBytes, maxAge, firstSeq, oldest, errors *prometheus.Desc
}

// NewStreamCollector registers the stream usage gauges on reg.
func NewStreamCollector(reg prometheus.Registerer, js jetstream.JetStream, t Topology, now func() time.Time) (*StreamCollector, error) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("rcwatch_stream_"+name, help, []string{"stream"}, nil)
	}
	c := &StreamCollector{js: js, t: t, now: now, timeout: 2 * time.Second,
		bytes:    d("bytes", "Bytes the stream holds."),
		msgs:     d("messages", "Messages the stream holds."),
		maxBytes: d("max_bytes", "The stream's byte limit; beyond it the oldest messages are discarded."),
		maxAge:   d("max_age_seconds", "The stream's age limit."),
		firstSeq: d("first_sequence", "Sequence of the oldest message kept."),
		oldest:   d("oldest_age_seconds", "Age of the oldest message kept: how much history the stream holds."),
		errors: prometheus.NewDesc("rcwatch_stream_info_failed",
			"1 when this scrape could not read the streams' usage.", nil, nil),
	}
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering stream usage metrics: %w", err)
		}
	}
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *StreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.bytes, c.msgs, c.maxBytes, c.maxAge, c.firstSeq, c.oldest, c.errors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one stream info request per
// stream, bounded by a short timeout.
func (c *StreamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	us, err := Usage(ctx, c.js, c.t)
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.GaugeValue, failed)
	now := c.now()
	for _, u := range us {
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, u.Name)
		}
		g(c.bytes, float64(u.Bytes))
		g(c.msgs, float64(u.Msgs))
		g(c.maxBytes, float64(u.MaxBytes))
		g(c.maxAge, u.MaxAge.Seconds())
		g(c.firstSeq, float64(u.FirstSeq))
		age := 0.0
		if !u.Oldest.IsZero() {
			age = max(now.Sub(u.Oldest).Seconds(), 0)
		}
		g(c.oldest, age)
	}
}
