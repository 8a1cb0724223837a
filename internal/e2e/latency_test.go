//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// latencyRules: one rule, needing the same enrichment as the e2e test's
// (the diff for removed_chars, user info for user_editcount), that posts to
// the patrol channel and reverts.
const latencyRules = `rules:
  - id: latency-blanking
    when: >-
      type == "edit" && !bot && page_namespace == 0
      && user_editcount >= 0 && old_size >= 200 && new_size * 4 < old_size && removed_chars >= 150
    severity: high
    score: 0.9
    actions: [irc:#patrol, edit:revert]
    max_match_rate: 1
`

// editTimes are the moments one vandal edit passed, all on this machine's
// clock: the test's own (start, saved, sse, irc, audit), the NATS server's
// (rc, alert: when the stream stored the message) and rcwatch's (detected,
// started, slot, sent, at).
type editTimes struct {
	start, saved time.Time // the vandal's edit request sent, answered
	sse          time.Time // the event read from the adapter by the test's own SSE client
	rc           time.Time // stored in RECENTCHANGE (ingest)
	detected     time.Time // the alert's detected_at: the rules stage began evaluating the event
	alert        time.Time // stored in ALERTS
	irc          time.Time // the line read by the patroller in the channel
	started      time.Time // the edit worker began the revert (audit started)
	slot         time.Time // its budget slot (audit slot)
	sent         time.Time // the undo sent to the wiki (audit sent)
	at           time.Time // the wiki answered and the revert was recorded (audit at)
	audit        time.Time // the audit record read by the test
}

// TestLatency measures, over E2E_LATENCY_EDITS vandal edits made one after
// the other on the local wiki, the time from the edit request to the IRC
// line in the patrol channel and to the bot's revert (its audit record, sent
// when the wiki has answered the undo), and splits both into their parts
// from the timestamps every stage leaves (see editTimes) and the histograms
// rcwatch exports (rcwatch_edit_step_seconds, rcwatch_enrich_request_seconds,
// rcwatch_stage_handle_seconds), taken over the measured edits only.
// `make e2e-latency`; skipped unless E2E_LATENCY_EDITS is set (it is a
// measurement, not a check).
func TestLatency(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("E2E_LATENCY_EDITS"))
	if n <= 0 {
		t.Skip("set E2E_LATENCY_EDITS=100 (make e2e-latency) to measure")
	}
	// The vandal is a newcomer: MediaWiki's newbie edit rate limit (8/min)
	// would stop it after 8 edits.
	e := setup(t, latencyRules, "{rate: 2, burst: 4, backlog: 1000}",
		"$wgGroupPermissions['user']['noratelimit'] = true;\n")
	w := e.wiki
	title := func(i int) string { return fmt.Sprintf("Latency page %d", i) }
	for i := range n {
		w.Edit(t, w.Admin, title(i), article, "create")
	}
	p := e.run(t)
	nc, js := e.connect(t)
	// The creations above go through the rules (and their enrichment) too:
	// wait until they are evaluated, so the histograms below hold the
	// measured edits only.
	opsMetrics := "http://" + e.opsAddr + "/metrics"
	waitIngested(t, js, w.Admin.Name, n, 2*time.Minute)
	require.Eventually(t, func() bool {
		return histCount(t, opsMetrics, `rcwatch_stage_handle_seconds{stage="rules"}`) >= float64(n)
	}, 2*time.Minute, 100*time.Millisecond, "the creations evaluated")

	var mu sync.Mutex
	times := make([]editTimes, n)
	index := map[string]int{}
	for i := range n {
		index[title(i)] = i
	}
	revertDone := make(chan int, n)
	sub, err := nc.Subscribe("audit.edit.>", func(m *nats.Msg) {
		at := time.Now()
		var a struct {
			Title, Operation, Result string
			Started, Slot, Sent, At  time.Time
		}
		if json.Unmarshal(m.Data, &a) != nil || a.Operation != "revert" || a.Result != "edited" {
			return
		}
		i, ok := index[a.Title]
		if !ok {
			return
		}
		mu.Lock()
		times[i].audit, times[i].started, times[i].slot, times[i].sent, times[i].at = at, a.Started, a.Slot, a.Sent, a.At
		mu.Unlock()
		revertDone <- i
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	sseDone := readFeed(t, e.feedURL, w.Other.Name, func(title string, at time.Time) {
		if i, ok := index[title]; ok {
			mu.Lock()
			if times[i].sse.IsZero() {
				times[i].sse = at
			}
			mu.Unlock()
		}
	})
	before, feedBefore := scrapeHist(t, opsMetrics), scrapeHist(t, e.feedOps)
	loadBefore := loadAvg()

	for i := range n {
		start := time.Now()
		w.Edit(t, w.Other, title(i), fmt.Sprintf("qwpoeiru zxmcnvb %d lol", i), "")
		saved := time.Now()
		l := e.watcher.WaitLine(t, 30*time.Second, func(l ircdtest.Line) bool {
			return strings.Contains(l.Raw, "PRIVMSG "+patrol) && strings.Contains(l.Raw, "[["+title(i)+"]]")
		})
		select {
		case j := <-revertDone:
			require.Equal(t, i, j, "edit %d: the revert was of another page", i)
		case <-time.After(60 * time.Second):
			t.Fatalf("edit %d: no revert within 60s", i)
		}
		mu.Lock()
		times[i].start, times[i].saved, times[i].irc = start, saved, l.At
		mu.Unlock()
	}
	// The last revert's record step ends just after its audit record is sent.
	record := `rcwatch_edit_step_seconds{op="revert",step="record"}`
	require.Eventually(t, func() bool {
		return histCount(t, opsMetrics, record)-before[record].count() >= float64(n)
	}, 30*time.Second, 20*time.Millisecond, "every revert's record step observed")
	after, feedAfter := scrapeHist(t, opsMetrics), scrapeHist(t, e.feedOps)
	loadAfter := loadAvg()
	sseDone()
	require.Len(t, e.watcher.Messages(patrol), n, "one line per edit")

	// The streams' own timestamps: when RECENTCHANGE stored each vandal
	// edit, when ALERTS stored its alert (and the alert's detected_at).
	for _, m := range natstest.Messages(t, js, pipeline.StreamRecentChange) {
		ev, err := event.Decode(m.Data())
		if err != nil || ev.User != w.Other.Name {
			continue
		}
		md, err := m.Metadata()
		require.NoError(t, err)
		if i, ok := index[ev.Title]; ok {
			times[i].rc = md.Timestamp
		}
	}
	for _, m := range natstest.Messages(t, js, pipeline.StreamAlerts) {
		var a event.Alert
		require.NoError(t, json.Unmarshal(m.Data(), &a))
		md, err := m.Metadata()
		require.NoError(t, err)
		if i, ok := index[a.Event.Title]; ok && a.Event.User == w.Other.Name {
			times[i].alert, times[i].detected = md.Timestamp, a.DetectedAt
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, x := range times {
		for name, v := range map[string]time.Time{"sse": x.sse, "rc": x.rc, "alert": x.alert, "detected": x.detected,
			"started": x.started, "sent": x.sent} {
			require.False(t, v.IsZero(), "edit %d: no %s time", i, name)
		}
	}

	t.Logf("%d edits, one after the other, on the local wiki (php -S, 4 workers, SQLite); load average %s before, %s after",
		n, loadBefore, loadAfter)
	t.Log("per edit, from timestamps:")
	part := func(name string, f func(editTimes) time.Duration) {
		d := make([]time.Duration, n)
		for i, x := range times {
			d[i] = f(x)
		}
		t.Logf("  %-62s p50 %6.0f ms  p99 %6.0f ms  max %6.0f ms", name, ms(pct(d, 50)), ms(pct(d, 99)), ms(slices.Max(d)))
	}
	part("edit request (the wiki saving; comparison)", func(x editTimes) time.Duration { return x.saved.Sub(x.start) })
	part("edit → event read from the adapter (wiki, UDP, adapter)", func(x editTimes) time.Duration { return x.sse.Sub(x.start) })
	part("adapter → RECENTCHANGE stored (ingest)", func(x editTimes) time.Duration { return x.rc.Sub(x.sse) })
	part("RECENTCHANGE → rules stage (delivery)", func(x editTimes) time.Duration { return x.detected.Sub(x.rc) })
	part("rules: enrichment, evaluation, ALERTS stored", func(x editTimes) time.Duration { return x.alert.Sub(x.detected) })
	part("ALERTS → IRC line read (IRC consumer, flood queue, PRIVMSG)", func(x editTimes) time.Duration { return x.irc.Sub(x.alert) })
	part("ALERTS → edit worker begins (delivery)", func(x editTimes) time.Duration { return x.started.Sub(x.alert) })
	part("edit worker: checks, claim, page read, slot (to the undo sent)", func(x editTimes) time.Duration { return x.sent.Sub(x.started) })
	part("undo sent → answered and recorded", func(x editTimes) time.Duration { return x.at.Sub(x.sent) })
	part("recorded → audit record read", func(x editTimes) time.Duration { return x.audit.Sub(x.at) })
	part("edit → IRC line", func(x editTimes) time.Duration { return x.irc.Sub(x.start) })
	part("edit → revert", func(x editTimes) time.Duration { return x.audit.Sub(x.start) })

	t.Log("histograms over the measured edits (p50 / p99 interpolated in their buckets, count):")
	keys := []string{}
	for k := range after {
		if strings.HasPrefix(k, "rcwatch_edit_step_seconds{") || strings.HasPrefix(k, "rcwatch_enrich_request_seconds{") ||
			strings.HasPrefix(k, "rcwatch_stage_handle_seconds{") || strings.HasPrefix(k, "rcwatch_mediawiki_request_seconds{") ||
			strings.HasPrefix(k, "rcwatch_irc_alert_line_seconds") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	after["adapter: "+feedDelay] = feedAfter[feedDelay]
	before["adapter: "+feedDelay] = feedBefore[feedDelay]
	keys = append([]string{"adapter: " + feedDelay}, keys...)
	for _, k := range keys {
		h := after[k].minus(before[k])
		if h.count() == 0 {
			continue
		}
		t.Logf("  %-90s p50 %7.1f ms  p99 %7.1f ms  n %4.0f", k, 1000*h.quantile(0.5), 1000*h.quantile(0.99), h.count())
	}
	t.Logf("  IRC lines held by the flood limit: %.0f", metricSum(t, opsMetrics, "rcwatch_irc_lines_delayed_total"))
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 60*time.Second))
}

// feedDelay is the adapter's histogram of datagram arrival to SSE flush
// (both SSE clients: rcwatch's ingest and the test's reader).
const feedDelay = "rcwatch_rcfeed_delay_seconds"

// readFeed reads the adapter's SSE stream as another client would and calls
// got with the title and the time of each event by user; stop ends it.
func readFeed(tb testing.TB, url, user string, got func(title string, at time.Time)) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(tb, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			at := time.Now()
			var ev struct{ Title, User string }
			if json.Unmarshal([]byte(data), &ev) == nil && ev.User == user {
				got(ev.Title, at)
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	tb.Cleanup(stop)
	return stop
}

// hist is one histogram series: its cumulative bucket counts by upper bound.
type hist map[float64]float64

func (h hist) count() float64 { return h[math.Inf(1)] }

func (h hist) minus(o hist) hist {
	out := hist{}
	for le, c := range h {
		out[le] = c - o[le]
	}
	return out
}

// quantile interpolates linearly within the bucket holding the q-th
// observation (as PromQL's histogram_quantile); the +Inf bucket answers
// its lower bound.
func (h hist) quantile(q float64) float64 {
	les := make([]float64, 0, len(h))
	for le := range h {
		les = append(les, le)
	}
	slices.Sort(les)
	rank := q * h.count()
	prevLE, prevC := 0.0, 0.0
	for _, le := range les {
		c := h[le]
		if c >= rank && c > prevC {
			if math.IsInf(le, 1) {
				return prevLE
			}
			return prevLE + (le-prevLE)*(rank-prevC)/(c-prevC)
		}
		prevLE, prevC = le, c
	}
	return prevLE
}

// scrapeHist reads every histogram series of a /metrics page, keyed by its
// name and labels without le.
func scrapeHist(tb testing.TB, url string) map[string]hist {
	tb.Helper()
	resp, err := http.Get(url)
	require.NoError(tb, err)
	defer resp.Body.Close()
	out := map[string]hist{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "_bucket{")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		var keep []string
		var le float64
		for _, l := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(l, "le="); ok {
				le, _ = strconv.ParseFloat(strings.Trim(v, `"`), 64)
				if strings.Contains(v, "Inf") {
					le = math.Inf(1)
				}
				continue
			}
			keep = append(keep, l)
		}
		key := name
		if len(keep) > 0 {
			key += "{" + strings.Join(keep, ",") + "}"
		}
		c, _ := strconv.ParseFloat(value, 64)
		if out[key] == nil {
			out[key] = hist{}
		}
		out[key][le] = c
	}
	return out
}

// histCount is the number of observations of one histogram series (0 when absent).
func histCount(tb testing.TB, url, series string) float64 {
	return scrapeHist(tb, url)[series].count()
}

// metricSum adds up every series of a counter or gauge.
func metricSum(tb testing.TB, url, name string) float64 {
	tb.Helper()
	resp, err := http.Get(url)
	require.NoError(tb, err)
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

// loadAvg is the machine's 1, 5 and 15-minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	k := (p*len(s) + 99) / 100
	return s[max(k-1, 0)]
}
