package mediawiki

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// codeError is the type of the sentinels below. An *APIError matches a
// sentinel with errors.Is when one of its codes is among the sentinel's codes.
type codeError struct {
	name  string
	codes []string
}

func (e *codeError) Error() string { return "mediawiki: " + e.name }

// Sentinels, matched with errors.Is against the error of any call. Each names
// the API error codes it stands for.
var (
	// ErrMaxLag: the replica lag exceeds the maxlag sent (code maxlag). Nothing
	// was done; the client retries within Config.MaxWait, then returns a
	// *BackoffError that wraps this.
	ErrMaxLag error = &codeError{"replication lag above maxlag", []string{"maxlag"}}
	// ErrBadToken: the CSRF/rollback token is not valid for this session
	// (badtoken). The client refreshes the token and retries once by itself.
	ErrBadToken error = &codeError{"bad token", []string{"badtoken"}}
	// ErrEditConflict: the page changed since BaseRevID and the changes overlap
	// (editconflict). Re-read the page and decide again.
	ErrEditConflict error = &codeError{"edit conflict", []string{"editconflict"}}
	// ErrReadOnly: the wiki is in read-only mode (readonly). Retry later.
	ErrReadOnly error = &codeError{"wiki is read-only", []string{"readonly"}}
	// ErrRateLimited: the account hit a server-side rate limit (ratelimited),
	// or the server answered HTTP 429. Back off.
	ErrRateLimited error = &codeError{"rate limited", []string{"ratelimited"}}
	// ErrAssertFailed: the session is not (any more) the user or bot the
	// request asserted (assertbotfailed, assertuserfailed,
	// assertnameduserfailed). The client re-logs in once with a BotPassword.
	ErrAssertFailed error = &codeError{"assertion failed", []string{"assertbotfailed", "assertuserfailed", "assertnameduserfailed"}}
	// ErrMissingTitle: the page does not exist (missingtitle, or a page the
	// query reported missing).
	ErrMissingTitle error = &codeError{"page does not exist", []string{"missingtitle", "nosuchpageid"}}
	// ErrArticleExists: a create-only edit found the page (articleexists).
	ErrArticleExists error = &codeError{"page already exists", []string{"articleexists"}}
	// ErrProtected: the page or title is protected against this user.
	ErrProtected error = &codeError{"page is protected", []string{"protectedpage", "cascadeprotected", "protectedtitle", "protectednamespace", "protectednamespace-interface", "customcssprotected", "customjsprotected", "customjsonprotected"}}
	// ErrNoSuchRevision: a revision id does not exist or is deleted.
	ErrNoSuchRevision error = &codeError{"no such revision", []string{"nosuchrevid", "missingrev"}}
	// ErrPermissionDenied: the user lacks the right (or the grant) for the action.
	ErrPermissionDenied error = &codeError{"permission denied", []string{"permissiondenied", "writeapidenied", "noedit", "noedit-anon", "cantcreate", "cantcreate-anon", "mwoauth-invalid-authorization", "readapidenied", "notloggedin"}}
	// ErrBlocked: the user or IP is blocked.
	ErrBlocked error = &codeError{"blocked", []string{"blocked", "autoblocked", "globalblocking-blockedtext", "systemblocked"}}
	// ErrAlreadyRolled: rollback found the page's top revision is no longer by
	// that user, or the user is the page's only author (alreadyrolled, onlyauthor).
	ErrAlreadyRolled error = &codeError{"already rolled back", []string{"alreadyrolled", "onlyauthor"}}
	// ErrUndoFailed: undo conflicts with intermediate edits (undofailure).
	ErrUndoFailed error = &codeError{"undo failed", []string{"undofailure"}}
	// ErrDisallowed: an anti-abuse filter refused the edit (AbuseFilter,
	// SpamBlacklist, TitleBlacklist).
	ErrDisallowed error = &codeError{"disallowed by a filter", []string{"abusefilter-disallowed", "abusefilter-warning", "spamblacklist", "titleblacklist-forbidden"}}
	// ErrLoginFailed: action=login did not succeed (wrong BotPassword, bad
	// secret format, throttled). The secret is never in the message.
	ErrLoginFailed = errors.New("mediawiki: login failed")
	// ErrLoginStopped: logins failed Config.MaxLoginFailures times in a row
	// for the credentials; the client does not try again (each try would
	// count against the wiki's login throttle). It matches ErrLoginFailed.
	ErrLoginStopped = fmt.Errorf("%w: stopped after repeated failures", ErrLoginFailed)
	// ErrInsecureAuth: credentials would be sent over plain http:// to a
	// host that is not loopback (Config.AllowInsecureAuth not set).
	ErrInsecureAuth = errors.New("mediawiki: refusing to send credentials over plain http")
	// ErrUnavailable: HTTP 503 (the server asked to come back later).
	ErrUnavailable = errors.New("mediawiki: service unavailable")
	// ErrInvalidRequest: the request was refused before sending (a bug in the caller).
	ErrInvalidRequest = errors.New("mediawiki: invalid request")
)

// APIError is an error the Action API reported (HTTP 200 with an `error`
// object or an `errors` array). Code is the first error's code; Codes holds
// all of them (an edit can fail for several reasons at once).
type APIError struct {
	Code   string
	Info   string
	Module string         // errorformat!=bc only
	Data   map[string]any // extra members, e.g. lag/host for maxlag, readonlyreason
	Codes  []string
}

func (e *APIError) Error() string {
	if e.Info == "" {
		return "mediawiki api error " + e.Code
	}
	return "mediawiki api error " + e.Code + ": " + e.Info
}

// Is matches the package's sentinels by code.
func (e *APIError) Is(target error) bool {
	ce, ok := target.(*codeError)
	if !ok {
		return false
	}
	for _, c := range e.Codes {
		if slices.Contains(ce.codes, c) {
			return true
		}
	}
	return slices.Contains(ce.codes, e.Code)
}

// HTTPError is a response that is not an API answer: a non-200 status or a
// body that is not JSON (a PHP fatal error page, a proxy's error page).
type HTTPError struct {
	StatusCode int
	Body       string // the first 200 bytes
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("mediawiki: HTTP %d: %s", e.StatusCode, e.Body)
}

// Is makes HTTP 429 match ErrRateLimited and 503 ErrUnavailable.
func (e *HTTPError) Is(target error) bool {
	switch target {
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrUnavailable:
		return e.StatusCode == http.StatusServiceUnavailable
	}
	return false
}

// BackoffError means the server asked the client to wait before trying again
// (maxlag, HTTP 429 or 503, ratelimited): Wait is how long (from Retry-After
// when the server sent it), Lag the replica lag it reported (X-Database-Lag),
// if any. Nothing was done by the request. Err is the underlying error
// (*APIError or *HTTPError), so errors.Is(err, ErrMaxLag) still works.
type BackoffError struct {
	Wait time.Duration
	Lag  time.Duration
	Err  error
}

func (e *BackoffError) Error() string {
	s := "mediawiki: back off " + e.Wait.String()
	if e.Lag > 0 {
		s += " (lag " + e.Lag.String() + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *BackoffError) Unwrap() error { return e.Err }

// RetryAfter returns the wait a *BackoffError in err's chain carries.
func RetryAfter(err error) (time.Duration, bool) {
	var be *BackoffError
	if errors.As(err, &be) {
		return be.Wait, true
	}
	return 0, false
}

// DefaultRateLimitedWait is the wait given to a `ratelimited` error, which
// carries no Retry-After.
const DefaultRateLimitedWait = 60 * time.Second

// rawError is either shape of an API error: formatversion 1/`bc` errorformat
// (`{"code","info","*"}` or `"docref"`), or an element of the `errors` array
// of errorformat=plaintext/wikitext/html/raw (`{"code","text"|"html"|"key","data","module"}`).
type rawError map[string]json.RawMessage

func (r rawError) str(key string) string {
	v, ok := r[key]
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return strings.TrimSpace(string(v))
	}
	return s
}

func (r rawError) toAPIError() *APIError {
	e := &APIError{Code: r.str("code"), Module: r.str("module")}
	for _, k := range []string{"info", "text", "html", "key"} {
		if s := r.str(k); s != "" {
			e.Info = Redact(s)
			break
		}
	}
	data := map[string]any{}
	if d, ok := r["data"]; ok {
		var m map[string]any
		if json.Unmarshal(d, &m) == nil {
			for k, v := range m {
				data[k] = v
			}
		}
	}
	for k, v := range r {
		switch k {
		case "code", "info", "text", "html", "key", "params", "module", "data", "*", "docref":
			continue
		}
		var x any
		if json.Unmarshal(v, &x) == nil {
			data[k] = x
		}
	}
	if len(data) > 0 {
		e.Data = data
	}
	return e
}

type envelope struct {
	Error  rawError   `json:"error"`
	Errors []rawError `json:"errors"`
}

// maxBody bounds what is read from one response (revision texts are at most
// $wgMaxArticleSize, 2 MiB on Wikimedia, times up to 50 revisions).
const maxBody = 128 << 20

// decodeResponse turns one HTTP response into out or a typed error. It never
// panics on any input (fuzzed). now is used for a Retry-After HTTP date.
func decodeResponse(status int, h http.Header, body []byte, out any, now time.Time) error {
	wait, hasWait := parseRetryAfter(h.Get("Retry-After"), now)
	lag := parseLag(h.Get("X-Database-Lag"))
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if !hasWait {
			wait = 0
		}
		return &BackoffError{Wait: wait, Lag: lag, Err: &HTTPError{StatusCode: status, Body: snippet(body)}}
	}
	trimmed := bytes.TrimSpace(body)
	if status != http.StatusOK || len(trimmed) == 0 || trimmed[0] != '{' {
		return &HTTPError{StatusCode: status, Body: snippet(body)}
	}
	var env envelope
	if err := json.Unmarshal(trimmed, &env); err != nil {
		return &HTTPError{StatusCode: status, Body: "invalid JSON: " + err.Error()}
	}
	var apiErr *APIError
	switch {
	case len(env.Error) > 0:
		apiErr = env.Error.toAPIError()
	case len(env.Errors) > 0:
		apiErr = env.Errors[0].toAPIError()
		for _, r := range env.Errors {
			apiErr.Codes = append(apiErr.Codes, r.str("code"))
		}
	}
	if apiErr == nil && h.Get("MediaWiki-API-Error") != "" {
		apiErr = &APIError{Code: h.Get("MediaWiki-API-Error")}
	}
	if apiErr != nil {
		if apiErr.Code == "" {
			apiErr.Code = "unknown"
		}
		if len(apiErr.Codes) == 0 {
			apiErr.Codes = []string{apiErr.Code}
		}
		switch apiErr.Code {
		case "maxlag":
			if lag == 0 {
				if l, ok := apiErr.Data["lag"].(float64); ok && l > 0 {
					lag = time.Duration(l * float64(time.Second))
				}
			}
			if !hasWait {
				wait = max(lag, time.Second)
			}
			return &BackoffError{Wait: wait, Lag: lag, Err: apiErr}
		case "ratelimited":
			if !hasWait {
				wait = DefaultRateLimitedWait
			}
			return &BackoffError{Wait: wait, Err: apiErr}
		}
		return apiErr
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(trimmed, out); err != nil {
		return fmt.Errorf("decoding API response: %w", err)
	}
	return nil
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil && n >= 0 && n < 86400 {
		return time.Duration(n * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		return min(max(d, 0), 24*time.Hour), true
	}
	return 0, false
}

func parseLag(v string) time.Duration {
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || n <= 0 || n > 1e6 {
		return 0
	}
	return time.Duration(n * float64(time.Second))
}

// snippet is what an error keeps of a body that is not an API answer: at
// most 200 bytes, never verbatim — credential fields are redacted first
// (a server that echoes the request in its error page would otherwise put
// lgpassword=<secret> into every log line of the error).
func snippet(b []byte) string {
	s := Redact(strings.ToValidUTF8(string(bytes.TrimSpace(b)), "?"))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}

// credentialRe matches a credential field and its value wherever it may
// appear in text: form or query encoding (lgpassword=…&), JSON
// ("lgtoken":"…"), headers (Authorization: Bearer …), HTML attributes.
var (
	credentialRe = regexp.MustCompile(`(?i)((?:lg|wp)?password|passwd|[a-z]*token|secret|authorization|access_token|oauth_[a-z_]+|cookie|session)(\\?["']?\s*(?:[:=]|%3[ad])\s*\\?["']?\s*(?:(?:bearer|basic)\s+)?)([^\s&"',;<>\\]+)`)
	schemeRe     = regexp.MustCompile(`(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]+)`)
)

// Redact replaces the value of every credential field in s by [redacted].
func Redact(s string) string {
	s = credentialRe.ReplaceAllString(s, "${1}${2}[redacted]")
	return schemeRe.ReplaceAllString(s, "${1}${2}[redacted]")
}
