package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// runOK runs rcwatch to completion and returns its standard output.
func runOK(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, proctest.Rcwatch(), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(tb, err, "rcwatch %v:\n%s", args, stderr.String())
	return string(out)
}

// The self-measurement end to end: recorded events with real reverts
// (the EditGroups undos of a QuickStatements batch, and the English
// Wikipedia reverts of rules/quality/testdata) go through `rcwatch
// evaluate`, whose /metrics then holds the expected per-rule figures
// (--quality-window is on by default); `rcwatch rules quality --since`
// gives the same figures from the streams, and `rcwatch rules cases --from
// stream` exports the edits labelled by those reverts.
func TestRulesQualityFromStreams(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	raw := fixtures.Events(t, "recentchange.editgroups.qs_batch_with_reverts.jsonl")
	seq, err := os.ReadFile("../../rules/quality/testdata/enwiki.reverts.jsonl")
	require.NoError(t, err)
	for _, l := range strings.Split(strings.TrimSpace(string(seq)), "\n") {
		raw = append(raw, []byte(l))
	}
	seen := map[string]bool{}
	edits := 0
	for _, data := range raw {
		ev, err := event.Decode(data)
		require.NoError(t, err)
		if seen[ev.Meta.ID] {
			continue
		}
		seen[ev.Meta.ID] = true
		if ev.Type == "edit" || ev.Type == "new" {
			edits++
		}
		natstest.Publish(t, js, pipeline.RecentChangeSubject(ev.Wiki, ev.Type), ev.Meta.ID, data)
	}
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(rulesFile, []byte(`rules:
  - id: qs-edits
    when: 'type == "edit" && user == "QuickStatementsBot"'
    severity: low
  - id: no-summary
    when: 'comment == "" && !bot'
    severity: low
`), 0o644))
	port, err := freeport.Get()
	require.NoError(t, err)
	p := startProc(t, "evaluate", "--nats", srv.URL, "--ops-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--rules", rulesFile, "--enrich=false", "--max-match-rate", "-1")
	natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, "rules", 2*time.Minute)
	metrics := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	for _, want := range []string{
		`rcwatch_quality_alerted_reverted_total{rule="no-summary",wiki="enwiki"} 16`,
		`rcwatch_quality_alerted_total{rule="no-summary",wiki="enwiki"} 16`,
		`rcwatch_quality_alerted_reverted_total{rule="qs-edits",wiki="wikidatawiki"} 2`,
		`rcwatch_quality_reverted_total{wiki="enwiki"} 16`,
		`rcwatch_quality_reverted_total{wiki="wikidatawiki"} 2`,
		`rcwatch_quality_window_seconds 172800`,
	} {
		assert.Contains(t, metrics, want)
	}
	require.NoError(t, p.Signal(t, syscall.SIGTERM, time.Minute))

	var rep quality.Report
	require.NoError(t, json.Unmarshal([]byte(runOK(t, "rules", "quality", "--since", "1h", "--nats", srv.URL, "--json")), &rep))
	assert.Equal(t, edits, rep.Edits)
	assert.Equal(t, 18, rep.Reverted)
	var ns, qs *quality.Estimate
	for i, e := range rep.Estimates {
		switch {
		case e.Rule == "no-summary" && e.Wiki == "enwiki":
			ns = &rep.Estimates[i]
		case e.Rule == "qs-edits" && e.Wiki == "*":
			qs = &rep.Estimates[i]
		}
	}
	require.NotNil(t, ns)
	require.NotNil(t, qs)
	assert.Equal(t, 16, ns.AlertedReverted)
	assert.Equal(t, 1.0, ns.Precision.Value)
	assert.Equal(t, 2, qs.AlertedReverted)
	assert.Equal(t, 18, qs.Reverted)
	assert.InDelta(t, 2.0/18, qs.Recall.Value, 1e-12)
	text := runOK(t, "rules", "quality", "--since", "1d", "--nats", srv.URL)
	t.Logf("rcwatch rules quality --since 1d:\n%s", text)
	assert.Regexp(t, `no-summary\s+enwiki\s+16\s+16\s+1\.000\s+\[0\.\d+, 1\.000\]\s+1\.000`, text)

	out := runOK(t, "rules", "cases", "--from", "stream", "--since", "1h", "--settle", "0s", "--nats", srv.URL)
	cases, err := rules.ReadCases(strings.NewReader(out))
	require.NoError(t, err)
	assert.Len(t, cases, edits)
	vandal := 0
	for _, c := range cases {
		if c.Label == rules.LabelVandalism {
			vandal++
		}
	}
	assert.Equal(t, 18, vandal, "the reverted edits")
}
