package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
)

// The README's offline demo shows something: over the recorded events the
// replay serves by default, every demo rule matches, without a single
// enrichment (nothing partial), at the counts the README gives.
func TestDemoRulesFireOffline(t *testing.T) {
	files, err := filepath.Glob("../../testdata/fixtures/recentchange.*.jsonl")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	args := []string{"rules", "test", "../../testdata/demo/rules.yaml", "--json"}
	for _, f := range files {
		args = append(args, "--events", f)
	}
	out, err := exec.Command(proctest.Rcwatch(), args...).Output()
	require.NoError(t, err, "%s", out)
	var res struct {
		Events int `json:"events"`
		Rules  []struct {
			ID      string `json:"id"`
			Enabled bool   `json:"enabled"`
			Matches int    `json:"matches"`
			Errors  int    `json:"errors"`
			Partial int    `json:"partial"`
		} `json:"rules"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	assert.Equal(t, 2305, res.Events, "the README's 2,305 events a pass")
	want := map[string]int{"demo-large-addition": 40, "demo-large-removal": 16, "demo-page-deleted": 8, "demo-no-summary": 6}
	total := 0
	for _, r := range res.Rules {
		assert.True(t, r.Enabled, r.ID)
		assert.Zero(t, r.Errors, r.ID)
		assert.Zero(t, r.Partial, "%s needs no enrichment", r.ID)
		assert.Equal(t, want[r.ID], r.Matches, r.ID)
		total += r.Matches
	}
	assert.Len(t, res.Rules, len(want))
	assert.Equal(t, 70, total, "about 70 alerts a pass (README)")
}
