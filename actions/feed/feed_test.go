package feed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions/feed"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestAPIFilters(t *testing.T) {
	e := newEnv(t)
	en1, _ := e.alert(t, "enwiki", "A")
	de1, _ := e.alert(t, "dewiki", "B", withNS(2), withUser("~2026-123-4"))
	en2, _ := e.alert(t, "enwiki", "C", withRule("spam"), withScore(0.9), withSeverity(event.SeverityHigh), withUser("Alice"))
	fr1, _ := e.alert(t, "frwiki", "D", withUser("Newbie"), withTags(feed.TagNewUser), withSeverity(event.SeverityLow), withScore(0.2))
	r := e.start(t, feed.Config{})

	tests := []struct {
		name  string
		query string
		want  []uint64
		code  int
	}{
		{name: "all, newest first", want: []uint64{fr1, en2, de1, en1}},
		{name: "one wiki", query: "wiki=enwiki", want: []uint64{en2, en1}},
		{name: "several wikis repeated", query: "wiki=dewiki&wiki=frwiki", want: []uint64{fr1, de1}},
		{name: "several wikis comma", query: "wiki=dewiki,frwiki", want: []uint64{fr1, de1}},
		{name: "namespace", query: "ns=2", want: []uint64{de1}},
		{name: "rule", query: "rule=spam", want: []uint64{en2}},
		{name: "rule and wiki", query: "rule=vandalism&wiki=enwiki", want: []uint64{en1}},
		{name: "min severity", query: "severity=medium", want: []uint64{en2, de1, en1}},
		{name: "min score", query: "score=0.6", want: []uint64{en2}},
		{name: "user ip", query: "user=ip", want: []uint64{en1}},
		{name: "user temp", query: "user=temp", want: []uint64{de1}},
		{name: "user new", query: "user=new", want: []uint64{fr1}},
		{name: "user named includes new", query: "user=named", want: []uint64{fr1, en2}},
		{name: "no match", query: "wiki=nowiki", want: []uint64{}},
		{name: "limit", query: "limit=2", want: []uint64{fr1, en2}},
		{name: "after an id", query: "last_id=" + strconv.FormatUint(de1, 10), want: []uint64{fr1, en2}},
		{name: "bad severity", query: "severity=urgent", code: http.StatusBadRequest},
		{name: "bad class", query: "user=admin", code: http.StatusBadRequest},
		{name: "bad ns", query: "ns=main", code: http.StatusBadRequest},
		{name: "bad score", query: "score=high", code: http.StatusBadRequest},
		{name: "too long", query: "wiki=" + strings.Repeat("x", 201), code: http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.code
			if want == 0 {
				want = http.StatusOK
			}
			var got feed.AlertsResponse
			require.Eventually(t, func() bool {
				code, out := getAlerts(t, r.srv.URL, tc.query)
				got = out
				return code == want && (want != http.StatusOK || len(out.Alerts) == len(tc.want))
			}, 5*time.Second, 20*time.Millisecond)
			if want == http.StatusOK {
				assert.Equal(t, tc.want, seqs(got.Alerts))
				assert.Equal(t, fr1, got.LastSeq)
			}
		})
	}

	t.Run("stream filter", func(t *testing.T) {
		s := openSSE(t, r.srv.URL, "wiki=dewiki&user=temp", "")
		got := s.alertsUntilReady(t)
		require.Len(t, got, 1)
		assert.Equal(t, strconv.FormatUint(de1, 10), got[0].ID)
		e.alert(t, "enwiki", "E", withUser("~2026-9"))
		live, _ := e.alert(t, "dewiki", "F", withUser("~2026-9"))
		ev := s.next(t, "alert")
		assert.Equal(t, strconv.FormatUint(live, 10), ev.ID, "the enwiki alert is filtered out on the server")
		it := ev.item(t)
		assert.Equal(t, "F", it.Alert.Event.Title)
		assert.Equal(t, feed.ClassTemp, it.UserClass)
	})
}

// A named account the enrichment found not autoconfirmed is "new" with
// the shipped rules, which tag nothing new-user.
func TestNewAccountFromEnrichment(t *testing.T) {
	e := newEnv(t)
	year := 365 * 24 * time.Hour
	fresh, _ := e.alert(t, "enwiki", "A", withUser("Fresh"), withAccount(3, year))
	e.alert(t, "enwiki", "B", withUser("Veteran"), withAccount(5000, year))
	young, _ := e.alert(t, "enwiki", "C", withUser("Young"), withAccount(40, 2*24*time.Hour))
	e.alert(t, "enwiki", "D", withUser("Unknown"))
	r := e.start(t, feed.Config{})
	var got feed.AlertsResponse
	require.Eventually(t, func() bool {
		_, got = getAlerts(t, r.srv.URL, "user=new")
		return len(got.Alerts) == 2
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, []uint64{young, fresh}, seqs(got.Alerts))
	for _, it := range got.Alerts {
		assert.Equal(t, feed.ClassNew, it.UserClass)
		require.NotNil(t, it.Alert.Event.UserEditCount, "the API carries what the class was decided on")
		assert.NotZero(t, it.Alert.Event.UserRegistration)
	}
	_, all := getAlerts(t, r.srv.URL, "user=named")
	classes := map[string]string{}
	for _, it := range all.Alerts {
		classes[it.Alert.Event.User] = it.UserClass
	}
	assert.Equal(t, map[string]string{"Fresh": feed.ClassNew, "Veteran": feed.ClassNamed,
		"Young": feed.ClassNew, "Unknown": feed.ClassNamed}, classes)
}

// The page's footer says how long a claim lasts, as configured.
func TestIndexClaimTTL(t *testing.T) {
	e := newEnv(t)
	for ttl, want := range map[time.Duration]string{
		0:                "an hour", // the default
		90 * time.Minute: "an hour and 30 minutes",
		30 * time.Second: "30 seconds",
	} {
		t.Run(want, func(t *testing.T) {
			r := e.start(t, feed.Config{ClaimTTL: ttl})
			resp, err := http.Get(r.srv.URL + "/")
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
			assert.NotEmpty(t, resp.Header.Get("Content-Security-Policy"))
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			secs := int64(ttl / time.Second)
			if ttl == 0 {
				secs = 3600
			}
			assert.Contains(t, string(body), fmt.Sprintf(`Claims last <span id="claim-ttl" data-seconds="%d">%s</span>.`, secs, want))
		})
	}
}

func TestBackfillWindow(t *testing.T) {
	e := newEnv(t)
	e.alert(t, "enwiki", "Old")
	// Two hours later by the feed's clock, the alert is out of the hour's window.
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	reg := e.start(t, feed.Config{})
	_, out := getAlerts(t, reg.srv.URL, "")
	require.Len(t, out.Alerts, 1)

	r2 := e.startWith(t, feed.Config{}, later)
	code, out := getAlerts(t, r2.srv.URL, "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, out.Alerts)
	r3 := e.startWith(t, feed.Config{Backfill: 3 * time.Hour}, later)
	require.Eventually(t, func() bool { _, out := getAlerts(t, r3.srv.URL, ""); return len(out.Alerts) == 1 },
		5*time.Second, 20*time.Millisecond)
}

func TestStreamBackfillThenLive(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  feed.Config
	}{
		{name: "from memory", cfg: feed.Config{}},
		{name: "from the stream", cfg: feed.Config{Ring: 1}},
		{name: "capped", cfg: feed.Config{MaxBackfill: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var before []uint64
			for i := range 3 {
				s, _ := e.alert(t, "enwiki", "P"+strconv.Itoa(i))
				before = append(before, s)
			}
			r := e.start(t, tc.cfg)
			require.Eventually(t, func() bool { _, out := getAlerts(t, r.srv.URL, ""); return out.LastSeq == before[2] },
				5*time.Second, 10*time.Millisecond)
			s := openSSE(t, r.srv.URL, "", "")
			want := before
			if tc.cfg.MaxBackfill == 2 {
				gap := s.next(t, "gap")
				assert.JSONEq(t, `{"before":`+strconv.FormatUint(before[1], 10)+`}`, gap.Data)
				want = before[1:]
			}
			got := s.alertsUntilReady(t)
			require.Len(t, got, len(want))
			for i, ev := range got {
				assert.Equal(t, strconv.FormatUint(want[i], 10), ev.ID, "oldest first, the sequence as the id")
			}
			live, _ := e.alert(t, "enwiki", "Live")
			ev := s.next(t, "alert")
			assert.Equal(t, strconv.FormatUint(live, 10), ev.ID)
		})
	}
}

// TestResumeAcrossRestart: a page that reconnects with Last-Event-ID to a
// new feed process gets every alert after it, once, then the live ones,
// also across a NATS server restart.
func TestResumeAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  feed.Config
	}{
		{name: "from memory", cfg: feed.Config{}},
		{name: "from the stream", cfg: feed.Config{Ring: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a1, _ := e.alert(t, "enwiki", "A")
			a2, _ := e.alert(t, "enwiki", "B")
			r1 := e.start(t, tc.cfg)
			s1 := openSSE(t, r1.srv.URL, "wiki=enwiki", "")
			got := s1.alertsUntilReady(t)
			require.Len(t, got, 2)
			last := got[1].ID
			require.Equal(t, strconv.FormatUint(a2, 10), last)
			r1.stop()
			s1.close()

			// While no feed runs: alerts of both wikis.
			a3, _ := e.alert(t, "enwiki", "C")
			e.alert(t, "dewiki", "X")
			a4, _ := e.alert(t, "enwiki", "D")

			r2 := e.start(t, tc.cfg)
			s2 := openSSE(t, r2.srv.URL, "wiki=enwiki", last)
			var ids []string
			for _, ev := range s2.alertsUntilReady(t) {
				ids = append(ids, ev.ID)
			}
			a5, _ := e.alert(t, "enwiki", "E")
			ids = append(ids, s2.next(t, "alert").ID)
			assert.Equal(t, []string{u(a3), u(a4), u(a5)}, ids, "no gap, no repeat")
			_ = a1

			// The NATS server restarts under the feed: the ordered
			// consumers pick up where they were.
			e.srv.Restart(t)
			a6, _ := e.alert(t, "enwiki", "F")
			a7, _ := e.alert(t, "enwiki", "G")
			ids = nil
			for len(ids) < 2 {
				ids = append(ids, s2.next(t, "alert").ID)
			}
			assert.Equal(t, []string{u(a6), u(a7)}, ids)
			select {
			case ev := <-s2.events:
				assert.NotEqual(t, "alert", ev.Event, "a repeated alert: %v", ev)
			default:
			}
		})
	}
}

func u(n uint64) string { return strconv.FormatUint(n, 10) }

func postClaim(t testing.TB, base string, body any, mod ...func(*http.Request)) (int, map[string]any) {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+"/api/claims", bytes.NewReader(data))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for _, m := range mod {
		m(req)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestClaims(t *testing.T) {
	e := newEnv(t)
	seq, a := e.alert(t, "enwiki", "Claimed")
	other, b := e.alert(t, "enwiki", "Other")
	// The claim must outlive the subtests up to "done" (a conflict needs it)
	// on a loaded machine, and "expires" waits for it.
	r := e.start(t, feed.Config{ClaimTTL: 5 * time.Second, ClaimBurst: 100, ClaimRate: 100})
	p1 := openSSE(t, r.srv.URL, "", "")
	p2 := openSSE(t, r.srv.URL, "wiki=enwiki", "")
	p1.alertsUntilReady(t)
	p2.alertsUntilReady(t)

	code, out := postClaim(t, r.srv.URL, feed.ClaimRequest{Seq: seq, ID: a.ID, State: feed.StateOnIt, Name: "Alice"})
	require.Equal(t, http.StatusOK, code, out)
	var last time.Time
	for _, p := range []*sse{p1, p2} {
		ev := p.next(t, "claim")
		var c feed.Claim
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &c))
		assert.Equal(t, feed.Claim{Seq: seq, ID: a.ID, State: feed.StateOnIt, Name: "Alice", At: c.At}, c)
		assert.Empty(t, ev.ID, "a claim event does not move the resume position")
		if ev.At.After(last) {
			last = ev.At
		}
	}
	// From the bucket storing the claim (the NATS server's timestamp) to
	// the last connection having the event: not the POST's round trip.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, pipeline.BucketFeedClaims)
	require.NoError(t, err)
	entry, err := kv.Get(ctx, feed.ClaimKey(seq))
	require.NoError(t, err)
	took := last.Sub(entry.Created())
	assert.Less(t, took, time.Second, "every open page sees the claim within a second of its storing: %v", took)

	t.Run("someone else is on it", func(t *testing.T) {
		code, out := postClaim(t, r.srv.URL, feed.ClaimRequest{Seq: seq, ID: a.ID, State: feed.StateOnIt, Name: "Bob"})
		assert.Equal(t, http.StatusConflict, code)
		assert.Equal(t, "Alice", out["claim"].(map[string]any)["name"])
	})
	t.Run("listed with the alert", func(t *testing.T) {
		_, out := getAlerts(t, r.srv.URL, "")
		require.Len(t, out.Alerts, 2)
		require.NotNil(t, out.Alerts[1].Claim)
		assert.Equal(t, "Alice", out.Alerts[1].Claim.Name)
	})
	t.Run("done", func(t *testing.T) {
		code, _ := postClaim(t, r.srv.URL, feed.ClaimRequest{Seq: seq, ID: a.ID, State: feed.StateDone, Name: "Bob"})
		require.Equal(t, http.StatusOK, code)
		ev := p1.next(t, "claim")
		assert.Contains(t, ev.Data, `"state":"done"`)
	})
	t.Run("expires", func(t *testing.T) {
		// The TTL is 2s: the server's expiry marker reaches every page.
		ev := p1.next(t, "claim")
		var c feed.Claim
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &c))
		assert.Equal(t, feed.Claim{Seq: seq, ID: a.ID}, c)
		_, out := getAlerts(t, r.srv.URL, "")
		assert.Nil(t, out.Alerts[1].Claim)
	})

	bad := []struct {
		name string
		body any
		mod  func(*http.Request)
		code int
	}{
		{name: "forged id", body: feed.ClaimRequest{Seq: other, ID: a.ID, State: feed.StateOnIt, Name: "Mallory"}, code: http.StatusUnprocessableEntity},
		{name: "unknown seq", body: feed.ClaimRequest{Seq: 9999, ID: b.ID, State: feed.StateOnIt, Name: "M"}, code: http.StatusNotFound},
		{name: "no seq", body: feed.ClaimRequest{ID: b.ID, State: feed.StateOnIt, Name: "M"}, code: http.StatusBadRequest},
		{name: "bad state", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: "reverted", Name: "M"}, code: http.StatusBadRequest},
		{name: "no name", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: feed.StateOnIt, Name: "  "}, code: http.StatusBadRequest},
		{name: "long name", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: feed.StateOnIt, Name: strings.Repeat("n", 65)}, code: http.StatusBadRequest},
		{name: "RTL override in name", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: feed.StateOnIt, Name: "evil\u202Eman"}, code: http.StatusBadRequest},
		{name: "control char", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: feed.StateOnIt, Name: "a\nb"}, code: http.StatusBadRequest},
		{name: "unknown field", body: map[string]any{"seq": other, "id": b.ID, "state": "on-it", "name": "M", "admin": true}, code: http.StatusBadRequest},
		{name: "huge body", body: map[string]any{"seq": other, "id": b.ID, "state": "on-it", "name": strings.Repeat("x", 5000)}, code: http.StatusBadRequest},
		{name: "form post", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: feed.StateOnIt, Name: "M"},
			mod: func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, code: http.StatusUnsupportedMediaType},
		{name: "cross origin", body: feed.ClaimRequest{Seq: other, ID: b.ID, State: feed.StateOnIt, Name: "M"},
			mod: func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, code: http.StatusForbidden},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*http.Request)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			code, out := postClaim(t, r.srv.URL, tc.body, mods...)
			assert.Equal(t, tc.code, code, out)
		})
	}
	assert.Equal(t, 1.0, metricValue(t, r, "rcwatch_feed_claim_requests_total", "forged"))
}

func TestClaimRateLimit(t *testing.T) {
	e := newEnv(t)
	seq, a := e.alert(t, "enwiki", "Busy")
	r := e.start(t, feed.Config{ClaimBurst: 3, ClaimRate: 0.001})
	codes := []int{}
	for range 5 {
		code, _ := postClaim(t, r.srv.URL, feed.ClaimRequest{Seq: seq, ID: a.ID, State: feed.StateOnIt, Name: "Alice"})
		codes = append(codes, code)
	}
	assert.Equal(t, []int{200, 200, 200, 429, 429}, codes)
}

func TestRetirement(t *testing.T) {
	e := newEnv(t)
	early, _ := e.alert(t, "enwiki", "Reverted")
	r := e.start(t, feed.Config{})
	s := openSSE(t, r.srv.URL, "", "")
	require.Len(t, s.alertsUntilReady(t), 1)

	live, a := e.alert(t, "enwiki", "Edited again")
	other, _ := e.alert(t, "dewiki", "Edited again") // another wiki, same title
	s.next(t, "alert")
	s.next(t, "alert")

	// A revert of the first page, an edit of the second.
	rev := e.edit(t, "enwiki", "Reverted", "Patroller")
	ev := s.next(t, "retire")
	var ret feed.Retirement
	require.NoError(t, json.Unmarshal([]byte(ev.Data), &ret))
	assert.Equal(t, early, ret.Seq)
	assert.Equal(t, "Patroller", ret.User)
	assert.Equal(t, rev, ret.Rev)
	assert.False(t, ret.Reverted, "no size: not known as a revert")

	e.edit(t, "enwiki", "Edited again", "Someone")
	ev = s.next(t, "retire")
	require.NoError(t, json.Unmarshal([]byte(ev.Data), &ret))
	assert.Equal(t, live, ret.Seq)
	assert.Equal(t, a.ID, ret.ID)

	_, out := getAlerts(t, r.srv.URL, "")
	require.Len(t, out.Alerts, 3)
	byseq := map[uint64]feed.Item{}
	for _, it := range out.Alerts {
		byseq[it.Seq] = it
	}
	assert.NotNil(t, byseq[early].Retired)
	assert.NotNil(t, byseq[live].Retired)
	assert.Nil(t, byseq[other].Retired, "the same title on another wiki stays open")

	t.Run("a revert restores the size", func(t *testing.T) {
		seq, _ := e.alert(t, "enwiki", "Blanked") // 3000 -> 1000 bytes
		s.next(t, "alert")
		e.editSized(t, "enwiki", "Blanked", "Reverter", 3000)
		ev := s.next(t, "retire")
		var ret feed.Retirement
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &ret))
		assert.Equal(t, seq, ret.Seq)
		assert.True(t, ret.Reverted)
		assert.Equal(t, "Reverter", ret.User)
	})

	t.Run("edit seen before the alert", func(t *testing.T) {
		// The evaluator publishes an alert after its event; a later edit
		// may reach the feed first: the alert arrives retired.
		e.rev += 10
		e.edit(t, "enwiki", "Fast", "Reverter")
		e.rev -= 5
		seq, _ := e.alert(t, "enwiki", "Fast")
		ev := s.next(t, "alert")
		it := ev.item(t)
		require.Equal(t, seq, it.Seq)
		if it.Retired == nil {
			// The edits reader may be a moment behind the alerts reader.
			ret := s.next(t, "retire")
			assert.Contains(t, ret.Data, `"seq":`+u(seq))
		}
	})

	t.Run("resuming page gets the retirements it missed", func(t *testing.T) {
		s.close()
		s2 := openSSE(t, r.srv.URL, "wiki=enwiki", u(live))
		ev := s2.next(t, "retire")
		assert.Contains(t, ev.Data, `"seq":`+u(early))
	})
}
