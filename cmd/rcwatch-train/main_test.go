package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/detect"
)

// TestModelIsReproducible refits the final model from the committed cases
// (no cross-validation, the committed threshold; the ORES dev and held-out
// splits, as docs/DETECTION.md's training command) and checks that the
// committed rules/detect/model.json is byte for byte what the command writes.
func TestModelIsReproducible(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("refits the model on 15,273 cases (seconds; minutes under -race, where TestFit covers the code)")
	}
	want, err := os.ReadFile("../../rules/detect/model.json")
	require.NoError(t, err)
	var m detect.Model
	require.NoError(t, json.Unmarshal(want, &m))
	out := filepath.Join(t.TempDir(), "model.json")
	var report bytes.Buffer
	require.NoError(t, run([]string{"-ores", "../../testdata/cases/ores.dev.jsonl.bz2", "-cluebot", "../../testdata/cases/cluebot.dev.jsonl",
		"-final-with", "../../testdata/cases/ores.heldout.jsonl.bz2",
		"-no-cv", "-threshold", formatFloat(m.Threshold), "-out", out}, &report))
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "rules/detect/model.json is not what go run ./cmd/rcwatch-train writes")
}

// TestModelFileSize: the model is versioned and embedded in the binary,
// and parsed at start.
func TestModelFileSize(t *testing.T) {
	st, err := os.Stat("../../rules/detect/model.json")
	require.NoError(t, err)
	assert.Less(t, st.Size(), int64(2<<20), "rules/detect/model.json")
}

func formatFloat(f float64) string { b, _ := json.Marshal(f); return string(b) }

func TestRunErrors(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run([]string{"-ores", filepath.Join(t.TempDir(), "missing.jsonl")}, &out))
	assert.Error(t, run([]string{"-trees", "x"}, &out))
	assert.Error(t, run([]string{"-trees", "10", "-cv-trees", "11"}, &out))
	assert.Error(t, run([]string{"-cv-trees", "0"}, &out))
}

// TestCVTrees: the cross-validation after the first k trees of the fits
// (-cv-trees) is the cross-validation of -trees k, and after all of them
// the run's own figure.
func TestCVTrees(t *testing.T) {
	report := func(args ...string) string {
		var out bytes.Buffer
		require.NoError(t, run(append([]string{"-ores", "../../testdata/cases/ores.dev.jsonl.bz2", "-cluebot", "../../testdata/cases/cluebot.dev.jsonl",
			"-out", "", "-repeats", "0", "-bootstrap", "0", "-depth", "3"}, args...), &out))
		return out.String()
	}
	auc := regexp.MustCompile(`(?m)^  ROC AUC (\S+) .*\n  average precision (\S+)`)
	after := regexp.MustCompile(`after (\d+) trees: ROC AUC (\S+) \S+ \S+, average precision (\S+)`)
	long := report("-trees", "4", "-cv-trees", "2,4")
	short := auc.FindStringSubmatch(report("-trees", "2"))
	require.Len(t, short, 3)
	full := auc.FindStringSubmatch(long)
	require.Len(t, full, 3)
	got := after.FindAllStringSubmatch(long, -1)
	require.Len(t, got, 2, long)
	assert.Equal(t, []string{"2", short[1], short[2]}, got[0][1:], "the first 2 of 4 trees score as a 2-tree fit")
	assert.Equal(t, []string{"4", full[1], full[2]}, got[1][1:], "all 4 trees score as the fit")
}

// TestFit: on synthetic data where one input decides and another is noise,
// with a third missing in half the rows, the ensemble separates the classes,
// sends missing values somewhere sound, and is deterministic.
func TestFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d dataset
	var y []bool
	for i := 0; i < 2000; i++ {
		x := make([]float64, detect.NumInputs)
		for j := range x {
			x[j] = math.NaN()
		}
		v := rng.Float64()
		x[1] = v             // words_added decides
		x[2] = rng.Float64() // noise
		vandal := v > 0.8 != (rng.Float64() < 0.05)
		if i%2 == 0 {
			x[detect.TextInput] = 0 // text known: the linear stage applies
		}
		d.add(x, vandal, 1)
		y = append(y, vandal)
	}
	for _, p := range []params{
		{Trees: 50, Depth: 3, Eta: 0.1, Lambda: 1, MinHess: 1, Subsample: 0.8, Seed: 1, LinLambda: 2},
		// ORES's shape: deeper trees, each split choosing among 3 of the
		// inputs, vandalism cases weighted.
		{Trees: 50, Depth: 6, Eta: 0.1, Lambda: 1, MinHess: 1, Subsample: 1, Features: 3, PosWeight: 2, Seed: 1, LinLambda: 2},
		// No L2 and tiny leaves (scikit-learn's regularisation), with
		// Newton and with least-squares splits.
		{Trees: 50, Depth: 7, Eta: 0.1, Lambda: 0, MinHess: 0.1, Subsample: 1, Features: 3, Seed: 1, LinLambda: 2},
		{Trees: 50, Depth: 7, Eta: 0.1, Lambda: 0, MinHess: 1, Subsample: 1, Features: 3, Seed: 1, LinLambda: 2, GradientSplit: true},
		// Three ensembles averaged.
		{Trees: 20, Depth: 3, Eta: 0.1, Lambda: 1, MinHess: 1, Subsample: 0.8, Features: 3, Seed: 1, LinLambda: 2, Average: 3},
	} {
		t.Run(fmt.Sprintf("depth %d, %d inputs per split, lambda %g, least squares %v", p.Depth, p.Features, p.Lambda, p.GradientSplit), func(t *testing.T) { checkFit(t, &d, y, p) })
	}
}

func checkFit(t *testing.T, d *dataset, y []bool, p params) {
	m := fit(d, p)
	require.NoError(t, m.Check())
	s := make([]float64, len(d.X))
	for i, x := range d.X {
		s[i] = detect.Sigmoid(m.Logit(x))
	}
	assert.Greater(t, rules.ROCAUC(s, y), 0.9)
	for _, tr := range m.Trees {
		for _, n := range tr {
			require.False(t, math.IsNaN(n.Value) || math.IsInf(n.Value, 0), "leaf values are finite")
			if n.Left != 0 {
				assert.False(t, detect.IsLinearInput(n.Feature), "the trees do not split on the linear stage's inputs")
			}
		}
	}
	m2 := fit(d, p)
	a, _ := json.Marshal(m)
	b, _ := json.Marshal(m2)
	assert.Equal(t, string(a), string(b), "deterministic for a seed")
}

func TestSolve(t *testing.T) {
	x := solve([][]float64{{2, 1}, {1, 3}}, []float64{3, 5})
	assert.InDelta(t, 0.8, x[0], 1e-12)
	assert.InDelta(t, 1.4, x[1], 1e-12)
}
