package rules

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"

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
		expr.Patch(costPatcher{}),
		expr.Function(fnAdd, checkedAdd,
			new(func(string, string, any) string), new(func(float64, float64, any) float64), new(func(any, any, any) any)),
		expr.Function(fnDiv, checkedDiv, new(func(any, any) float64)),
		expr.Function(fnArith, checkedArith, new(func(string, float64, float64) float64), new(func(string, any, any) any)),
		expr.Function(fnTick, func(p ...any) (any, error) { return true, meterOf(p[0]).tick() }, new(func(any) bool)),
		expr.Function(fnRepeat, func(p ...any) (any, error) {
			s, n := p[0].(string), runtime.ToInt(p[1])
			if n < 0 {
				return nil, fmt.Errorf("repeat: negative count %d", n)
			}
			if n > 0 && len(s) > math.MaxInt32/n {
				return nil, fmt.Errorf("%w: repeat(%d bytes, %d)", ErrCost, len(s), n)
			}
			if err := meterOf(p[2]).charge(len(s) * n); err != nil {
				return nil, err
			}
			return strings.Repeat(s, n), nil
		}, new(func(string, any, any) string)),
		expr.Function(fnJoin, func(p ...any) (any, error) {
			parts := toStrings(p[0])
			sep := ""
			if len(p) == 3 {
				sep = p[1].(string)
			}
			n := len(sep) * len(parts)
			for _, x := range parts {
				n += len(x)
			}
			if err := meterOf(p[len(p)-1]).charge(n); err != nil {
				return nil, err
			}
			return strings.Join(parts, sep), nil
		}, new(func([]string, any) string), new(func([]any, any) string),
			new(func([]string, string, any) string), new(func([]any, string, any) string)),
		expr.Function(fnReplace, func(p ...any) (any, error) {
			s, old, nw := p[0].(string), p[1].(string), p[2].(string)
			if grow := len(nw) - len(old); grow > 0 {
				n := strings.Count(s, old)
				if old == "" {
					n = utf8.RuneCountInString(s) + 1
				}
				if err := meterOf(p[3]).charge(len(s) + n*grow); err != nil {
					return nil, err
				}
			}
			return strings.ReplaceAll(s, old, nw), nil
		}, new(func(string, string, string, any) string)),
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

// Names of the checked operations the cost patcher substitutes (a rule
// author does not write them).
const (
	fnAdd     = "rcw_add"
	fnDiv     = "rcw_div"
	fnArith   = "rcw_arith"
	fnTick    = "rcw_tick"
	fnRepeat  = "rcw_repeat"
	fnJoin    = "rcw_join"
	fnReplace = "rcw_replace"
)

// costMeter bounds one run of one expression beyond what expr's memory
// budget counts (it does not count the strings an expression builds, nor
// time): the bytes of strings built by +, repeat, join and replace, and the
// time its iterations take, from the first. A run
// over either fails with ErrCost.
type costMeter struct {
	maxBytes int64
	maxTime  time.Duration
	left     int64     // bytes left in this run
	start    time.Time // the first iteration of this run
}

func (m *costMeter) reset() {
	m.left, m.start = m.maxBytes, time.Time{}
}

func (m *costMeter) charge(n int) error {
	if m == nil {
		return nil
	}
	m.left -= int64(n)
	if m.left < 0 {
		return fmt.Errorf("%w: builds more than %d bytes of strings", ErrCost, m.maxBytes)
	}
	return m.tick()
}

func (m *costMeter) tick() error {
	if m == nil {
		return nil
	}
	now := time.Now() // measuring a duration
	if m.start.IsZero() {
		m.start = now
		return nil
	}
	if d := now.Sub(m.start); d > m.maxTime {
		return fmt.Errorf("%w: still running after %v", ErrCost, d.Round(time.Millisecond))
	}
	return nil
}

// meterOf is the meter of the environment an expression runs on ($env).
func meterOf(env any) *costMeter {
	if v, ok := env.(*Vars); ok {
		return v.meter
	}
	return nil
}

// errNonFinite: arithmetic that gives an infinity or NaN is a run-time
// error of the rule (docs/RULES.md), not a value that compares true.
var errNonFinite = errors.New("arithmetic result is not a finite number")

func finite(v any) (any, error) {
	if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return nil, errNonFinite
	}
	return v, nil
}

func checkedAdd(p ...any) (any, error) {
	if a, ok := p[0].(string); ok {
		if b, ok := p[1].(string); ok {
			if err := meterOf(p[2]).charge(len(a) + len(b)); err != nil {
				return nil, err
			}
			return a + b, nil
		}
	}
	return finite(runtime.Add(p[0], p[1]))
}

func checkedDiv(p ...any) (any, error) {
	if runtime.ToFloat64(p[1]) == 0 {
		return nil, errors.New("division by zero")
	}
	return finite(runtime.Divide(p[0], p[1]))
}

func checkedArith(p ...any) (any, error) {
	switch p[0].(string) {
	case "*":
		return finite(runtime.Multiply(p[1], p[2]))
	case "-":
		return finite(runtime.Subtract(p[1], p[2]))
	default: // "**", "^"
		return finite(runtime.Exponent(p[1], p[2]))
	}
}

func toStrings(v any) []string {
	switch l := v.(type) {
	case []string:
		return l
	case []any:
		out := make([]string, len(l))
		for i, x := range l {
			s, ok := x.(string)
			if !ok {
				panic(fmt.Sprintf("join: element %d is %T, not a string", i, x))
			}
			out[i] = s
		}
		return out
	}
	panic(fmt.Sprintf("join: %T is not a list of strings", v))
}

// costPatcher rewrites, after type checking, the operations whose cost or
// result expr does not bound into checked calls: string + (bytes charged),
// float arithmetic (non-finite results are errors), repeat, join and replace
// (bytes charged before building), and every iteration of a predicate
// (time). It leaves integer arithmetic and everything else as compiled.
type costPatcher struct{}

func (costPatcher) Visit(n *ast.Node) {
	env := func() ast.Node { return &ast.IdentifierNode{Value: "$env"} }
	call := func(fn string, args ...ast.Node) *ast.CallNode {
		return &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: args}
	}
	switch x := (*n).(type) {
	case *ast.BinaryNode:
		lk, rk, ok := kinds(x.Left, x.Right)
		if !ok {
			return
		}
		str, num := isStr(lk) && isStr(rk), isNum(lk) && isNum(rk)
		anyF := lk == reflect.Float64 || rk == reflect.Float64 || lk == reflect.Interface || rk == reflect.Interface
		switch x.Operator {
		case "+":
			if str || num && anyF {
				ast.Patch(n, call(fnAdd, x.Left, x.Right, env()))
			}
		case "/":
			if num {
				ast.Patch(n, call(fnDiv, x.Left, x.Right))
			}
		case "*", "-", "**", "^":
			if num && (anyF || x.Operator == "**" || x.Operator == "^") {
				ast.Patch(n, call(fnArith, &ast.StringNode{Value: x.Operator}, x.Left, x.Right))
			}
		}
	case *ast.BuiltinNode:
		switch x.Name {
		case "repeat", "join", "replace":
			if x.Name == "replace" && len(x.Arguments) != 3 {
				return
			}
			fn := map[string]string{"repeat": fnRepeat, "join": fnJoin, "replace": fnReplace}[x.Name]
			ast.Patch(n, call(fn, append(append([]ast.Node(nil), x.Arguments...), env())...))
		}
	case *ast.PredicateNode:
		if _, done := x.Node.(*ast.VariableDeclaratorNode); done {
			return
		}
		x.Node = &ast.VariableDeclaratorNode{Name: fmt.Sprintf("rcw_iteration_%p", x), Value: call(fnTick, env()), Expr: x.Node}
	}
}

// kinds are the reflect kinds of two operands' checked types; !ok when the
// check did not type them (the compile reports that error).
func kinds(l, r ast.Node) (reflect.Kind, reflect.Kind, bool) {
	lt, rt := l.Type(), r.Type()
	if lt == nil || rt == nil {
		return 0, 0, false
	}
	return lt.Kind(), rt.Kind(), true
}

func isStr(k reflect.Kind) bool { return k == reflect.String || k == reflect.Interface }

func isNum(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64, reflect.Interface:
		return true
	}
	return false
}

// FuncNames lists the functions rule authors can call (besides expr's
// builtins such as len, lower, upper, any, all, filter, join).
func FuncNames() []string {
	return []string{"ccnorm", "contains_any", "in_list", "ip_in_range", "irlike", "lcase", "length",
		"list_contains", "nonsense", "norm", "profanity", "rcount", "rlike", "specialratio", "ucase"}
}
