package rules

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/rules/pack"
)

func packSources(tb testing.TB) []Source {
	tb.Helper()
	var out []Source
	for _, f := range pack.Files() {
		out = append(out, Source{Name: f.Name, Data: f.Data})
	}
	require.NotEmpty(tb, out)
	return out
}

// BenchmarkEvalDefaultPack is the evaluator's throughput with the default
// pack on the recorded events, metadata only (no enricher: rules that
// pass their cheap conditions finish on what is known).
func BenchmarkEvalDefaultPack(b *testing.B) {
	evs := fixtures.RecentChanges(b)
	e, err := NewEngine(EngineConfig{MaxMatchRate: -1}, nil, zerolog.Nop())
	require.NoError(b, err)
	require.NoError(b, e.Load(packSources(b)))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Eval(ctx, evs[i%len(evs)], nil, t0)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEvalMetadataOnly is the same with a pack-shaped rule set whose
// rules need enrichment after their cheap conditions.
func BenchmarkEvalMetadataOnly(b *testing.B) {
	evs := fixtures.RecentChanges(b)
	e, err := NewEngine(EngineConfig{MaxMatchRate: -1}, nil, zerolog.Nop())
	require.NoError(b, err)
	require.NoError(b, e.Load([]Source{mustRead(b, "testdata/bench.yaml")}))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Eval(ctx, evs[i%len(evs)], nil, t0)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkEvalPerRule is the cost of each default-pack rule alone on the
// same events (the fixed cost per event is BenchmarkEvalEmpty).
func BenchmarkEvalPerRule(b *testing.B) {
	evs := fixtures.RecentChanges(b)
	rs, _, err := Compile(packSources(b), CompileOptions{})
	require.NoError(b, err)
	for _, r := range rs {
		b.Run(r.ID, func(b *testing.B) {
			e, err := NewEngine(EngineConfig{MaxMatchRate: -1}, nil, zerolog.Nop())
			require.NoError(b, err)
			y := "lists:\n  trusted: [x]\nrules:\n  - id: " + r.ID + "\n    when: " + quoteYAML(r.When) + "\n    severity: low\n"
			require.NoError(b, e.Load([]Source{src("one.yaml", y)}))
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.Eval(ctx, evs[i%len(evs)], nil, t0)
			}
		})
	}
}

// BenchmarkEvalEmpty is the fixed cost per event (filling the variables).
func BenchmarkEvalEmpty(b *testing.B) {
	evs := fixtures.RecentChanges(b)
	e, err := NewEngine(EngineConfig{MaxMatchRate: -1}, nil, zerolog.Nop())
	require.NoError(b, err)
	require.NoError(b, e.Load([]Source{src("one.yaml", "rules:\n  - id: never\n    when: \"false\"\n    severity: low\n")}))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Eval(ctx, evs[i%len(evs)], nil, t0)
	}
}

func quoteYAML(s string) string {
	out := []byte{'\''}
	for _, c := range []byte(s) {
		if c == '\'' {
			out = append(out, '\'')
		}
		if c == '\n' {
			c = ' '
		}
		out = append(out, c)
	}
	return string(append(out, '\''))
}
