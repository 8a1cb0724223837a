package mediawiki_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/mediawiki"
)

// fakeClock is a clock the test moves; it starts a day in the past, so the
// client's waits still fit the contexts' real deadlines.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().Add(-24 * time.Hour)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A wrong BotPassword used to cost one login POST per call (per alert
// delivery: 90 in 30 s, which trips a real wiki's login throttle). Against
// the real wiki: one login per backoff, calls in between fail at once with
// the last error, and after MaxLoginFailures the client stops with a clear
// error.
func TestWrongBotPasswordBacksOffThenStops(t *testing.T) {
	e := newEnv(t)
	clock := newFakeClock()
	c := e.client(t, func(c *mediawiki.Config) {
		c.Auth = mediawiki.BotPassword{User: e.w.Bot.Name, AppID: e.w.Bot.AppID, Secret: strings.Repeat("0", 32)}
		c.Now = clock.Now
		c.LoginBackoffMin, c.LoginBackoffMax = time.Minute, 10*time.Minute
		c.MaxLoginFailures = 3
	})
	ctx := ctxT(t)
	logins := func() float64 { return e.counter(t, "rcwatch_mediawiki_logins_total", "result", "failed") }

	for range 30 { // 30 deliveries at the same moment
		_, err := c.UserInfo(ctx)
		require.ErrorIs(t, err, mediawiki.ErrLoginFailed)
		assert.NotErrorIs(t, err, mediawiki.ErrLoginStopped)
	}
	assert.Equal(t, 1.0, logins(), "one login POST, not one per call")
	_, err := c.UserInfo(ctx)
	assert.Contains(t, err.Error(), "not logging in again as TestBot@"+e.w.Bot.AppID+" before")
	assert.Contains(t, err.Error(), "Incorrect", "the wiki's reason is kept")

	clock.Add(time.Hour) // past the backoff: one more try
	_, err = c.UserInfo(ctx)
	require.ErrorIs(t, err, mediawiki.ErrLoginFailed)
	assert.Equal(t, 2.0, logins())
	clock.Add(time.Hour)
	_, err = c.UserInfo(ctx)
	require.ErrorIs(t, err, mediawiki.ErrLoginStopped, "the third refusal stops the client")
	assert.Equal(t, 3.0, logins())
	for range 10 {
		clock.Add(time.Hour)
		_, err = c.UserInfo(ctx)
		require.ErrorIs(t, err, mediawiki.ErrLoginStopped)
		require.ErrorIs(t, err, mediawiki.ErrLoginFailed)
	}
	assert.Equal(t, 3.0, logins(), "stopped: no more login POSTs")
	assert.Contains(t, err.Error(), "3 logins in a row as TestBot@"+e.w.Bot.AppID+" were refused; not trying again")
	assert.Len(t, e.logs.Matching("not trying again until restarted"), 1)

	// The right secret after a failure resets the backoff.
	good := e.client(t, func(c *mediawiki.Config) { c.Now = clock.Now })
	_, err = good.UserInfo(ctx)
	require.NoError(t, err)
}

// A server that echoes the request in its error page put lgpassword=<secret>
// into 180 log lines. No credential is ever kept from a response: not in
// the error, not in the logs, whatever the page echoes.
func TestEchoedCredentialsAreRedacted(t *testing.T) {
	const secret = "s3cretvalue0123456789abcdefghijk"
	const oauth = "oauth-token-value-that-must-not-leak"
	var posts atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Get("type") == "login":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"batchcomplete":true,"query":{"tokens":{"logintoken":"abc123+\\"}}}`)
		case r.Method == http.MethodPost && posts.Add(1) == 1:
			// An HTML error page echoing the request, raw and decoded.
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "<html><body>Bad request: %s<br>lgpassword: %s</body></html>", body, secret)
		default:
			// An API error echoing the request's headers and body.
			w.Header().Set("Content-Type", "application/json")
			text := fmt.Sprintf("got %s with Authorization: %s and lgtoken=abc123+\\", body, r.Header.Get("Authorization"))
			out, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": "badvalue", "text": text}}})
			_, _ = w.Write(out)
		}
	}))
	t.Cleanup(hs.Close)
	ctx := ctxT(t)
	logs := logtest.NewSink()
	c, err := mediawiki.New(mediawiki.Config{APIURL: hs.URL + "/api.php", MaxRetries: -1,
		Auth: mediawiki.BotPassword{User: "Bot", AppID: "app", Secret: secret}}, zerolog.New(logs).Level(zerolog.DebugLevel))
	require.NoError(t, err)
	var errs []error
	errs = append(errs, c.Login(ctx)) // the HTML page
	o, err := mediawiki.New(mediawiki.Config{APIURL: hs.URL + "/api.php", MaxRetries: -1,
		Auth: mediawiki.OAuth2{Token: oauth}}, zerolog.New(logs).Level(zerolog.DebugLevel))
	require.NoError(t, err)
	_, err = o.UserInfo(ctx) // the API error echoing the Authorization header
	errs = append(errs, err)
	for _, err := range errs {
		require.Error(t, err)
		for _, leak := range []string{secret, oauth, "abc123"} {
			assert.NotContains(t, err.Error(), leak)
		}
	}
	assert.Contains(t, errs[0].Error(), "lgpassword=[redacted]")
	assert.Contains(t, errs[1].Error(), "Bearer [redacted]")
	for _, leak := range []string{secret, oauth, "abc123"} {
		assert.NotContains(t, logs.String(), leak)
	}
	assert.Equal(t, "lgpassword=[redacted]&lgtoken=[redacted]&x=1", mediawiki.Redact("lgpassword="+secret+"&lgtoken=abc%2B%5C&x=1"))
	assert.Equal(t, "nothing secret here: Main Page", mediawiki.Redact("nothing secret here: Main Page"))
}

// Credentials are not sent over plain http:// unless to loopback (the local
// test wiki) or explicitly allowed.
func TestInsecureAuthRefused(t *testing.T) {
	bp := mediawiki.BotPassword{User: "Bot", AppID: "app", Secret: strings.Repeat("a", 32)}
	tests := []struct {
		url   string
		auth  mediawiki.Auth
		allow bool
		ok    bool
	}{
		{"http://wiki.example.org/w/api.php", bp, false, false},
		{"http://wiki.example.org/w/api.php", mediawiki.OAuth2{Token: "t"}, false, false},
		{"http://wiki.example.org/w/api.php", bp, true, true},
		{"https://wiki.example.org/w/api.php", bp, false, true},
		{"http://wiki.example.org/w/api.php", nil, false, true},
		{"http://127.0.0.1:8080/api.php", bp, false, true},
		{"http://localhost/api.php", bp, false, true},
		{"http://[::1]:8080/api.php", bp, false, true},
	}
	for _, tc := range tests {
		_, err := mediawiki.New(mediawiki.Config{APIURL: tc.url, Auth: tc.auth, AllowInsecureAuth: tc.allow}, zerolog.Nop())
		if tc.ok {
			assert.NoError(t, err, tc.url)
			continue
		}
		require.ErrorIs(t, err, mediawiki.ErrInsecureAuth, tc.url)
		assert.Contains(t, err.Error(), "use https://")
		assert.NotContains(t, err.Error(), bp.Secret)
	}
	_ = context.Background
}
