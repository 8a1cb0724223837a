package feed

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
)

func TestBounded(t *testing.T) {
	b := newBounded[string, int](3)
	for i, k := range []string{"a", "b", "c"} {
		_, ev := b.put(k, i)
		assert.False(t, ev)
	}
	old, ev := b.put("d", 3)
	assert.True(t, ev)
	assert.Equal(t, 0, old, "the oldest put goes first")
	_, ok := b.get("a")
	assert.False(t, ok)
	b.del("b")
	// "b" is gone already: its slot frees without evicting a live key.
	_, ev = b.put("e", 4)
	assert.False(t, ev)
	assert.Equal(t, 3, b.len())
	// A re-put refreshes the age: "c" outlives "d".
	b.put("c", 22)
	_, ev = b.put("f", 5)
	assert.True(t, ev)
	_, ok = b.get("d")
	assert.False(t, ok)
	v, ok := b.get("c")
	assert.True(t, ok)
	assert.Equal(t, 22, v)
	assert.LessOrEqual(t, b.len(), 3)
}

func TestRing(t *testing.T) {
	r := newRing(3)
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		r.push(&entry{seq: uint64(10 + i), at: t0.Add(time.Duration(i) * time.Second)})
	}
	assert.Equal(t, 3, r.n)
	assert.Equal(t, uint64(12), r.at(0).seq)
	assert.Nil(t, r.get(11))
	assert.Equal(t, uint64(13), r.get(13).seq)
	assert.Equal(t, 1, r.find(13))
	assert.Equal(t, 3, r.find(99))
	assert.Equal(t, 2, r.findTime(t0.Add(3500*time.Millisecond)))
	assert.Equal(t, 1, r.dropBefore(t0.Add(3*time.Second)))
	assert.Equal(t, uint64(13), r.at(0).seq)
}

func TestParseFilterLimits(t *testing.T) {
	q := map[string][]string{"wiki": {""}}
	for i := range 40 {
		q["wiki"] = append(q["wiki"], "w"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	_, err := ParseFilter(q)
	assert.ErrorIs(t, err, ErrInvalidFilter)
	f, err := ParseFilter(map[string][]string{"wiki": {" enwiki , dewiki,enwiki"}, "score": {"0.5"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"enwiki", "dewiki"}, f.Wikis)
	_, err = ParseFilter(map[string][]string{"score": {"NaN"}})
	assert.ErrorIs(t, err, ErrInvalidFilter)
}

// TestSlowClientDropped: a client whose queue is full is dropped, counted,
// and never waited for.
func TestSlowClientDropped(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	f := &Feed{cfg: Config{ClientBuffer: 2, MaxClients: 10}, m: m, clients: map[*client]struct{}{}}
	slow, _, err := f.subscribe(Filter{})
	require.NoError(t, err)
	other, _, err := f.subscribe(Filter{Wikis: []string{"dewiki"}})
	require.NoError(t, err)
	a := &event.Alert{ID: "r/1", Event: event.Ref{Wiki: "enwiki"}}
	f.mu.Lock()
	for i := range 3 {
		f.dispatch(outMsg{event: evAlert, seq: uint64(i + 1)}, a)
	}
	f.mu.Unlock()
	select {
	case <-slow.gone:
	default:
		t.Fatal("the slow client was not dropped")
	}
	select {
	case <-other.gone:
		t.Fatal("a client that matched nothing was dropped")
	default:
	}
	assert.Equal(t, 1.0, testutil.ToFloat64(m.dropped.WithLabelValues("slow")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.clients))

	f.cfg.MaxClients = 1
	_, _, err = f.subscribe(Filter{})
	assert.ErrorIs(t, err, errTooManyClients)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.dropped.WithLabelValues("full")))
}

func TestConfigValidation(t *testing.T) {
	_, err := Config{ClaimTTL: 100 * time.Millisecond}.withDefaults()
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = Config{Ring: -1}.withDefaults()
	assert.ErrorIs(t, err, ErrInvalidConfig)
	c, err := Config{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultConfig(), c)
}

// TestAddAlertOutsideWindow: an alert older than the window by the feed's
// clock (a clock ahead of the server's) leaves the ring empty, not broken.
func TestAddAlertOutsideWindow(t *testing.T) {
	m, err := newMetrics(nil)
	require.NoError(t, err)
	cfg, err := Config{}.withDefaults()
	require.NoError(t, err)
	f := &Feed{cfg: cfg, m: m, now: func() time.Time { return time.Unix(10_000, 0) }, ring: newRing(4),
		clients: map[*client]struct{}{}, open: newBounded[pageKey, []openAlert](4), pages: newBounded[pageKey, pageEdit](4),
		retired: newBounded[uint64, *Retirement](4), claims: newBounded[uint64, *Claim](4)}
	f.addAlert(7, time.Unix(1, 0), &event.Alert{ID: "r/1", Event: event.Ref{Wiki: "enwiki", Title: "T"}}, nil)
	assert.Equal(t, 0, f.ring.n)
	assert.Equal(t, uint64(8), f.ringFrom)
	assert.Equal(t, uint64(7), f.seq)
}

func TestClassOf(t *testing.T) {
	edit := time.Date(2024, 2, 6, 17, 0, 0, 0, time.UTC)
	n := func(v int64) *int64 { return &v }
	reg := func(before time.Duration) int64 { return edit.Add(-before).Unix() }
	for _, tc := range []struct {
		name  string
		user  string
		count *int64
		reg   int64
		tags  []string
		noTS  bool
		want  string
	}{
		{name: "ip", user: "192.0.2.7", want: ClassIP},
		{name: "ipv6", user: "2001:db8::1", want: ClassIP},
		{name: "temporary", user: "~2024-12345", want: ClassTemp},
		{name: "redacted", user: "", want: ""},
		{name: "named, nothing known", user: "Alice", want: ClassNamed},
		{name: "tagged new-user", user: "Alice", tags: []string{"vandalism", TagNewUser}, want: ClassNew},
		{name: "no edits yet", user: "Alice", count: n(0), want: ClassNew},
		{name: "9 edits", user: "Alice", count: n(9), reg: reg(30 * 24 * time.Hour), want: ClassNew},
		{name: "10 edits, old", user: "Alice", count: n(10), reg: reg(4 * 24 * time.Hour), want: ClassNamed},
		{name: "many edits, registered yesterday", user: "Alice", count: n(500), reg: reg(24 * time.Hour), want: ClassNew},
		{name: "just under 4 days", user: "Alice", count: n(50), reg: reg(4*24*time.Hour - time.Second), want: ClassNew},
		{name: "registration only, old", user: "Alice", reg: reg(365 * 24 * time.Hour), want: ClassNamed},
		{name: "registration only, new", user: "Alice", reg: reg(time.Hour), want: ClassNew},
		{name: "count only, experienced", user: "Alice", count: n(10), want: ClassNamed},
		{name: "no event time: detection time", user: "Alice", reg: reg(time.Hour), noTS: true, want: ClassNew},
		{name: "an IP's count is not an account's", user: "192.0.2.7", count: n(0), want: ClassIP},
		{name: "a temporary account stays temp", user: "~2024-12345", count: n(0), want: ClassTemp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &event.Alert{Tags: tc.tags, DetectedAt: edit.Add(time.Minute), Event: event.Ref{
				User: tc.user, Timestamp: edit.Unix(), UserEditCount: tc.count, UserRegistration: tc.reg}}
			if tc.noTS {
				a.Event.Timestamp = 0
				a.DetectedAt = edit
			}
			assert.Equal(t, tc.want, ClassOf(a))
			// "named" selects new accounts too; "new" only them.
			f := Filter{Users: []string{ClassNew}}
			assert.Equal(t, tc.want == ClassNew, f.Match(a))
		})
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour:                     "an hour",
		2 * time.Hour:                 "2 hours",
		90 * time.Minute:              "an hour and 30 minutes",
		time.Minute:                   "a minute",
		45 * time.Second:              "45 seconds",
		time.Second:                   "a second",
		300 * time.Millisecond:        "a second",
		25*time.Hour + 61*time.Second: "25 hours, a minute and a second",
		24 * time.Hour:                "24 hours",
	} {
		assert.Equal(t, want, humanDuration(d), d.String())
	}
}
