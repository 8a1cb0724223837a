package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/pipeline"
)

// Hostile shapes are refused before parsing, with the limit named: a
// 1,000,000-deep expression used to overflow the Go stack (killing lint, and
// a running evaluator on hot reload).
func TestCompileRefusesHostileShapes(t *testing.T) {
	deep := strings.Repeat("(", 1_000_000) + "bot" + strings.Repeat(")", 1_000_000)
	nots := strings.Repeat("!", 1_000_000) + "bot"
	tests := []struct {
		name string
		srcs []Source
		want string
	}{
		{"million-deep parentheses", []Source{ruleWith("when: '" + deep + "'")}, "expression is 2000003 bytes, over the limit of 16384"},
		{"million prefix operators", []Source{ruleWith("when: '" + nots + "'")}, "over the limit of 16384"},
		{"deep within the byte limit", []Source{ruleWith("when: '" + strings.Repeat("(", 100) + "bot" + strings.Repeat(")", 100) + "'")},
			"expression nests brackets 100 deep, over the limit of 64"},
		{"deep unary within the byte limit", []Source{ruleWith("when: '" + strings.Repeat("not ", 80) + "bot'")},
			"expression nests brackets 80 deep"},
		{"deep score", []Source{ruleWith("when: bot\n    score: '" + strings.Repeat("-(", 40) + "1" + strings.Repeat(")", 40) + "'")},
			"score: expression nests brackets 80 deep"},
		{"50 MB file", []Source{{Name: "big.yaml", Data: make([]byte, 50<<20)}},
			"rule files are 52428800 bytes together, over the limit of 4194304 bytes"},
		{"50 MB list", []Source{{Name: "big.list", Data: make([]byte, 50<<20)}},
			"big.list: list file is 52428800 bytes, over the limit of 8388608 bytes per file"},
		{"300,000 rules", manyRules(300_000, 1), "rule files are 12488897 bytes together, over the limit of 4194304 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Compile(tc.srcs, CompileOptions{})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrTooLarge)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	// Past the rule count, within the byte limit.
	_, _, err := Compile(manyRules(DefaultMaxRules+1, 3), CompileOptions{})
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "10001 rules, over the limit of 10000 rules")

	// Shapes within the limits still compile.
	_, _, err = Compile([]Source{ruleWith(`when: '((bot)) && !(!minor) && not not bot && summary != "((((("'`)}, CompileOptions{})
	require.NoError(t, err)
}

// A hostile file loaded into a running engine is an error that keeps the
// old rules evaluating.
func TestLoadHostileKeepsOldRules(t *testing.T) {
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, ruleWith(`when: type == "edit"`))
	deep := strings.Repeat("(", 1_000_000) + "bot" + strings.Repeat(")", 1_000_000)
	err := e.Load([]Source{ruleWith("when: '" + deep + "'")})
	require.ErrorIs(t, err, ErrTooLarge)
	ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit"}`)
	assert.Equal(t, []string{"r"}, alertRules(e.Eval(context.Background(), ev, nil, t0)))
}

func ruleWith(fields string) Source {
	return src("r.yaml", "rules:\n  - id: r\n    severity: low\n    "+fields+"\n")
}

// manyRules spreads n small rules over files rule files (each under the
// file size limit).
func manyRules(n, files int) []Source {
	out := make([]Source, files)
	for f := range files {
		var b strings.Builder
		b.WriteString("rules:\n")
		for i := f; i < n; i += files {
			fmt.Fprintf(&b, "- {id: r%d, when: bot, severity: low}\n", i)
		}
		out[f] = Source{Name: fmt.Sprintf("many%d.yaml", f), Data: []byte(b.String())}
	}
	return out
}

// Each expression gets a bounded cost per event: strings built (which
// expr's memory budget does not count), expr's memory budget, and time. A
// rule over it errors on that event, and is disabled once it has done so
// MaxCostErrors times; the other rules go on.
func TestEvaluationCostBounded(t *testing.T) {
	tests := []struct {
		name, when string
		summary    string
	}{
		// Each passes lint: its cost depends on the data.
		{"quadratic reduce", `reduce(split(summary, ""), #acc + summary, "") != ""`, strings.Repeat("x", 2000)},
		{"repeat by a variable", `repeat(summary, edit_delta) != ""`, strings.Repeat("x", 100)},
		{"join of a large map", `join(map(split(summary, ""), summary), ",") != ""`, strings.Repeat("x", 2000)},
		{"slow iteration", `any(1..10000, summary matches "(a|b)*c")`, strings.Repeat("ab", 1<<14)},
		{"expr memory budget", `len(map(1..10000, [#, #, #, #, #, #, #, #, #, #])) > 0`, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			e := newTestEngine(t, EngineConfig{MaxMatchRate: -1, MaxExprTime: 50 * time.Millisecond, MaxCostErrors: 3}, reg, src("c.yaml", `
rules:
  - id: costly
    when: '`+tc.when+`'
    severity: low
  - id: fine
    when: type == "edit"
    severity: low
`))
			ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit","comment":"`+tc.summary+`","length":{"old":0,"new":1000000}}`)
			for i := range 5 {
				start := time.Now()
				assert.Equal(t, []string{"fine"}, alertRules(e.Eval(context.Background(), ev, nil, t0)), "event %d", i)
				assert.Less(t, time.Since(start), 2*time.Second, "event %d", i)
			}
			st := e.Rules()[0]
			assert.Equal(t, int64(3), st.Errors, "errored until disabled")
			assert.True(t, st.AutoDisabled)
			assert.Equal(t, "cost", st.DisabledReason)
			assert.Equal(t, 3.0, ruleMetric(t, reg, "rcwatch_rule_over_budget_total", "costly"))
			assert.Equal(t, 1.0, ruleMetric(t, reg, "rcwatch_rule_auto_disabled", "costly"))
			assert.False(t, e.Rules()[1].AutoDisabled)
		})
	}
}

// Lint refuses what it can tell builds strings out of proportion to the
// input (a doubling let chain reached 24 GB resident; a reduce over a range
// did not finish 50 events in a minute).
func TestLintRefusesStringGrowth(t *testing.T) {
	doubling := "let s0 = summary + summary;"
	for i := 1; i < 40; i++ {
		doubling += fmt.Sprintf(" let s%d = s%d + s%d;", i, i-1, i-1)
	}
	doubling += " len(s39) > 0"
	bad := []string{
		doubling,
		`reduce(1..10000, #acc + summary, "") != ""`,
		`repeat(summary, 100000) != ""`,
		`join(map(1..10000, summary), ",") != ""`,
		`replace(summary, "a", summary) != ""`,
		`let a = summary + summary + summary + summary; let b = a + a + a + a; let c = b + b + b + b + b; c != ""`,
	}
	for _, when := range bad {
		_, _, err := Compile([]Source{ruleWith("when: '" + when + "'")}, CompileOptions{})
		require.Error(t, err, when)
		assert.ErrorIs(t, err, ErrExpression)
		assert.Contains(t, err.Error(), "the variables it reads (the limit is 64)", when)
	}
	good := []string{
		`reduce(1..10000, #acc + #, 0) > 5`,
		`summary + " " + page_title != ""`,
		`lcase(summary + summary) != ""`,
		`any(map(added_lines, # + "x"), # == "ax")`,
		`repeat(summary, 3) != "" && replace(summary, "a", "bb") != ""`,
		`join(added_lines, ",") != ""`,
	}
	for _, when := range good {
		_, _, err := Compile([]Source{ruleWith("when: '" + when + "'")}, CompileOptions{})
		assert.NoError(t, err, when)
	}
}

// Arithmetic that gives an infinity or NaN is a run-time error of the rule:
// the condition does not hold and the error is counted (x / 0 used to
// compare as +Inf and match).
func TestNonFiniteArithmetic(t *testing.T) {
	tests := []struct {
		when  string
		match bool
		errs  int64
	}{
		{`edit_delta / 0 > 1`, false, 1},
		{`edit_delta / 0 < 1`, false, 1},
		{`0 / 0 != 1`, false, 1},
		{`edit_delta * 1e308 * 1e308 > 0`, false, 1},
		{`2.0 ** 5000 > 0`, false, 1},
		{`1e308 + 1e308 > 0`, false, 1},
		{`-1e308 - 1e308 < 0`, false, 1},
		{`edit_delta / 2 == 5.0`, true, 0},
		{`edit_delta * 0.5 + 1 == 6.0`, true, 0},
		{`edit_delta % 3 == 1 && edit_delta + 1 == 11 && summary + "!" == "ab!"`, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.when, func(t *testing.T) {
			e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, ruleWith("when: '"+tc.when+"'"))
			ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit","comment":"ab","length":{"old":0,"new":10}}`)
			got := e.Eval(context.Background(), ev, nil, t0)
			assert.Equal(t, tc.match, len(got) == 1)
			assert.Equal(t, tc.errs, e.Rules()[0].Errors)
		})
	}
	// A non-finite score is an error too: no alert with an infinite score.
	e := newTestEngine(t, EngineConfig{MaxMatchRate: -1}, nil, ruleWith("when: bot == false\n    score: 'edit_delta / 0'"))
	ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit","length":{"old":0,"new":10}}`)
	assert.Empty(t, e.Eval(context.Background(), ev, nil, t0))
	assert.Equal(t, int64(1), e.Rules()[0].Errors)
}

// The same through the stage's hot reload of a rules directory (what killed
// a running rcwatch run, embedded NATS included): the reload fails, is
// reported, and the old rules keep evaluating.
func TestStageReloadRefusesHostileFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(body), 0o644))
	}
	write("rules:\n  - id: r\n    severity: low\n    when: type == \"edit\"\n")
	s, err := NewStage(pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, StageConfig{Paths: []string{dir}}, nil)
	require.NoError(t, err)
	write("rules:\n  - id: r\n    severity: low\n    when: '" + strings.Repeat("(", 1_000_000) + "bot" + strings.Repeat(")", 1_000_000) + "'\n")
	changed, err := s.Reload()
	require.ErrorIs(t, err, ErrTooLarge)
	assert.False(t, changed)
	assert.Equal(t, 0.0, testutil.ToFloat64(s.Engine().m.reloadOK))
	ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit"}`)
	assert.Equal(t, []string{"r"}, alertRules(s.Engine().Eval(context.Background(), ev, nil, t0)))
}

// Rule files are size-checked before they are read: a sparse file of
// several GB (nothing on disk, GBs if read) is refused naming the file and
// the limit, at start and on a hot reload (the old rules keep running, the
// reload is counted as an error). A file whose size Stat does not tell
// (/dev/zero behind a symlink) is read no further than the limit.
func TestReadSourcesLimitRefusesHugeFiles(t *testing.T) {
	const huge = 8 << 30
	sparse := func(t *testing.T, dir, name string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, nil, 0o644))
		require.NoError(t, os.Truncate(f, huge))
		return f
	}
	tests := []struct {
		name string
		make func(t *testing.T, dir string) string // the file that is too large
		want string
	}{
		{"sparse rule file", func(t *testing.T, dir string) string { return sparse(t, dir, "huge.yaml") },
			"the file is 8589934592 bytes and rule files together may be at most 4194304 bytes"},
		{"sparse list file", func(t *testing.T, dir string) string { return sparse(t, dir, "huge.list") },
			"the file is 8589934592 bytes and the limit is 8388608 bytes per list file"},
		{"rule files together", func(t *testing.T, dir string) string {
			for _, n := range []string{"a.yaml", "b.yaml"} {
				require.NoError(t, os.WriteFile(filepath.Join(dir, n), make([]byte, 3<<20), 0o644))
			}
			return filepath.Join(dir, "b.yaml")
		}, "the file is 3145728 bytes and rule files together may be at most 4194304 bytes (3145728 read before it)"},
		{"endless device", func(t *testing.T, dir string) string {
			f := filepath.Join(dir, "zero.list")
			require.NoError(t, os.Symlink("/dev/zero", f))
			return f
		}, "the file has more than 8388608 bytes and the limit is 8388608 bytes per list file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := tc.make(t, dir)
			_, err := ReadSources([]string{dir})
			require.ErrorIs(t, err, ErrTooLarge)
			assert.Contains(t, err.Error(), "reading rules "+bad+": ")
			assert.Contains(t, err.Error(), tc.want)

			// Start: refused.
			_, err = NewStage(pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, StageConfig{Paths: []string{dir}}, nil)
			require.ErrorIs(t, err, ErrTooLarge)

			// Hot reload: refused, counted, the old rules keep running.
			require.NoError(t, os.Rename(dir, dir+".bad"))
			good := filepath.Join(t.TempDir(), "rules")
			require.NoError(t, os.Mkdir(good, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(good, "rules.yaml"), []byte("rules:\n  - id: r\n    severity: low\n    when: type == \"edit\"\n"), 0o644))
			s, err := NewStage(pipeline.Deps{Reg: prometheus.NewRegistry(), Log: zerolog.Nop()}, StageConfig{Paths: []string{good}}, nil)
			require.NoError(t, err)
			require.NoError(t, os.RemoveAll(good))
			require.NoError(t, os.Rename(dir+".bad", good))
			for range 2 { // each check of the files is counted
				changed, err := s.Reload()
				require.ErrorIs(t, err, ErrTooLarge)
				assert.False(t, changed)
			}
			assert.Equal(t, 0.0, testutil.ToFloat64(s.Engine().m.reloadOK))
			assert.Equal(t, 2.0, testutil.ToFloat64(s.Engine().m.reloads.WithLabelValues("error")))
			ev := mustEvent(t, `{"meta":{"id":"a"},"type":"edit"}`)
			assert.Equal(t, []string{"r"}, alertRules(s.Engine().Eval(context.Background(), ev, nil, t0)))
		})
	}
}
