package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
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

// CompileOptions bound what an expression may be.
type CompileOptions struct {
	MaxNodes uint // AST nodes per expression (default 2000)
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
	if o.MaxNodes == 0 {
		o.MaxNodes = 2000
	}
	var problems []*CompileError
	lists := &Lists{}
	var files []*parsedFile
	for _, s := range srcs {
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
			files = append(files, pf)
			for name, entries := range pf.spec.Lists {
				lists.add(name, entries)
			}
		}
	}
	if err := lists.finish(); err != nil {
		problems = append(problems, &CompileError{Msg: err.Error(), Err: ErrInvalidRule})
	}
	c := &compiler{opts: exprOptions(rc, o.MaxNodes), rc: rc, lists: lists}
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
	for v := range vars {
		op.vars = append(op.vars, v)
	}
	sort.Strings(op.vars)
	return op, problems
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
