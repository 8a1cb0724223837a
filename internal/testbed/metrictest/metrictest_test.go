package metrictest_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/metrictest"
)

func TestSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total"}, []string{"rule", "outcome"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "y"})
	require.NoError(t, reg.Register(c))
	require.NoError(t, reg.Register(g))
	c.WithLabelValues("a", "ok").Add(2)
	c.WithLabelValues("a", "error").Add(3)
	c.WithLabelValues("b", "ok").Add(5)
	g.Set(7)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"x_total", nil, 10},
		{"x_total", []string{"rule", "a"}, 5},
		{"x_total", []string{"rule", "a", "outcome", "ok"}, 2},
		{"x_total", []string{"rule", "c"}, 0},
		{"y", nil, 7},
		{"absent", nil, 0},
	} {
		assert.Equal(t, tc.want, metrictest.Sum(t, reg, tc.name, tc.labels...), "%s %v", tc.name, tc.labels)
	}
}
