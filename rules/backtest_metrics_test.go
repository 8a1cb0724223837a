package rules

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestROCAUCAndAveragePrecision(t *testing.T) {
	tests := []struct {
		name    string
		scores  []float64
		vandal  []bool
		auc, ap float64
		nanAUC  bool
		nanAP   bool
	}{
		{"perfect", []float64{0.9, 0.8, 0.2, 0.1}, []bool{true, true, false, false}, 1, 1, false, false},
		{"reversed", []float64{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0, 0.5*1.0/3 + 0.5*2.0/4, false, false},
		// One vandal edit above one good one, one below: AUC 0.5;
		// AP = 0.5·1 + 0.5·(2/4).
		{"mixed", []float64{0.9, 0.8, 0.2, 0.1}, []bool{true, false, false, true}, 0.5, 0.75, false, false},
		{"ties count half", []float64{0.5, 0.5}, []bool{true, false}, 0.5, 0.5, false, false},
		{"no vandalism", []float64{0.1, 0.2}, []bool{false, false}, 0, 0, true, true},
		{"no good", []float64{0.1, 0.2}, []bool{true, true}, 0, 1, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auc, ap := ROCAUC(tt.scores, tt.vandal), AveragePrecision(tt.scores, tt.vandal)
			if tt.nanAUC {
				assert.True(t, math.IsNaN(auc))
			} else {
				assert.InDelta(t, tt.auc, auc, 1e-12)
			}
			if tt.nanAP {
				assert.True(t, math.IsNaN(ap))
			} else {
				assert.InDelta(t, tt.ap, ap, 1e-12)
			}
		})
	}
}

func TestBootstrapCI(t *testing.T) {
	var s []float64
	var v []bool
	for i := 0; i < 200; i++ {
		s = append(s, float64(i%10)/10)
		v = append(v, i%10 >= 7 != (i%23 == 0))
	}
	iv := BootstrapCI(s, v, 500, 1, ROCAUC)
	assert.Equal(t, ROCAUC(s, v), iv.Value)
	assert.Less(t, iv.Low, iv.Value)
	assert.Greater(t, iv.High, iv.Value)
	assert.Equal(t, iv, BootstrapCI(s, v, 500, 1, ROCAUC), "deterministic for a seed")
	none := BootstrapCI(s, v, 0, 1, ROCAUC)
	assert.Equal(t, none.Value, none.Low)

	p, r := PrecisionRecallAt([]float64{0.9, 0.5, 0.1}, []bool{true, false, true}, 0.5)
	assert.InDelta(t, 0.5, p, 1e-12)
	assert.InDelta(t, 0.5, r, 1e-12)
}

// TestScoreOnCases is the score's regression guard on the committed cases,
// measured through the backtest as rcwatch rules test does: the ClueBot NG
// dev cases and the project's held-out ORES split. Both are in the shipped
// model's training data (the held-out split since issue 16, after the same
// procedure trained without it was scored on it once: ROC AUC 0.857, AP
// 0.357), so these are in-sample floors that catch a broken model or
// feature mapping, not estimates for new data. The figures and their
// intervals are in docs/DETECTION.md.
func TestScoreOnCases(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("backtests 4,800 cases (minutes under -race; no concurrency here)")
	}
	srcs := packSources(t)
	for _, tt := range []struct {
		file          string
		minAUC, minAP float64
		wantLabelled  int
	}{
		{clueBotCases, 0.8, 0.5, 294},                                 // 0.836, 0.570
		{"../testdata/cases/ores.heldout.jsonl.bz2", 0.87, 0.4, 4495}, // 0.895, 0.446
	} {
		t.Run(tt.file, func(t *testing.T) {
			items := readItemsFile(t, tt.file)
			rep, err := Backtest(context.Background(), srcs, items, BacktestConfig{Bootstrap: 200})
			require.NoError(t, err)
			require.Equal(t, tt.wantLabelled, rep.Labelled)
			require.NotNil(t, rep.Curve)
			require.Len(t, rep.Scores, tt.wantLabelled)
			t.Logf("ROC AUC %.3f %+v, AP %.3f; overall %+v", rep.Curve.ROCAUCCI.Value, *rep.Curve.ROCAUCCI,
				rep.Curve.AveragePrecision, *rep.Overall)
			assert.GreaterOrEqual(t, rep.Curve.ROCAUCCI.Value, tt.minAUC)
			assert.GreaterOrEqual(t, rep.Curve.AveragePrecision, tt.minAP)
			assert.InDelta(t, rep.Curve.AveragePrecision, rep.Curve.AveragePrecisionCI.Value, 1e-9)
			require.NotNil(t, rep.Overall.PrecisionCI)
			assert.LessOrEqual(t, rep.Overall.PrecisionCI.Low, rep.Overall.Precision)
			for _, r := range rep.Rules {
				if r.ID == "vandalism-score" {
					assert.False(t, r.WouldAutoDisable, "vandalism-score matches %.3f", r.MatchRate)
				}
			}
		})
	}
}

// A NaN score is left out, not ranked: before, a NaN made the grouping of
// tied scores loop for ever (NaN equals nothing, not even itself).
func TestMetricsLeaveOutNaN(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name   string
		scores []float64
		vandal []bool
	}{
		{"first", []float64{nan, 0.9, 0.8, 0.2, 0.1}, []bool{false, true, false, false, true}},
		{"middle", []float64{0.9, 0.8, nan, 0.2, 0.1}, []bool{true, false, true, false, true}},
		{"several", []float64{0.9, nan, 0.8, 0.2, nan, 0.1}, []bool{true, true, false, false, false, true}},
	}
	want := []float64{0.9, 0.8, 0.2, 0.1}
	wantV := []bool{true, false, false, true}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				assert.Equal(t, ROCAUC(want, wantV), ROCAUC(tc.scores, tc.vandal))
				assert.Equal(t, AveragePrecision(want, wantV), AveragePrecision(tc.scores, tc.vandal))
				assert.Equal(t, PRCurve("x", want, wantV, 0), PRCurve("x", tc.scores, tc.vandal, 0))
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("a metric did not return with a NaN score")
			}
		})
	}
}
