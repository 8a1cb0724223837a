package loadtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/loadtest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// The harness end to end on a small load, as `rcwatch bench pipeline` runs
// it: the baseline, then `rcwatch run` as a process fed by the replay
// server; every served event stored once and evaluated, figures filled in.
func TestRunSmallPipeline(t *testing.T) {
	tests := []struct {
		name string
		cfg  loadtest.Config
	}{
		{"default pack with the baseline", loadtest.Config{N: 3000, Baseline: true}},
		{"pack twice, two workers, paced", loadtest.Config{N: 1000, RulesCopies: 2, Workers: 2, Rate: 500}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Binary, cfg.Events, cfg.Dir = proctest.Rcwatch(), fixtures.Events(t), t.TempDir()
			cfg.MemEvery, cfg.Timeout = 200*time.Millisecond, 3*time.Minute
			res, err := loadtest.Run(context.Background(), cfg)
			require.NoError(t, err)
			assert.Equal(t, cfg.N, res.Served, "served")
			assert.Equal(t, cfg.N, res.Stored, "stored once each (distinct ids, no duplicate dropped, none doubled)")
			assert.Positive(t, res.StoredPS)
			assert.Positive(t, res.EvalPS)
			assert.Positive(t, res.CPU)
			assert.NotEmpty(t, res.Memory)
			if cfg.Baseline {
				assert.Positive(t, res.Baseline)
				assert.Positive(t, res.Ratio())
			} else {
				assert.Zero(t, res.Baseline)
			}
			if cfg.Rate > 0 {
				// Paced: storing N events takes (N-1)/rate (2 s), as seen by
				// samples that a loaded machine may delay; at full speed it
				// takes ~0.1 s.
				paced := time.Duration(float64(cfg.N-1) / cfg.Rate * float64(time.Second))
				assert.GreaterOrEqual(t, res.StoreTime, paced/2)
			}
		})
	}
}
