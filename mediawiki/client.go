// Package mediawiki is the MediaWiki Action API client of rcwatch: reads for
// enrichment (revisions, pages, users, recent changes) and writes for the edit
// worker (edit, rollback, undo). It is the only package that speaks the API.
//
// Every request sends format=json, formatversion=2, errorformat=plaintext and
// maxlag, a descriptive User-Agent, and goes through a per-client request-rate
// limit and concurrency limit. Errors are typed: *APIError (matched with the
// sentinels by errors.Is), *BackoffError (the server asked to wait), *HTTPError.
package mediawiki

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// DefaultUserAgent names rcwatch and where to report problems, as the
// Wikimedia User-Agent policy asks. Operators should set their own with a
// contact address.
const DefaultUserAgent = "rcwatch/0.1 (https://github.com/rcwatch/rcwatch; bot operators: see README) Go-http-client"

// Config configures a Client. Only APIURL is required.
type Config struct {
	// APIURL is the wiki's api.php, e.g. https://en.wikipedia.org/w/api.php.
	APIURL string
	// UserAgent is sent on every request (default DefaultUserAgent).
	UserAgent string
	// HTTPClient is used for requests (default: 30 s timeout). A cookie jar
	// is added to a copy when it has none (BotPassword sessions need one).
	HTTPClient *http.Client
	// MaxLag is sent as maxlag on every request, in seconds (default 5;
	// negative: not sent).
	MaxLag int
	// Auth is how the client authenticates (nil: anonymous).
	Auth Auth
	// Assert is the default assert for writes: "bot", "user" or "" (default
	// "bot" when Auth is set).
	Assert string
	// RatePerSecond limits requests per second (0: unlimited); Burst is the
	// bucket size (default 1).
	RatePerSecond float64
	Burst         int
	// MaxConcurrent bounds requests in flight (default 4).
	MaxConcurrent int
	// MaxRetries is how often a read is retried after a transient failure
	// (network error, HTTP 5xx); default 3, negative for none. Writes are
	// never retried after a transient failure (the edit may have happened).
	MaxRetries int
	// MinBackoff and MaxBackoff bound the capped exponential backoff of read
	// retries (defaults 500 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	// MaxWait is the total time one call may spend waiting as the server asked
	// (maxlag, HTTP 429/503 with Retry-After) before it returns the
	// *BackoffError to the caller (default 2 min; negative: never wait).
	// Requests refused this way did nothing, so writes wait too.
	MaxWait time.Duration
	// OnBackoff, if set, is called before each wait the server asked for.
	OnBackoff func(BackoffEvent)
	// Metrics, if set, counts requests; one Metrics may serve many clients.
	Metrics *Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
	// LoginBackoffMin and LoginBackoffMax bound the wait after a failed
	// BotPassword login before the next one is tried (capped exponential,
	// jittered; defaults 5 s and 10 min): meanwhile every call fails at once
	// with the last login error, so a wrong password costs one login POST
	// per backoff, not one per call (the wiki's login throttle counts them).
	LoginBackoffMin, LoginBackoffMax time.Duration
	// MaxLoginFailures: after this many logins in a row refused for the
	// credentials (default 5; negative: never stop), the client stops
	// trying: calls fail with ErrLoginStopped until it is built again.
	MaxLoginFailures int
	// AllowInsecureAuth allows sending credentials (a BotPassword, an OAuth
	// token) to a plain http:// APIURL on a host that is not loopback. Off,
	// New refuses such a configuration with ErrInsecureAuth.
	AllowInsecureAuth bool
}

// BackoffEvent describes one wait the server asked for.
type BackoffEvent struct {
	Action string
	Reason string // the API code (maxlag, ratelimited) or "http-429"/"http-503"
	Wait   time.Duration
	Lag    time.Duration
}

// Auth is a way to authenticate: BotPassword or OAuth2.
type Auth interface{ authKind() string }

// BotPassword logs in with action=login as "User@AppID" and keeps the session
// in the cookie jar. Secret is never logged or formatted.
type BotPassword struct {
	User   string // the account, e.g. "TestBot"
	AppID  string // the bot password's app id, e.g. "rcwatch"
	Secret string // the generated bot password
}

func (BotPassword) authKind() string { return "botpassword" }

// LoginName is the lgname, "User@AppID".
func (b BotPassword) LoginName() string { return b.User + "@" + b.AppID }

// String never shows the secret.
func (b BotPassword) String() string { return "BotPassword(" + b.LoginName() + ", secret redacted)" }

// GoString never shows the secret.
func (b BotPassword) GoString() string { return b.String() }

// MarshalZerologObject never logs the secret.
func (b BotPassword) MarshalZerologObject(e *zerolog.Event) { e.Str("lgname", b.LoginName()) }

// OAuth2 sends an owner-only OAuth 2 access token as "Authorization: Bearer".
type OAuth2 struct {
	Token string
}

func (OAuth2) authKind() string { return "oauth2" }

// String never shows the token.
func (OAuth2) String() string { return "OAuth2(token redacted)" }

// GoString never shows the token.
func (o OAuth2) GoString() string { return o.String() }

// Metrics are the client's Prometheus metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	backoffs *prometheus.CounterVec
	waited   *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	logins   *prometheus.CounterVec
}

// NewMetrics registers the client metrics on reg (nil: not registered).
// A process builds them once and shares them between every client (the
// enricher's and the edit worker's).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_mediawiki_requests_total",
			Help: "Action API requests, by API host, action and result (ok or the error code)."}, []string{"host", "action", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rcwatch_mediawiki_request_seconds",
			Help: "Action API request latency.", Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10)}, []string{"host", "action"}),
		backoffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_mediawiki_backoffs_total",
			Help: "Waits the server asked for (maxlag, 429, 503, ratelimited), by reason."}, []string{"host", "reason"}),
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_mediawiki_backoff_seconds_total",
			Help: "Seconds spent waiting as the server asked."}, []string{"host"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_mediawiki_token_fetches_total",
			Help: "Tokens fetched, by type and why (first or badtoken)."}, []string{"host", "type", "reason"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rcwatch_mediawiki_logins_total",
			Help: "BotPassword logins, by result."}, []string{"host", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.seconds, m.backoffs, m.waited, m.tokens, m.logins} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering MediaWiki client metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Client talks to one wiki's Action API. It is safe for concurrent use.
type Client struct {
	cfg     Config
	api     *url.URL
	host    string
	hc      *http.Client
	limiter *rate.Limiter
	sem     chan struct{}
	log     zerolog.Logger
	now     func() time.Time

	mu       sync.Mutex
	tokens   map[string]string // type → token
	fetched  map[string]bool   // token types fetched at least once
	loggedIn bool
	loginMu  sync.Mutex // serialises logins
	// under loginMu: the login backoff (see Config.LoginBackoffMin)
	loginFails   int       // failed logins in a row
	credFails    int       // of which refused for the credentials
	loginRetryAt time.Time // no login before
	loginErr     error     // the last login error
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// New validates cfg and returns a client. It does not contact the wiki.
func New(cfg Config, log zerolog.Logger) (*Client, error) {
	if cfg.APIURL == "" {
		return nil, fmt.Errorf("%w: APIURL is required", ErrInvalidRequest)
	}
	u, err := url.Parse(cfg.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: APIURL %q is not an http(s) URL", ErrInvalidRequest, cfg.APIURL)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 5
	}
	if cfg.Assert == "" && cfg.Auth != nil {
		cfg.Assert = "bot"
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 1
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 4
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LoginBackoffMin <= 0 {
		cfg.LoginBackoffMin = 5 * time.Second
	}
	if cfg.LoginBackoffMax <= 0 {
		cfg.LoginBackoffMax = 10 * time.Minute
	}
	if cfg.MaxLoginFailures == 0 {
		cfg.MaxLoginFailures = 5
	}
	if cfg.Auth != nil && u.Scheme == "http" && !cfg.AllowInsecureAuth && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%w: APIURL %s is http:// on %s; use https:// (or set AllowInsecureAuth)", ErrInsecureAuth, cfg.APIURL, u.Hostname())
	}
	switch a := cfg.Auth.(type) {
	case nil:
	case BotPassword:
		if a.User == "" || a.AppID == "" || a.Secret == "" {
			return nil, fmt.Errorf("%w: BotPassword needs User, AppID and Secret", ErrInvalidRequest)
		}
	case OAuth2:
		if a.Token == "" {
			return nil, fmt.Errorf("%w: OAuth2 needs a Token", ErrInvalidRequest)
		}
	default:
		return nil, fmt.Errorf("%w: unknown Auth %T", ErrInvalidRequest, cfg.Auth)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if cfg.HTTPClient != nil {
		cp := *cfg.HTTPClient
		hc = &cp
	}
	if hc.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return nil, fmt.Errorf("creating cookie jar: %w", err)
		}
		hc.Jar = jar
	}
	lim := rate.NewLimiter(rate.Inf, cfg.Burst)
	if cfg.RatePerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.RatePerSecond), cfg.Burst)
	}
	return &Client{
		cfg: cfg, api: u, host: u.Host, hc: hc, limiter: lim,
		sem: make(chan struct{}, cfg.MaxConcurrent), now: cfg.Now,
		log:    log.With().Str("component", "mediawiki").Str("api", u.Host).Logger(),
		tokens: map[string]string{}, fetched: map[string]bool{},
	}, nil
}

// APIURL returns the api.php URL the client talks to.
func (c *Client) APIURL() string { return c.api.String() }

// call is one logical API call: method GET or POST, params without the
// common ones. token names a token type to send (for writes): the call
// fetches it, and refreshes it and retries once on badtoken.
type call struct {
	action string
	post   bool
	token  string // "" for none, else "csrf", "rollback", …
	params url.Values
	// write: never retried after a transient (possibly applied) failure.
	write bool
	// relogin: retry once after a re-login on an assert failure.
	relogin bool
}

// Get performs a read request (GET) with params (action included) and decodes
// the JSON answer into out. Common params are added. Reads are retried.
func (c *Client) Get(ctx context.Context, params url.Values, out any) error {
	return c.do(ctx, call{action: params.Get("action"), params: params}, out)
}

// Post performs a write request (POST) with params, sending a token of the
// given type (e.g. "csrf"; "" for none) and refreshing it once on badtoken.
func (c *Client) Post(ctx context.Context, tokenType string, params url.Values, out any) error {
	return c.do(ctx, call{action: params.Get("action"), post: true, token: tokenType, params: params, write: true, relogin: true}, out)
}

func (c *Client) do(ctx context.Context, cl call, out any) error {
	if err := c.ensureLogin(ctx); err != nil {
		return err
	}
	refreshedToken, reloggedIn := false, false
	for {
		p := cloneValues(cl.params)
		if cl.token != "" {
			tok, err := c.Token(ctx, cl.token)
			if err != nil {
				return err
			}
			p.Set("token", tok)
		}
		err := c.send(ctx, cl, p, out)
		switch {
		case err == nil:
			return nil
		case cl.token != "" && !refreshedToken && errors.Is(err, ErrBadToken):
			refreshedToken = true
			c.dropTokens()
			c.log.Info().Str("action", cl.action).Msg("token rejected (badtoken); fetching a new one and retrying once")
			continue
		case cl.relogin && !reloggedIn && errors.Is(err, ErrAssertFailed) && c.isBotPassword():
			reloggedIn = true
			c.log.Warn().Str("action", cl.action).Msg("session lost (assert failed); logging in again and retrying once")
			c.mu.Lock()
			c.loggedIn = false
			c.mu.Unlock()
			c.dropTokens()
			if lerr := c.ensureLogin(ctx); lerr != nil {
				return errors.Join(err, lerr)
			}
			continue
		}
		return err
	}
}

// send performs one call with retries and server-requested waits.
func (c *Client) send(ctx context.Context, cl call, p url.Values, out any) error {
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		err := c.roundTrip(ctx, cl, p, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		var be *BackoffError
		if errors.As(err, &be) {
			reason := "unknown"
			var ae *APIError
			var he *HTTPError
			switch {
			case errors.As(be.Err, &ae):
				reason = ae.Code
			case errors.As(be.Err, &he):
				reason = "http-" + strconv.Itoa(he.StatusCode)
			}
			wait := be.Wait
			if wait <= 0 {
				wait = c.backoff(attempt)
			}
			if c.cfg.Metrics != nil {
				c.cfg.Metrics.backoffs.WithLabelValues(c.host, reason).Inc()
			}
			if reason == "ratelimited" || c.cfg.MaxWait < 0 || waited+wait > c.cfg.MaxWait || !fitsDeadline(ctx, c.now(), wait) {
				return err
			}
			c.log.Warn().Str("action", cl.action).Str("reason", reason).Dur("wait", wait).Dur("lag", be.Lag).
				Msg("server asked to back off; waiting")
			if c.cfg.OnBackoff != nil {
				c.cfg.OnBackoff(BackoffEvent{Action: cl.action, Reason: reason, Wait: wait, Lag: be.Lag})
			}
			if serr := sleep(ctx, wait); serr != nil {
				return err
			}
			waited += wait
			if c.cfg.Metrics != nil {
				c.cfg.Metrics.waited.WithLabelValues(c.host).Add(wait.Seconds())
			}
			continue
		}
		if cl.write || !transient(err) || c.cfg.MaxRetries < 0 || attempt >= c.cfg.MaxRetries {
			return err
		}
		wait := c.backoff(attempt)
		c.log.Debug().Err(err).Str("action", cl.action).Int("attempt", attempt+1).Dur("wait", wait).Msg("transient failure; retrying")
		if !fitsDeadline(ctx, c.now(), wait) {
			return err
		}
		if serr := sleep(ctx, wait); serr != nil {
			return err
		}
	}
}

// backoff is the capped exponential backoff for attempt n, with jitter in
// [d/2, d].
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MinBackoff << min(n, 20)
	if d <= 0 || d > c.cfg.MaxBackoff {
		d = c.cfg.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// transient reports whether a read may be retried.
func transient(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode >= 500 || he.StatusCode == 0 || he.StatusCode == http.StatusOK
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return strings.HasPrefix(ae.Code, "internal_api_error") || ae.Code == "readonly"
	}
	var ue *url.Error
	return errors.As(err, &ue)
}

func fitsDeadline(ctx context.Context, now time.Time, wait time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || now.Add(wait).Before(dl)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// roundTrip sends one HTTP request under the rate and concurrency limits.
func (c *Client) roundTrip(ctx context.Context, cl call, p url.Values, out any) error {
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("waiting for the request-rate limit: %w", err)
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()

	p.Set("format", "json")
	p.Set("formatversion", "2")
	p.Set("errorformat", "plaintext")
	if c.cfg.MaxLag > 0 {
		p.Set("maxlag", strconv.Itoa(c.cfg.MaxLag))
	}
	var req *http.Request
	var err error
	if cl.post {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.api.String(), strings.NewReader(p.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		u := *c.api
		u.RawQuery = p.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	}
	if err != nil {
		return fmt.Errorf("building %s request: %w", cl.action, err)
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	if o, ok := c.cfg.Auth.(OAuth2); ok {
		req.Header.Set("Authorization", "Bearer "+o.Token)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.count(cl.action, "transport", start)
		// url.Error carries the URL: for GETs that holds only read params.
		return fmt.Errorf("%s request to %s: %w", cl.action, c.host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		c.count(cl.action, "transport", start)
		return fmt.Errorf("reading %s response from %s: %w", cl.action, c.host, &url.Error{Op: "read", URL: c.host, Err: err})
	}
	err = c.scrub(decodeResponse(resp.StatusCode, resp.Header, body, out, c.now()))
	result := "ok"
	if err != nil {
		result = errorCode(err)
	}
	c.count(cl.action, result, start)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", cl.action, c.host, err)
	}
	return nil
}

// scrub removes the configured secret from what a response's error keeps
// (the field patterns of Redact are applied when decoding; this catches the
// secret echoed anywhere else, raw or URL-encoded).
func (c *Client) scrub(err error) error {
	var secret string
	switch a := c.cfg.Auth.(type) {
	case BotPassword:
		secret = a.Secret
	case OAuth2:
		secret = a.Token
	}
	if err == nil || secret == "" {
		return err
	}
	clean := func(s string) string {
		for _, v := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
		return s
	}
	var he *HTTPError
	if errors.As(err, &he) {
		he.Body = clean(he.Body)
	}
	var ae *APIError
	if errors.As(err, &ae) {
		ae.Info = clean(ae.Info)
	}
	return err
}

func (c *Client) count(action, result string, start time.Time) {
	if c.cfg.Metrics == nil {
		return
	}
	c.cfg.Metrics.requests.WithLabelValues(c.host, action, result).Inc()
	c.cfg.Metrics.seconds.WithLabelValues(c.host, action).Observe(time.Since(start).Seconds())
}

// errorCode names an error for metrics and logs: the API code, http-NNN, or "error".
func errorCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return "http-" + strconv.Itoa(he.StatusCode)
	}
	return "error"
}

// ErrorCode returns the API error code in err ("" if none): for metrics
// labelled by code.
func ErrorCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v)+6)
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func (c *Client) isBotPassword() bool {
	_, ok := c.cfg.Auth.(BotPassword)
	return ok
}

// ensureLogin logs in once with a BotPassword (no-op otherwise).
func (c *Client) ensureLogin(ctx context.Context) error {
	if !c.isBotPassword() {
		return nil
	}
	c.mu.Lock()
	done := c.loggedIn
	c.mu.Unlock()
	if done {
		return nil
	}
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	c.mu.Lock()
	done = c.loggedIn
	c.mu.Unlock()
	if done {
		return nil
	}
	return c.login(ctx)
}

// Login logs in with the configured BotPassword now (a new session; cached
// tokens are dropped). Calls log in by themselves when needed; this is for
// checking credentials at start-up.
func (c *Client) Login(ctx context.Context) error {
	if !c.isBotPassword() {
		return nil
	}
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	return c.login(ctx)
}

// login logs in, unless the last failures ask to wait (or to stop): a
// wrong BotPassword gave one login POST per call (per alert delivery).
func (c *Client) login(ctx context.Context) error {
	bp := c.cfg.Auth.(BotPassword)
	now := c.now()
	if c.cfg.MaxLoginFailures > 0 && c.credFails >= c.cfg.MaxLoginFailures {
		return fmt.Errorf("%w: %d logins in a row as %s were refused; not trying again (fix the BotPassword and restart): %w",
			ErrLoginStopped, c.credFails, bp.LoginName(), c.loginErr)
	}
	if now.Before(c.loginRetryAt) {
		return fmt.Errorf("%w: not logging in again as %s before %s (%d failed logins in a row): %w",
			ErrLoginFailed, bp.LoginName(), c.loginRetryAt.Format(time.RFC3339), c.loginFails, c.loginErr)
	}
	err := c.loginOnce(ctx, bp)
	if err == nil {
		c.loginFails, c.credFails, c.loginErr = 0, 0, nil
		return nil
	}
	if ctx.Err() != nil {
		return err // cancelled: not the wiki's answer
	}
	c.loginFails++
	if errors.Is(err, ErrLoginFailed) {
		c.credFails++
	}
	c.loginErr = err
	d := c.cfg.LoginBackoffMin << min(c.loginFails-1, 20)
	if d <= 0 || d > c.cfg.LoginBackoffMax {
		d = c.cfg.LoginBackoffMax
	}
	d = d/2 + rand.N(d/2+1)
	c.loginRetryAt = now.Add(d)
	if c.cfg.MaxLoginFailures > 0 && c.credFails >= c.cfg.MaxLoginFailures {
		c.log.Error().Err(err).Int("failures", c.loginFails).Object("auth", bp).
			Msg("BotPassword login refused too many times in a row; not trying again until restarted")
		return fmt.Errorf("%w: %w", ErrLoginStopped, err)
	}
	c.log.Warn().Err(err).Int("failures", c.loginFails).Object("auth", bp).Dur("retry_in", d).
		Msg("login failed; calls fail at once until the next try")
	return err
}

func (c *Client) loginOnce(ctx context.Context, bp BotPassword) error {
	c.dropTokens()
	// MediaWiki refuses action=login inside a BotPassword session
	// (api-login-fail-badsessionprovider): start from no session.
	c.dropSessionCookies()
	var tr tokensResponse
	if err := c.send(ctx, call{action: "query"}, url.Values{"action": {"query"}, "meta": {"tokens"}, "type": {"login"}}, &tr); err != nil {
		c.countLogin("error")
		return fmt.Errorf("fetching a login token as %s: %w", bp.LoginName(), err)
	}
	var lr struct {
		Login struct {
			Result   string          `json:"result"`
			Reason   json.RawMessage `json:"reason"` // a string, or {code,text} with errorformat
			UserID   int64           `json:"lguserid"`
			Username string          `json:"lgusername"`
		} `json:"login"`
	}
	p := url.Values{"action": {"login"}, "lgname": {bp.LoginName()}, "lgpassword": {bp.Secret}, "lgtoken": {tr.Query.Tokens["logintoken"]}}
	if err := c.send(ctx, call{action: "login", post: true, write: true}, p, &lr); err != nil {
		c.countLogin("error")
		return fmt.Errorf("logging in as %s: %w", bp.LoginName(), err)
	}
	if lr.Login.Result != "Success" {
		c.countLogin("failed")
		reason := loginReason(lr.Login.Reason)
		if reason == "" {
			reason = lr.Login.Result
		}
		// The reason is MediaWiki's message; it never contains the password.
		if strings.Contains(reason, "Incorrect") {
			reason += " (note: a BotPassword secret must match ^[0-9a-w]{32,}$)"
		}
		return fmt.Errorf("%w as %s: %s", ErrLoginFailed, bp.LoginName(), reason)
	}
	c.countLogin("ok")
	c.mu.Lock()
	c.loggedIn = true
	c.mu.Unlock()
	c.log.Info().Str("user", lr.Login.Username).Int64("userid", lr.Login.UserID).Msg("logged in with a BotPassword")
	return nil
}

// dropSessionCookies expires the cookies the jar holds for the API.
func (c *Client) dropSessionCookies() {
	var expired []*http.Cookie
	for _, ck := range c.hc.Jar.Cookies(c.api) {
		for _, path := range []string{"/", c.api.Path} {
			expired = append(expired, &http.Cookie{Name: ck.Name, Path: path, MaxAge: -1})
		}
	}
	if len(expired) > 0 {
		c.hc.Jar.SetCookies(c.api, expired)
	}
}

// loginReason reads login.reason: a string (errorformat=bc) or an object
// with text (plaintext) or key.
func loginReason(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var m struct{ Code, Text, Key string }
	if json.Unmarshal(raw, &m) == nil {
		return strings.TrimSpace(m.Code + ": " + cmpOr(m.Text, m.Key))
	}
	return ""
}

func (c *Client) countLogin(result string) {
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.logins.WithLabelValues(c.host, result).Inc()
	}
}

type tokensResponse struct {
	Query struct {
		Tokens map[string]string `json:"tokens"`
	} `json:"query"`
}

// Token returns a token of the given type ("csrf", "rollback", "patrol",
// "watch", …), fetched once and cached until a badtoken or a new login.
func (c *Client) Token(ctx context.Context, typ string) (string, error) {
	c.mu.Lock()
	tok, ok := c.tokens[typ]
	c.mu.Unlock()
	if ok {
		return tok, nil
	}
	if err := c.ensureLogin(ctx); err != nil {
		return "", err
	}
	var tr tokensResponse
	if err := c.send(ctx, call{action: "query"}, url.Values{"action": {"query"}, "meta": {"tokens"}, "type": {typ}}, &tr); err != nil {
		return "", fmt.Errorf("fetching a %s token: %w", typ, err)
	}
	tok = tr.Query.Tokens[typ+"token"]
	if tok == "" || tok == `+\` {
		// `+\` is the anonymous token: the session is not logged in.
		return "", fmt.Errorf("fetching a %s token: %w", typ, &APIError{Code: "notloggedin", Info: "got the anonymous token", Codes: []string{"notloggedin"}})
	}
	c.mu.Lock()
	had := c.fetched[typ]
	c.fetched[typ] = true
	c.tokens[typ] = tok
	c.mu.Unlock()
	if c.cfg.Metrics != nil {
		reason := "first"
		if had {
			reason = "refresh"
		}
		c.cfg.Metrics.tokens.WithLabelValues(c.host, typ, reason).Inc()
	}
	return tok, nil
}

func (c *Client) dropTokens() {
	c.mu.Lock()
	clear(c.tokens)
	c.mu.Unlock()
}
