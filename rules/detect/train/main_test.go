package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestModelIsReproducible retrains from the committed cases and checks that
// the committed rules/detect/model.go is exactly what the command writes.
// To keep the test quick it tries only the chosen lambda (named in
// model.go): each lambda's cross-validation is independent and seeded
// alike, so the result is the same as with the full list.
func TestModelIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the model (a few seconds)")
	}
	want, err := os.ReadFile("../model.go")
	require.NoError(t, err)
	m := regexp.MustCompile(`\(lambda ([0-9.]+),`).FindSubmatch(want)
	require.NotNil(t, m, "model.go names its lambda")
	out := filepath.Join(t.TempDir(), "model.go")
	var report bytes.Buffer
	require.NoError(t, run([]string{"-cases", "../../../testdata/cases/cluebot.dev.jsonl", "-out", out, "-lambdas", string(m[1])}, &report))
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "rules/detect/model.go is not what go run ./rules/detect/train writes")
	assert.Contains(t, report.String(), "chosen lambda")
	assert.Contains(t, report.String(), "cross-validated precision-recall curve")
}

func TestRunErrors(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run([]string{"-cases", filepath.Join(t.TempDir(), "missing.jsonl")}, &out))
	assert.Error(t, run([]string{"-lambdas", "x"}, &out))
}

func TestSolve(t *testing.T) {
	x := solve([][]float64{{2, 1}, {1, 3}}, []float64{3, 5})
	assert.InDelta(t, 0.8, x[0], 1e-12)
	assert.InDelta(t, 1.4, x[1], 1e-12)
}
