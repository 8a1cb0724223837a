// Package loadtest measures the whole pipeline as users run it: `rcwatch
// run` as its own process (embedded NATS with file storage, the default
// pack, enrichment off) fed by the replay server, beside a plain JetStream
// async publish of the same bytes measured in the same run on the same
// machine. `rcwatch bench pipeline` prints what it finds.
package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules/pack"
)

// Config is one measurement.
type Config struct {
	// Binary is the rcwatch executable run as `rcwatch run`.
	Binary string
	// Events are the recorded events, served in a loop with a distinct
	// meta.id for every frame.
	Events [][]byte
	// N is the number of events served.
	N int
	// Rate paces the replay (events/s; 0: as fast as possible).
	Rate float64
	// Workers of the evaluator (0: its default).
	Workers int
	// RulesCopies loads the default pack this many times (ids renamed); 0 or 1: once.
	RulesCopies int
	// Baseline also measures a plain JetStream async publish of the same
	// bytes (its own embedded server, file storage) before the pipeline.
	Baseline bool
	// Stall: evaluator pauses longer than this, with events waiting, are reported (default 2s).
	Stall time.Duration
	// Poll is the sampling interval (default 50ms).
	Poll time.Duration
	// MemEvery samples the process's resident memory this often (default 10s).
	MemEvery time.Duration
	// Timeout bounds the run (default 10m; `rcwatch bench pipeline` passes 15m).
	Timeout time.Duration
	// Dir is where the data directories go (default os.TempDir()).
	Dir string
	// Stderr receives the process's log (nil: discarded).
	Stderr io.Writer
	// Args are extra flags of `rcwatch run`.
	Args []string
	// Env is extra environment of `rcwatch run` (KEY=value), e.g.
	// GOMEMLIMIT=300MiB or GODEBUG=gctrace=1; the bench's own runtime is
	// not affected.
	Env []string
	// DumpOnStall: when a stall passes this, the process is sent SIGQUIT
	// (Go prints every goroutine's stack to Stderr) and the run ends with an
	// error; for diagnosis (0: off).
	DumpOnStall time.Duration
}

// Result is what one measurement found.
type Result struct {
	Served    int           // frames the replay served
	Stored    int           // events in RECENTCHANGE at the end
	StoredPS  float64       // stored events/s (first stored to last stored)
	EvalPS    float64       // evaluated events/s (first stored to the rules consumer's ack floor reaching the last)
	StoreTime time.Duration // first to last stored
	EvalTime  time.Duration // first stored to last evaluated
	Baseline  float64       // plain async publish, events/s (0: not measured)
	Stalls    []time.Duration
	// StallStates describes the rules consumer when each stall passed the threshold.
	StallStates []string
	// StallDetails tells, for each stall, what moved while the ack floor
	// stood still (see Stall).
	StallDetails []Stall
	CPU          time.Duration // CPU time of the process from the first stored event to the end
	Memory       []MemSample
}

// Stall is what the harness saw while the rules consumer's ack floor stood
// still with events waiting: whether ingest stored, whether the server
// delivered, whether the evaluator handled (its own counter), whether the
// process ran at all (its CPU time), how slow the harness's own requests
// to the server were, and the machine's load. Together they tell a client
// that waits (nothing delivered, CPU idle) from a server that does not
// answer (slow requests, nothing stored either) from a starved process.
type Stall struct {
	Wall       time.Time     // when the floor last moved before the stall
	SinceStart time.Duration // the same, since `rcwatch run` was started (gctrace's clock)
	Dur        time.Duration
	Floor      uint64 // the ack floor that stood still
	Stored     uint64 // events stored during the stall
	Delivered  uint64 // events the server delivered to the rules consumer during it
	Handled    int64  // messages the evaluator finished during it (-1: unknown)
	AckPending [2]int // lowest and highest acknowledgements pending seen
	Waiting    [2]int // lowest and highest waiting pull requests seen
	CPU        time.Duration
	// RunQueueWait is the time the process's threads spent runnable but
	// waiting for a core (summed over threads, /proc schedstat): close to
	// Dur or above, the process was starved by the machine's load.
	RunQueueWait time.Duration
	SlowestPoll  time.Duration // slowest stream+consumer info round trip of the harness
	Load         string        // /proc/loadavg at the end
}

func (s Stall) String() string {
	h := "?"
	if s.Handled >= 0 {
		h = strconv.FormatInt(s.Handled, 10)
	}
	return fmt.Sprintf("%.2fs from %s (process +%.1fs): floor %d; meanwhile stored +%d, delivered +%d, handled +%s, "+
		"ack pending %d–%d, waiting pulls %d–%d, process CPU %v, waiting for a core %v, slowest harness poll %v, load %s",
		s.Dur.Seconds(), s.Wall.UTC().Format("15:04:05.000"), s.SinceStart.Seconds(), s.Floor, s.Stored, s.Delivered, h,
		s.AckPending[0], s.AckPending[1], s.Waiting[0], s.Waiting[1], s.CPU.Round(time.Millisecond),
		s.RunQueueWait.Round(time.Millisecond), s.SlowestPoll.Round(time.Millisecond), s.Load)
}

// MemSample is the process's resident memory at a time after the first stored event.
type MemSample struct {
	At  time.Duration
	RSS int64
}

// CPUPerEvent is the process's CPU time per stored event (at the end of a
// run every stored event has been evaluated, so it is per evaluated event too).
func (r Result) CPUPerEvent() time.Duration {
	if r.Stored == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Stored)
}

// Ratio is evaluated events/s over the baseline (0 without one).
func (r Result) Ratio() float64 {
	if r.Baseline == 0 {
		return 0
	}
	return r.EvalPS / r.Baseline
}

// MaxStall is the longest pause reported (0: none).
func (r Result) MaxStall() time.Duration {
	var m time.Duration
	for _, s := range r.Stalls {
		m = max(m, s)
	}
	return m
}

func (c *Config) defaults() error {
	if c.Binary == "" || len(c.Events) == 0 || c.N <= 0 {
		return errors.New("loadtest: Binary, Events and N are required")
	}
	if c.Stall <= 0 {
		c.Stall = 2 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 50 * time.Millisecond
	}
	if c.MemEvery <= 0 {
		c.MemEvery = 10 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	return nil
}

// Run measures once: the baseline (when asked), then the pipeline.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	dir, err := os.MkdirTemp(cfg.Dir, "rcwatch-bench-")
	if err != nil {
		return Result{}, fmt.Errorf("creating the bench directory: %w", err)
	}
	defer os.RemoveAll(dir)

	replay := ingest.NewReplay(ingest.ReplayConfig{Events: cfg.Events, Loop: true, UniqueIDs: true,
		Limit: cfg.N, Rate: cfg.Rate}, zerolog.Nop())
	var res Result
	settle() // the previous run's files: written back before this one starts
	if cfg.Baseline {
		bdir := filepath.Join(dir, "baseline")
		if res.Baseline, err = baseline(ctx, bdir, replay, cfg.N); err != nil {
			return res, err
		}
		if err := os.RemoveAll(bdir); err != nil {
			return res, fmt.Errorf("removing the baseline's store: %w", err)
		}
		settle()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("listening for the replay server: %w", err)
	}
	srv := &http.Server{Handler: replay, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v2/stream/recentchange"
	err = pipelineRun(ctx, cfg, dir, url, replay, &res)
	return res, err
}

// settle lets one measurement's leftovers finish before the next starts:
// the kernel writes back the dirty pages of the last store (otherwise its
// flusher writes the baseline's hundreds of MB while the pipeline runs, on
// the same two cores) and this process returns the baseline's payloads.
func settle() {
	syscall.Sync()
	debug.FreeOSMemory() // a collection, then the freed memory back to the OS
}

// baseline publishes the same N payloads with JetStream async publish
// (4,096 in flight) to a file-storage stream of a fresh embedded server,
// over an in-process connection as `rcwatch run` uses, and returns events/s.
func baseline(ctx context.Context, dir string, replay *ingest.Replay, n int) (float64, error) {
	emb, err := pipeline.StartEmbedded(pipeline.EmbeddedConfig{StoreDir: dir, Name: "baseline"})
	if err != nil {
		return 0, fmt.Errorf("starting the baseline server: %w", err)
	}
	defer emb.Shutdown()
	nc, err := emb.Connect("baseline", zerolog.Nop())
	if err != nil {
		return 0, fmt.Errorf("connecting to the baseline server: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, fmt.Errorf("baseline JetStream context: %w", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"base.>"},
		Storage: jetstream.FileStorage}); err != nil {
		return 0, fmt.Errorf("creating the baseline stream: %w", err)
	}
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = replay.Payload(int64(i))
	}
	start := time.Now()
	for _, p := range payloads {
		if _, err := js.PublishAsync("base.rc", p, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, fmt.Errorf("baseline publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, fmt.Errorf("baseline publish: %w", ctx.Err())
	}
	el := time.Since(start)
	s, err := js.Stream(ctx, "BASELINE")
	if err != nil {
		return 0, fmt.Errorf("baseline stream: %w", err)
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(n) {
		return 0, fmt.Errorf("baseline stored %d of %d", got, n)
	}
	return float64(n) / el.Seconds(), nil
}

// pipelineRun starts `rcwatch run`, samples RECENTCHANGE and the rules
// consumer until every served event is stored and evaluated, and stops it.
func pipelineRun(ctx context.Context, cfg Config, dir, url string, replay *ingest.Replay, res *Result) error {
	port, err := pipeline.FreePort()
	if err != nil {
		return err
	}
	opsPort, err := pipeline.FreePort()
	if err != nil {
		return err
	}
	ops := fmt.Sprintf("127.0.0.1:%d", opsPort)
	args := []string{"run", "--data-dir", filepath.Join(dir, "data"), "--nats-port", strconv.Itoa(port),
		"--source", url, "--enrich=false", "--ops-addr", ops, "--log-format", "json", "--log-level", "warn"}
	if cfg.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(cfg.Workers))
	}
	if cfg.RulesCopies > 1 {
		rdir := filepath.Join(dir, "rules")
		if err := writeRuleCopies(rdir, cfg.RulesCopies-1); err != nil {
			return err
		}
		args = append(args, "--rules", rdir, "--default-pack")
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(cfg.Binary, args...)
	cmd.Stdout, cmd.Stderr = cfg.Stderr, cfg.Stderr
	cmd.Env = append(os.Environ(), cfg.Env...)
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s run: %w", cfg.Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer stopProcess(cmd, exited)

	nc, js, err := connect(ctx, port, exited)
	if err != nil {
		return err
	}
	defer nc.Close()
	p := probe{js: js, pid: cmd.Process.Pid, started: started, metricsURL: "http://" + ops + "/metrics"}
	return sample(ctx, cfg, p, replay, exited, res)
}

func connect(ctx context.Context, port int, exited <-chan error) (*nats.Conn, jetstream.JetStream, error) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for {
		nc, err := nats.Connect(url, nats.Name("rcwatch-bench"))
		if err == nil {
			js, err := jetstream.New(nc)
			if err != nil {
				nc.Close()
				return nil, nil, err
			}
			return nc, js, nil
		}
		select {
		case err := <-exited:
			return nil, nil, fmt.Errorf("rcwatch run exited before NATS was up: %v", err)
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for rcwatch run's NATS at %s: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probe is how the harness looks at the running process.
type probe struct {
	js         jetstream.JetStream
	pid        int
	started    time.Time
	metricsURL string
}

// handled is the evaluator's own count of finished messages (its
// rcwatch_stage_messages_total), or -1 when the metrics cannot be read.
func (p probe) handled(ctx context.Context) int64 {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ictx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return -1
	}
	return sumCounter(b, "rcwatch_stage_messages_total", `stage="rules"`)
}

// sumCounter adds the values of metric's samples whose labels contain
// label, in the Prometheus text format.
func sumCounter(text []byte, metric, label string) int64 {
	var n float64
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, metric+"{") || !strings.Contains(line, label) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			n += v
		}
	}
	return int64(n)
}

// stallWatch follows one stand-still of the ack floor.
type stallWatch struct {
	st        Stall
	seq0      uint64
	delivered uint64
	cpu0      time.Duration
	wait0     time.Duration
	handled0  int64
	probed    bool // handled0 read
}

// LoadAvg is the machine's load average over 1, 5 and 15 minutes (Linux /proc).
func LoadAvg() string { return loadAvg() }

// Growth is the change of resident memory over the last window of the
// samples: the last sample minus the first sample at or after (end −
// window). ok is false when the samples do not cover the window.
func Growth(mem []MemSample, window time.Duration) (growth int64, from time.Duration, ok bool) {
	if len(mem) < 2 {
		return 0, 0, false
	}
	last := mem[len(mem)-1]
	if last.At < window {
		return 0, 0, false
	}
	for _, m := range mem {
		if m.At >= last.At-window {
			return last.RSS - m.RSS, m.At, true
		}
	}
	return 0, 0, false
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sample polls until everything served is stored and evaluated.
func sample(ctx context.Context, cfg Config, p probe, replay *ingest.Replay, exited <-chan error, res *Result) error {
	t := time.NewTicker(cfg.Poll)
	defer t.Stop()
	var (
		t0, tStored, tEval time.Time
		lastSeq, ackFloor  uint64
		lastAdvance        time.Time
		cpu0               time.Duration
		nextMem            time.Time
		sw                 stallWatch
	)
	newWatch := func(now time.Time, ci *jetstream.ConsumerInfo) {
		cpu, _ := processCPU(p.pid)
		wait, _ := runQueueWait(p.pid)
		sw = stallWatch{st: Stall{Wall: now, SinceStart: now.Sub(p.started), Floor: ci.AckFloor.Stream,
			AckPending: [2]int{ci.NumAckPending, ci.NumAckPending}, Waiting: [2]int{ci.NumWaiting, ci.NumWaiting}},
			seq0: lastSeq, delivered: ci.Delivered.Stream, cpu0: cpu, wait0: wait, handled0: -1}
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stored %d, evaluated %d of %d served: %w", lastSeq, ackFloor, replay.Served(), ctx.Err())
		case err := <-exited:
			return fmt.Errorf("rcwatch run exited during the measurement: %v", err)
		case <-t.C:
		}
		now := time.Now()
		seq, err := streamLastSeq(ctx, p.js)
		if err != nil || seq == 0 {
			continue
		}
		if t0.IsZero() {
			t0, lastAdvance, nextMem = now, now, now
			cpu0, _ = processCPU(p.pid)
		}
		if seq != lastSeq {
			lastSeq, tStored = seq, now
		}
		ci, err := consumerInfo(ctx, p.js)
		if err != nil {
			continue
		}
		if sw.st.Wall.IsZero() {
			newWatch(now, ci)
		}
		sw.st.SlowestPoll = max(sw.st.SlowestPoll, time.Since(now))
		sw.st.AckPending = [2]int{min(sw.st.AckPending[0], ci.NumAckPending), max(sw.st.AckPending[1], ci.NumAckPending)}
		sw.st.Waiting = [2]int{min(sw.st.Waiting[0], ci.NumWaiting), max(sw.st.Waiting[1], ci.NumWaiting)}
		floor := ci.AckFloor.Stream
		if cfg.DumpOnStall > 0 && floor == ackFloor && floor < lastSeq && now.Sub(lastAdvance) > cfg.DumpOnStall {
			if p, err := os.FindProcess(p.pid); err == nil {
				_ = p.Signal(syscall.SIGQUIT)
			}
			return fmt.Errorf("stalled %v (ack floor %d of %d, ack pending %d, waiting pulls %d): goroutines dumped",
				now.Sub(lastAdvance), floor, lastSeq, ci.NumAckPending, ci.NumWaiting)
		}
		if floor == ackFloor && floor < lastSeq && now.Sub(lastAdvance) > cfg.Stall/2 && !sw.probed {
			// A stall may be coming: read the evaluator's count now, to
			// tell after it whether it went on handling.
			sw.handled0, sw.probed = p.handled(ctx), true
		}
		if floor == ackFloor && floor < lastSeq && now.Sub(lastAdvance) > cfg.Stall && len(res.StallStates) == len(res.Stalls) {
			res.StallStates = append(res.StallStates, fmt.Sprintf("ack floor %d of %d, pending %d, ack pending %d, waiting pulls %d, redelivered %d",
				floor, lastSeq, ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.NumRedelivered))
		}
		stallEnds := func(gap time.Duration) {
			res.Stalls = append(res.Stalls, gap)
			st := sw.st
			st.Dur = gap
			st.Stored = lastSeq - sw.seq0
			st.Delivered = ci.Delivered.Stream - sw.delivered
			st.Handled = -1
			if h := p.handled(ctx); h >= 0 && sw.handled0 >= 0 {
				st.Handled = h - sw.handled0
			}
			if cpu, err := processCPU(p.pid); err == nil {
				st.CPU = cpu - sw.cpu0
			}
			if wait, err := runQueueWait(p.pid); err == nil {
				st.RunQueueWait = wait - sw.wait0
			}
			st.Load = loadAvg()
			res.StallDetails = append(res.StallDetails, st)
		}
		if floor != ackFloor {
			if gap := now.Sub(lastAdvance); gap > cfg.Stall {
				stallEnds(gap)
			}
			ackFloor, lastAdvance, tEval = floor, now, now
			newWatch(now, ci)
		} else if floor >= lastSeq {
			lastAdvance = now // nothing waits: not a stall
			newWatch(now, ci)
		}
		if !now.Before(nextMem) {
			if rss, err := processRSS(p.pid); err == nil {
				res.Memory = append(res.Memory, MemSample{At: now.Sub(t0), RSS: rss})
			}
			nextMem = now.Add(cfg.MemEvery)
		}
		served := replay.Served()
		// Done: everything served, the stored count still for a while, all of it evaluated.
		// (A stall cannot be open here: the floor reached the last event,
		// and the floor's move closed it above.)
		if served >= int64(cfg.N) && ackFloor >= lastSeq && now.Sub(tStored) > 500*time.Millisecond {
			cpu1, _ := processCPU(p.pid)
			res.Served, res.Stored = int(served), int(lastSeq)
			if tEval.Before(tStored) {
				// The stream's last sequence and the consumer's ack floor are
				// read one after the other: the floor can be seen at the last
				// event one sample before the stream is. Nothing is evaluated
				// before it is stored.
				tEval = tStored
			}
			res.StoreTime, res.EvalTime = tStored.Sub(t0), tEval.Sub(t0)
			res.StoredPS = float64(lastSeq) / max(res.StoreTime.Seconds(), cfg.Poll.Seconds())
			res.EvalPS = float64(lastSeq) / max(res.EvalTime.Seconds(), cfg.Poll.Seconds())
			res.CPU = cpu1 - cpu0
			if rss, err := processRSS(p.pid); err == nil {
				res.Memory = append(res.Memory, MemSample{At: now.Sub(t0), RSS: rss})
			}
			return nil
		}
	}
}

func streamLastSeq(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ictx, pipeline.StreamRecentChange)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

func consumerInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ictx, pipeline.StreamRecentChange, "rules")
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// stopProcess sends SIGTERM (the drain a user gets) and kills after 30s.
func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// processCPU is the user+system CPU time of pid (Linux /proc).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)             // utime (field 14)
	st, _ := strconv.ParseInt(f[12], 10, 64)             // stime (field 15)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// runQueueWait is the time pid's threads have spent runnable, waiting for
// a core (Linux /proc/<pid>/task/*/schedstat, second field, ns).
func runQueueWait(pid int) (time.Duration, error) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(files) == 0 {
		return 0, errors.New("no schedstat")
	}
	var sum time.Duration
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		fs := strings.Fields(string(b))
		if len(fs) < 2 {
			continue
		}
		ns, _ := strconv.ParseInt(fs[1], 10, 64)
		sum += time.Duration(ns)
	}
	return sum, nil
}

// processRSS is the resident memory of pid in bytes (Linux /proc).
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

var ruleID = regexp.MustCompile(`(?m)^(\s*-\s+id:\s*)(\S+)`)

// writeRuleCopies writes the default pack copies times into dir with
// every rule id prefixed copyK-, for loads with more rules.
func writeRuleCopies(dir string, copies int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the rules directory: %w", err)
	}
	for k := 1; k <= copies; k++ {
		for _, f := range pack.Files() {
			if !strings.HasSuffix(f.Name, ".yaml") {
				continue
			}
			data := ruleID.ReplaceAll(f.Data, []byte(fmt.Sprintf("${1}copy%d-${2}", k)))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("copy%d-%s", k, f.Name)), data, 0o644); err != nil {
				return fmt.Errorf("writing rule copy: %w", err)
			}
		}
	}
	return nil
}
