package rules

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/expr-lang/expr"

	"github.com/rcwatch/rcwatch/rules/detect"
)

// regexCache holds compiled regular expressions (RE2: linear time, no
// backtracking) by pattern, so a pattern is compiled once. It is bounded:
// past max entries, patterns are compiled per call and not kept.
type regexCache struct {
	mu  sync.RWMutex
	m   map[string]*regexp.Regexp
	max int
}

func newRegexCache(max int) *regexCache {
	return &regexCache{m: map[string]*regexp.Regexp{}, max: max}
}

func (c *regexCache) get(pattern string, fold bool) (*regexp.Regexp, error) {
	key := pattern
	if fold {
		key = "(?i)" + pattern
	}
	c.mu.RLock()
	re, ok := c.m[key]
	c.mu.RUnlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(key)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadRegexp, pattern, err)
	}
	c.mu.Lock()
	if len(c.m) < c.max {
		c.m[key] = re
	}
	c.mu.Unlock()
	return re, nil
}

// regexFuncs are the functions whose argument at regexArg is a pattern,
// checked at load when it is a constant.
var regexFuncs = map[string]struct {
	arg  int
	fold bool
}{
	"rlike": {1, false}, "irlike": {1, true}, "rcount": {0, true},
}

// textOf is a string argument, or a list of lines joined by "\n" (as
// AbuseFilter casts added_lines to a string).
func textOf(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []string:
		return strings.Join(s, "\n")
	case []any:
		parts := make([]string, 0, len(s))
		for _, e := range s {
			parts = append(parts, fmt.Sprint(e))
		}
		return strings.Join(parts, "\n")
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// exprOptions are the compile options shared by every expression: the Vars
// environment, the functions, and the size bound.
func exprOptions(rc *regexCache, maxNodes uint) []expr.Option {
	str := func(f func(string) any) func(params ...any) (any, error) {
		return func(p ...any) (any, error) { return f(textOf(p[0])), nil }
	}
	text := []any{new(func(string) string), new(func([]string) string)}
	match := func(fold bool) func(p ...any) (any, error) {
		return func(p ...any) (any, error) {
			re, err := rc.get(p[1].(string), fold)
			if err != nil {
				return nil, err
			}
			return re.MatchString(textOf(p[0])), nil
		}
	}
	return []expr.Option{
		expr.Env(Vars{}),
		expr.MaxNodes(maxNodes),
		expr.Function("ccnorm", str(func(s string) any { return detect.CCNorm(s) }), text...),
		expr.Function("norm", str(func(s string) any { return detect.Norm(s) }), text...),
		expr.Function("specialratio", str(func(s string) any { return detect.SpecialRatio(s) }),
			new(func(string) float64), new(func([]string) float64)),
		expr.Function("profanity", str(func(s string) any { return detect.Profanity(s) }),
			new(func(string) int), new(func([]string) int)),
		expr.Function("nonsense", str(func(s string) any { return detect.Nonsense(s) }),
			new(func(string) float64), new(func([]string) float64)),
		expr.Function("lcase", str(func(s string) any { return strings.ToLower(s) }), text...),
		expr.Function("ucase", str(func(s string) any { return strings.ToUpper(s) }), text...),
		expr.Function("length", str(func(s string) any { return utf8.RuneCountInString(s) }),
			new(func(string) int), new(func([]string) int)),
		expr.Function("rlike", match(false), new(func(string, string) bool), new(func([]string, string) bool)),
		expr.Function("irlike", match(true), new(func(string, string) bool), new(func([]string, string) bool)),
		expr.Function("rcount", func(p ...any) (any, error) {
			re, err := rc.get(p[0].(string), true)
			if err != nil {
				return nil, err
			}
			return len(re.FindAllStringIndex(textOf(p[1]), -1)), nil
		}, new(func(string, string) int), new(func(string, []string) int)),
		expr.Function("contains_any", func(p ...any) (any, error) {
			hay := textOf(p[0])
			for _, n := range p[1:] {
				switch n := n.(type) {
				case string:
					if n != "" && strings.Contains(hay, n) {
						return true, nil
					}
				case []string:
					for _, s := range n {
						if s != "" && strings.Contains(hay, s) {
							return true, nil
						}
					}
				}
			}
			return false, nil
		}, new(func(string, ...string) bool), new(func([]string, ...string) bool),
			new(func(string, []string) bool), new(func([]string, []string) bool)),
		expr.Function("ip_in_range", func(p ...any) (any, error) {
			ip, err := netip.ParseAddr(p[0].(string))
			if err != nil {
				return false, nil // not an IP (a named user): not in range
			}
			pfx, err := netip.ParsePrefix(p[1].(string))
			if err != nil {
				return nil, fmt.Errorf("ip_in_range: %w", err)
			}
			return pfx.Contains(ip.Unmap()), nil
		}, new(func(string, string) bool)),
	}
}

// FuncNames lists the functions rule authors can call (besides expr's
// builtins such as len, lower, upper, any, all, filter, join).
func FuncNames() []string {
	return []string{"ccnorm", "contains_any", "in_list", "ip_in_range", "irlike", "lcase", "length",
		"list_contains", "nonsense", "norm", "profanity", "rcount", "rlike", "specialratio", "ucase"}
}
