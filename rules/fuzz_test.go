package rules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"

	"github.com/rs/zerolog"
)

// FuzzCompileEval compiles arbitrary rule conditions and evaluates those
// that compile on recorded events: no input may panic, hang, or escape
// the bounds; a compile error always carries a position in the file.
func FuzzCompileEval(f *testing.F) {
	for _, s := range []string{
		`user_type == "ip" && edit_delta < -2000`,
		`irlike(summary, "^[A-Z ]+$") and not bot`,
		`rcount("a+", summary) > 2 || contains_any(added_lines, "x", "y")`,
		`in_list("l", user_name) && len(added_links) > 3`,
		`vandalism_score > 0.5 && citation_stale > 0`,
		`len(map(1..1000000, # * 2)) > 0`,
		`all(1..9999, {all(1..9999, {true})})`,
		`len(map(1..10000, repeat(summary, 1000))) > 0`,
		`split(summary, " ")[3] == "x"`,
		`user_nmae == 1`,
		`(a && b`,
		"\"\\u0000\" == summary",
	} {
		f.Add(s)
	}
	evs := fixtures.RecentChanges(f)[:50]
	f.Fuzz(func(t *testing.T, when string) {
		if len(when) > 2000 {
			return
		}
		e, err := NewEngine(EngineConfig{MaxMatchRate: -1, MaxNodes: 200}, nil, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		y := "lists:\n  l: [x]\nrules:\n  - id: f\n    when: " + quoteYAML(when) + "\n    severity: low\n"
		if err := e.Load([]Source{{Name: "f.yaml", Data: []byte(y)}}); err != nil {
			for _, p := range Problems(err) {
				if p.File != "f.yaml" {
					t.Fatalf("problem without its file: %v", p)
				}
				exprErr := errors.Is(p, ErrExpression) || errors.Is(p, ErrUnknownVariable) || errors.Is(p, ErrBadRegexp)
				if exprErr && (p.Line < 5 || p.Col == 0 || p.Rule != "f") {
					t.Fatalf("expression problem without its rule and position: %v", p)
				}
			}
			return
		}
		known := map[string]any{"added_lines": []any{strings.Repeat("a", 100)}}
		for _, ev := range evs {
			e.Eval(context.Background(), ev, known, t0)
		}
	})
}
