package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/rcwatch/rcwatch/rules/detect"
)

// params are the boosting hyper-parameters.
type params struct {
	Trees     int     // boosting rounds
	Depth     int     // tree depth
	Eta       float64 // shrinkage
	Lambda    float64 // L2 penalty on leaf values
	MinHess   float64 // least hessian (weighted p(1-p)) in a child
	Subsample float64 // share of rows each tree sees
	PosWeight float64 // weight of a vandalism case in the trees (0 or 1: as the data); ORES balanced its classes
	Features  int     // tree inputs each split may choose from (drawn per node; 0: all), like scikit-learn's max_features
	Seed      uint64
	LinLambda float64 // the linear stage's pull towards its prior weights
	// GradientSplit scores splits as scikit-learn's GradientBoosting does:
	// least squares on the gradients, each case weighing its case weight
	// (MinHess is then the least case weight in a child), instead of
	// Newton's gain G²/(H+λ). Leaf values are Newton steps either way.
	GradientSplit bool
	// Average fits this many ensembles (seeds Seed, Seed+1, …: other
	// feature draws and rows) and averages them: one ensemble of all
	// their trees, each leaf divided by Average. 0 or 1: one.
	Average int
}

func (p params) String() string {
	split := ""
	if p.GradientSplit {
		split = ", least-squares splits (min hessian: least case weight)"
	}
	if p.Average > 1 {
		split += fmt.Sprintf(", averaged over %d seeds", p.Average)
	}
	return fmt.Sprintf("%d trees of depth %d, eta %g, lambda %g, min hessian %g, subsample %g, %s per split%s, vandalism weight %g, seed %d; linear stage lambda %g",
		p.Trees, p.Depth, p.Eta, p.Lambda, p.MinHess, p.Subsample, featuresText(p.Features), split, p.PosWeight, p.Seed, p.LinLambda)
}

func featuresText(n int) string {
	if n <= 0 {
		return "all inputs"
	}
	return fmt.Sprintf("%d inputs", n)
}

// dataset is the training matrix: rows of inputs (NaN missing), labels and
// weights.
type dataset struct {
	X [][]float64
	Y []bool
	W []float64
}

func (d *dataset) add(x []float64, y bool, w float64) {
	d.X = append(d.X, x)
	d.Y = append(d.Y, y)
	d.W = append(d.W, w)
}

// fit trains a gradient-boosted tree ensemble for the logistic loss
// (Newton steps, exact greedy splits on pre-sorted values, missing values
// sent to the side that gains most). Deterministic for p.Seed.
func fit(d *dataset, p params) *detect.Model {
	n := len(d.X)
	nf := detect.NumInputs
	// The trees' case weights: a vandalism case counts PosWeight times.
	tw := append([]float64(nil), d.W...)
	if p.PosWeight > 0 {
		for i := range tw {
			if d.Y[i] {
				tw[i] *= p.PosWeight
			}
		}
	}
	// Base: the weighted log-odds.
	var sw, sp float64
	for i := range d.Y {
		sw += tw[i]
		if d.Y[i] {
			sp += tw[i]
		}
	}
	base := math.Log(sp / (sw - sp))
	m := &detect.Model{Inputs: detect.InputNames(), Base: base}
	// Rows sorted by each feature (NaNs left out).
	order := make([][]int32, nf)
	for f := 0; f < nf; f++ {
		var idx []int32
		for i := 0; i < n; i++ {
			if !math.IsNaN(d.X[i][f]) {
				idx = append(idx, int32(i))
			}
		}
		sort.SliceStable(idx, func(a, b int) bool { return d.X[idx[a]][f] < d.X[idx[b]][f] })
		order[f] = idx
	}
	z := make([]float64, n)
	g := make([]float64, n)
	h := make([]float64, n)
	splitW := h // the split weights: the hessians, or with GradientSplit the case weights
	if p.GradientSplit {
		splitW = tw
	}
	node := make([]int32, n) // the row's node in the tree being grown; -1: not in this tree's sample
	runs := max(p.Average, 1)
	for run := 0; run < runs; run++ {
		for i := range z {
			z[i] = base
		}
		boost(d, order, tw, g, h, splitW, node, z, m, p, rand.New(rand.NewPCG(p.Seed+uint64(run), 0x5eed)))
	}
	if runs > 1 {
		for _, tr := range m.Trees {
			for j := range tr {
				if tr[j].Left == 0 {
					tr[j].Value = math.Round(tr[j].Value/float64(runs)*1e7) / 1e7
				}
			}
		}
		for i := range z {
			z[i] = m.Logit(d.X[i]) // no linear stage yet
		}
	}
	fitLinear(m, d, z, p.LinLambda)
	return m
}

// boost grows p.Trees trees onto m from the logits z (updated).
func boost(d *dataset, order [][]int32, tw, g, h, splitW []float64, node []int32, z []float64, m *detect.Model, p params, rng *rand.Rand) {
	n := len(d.X)
	for t := 0; t < p.Trees; t++ {
		for i := 0; i < n; i++ {
			pr := detect.Sigmoid(z[i])
			y := 0.0
			if d.Y[i] {
				y = 1
			}
			g[i] = tw[i] * (pr - y)
			h[i] = tw[i] * math.Max(pr*(1-pr), 1e-6)
			node[i] = 0
			if p.Subsample < 1 && rng.Float64() >= p.Subsample {
				node[i] = -1
			}
		}
		tree := growTree(d, order, g, h, splitW, node, p, rng)
		m.Trees = append(m.Trees, tree)
		for i := 0; i < n; i++ {
			z[i] += tree.Eval(d.X[i])
		}
	}
}

// linearPrior is where the linear stage starts and what it is pulled
// towards: hand-set weights that encode what patrollers know (an edit
// summary that says revert, a blanking autosummary, toolbar test text,
// profanity and gibberish inserted …). With 28 vandal edits to learn from,
// the prior carries much of the weight.
var linearPrior = map[string]float64{
	"no_summary": 0.6, "section_summary_only": 0.2, "revert_summary": -1.5, "blank_summary": 1.5, "minor": -0.5,
	"profanity": 1.0, "profanity_removed": -1.0, "informal": 0.4, "nonsense": 1.5, "shouting": 1.0,
	"repeated_chars": 0.5, "test_edit": 2.0, "refs_removed": 0.5, "markup_added": -0.3, "log_removed": 0.3,
	"prose": 0.4, "small_fix": -0.7, "links_added": 0.1, "log10_page_age_days": 0.3,
}

// fitLinear fits the linear stage on the rows whose text is known, with the
// trees' logit z as an offset: weighted logistic loss plus
// λ/2·‖w − prior‖² (the text bias unpenalised), by Newton's method.
func fitLinear(m *detect.Model, d *dataset, z []float64, lambda float64) {
	var cols []int
	for i := 0; i < detect.NumInputs; i++ {
		if detect.IsLinearInput(i) {
			cols = append(cols, i)
		}
	}
	k := len(cols) + 1 // + bias
	prior := make([]float64, k)
	for j, c := range cols {
		prior[j] = linearPrior[detect.InputName(c)]
	}
	beta := append([]float64(nil), prior...)
	beta[k-1] = 0
	var rows []int
	for i := range d.X {
		if !math.IsNaN(d.X[i][detect.TextInput]) {
			rows = append(rows, i)
		}
	}
	m.Linear = make([]float64, detect.NumInputs)
	if len(rows) == 0 {
		return
	}
	xv := func(i, j int) float64 {
		if j == k-1 {
			return 1
		}
		v := d.X[i][cols[j]]
		if math.IsNaN(v) {
			return 0
		}
		return v
	}
	for iter := 0; iter < 50; iter++ {
		grad := make([]float64, k)
		hess := make([][]float64, k)
		for j := range hess {
			hess[j] = make([]float64, k)
		}
		for _, i := range rows {
			eta := z[i]
			for j := 0; j < k; j++ {
				eta += beta[j] * xv(i, j)
			}
			pr := detect.Sigmoid(eta)
			y := 0.0
			if d.Y[i] {
				y = 1
			}
			const w = 1.0 // the trees' case weights do not apply here
			for a := 0; a < k; a++ {
				xa := xv(i, a)
				if xa == 0 {
					continue
				}
				grad[a] += w * (pr - y) * xa
				for b := 0; b < k; b++ {
					hess[a][b] += w * pr * (1 - pr) * xa * xv(i, b)
				}
			}
		}
		for j := 0; j < k-1; j++ {
			grad[j] += lambda * (beta[j] - prior[j])
			hess[j][j] += lambda
		}
		hess[k-1][k-1] += 1e-6
		step := solve(hess, grad)
		maxStep := 0.0
		for j := range beta {
			beta[j] -= step[j]
			maxStep = math.Max(maxStep, math.Abs(step[j]))
		}
		if maxStep < 1e-8 {
			break
		}
	}
	for j, c := range cols {
		m.Linear[c] = math.Round(beta[j]*1e4) / 1e4
	}
	m.TextBias = math.Round(beta[k-1]*1e4) / 1e4
}

// solve solves A·x = b by Gaussian elimination with partial pivoting.
func solve(a [][]float64, b []float64) []float64 {
	n := len(b)
	m := make([][]float64, n)
	for i := range a {
		m[i] = append(append([]float64(nil), a[i]...), b[i])
	}
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		if m[c][c] == 0 {
			continue
		}
		for r := c + 1; r < n; r++ {
			f := m[r][c] / m[c][c]
			for k := c; k <= n; k++ {
				m[r][k] -= f * m[c][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		if m[r][r] == 0 {
			continue
		}
		s := m[r][n]
		for k := r + 1; k < n; k++ {
			s -= m[r][k] * x[k]
		}
		x[r] = s / m[r][r]
	}
	return x
}

type split struct {
	gain        float64
	feature     int
	threshold   float64
	missingLeft bool
}

// growTree grows one tree level by level. node holds each row's current
// node (tree index), -1 for rows outside this tree's sample. Splits are
// scored with the weights s (h itself for Newton splits), leaves valued
// with g and h.
func growTree(d *dataset, order [][]int32, g, h, s []float64, node []int32, p params, rng *rand.Rand) detect.Tree {
	var treeInputs []int
	for f := 0; f < detect.NumInputs; f++ {
		if !detect.IsLinearInput(f) {
			treeInputs = append(treeInputs, f)
		}
	}
	tree := detect.Tree{{}}
	leafG, leafH, leafS := []float64{0}, []float64{0}, []float64{0}
	for i := range node {
		if node[i] == 0 {
			leafG[0] += g[i]
			leafH[0] += h[i]
			leafS[0] += s[i]
		}
	}
	frontier := []int{0}
	score := func(G, H float64) float64 { return G * G / (H + p.Lambda) }
	// Per node running sums of one feature's scan, indexed by tree node.
	type acc struct {
		on                 bool // the node is in the frontier
		allowed            [detect.NumInputs]bool
		G, H, missG, missH float64
		last               float64
		seen               bool
		best               split
	}
	for depth := 0; depth < p.Depth && len(frontier) > 0; depth++ {
		accs := make([]acc, len(tree))
		for _, nd := range frontier {
			a := &accs[nd]
			a.on = true
			a.best.feature = -1
			if p.Features > 0 && p.Features < len(treeInputs) {
				// A random subset of the inputs for this split.
				perm := rng.Perm(len(treeInputs))
				for _, k := range perm[:p.Features] {
					a.allowed[treeInputs[k]] = true
				}
			} else {
				for _, f := range treeInputs {
					a.allowed[f] = true
				}
			}
		}
		for _, f := range treeInputs { // the linear stage's inputs are not split on
			for _, nd := range frontier {
				a := &accs[nd]
				a.G, a.H, a.seen = 0, 0, false
				a.missG, a.missH = leafG[nd], leafS[nd]
			}
			for _, i := range order[f] {
				nd := node[i]
				if nd < 0 || !accs[nd].on || !accs[nd].allowed[f] {
					continue
				}
				a := &accs[nd]
				a.missG -= g[i]
				a.missH -= s[i]
			}
			for _, i := range order[f] {
				nd := node[i]
				if nd < 0 || !accs[nd].on || !accs[nd].allowed[f] {
					continue
				}
				a := &accs[nd]
				v := d.X[i][f]
				if a.seen && v > a.last {
					G, H := leafG[nd], leafS[nd]
					parent := score(G, H)
					for _, ml := range [2]bool{false, true} {
						GL, HL := a.G, a.H
						if ml {
							GL, HL = GL+a.missG, HL+a.missH
						}
						GR, HR := G-GL, H-HL
						if HL < p.MinHess || HR < p.MinHess {
							continue
						}
						if gain := score(GL, HL) + score(GR, HR) - parent; gain > a.best.gain+1e-12 {
							a.best = split{gain: gain, feature: f, threshold: (a.last + v) / 2, missingLeft: ml}
						}
					}
				}
				a.G += g[i]
				a.H += s[i]
				a.last, a.seen = v, true
			}
		}
		best := func(nd int) *split { return &accs[nd].best }
		var next []int
		for _, nd := range frontier {
			b := best(nd)
			if b.feature < 0 {
				continue
			}
			l, r := len(tree), len(tree)+1
			tree[nd] = detect.Node{Feature: b.feature, Threshold: b.threshold, Left: l, Right: r, MissingLeft: b.missingLeft}
			tree = append(tree, detect.Node{}, detect.Node{})
			leafG, leafH, leafS = append(leafG, 0, 0), append(leafH, 0, 0), append(leafS, 0, 0)
			next = append(next, l, r)
		}
		if len(next) == 0 {
			break
		}
		for i := range node {
			nd := int(node[i])
			if nd < 0 || nd >= len(accs) || !accs[nd].on || tree[nd].Left == 0 {
				continue
			}
			n := tree[nd]
			v := d.X[i][n.Feature]
			var c int
			switch {
			case math.IsNaN(v):
				c = n.Right
				if n.MissingLeft {
					c = n.Left
				}
			case v < n.Threshold:
				c = n.Left
			default:
				c = n.Right
			}
			node[i] = int32(c)
			leafG[c] += g[i]
			leafH[c] += h[i]
			leafS[c] += s[i]
		}
		frontier = next
	}
	for i := range tree {
		if tree[i].Left == 0 {
			// Rounded to 1e-7 (a few digits of a small value): the model
			// file stays small, and the scores move by far less than
			// their own noise.
			if leafH[i]+p.Lambda > 0 {
				tree[i].Value = math.Round(-leafG[i]/(leafH[i]+p.Lambda)*p.Eta*1e7) / 1e7
			} // else an empty leaf (a split midway between two adjacent floats sends no row one way): 0, not 0/0
		}
	}
	return tree
}
