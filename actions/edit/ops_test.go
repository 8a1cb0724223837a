package edit

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestOperations(t *testing.T) {
	tests := []struct {
		actions []string
		want    []string
	}{
		{nil, nil},
		{[]string{"irc:#cvn"}, nil},
		{[]string{"edit:tag"}, []string{"tag"}},
		{[]string{"edit:tag", "edit:revert", "irc:#x", "edit:report", "edit:Revert"}, []string{"revert", "report", "tag"}},
		{[]string{"edit:delete", "edit:tag"}, []string{"tag", "delete"}},
		{[]string{"edit:", " edit: tag "}, []string{"tag"}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, operations(tt.actions), "%v", tt.actions)
	}
}

func TestLineDiff(t *testing.T) {
	assert.Equal(t, "", lineDiff("a\nb", "a\nb"))
	assert.Equal(t, "@@ -1,2 +1,3 @@\n+{{Update}}\n a\n b\n", lineDiff("a\nb", "{{Update}}\na\nb"))
	assert.Equal(t, "@@ -2,3 +2,4 @@\n b\n c\n+new line\n d\n", lineDiff("a\nb\nc\nd", "a\nb\nc\nnew line\nd"))
	assert.Equal(t, "@@ -1,1 +1,1 @@\n-old\n+new\n", lineDiff("old", "new"))
	assert.Equal(t, "@@ -1,0 +1,1 @@\n+line\n", lineDiff("", "line"))
}

func FuzzLineDiff(f *testing.F) {
	f.Add("a\nb", "{{x}}\na\nb")
	f.Add("", "x")
	f.Add("a\na\na", "a\na")
	f.Fuzz(func(t *testing.T, a, b string) {
		d := lineDiff(a, b)
		if (a == b) != (d == "") {
			t.Fatalf("diff of %q and %q is %q", a, b, d)
		}
		// Applying the hunk's - and + lines between the context rebuilds b.
		if d == "" {
			return
		}
		var plus []string
		for _, l := range strings.Split(strings.TrimSuffix(d, "\n"), "\n")[1:] {
			if strings.HasPrefix(l, "+") {
				plus = append(plus, l[1:])
			}
		}
		for _, p := range plus {
			if !strings.Contains(b, p) {
				t.Fatalf("added line %q not in %q", p, b)
			}
		}
	})
}

func TestSummaryAndReportLine(t *testing.T) {
	wc := &WikiConfig{APIURL: "http://x/api.php", Account: "ExampleBot", Operations: []string{"report"},
		Report: ReportConfig{Page: "P"}}
	cfg := Config{Wikis: map[string]*WikiConfig{"w": wc}}
	require.NoError(t, cfg.Validate())
	a := &event.Alert{ID: "r/1", Rule: event.RuleRef{ID: "vandal\nism"}, Score: 0.5,
		Reasons: []string{"]] {{evil}} <script>", "second\nline"},
		Event:   event.Ref{Wiki: "w", ServerURL: "https://w.example", Title: "Page", User: "192.0.2.7", OldRev: 1, NewRev: 2}}
	now := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	s := summary(wc, a, OpRevert, now)
	assert.Equal(t, "rcwatch revert: rule vandal ism ("+marker("r/1", "revert")+"). Wrong? Report at [[User talk:ExampleBot]]", s)
	line := oneLine(placeholders(a, OpReport, "m", wc.FalsePositivePage, now).Replace(wc.Report.Line))
	assert.NotContains(t, line, "\n")
	assert.Contains(t, line, "[[Special:Contributions/192.0.2.7|192.0.2.7]]", "an IP has no user page link")
	assert.Contains(t, line, "<nowiki>]] {{evil}} &lt;script>; second line</nowiki>")
	assert.Contains(t, line, "[https://w.example/index.php?diff=2&oldid=1 diff]")
	assert.Equal(t, "{{Update|date=November 2026}}", tagTemplate(&WikiConfig{Tag: TagConfig{Template: "{{Update|date={month} {year}}}"}}, a, now))

	long := &event.Alert{ID: "x", Rule: event.RuleRef{ID: strings.Repeat("é", 600)}}
	assert.Equal(t, 500, len([]rune(summary(wc, long, OpTag, now))))
}

// The shared budget: replicas taking slots at once never share one, and
// slots are spaced by the interval; a slot beyond max_hold is not taken.
func TestBudgetSlots(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, pipeline.BucketActions)
	require.NoError(t, err)

	now := time.Date(2026, 11, 3, 12, 0, 0, 300_000_000, time.UTC)
	const replicas, each = 3, 10
	var mu sync.Mutex
	var slots []time.Time
	var wg sync.WaitGroup
	for r := 0; r < replicas; r++ {
		b := newBudget(kv, "Example_Bot", 60) // every replica its own view of the same key
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s, retry, iv, err := b.reserve(ctx, now, time.Hour)
				if !assert.NoError(t, err) {
					return
				}
				assert.Zero(t, retry)
				assert.Equal(t, time.Second, iv)
				mu.Lock()
				slots = append(slots, s)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, slots, replicas*each)
	seen := map[int64]bool{}
	for _, s := range slots {
		assert.False(t, seen[s.UnixNano()], "slot %s taken twice", s)
		seen[s.UnixNano()] = true
		assert.Zero(t, s.Nanosecond(), "slots are whole seconds")
	}
	first := now.Truncate(time.Second).Add(time.Second)
	for i := 0; i < replicas*each; i++ {
		assert.True(t, seen[first.Add(time.Duration(i)*time.Second).UnixNano()], "slot %d", i)
	}

	// The next slot is 30 s away: with max_hold 10 s nothing is taken.
	b := newBudget(kv, "Example Bot", 60)
	_, retry, _, err := b.reserve(ctx, now, 10*time.Second)
	require.NoError(t, err)
	assert.Equal(t, first.Add(30*time.Second).Sub(now)-5*time.Second, retry)
	_, wait, err := b.current(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, first.Add(30*time.Second).Sub(now), wait, "the refused reservation took nothing")

	// Lag slows the budget (factor 1 + lag/maxlag), wearing off over time.
	later := now.Add(time.Hour)
	require.NoError(t, b.slowDown(ctx, later, 5*time.Second, 10*time.Second, 5*time.Second))
	iv, wait, err := b.current(ctx, later)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, iv)
	assert.Equal(t, 5*time.Second, wait, "Retry-After pushes the next slot")
	iv, _, err = b.current(ctx, later.Add(5*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, iv, "half worn off after half the decay")
	iv, _, err = b.current(ctx, later.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, time.Second, iv)
}

// TestBudgetSerialisesWrites: at one edit a second, a replica's write
// waits while another's is in flight, then until the clock has left the
// second of its wiki timestamp (a slow save stamped in the next slot's
// second); a dead writer's mark is ignored after writeTimeout.
func TestBudgetSerialisesWrites(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, pipeline.BucketActions)
	require.NoError(t, err)
	a, b := newBudget(kv, "Example_Bot", 60), newBudget(kv, "Example_Bot", 60)
	s1 := time.Date(2026, 11, 3, 12, 0, 1, 0, time.UTC)
	s2 := s1.Add(time.Second)

	wait, err := a.beginWrite(ctx, s1, s1.Add(10*time.Millisecond))
	require.NoError(t, err)
	require.Zero(t, wait)
	wait, err = b.beginWrite(ctx, s2, s2.Add(10*time.Millisecond))
	require.NoError(t, err)
	require.Positive(t, wait, "the write of s1 is in flight")

	// The save of s1 was slow: the wiki stamped it in s2's second.
	stamp := s2.Add(300 * time.Millisecond)
	require.NoError(t, a.endWrite(ctx, s1, stamp, s2.Add(400*time.Millisecond)))
	wait, err = b.beginWrite(ctx, s2, s2.Add(500*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, 500*time.Millisecond, wait, "until the wiki's clock has left the second of the last stamp")
	wait, err = b.beginWrite(ctx, s2, s2.Add(time.Second))
	require.NoError(t, err)
	require.Zero(t, wait)

	// b dies mid-write: its mark holds the next write back for writeTimeout only.
	s3 := s2.Add(2 * time.Second)
	wait, err = a.beginWrite(ctx, s3, s3)
	require.NoError(t, err)
	require.Positive(t, wait)
	wait, err = a.beginWrite(ctx, s3, s2.Add(time.Second+writeTimeout))
	require.NoError(t, err)
	require.Zero(t, wait)

	// Faster than one a second, writes do not wait for each other.
	fast := newBudget(kv, "Fast_Bot", 6000)
	for _, s := range []time.Time{s1, s1.Add(10 * time.Millisecond)} {
		wait, err := fast.beginWrite(ctx, s, s)
		require.NoError(t, err)
		require.Zero(t, wait)
	}
}

func TestBudgetKey(t *testing.T) {
	assert.Equal(t, budgetKey("Example_Bot"), budgetKey("example bot"))
	assert.NotEqual(t, budgetKey("Example Bot"), budgetKey("Other Bot"))
}

// BenchmarkLineDiff measures the audit diff of a tag on a 100 KB page.
func BenchmarkLineDiff(b *testing.B) {
	old := strings.Repeat("A line of article text with a [[link]] and a {{template}}.\n", 1700)
	nt := "{{Update|date=November 2026}}\n" + old
	b.SetBytes(int64(len(old)))
	b.ReportAllocs()
	for b.Loop() {
		_ = lineDiff(old, nt)
	}
}
