package rules

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// ReadSources reads rule and list files. A directory contributes its
// *.yaml, *.yml, *.list and *.txt files (sorted; names starting with '.'
// are skipped, which skips a Kubernetes ConfigMap's ..data links while
// following the file symlinks to the current content).
//
// Sizes are checked before reading, and reads are bounded: a list file
// over DefaultMaxFileBytes, or rule files over DefaultMaxRuleBytes
// together, are refused with ErrTooLarge naming the file and the limit,
// without loading them (a multi-GB file is never read into memory, at
// start or on a hot reload).
func ReadSources(paths []string) ([]Source, error) {
	var out []Source
	ruleBytes := 0 // read so far from rule (not list) files
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("reading rules %s: %w", p, err)
		}
		files := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("reading rules directory %s: %w", p, err)
			}
			files = files[:0]
			for _, e := range entries {
				n := e.Name()
				switch strings.ToLower(filepath.Ext(n)) {
				case ".yaml", ".yml", ".list", ".txt":
				default:
					continue
				}
				if strings.HasPrefix(n, ".") {
					continue
				}
				files = append(files, filepath.Join(p, n))
			}
			sort.Strings(files)
		}
		for _, f := range files {
			limit, what := DefaultMaxRuleBytes-ruleBytes, fmt.Sprintf("rule files together may be at most %d bytes (%d read before it)", DefaultMaxRuleBytes, ruleBytes)
			if IsListFile(f) {
				limit, what = DefaultMaxFileBytes, fmt.Sprintf("the limit is %d bytes per list file; split it", DefaultMaxFileBytes)
			}
			data, err := readLimited(f, limit, what)
			if err != nil {
				return nil, err
			}
			if !IsListFile(f) {
				ruleBytes += len(data)
			}
			out = append(out, Source{Name: f, Data: data})
		}
	}
	return out, nil
}

// readLimited reads file f if it has at most limit bytes: its size is
// checked first (Stat of the open file), and the read stops past limit
// (a file that grows, or a device whose size Stat does not tell).
func readLimited(f string, limit int, what string) ([]byte, error) {
	fh, err := os.Open(f)
	if err != nil {
		return nil, fmt.Errorf("reading rules %s: %w", f, err)
	}
	defer fh.Close()
	tooLarge := func(size int64) error {
		return fmt.Errorf("reading rules %s: %w: the file is %d bytes and %s", f, ErrTooLarge, size, what)
	}
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading rules %s: %w", f, err)
	}
	if fi.Size() > int64(limit) {
		return nil, tooLarge(fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(fh, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("reading rules %s: %w", f, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("reading rules %s: %w: the file has more than %d bytes and %s", f, ErrTooLarge, limit, what)
	}
	return data, nil
}

// hashSources is the content hash that decides a reload.
func hashSources(srcs []Source) [32]byte {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "%s\x00%d\x00", s.Name, len(s.Data))
		h.Write(s.Data)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// StageConfig declares the evaluator stage.
type StageConfig struct {
	// Paths are rule/list files or directories, re-read when their content
	// changes. Default (the embedded pack, never reloaded) is loaded first,
	// with them or alone.
	Paths   []string
	Default []Source
	Engine  EngineConfig
	// Workers evaluating concurrently (default 4).
	Workers int
	// Durable consumer name shared by replicas (default "rules").
	Durable string
	// ReloadInterval between content checks of Paths (default 5s).
	ReloadInterval time.Duration
	// PublishTimeout bounds waiting for JetStream to acknowledge an alert (default 10s).
	PublishTimeout time.Duration
	// KVLists: also read list entries from the KV bucket rules (see
	// AddListEntry), watched live.
	KVLists bool
	// Quality is the live self-measurement (rules/quality): which alerted
	// edits are later reverted. A zero Window turns it off.
	Quality quality.Config
}

// Stage is the evaluator stage: RECENTCHANGE → rules → ALERTS.
type Stage struct {
	cfg    StageConfig
	now    func() time.Time
	js     jetstream.JetStream
	engine *Engine
	runner *pipeline.Runner
	log    zerolog.Logger
	// quality measures the alerts against later reverts; nil when off.
	quality *quality.Tracker

	mu       sync.Mutex
	lastHash [32]byte
	lastErr  error
}

// NewStage builds the stage and loads the rules; a bad rule file at start
// is an error. enricher may be nil (evaluate on what is known).
func NewStage(d pipeline.Deps, cfg StageConfig, enricher Enricher) (*Stage, error) {
	js, reg, log := d.JS, d.Reg, d.Logger("rules")
	if cfg.Durable == "" {
		cfg.Durable = "rules"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = 5 * time.Second
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	cfg.Engine.Enricher = enricher
	eng, err := NewEngine(cfg.Engine, reg, log)
	if err != nil {
		return nil, err
	}
	s := &Stage{cfg: cfg, now: d.Clock(), js: js, engine: eng, log: log}
	if cfg.Quality.Window > 0 {
		if s.quality, err = quality.New(d, cfg.Quality); err != nil {
			return nil, err
		}
	}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	s.runner, err = pipeline.NewRunner(d, pipeline.RunnerConfig{
		Stage: "rules", Stream: pipeline.StreamRecentChange, Durable: cfg.Durable, Workers: cfg.Workers,
		// Alerts are deduplicated by id: a lost ack only re-evaluates the
		// event, so no round trip per message (issue 12).
		PlainAck: true,
		// Up to 256 per pull request: fewer round trips (issue 12); the
		// runner asks for fewer while enrichment makes handlers slow.
		PullBatch: 256,
	}, s.handle)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ready reports whether rules are loaded (an evaluator with none does
// nothing), the self-measurement's bucket is open (when on), and the consumer is doing its job (pipeline.Runner.Ready:
// running, not stalled, not behind retention, alerts stored).
func (s *Stage) Ready() error {
	if len(s.engine.Rules()) == 0 {
		return errors.New("no rules loaded")
	}
	if s.quality != nil {
		if err := s.quality.Ready(); err != nil {
			return err
		}
	}
	return s.runner.Ready()
}

// Engine is the stage's rule engine.
func (s *Stage) Engine() *Engine { return s.engine }

// Reload re-reads the rule files and loads them if their content changed.
// On error the old rules keep running; the error is returned, logged and
// reported by rcwatch_rules_last_reload_successful.
func (s *Stage) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srcs := s.cfg.Default
	if len(s.cfg.Paths) > 0 {
		read, err := ReadSources(s.cfg.Paths)
		if err != nil {
			return false, s.reloaded(err)
		}
		srcs = append(slices.Clip(srcs), read...)
	}
	h := hashSources(srcs)
	if h == s.lastHash && s.lastErr == nil {
		return false, nil
	}
	if h == s.lastHash {
		return false, s.lastErr // the same bad content: reported once
	}
	s.lastHash = h
	start := time.Now()
	err := s.engine.Load(srcs)
	if err == nil {
		s.log.Info().Int("rules", len(s.engine.Rules())).Dur("took", time.Since(start)).Strs("paths", s.cfg.Paths).Msg("rules loaded")
	}
	return err == nil, s.reloaded(err)
}

func (s *Stage) reloaded(err error) error {
	s.lastErr = err
	m := s.engine.m
	if err != nil {
		m.reloadOK.Set(0)
		m.reloads.WithLabelValues("error").Inc()
		s.log.Error().Err(err).Msg("loading rules failed; the previous rules keep running")
		return fmt.Errorf("loading rules (%s): %w", strings.Join(s.cfg.Paths, ", "), err)
	}
	m.reloadOK.Set(1)
	m.reloadTime.Set(float64(s.now().Unix()))
	m.reloads.WithLabelValues("ok").Inc()
	return nil
}

// Run consumes RECENTCHANGE until ctx is cancelled, then drains. It checks
// the rule files for changes every ReloadInterval.
func (s *Stage) Run(ctx context.Context) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	stopWatch := func() {}
	if s.cfg.KVLists {
		kv, err := pipeline.OpenKV(ctx, s.js, pipeline.BucketRules, s.log)
		if err != nil {
			if ctx.Err() != nil {
				return nil // cancelled during start-up: a normal stop
			}
			return fmt.Errorf("opening KV bucket %s for lists: %w", pipeline.BucketRules, err)
		}
		ready := make(chan struct{})
		var wctx context.Context
		wctx, stopWatch = context.WithCancel(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.engine.WatchLists(wctx, kv, s.log, ready); err != nil && wctx.Err() == nil {
				s.log.Error().Err(err).Msg("list entries from KV are not followed")
			}
		}()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			s.log.Warn().Msg("KV list entries not loaded after 10s; evaluating without them meanwhile")
		case <-ctx.Done():
		}
	}
	if s.quality != nil {
		if err := s.quality.Open(ctx); err != nil {
			stopWatch()
			wg.Wait()
			if ctx.Err() != nil {
				return nil // cancelled during start-up: a normal stop
			}
			return err
		}
	}
	stopOff, ferr := s.followDisabled(ctx, &wg) // disabled.go
	if ferr != nil {
		stopWatch()
		wg.Wait()
		if ctx.Err() != nil {
			return nil // cancelled during start-up: a normal stop
		}
		return ferr
	}
	if len(s.cfg.Paths) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(s.cfg.ReloadInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-done:
					return
				case <-t.C:
					_, _ = s.Reload() // logged and counted in Reload
				}
			}
		}()
	}
	err := s.runner.Run(ctx)
	close(done)
	stopWatch()
	stopOff()
	wg.Wait()
	return err
}

// handle evaluates one recent change and publishes its alerts, waiting for
// JetStream to store each before the runner acks the event.
func (s *Stage) handle(ctx context.Context, msg jetstream.Msg) error {
	ev, err := event.Decode(msg.Data())
	if err != nil {
		return pipeline.Invalid("decode", err)
	}
	if ev.IsCanary() {
		return nil
	}
	alerts := s.engine.Eval(ctx, ev, nil, s.now())
	for _, a := range alerts {
		if err := s.publish(ctx, &a); err != nil {
			return err
		}
	}
	if s.quality != nil {
		ids := make([]string, len(alerts))
		for i := range alerts {
			ids[i] = alerts[i].Rule.ID
		}
		s.quality.Observe(ctx, ev, ids) // bounded by its timeout; errors counted, never returned
	}
	return nil
}

func (s *Stage) publish(ctx context.Context, a *event.Alert) error {
	data, err := json.Marshal(a)
	if err != nil {
		return pipeline.Invalid("encode_alert", err)
	}
	m := nats.NewMsg(pipeline.AlertSubject(a.Event.Wiki, a.Rule.ID))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, a.ID)
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.js.PublishMsg(pctx, m); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return pipeline.Retry(fmt.Errorf("publishing alert %s: %w", a.ID, err), time.Second)
		}
		return fmt.Errorf("publishing alert %s: %w", a.ID, err)
	}
	return nil
}
