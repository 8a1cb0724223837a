package feed_test

// The load harness: RCWATCH_FEED_LOAD=1 go test ./actions/feed -run TestLoad -v
// (docs/BENCHMARKS.md). The feed runs in a child process (this test binary
// re-executed) so that its resident memory is its own; the SSE clients and
// the publisher run in the test process, on loopback.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions/feed"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

// TestLoadHelperProcess is the feed process of TestLoad; it does nothing
// unless started by it.
func TestLoadHelperProcess(t *testing.T) {
	if os.Getenv("RCWATCH_FEED_HELPER") != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	nc, err := pipeline.Connect(os.Getenv("RCWATCH_FEED_NATS"), "feed-load", zerolog.Nop())
	require.NoError(t, err)
	defer nc.Close()
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)
	f, err := feed.New(pipeline.Deps{NC: nc, JS: js, Reg: prometheus.NewRegistry(), Log: zerolog.Nop()},
		feed.Config{Addr: "127.0.0.1:0", MaxClients: 5000})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for f.Ready() != nil {
		time.Sleep(10 * time.Millisecond) // start-up only; the parent waits for this line
	}
	fmt.Printf("listening %s\n", f.Addr())
	require.NoError(t, <-done)
	os.Exit(0)
}

func rssKB(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// loadClient is one SSE connection that resumes by Last-Event-ID when the
// feed drops it.
type loadClient struct {
	query   string
	mu      sync.Mutex
	seen    map[uint64]int
	lat     []time.Duration
	ready   chan struct{}
	once    sync.Once
	reconns int
	lastID  string
}

func (c *loadClient) run(ctx context.Context, hc *http.Client, base string) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/alerts/stream?"+c.query, nil)
		if c.lastID != "" {
			req.Header.Set("Last-Event-ID", c.lastID)
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				c.reconns++
				time.Sleep(100 * time.Millisecond) // reconnect pause, as a browser's retry
			}
			continue
		}
		c.read(resp.Body)
		resp.Body.Close()
		if ctx.Err() == nil {
			c.reconns++
		}
	}
}

func (c *loadClient) read(body io.Reader) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev, id string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev = line[7:]
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			now := time.Now()
			switch ev {
			case "ready":
				c.once.Do(func() { close(c.ready) })
			case "alert":
				seq, _ := strconv.ParseUint(id, 10, 64)
				c.lastID = id
				var sent time.Time
				if i := strings.Index(line, `"detected_at":"`); i >= 0 {
					rest := line[i+len(`"detected_at":"`):]
					if j := strings.IndexByte(rest, '"'); j > 0 {
						sent, _ = time.Parse(time.RFC3339Nano, rest[:j])
					}
				}
				c.mu.Lock()
				c.seen[seq]++
				if !sent.IsZero() {
					c.lat = append(c.lat, now.Sub(sent))
				}
				c.mu.Unlock()
			}
		case line == "":
			ev, id = "", ""
		}
	}
}

type loadResult struct {
	clients       int
	rssBeforeKB   int64
	rssAfterKB    int64
	deliveries    int
	missing, dups int
	p50, p99, max time.Duration
	reconnects    int
}

func TestLoad(t *testing.T) {
	if os.Getenv("RCWATCH_FEED_LOAD") == "" {
		t.Skip("load harness: set RCWATCH_FEED_LOAD=1 (docs/BENCHMARKS.md)")
	}
	n, _ := strconv.Atoi(os.Getenv("RCWATCH_FEED_LOAD_CLIENTS"))
	if n == 0 {
		n = 500
	}
	secs, _ := strconv.Atoi(os.Getenv("RCWATCH_FEED_LOAD_SECONDS"))
	if secs == 0 {
		secs = 30
	}
	for _, clients := range []int{1, n} {
		r := loadRun(t, clients, 100, time.Duration(secs)*time.Second)
		perConn := float64(r.rssAfterKB-r.rssBeforeKB) / float64(max(r.clients, 1))
		t.Logf("clients=%d rate=100/s for %ds: deliveries=%d missing=%d duplicates=%d reconnects=%d "+
			"latency p50=%v p99=%v max=%v; feed RSS %d KB idle -> %d KB connected (%.1f KB per connection)",
			r.clients, secs, r.deliveries, r.missing, r.dups, r.reconnects, r.p50, r.p99, r.max,
			r.rssBeforeKB, r.rssAfterKB, perConn)
		require.Zero(t, r.missing, "alerts missed")
		require.Zero(t, r.dups, "alerts received twice")
	}
}

func loadRun(t *testing.T, clients, rate int, dur time.Duration) loadResult {
	e := newEnv(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadHelperProcess$")
	cmd.Env = append(os.Environ(), "RCWATCH_FEED_HELPER=1", "RCWATCH_FEED_NATS="+e.srv.URL)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	var addr string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			addr = a
			break
		}
	}
	require.NotEmpty(t, addr, "the feed process did not start")
	go func() { _, _ = io.Copy(io.Discard, out) }()
	base := "http://" + addr
	res := loadResult{clients: clients, rssBeforeKB: rssKB(t, cmd.Process.Pid)}

	hc := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: clients, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	queries := []string{"", "wiki=enwiki", "wiki=dewiki,frwiki", "severity=high"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := make([]*loadClient, clients)
	var wg sync.WaitGroup
	for i := range cs {
		cs[i] = &loadClient{query: queries[i%len(queries)], seen: map[uint64]int{}, ready: make(chan struct{})}
		wg.Add(1)
		go func(c *loadClient) { defer wg.Done(); c.run(ctx, hc, base) }(cs[i])
	}
	for _, c := range cs {
		select {
		case <-c.ready:
		case <-time.After(60 * time.Second):
			t.Fatal("a client did not get its ready event")
		}
	}
	res.rssAfterKB = rssKB(t, cmd.Process.Pid)

	// Publish at rate for dur; remember each alert's wiki and severity.
	type pub struct {
		wiki, sev string
	}
	published := map[uint64]pub{}
	wikis := []string{"enwiki", "dewiki", "frwiki", "eswiki"}
	sevs := []string{event.SeverityMedium, event.SeverityHigh}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	total := int(dur.Seconds()) * rate
	for i := 0; i < total; i++ {
		<-tick.C
		w, s := wikis[i%len(wikis)], sevs[(i/len(wikis))%len(sevs)]
		seq, _ := e.alert(t, w, "Load "+strconv.Itoa(i), withSeverity(s), func(a *event.Alert) { a.DetectedAt = time.Now() })
		published[seq] = pub{w, s}
	}
	tick.Stop()
	match := func(q string, p pub) bool {
		switch q {
		case "wiki=enwiki":
			return p.wiki == "enwiki"
		case "wiki=dewiki,frwiki":
			return p.wiki == "dewiki" || p.wiki == "frwiki"
		case "severity=high":
			return p.sev == event.SeverityHigh
		}
		return true
	}
	complete := func(c *loadClient) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for seq, p := range published {
			if match(c.query, p) && c.seen[seq] == 0 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, c := range cs {
		for !complete(c) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // polling the clients' tallies
		}
	}
	cancel()
	hc.CloseIdleConnections()
	wg.Wait()
	var lat []time.Duration
	for _, c := range cs {
		res.reconnects += c.reconns
		for seq, p := range published {
			want := match(c.query, p)
			switch got := c.seen[seq]; {
			case want && got == 0:
				res.missing++
			case got > 1:
				res.dups += got - 1
			case !want && got > 0:
				res.dups += got // a non-matching alert counts as wrong
			}
		}
		res.deliveries += len(c.lat)
		lat = append(lat, c.lat...)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50, res.p99, res.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	return res
}
