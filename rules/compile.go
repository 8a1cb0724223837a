package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Source is the content of one rule file (YAML) or list file (NAME.list,
// NAME.txt), named for error messages.
type Source struct {
	Name string
	Data []byte
}

// IsListFile reports whether a file name is a list file rather than a rule file.
func IsListFile(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".list" || ext == ".txt"
}

// CompileOptions bound what a rule file and an expression may be. The
// bounds are checked before anything is parsed, so a hostile file is an
// error, never a stack overflow or an allocation the size of the input.
type CompileOptions struct {
	MaxNodes     uint // AST nodes per expression (default 2000)
	MaxExprBytes int  // bytes of one expression's source (default 16 KiB)
	MaxDepth     int  // nesting of brackets in one expression (default 64)
	MaxFileBytes int  // bytes of one list file (default 8 MiB)
	MaxRuleBytes int  // bytes of all rule (YAML) files together (default 4 MiB)
	MaxRules     int  // rules across all files (default 10000)
}

// Default bounds of CompileOptions.
const (
	DefaultMaxExprBytes = 16 << 10
	DefaultMaxDepth     = 64
	DefaultMaxFileBytes = 8 << 20
	DefaultMaxRuleBytes = 4 << 20
	DefaultMaxRules     = 10000
)

func (o *CompileOptions) defaults() {
	if o.MaxNodes == 0 {
		o.MaxNodes = 2000
	}
	if o.MaxExprBytes <= 0 {
		o.MaxExprBytes = DefaultMaxExprBytes
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.MaxRuleBytes <= 0 {
		o.MaxRuleBytes = DefaultMaxRuleBytes
	}
	if o.MaxRules <= 0 {
		o.MaxRules = DefaultMaxRules
	}
}

// Rule is a compiled rule: its spec, where it came from, its expressions
// and what they reference.
type Rule struct {
	Spec
	Version string
	File    string
	Line    int

	// operands are the top-level && parts of when, in source order.
	operands []*operand
	score    *operand // nil: static score
	static   float64
	// Vars are the variables the rule references, sorted.
	Vars []string
	// Need is the enrichment the whole rule needs.
	Need Need
}

// operand is one compiled condition (or the score expression).
type operand struct {
	src     string
	prog    *vm.Program
	need    Need
	derived derived
	vars    []string
}

// Operands returns the source of the rule's top-level conditions.
func (r *Rule) Operands() []string {
	out := make([]string, len(r.operands))
	for i, o := range r.operands {
		out[i] = o.src
	}
	return out
}

// compiled is the result of compiling a set of sources.
type compiled struct {
	rules []*Rule
	lists *Lists
}

// compiler holds what every expression is compiled with.
type compiler struct {
	opts  []expr.Option
	rc    *regexCache
	lists *Lists
	o     CompileOptions
}

// Compile loads rule and list files, type-checks every expression and
// returns the rules, or a *LoadError listing every problem. It is what
// `rcwatch rules lint` runs.
func Compile(srcs []Source, o CompileOptions) ([]*Rule, *Lists, error) {
	c, err := compileSources(srcs, o, newRegexCache(4096))
	if err != nil {
		return nil, nil, err
	}
	return c.rules, c.lists, nil
}

type parsedFile struct {
	src   Source
	spec  ruleFile
	root  *yaml.Node
	lines []string
}

func compileSources(srcs []Source, o CompileOptions, rc *regexCache) (*compiled, error) {
	o.defaults()
	var problems []*CompileError
	lists := &Lists{}
	var files []*parsedFile
	nrules, ruleBytes := 0, 0
	for _, s := range srcs {
		if !IsListFile(s.Name) {
			ruleBytes += len(s.Data)
		}
	}
	if ruleBytes > o.MaxRuleBytes {
		// Refused before parsing any: the cost of a load is bounded.
		return nil, &LoadError{Problems: []*CompileError{{Err: ErrTooLarge,
			Msg: fmt.Sprintf("rule files are %d bytes together, over the limit of %d bytes", ruleBytes, o.MaxRuleBytes)}}}
	}
	for _, s := range srcs {
		if IsListFile(s.Name) && len(s.Data) > o.MaxFileBytes {
			problems = append(problems, &CompileError{File: s.Name, Err: ErrTooLarge,
				Msg: fmt.Sprintf("list file is %d bytes, over the limit of %d bytes per file; split it", len(s.Data), o.MaxFileBytes)})
			continue
		}
		if IsListFile(s.Name) {
			name := strings.TrimSuffix(filepath.Base(s.Name), filepath.Ext(s.Name))
			entries, p := parseListFile(s.Name, s.Data)
			problems = append(problems, p...)
			lists.add(name, entries)
			continue
		}
		pf, p := parseRuleFile(s)
		problems = append(problems, p...)
		if pf != nil {
			nrules += len(pf.spec.Rules)
			files = append(files, pf)
			for name, entries := range pf.spec.Lists {
				lists.add(name, entries)
			}
		}
	}
	if nrules > o.MaxRules {
		// Refused before compiling any: the cost of a load is bounded.
		problems = append(problems, &CompileError{Err: ErrTooLarge,
			Msg: fmt.Sprintf("%d rules, over the limit of %d rules", nrules, o.MaxRules)})
		return nil, &LoadError{Problems: problems}
	}
	if err := lists.finish(); err != nil {
		problems = append(problems, &CompileError{Msg: err.Error(), Err: ErrInvalidRule})
	}
	c := &compiler{opts: exprOptions(rc, o.MaxNodes), rc: rc, lists: lists, o: o}
	out := &compiled{lists: lists}
	seen := map[string]string{}
	for _, pf := range files {
		items := ruleNodes(pf.root)
		for i := range pf.spec.Rules {
			var item *yaml.Node
			if i < len(items) {
				item = items[i]
			}
			r, p := c.compileRule(pf, &pf.spec.Rules[i], item)
			problems = append(problems, p...)
			if r == nil {
				continue
			}
			if where, dup := seen[r.ID]; dup {
				problems = append(problems, &CompileError{File: pf.src.Name, Rule: r.ID, Line: r.Line,
					Msg: "duplicate rule id (first defined at " + where + ")", Err: ErrInvalidRule})
				continue
			}
			seen[r.ID] = fmt.Sprintf("%s:%d", pf.src.Name, r.Line)
			out.rules = append(out.rules, r)
		}
	}
	if len(problems) > 0 {
		return nil, &LoadError{Problems: problems}
	}
	return out, nil
}

var yamlLineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// parseRuleFile decodes a rule file strictly (unknown keys are errors) and
// keeps its node tree for positions.
func parseRuleFile(s Source) (*parsedFile, []*CompileError) {
	pf := &parsedFile{src: s, lines: strings.Split(string(s.Data), "\n")}
	var root yaml.Node
	if err := yaml.Unmarshal(s.Data, &root); err != nil {
		return nil, yamlProblems(s.Name, err, nil)
	}
	pf.root = &root
	dec := yaml.NewDecoder(bytes.NewReader(s.Data))
	dec.KnownFields(true)
	if err := dec.Decode(&pf.spec); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlProblems(s.Name, err, &root)
	}
	return pf, nil
}

// yamlProblems turns a yaml.v3 error into positioned problems.
func yamlProblems(name string, err error, root *yaml.Node) []*CompileError {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]*CompileError, 0, len(msgs))
	for _, m := range msgs {
		ce := &CompileError{File: name, Msg: strings.TrimPrefix(m, "yaml: "), Err: ErrInvalidRule}
		if sm := yamlLineRe.FindStringSubmatch(m); sm != nil {
			ce.Line, _ = strconv.Atoi(sm[1])
			ce.Msg = sm[2]
			if root != nil {
				ce.Rule = ruleAtLine(root, ce.Line)
				if f, ok := strings.CutPrefix(ce.Msg, "field "); ok {
					key, _, _ := strings.Cut(f, " ")
					ce.Col = keyColumn(root, ce.Line, key)
					ce.Msg = "unknown field " + strconv.Quote(key)
				}
			}
		}
		out = append(out, ce)
	}
	return out
}

// ruleNodes returns the mapping node of each rule in the rules: sequence.
func ruleNodes(root *yaml.Node) []*yaml.Node {
	if root == nil || len(root.Content) == 0 {
		return nil
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "rules" && doc.Content[i+1].Kind == yaml.SequenceNode {
			return doc.Content[i+1].Content
		}
	}
	return nil
}

// ruleAtLine names the rule whose mapping spans line.
func ruleAtLine(root *yaml.Node, line int) string {
	id := ""
	for _, n := range ruleNodes(root) {
		if n.Line > line {
			break
		}
		id = ""
		if v := mapValue(n, "id"); v != nil {
			id = v.Value
		}
	}
	return id
}

func keyColumn(n *yaml.Node, line int, key string) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Line == line && k.Value == key {
				return k.Column
			}
		}
	}
	for _, c := range n.Content {
		if col := keyColumn(c, line, key); col > 0 {
			return col
		}
	}
	return 0
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func (c *compiler) compileRule(pf *parsedFile, s *Spec, item *yaml.Node) (*Rule, []*CompileError) {
	r := &Rule{Spec: *s, Version: s.Version(), File: pf.src.Name}
	if item != nil {
		r.Line = item.Line
	}
	var problems []*CompileError
	bad := func(line, col int, err error, format string, args ...any) {
		problems = append(problems, &CompileError{File: pf.src.Name, Rule: s.ID, Line: line, Col: col,
			Msg: fmt.Sprintf(format, args...), Err: err})
	}
	for _, fp := range s.validate() {
		n := item
		for _, k := range strings.Split(fp.key, ".") {
			if k == "" {
				break
			}
			if v := mapValue(n, k); v != nil {
				n = v
			}
		}
		line, col := r.Line, 0
		if n != nil {
			line, col = n.Line, n.Column
		}
		bad(line, col, ErrInvalidRule, "%s", fp.msg)
	}
	whenNode, scoreNode := mapValue(item, "when"), mapValue(item, "score")
	if strings.TrimSpace(s.When) != "" {
		ops, p := c.compileWhen(pf, s, whenNode)
		problems = append(problems, p...)
		r.operands = ops
	}
	switch sc := s.Score.(type) {
	case nil:
		r.static = 1
	case int:
		r.static = float64(sc)
	case float64:
		r.static = sc
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(sc), 64); err == nil {
			r.static = f
			break
		}
		if err := c.checkShape(sc); err != nil {
			problems = append(problems, c.shapeError(pf, s.ID, scoreNode, "score", err))
			break
		}
		prog, err := expr.Compile(sc, append(c.opts, expr.AsFloat64())...)
		if err != nil {
			problems = append(problems, c.exprError(pf, s.ID, scoreNode, sc, "score", err))
			break
		}
		op, p := c.analyse(pf, s.ID, scoreNode, sc, prog)
		problems = append(problems, p...)
		r.score = op
	default:
		line := r.Line
		if scoreNode != nil {
			line = scoreNode.Line
		}
		bad(line, 0, ErrInvalidRule, "score: want a number or an expression string, got %T", sc)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	vars := map[string]bool{}
	for _, o := range append(append([]*operand(nil), r.operands...), r.score) {
		if o == nil {
			continue
		}
		r.Need = r.Need.union(o.need)
		for _, v := range o.vars {
			vars[v] = true
		}
	}
	for v := range vars {
		r.Vars = append(r.Vars, v)
	}
	sort.Strings(r.Vars)
	return r, nil
}

// compileWhen compiles the whole condition (for its errors and type), then
// each top-level && operand on its own, so that the cheap ones can run
// before any enrichment.
func (c *compiler) compileWhen(pf *parsedFile, s *Spec, node *yaml.Node) ([]*operand, []*CompileError) {
	src := s.When
	if err := c.checkShape(src); err != nil {
		return nil, []*CompileError{c.shapeError(pf, s.ID, node, "when", err)}
	}
	whole, err := expr.Compile(src, append(c.opts, expr.AsBool())...)
	if err != nil {
		return nil, []*CompileError{c.exprError(pf, s.ID, node, src, "when", err)}
	}
	wop, problems := c.analyse(pf, s.ID, node, src, whole)
	if len(problems) > 0 {
		return nil, problems
	}
	parts := splitAnd(src)
	if len(parts) < 2 {
		return []*operand{wop}, nil
	}
	ops := make([]*operand, 0, len(parts))
	for _, p := range parts {
		prog, err := expr.Compile(p, append(c.opts, expr.AsBool())...)
		if err != nil {
			return []*operand{wop}, nil // a split that does not stand alone: keep the whole
		}
		op, probs := c.analyse(pf, s.ID, node, p, prog)
		if len(probs) > 0 {
			return []*operand{wop}, nil
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// splitAnd splits src at its top-level && (or `and`) operators; one part
// when there is none.
func splitAnd(src string) []string {
	tree, err := parser.Parse(src)
	if err != nil {
		return []string{src}
	}
	runes := []rune(src)
	var out []string
	var walk func(n ast.Node, start, end int)
	walk = func(n ast.Node, start, end int) {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			loc := b.Location()
			if loc.From >= start && loc.To <= end && loc.From < loc.To {
				walk(b.Left, start, loc.From)
				walk(b.Right, loc.To, end)
				return
			}
		}
		out = append(out, strings.TrimSpace(string(runes[start:end])))
	}
	walk(tree.Node, 0, len(runes))
	return out
}

// analyse walks a compiled expression's AST: the variables it references
// (→ Need), constant regular expressions and list names (checked now).
func (c *compiler) analyse(pf *parsedFile, ruleID string, node *yaml.Node, src string, prog *vm.Program) (*operand, []*CompileError) {
	op := &operand{src: src, prog: prog}
	tree, err := parser.Parse(src)
	if err != nil {
		return op, []*CompileError{c.exprError(pf, ruleID, node, src, "expression", err)}
	}
	var problems []*CompileError
	at := func(loc file.Location, err error, msg string) {
		line, col := offsetLineCol(src, loc.From)
		fl, fc := exprPosition(pf, node, line, col)
		problems = append(problems, &CompileError{File: pf.src.Name, Rule: ruleID, Line: fl, Col: fc, Msg: msg, Err: err})
	}
	vars := map[string]bool{}
	ast.Walk(&tree.Node, visitor(func(n ast.Node) {
		switch n := n.(type) {
		case *ast.PredicateNode:
			// Evaluation must stay linear in the input: no iteration inside
			// an iteration (all, any, map, filter, … within another).
			nested := false
			ast.Walk(&n.Node, visitor(func(m ast.Node) {
				if _, ok := m.(*ast.PredicateNode); ok {
					nested = true
				}
			}))
			if nested {
				at(n.Location(), ErrExpression, "nested iteration (a predicate inside a predicate) is not allowed: evaluation must stay linear")
			}
		case *ast.BinaryNode:
			if n.Operator == ".." {
				lo, lok := n.Left.(*ast.IntegerNode)
				hi, hok := n.Right.(*ast.IntegerNode)
				if !lok || !hok || hi.Value-lo.Value > maxRange {
					at(n.Location(), ErrExpression, fmt.Sprintf("a range needs constant bounds at most %d apart", maxRange))
				}
			}
		case *ast.IdentifierNode:
			if vi, ok := varTable[n.Value]; ok && !vars[n.Value] {
				vars[n.Value] = true
				op.need = op.need.union(vi.need)
				op.derived |= vi.derived
			}
		case *ast.CallNode:
			id, ok := n.Callee.(*ast.IdentifierNode)
			if !ok {
				return
			}
			if rf, ok := regexFuncs[id.Value]; ok && rf.arg < len(n.Arguments) {
				if sn, ok := n.Arguments[rf.arg].(*ast.StringNode); ok {
					if _, err := c.rc.get(sn.Value, rf.fold); err != nil {
						at(sn.Location(), ErrBadRegexp, err.Error())
					}
				}
			}
			if (id.Value == "in_list" || id.Value == "list_contains") && len(n.Arguments) > 0 {
				if sn, ok := n.Arguments[0].(*ast.StringNode); ok && c.lists.Get(sn.Value) == nil {
					msg := fmt.Sprintf("unknown list %q", sn.Value)
					if names := c.lists.Names(); len(names) > 0 {
						msg += " (lists: " + strings.Join(names, ", ") + ")"
					}
					at(sn.Location(), ErrUnknownList, msg)
				}
			}
		}
	}))
	if g, at2 := stringGrowth(tree.Node); g > maxGrowth {
		at(at2.Location(), ErrExpression, fmt.Sprintf("builds a string up to %.0f times the size of the variables it reads (the limit is %d): evaluation cost must stay linear", g, maxGrowth))
	}
	for v := range vars {
		op.vars = append(op.vars, v)
	}
	sort.Strings(op.vars)
	return op, problems
}

// maxGrowth bounds how many times the size of the variables it reads an
// expression may build a string, as far as lint can tell (constant ranges,
// repeat counts, let chains); what depends on the data is bounded at run
// time (EngineConfig.MaxStringBytes).
const maxGrowth = 64

// stringGrowth estimates the largest string an expression builds, in
// multiples of the largest variable it reads, and the node building it.
func stringGrowth(root ast.Node) (float64, ast.Node) {
	worst, where := 0.0, root
	// scope: the growth of let variables, of #acc and of # (an element of
	// the collection iterated; 0 in a range of integers).
	type scope struct {
		lets      map[string]float64
		acc, elem float64
	}
	rangeSize := func(n ast.Node) (float64, bool) {
		if b, ok := n.(*ast.BinaryNode); ok && b.Operator == ".." {
			lo, lok := b.Left.(*ast.IntegerNode)
			hi, hok := b.Right.(*ast.IntegerNode)
			if lok && hok {
				return float64(max(0, hi.Value-lo.Value+1)), true
			}
			return 1, true
		}
		return 1, false
	}
	var g func(n ast.Node, sc scope) float64
	g = func(n ast.Node, sc scope) (out float64) {
		defer func() {
			if out > worst {
				worst, where = out, n
			}
		}()
		sum := func(ns ...ast.Node) float64 {
			t := 0.0
			for _, x := range ns {
				t += g(x, sc)
			}
			return t
		}
		switch n := n.(type) {
		case *ast.IdentifierNode:
			if v, ok := sc.lets[n.Value]; ok {
				return v
			}
			if vi, ok := varTable[n.Value]; ok && (vi.typ.Kind() == reflect.String || vi.typ.Kind() == reflect.Slice) {
				return 1
			}
		case *ast.PointerNode:
			if n.Name == "acc" {
				return sc.acc
			}
			return sc.elem
		case *ast.MemberNode:
			return g(n.Node, sc)
		case *ast.SliceNode:
			return g(n.Node, sc)
		case *ast.ChainNode:
			return g(n.Node, sc)
		case *ast.BinaryNode:
			l, r := g(n.Left, sc), g(n.Right, sc)
			if n.Operator == "+" || n.Operator == "??" {
				return l + r
			}
		case *ast.UnaryNode:
			g(n.Node, sc)
		case *ast.ConditionalNode:
			g(n.Cond, sc)
			return max(g(n.Exp1, sc), g(n.Exp2, sc))
		case *ast.VariableDeclaratorNode:
			inner := make(map[string]float64, len(sc.lets)+1)
			for k, v := range sc.lets {
				inner[k] = v
			}
			inner[n.Name] = g(n.Value, sc)
			return g(n.Expr, scope{inner, sc.acc, sc.elem})
		case *ast.SequenceNode:
			t := 0.0
			for _, x := range n.Nodes {
				t = g(x, sc)
			}
			return t
		case *ast.ArrayNode:
			return sum(n.Nodes...)
		case *ast.MapNode:
			return sum(n.Pairs...)
		case *ast.PairNode:
			return sum(n.Key, n.Value)
		case *ast.CallNode:
			t := sum(n.Arguments...)
			if id, ok := n.Callee.(*ast.IdentifierNode); ok {
				switch id.Value {
				case "lcase", "ucase", "norm", "ccnorm":
					return t
				}
			}
		case *ast.PredicateNode:
			return g(n.Node, sc)
		case *ast.BuiltinNode:
			args := n.Arguments
			if len(args) == 0 {
				return 0
			}
			coll := g(args[0], sc)
			times, isRange := rangeSize(args[0])
			inner := scope{sc.lets, sc.acc, coll}
			if isRange {
				inner.elem = 0
			}
			arg := func(i int, s scope) float64 {
				if i < len(args) {
					return g(args[i], s)
				}
				return 0
			}
			switch n.Name {
			case "repeat":
				k := 1.0
				if c, ok := args[len(args)-1].(*ast.IntegerNode); ok && len(args) > 1 {
					k = float64(c.Value)
				} else {
					arg(1, sc)
				}
				return coll * k
			case "reduce":
				init := arg(2, sc)
				step := arg(1, scope{sc.lets, 0, inner.elem})
				return init + times*step
			case "map":
				return times * arg(1, inner)
			case "replace":
				k := float64(maxGrowth + 1)
				if c, ok := args[len(args)-1].(*ast.StringNode); ok && len(args) == 3 {
					k = float64(max(1, len(c.Value)))
				} else if arg(2, sc) == 0 {
					k = 1
				}
				arg(1, sc)
				return coll * k
			case "filter", "sort", "sortBy", "reverse", "uniq", "take", "first", "last", "find", "findLast",
				"upper", "lower", "trim", "trimPrefix", "trimSuffix", "string", "toJSON", "toBase64", "fromBase64",
				"split", "splitAfter", "concat", "flatten", "get", "join":
				t := coll
				for i := 1; i < len(args); i++ {
					if _, pred := args[i].(*ast.PredicateNode); pred {
						arg(i, inner)
					} else {
						t += arg(i, sc)
					}
				}
				return t
			default:
				for i := 1; i < len(args); i++ {
					arg(i, inner)
				}
			}
		}
		return 0
	}
	g(root, scope{})
	return worst, where
}

// checkShape bounds an expression's size and bracket nesting before it is
// parsed: expr's parser recurses once per nesting level and counts nodes
// only once a level returns, so a deep enough expression would overflow
// the Go stack (and kill the process) before any node limit applies.
func (c *compiler) checkShape(src string) error {
	if len(src) > c.o.MaxExprBytes {
		return fmt.Errorf("%w: expression is %d bytes, over the limit of %d", ErrTooLarge, len(src), c.o.MaxExprBytes)
	}
	if d := nesting(src); d > c.o.MaxDepth {
		return fmt.Errorf("%w: expression nests brackets %d deep, over the limit of %d", ErrTooLarge, d, c.o.MaxDepth)
	}
	return nil
}

func (c *compiler) shapeError(pf *parsedFile, ruleID string, node *yaml.Node, what string, err error) *CompileError {
	ce := &CompileError{File: pf.src.Name, Rule: ruleID, Msg: what + ": " + strings.TrimPrefix(err.Error(), ErrTooLarge.Error()+": "), Err: ErrTooLarge}
	if node != nil {
		ce.Line, ce.Col = node.Line, node.Column
	}
	return ce
}

// nesting is the deepest bracket nesting of src, outside string literals,
// counting a run of prefix operators (!, -, +, not) as one level each.
func nesting(src string) int {
	depth, deepest, unary := 0, 0, 0
	var quote byte
	operand := true // an operand is expected next (a prefix operator is unary)
	for i := 0; i < len(src); i++ {
		ch := src[i]
		if quote != 0 {
			switch {
			case ch == '\\' && quote != '`':
				i++
			case ch == quote:
				quote, operand = 0, false
			}
			continue
		}
		switch ch {
		case '"', '\'', '`':
			quote = ch
		case '(', '[', '{':
			depth++
			operand = true
		case ')', ']', '}':
			depth--
			unary, operand = 0, false
		case '!', '-', '+':
			if operand && (ch != '!' || i+1 >= len(src) || src[i+1] != '=') {
				unary++
			}
			operand = true
		case ' ', '\t', '\n', '\r':
		default:
			if operand && strings.HasPrefix(src[i:], "not") && (i+3 == len(src) || !isIdent(src[i+3])) && (i == 0 || !isIdent(src[i-1])) {
				unary++
				i += 2
				continue
			}
			if isIdent(ch) {
				unary, operand = 0, false
			} else {
				operand = true // another operator
			}
		}
		deepest = max(deepest, depth+unary)
	}
	return deepest
}

func isIdent(ch byte) bool {
	return ch == '_' || ch == '$' || ch == '#' || ch == '.' || ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= 0x80
}

// maxRange bounds a..b ranges, which the memory budget alone would allow
// to be iterated inside other iterations.
const maxRange = 10000

type visitor func(ast.Node)

func (v visitor) Visit(n *ast.Node) { v(*n) }

// exprError positions an expr compile error in the file.
func (c *compiler) exprError(pf *parsedFile, ruleID string, node *yaml.Node, src, what string, err error) *CompileError {
	ce := &CompileError{File: pf.src.Name, Rule: ruleID, Msg: what + ": " + err.Error(), Err: ErrExpression}
	var fe *file.Error
	if errors.As(err, &fe) {
		line, col := fe.Line, fe.Column
		if line == 0 {
			line, col = offsetLineCol(src, fe.From)
		}
		ce.Line, ce.Col = exprPosition(pf, node, line, col)
		ce.Msg = what + ": " + fe.Message
		if name, ok := strings.CutPrefix(fe.Message, "unknown name "); ok {
			ce.Err = ErrUnknownVariable
			ce.Msg = what + ": unknown variable or function " + name
			if s := suggest(name); s != "" {
				ce.Msg += " (did you mean " + s + "?)"
			}
		} else if strings.HasPrefix(fe.Message, "unknown func") {
			ce.Err = ErrUnknownVariable
		}
	} else if node != nil {
		ce.Line, ce.Col = node.Line, node.Column
	}
	return ce
}

// offsetLineCol converts a rune offset in src to a 1-based line and 0-based column.
func offsetLineCol(src string, off int) (int, int) {
	line, col, i := 1, 0, 0
	for _, r := range src {
		if i == off {
			break
		}
		if r == '\n' {
			line++
			col = 0
		} else {
			col++
		}
		i++
	}
	return line, col
}

// exprPosition maps a position inside an expression (1-based line, 0-based
// column, as expr reports it) to a 1-based line and column of the file,
// given the YAML scalar node that holds the expression.
func exprPosition(pf *parsedFile, node *yaml.Node, line, col int) (int, int) {
	if node == nil {
		return 0, 0
	}
	switch {
	case node.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		// Content starts on the next line, indented.
		fl := node.Line + line
		indent := 0
		for l := node.Line; l < len(pf.lines); l++ { // pf.lines[l] is file line l+1
			if t := strings.TrimLeft(pf.lines[l], " "); t != "" {
				indent = len(pf.lines[l]) - len(t)
				break
			}
		}
		return fl, indent + col + 1
	case node.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		if line == 1 {
			return node.Line, node.Column + 1 + col
		}
		return node.Line + line - 1, col + 1
	default:
		// A plain scalar: multi-line plain scalars are folded into one
		// line, so walk the source lines.
		l, c := node.Line, node.Column
		for l-1 < len(pf.lines) {
			seg := []rune(strings.TrimRight(pf.lines[l-1], " \t"))
			avail := len(seg) - (c - 1)
			if col < avail || l == len(pf.lines) {
				return l, c + col
			}
			col -= avail + 1
			l++
			if l-1 >= len(pf.lines) {
				break
			}
			next := pf.lines[l-1]
			c = len(next) - len(strings.TrimLeft(next, " \t")) + 1
		}
		return node.Line, node.Column + col
	}
}

// suggest returns the closest variable or function name to a typo.
func suggest(name string) string {
	best, bestD := "", 3
	cands := append(VarNames(), FuncNames()...)
	for _, c := range cands {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if a == b {
		return 0
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
