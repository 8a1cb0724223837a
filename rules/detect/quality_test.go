package detect_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/rules/detect"
	"github.com/rcwatch/rcwatch/rules/detect/dataset"
)

// The detection-quality bar of issue 4: on the converted ClueBot NG dev
// cases, the vandalism verdict reaches precision ≥ 0.35 at recall ≥ 0.4.
const (
	barPrecision = 0.35
	barRecall    = 0.4
	devCases     = "../../testdata/cases/cluebot.dev.jsonl"
)

func loadDev(t *testing.T) ([]dataset.Example, []bool) {
	t.Helper()
	ex, err := dataset.Load(devCases)
	require.NoError(t, err)
	require.Len(t, ex, 294)
	labels := make([]bool, len(ex))
	for i, e := range ex {
		labels[i] = e.Vandalism
	}
	return ex, labels
}

func scores(ex []dataset.Example, score func(detect.Features) float64) []float64 {
	out := make([]float64, len(ex))
	for i, e := range ex {
		out[i] = score(e.Features)
	}
	return out
}

// TestQualityBar asserts the bar for the score at the pack's threshold, and
// that the bar discriminates: a score from the user alone (the "simple
// heuristic") and the untrained prior's weakest variant do not pass it.
func TestQualityBar(t *testing.T) {
	ex, labels := loadDev(t)

	got := dataset.Evaluate(scores(ex, detect.VandalismScore), labels, detect.DefaultThreshold)
	t.Logf("vandalism_score >= %v: tp %d fp %d fn %d tn %d precision %.3f recall %.3f",
		detect.DefaultThreshold, got.TP, got.FP, got.FN, got.TN, got.Precision, got.Recall)
	assert.GreaterOrEqual(t, got.Recall, barRecall)
	assert.GreaterOrEqual(t, got.Precision, barPrecision)

	// A user-only heuristic: anonymous or fewer than 10 edits.
	userOnly := func(f detect.Features) float64 {
		if f.UserType == "ip" || f.UserEditCount < 10 {
			return 1
		}
		return 0
	}
	h := dataset.Evaluate(scores(ex, userOnly), labels, 1)
	t.Logf("user-only heuristic: precision %.3f recall %.3f", h.Precision, h.Recall)
	assert.False(t, h.Precision >= barPrecision && h.Recall >= barRecall, "the bar must be able to fail")

	// The best any threshold of the user-only heuristic can do.
	cur := dataset.Curve(scores(ex, userOnly), labels)
	assert.Less(t, dataset.PrecisionAtRecall(cur, barRecall), barPrecision)
}

// TestScoreCurve checks the whole curve is sane: the score ranks vandalism
// above good edits far better than chance (the base rate is 9.5%).
func TestScoreCurve(t *testing.T) {
	ex, labels := loadDev(t)
	cur := dataset.Curve(scores(ex, detect.VandalismScore), labels)
	assert.GreaterOrEqual(t, dataset.PrecisionAtRecall(cur, 0.2), 0.6)
	assert.GreaterOrEqual(t, dataset.PrecisionAtRecall(cur, 0.4), barPrecision)
	last := cur[len(cur)-1]
	assert.Equal(t, 1.0, last.Recall)
}
