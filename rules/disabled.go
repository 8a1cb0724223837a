package rules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/pipeline"
)

// An automatic disable is remembered in the KV bucket pipeline.BucketRules,
// key disabled.<rule id>.<rule version>, so that a restart does not enable
// the rule again (it used to fire 1,000 alerts per start). The version is
// the hash of the rule's definition: a rule author who changes the rule
// gets a new version, which starts enabled. Deleting the key (nats kv del
// rules disabled.<id>.<version>) enables the rule again at once.

const kvDisabledPrefix = "disabled."

// disabledRecord is the value of a disabled.<id>.<version> key.
type disabledRecord struct {
	Rule        string    `json:"rule"`
	Version     string    `json:"version"`
	Reason      string    `json:"reason"`
	At          time.Time `json:"at"`
	Matches     int64     `json:"matches,omitempty"`
	Evaluations int64     `json:"evaluations,omitempty"`
	Errors      int64     `json:"errors,omitempty"`
}

func disabledKey(id, version string) string { return kvDisabledPrefix + id + "." + version }

// offRules is what the engine knows of the remembered disables, and the
// queue of new ones to store (bounded; full: logged and counted).
type offRules struct {
	mu      sync.Mutex
	m       map[string]disabledRecord // id.version → record
	queue   chan disabledRecord
	storing atomic.Bool // a WatchDisabled is running and stores the queue
	loaded  atomic.Bool // the stored records have been applied
}

func (o *offRules) get(id, version string) (disabledRecord, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.m[id+"."+version]
	return r, ok
}

func (o *offRules) set(r disabledRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]disabledRecord{}
	}
	o.m[r.Rule+"."+r.Version] = r
}

func (o *offRules) remove(id, version string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, id+"."+version)
}

// remember queues an automatic disable to be stored in KV.
func (e *Engine) remember(r disabledRecord) {
	e.off.set(r)
	if !e.off.storing.Load() {
		return // no KV (a backtest, rules test): in memory only
	}
	select {
	case e.off.queue <- r:
	default:
		e.log.Error().Str("rule", r.Rule).Str("version", r.Version).
			Msg("too many automatic disables waiting to be stored in KV; this one is kept in memory only and will not survive a restart")
	}
}

// applyRemembered disables a loaded rule whose version a stored record names.
func (e *Engine) applyRemembered(r disabledRecord) {
	for _, ar := range e.set.Load().rules {
		if ar.ID == r.Rule && ar.Version == r.Version {
			reason := r.Reason
			if ar.st.disabled.CompareAndSwap(false, true) {
				ar.st.reason.Store(&reason)
				e.log.Warn().Str("rule", r.Rule).Str("version", r.Version).Str("reason", r.Reason).Time("since", r.At).
					Msg("rule stays disabled: it was disabled automatically in this version (change the rule, or delete the KV key to enable it)")
			}
		}
	}
}

// WatchDisabled follows the remembered automatic disables in kv until ctx
// ends, and stores new ones. ready is closed once the stored records are
// applied to the loaded rules (evaluating before would enable them again).
func (e *Engine) WatchDisabled(ctx context.Context, kv jetstream.KeyValue, log zerolog.Logger, ready chan<- struct{}) error {
	w, err := kv.Watch(ctx, kvDisabledPrefix+">")
	if err != nil {
		return fmt.Errorf("watching auto-disabled rules in KV: %w", err)
	}
	defer func() { _ = w.Stop() }()
	e.off.storing.Store(true)
	defer e.off.storing.Store(false)
	defer e.off.loaded.Store(false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-e.off.queue:
			e.store(ctx, kv, r, log)
		case ent, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if ent == nil { // the stored records are in
				e.off.loaded.Store(true)
				if ready != nil {
					close(ready)
					ready = nil
				}
				continue
			}
			id, version, ok := strings.Cut(strings.TrimPrefix(ent.Key(), kvDisabledPrefix), ".")
			if !ok {
				continue
			}
			switch ent.Operation() {
			case jetstream.KeyValuePut:
				var r disabledRecord
				if err := json.Unmarshal(ent.Value(), &r); err != nil || r.Rule != id || r.Version != version {
					log.Warn().Str("key", ent.Key()).Msg("ignoring a malformed auto-disable record")
					continue
				}
				e.off.set(r)
				e.applyRemembered(r)
			default: // deleted by an operator: enable the rule again
				e.off.remove(id, version)
				for _, ar := range e.set.Load().rules {
					if ar.ID == id && ar.Version == version && ar.st.disabled.CompareAndSwap(true, false) {
						ar.st.costErrors.Store(0)
						ar.st.matches.Store(0)
						ar.st.evals.Store(0)
						log.Warn().Str("rule", id).Str("version", version).Msg("auto-disable record deleted; rule enabled again")
					}
				}
			}
		}
	}
}

// store writes one record, retrying a few times (a NATS leader change).
func (e *Engine) store(ctx context.Context, kv jetstream.KeyValue, r disabledRecord, log zerolog.Logger) {
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	for attempt := range 5 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = kv.Put(pctx, disabledKey(r.Rule, r.Version), data)
		cancel()
		if err == nil || errors.Is(err, context.Canceled) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	if err != nil {
		e.m.disableStoreErrors.Inc()
		log.Error().Err(err).Str("rule", r.Rule).Str("version", r.Version).
			Msg("storing an automatic disable in KV failed; the rule stays disabled until this process restarts")
	}
}

// followDisabled starts WatchDisabled for the stage and waits (bounded) for
// the stored records; stop ends it.
func (s *Stage) followDisabled(ctx context.Context, wg *sync.WaitGroup) (stop func(), err error) {
	if s.js == nil {
		return func() {}, nil
	}
	kv, err := pipeline.OpenKV(ctx, s.js, pipeline.BucketRules, s.log)
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s for auto-disabled rules: %w", pipeline.BucketRules, err)
	}
	ready := make(chan struct{})
	wctx, stop := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.engine.WatchDisabled(wctx, kv, s.log, ready); err != nil && wctx.Err() == nil {
			s.log.Error().Err(err).Msg("auto-disabled rules are not remembered across restarts")
		}
	}()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		s.log.Warn().Msg("auto-disabled rules not read from KV after 10s; evaluating meanwhile")
	case <-ctx.Done():
	}
	return stop, nil
}
