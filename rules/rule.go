// Package rules holds rcwatch's rule language: rule files in YAML, one
// expression language (expr-lang/expr) type-checked against the variables
// of Vars, lists, throttles, the Engine that evaluates every rule on every
// recent change (cheap metadata conditions first, enrichment only when a
// rule still needs it), the evaluator stage (RECENTCHANGE → ALERTS) and the
// backtest behind `rcwatch rules test`.
package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	json "github.com/goccy/go-json"

	"github.com/rcwatch/rcwatch/event"
)

// Errors of loading, matched with errors.Is.
var (
	// ErrUnknownVariable means an expression names a variable or function
	// that does not exist (a typo): the CompileError names where.
	ErrUnknownVariable = errors.New("unknown variable")
	// ErrInvalidRule means a rule's fields are wrong (missing id, unknown
	// severity, bad action…); the CompileError names the rule and line.
	ErrInvalidRule = errors.New("invalid rule")
	// ErrUnknownList means in_list or list_contains names a list that no
	// file defines.
	ErrUnknownList = errors.New("unknown list")
	// ErrBadRegexp means a constant regular expression does not compile (RE2).
	ErrBadRegexp = errors.New("bad regular expression")
	// ErrExpression means an expression does not parse or type-check (a
	// syntax error, mismatched types, not a boolean, too large).
	ErrExpression = errors.New("bad expression")
	// ErrTooLarge means a file, the number of rules or an expression is over
	// a bound of CompileOptions; the message names the limit.
	ErrTooLarge = errors.New("over a limit")
	// ErrCost means one evaluation of a rule went over its budget (string
	// bytes built, memory, or time); the rule does not match that event, and
	// a rule that keeps doing it is disabled.
	ErrCost = errors.New("rule over its evaluation budget")
)

// CompileError is one problem in a rule file: where it is (file, rule id,
// 1-based line and column in the file; 0 when unknown) and what it is.
type CompileError struct {
	File string
	Rule string
	Line int
	Col  int
	Msg  string
	Err  error // a sentinel above, or nil
}

func (e *CompileError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Col > 0 {
				fmt.Fprintf(&b, ":%d", e.Col)
			}
		}
		b.WriteString(": ")
	}
	if e.Rule != "" {
		b.WriteString("rule " + e.Rule + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *CompileError) Unwrap() error { return e.Err }

// LoadError lists every problem found while loading rule files. It unwraps
// to each *CompileError, so errors.As and errors.Is see them all.
type LoadError struct{ Problems []*CompileError }

func (e *LoadError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the problems.
func (e *LoadError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// Problems returns the list of problems in err (a *LoadError or a single
// *CompileError); other errors give one problem without a position.
func Problems(err error) []*CompileError {
	if err == nil {
		return nil
	}
	var le *LoadError
	if errors.As(err, &le) {
		return le.Problems
	}
	var ce *CompileError
	if errors.As(err, &ce) {
		return []*CompileError{ce}
	}
	return []*CompileError{{Msg: err.Error()}}
}

// GroupBy values of a throttle.
const (
	GroupByUser = "user"
	GroupByPage = "page"
	GroupByWiki = "wiki"
)

// Throttle makes a rule fire only after Count matches within Window in one
// group (the same user, page or wiki), as AbuseFilter's throttle does. After
// firing, the group's count starts again.
type Throttle struct {
	Count   int           `yaml:"count" json:"count"`
	Window  time.Duration `yaml:"window" json:"window"`
	GroupBy string        `yaml:"group_by" json:"group_by"`
}

// Spec is a rule as written in a rule file.
type Spec struct {
	ID          string    `yaml:"id" json:"id"`
	Description string    `yaml:"description" json:"description,omitempty"`
	Enabled     *bool     `yaml:"enabled" json:"enabled,omitempty"` // default true
	When        string    `yaml:"when" json:"when"`
	Severity    string    `yaml:"severity" json:"severity"`
	Score       any       `yaml:"score" json:"score,omitempty"` // a number or an expression giving one
	Actions     []string  `yaml:"actions" json:"actions,omitempty"`
	Throttle    *Throttle `yaml:"throttle" json:"throttle,omitempty"`
	Tags        []string  `yaml:"tags" json:"tags,omitempty"`
	Owner       string    `yaml:"owner" json:"owner,omitempty"`
	// MaxMatchRate overrides the engine's auto-disable threshold for this
	// rule (1 never disables it).
	MaxMatchRate *float64 `yaml:"max_match_rate" json:"max_match_rate,omitempty"`
}

// IsEnabled reports the enabled flag (true when absent).
func (s *Spec) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// Version is a short hash of the rule's definition: it changes whenever the
// rule does, and names the exact rule an alert came from.
func (s *Spec) Version() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// ruleFile is the top level of a rule file.
type ruleFile struct {
	Lists map[string][]listEntrySpec `yaml:"lists"`
	Rules []Spec                     `yaml:"rules"`
}

var ruleIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$`)

// fieldProblem is a problem with one field (a key path such as
// "throttle.count"; "" for the rule itself).
type fieldProblem struct{ key, msg string }

// validate checks the fields of a rule other than its expressions and
// returns every problem.
func (s *Spec) validate() []fieldProblem {
	var p []fieldProblem
	add := func(key, format string, args ...any) {
		p = append(p, fieldProblem{key, fmt.Sprintf(format, args...)})
	}
	switch {
	case s.ID == "":
		add("", "missing id")
	case !ruleIDPattern.MatchString(s.ID):
		add("id", "id %q: use letters, digits, '_' and '-' (at most 100, starting with a letter or digit)", s.ID)
	}
	if strings.TrimSpace(s.When) == "" {
		add("", "missing when")
	}
	if event.SeverityRank(s.Severity) == 0 {
		add("severity", "severity %q: want info, low, medium, high or critical", s.Severity)
	}
	for _, a := range s.Actions {
		if msg := validateAction(a); msg != "" {
			add("actions", "%s", msg)
		}
	}
	if t := s.Throttle; t != nil {
		if t.Count < 1 {
			add("throttle.count", "throttle count %d: want at least 1", t.Count)
		}
		if t.Window <= 0 {
			add("throttle.window", "throttle window %v: want a positive duration such as 10m", t.Window)
		}
		switch t.GroupBy {
		case GroupByUser, GroupByPage, GroupByWiki:
		default:
			add("throttle.group_by", "throttle group_by %q: want user, page or wiki", t.GroupBy)
		}
	}
	if r := s.MaxMatchRate; r != nil && (*r <= 0 || *r > 1) {
		add("max_match_rate", "max_match_rate %v: want a number in (0, 1]", *r)
	}
	for _, t := range s.Tags {
		if strings.TrimSpace(t) == "" {
			add("tags", "empty tag")
		}
	}
	return p
}

// validateAction checks one action: irc:#channel, feed, or edit:<op>.
func validateAction(a string) string {
	kind, arg, hasArg := strings.Cut(a, ":")
	switch kind {
	case "feed":
		if hasArg {
			return fmt.Sprintf("action %q: feed takes no argument", a)
		}
	case "irc":
		if !hasArg || len(arg) < 2 || !strings.ContainsAny(arg[:1], "#&") || strings.ContainsAny(arg, " ,\a\r\n\x00") {
			return fmt.Sprintf("action %q: want irc:#channel", a)
		}
	case "edit":
		if !hasArg || arg == "" || strings.ContainsAny(arg, " \r\n") {
			return fmt.Sprintf("action %q: want edit:<operation> (e.g. edit:tag, edit:report, edit:revert)", a)
		}
	default:
		return fmt.Sprintf("action %q: want irc:#channel, feed or edit:<operation>", a)
	}
	return ""
}
