package irc

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
)

// The bucket stepped through time: burst first, then one token per 1/rate.
func TestTokenBucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newTokenBucket(2, 4, t0)
	for i := range 4 {
		ok, _ := b.Take(t0)
		require.True(t, ok, "burst token %d", i)
	}
	ok, wait := b.Take(t0)
	require.False(t, ok)
	require.InDelta(t, 500*time.Millisecond, wait, float64(2*time.Millisecond))
	ok, _ = b.Take(t0.Add(499 * time.Millisecond))
	require.False(t, ok)
	ok, _ = b.Take(t0.Add(500 * time.Millisecond))
	require.True(t, ok)
	// An hour idle refills to the burst, not beyond.
	later := t0.Add(time.Hour)
	for range 4 {
		ok, _ = b.Take(later)
		require.True(t, ok)
	}
	ok, _ = b.Take(later)
	require.False(t, ok)
}

func floodAlert(rule, user string, i int) *pending {
	a := &event.Alert{ID: rule + strconv.Itoa(i), Rule: event.RuleRef{ID: rule}, Event: event.Ref{User: user}}
	return &pending{alert: a, channel: "#c", done: make(chan outcome, 1)}
}

func TestFloodQueueFolds(t *testing.T) {
	q := newFloodQueue(FloodConfig{Rate: 2, Burst: 4, Backlog: 3, MaxDigests: 2})
	add := func(p *pending) bool {
		folded, err := q.Add(p)
		require.NoError(t, err)
		return folded
	}
	require.False(t, add(floodAlert("r1", "u1", 1)))
	require.False(t, add(floodAlert("r2", "u2", 2)))
	require.False(t, add(floodAlert("r1", "u3", 3)))
	// Backlog full: u1 has a line waiting → digest by user.
	require.True(t, add(floodAlert("r9", "u1", 4)))
	// A new user and rule: digest by rule.
	require.True(t, add(floodAlert("r5", "u5", 5)))
	// Joins the existing digests.
	require.True(t, add(floodAlert("r5", "u6", 6)))
	require.True(t, add(floodAlert("r7", "u1", 7)))
	// MaxDigests reached: "other".
	require.True(t, add(floodAlert("r8", "u8", 8)))
	require.Equal(t, 6, q.Len())

	var kinds []string
	total := 0
	for it := q.Pop(); it != nil; it = q.Pop() {
		switch it.kind {
		case itemAlert:
			kinds = append(kinds, "alert")
			total++
		case itemDigest:
			kinds = append(kinds, string(it.dkind)+":"+it.dkey+":"+strconv.Itoa(len(it.folded)))
			total += len(it.folded)
		}
		it.finish(outcome{})
	}
	require.Equal(t, []string{"alert", "alert", "alert", "user:u1:2", "rule:r5:2", "other:other rules:1"}, kinds)
	require.Equal(t, 8, total, "every alert is a line or in a digest")
	// Popping freed the backlog and the digest slots.
	require.False(t, add(floodAlert("r1", "u1", 9)))
}

func TestFloodQueueCancelAndFail(t *testing.T) {
	q := newFloodQueue(FloodConfig{Rate: 2, Burst: 4, Backlog: 1, MaxDigests: 4})
	a, b, c := floodAlert("r", "u1", 1), floodAlert("r", "u2", 2), floodAlert("r", "u3", 3)
	for _, p := range []*pending{a, b, c} {
		_, err := q.Add(p)
		require.NoError(t, err)
	}
	require.True(t, q.Cancel(b), "a folded alert leaves its digest")
	require.Equal(t, 2, q.Len())
	require.True(t, q.Cancel(c), "the last alert of a digest removes it")
	require.Equal(t, 1, q.Len())
	it := q.Pop()
	require.False(t, q.Cancel(a), "an alert being sent cannot be cancelled")
	it.finish(outcome{})
	require.NoError(t, (<-a.done).err)

	d := floodAlert("r", "u4", 4)
	_, err := q.Add(d)
	require.NoError(t, err)
	q.FailAll(errNotConnected, true)
	require.ErrorIs(t, (<-d.done).err, errNotConnected)
	_, err = q.Add(floodAlert("r", "u5", 5))
	require.ErrorIs(t, err, errNotConnected, "closed until the connection is back")
	q.Open()
	_, err = q.Add(floodAlert("r", "u5", 5))
	require.NoError(t, err)
}

func TestParseControl(t *testing.T) {
	tests := []struct {
		in      string
		ok      bool
		want    controlCommand
		wantErr string
	}{
		{"!status", true, controlCommand{name: "status"}, ""},
		{"!mute blanking 30m", true, controlCommand{name: "mute", rule: "blanking", dur: 30 * time.Minute}, ""},
		{"!MUTE blanking 1d", true, controlCommand{name: "mute", rule: "blanking", dur: 24 * time.Hour}, ""},
		{"!mute blanking 30w", true, controlCommand{}, "between 1s and"},
		{"!mute blanking", true, controlCommand{}, "usage: !mute"},
		{"!unmute blanking", true, controlCommand{name: "unmute", rule: "blanking"}, ""},
		{"hello", false, controlCommand{}, ""},
		{"!other", false, controlCommand{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok, err := parseControl(tt.in, 7*24*time.Hour)
			require.Equal(t, tt.ok, ok)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestTrusted(t *testing.T) {
	entries := []string{"alice", "bob!*@wikimedia/*"}
	require.True(t, trusted(entries, "Alice", "Alice!a@anywhere"))
	require.True(t, trusted(entries, "bob", "bob!~b@wikimedia/Bob"))
	require.False(t, trusted(entries, "bob", "bob!~b@evil.example"))
	require.False(t, trusted(entries, "mallory", "mallory!m@wikimedia/x"))
}

// TestFloodQueueBacklog: alerts taken from a channel's backlog go to one
// digest per (rule, wiki); the alerts of that rule and wiki already
// waiting as single lines or in flood digests join it, others keep their
// place; after the digest is popped the next alerts start a new one.
func TestFloodQueueBacklog(t *testing.T) {
	q := newFloodQueue(FloodConfig{Rate: 2, Burst: 4, Backlog: 2, MaxDigests: 4})
	onWiki := func(p *pending, wiki string) *pending { p.alert.Event.Wiki = wiki; return p }
	_, err := q.Add(onWiki(floodAlert("flood", "u1", 1), "wd"))
	require.NoError(t, err)
	_, err = q.Add(onWiki(floodAlert("live", "u2", 2), "wd"))
	require.NoError(t, err)
	_, err = q.Add(onWiki(floodAlert("flood", "u3", 3), "wd")) // digest by rule flood, with…
	require.NoError(t, err)
	_, err = q.Add(onWiki(floodAlert("flood", "u4", 4), "en")) // …an alert of another wiki
	require.NoError(t, err)
	require.NoError(t, q.AddBacklog(onWiki(floodAlert("flood", "u5", 5), "wd")))
	require.NoError(t, q.AddBacklog(onWiki(floodAlert("flood", "u6", 6), "wd")))
	require.NoError(t, q.AddBacklog(onWiki(floodAlert("flood", "u7", 7), "en")))

	var kinds []string
	total := 0
	it := q.Pop()
	for ; it != nil; it = q.Pop() {
		switch it.kind {
		case itemAlert:
			kinds = append(kinds, "alert:"+it.single.alert.Rule.ID)
			total++
		case itemDigest:
			kinds = append(kinds, string(it.dkind)+":"+it.dkey+":"+it.wiki+":"+strconv.Itoa(len(it.folded)))
			total += len(it.folded)
		}
		it.finish(outcome{})
	}
	// The rule digest lost its wd alert to the wd backlog digest, then its en
	// alert to the en one, and left the queue.
	require.Equal(t, []string{"alert:live", "backlog:flood:wd:4", "backlog:flood:en:2"}, kinds)
	require.Equal(t, 7, total, "every alert once")
	require.NoError(t, q.AddBacklog(onWiki(floodAlert("flood", "u8", 8), "wd")))
	require.Equal(t, 1, q.Len(), "a new backlog digest after the last one left")
	// The single and digest slots were given back.
	folded, err := q.Add(onWiki(floodAlert("x", "u9", 9), "wd"))
	require.NoError(t, err)
	require.False(t, folded)
}
