// Package toolforge_test checks deploy/toolforge against the Toolforge jobs
// framework as its sources define it, and runs the job's command line the
// way the framework does.
//
// The schema below is the jobs CLI loader's (toolforge-jobs-framework-cli,
// tjf_cli/cli.py: op_load turns each YAML key into `--key value` for the
// `run` argument parser, RUN_ARGS, with its types, choices and mutually
// exclusive groups) and the jobs API's model validation (tjf/core/models.py:
// ContinuousJob, FileLoggingOptions, JOBNAME_PATTERN/JOBNAME_MAX_LENGTH).
// The command wrapper is tjf/runtimes/k8s/command.py: ["/bin/sh", "-c", "--", cmd]
// for a non-build-service image with file logging off.
package toolforge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
	"github.com/rcwatch/rcwatch/internal/testbed/proctest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Toolforge's grace period between SIGTERM and SIGKILL (the jobs API sets
// no terminationGracePeriodSeconds beyond this).
const gracePeriod = 15 * time.Second

// argKind is how the CLI's argument parser takes a key (RUN_ARGS).
type argKind int

const (
	argString argKind = iota
	argTrue           // store_true flags: the loader passes them only for YAML true
	argInt
)

type argSpec struct {
	kind    argKind
	choices []string
}

// runArgs is RUN_ARGS of the jobs CLI: every key `toolforge jobs load` accepts.
var runArgs = map[string]argSpec{
	"name": {kind: argString}, "command": {kind: argString}, "image": {kind: argString},
	"no-filelog": {kind: argTrue}, "filelog": {kind: argTrue},
	"filelog-stdout": {kind: argString}, "filelog-stderr": {kind: argString},
	"retry": {kind: argInt, choices: []string{"0", "1", "2", "3", "4", "5"}},
	"mem":   {kind: argString}, "cpu": {kind: argString},
	"emails":  {kind: argString, choices: []string{"none", "all", "onfinish", "onfailure"}},
	"mount":   {kind: argString, choices: []string{"all", "none"}},
	"timeout": {kind: argInt}, "schedule": {kind: argString},
	"continuous": {kind: argTrue}, "wait": {kind: argInt},
	"health-check-script": {kind: argString}, "health-check-http": {kind: argString},
	"port": {kind: argString}, "replicas": {kind: argInt},
}

// exclusive are the parser's mutually exclusive groups.
var exclusive = [][]string{
	{"continuous", "schedule", "wait"},
	{"no-filelog", "filelog"},
	{"health-check-script", "health-check-http"},
}

var jobNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

type job map[string]any

func loadJobs(t *testing.T) []job {
	t.Helper()
	b, err := os.ReadFile("jobs.yaml")
	require.NoError(t, err)
	var jobs []job
	require.NoError(t, yaml.Unmarshal(b, &jobs), "jobs.yaml is a YAML list of jobs")
	require.NotEmpty(t, jobs)
	return jobs
}

// validate applies the loader's and the API's rules to one job.
func validate(j job) []string {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	for k, v := range j {
		spec, ok := runArgs[k]
		if !ok {
			bad("unknown key %q (the CLI's parser refuses it)", k)
			continue
		}
		switch spec.kind {
		case argTrue:
			if v != true {
				bad("%s: %v is ignored by the loader; only an unquoted true is passed on", k, v)
			}
		case argInt:
			if _, ok := v.(int); !ok {
				bad("%s: %v is not an integer", k, v)
			}
		case argString:
			if _, ok := v.(string); !ok && k != "port" {
				bad("%s: %v is not a string", k, v)
			}
		}
		if len(spec.choices) > 0 && !contains(spec.choices, fmt.Sprint(v)) {
			bad("%s: %v not one of %v", k, v, spec.choices)
		}
	}
	for _, req := range []string{"name", "command", "image"} {
		if _, ok := j[req]; !ok {
			bad("missing %s", req)
		}
	}
	for _, g := range exclusive {
		n := 0
		for _, k := range g {
			if _, ok := j[k]; ok {
				n++
			}
		}
		if n > 1 {
			bad("keys %v are mutually exclusive", g)
		}
	}
	name, _ := j["name"].(string)
	if !jobNamePattern.MatchString(name) || len(name) > 52 {
		bad("name %q: lowercase RFC 1123, at most 52 characters", name)
	}
	for _, k := range []string{"mem", "cpu"} {
		if s, ok := j[k].(string); ok {
			if _, err := resource.ParseQuantity(s); err != nil {
				bad("%s %q: %v", k, s, err)
			}
		}
	}
	if p, ok := j["port"]; ok {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(fmt.Sprint(p), "/tcp"), "/udp"))
		if err != nil || n < 1 || n > 65535 {
			bad("port %v: want 1-65535[/tcp|/udp]", p)
		}
	}
	if r, ok := j["replicas"].(int); ok && r < 0 {
		bad("replicas %d < 0", r)
	}
	if _, ok := j["health-check-http"]; ok {
		if _, ok := j["port"]; !ok {
			bad("an HTTP health check needs port")
		}
	}
	if _, ok := j["replicas"]; ok && j["continuous"] != true {
		bad("replicas is only valid for continuous jobs")
	}
	if j["filelog"] == true && j["mount"] != nil && j["mount"] != "all" {
		bad("file logging needs mount: all")
	}
	return errs
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The validator itself: it refuses what the loader and the API refuse.
func TestValidatorRefusesWhatTheLoaderRefuses(t *testing.T) {
	ok := job{"name": "rcwatch", "command": "exec x", "image": "bookworm", "continuous": true}
	require.Empty(t, validate(ok))
	tests := map[string]job{
		"unknown key":            {"restart": "always"},
		"quoted true":            {"no-filelog": "yes"},
		"retry out of range":     {"retry": 9},
		"emails choice":          {"emails": "sometimes"},
		"mem quantity":           {"mem": "lots"},
		"http check no port":     {"health-check-http": "/healthz"},
		"exclusive":              {"schedule": "* * * * *"},
		"exclusive health check": {"health-check-http": "/healthz", "health-check-script": "true", "port": 1},
		"bad name":               {"name": "RCWatch_Job"},
		"port range":             {"port": 70000},
		"filelog without mount":  {"filelog": true, "mount": "none"},
	}
	for name, patch := range tests {
		t.Run(name, func(t *testing.T) {
			j := job{}
			for k, v := range ok {
				j[k] = v
			}
			for k, v := range patch {
				j[k] = v
			}
			assert.NotEmpty(t, validate(j))
		})
	}
}

// jobs.yaml is what `toolforge jobs load` accepts, and what rcwatch needs
// there: one continuous job (one SSE connection per tool), exec'd, drained
// within the grace period, logs on stdout, an HTTP health check on
// /healthz at the ops port, GOMEMLIMIT under mem, JetStream off NFS.
func TestJobsYAML(t *testing.T) {
	jobs := loadJobs(t)
	require.Len(t, jobs, 1, "one job: one EventStreams connection per tool")
	j := jobs[0]
	assert.Empty(t, validate(j))
	assert.Equal(t, true, j["continuous"])
	assert.Equal(t, 1, j["replicas"], "one SSE connection per tool")
	assert.Equal(t, true, j["no-filelog"], "toolforge jobs logs refuses jobs with file logs")
	assert.Equal(t, "/healthz", j["health-check-http"])
	assert.Equal(t, "all", j["mount"], "the binary and the checkpoint are on the tool's home")

	cmd := j["command"].(string)
	args := strings.Fields(cmd)
	i := 0
	for i < len(args) && strings.Contains(args[i], "=") && !strings.HasPrefix(args[i], "-") {
		i++ // VAR=value assignments
	}
	require.Less(t, i, len(args))
	assert.Equal(t, "exec", args[i], "the shell must exec rcwatch so that SIGTERM reaches it")
	assert.Contains(t, args[i+2], "run")

	flag := func(name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return strings.Trim(v, `"`)
			}
		}
		return ""
	}
	drain, err := time.ParseDuration(flag("drain-timeout"))
	require.NoError(t, err)
	assert.LessOrEqual(t, drain+5*time.Second, gracePeriod, "the drain and the rest of the shutdown fit in 15 s")
	assert.Equal(t, fmt.Sprintf(":${RCWATCH_OPS_PORT:-%d}", j["port"]), flag("ops-addr"), "health check port = --ops-addr")
	assert.NotContains(t, flag("data-dir"), "TOOL_DATA_DIR", "JetStream never on NFS")
	assert.NotContains(t, flag("data-dir"), "HOME")
	assert.Contains(t, flag("checkpoint"), "$TOOL_DATA_DIR/", "the checkpoint on the tool's home")

	mem, err := resource.ParseQuantity(j["mem"].(string))
	require.NoError(t, err)
	m := regexp.MustCompile(`GOMEMLIMIT=(\d+)MiB`).FindStringSubmatch(cmd)
	require.NotNil(t, m, "GOMEMLIMIT set from mem")
	limit, _ := strconv.ParseInt(m[1], 10, 64)
	assert.LessOrEqual(t, limit<<20, mem.Value()*85/100, "GOMEMLIMIT leaves room under mem")
	assert.GreaterOrEqual(t, limit<<20, mem.Value()*60/100)
	assert.LessOrEqual(t, mem.Value(), int64(4<<30))

	// The streams fit the container's disk and the default 1 GiB budget.
	assert.Contains(t, flag("stream-max-bytes"), "RECENTCHANGE=")
}

// The Procfile (build service) runs the same command with the image's
// rcwatch binary.
func TestProcfileMatchesJobs(t *testing.T) {
	b, err := os.ReadFile("../../Procfile")
	require.NoError(t, err)
	cmd := loadJobs(t)[0]["command"].(string)
	want := strings.Replace(cmd, `"$TOOL_DATA_DIR/bin/rcwatch"`, "rcwatch", 1)
	var found bool
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if typ, line, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(typ) == "rcwatch-run" {
			found = true
			assert.Equal(t, want, strings.TrimSpace(line))
		}
	}
	assert.True(t, found, "Procfile has the rcwatch-run process type (not rcwatch: /cnb/process comes first on PATH and would shadow the binary)")
}

// The job's exact command, run as the jobs framework runs it (/bin/sh -c --
// cmd), under load: SIGTERM to the container's process ends in a drain
// and exit 0 within Toolforge's 15 s, and the checkpoint is on the home.
func TestJobCommandDrainsWithinGracePeriod(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, "bin"), 0o755))
	// The job runs it from $HOME/bin, as the jobs framework does.
	_, err := proctest.Build(filepath.Join(home, "bin"), proctest.Package)
	require.NoError(t, err)

	events := fixtures.Unique(t, 500, "recentchange.editgroups.qs_batch_with_reverts.jsonl")
	hs := httptest.NewServer(ingest.NewReplay(ingest.ReplayConfig{Events: events, Loop: true, UniqueIDs: true, Rate: 400}, zerolog.Nop()))
	t.Cleanup(hs.Close)
	port := freeport.Must(t)

	cmdline := loadJobs(t)[0]["command"].(string)
	cmd := exec.Command("/bin/sh", "-c", "--", cmdline)
	cmd.Env = append(os.Environ(),
		"TOOL_DATA_DIR="+home, "HOME="+home, "TMPDIR="+t.TempDir(),
		fmt.Sprintf("RCWATCH_OPS_PORT=%d", port),
		"RCWATCH_SOURCE="+hs.URL, "RCWATCH_ENRICH=false", "RCWATCH_CHECKPOINT_INTERVAL=200ms")
	logf, err := os.Create(filepath.Join(t.TempDir(), "job.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("job log:\n%s", b)
		}
	})

	// exec: the shell's pid is rcwatch itself.
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
		return strings.TrimSpace(string(b)) == "rcwatch"
	}, 10*time.Second, 10*time.Millisecond, "the shell did not exec rcwatch")

	// Under load: events flowing, the health check answering.
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	require.Eventually(t, func() bool {
		return scrape(metrics, "rcwatch_ingest_events_published_total") > 1000
	}, 60*time.Second, 50*time.Millisecond, "ingest never got going")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err, "exit status 0")
	case <-time.After(gracePeriod):
		t.Fatalf("still running %v after SIGTERM: Toolforge would SIGKILL it", gracePeriod)
	}
	t.Logf("drained and exited in %v", time.Since(start))
	c, ok, err := pipeline.ReadCheckpoint(filepath.Join(home, "rcwatch", "checkpoint.json"))
	require.NoError(t, err)
	require.True(t, ok, "checkpoint written on the tool's home")
	assert.False(t, c.ResumeFrom.IsZero())
}

// scrape reads one unlabelled sample from a Prometheus text page (-1 when absent).
func scrape(url, name string) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return -1
}

// everyEventRule alerts on every event, so that the alerts show which
// events were evaluated.
const everyEventRule = `rules:
  - id: every-event
    description: matches every event (test)
    when: "true"
    severity: info
    score: 0
    actions: [feed]
    owner: test
    max_match_rate: 1
`

// A Toolforge restart: the job's process is SIGKILLed and its container
// disk (the JetStream store) is gone; the new process resumes from the
// checkpoint on the tool's home. Every event the source served is
// evaluated (no gap), no run evaluates an event twice, and the repeats are
// only events from the checkpoint's second on, no more than the design
// allows: the events of that second (since= is whole seconds, and so are
// the fixtures' event times), plus what the evaluator finished between the last checkpoint
// and the kill: the checkpoint interval's worth at the source's rate, with
// restartMargin for a loaded 2-core machine (a late tick, a slow fsync of
// the checkpoint, the evaluator's in-flight batch and lag).
func TestJobRestartFromCheckpoint(t *testing.T) {
	const (
		checkpointInterval = 200 * time.Millisecond
		restartMargin      = 2 * time.Second
	)
	home := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, "bin"), 0o755))
	_, err := proctest.Build(filepath.Join(home, "bin"), proctest.Package)
	require.NoError(t, err)
	ruleFile := filepath.Join(home, "every-event.yaml")
	require.NoError(t, os.WriteFile(ruleFile, []byte(everyEventRule), 0o644))

	const rate = 250
	events := fixtures.Unique(t, 1500, "recentchange.editgroups.qs_batch_with_reverts.jsonl")
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: events, Rate: rate}, zerolog.Nop())
	gate := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-gate // until the test listens for alerts
		replay.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	tmp := t.TempDir() // the container's disk

	type run struct {
		cmd  *exec.Cmd
		done chan error
		seen map[string]int // event meta_id → alerts seen
		mu   sync.Mutex
	}
	cmdline := loadJobs(t)[0]["command"].(string)
	start := func(name string) *run {
		opsPort, natsPort := freeport.Must(t), freeport.Must(t)
		cmd := exec.Command("/bin/sh", "-c", "--", cmdline)
		cmd.Env = append(os.Environ(),
			"TOOL_DATA_DIR="+home, "HOME="+home, "TMPDIR="+tmp,
			fmt.Sprintf("RCWATCH_OPS_PORT=%d", opsPort), fmt.Sprintf("RCWATCH_NATS_PORT=%d", natsPort),
			"RCWATCH_SOURCE="+hs.URL, "RCWATCH_ENRICH=false", "RCWATCH_RULES="+ruleFile,
			"RCWATCH_CHECKPOINT_INTERVAL="+checkpointInterval.String())
		logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		r := &run{cmd: cmd, done: make(chan error, 1), seen: map[string]int{}}
		go func() { r.done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", name, b)
			}
		})
		var nc *nats.Conn
		require.Eventually(t, func() bool {
			nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
			return err == nil
		}, 30*time.Second, 20*time.Millisecond, "%s: embedded NATS never listened", name)
		t.Cleanup(nc.Close)
		_, err = nc.Subscribe("alert.>", func(m *nats.Msg) {
			var a struct {
				Event struct {
					MetaID string `json:"meta_id"`
				} `json:"event"`
			}
			if json.Unmarshal(m.Data, &a) == nil {
				r.mu.Lock()
				r.seen[a.Event.MetaID]++
				r.mu.Unlock()
			}
		})
		require.NoError(t, err)
		require.NoError(t, nc.Flush())
		return r
	}
	count := func(r *run) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.seen)
	}

	first := start("first")
	close(gate)
	require.Eventually(t, func() bool { return count(first) >= 600 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	<-first.done
	require.NoError(t, os.RemoveAll(filepath.Join(tmp, "rcwatch-jetstream")), "a new container: the store is gone")
	c, ok, err := pipeline.ReadCheckpoint(filepath.Join(home, "rcwatch", "checkpoint.json"))
	require.NoError(t, err)
	require.True(t, ok)

	second := start("second")
	want := map[string]bool{}
	for _, e := range events {
		want[fixtures.MetaID(t, e)] = true
	}
	require.Eventually(t, func() bool {
		first.mu.Lock()
		second.mu.Lock()
		defer first.mu.Unlock()
		defer second.mu.Unlock()
		for id := range want {
			if first.seen[id] == 0 && second.seen[id] == 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "an event was never evaluated")

	// Where the second run starts: the replay, like EventStreams, serves
	// from the first event at or after since= (resume_from in whole seconds).
	since := c.ResumeFrom.UTC().Truncate(time.Second)
	offset := map[string]int{}
	resumeOff, sameSecond := len(events), 0
	for i, e := range events {
		offset[fixtures.MetaID(t, e)] = i
		dt := eventDT(t, e)
		if resumeOff == len(events) && !dt.Before(since) {
			resumeOff = i
		}
		if resumeOff <= i && dt.Before(since.Add(time.Second)) {
			sameSecond++ // the events of resume_from's second (the fixtures' meta.dt are whole seconds)
		}
	}
	snapshot := func(r *run) map[string]int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return maps.Clone(r.seen)
	}
	firstSeen, secondSeen := snapshot(first), snapshot(second)
	repeated := 0
	for id, n := range firstSeen {
		assert.Equal(t, 1, n, "the first run evaluated %s %d times", id, n)
		if secondSeen[id] > 0 {
			repeated++
			assert.GreaterOrEqual(t, offset[id], resumeOff,
				"%s was evaluated again though it is before the checkpoint's resume point (offset %d, resume at %d)",
				id, offset[id], resumeOff)
		}
	}
	for id, n := range secondSeen {
		assert.Equal(t, 1, n, "the second run evaluated %s %d times", id, n)
	}
	bound := sameSecond + int(float64(rate)*(checkpointInterval+restartMargin).Seconds())
	t.Logf("first run evaluated %d events, second %d; %d evaluated twice, bound %d (%d in resume_from's second, "+
		"%d ev/s × (%v + %v)); checkpoint resume_from %s, resumed at offset %d",
		len(firstSeen), len(secondSeen), repeated, bound, sameSecond, rate, checkpointInterval, restartMargin,
		c.ResumeFrom.Format(time.RFC3339Nano), resumeOff)
	assert.LessOrEqual(t, repeated, bound)
	require.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-second.done:
		require.NoError(t, err)
	case <-time.After(gracePeriod):
		t.Fatal("no exit within 15 s of SIGTERM")
	}
}

// eventDT is meta.dt of a raw event.
func eventDT(tb testing.TB, data []byte) time.Time {
	tb.Helper()
	var v struct {
		Meta struct {
			DT time.Time `json:"dt"`
		} `json:"meta"`
	}
	require.NoError(tb, json.Unmarshal(data, &v))
	require.False(tb, v.Meta.DT.IsZero(), "event without meta.dt")
	return v.Meta.DT
}
