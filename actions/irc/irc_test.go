package irc

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// testEnv is a real NATS (embedded) and a real ngircd.
type testEnv struct {
	nats *natstest.Server
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	irc  *ircdtest.Server
}

func newTestEnv(t testing.TB, opts ircdtest.Options) *testEnv {
	t.Helper()
	irc := ircdtest.Start(t, opts)
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketActions)
	require.NoError(t, err)
	return &testEnv{nats: srv, js: js, kv: kv, irc: irc}
}

// config is a one-network configuration posting to channels on the test
// server; every channel takes alerts that name it in their actions.
func (e *testEnv) config(nick string, channels ...string) Config {
	cfg := Config{
		ReplicaID: nick, LeaseTTL: 2 * time.Second, AckWait: 3 * time.Second,
		Networks: []NetworkConfig{{
			Name: "test", Host: "127.0.0.1", Port: e.irc.Port, Nick: nick,
			ReconnectMin: 200 * time.Millisecond, ReconnectMax: time.Second,
		}},
	}
	for _, ch := range channels {
		cfg.Networks[0].Channels = append(cfg.Networks[0].Channels, ChannelConfig{Name: ch})
	}
	return cfg
}

type runningWorker struct {
	w    *Worker
	reg  *prometheus.Registry
	stop func()
}

// testLogger is a logger whose tail is written to the test's log when the
// test fails.
func testLogger(t testing.TB) zerolog.Logger {
	log, _ := logtest.New(t)
	return log
}

// startWorker runs a worker until the test ends and waits until it posts to
// every alert channel (lease held, consumer created).
func (e *testEnv) startWorker(t testing.TB, cfg Config, opts ...Option) *runningWorker {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := New(pipeline.Deps{JS: e.js, Reg: reg, Log: testLogger(t)}, cfg, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("IRC worker did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	for _, ch := range cfg.Networks[0].Channels {
		e.waitPoster(t, cfg.Networks[0].Name, ch.Name, "")
	}
	require.Eventually(t, func() bool { return w.Ready() == nil }, 30*time.Second, 20*time.Millisecond,
		"the worker is ready once connected and its channels' consumers run")
	return &runningWorker{w: w, reg: reg, stop: stop}
}

// waitPoster waits until a replica (other than not, when set) holds the
// channel's lease and its consumer exists. The server has no event for
// either, so it polls.
func (e *testEnv) waitPoster(t testing.TB, network, channel, not string) string {
	t.Helper()
	return e.waitLease(t, network, channel, not, true)
}

func (e *testEnv) waitLease(t testing.TB, network, channel, not string, consumer bool) string {
	t.Helper()
	durable := durableName(network, channel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		owner, err := LeaseOwner(ctx, e.kv, network, channel)
		var cerr error
		if consumer {
			_, cerr = e.js.Consumer(ctx, pipeline.StreamAlerts, durable)
		}
		cancel()
		if err == nil && cerr == nil && owner != "" && owner != not {
			return owner
		}
		if time.Now().After(deadline) {
			t.Fatalf("no poster for %s after 30s (owner %q, lease err %v, consumer err %v)", channel, owner, err, cerr)
		}
		time.Sleep(50 * time.Millisecond) // polling KV and consumer state; no event to await
	}
}

// alert builds an alert for rule with revision rev (the diff link
// identifies the alert in the received lines) routed to channels.
func testAlert(rule string, rev int64, channels ...string) *event.Alert {
	acts := make([]string, 0, len(channels))
	for _, ch := range channels {
		acts = append(acts, "irc:"+ch)
	}
	meta := "meta-" + strconv.FormatInt(rev, 10)
	return &event.Alert{
		ID: event.AlertID(rule, meta), Rule: event.RuleRef{ID: rule, Version: "1"}, Severity: event.SeverityHigh,
		Score: 0.9, DetectedAt: time.Now(), Actions: acts,
		Event: event.Ref{
			MetaID: meta, Wiki: "enwiki", ServerURL: "https://en.wikipedia.org", Type: "edit",
			Title: "Page " + strconv.FormatInt(rev, 10), User: "Vandal" + strconv.FormatInt(rev%5, 10), UserType: "named",
			OldRev: rev - 1, NewRev: rev, OldSize: 1000, NewSize: 900,
			DiffURL: "https://en.wikipedia.org/w/index.php?diff=" + strconv.FormatInt(rev, 10) + "&oldid=" + strconv.FormatInt(rev-1, 10),
			Comment: "edit " + strconv.FormatInt(rev, 10),
		},
	}
}

func publishAlert(t testing.TB, js jetstream.JetStream, a *event.Alert) {
	t.Helper()
	a.DetectedAt = time.Now()
	data, err := json.Marshal(a)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, pipeline.AlertSubject(a.Event.Wiki, a.Rule.ID), data, jetstream.WithMsgID(a.ID))
	require.NoError(t, err)
}

var diffRe = regexp.MustCompile(`diff=(\d+)&`)

// revOf returns the revision in a single alert line's diff link (0 for none).
func revOf(text string) int64 {
	m := diffRe.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseInt(m[1], 10, 64)
	return v
}

var digestRe = regexp.MustCompile(`\+(\d+) more\x02? from (rule|user|other)`)

// digestCount returns how many alerts a digest line stands for (0: not a digest).
func digestCount(text string) int {
	m := digestRe.FindStringSubmatch(text)
	if m == nil || !strings.Contains(text, "[digest]") {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// requireWireSafe checks a raw line as the server relayed it.
func requireWireSafe(t testing.TB, raw string) {
	t.Helper()
	require.LessOrEqual(t, len(raw)+2, MaxLine, "line with CRLF fits 512 bytes: %q", raw)
	require.True(t, utf8.ValidString(raw), "valid UTF-8: %q", raw)
	require.NotContains(t, raw, "\x00")
	require.NotContains(t, raw, "\r")
	require.NotContains(t, raw, "\n")
}

// TestPostsAlertLines: a second client receives each alert as one line
// with the legacy colours and the diff link; a plain channel gets no codes.
func TestPostsAlertLines(t *testing.T) {
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	watcher.Join(t, "#plain")
	cfg := env.config("rcbot", "#alerts", "#plain")
	cfg.Networks[0].Channels[1].Plain = true
	rw := env.startWorker(t, cfg)

	ip := testAlert("blanking", 101, "#alerts", "#plain")
	ip.Event.User, ip.Event.UserType, ip.Event.NewSize = "192.0.2.7", "ip", 10
	newPage := testAlert("newpage", 102, "#alerts")
	newPage.Event.Type, newPage.Event.OldSize, newPage.Tags = "new", 0, []string{"new-user"}
	other := testAlert("elsewhere", 103) // routed to no channel
	for _, a := range []*event.Alert{ip, newPage, other} {
		publishAlert(t, env.js, a)
	}
	got := watcher.WaitMessages(t, "#alerts", 2, 20*time.Second)
	byRev := map[int64]ircdtest.Msg{}
	for _, m := range got {
		require.Equal(t, "rcbot", m.Nick)
		requireWireSafe(t, m.Raw)
		byRev[revOf(m.Text)] = m
	}
	first, second := byRev[101].Text, byRev[102].Text
	require.Equal(t, FormatAlert(ip, FormatOptions{}), first)
	require.Contains(t, first, "\x0314[[\x0307Page 101\x0314]]")
	require.Contains(t, first, "\x0302https://en.wikipedia.org/w/index.php?diff=101&oldid=100\x03")
	require.Contains(t, first, "\x0303\x02\x02192.0.2.7\x03 \x0315(IP)\x03")
	require.Contains(t, first, "(\x02-990\x02)")
	require.Contains(t, first, "\x02\x0304[blanking]\x03\x02 \x0306\x02\x020.90\x03")
	require.Equal(t, FormatAlert(newPage, FormatOptions{}), second)
	require.Contains(t, second, "\x034 N\x0310 ")
	require.Contains(t, second, "Vandal2\x03 \x0315(new)\x03")

	plain := watcher.WaitMessages(t, "#plain", 1, 10*time.Second)
	require.Equal(t, "[blanking] 0.90 [[Page 101]]  https://en.wikipedia.org/w/index.php?diff=101&oldid=100 * 192.0.2.7 (IP) * (-990) edit 101", plain[0].Text)

	rw.stop() // drains: every alert acked, nothing else posted
	require.Len(t, watcher.Messages("#alerts"), 2)
	require.Len(t, watcher.Messages("#plain"), 1)
	require.Equal(t, 3.0, testutil.ToFloat64(rw.w.m.lines.WithLabelValues("test", "alert")))
	for _, ch := range []string{"#alerts", "#plain"} {
		owner, err := LeaseOwner(context.Background(), env.kv, "test", ch)
		require.NoError(t, err)
		require.Empty(t, owner, "a stopped worker releases its leases")
	}
}

// TestBurstObeysRateAndFolds: 100 alerts at once; the receive times obey
// 2 lines/s with a burst of 4, a digest appears, and every alert is either
// its own line or counted in a digest line.
func TestBurstObeysRateAndFolds(t *testing.T) {
	const total, rate, burst = 100, 2.0, 4
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	cfg := env.config("rcbot", "#alerts")
	cfg.BacklogFold.Off = true // the flood queue alone (TestBacklogFolds covers the backlog)
	rw := env.startWorker(t, cfg, WithFlood(rate, burst))

	rules := []string{"blanking", "profanity", "linkspam"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var futures []jetstream.PubAckFuture
	for i := range total {
		a := testAlert(rules[i%len(rules)], int64(1000+i), "#alerts")
		data, err := json.Marshal(a)
		require.NoError(t, err)
		f, err := env.js.PublishAsync(pipeline.AlertSubject("enwiki", a.Rule.ID), data, jetstream.WithMsgID(a.ID))
		require.NoError(t, err)
		futures = append(futures, f)
	}
	select {
	case <-env.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing the burst timed out")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		}
	}

	// Wait until every alert is accounted for by a line.
	accounted := func(msgs []ircdtest.Msg) (singles map[int64]int, folded, digests int) {
		singles = map[int64]int{}
		for _, m := range msgs {
			if n := digestCount(m.Text); n > 0 {
				folded += n
				digests++
			} else if r := revOf(m.Text); r > 0 {
				singles[r]++
			}
		}
		return singles, folded, digests
	}
	watcher.Wait(t, 60*time.Second, "every alert in a line or a digest", func([]ircdtest.Line) bool {
		s, f, _ := accounted(watcher.Messages("#alerts"))
		return len(s)+f >= total
	})
	rw.stop()
	msgs := watcher.Messages("#alerts")
	singles, folded, digests := accounted(msgs)
	for r, n := range singles {
		require.Equal(t, 1, n, "alert %d posted once", r)
	}
	require.Equal(t, total, len(singles)+folded, "each alert is its own line or counted in a digest, once")
	require.Positive(t, digests, "the burst produced a digest")
	require.Less(t, len(msgs), 30, "the backlog is bounded: most of the burst was folded")

	// The limiter: any k consecutive lines span at least (k-burst)/rate
	// seconds; one line of tolerance absorbs scheduling jitter.
	for i := range msgs {
		for j := i + 1; j < len(msgs); j++ {
			span := msgs[j].At.Sub(msgs[i].At).Seconds()
			allowed := float64(burst) + rate*span + 1
			require.LessOrEqual(t, float64(j-i+1), allowed,
				"lines %d..%d (%d lines) arrived within %.3fs", i, j, j-i+1, span)
		}
	}
	// …and it really paced them: the whole run takes about (n-burst)/rate.
	span := msgs[len(msgs)-1].At.Sub(msgs[0].At).Seconds()
	require.GreaterOrEqual(t, span, 0.8*float64(len(msgs)-burst-1)/rate)

	m := rw.w.m
	require.Equal(t, float64(len(singles)), testutil.ToFloat64(m.lines.WithLabelValues("test", "alert")))
	require.Equal(t, float64(digests), testutil.ToFloat64(m.lines.WithLabelValues("test", "digest")))
	require.Equal(t, float64(folded), testutil.ToFloat64(m.folded.WithLabelValues("test", "queue")))
	require.Positive(t, testutil.ToFloat64(m.delayed.WithLabelValues("test")))
	t.Logf("%d alerts → %d lines (%d single, %d digests folding %d) over %.1fs", total, len(msgs), len(singles), digests, folded, span)
}

// TestHostileText: CR/LF, NUL and 600 bytes of multi-byte text give one
// well-formed line each, and the worker stays connected.
func TestHostileText(t *testing.T) {
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	env.startWorker(t, env.config("rcbot", "#alerts"))

	long := strings.Repeat("ש", 300) // 600 bytes
	cases := map[int64]func(a *event.Alert){
		201: func(a *event.Alert) { a.Event.Title = "Evil\r\nQUIT :pwned" },
		202: func(a *event.Alert) { a.Event.Comment = "x\r\nPRIVMSG #alerts :spoofed\r\n" },
		203: func(a *event.Alert) { a.Event.Title, a.Event.Comment = "nul\x00title", "nul\x00summary" },
		204: func(a *event.Alert) { a.Event.Title = long },
		205: func(a *event.Alert) { a.Event.Comment = long },
		206: func(a *event.Alert) { a.Event.Title, a.Event.Comment, a.Event.User = long, long, "用户"+long },
		207: func(a *event.Alert) { a.Event.User = "Bob\nJOIN #x" },
	}
	for rev, edit := range cases {
		a := testAlert("hostile", rev, "#alerts")
		edit(a)
		publishAlert(t, env.js, a)
	}
	msgs := watcher.WaitMessages(t, "#alerts", len(cases), 30*time.Second)
	seen := map[int64]int{}
	for _, m := range msgs {
		requireWireSafe(t, m.Raw)
		require.Equal(t, "rcbot", m.Nick)
		seen[revOf(m.Text)]++
	}
	for rev := range cases {
		require.Equal(t, 1, seen[rev], "alert %d gave exactly one line", rev)
	}
	for _, m := range msgs {
		switch revOf(m.Text) {
		case 201:
			require.Contains(t, m.Text, "Evil QUIT :pwned")
		case 204, 206:
			require.Contains(t, m.Text, "…", "a long title is cut")
			require.Greater(t, len(m.Raw), 400, "a cut line still uses its budget")
		}
	}
	// Nothing injected: no QUIT or JOIN of the worker, no spoofed message.
	for _, l := range watcher.Lines() {
		require.NotRegexp(t, `^:rcbot\S* QUIT`, l.Raw)
		require.NotRegexp(t, `^:\S+ PRIVMSG #alerts :spoofed`, l.Raw)
		require.NotRegexp(t, `^:\S+ JOIN #x`, l.Raw)
	}
}

// TestControlChannel: trusted nicks mute and unmute rules (stored in KV,
// with a TTL) and ask for status; others are ignored.
func TestControlChannel(t *testing.T) {
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	op := ircdtest.Dial(t, env.irc.Addr, "oper", "")
	op.Join(t, "#ops")
	stranger := ircdtest.Dial(t, env.irc.Addr, "mallory", "")
	stranger.Join(t, "#ops")
	cfg := env.config("rcbot", "#alerts")
	cfg.Networks[0].Control = &ControlConfig{Channel: "#ops", Trusted: []string{"oper"}}
	rw := env.startWorker(t, cfg)
	env.waitLease(t, "test", "#ops", "", false)

	// command sends a line as oper and returns the worker's reply to it.
	command := func(line, contains string) string {
		t.Helper()
		from := len(op.Lines())
		op.Send(t, "PRIVMSG #ops :"+line)
		var reply string
		op.Wait(t, 10*time.Second, "a reply containing "+contains, func(lines []ircdtest.Line) bool {
			for _, l := range lines[min(from, len(lines)):] {
				if m, ok := ircdtest.ParsePrivmsg(l); ok && m.Nick == "rcbot" && strings.Contains(m.Text, contains) {
					reply = m.Text
					return true
				}
			}
			return false
		})
		return reply
	}
	stranger.Send(t, "PRIVMSG #ops :!mute blanking 1h")
	require.Contains(t, command("!status", "oper: replica rcbot:"), "no mutes", "an untrusted !mute is ignored")

	command("!mute blanking 2h", "oper: muted rule blanking until")
	publishAlert(t, env.js, testAlert("blanking", 301, "#alerts"))
	publishAlert(t, env.js, testAlert("other", 302, "#alerts"))
	msgs := watcher.WaitMessages(t, "#alerts", 1, 10*time.Second)
	require.Equal(t, int64(302), revOf(msgs[0].Text))
	require.Contains(t, command("!status", "oper: replica rcbot:"), "muted: blanking until")
	require.Equal(t, 1.0, testutil.ToFloat64(rw.w.m.dropped.WithLabelValues("mute")))

	command("!unmute blanking", "oper: unmuted rule blanking")
	publishAlert(t, env.js, testAlert("blanking", 303, "#alerts"))
	msgs = watcher.WaitMessages(t, "#alerts", 2, 10*time.Second)
	require.Equal(t, int64(303), revOf(msgs[1].Text))

	command("!mute blanking soon", `oper: bad duration "soon"`)
	require.Len(t, watcher.Messages("#alerts"), 2, "the muted alert was never posted")
}

// TestServerPassword: the password comes from a file; a wrong one keeps
// the worker out (and not ready), the right one lets it post.
func TestServerPassword(t *testing.T) {
	env := newTestEnv(t, ircdtest.Options{Password: "letmein"})
	dir := t.TempDir()
	good, bad := dir+"/good", dir+"/bad"
	require.NoError(t, os.WriteFile(good, []byte("letmein\n"), 0o600))
	require.NoError(t, os.WriteFile(bad, []byte("wrong\n"), 0o600))

	cfg := env.config("badbot", "#locked")
	cfg.Networks[0].ServerPassword = Secret{File: bad}
	w, err := New(pipeline.Deps{JS: env.js, Reg: prometheus.NewRegistry(), Log: testLogger(t)}, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	watcherBad := ircdtest.Dial(t, env.irc.Addr, "observer", "letmein")
	watcherBad.Join(t, "#locked")

	cfg = env.config("rcbot", "#locked")
	cfg.Networks[0].ServerPassword = Secret{File: good}
	rw := env.startWorker(t, cfg)
	require.NoError(t, rw.w.Ready())
	publishAlert(t, env.js, testAlert("pw", 401, "#locked"))
	msgs := watcherBad.WaitMessages(t, "#locked", 1, 10*time.Second)
	require.Equal(t, "rcbot", msgs[0].Nick)

	require.ErrorContains(t, w.Ready(), "not connected to IRC network(s) test")
	require.Eventually(t, func() bool { return testutil.ToFloat64(w.m.reconnects.WithLabelValues("test")) >= 1 },
		10*time.Second, 20*time.Millisecond, "the refused worker keeps retrying")
	cancel()
	require.NoError(t, <-done)
	owner, err := LeaseOwner(context.Background(), env.kv, "test", "#locked")
	require.NoError(t, err)
	require.Equal(t, "rcbot", owner)
}

// TestFirstStartPostsEarlierAlerts (issue 11, item 3): alerts published
// before the worker first started (the evaluator of a fresh `rcwatch run`
// is quicker than the IRC connection) all reach the channel, each once; a
// restarted worker repeats none of them.
func TestFirstStartPostsEarlierAlerts(t *testing.T) {
	const n = 20
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	for i := range n {
		publishAlert(t, env.js, testAlert("early", int64(8000+i), "#alerts"))
	}
	cfg := env.config("rcbot", "#alerts")
	cfg.MaxAlertAge = 10 * time.Minute
	// Every alert gets its own line (folding is not this test's subject).
	cfg.Networks[0].Flood = FloodConfig{Rate: 20, Burst: 20, Backlog: 32, MaxDigests: 16}
	rw := env.startWorker(t, cfg)
	watcher.WaitMessages(t, "#alerts", n, 30*time.Second)
	rw.stop()

	// A restart: the consumer keeps its position; nothing is posted again.
	rw2 := env.startWorker(t, cfg)
	publishAlert(t, env.js, testAlert("early", 8100, "#alerts"))
	msgs := watcher.WaitMessages(t, "#alerts", n+1, 30*time.Second)
	rw2.stop()
	counts := map[int64]int{}
	for _, m := range watcher.Messages("#alerts") {
		require.Equal(t, "rcbot", m.Nick)
		counts[revOf(m.Text)]++
	}
	for i := range n {
		require.Equal(t, 1, counts[int64(8000+i)], "alert %d published before the first start is posted once", 8000+i)
	}
	require.Equal(t, 1, counts[8100])
	require.Len(t, msgs, n+1, "no repeated line")
}

// TestRedeliveryInHandPostsOnce: a second delivery of an alert whose first
// delivery is still waiting for its line (as when AckWait expires under a
// running handler while NATS elects a leader and progress reports fail) is
// handed back, not given a line of its own: one line. Here the two
// deliveries are two copies of the alert in ALERTS (different message ids),
// held at once behind a slow flood limit.
func TestRedeliveryInHandPostsOnce(t *testing.T) {
	env := newTestEnv(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, env.irc.Addr, "patroller", "")
	watcher.Join(t, "#alerts")
	cfg := env.config("rcbot", "#alerts")
	// One token, then one line every 2 s: the copies wait in the queue
	// behind the first line.
	cfg.Networks[0].Flood = FloodConfig{Rate: 0.5, Burst: 1, Backlog: 16, MaxDigests: 16}
	cfg.BacklogFold.Off = true
	rw := env.startWorker(t, cfg)

	first := testAlert("inhand", 8000, "#alerts")
	publishAlert(t, env.js, first)
	watcher.WaitMessages(t, "#alerts", 1, 20*time.Second) // the token is spent
	a := testAlert("inhand", 8001, "#alerts")
	a.DetectedAt = time.Now()
	data, err := json.Marshal(a)
	require.NoError(t, err)
	for _, msgID := range []string{"copy-1", "copy-2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := env.js.Publish(ctx, pipeline.AlertSubject(a.Event.Wiki, a.Rule.ID), data, jetstream.WithMsgID(msgID))
		cancel()
		require.NoError(t, err)
	}
	watcher.WaitMessages(t, "#alerts", 2, 30*time.Second)
	natstest.WaitConsumerDone(t, env.js, pipeline.StreamAlerts, durableName("test", "#alerts"), 60*time.Second)
	rw.stop()
	n := 0
	for _, m := range watcher.Messages("#alerts") {
		if revOf(m.Text) == 8001 {
			n++
		}
	}
	require.Equal(t, 1, n, "one line for the alert delivered twice")
	require.GreaterOrEqual(t, testutil.ToFloat64(rw.w.m.duplicates), 1.0)
}
