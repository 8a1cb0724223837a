package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustRead(tb testing.TB, path string) Source {
	tb.Helper()
	data, err := os.ReadFile(path)
	require.NoError(tb, err)
	return Source{Name: path, Data: data}
}

// Every bad file in testdata/bad fails with exactly these problems, each
// naming file:line:col, the rule and what is wrong.
func TestCompileBadRules(t *testing.T) {
	tests := []struct {
		file string
		want []string // substrings of each problem, in order
		is   error
	}{
		{"unknown-variable.yaml", []string{"unknown-variable.yaml:3:11: rule typo: when: unknown variable or function user_nmae (did you mean user_name?)"}, ErrUnknownVariable},
		{"unknown-function.yaml", []string{"unknown-function.yaml:3:11: rule func: when: unknown variable or function irlikee (did you mean irlike?)"}, ErrUnknownVariable},
		{"type-error.yaml", []string{"type-error.yaml:5:23: rule mistyped: when: invalid operation: == (mismatched types int64 and string)"}, ErrExpression},
		{"not-bool.yaml", []string{"not-bool.yaml:3:11: rule number: when: expected bool, but got int"}, ErrExpression},
		{"score-type.yaml", []string{"score-type.yaml:5:12: rule score: score: expected float64, but got string"}, ErrExpression},
		{"syntax.yaml", []string{"syntax.yaml:3:24: rule syntax: when: unexpected token EOF"}, ErrExpression},
		{"too-big.yaml", []string{"too-big.yaml:3:62: rule huge: when: compilation failed: expression exceeds maximum allowed nodes"}, ErrExpression},
		{"bad-regexp.yaml", []string{`bad-regexp.yaml:3:28: rule regexp: bad regular expression "(unclosed"`}, ErrBadRegexp},
		{"unknown-list.yaml", []string{`unknown-list.yaml:3:19: rule list: unknown list "nope"`}, ErrUnknownList},
		{"unknown-field.yaml", []string{`unknown-field.yaml:5:5: rule misspelt-key: unknown field "acitons"`}, ErrInvalidRule},
		{"duplicate.yaml", []string{"duplicate.yaml:5: rule twice: duplicate rule id (first defined at testdata/bad/duplicate.yaml:2)"}, ErrInvalidRule},
		{"yaml-syntax.yaml", []string{"yaml-syntax.yaml:2: did not find expected ',' or ']'"}, ErrInvalidRule},
		{"nested-iteration.yaml", []string{
			"nested-iteration.yaml:3:29: rule quadratic: nested iteration (a predicate inside a predicate) is not allowed",
			"nested-iteration.yaml:6:16: rule range: a range needs constant bounds at most 10000 apart",
		}, ErrExpression},
		{"fields.yaml", []string{
			`fields.yaml:2:9: rule bad fields: id "bad fields": use letters`,
			`fields.yaml:4:15: rule bad fields: severity "urgent": want info, low, medium, high or critical`,
			`fields.yaml:5:14: rule bad fields: action "irc:nochannel": want irc:#channel`,
			`fields.yaml:5:14: rule bad fields: action "email:x": want irc:#channel, feed or edit:<operation>`,
			`fields.yaml:6:23: rule bad fields: throttle count 0: want at least 1`,
			`fields.yaml:6:34: rule bad fields: throttle window 0s: want a positive duration`,
			`fields.yaml:6:48: rule bad fields: throttle group_by "planet": want user, page or wiki`,
		}, ErrInvalidRule},
	}
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, len(tests), "every bad file has a case")
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, _, err := Compile([]Source{mustRead(t, "testdata/bad/"+tc.file)}, CompileOptions{MaxNodes: 50})
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.is)
			var ce *CompileError
			require.ErrorAs(t, err, &ce)
			probs := Problems(err)
			require.Len(t, probs, len(tc.want), "%v", err)
			for i, w := range tc.want {
				assert.Contains(t, probs[i].Error(), w)
			}
		})
	}
}

// Every problem of every file is listed at once (what lint prints).
func TestCompileListsEveryProblem(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	var srcs []Source
	for _, f := range files {
		srcs = append(srcs, mustRead(t, f))
	}
	_, _, err = Compile(srcs, CompileOptions{MaxNodes: 50})
	probs := Problems(err)
	assert.Len(t, probs, 21)
	assert.True(t, errors.Is(err, ErrUnknownVariable))
}

func TestCompileBasic(t *testing.T) {
	rs, lists, err := Compile([]Source{mustRead(t, "testdata/basic.yaml")}, CompileOptions{})
	require.NoError(t, err)
	require.Len(t, rs, 4)
	byID := map[string]*Rule{}
	for _, r := range rs {
		byID[r.ID] = r
	}
	assert.Equal(t, []string{"watched_pages"}, lists.Names())

	ip := byID["ip-large-removal"]
	assert.Equal(t, []string{`user_type == "ip"`, `edit_delta < -2000`}, ip.Operands())
	assert.False(t, ip.Need.Any(), "metadata only")
	assert.Equal(t, []string{"edit_delta", "user_type"}, ip.Vars)
	assert.Len(t, ip.Version, 12)

	nu := byID["new-user-blanking"]
	assert.Equal(t, Need{User: true}, nu.Need)
	assert.Len(t, nu.Operands(), 4)
	require.NotNil(t, nu.score)
	assert.Equal(t, Need{User: true}, nu.score.need)

	assert.Equal(t, []string{`in_list("watched_pages", page_prefixedtitle)`, "not bot"}, byID["watched-page-edit"].Operands())
	assert.False(t, byID["summary-shouting"].IsEnabled())
}

func TestSplitAnd(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{`a && b`, []string{"a", "b"}},
		{`a and b and c`, []string{"a", "b", "c"}},
		{`(a || b) && c`, []string{"(a || b)", "c"}},
		{`a || b && c`, []string{"a || b && c"}},
		{`(a && b)`, []string{"(a", "b)"}}, // does not stand alone: the compiler keeps the whole
		{`x == "é" && y`, []string{`x == "é"`, "y"}},
		{"a\n  && b", []string{"a", "b"}},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, splitAnd(tc.src), tc.src)
	}
}

func TestVersionChangesWithDefinition(t *testing.T) {
	a := Spec{ID: "x", When: "bot", Severity: "low"}
	b := a
	b.When = "minor"
	assert.NotEqual(t, a.Version(), b.Version())
	assert.Equal(t, a.Version(), (&Spec{ID: "x", When: "bot", Severity: "low"}).Version())
}

func TestEveryVariableDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/RULES.md")
	require.NoError(t, err)
	for _, n := range append(VarNames(), FuncNames()...) {
		assert.True(t, strings.Contains(string(doc), "`"+n+"`") || strings.Contains(string(doc), "`"+n+"("),
			"docs/RULES.md does not mention %s", n)
	}
}
