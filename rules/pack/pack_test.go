package pack_test

import (
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/detect"
	"github.com/rcwatch/rcwatch/rules/pack"
)

func sources(t *testing.T) []rules.Source {
	t.Helper()
	var srcs []rules.Source
	for _, f := range pack.Files() {
		srcs = append(srcs, rules.Source{Name: f.Name, Data: f.Data})
	}
	require.NotEmpty(t, srcs)
	return srcs
}

func TestPackCompiles(t *testing.T) {
	rs, _, err := rules.Compile(sources(t), rules.CompileOptions{})
	for _, p := range rules.Problems(err) {
		t.Error(p.Error())
	}
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(rs), 10)
}

func TestFilesMatchFS(t *testing.T) {
	names, err := fs.Glob(pack.Default(), "*.yaml")
	require.NoError(t, err)
	var got []string
	for _, f := range pack.Files() {
		got = append(got, f.Name)
	}
	assert.Equal(t, names, got)
	assert.Contains(t, got, "vandalism.yaml")
	assert.Contains(t, got, "citations.yaml")
}

type ruleSpec struct {
	ID   string   `yaml:"id"`
	When string   `yaml:"when"`
	Tags []string `yaml:"tags"`
}

func specs(t *testing.T) map[string]ruleSpec {
	t.Helper()
	out := map[string]ruleSpec{}
	for _, f := range pack.Files() {
		var doc struct {
			Rules []ruleSpec `yaml:"rules"`
		}
		require.NoError(t, yaml.Unmarshal(f.Data, &doc), f.Name)
		for _, r := range doc.Rules {
			out[r.ID] = r
		}
	}
	return out
}

// TestScoreThresholdMatchesModel keeps the vandalism-score rule's threshold
// in step with the trained model (go run ./cmd/rcwatch-train rewrites
// DefaultThreshold).
func TestScoreThresholdMatchesModel(t *testing.T) {
	r, ok := specs(t)["vandalism-score"]
	require.True(t, ok)
	m := regexp.MustCompile(`vandalism_score >= ([0-9.]+)`).FindStringSubmatch(r.When)
	require.NotNil(t, m, r.When)
	assert.Equal(t, fmt.Sprint(detect.DefaultThreshold), m[1],
		"update the threshold in vandalism.yaml to detect.DefaultThreshold after retraining")
}

// TestTags: every vandalism rule is tagged vandalism or vandalism-signal,
// every citation rule citations.
func TestTags(t *testing.T) {
	for id, r := range specs(t) {
		require.Len(t, r.Tags, 1, id)
		switch {
		case strings.HasPrefix(id, "citation") || strings.HasPrefix(id, "bare-url"):
			assert.Equal(t, "citations", r.Tags[0], id)
		default:
			assert.Contains(t, []string{"vandalism", "vandalism-signal"}, r.Tags[0], id)
		}
	}
}
