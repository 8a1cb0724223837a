package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/pipeline"
)

// feedURL waits for the line `rcwatch run` prints at start and returns its URL.
func feedURL(tb testing.TB, logf string) string {
	tb.Helper()
	var url string
	require.Eventually(tb, func() bool {
		f, err := os.Open(logf)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l struct {
				Msg string `json:"message"`
				URL string `json:"url"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && strings.HasPrefix(l.Msg, "patroller feed: open ") {
				url = l.URL
				return true
			}
		}
		return false
	}, 60*time.Second, 50*time.Millisecond, "no feed URL in the log")
	return url
}

// `rcwatch run` serves the patroller feed and prints the URL to open; an
// alert published to ALERTS reaches /api/alerts.
func TestRunServesFeed(t *testing.T) {
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: testEvents(t, 10)}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	ops := fmt.Sprintf("127.0.0.1:%d", freeport.Must(t))
	natsPort := freeport.Must(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeport.Must(t))
	p := startProc(t, "run", "--source", hs.URL, "--data-dir", t.TempDir(), "--ops-addr", ops,
		"--nats-port", fmt.Sprint(natsPort), "--feed-addr", addr)
	url := feedURL(t, p.Log)
	assert.Equal(t, "http://"+addr+"/", url)

	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")

	nc, err := pipeline.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "test", zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)
	a := event.Alert{ID: "test/1", Rule: event.RuleRef{ID: "test"}, Severity: event.SeverityHigh,
		Event: event.Ref{MetaID: "1", Wiki: "enwiki", Title: "Feed page", Type: "edit"}}
	data, err := json.Marshal(a)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, pipeline.AlertSubject("enwiki", "test"), data, jetstream.WithMsgID(a.ID))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(httpGet(t, url+"api/alerts?wiki=enwiki&rule=test"), `"title":"Feed page"`)
	}, 30*time.Second, 50*time.Millisecond)
	httpGet(t, "http://"+ops+"/readyz") // 200: every stage, the feed among them, is ready
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 30*time.Second))
}

// With the default address taken, `rcwatch run` serves the feed on a free
// port and prints that URL.
func TestRunFeedDefaultAddrTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err == nil {
		t.Cleanup(func() { ln.Close() })
	} // else: something else holds it, which is the case under test too
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: testEvents(t, 10)}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	ops := fmt.Sprintf("127.0.0.1:%d", freeport.Must(t))
	p := startProc(t, "run", "--source", hs.URL, "--data-dir", t.TempDir(), "--ops-addr", ops)
	url := feedURL(t, p.Log)
	assert.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), url)
	assert.NotEqual(t, "http://127.0.0.1:8080/", url)
	assert.Contains(t, httpGet(t, url), "patroller feed")
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 30*time.Second))
}
