package enrich

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLineDiff(t *testing.T) {
	for _, tc := range []struct {
		name           string
		old, new       string
		added, removed []string
	}{
		{"identical", "a\nb", "a\nb", nil, nil},
		{"creation", "", "a\nb", []string{"a", "b"}, nil},
		{"blanking", "a\nb", "", nil, []string{"a", "b"}},
		{"append", "a\nb", "a\nb\nc", []string{"c"}, nil},
		{"prepend", "a\nb", "x\na\nb", []string{"x"}, nil},
		{"changed line", "a\nb\nc", "a\nB!\nc", []string{"B!"}, []string{"b"}},
		{"vandalism in the middle", "intro\n\n== History ==\nFounded in 1900.\n\n== Refs ==\n<references/>",
			"intro\n\n== History ==\nFounded in 1900 by my friend Bob who is cool.\n\n== Refs ==\n<references/>",
			[]string{"Founded in 1900 by my friend Bob who is cool."}, []string{"Founded in 1900."}},
		{"reference removed", "x\n<ref>a</ref>\ny\n<ref>b</ref>", "x\ny", nil, []string{"<ref>a</ref>", "<ref>b</ref>"}},
		{"moved block", "a\nb\nc\nd", "c\nd\na\nb", []string{"a", "b"}, []string{"a", "b"}},
		{"empty line added", "a\nb", "a\n\nb", []string{""}, nil},
		{"repeated lines", "x\nx\nx", "x\nx", nil, []string{"x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, removed := LineDiff(tc.old, tc.new, 0)
			assert.Equal(t, tc.added, added, "added")
			assert.Equal(t, tc.removed, removed, "removed")
		})
	}
}

// The bounded fallback: beyond maxEdits the multiset difference is used.
func TestLineDiffBounded(t *testing.T) {
	var a, b []string
	for i := range 3000 {
		a = append(a, "old line "+itoa(i))
		b = append(b, "new line "+itoa(i))
	}
	added, removed := LineDiff(strings.Join(a, "\n"), strings.Join(b, "\n"), 100)
	assert.Len(t, added, 3000)
	assert.Len(t, removed, 3000)
	added, removed = LineDiff("keep\n"+strings.Join(a, "\n"), "keep\n"+strings.Join(a[:2999], "\n")+"\nnew", 100)
	assert.Equal(t, []string{"new"}, added)
	assert.Equal(t, []string{a[2999]}, removed)
}

func itoa(i int) string { return strconv.Itoa(i) }

// lcs is the reference O(NM) longest common subsequence length.
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			if a[i-1] == b[j-1] {
				cur[j] = prev[j-1] + 1
			} else {
				cur[j] = max(prev[j], cur[j-1])
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func isSubsequence(sub, of []string) bool {
	i := 0
	for _, s := range of {
		if i < len(sub) && sub[i] == s {
			i++
		}
	}
	return i == len(sub)
}

// checkDiff: removed ⊆ old and added ⊆ new as subsequences, and the diff is
// minimal (what is kept is a longest common subsequence).
func checkDiff(t *testing.T, old, new string) {
	added, removed := LineDiff(old, new, 0)
	a, b := splitLines(old), splitLines(new)
	if old == new {
		require.Empty(t, added)
		require.Empty(t, removed)
		return
	}
	require.True(t, isSubsequence(removed, a), "removed is not a subsequence of old: %q %q", removed, a)
	require.True(t, isSubsequence(added, b), "added is not a subsequence of new: %q %q", added, b)
	l := lcs(a, b)
	require.Equal(t, len(a)-l, len(removed), "not minimal: old %q new %q", a, b)
	require.Equal(t, len(b)-l, len(added), "not minimal: old %q new %q", a, b)
}

func FuzzLineDiff(f *testing.F) {
	f.Add("a\nb\nc", "a\nc\nd")
	f.Add("", "x")
	f.Add("x\nx\ny\nx", "y\nx\nx\nx\ny")
	f.Add("{{cite web|url=x}}\n\ntext", "text\n{{cite web|url=x}}")
	f.Fuzz(func(t *testing.T, old, new string) {
		if len(old) > 2000 || len(new) > 2000 {
			return
		}
		checkDiff(t, old, new)
	})
}

func BenchmarkLineDiff(b *testing.B) {
	var lines []string
	for i := range 5000 {
		lines = append(lines, "Line number "+itoa(i)+" of a long article with [[links]] and {{templates}}.")
	}
	old := strings.Join(lines, "\n")
	edited := append([]string(nil), lines...)
	edited[2500] = "VANDALISM"
	edited = append(edited[:100], edited[101:]...)
	neu := strings.Join(edited, "\n")
	b.ReportAllocs()
	for b.Loop() {
		LineDiff(old, neu, 0)
	}
}
