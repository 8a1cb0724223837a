//go:build overload

// Package overload measures the whole pipeline under the overload issue 14
// describes (`make e2e-overload`, docs/BENCHMARKS.md): `rcwatch run` fed by
// the project's replay server at 2,000 events/s, a rule that matches every
// Wikidata edit (as one matching every QuickStatements edit did), IRC to a
// real ngircd at the default flood limit of 2 lines/s, backlog folding on.
// Marker alerts of another rule, one every 10,000 events, stand for the live
// alert a patroller must not miss behind the flood: how late does each reach
// the channel, and does every flood alert end in a line or a digest count?
package overload

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestMain(m *testing.M) { proctest.Main(m) }

const (
	rate        = 2000   // events/s, the replay rate
	total       = 80_000 // 40 s of flood
	markerEvery = 10_000 // one live alert every 5 s
	markerTitle = "Overload marker "
)

const rulesFile = `rules:
  - id: overload-flood
    when: wiki == "wikidatawiki" && type == "edit"
    severity: low
    score: 0.5
    actions: [irc:#patrol]
    max_match_rate: 1
  - id: overload-live
    when: title startsWith "` + markerTitle + `"
    severity: high
    score: 0.9
    actions: [irc:#patrol]
    max_match_rate: 1
`

var (
	digestRe = regexp.MustCompile(`\[digest\] \+(\d+) more from (rule|user|other)`)
	urlRe    = regexp.MustCompile(`https?://\S+`)
	markerRe = regexp.MustCompile(markerTitle + `(\d+)`)
)

// events builds the flood: the recorded events again and again, each with a
// new meta.id and revision (so every alert has its own diff link), and every
// markerEvery-th an enwiki edit retitled as a marker.
func events(tb testing.TB) (evs [][]byte, floodAlerts int, markers []string) {
	tb.Helper()
	recorded := fixtures.Events(tb)
	var enwiki map[string]any
	for _, e := range recorded {
		ev, err := event.Decode(e)
		if err == nil && ev.Wiki == "enwiki" && ev.Type == "edit" && ev.Revision.New != nil && ev.Revision.Old != nil {
			require.NoError(tb, json.Unmarshal(e, &enwiki))
			break
		}
	}
	require.NotNil(tb, enwiki, "an enwiki edit in the fixtures")
	rev := int64(9_000_000_000)
	rewrite := func(m map[string]any, k int) []byte {
		m["meta"].(map[string]any)["id"] = fmt.Sprintf("0be710ad-0000-4000-8000-%012d", k)
		if r, ok := m["revision"].(map[string]any); ok && r["new"] != nil {
			rev++
			r["new"] = rev
		}
		b, err := json.Marshal(m)
		require.NoError(tb, err)
		return b
	}
	for k := range total {
		if k%markerEvery == markerEvery/2 {
			m := map[string]any{}
			b, _ := json.Marshal(enwiki)
			require.NoError(tb, json.Unmarshal(b, &m))
			title := markerTitle + strconv.Itoa(len(markers))
			m["title"] = title
			markers = append(markers, title)
			evs = append(evs, rewrite(m, k))
			continue
		}
		var m map[string]any
		require.NoError(tb, json.Unmarshal(recorded[k%len(recorded)], &m))
		if m["wiki"] == "wikidatawiki" && m["type"] == "edit" {
			floodAlerts++
		}
		evs = append(evs, rewrite(m, k))
	}
	return evs, floodAlerts, markers
}

func TestOverload(t *testing.T) {
	evs, floodAlerts, markers := events(t)
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: evs, Rate: rate}, zerolog.Nop())
	src := httptest.NewServer(replay)
	t.Cleanup(src.Close)

	ircd := ircdtest.Start(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, ircd.Addr, "patroller", "")
	watcher.Join(t, "#patrol")
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	require.NoError(t, os.WriteFile(rules, []byte(rulesFile), 0o644))
	ircConf := filepath.Join(dir, "irc.yaml")
	// The defaults: 2 lines/s, burst 4, backlog 8; backlog folding on
	// (behind = more than 20 pending or older than 10 s).
	require.NoError(t, os.WriteFile(ircConf, []byte(fmt.Sprintf(`backlog_fold:
  feed_url: https://patrol.example.org/feed
networks:
  - name: local
    host: 127.0.0.1
    port: %d
    nick: rcwatch
    channels:
      - name: "#patrol"
        plain: true
        route: {from_actions: true}
`, ircd.Port)), 0o644))
	natsPort := freeport.Must(t)
	start := time.Now()
	proctest.Start(t, proctest.Rcwatch(), proctest.Options{}, "run", "--source", src.URL,
		"--data-dir", filepath.Join(dir, "data"), "--ops-addr", fmt.Sprintf("127.0.0.1:%d", freeport.Must(t)),
		"--nats-port", strconv.Itoa(natsPort), "--feed-addr", "", "--enrich=false", "--rules", rules,
		"--irc-config", ircConf)
	nc, err := pipeline.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "overload", zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)
	// run creates the streams as it starts.
	natstest.WaitStream(t, js, pipeline.StreamAlerts, 60*time.Second)

	wantAlerts := floodAlerts + len(markers)
	natstest.WaitCount(t, js, pipeline.StreamAlerts, wantAlerts, 5*time.Minute)
	fed := time.Since(start)
	natstest.WaitConsumerDone(t, js, pipeline.StreamAlerts, "", 5*time.Minute)
	drained := time.Since(start)

	detected := map[string]time.Time{} // diff link → when the alert was raised
	markerAt := map[int]time.Time{}
	for _, m := range natstest.Messages(t, js, pipeline.StreamAlerts) {
		var a event.Alert
		require.NoError(t, json.Unmarshal(m.Data(), &a))
		detected[a.Event.DiffURL] = a.DetectedAt
		if mm := markerRe.FindStringSubmatch(a.Event.Title); mm != nil {
			i, _ := strconv.Atoi(mm[1])
			markerAt[i] = a.DetectedAt
		}
	}
	require.Len(t, markerAt, len(markers))

	lines := watcher.Messages("#patrol")
	singles, digests, backlog, folded := 0, 0, 0, 0
	seen := map[string]int{}
	var late []time.Duration
	for _, l := range lines {
		url := urlRe.FindString(l.Text)
		if m := digestRe.FindStringSubmatch(l.Text); m != nil {
			n, _ := strconv.Atoi(m[1])
			digests++
			if strings.Contains(l.Text, "(backlog") {
				backlog++
			}
			folded += n
		} else {
			singles++
			seen[url]++
		}
		if at, ok := detected[url]; ok {
			late = append(late, l.At.Sub(at))
		}
	}
	// A marker is "seen" by the first line naming it or a later marker (a
	// backlog digest names its latest alert).
	var markerLate []time.Duration
	for i := range markers {
		for _, l := range lines {
			if mm := markerRe.FindStringSubmatch(l.Text); mm != nil {
				if j, _ := strconv.Atoi(mm[1]); j >= i && l.At.After(markerAt[i]) {
					markerLate = append(markerLate, l.At.Sub(markerAt[i]))
					break
				}
			}
		}
	}
	twice := 0
	for _, n := range seen {
		twice += n - 1
	}
	slices.Sort(late)
	pct := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(p*float64(len(d))))]
	}
	over41 := 0
	for _, d := range late {
		if d > 41*time.Second {
			over41++
		}
	}
	t.Logf("events %d at %d/s; alerts %d (flood %d, live markers %d); all stored in ALERTS after %s, IRC consumer drained after %s",
		len(evs), rate, wantAlerts, floodAlerts, len(markers), fed.Round(time.Second), drained.Round(time.Second))
	t.Logf("IRC lines %d: %d single, %d digests (%d of them from the consumer's backlog) standing for %d alerts; singles + folded = %d of %d alerts; single lines repeated %d",
		len(lines), singles, digests, backlog, folded, singles+folded, wantAlerts, twice)
	t.Logf("line lateness (line − its alert's detection; digests: their latest alert): p50 %s, p99 %s, max %s; lines more than 41 s late: %d",
		pct(late, 0.5).Round(time.Millisecond), pct(late, 0.99).Round(time.Millisecond), pct(late, 1).Round(time.Millisecond), over41)
	t.Logf("live markers (one per 5 s of flood) reached the channel after: %v", markerLate)

	assert.Len(t, markerLate, len(markers), "every live marker reached the channel")
	for i, d := range markerLate {
		assert.Less(t, d, 60*time.Second, "marker %d not minutes late behind the flood", i)
	}
	assert.GreaterOrEqual(t, singles+folded, wantAlerts, "every alert is a line or counted in a digest")
	assert.LessOrEqual(t, twice, 0, "no single line twice")
	assert.True(t, strings.Contains(strings.Join(func() []string {
		var s []string
		for _, l := range lines {
			s = append(s, l.Text)
		}
		return s
	}(), "\n"), "patrol.example.org/feed"), "backlog digests link to the feed")
}
