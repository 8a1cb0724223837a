package feed_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions/feed"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// env is a NATS server with the rcwatch streams and a JetStream client.
type env struct {
	srv *natstest.Server
	js  jetstream.JetStream
	rev int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	return &env{srv: srv, js: js, rev: 1000}
}

// running is a feed started on an httptest server.
type running struct {
	*feed.Feed
	srv    *httptest.Server
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(t *testing.T, cfg feed.Config) *running {
	t.Helper()
	return e.startWith(t, cfg, nil)
}

// startWith starts a feed whose clock is now.
func (e *env) startWith(t *testing.T, cfg feed.Config, now func() time.Time) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	f, err := feed.New(pipeline.Deps{JS: e.js, Reg: reg, Log: zerolog.Nop(), Now: now}, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Feed: f, srv: httptest.NewServer(f), reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(r.stop)
	require.Eventually(t, func() bool { return f.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
	return r
}

// stop stops the feed and its HTTP server (idempotent).
func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	<-r.done
	r.srv.CloseClientConnections()
	r.srv.Close()
}

type alertOpt func(*event.Alert)

func withUser(u string) alertOpt {
	return func(a *event.Alert) { a.Event.User = u; a.Event.UserType = event.UserType(u) }
}
func withNS(ns int) alertOpt       { return func(a *event.Alert) { a.Event.Namespace = ns } }
func withRule(r string) alertOpt   { return func(a *event.Alert) { a.Rule.ID = r } }
func withScore(s float64) alertOpt { return func(a *event.Alert) { a.Score = s } }
func withSeverity(s string) alertOpt {
	return func(a *event.Alert) { a.Severity = s }
}
func withComment(c string) alertOpt { return func(a *event.Alert) { a.Event.Comment = c } }
func withTags(t ...string) alertOpt { return func(a *event.Alert) { a.Tags = t } }

// withAccount sets what the rules stage's enrichment fetched about the
// performer: its edit count and its registration, age before the edit.
func withAccount(edits int64, age time.Duration) alertOpt {
	return func(a *event.Alert) {
		a.Event.UserEditCount = &edits
		a.Event.UserRegistration = time.Unix(a.Event.Timestamp, 0).Add(-age).Unix()
	}
}

// alert publishes an alert for an edit of title on wiki and returns its
// stream sequence and the alert.
func (e *env) alert(t testing.TB, wiki, title string, opts ...alertOpt) (uint64, *event.Alert) {
	t.Helper()
	e.rev++
	a := &event.Alert{
		Rule: event.RuleRef{ID: "vandalism", Version: "v1"}, Severity: event.SeverityMedium, Score: 0.5,
		Reasons: []string{"removed 2000 bytes"},
		Event: event.Ref{MetaID: fmt.Sprintf("meta-%d", e.rev), Wiki: wiki, ServerURL: "https://" + wiki + ".example",
			ScriptPath: "/w", Type: "edit", Title: title, User: "198.51.100.7", UserType: "ip",
			OldRev: e.rev - 1, NewRev: e.rev, OldSize: 3000, NewSize: 1000, Timestamp: time.Now().Unix(),
			Comment: "summary", DiffURL: fmt.Sprintf("https://%s.example/w/index.php?diff=%d&oldid=%d", wiki, e.rev, e.rev-1)},
		DetectedAt: time.Now().UTC(),
	}
	for _, o := range opts {
		o(a)
	}
	a.ID = event.AlertID(a.Rule.ID, a.Event.MetaID)
	data, err := json.Marshal(a)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.js.Publish(ctx, pipeline.AlertSubject(wiki, a.Rule.ID), data, jetstream.WithMsgID(a.ID))
	require.NoError(t, err)
	return ack.Sequence, a
}

// edit publishes a later recentchange edit of title on wiki by user.
func (e *env) edit(t testing.TB, wiki, title, user string) int64 {
	t.Helper()
	return e.editSized(t, wiki, title, user, -1)
}

// editSized is edit leaving the page size bytes long (-1: no length).
func (e *env) editSized(t testing.TB, wiki, title, user string, size int64) int64 {
	t.Helper()
	e.rev++
	ev := map[string]any{
		"meta": map[string]any{"id": fmt.Sprintf("meta-%d", e.rev), "dt": time.Now().UTC().Format(time.RFC3339)},
		"type": "edit", "title": title, "wiki": wiki, "user": user, "timestamp": time.Now().Unix(),
		"revision": map[string]any{"old": e.rev - 1, "new": e.rev}, "namespace": 0,
	}
	if size >= 0 {
		ev["length"] = map[string]any{"old": 1000, "new": size}
	}
	data, err := json.Marshal(ev)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = e.js.Publish(ctx, pipeline.RecentChangeSubject(wiki, "edit"), data)
	require.NoError(t, err)
	return e.rev
}

// sse is one SSE connection read by a goroutine.
type sse struct {
	events chan sseEvent
	resp   *http.Response
	cancel context.CancelFunc
}

type sseEvent struct {
	Event string
	ID    string
	Data  string
	At    time.Time // when the reader had the whole event
}

func (e sseEvent) item(t testing.TB) feed.Item {
	t.Helper()
	var it feed.Item
	require.NoError(t, json.Unmarshal([]byte(e.Data), &it), e.Data)
	return it
}

func openSSE(t testing.TB, base, query, lastID string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/alerts/stream?"+query, nil)
	require.NoError(t, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream; charset=utf-8", resp.Header.Get("Content-Type"))
	s := &sse{events: make(chan sseEvent, 10000), resp: resp, cancel: cancel}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Data != "" {
					ev.At = time.Now()
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.Data = line[len("data: "):]
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sse) close() { s.cancel(); _ = s.resp.Body.Close() }

// next returns the next event of one of the kinds (others are skipped).
func (s *sse) next(t testing.TB, kinds ...string) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			require.True(t, ok, "SSE connection closed while waiting for %v", kinds)
			for _, k := range kinds {
				if ev.Event == k {
					return ev
				}
			}
		case <-timeout:
			t.Fatalf("no %v event within 10s", kinds)
		}
	}
}

// alertsUntilReady returns the alert events before the "ready" event.
func (s *sse) alertsUntilReady(t testing.TB) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		ev := s.next(t, "alert", "ready")
		if ev.Event == "ready" {
			return out
		}
		out = append(out, ev)
	}
}

// getAlerts calls GET /api/alerts?query.
func getAlerts(t testing.TB, base, query string) (int, feed.AlertsResponse) {
	t.Helper()
	resp, err := http.Get(base + "/api/alerts?" + query)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out feed.AlertsResponse
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	}
	return resp.StatusCode, out
}

func seqs(items []feed.Item) []uint64 {
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = it.Seq
	}
	return out
}

// metricValue reads a counter or gauge of the feed's registry whose first
// label (if any) has value label.
func metricValue(t testing.TB, r *running, name, label string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
