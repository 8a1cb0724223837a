package rules

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// BenchmarkEvalMetadataOnly is the evaluator's throughput on recorded
// events with no enrichment (metadata only), the pack-shaped rule set.
func BenchmarkEvalMetadataOnly(b *testing.B) {
	evs := fixtureEvents(b)
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

// BenchmarkEvalPerRule is the cost of each rule alone on the same events.
func BenchmarkEvalPerRule(b *testing.B) {
	evs := fixtureEvents(b)
	rs, _, err := Compile([]Source{mustRead(b, "testdata/bench.yaml")}, CompileOptions{})
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
	evs := fixtureEvents(b)
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
