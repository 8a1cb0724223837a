// Package enrich implements rules.Enricher with the MediaWiki Action API:
// both revisions' wikitext in one request, user info in another, the line
// diff, a small LRU cache, and per-wiki concurrency and request-rate limits.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/mediawiki"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
)

// Names used in Enrichment.Missing (the evaluator reads these).
const (
	MissingWikitext = "wikitext"
	MissingDiff     = "diff"
	MissingUser     = "user"
)

// Config configures the Enricher. The zero value works with defaults.
type Config struct {
	// UserAgent for the Action API (default mediawiki.DefaultUserAgent).
	UserAgent string
	// APIURLFor maps an event to its wiki's api.php (default
	// ev.ServerURL + ev.ServerScriptPath + "/api.php"; "" means unknown).
	APIURLFor func(ev *event.RecentChange) string
	// NewClientConfig, if set, adjusts each wiki's client config (HTTP
	// client, auth for private wikis).
	NewClientConfig func(cfg *mediawiki.Config)
	// CacheBytes bounds the cache of revision texts and users (default 64 MiB);
	// CacheTTL is how long an entry is used (default 10 min; users 1 min at most).
	CacheBytes int
	CacheTTL   time.Duration
	// PerWikiConcurrency bounds requests in flight per wiki (default 2);
	// PerWikiRate bounds requests per second per wiki (default 10), with a
	// burst of one event's requests (eventRequests, or the concurrency if
	// higher): an event after a quiet spell is not held back by the bucket,
	// and the sustained rate is unchanged.
	PerWikiConcurrency int
	PerWikiRate        float64
	// MaxLag is sent as maxlag (default 5).
	MaxLag int
	// MaxRetries for transient failures (default 2); MaxWait is how long a
	// call may wait for maxlag/429/503 (default 10 s): enrichment is late
	// data, better partial than stuck.
	MaxRetries int
	MaxWait    time.Duration
	// Timeout bounds one Enrich call when ctx has no deadline (default 20 s).
	Timeout time.Duration
	// MaxDiffEdits bounds the line diff (default DefaultMaxDiffEdits).
	MaxDiffEdits int
}

// Enricher fetches wikitext, diffs and user info. Safe for concurrent use.
type Enricher struct {
	cfg   Config
	now   func() time.Time
	log   zerolog.Logger
	m     *Metrics
	mwm   *mediawiki.Metrics
	cache *lru

	mu      sync.Mutex
	clients map[string]*mediawiki.Client
	breaker *breaker
}

var _ rules.Enricher = (*Enricher)(nil)

// Metrics are the enrichment metrics.
type Metrics struct {
	Requests    *prometheus.CounterVec   // rcwatch_enrich_requests_total{wiki,kind,result}
	Seconds     *prometheus.HistogramVec // rcwatch_enrich_request_seconds{kind}
	CacheHits   *prometheus.CounterVec   // rcwatch_enrich_cache_hits_total{kind}
	CacheMisses *prometheus.CounterVec   // rcwatch_enrich_cache_misses_total{kind}
	Errors      *prometheus.CounterVec   // rcwatch_enrich_errors_total{missing}
}

// Metrics returns the Enricher's metrics.
func (e *Enricher) Metrics() *Metrics { return e.m }

// New returns an Enricher. Its metrics register on d.Reg (nil: none); mw are
// the process's shared MediaWiki client metrics (nil: none); d.Now is the
// clock of its cache.
func New(d pipeline.Deps, cfg Config, mw *mediawiki.Metrics) (*Enricher, error) {
	if cfg.APIURLFor == nil {
		cfg.APIURLFor = DefaultAPIURL
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = 64 << 20
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 10 * time.Minute
	}
	if cfg.PerWikiConcurrency <= 0 {
		cfg.PerWikiConcurrency = 2
	}
	if cfg.PerWikiRate <= 0 {
		cfg.PerWikiRate = 10
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 5
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 2
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.MaxDiffEdits <= 0 {
		cfg.MaxDiffEdits = DefaultMaxDiffEdits
	}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_enrich_requests_total",
			Help: "Action API requests made by enrichment, by wiki, kind (revisions, users) and result."}, []string{"wiki", "kind", "result"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rcwatch_enrich_request_seconds",
			Help: "Enrichment request latency, retries and waits included.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)}, []string{"kind"}),
		CacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_enrich_cache_hits_total",
			Help: "Enrichment cache hits, by kind (revision, user)."}, []string{"kind"}),
		CacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_enrich_cache_misses_total",
			Help: "Enrichment cache misses, by kind (revision, user)."}, []string{"kind"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_enrich_errors_total",
			Help: "Enrichment that failed for good (the alert is partial), by what was missing."}, []string{"missing"}),
	}
	if d.Reg != nil {
		for _, c := range []prometheus.Collector{m.Requests, m.Seconds, m.CacheHits, m.CacheMisses, m.Errors} {
			if err := d.Reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering enrichment metrics: %w", err)
			}
		}
	}
	return &Enricher{
		cfg: cfg, now: d.Clock(), log: d.Log.With().Str("component", "enrich").Logger(), m: m,
		mwm: mw, cache: newLRU(cfg.CacheBytes),
		clients: map[string]*mediawiki.Client{},
		breaker: newBreaker(5, 30*time.Second, 5*time.Minute),
	}, nil
}

// DefaultAPIURL is ev.ServerURL + ev.ServerScriptPath + "/api.php", or "" if
// the event has no server URL. A server_script_path of "/" (the RC feed of
// a wiki at the root) counts as "".
func DefaultAPIURL(ev *event.RecentChange) string {
	if ev.ServerURL == "" {
		return ""
	}
	sp := strings.TrimRight(ev.ServerScriptPath, "/")
	return strings.TrimRight(ev.ServerURL, "/") + sp + "/api.php"
}

// eventRequests is the most requests one event's enrichment makes: the
// texts, the user, and the edit-time context (page creation, page history,
// talk page; an IP's contributions instead of the user).
const eventRequests = 5

// client returns the wiki's client, creating it on first use.
func (e *Enricher) client(api string) (*mediawiki.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[api]; ok {
		return c, nil
	}
	cfg := mediawiki.Config{
		APIURL: api, UserAgent: e.cfg.UserAgent, MaxLag: e.cfg.MaxLag,
		RatePerSecond: e.cfg.PerWikiRate, Burst: max(e.cfg.PerWikiConcurrency, eventRequests), MaxConcurrent: e.cfg.PerWikiConcurrency,
		MaxRetries: e.cfg.MaxRetries, MaxWait: e.cfg.MaxWait, Metrics: e.mwm, Now: e.now,
	}
	if e.cfg.NewClientConfig != nil {
		e.cfg.NewClientConfig(&cfg)
	}
	c, err := mediawiki.New(cfg, e.log)
	if err != nil {
		return nil, err
	}
	e.clients[api] = c
	return c, nil
}

// Enrich fetches what need asks for. It never fails as a whole: what it
// could not fetch is named in Missing (and the evaluator marks the alert
// partial); the error is non-nil only when ctx ended before anything was done.
func (e *Enricher) Enrich(ctx context.Context, ev *event.RecentChange, need rules.Need) (*rules.Enrichment, error) {
	out := &rules.Enrichment{}
	if !need.Any() {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
	}
	api := e.cfg.APIURLFor(ev)
	var c *mediawiki.Client
	var cerr error
	switch {
	case api == "":
		cerr = errors.New("no API URL for the event")
	default:
		if cerr = e.breaker.allow(api, e.now()); cerr == nil {
			c, cerr = e.client(api)
		}
	}
	var wg sync.WaitGroup
	var textErr, userErr error
	if need.Wikitext || need.Diff {
		if cerr != nil {
			textErr = cerr
		} else {
			wg.Go(func() { textErr = e.texts(ctx, c, api, ev, need, out) })
		}
	}
	var ctxErr error
	if need.User {
		if cerr != nil {
			userErr, ctxErr = cerr, cerr
		} else {
			wg.Go(func() { userErr = e.user(ctx, c, api, ev, out) })
			wg.Go(func() { ctxErr = e.editTime(ctx, c, api, ev, out) })
		}
	}
	wg.Wait()
	if cerr == nil {
		var outcomes []error
		if need.Wikitext || need.Diff {
			outcomes = append(outcomes, textErr)
		}
		if need.User {
			outcomes = append(outcomes, userErr)
		}
		for _, err := range outcomes {
			if opened, until := e.breaker.record(api, err, e.now()); opened {
				e.log.Warn().Err(err).Str("wiki", ev.Wiki).Time("until", until).
					Msg("wiki unreachable: enrichment paused, alerts are marked partial meanwhile")
			}
		}
	}
	if textErr != nil {
		if need.Wikitext {
			out.Missing = append(out.Missing, MissingWikitext)
			e.m.Errors.WithLabelValues(MissingWikitext).Inc()
		}
		if need.Diff {
			out.Missing = append(out.Missing, MissingDiff)
			e.m.Errors.WithLabelValues(MissingDiff).Inc()
		}
		e.log.Debug().Err(textErr).Str("wiki", ev.Wiki).Str("meta_id", ev.Meta.ID).Msg("wikitext not fetched")
	}
	if ctxErr != nil {
		out.Missing = append(out.Missing, MissingEditTime)
		e.m.Errors.WithLabelValues(MissingEditTime).Inc()
		e.log.Debug().Err(ctxErr).Str("wiki", ev.Wiki).Str("meta_id", ev.Meta.ID).Msg("edit-time context not fetched")
	}
	if userErr != nil {
		out.Missing = append(out.Missing, MissingUser)
		e.m.Errors.WithLabelValues(MissingUser).Inc()
		e.log.Debug().Err(userErr).Str("wiki", ev.Wiki).Str("meta_id", ev.Meta.ID).Msg("user info not fetched")
	}
	return out, nil
}

func revKey(api string, id int64) string { return fmt.Sprintf("r|%s|%d", api, id) }
func userKey(api, name string) string    { return "u|" + api + "|" + name }

// texts fills the wikitexts and the diff with one prop=revisions request
// for whatever of OLD|NEW is not cached.
func (e *Enricher) texts(ctx context.Context, c *mediawiki.Client, api string, ev *event.RecentChange, need rules.Need, out *rules.Enrichment) error {
	if ev.Revision.New == nil || *ev.Revision.New <= 0 {
		return fmt.Errorf("event of type %q has no new revision", ev.Type)
	}
	newID := *ev.Revision.New
	var oldID int64
	if ev.Revision.Old != nil {
		oldID = *ev.Revision.Old // 0 or absent: a page creation, old text ""
	}
	ids := []int64{newID}
	if oldID > 0 {
		ids = append(ids, oldID)
	}
	texts := map[int64]string{}
	var fetch []int64
	now := e.now()
	for _, id := range ids {
		if v, ok := e.cache.get(revKey(api, id), now); ok {
			e.m.CacheHits.WithLabelValues("revision").Inc()
			texts[id] = v.(string)
			continue
		}
		e.m.CacheMisses.WithLabelValues("revision").Inc()
		fetch = append(fetch, id)
	}
	if len(fetch) > 0 {
		start := time.Now()
		revs, err := c.Revisions(ctx, fetch...)
		e.m.Seconds.WithLabelValues("revisions").Observe(time.Since(start).Seconds())
		e.m.Requests.WithLabelValues(ev.Wiki, "revisions", resultOf(err)).Inc()
		if err != nil {
			return err
		}
		for _, id := range fetch {
			r, ok := revs[id]
			switch {
			case !ok:
				return fmt.Errorf("revision %d: %w", id, mediawiki.ErrNoSuchRevision)
			case r.TextHidden:
				return fmt.Errorf("revision %d: content hidden", id)
			}
			texts[id] = r.Content
			e.cache.put(revKey(api, id), r.Content, len(r.Content)+64, now.Add(e.cfg.CacheTTL))
		}
	}
	out.NewWikitext = texts[newID]
	if oldID > 0 {
		out.OldWikitext = texts[oldID]
	}
	if need.Diff {
		out.AddedLines, out.RemovedLines = LineDiff(out.OldWikitext, out.NewWikitext, e.cfg.MaxDiffEdits)
	}
	if !need.Wikitext {
		// Only the diff was asked for: do not keep the texts alive.
		out.OldWikitext, out.NewWikitext = "", ""
	}
	return nil
}

// cachedUser is what the cache keeps of a user.
type cachedUser struct {
	editCount    int64
	registration time.Time
	groups       []string
}

// user fills the user info with one list=users request unless cached.
// IPs have none (edit count 0, no registration, no groups): nothing to fetch.
func (e *Enricher) user(ctx context.Context, c *mediawiki.Client, api string, ev *event.RecentChange, out *rules.Enrichment) error {
	switch ev.UserType() {
	case "":
		return errors.New("the user name is redacted")
	case "ip":
		return nil
	}
	now := e.now()
	key := userKey(api, ev.User)
	if v, ok := e.cache.get(key, now); ok {
		e.m.CacheHits.WithLabelValues("user").Inc()
		fillUser(out, v.(cachedUser))
		return nil
	}
	e.m.CacheMisses.WithLabelValues("user").Inc()
	start := time.Now()
	users, err := c.Users(ctx, ev.User)
	e.m.Seconds.WithLabelValues("users").Observe(time.Since(start).Seconds())
	e.m.Requests.WithLabelValues(ev.Wiki, "users", resultOf(err)).Inc()
	if err != nil {
		return err
	}
	u, ok := users[ev.User]
	if !ok || u.Missing || u.Invalid {
		return fmt.Errorf("user %q not found", ev.User)
	}
	cu := cachedUser{editCount: u.EditCount, registration: u.Registration, groups: u.Groups}
	// User info changes with every edit: keep it briefly.
	e.cache.put(key, cu, 128+len(ev.User), now.Add(min(e.cfg.CacheTTL, time.Minute)))
	fillUser(out, cu)
	return nil
}

func fillUser(out *rules.Enrichment, u cachedUser) {
	out.UserEditCount = u.editCount
	out.UserRegistration = u.registration
	out.UserGroups = append([]string(nil), u.groups...)
}

func resultOf(err error) string {
	if err == nil {
		return "ok"
	}
	if code := mediawiki.ErrorCode(err); code != "" {
		return code
	}
	if _, ok := mediawiki.RetryAfter(err); ok {
		return "backoff"
	}
	return "error"
}
