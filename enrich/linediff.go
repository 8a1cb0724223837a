package enrich

import "strings"

// DefaultMaxDiffEdits bounds the Myers search: beyond this many inserted
// plus deleted lines (after the common prefix and suffix are trimmed) the
// diff falls back to a multiset difference, which is linear.
const DefaultMaxDiffEdits = 2000

// LineDiff returns the lines added and removed between old and new wikitext,
// as AbuseFilter's added_lines/removed_lines: a minimal line diff (Myers),
// where a changed line is removed in its old form and added in its new one.
// Lines are split on "\n". The cost is O((N+M)·D) time and O(D²) memory for
// D ≤ maxEdits differing lines; beyond that (a rewritten page) the result is
// the multiset difference of the lines, in order, which is linear.
func LineDiff(oldText, newText string, maxEdits int) (added, removed []string) {
	if oldText == newText {
		return nil, nil
	}
	if maxEdits <= 0 {
		maxEdits = DefaultMaxDiffEdits
	}
	a, b := splitLines(oldText), splitLines(newText)
	// Trim the common prefix and suffix: most edits touch a few lines.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	a, b = a[pre:], b[pre:]
	suf := 0
	for suf < len(a) && suf < len(b) && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	a, b = a[:len(a)-suf], b[:len(b)-suf]
	switch {
	case len(a) == 0:
		return clone(b), nil
	case len(b) == 0:
		return nil, clone(a)
	}
	if ok, add, rem := myers(a, b, maxEdits); ok {
		return add, rem
	}
	return multisetDiff(a, b)
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func clone(s []string) []string { return append([]string(nil), s...) }

// myers is the greedy O(ND) algorithm with a trace for the path; it gives up
// (ok false) when the edit distance exceeds maxD.
func myers(a, b []string, maxD int) (ok bool, added, removed []string) {
	// Compare line ids, not strings.
	ids := map[string]int32{}
	ai, bi := make([]int32, len(a)), make([]int32, len(b))
	for i, s := range a {
		id, found := ids[s]
		if !found {
			id = int32(len(ids))
			ids[s] = id
		}
		ai[i] = id
	}
	for i, s := range b {
		id, found := ids[s]
		if !found {
			id = int32(len(ids))
			ids[s] = id
		}
		bi[i] = id
	}
	n, m := len(ai), len(bi)
	maxD = min(maxD, n+m)
	off := maxD + 1
	v := make([]int32, 2*maxD+3)
	var trace [][]int32
	for d := 0; d <= maxD; d++ {
		// Keep only the diagonals reachable at this d: k in [-d, d].
		snap := make([]int32, 2*d+1)
		for k := -d; k <= d; k += 2 {
			var x int32
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: insertion
			} else {
				x = v[off+k-1] + 1 // right: deletion
			}
			y := x - int32(k)
			for int(x) < n && int(y) < m && ai[x] == bi[y] {
				x++
				y++
			}
			v[off+k] = x
			if int(x) >= n && int(y) >= m {
				snap[k+d] = x
				trace = append(trace, snap)
				add, rem := backtrack(trace, a, b)
				return true, add, rem
			}
		}
		for k := -d; k <= d; k += 2 {
			snap[k+d] = v[off+k]
		}
		trace = append(trace, snap)
	}
	return false, nil, nil
}

// backtrack walks the trace from the end and collects the edits in order.
func backtrack(trace [][]int32, a, b []string) (added, removed []string) {
	x, y := len(a), len(b)
	type edit struct {
		ins  bool
		line string
	}
	var edits []edit
	for d := len(trace) - 1; d > 0; d-- {
		prev := trace[d-1]
		k := x - y
		at := func(k int) int32 { return prev[k+(d-1)] }
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := int(at(pk))
		py := px - pk
		for x > px && y > py { // the snake
			x--
			y--
		}
		if x == px { // came down: inserted b[py]
			edits = append(edits, edit{ins: true, line: b[py]})
		} else {
			edits = append(edits, edit{line: a[px]})
		}
		x, y = px, py
	}
	for i := len(edits) - 1; i >= 0; i-- {
		if edits[i].ins {
			added = append(added, edits[i].line)
		} else {
			removed = append(removed, edits[i].line)
		}
	}
	return added, removed
}

// multisetDiff keeps, in order, the lines of b not matched by an equal line
// of a (added) and the reverse (removed).
func multisetDiff(a, b []string) (added, removed []string) {
	count := make(map[string]int, len(a))
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		if count[s] > 0 {
			count[s]--
			continue
		}
		added = append(added, s)
	}
	count = make(map[string]int, len(b))
	for _, s := range b {
		count[s]++
	}
	for _, s := range a {
		if count[s] > 0 {
			count[s]--
			continue
		}
		removed = append(removed, s)
	}
	return added, removed
}
