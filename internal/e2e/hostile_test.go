package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/ircdtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
)

const hostileDir = "../../testdata/hostile"

type hostileManifest struct {
	Events []struct {
		Name, File, Generate, Raw, Expect, Note string
	} `yaml:"events"`
	Rules []struct {
		File, Expect, Note string
	} `yaml:"rules"`
}

// hostileItem is one frame of the hostile stream.
type hostileItem struct {
	name   string
	frame  []byte // the raw SSE bytes of the frame
	metaID string // for processed/duplicate items
	expect string
}

func hostileID(k int) string {
	return `[{"topic":"hostile","partition":0,"offset":` + strconv.Itoa(k) + `}]`
}

// hostileItems builds the stream from the manifest.
func hostileItems(tb testing.TB, m hostileManifest) []hostileItem {
	tb.Helper()
	good, err := os.ReadFile(filepath.Join(hostileDir, "events/good-edit.json"))
	require.NoError(tb, err)
	good = bytes.TrimSpace(good)
	fresh := 0
	freshGood := func() ([]byte, string) {
		fresh++
		var m map[string]any
		require.NoError(tb, json.Unmarshal(good, &m))
		id := fmt.Sprintf("7b0c5f4e-0000-4000-9000-%012d", fresh)
		m["meta"].(map[string]any)["id"] = id
		b, err := json.Marshal(m)
		require.NoError(tb, err)
		return b, id
	}
	payloadFrame := func(k int, data []byte) []byte {
		var b bytes.Buffer
		b.WriteString("event: message\nid: " + hostileID(k) + "\n")
		for _, line := range bytes.Split(data, []byte("\n")) {
			b.WriteString("data: ")
			b.Write(line)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
		return b.Bytes()
	}
	var items []hostileItem
	add := func(name string, data []byte, expect string) {
		it := hostileItem{name: name, frame: payloadFrame(len(items), data), expect: expect}
		if ev, err := event.Decode(data); err == nil {
			it.metaID = ev.Meta.ID
		}
		items = append(items, it)
	}
	for _, e := range m.Events {
		switch {
		case e.File != "":
			b, err := os.ReadFile(filepath.Join(hostileDir, e.File))
			require.NoError(tb, err)
			add(e.Name, bytes.TrimRight(b, "\n"), e.Expect)
		case e.Generate == "five-mib":
			var m map[string]any
			require.NoError(tb, json.Unmarshal(good, &m))
			m["comment"] = strings.Repeat("spam ", 1<<20)
			m["meta"].(map[string]any)["id"] = "7b0c5f4e-0000-4000-8000-0000000005ff"
			b, err := json.Marshal(m)
			require.NoError(tb, err)
			add(e.Name, b, e.Expect)
		case e.Generate == "wrong-types":
			for _, field := range []string{"$schema", "meta", "meta.id", "meta.dt", "meta.domain", "id", "type",
				"namespace", "title", "title_url", "comment", "parsedcomment", "timestamp", "user", "bot", "minor",
				"patrolled", "length", "length.old", "length.new", "revision", "revision.old", "revision.new",
				"server_url", "server_name", "server_script_path", "wiki"} {
				var m map[string]any
				require.NoError(tb, json.Unmarshal(good, &m))
				m["meta"].(map[string]any)["id"] = "7b0c5f4e-0000-4000-a000-" + fmt.Sprintf("%012x", len(items))
				obj, key := m, field
				if i := strings.IndexByte(field, '.'); i > 0 {
					obj, key = m[field[:i]].(map[string]any), field[i+1:]
				}
				switch obj[key].(type) {
				case string:
					obj[key] = []any{1, "two"}
				case bool:
					obj[key] = "yes"
				case float64:
					obj[key] = "12"
				default: // objects
					obj[key] = "not an object"
				}
				b, err := json.Marshal(m)
				require.NoError(tb, err)
				add("wrong-type-"+field, b, e.Expect)
			}
		case e.Raw != "":
			g, id := freshGood()
			half := bytes.IndexByte(g, ',') + 1
			r := strings.NewReplacer("{ID}", hostileID(len(items)), "{GOOD}", string(g),
				"{GOOD_HEAD}", string(g[:half]), "{GOOD_TAIL}", string(g[half:]))
			it := hostileItem{name: e.Name, frame: []byte(r.Replace(e.Raw)), expect: e.Expect}
			if e.Expect == "processed" {
				it.metaID = id
			}
			items = append(items, it)
		default:
			tb.Fatalf("manifest item %s: no file, generate or raw", e.Name)
		}
	}
	// A good event last: everything before it was read when it arrives.
	g, id := freshGood()
	items = append(items, hostileItem{name: "last-good", frame: payloadFrame(len(items), g), metaID: id, expect: "processed"})
	return items
}

// hostileServer serves items as one SSE stream, resuming after the offset
// of a Last-Event-ID, and then stays open.
func hostileServer(items []hostileItem) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from := 0
		var last []struct{ Offset int }
		if json.Unmarshal([]byte(r.Header.Get("Last-Event-ID")), &last) == nil && len(last) > 0 {
			from = last[0].Offset + 1
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriter(w)
		_, _ = bw.WriteString(":ok\n\n")
		for _, it := range items[min(from, len(items)):] {
			_, _ = bw.Write(it.frame)
		}
		_ = bw.Flush()
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
}

// Hostile and broken input, all at once, through the whole pipeline: no
// crash, each bad item dead-lettered with its reason, every good item
// processed once, one IRC line each and nothing injected; bad rule files
// rejected by lint with a clear message.
func TestHostileInput(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(hostileDir, "manifest.yaml"))
	require.NoError(t, err)
	var m hostileManifest
	require.NoError(t, yaml.Unmarshal(raw, &m))

	t.Run("rules", func(t *testing.T) {
		for _, r := range m.Rules {
			out, err := exec.Command(proctest.Rcwatch(), "rules", "lint", filepath.Join(hostileDir, r.File)).CombinedOutput()
			if r.Expect == "ok" {
				assert.NoError(t, err, "%s: %s", r.File, out)
				continue
			}
			want, ok := strings.CutPrefix(r.Expect, "error:")
			require.True(t, ok, "%s: expect %q", r.File, r.Expect)
			assert.Error(t, err, "%s is rejected", r.File)
			assert.Contains(t, string(out), filepath.Base(r.File)+":", "the message names the file and line")
			assert.Contains(t, string(out), want, r.File)

			// The same file at stage load: `rcwatch run` refuses to start,
			// with the same message.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err = exec.CommandContext(ctx, proctest.Rcwatch(), "run", "--source", "http://127.0.0.1:1/none",
				"--data-dir", filepath.Join(t.TempDir(), "data"), "--ops-addr", "", "--feed-addr", "", "--enrich=false",
				"--rules", filepath.Join(hostileDir, r.File)).CombinedOutput()
			timedOut := ctx.Err()
			cancel()
			require.NoError(t, timedOut, "%s: run started anyway", r.File)
			assert.Error(t, err, "%s: run refuses to start", r.File)
			assert.Contains(t, string(out), want, "%s at stage load", r.File)
		}
	})

	items := hostileItems(t, m)
	srv := httptest.NewServer(hostileServer(items))
	t.Cleanup(srv.Close)
	ircd := ircdtest.Start(t, ircdtest.Options{})
	watcher := ircdtest.Dial(t, ircd.Addr, "watcher", "")
	watcher.Join(t, "#hostile")
	dir := t.TempDir()
	ircConf := writeFile(t, dir, "irc.yaml", fmt.Sprintf(`lease_ttl: 2s
# Every alert on its own line: this test counts them (folding a backlog
# into digests is tested in actions/irc).
backlog_fold: {off: true}
networks:
  - name: local
    host: 127.0.0.1
    port: %d
    nick: hostilebot
    flood: {rate: 50, burst: 50, backlog: 1000}
    channels:
      - name: "#hostile"
        plain: true
        route: {from_actions: true}
`, ircd.Port))
	natsPort := freeport.Must(t)
	ops := fmt.Sprintf("127.0.0.1:%d", freeport.Must(t))
	p := startProc(t, nil, "run", "--source", srv.URL, "--data-dir", filepath.Join(dir, "data"),
		"--ops-addr", ops, "--nats-port", fmt.Sprint(natsPort), "--enrich=false",
		"--rules", filepath.Join(hostileDir, "rules/alert-all.yaml"),
		"--rules", filepath.Join(hostileDir, "rules/match-everything.yaml"),
		"--min-evaluations", "5", "--irc-config", ircConf, "--since", "1h")
	nc, err := pipeline.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "hostile", zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)

	processed, dead := map[string]int{}, map[string]string{}
	for _, it := range items {
		switch {
		case it.expect == "processed":
			processed[it.metaID]++
		case strings.HasPrefix(it.expect, "deadletter:"):
			dead[it.name] = strings.TrimPrefix(it.expect, "deadletter:")
		}
	}
	last := items[len(items)-1]
	// run creates the streams as it starts: read RECENTCHANGE once it exists.
	natstest.WaitStream(t, js, pipeline.StreamRecentChange, 60*time.Second)
	require.Eventually(t, func() bool {
		for _, msg := range natstest.Messages(t, js, pipeline.StreamRecentChange) {
			if ev, err := event.Decode(msg.Data()); err == nil && ev.Meta.ID == last.metaID {
				return true
			}
		}
		return false
	}, 90*time.Second, 100*time.Millisecond, "the last good event never arrived")
	natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, "", 60*time.Second)

	// Every good item stored once, nothing else.
	stored := map[string]int{}
	for _, msg := range natstest.Messages(t, js, pipeline.StreamRecentChange) {
		ev, err := event.Decode(msg.Data())
		require.NoError(t, err, "only decodable events are stored")
		stored[ev.Meta.ID]++
	}
	for _, it := range items {
		switch it.expect {
		case "processed":
			assert.Equal(t, 1, stored[it.metaID], "%s: stored once", it.name)
		case "duplicate":
			assert.Equal(t, 1, stored[it.metaID], "%s: the repeat is not stored again", it.name)
		}
	}
	assert.Len(t, stored, len(processed), "nothing stored but the good items")

	// Every bad item dead-lettered, with its reason.
	byID := map[string]string{}
	for _, msg := range natstest.Messages(t, js, "DEADLETTER") {
		src := msg.Headers().Get(pipeline.HeaderSource)
		id, _ := strings.CutPrefix(src, "ingest id=")
		reason, _, _ := strings.Cut(msg.Headers().Get(pipeline.HeaderReason), ":")
		byID[id] = reason
		t.Logf("dead letter %s: %s", id, msg.Headers().Get(pipeline.HeaderReason))
	}
	for k, it := range items {
		if want, ok := dead[it.name]; ok {
			assert.Equal(t, want, byID[hostileID(k)], "%s dead-lettered with its reason", it.name)
		}
	}
	assert.Len(t, byID, len(dead), "a dead letter for each bad item and nothing else")

	// One IRC line per good event, nothing injected, the bot still there.
	watcher.WaitMessages(t, "#hostile", len(processed), 60*time.Second)
	require.NoError(t, waitQuiet(t, js))
	msgs := watcher.Messages("#hostile")
	assert.Len(t, msgs, len(processed), "one line per good event")
	// (The injected text is there, inside the one PRIVMSG: an injection
	// would be a line of its own, with its own command.)
	for _, l := range watcher.Lines() {
		f := strings.Fields(l.Raw)
		if len(f) < 3 || !strings.HasPrefix(f[0], ":hostilebot!") {
			continue
		}
		assert.NotContains(t, []string{"NOTICE", "QUIT", "KILL", "PART"}, f[1], "no injected command: %s", l.Raw)
		if pm, ok := ircdtest.ParsePrivmsg(l); ok {
			assert.Equal(t, "#hostile", pm.Target, "no message elsewhere: %s", l.Raw)
			assert.False(t, strings.HasPrefix(pm.Text, "injected"), "no injected line: %s", l.Raw)
			assert.NotContains(t, pm.Text, "\x00")
		}
	}

	// The match-everything rule was switched off by the match-rate guard.
	metrics := metricsText(t, "http://"+ops+"/metrics")
	assert.Regexp(t, `(?m)^rcwatch_rules_auto_disabled_total [1-9]`, metrics)
	resp, err := http.Get("http://" + ops + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "still ready")
	require.NoError(t, p.Signal(t, syscall.SIGTERM, 60*time.Second), "exit 0")
}

// waitQuiet waits until the alert consumers have nothing left.
func waitQuiet(tb testing.TB, js jetstream.JetStream) error {
	natstest.WaitConsumerDone(tb, js, pipeline.StreamAlerts, "", 60*time.Second)
	return nil
}

func metricsText(tb testing.TB, url string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(tb, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	var b strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&b)
	require.NoError(tb, err)
	return b.String()
}
