package edit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadConfigExample(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "deploy", "examples", "edit.yaml"))
	require.NoError(t, err)
	assert.False(t, cfg.Live, "the example is dry-run")
	assert.Equal(t, 6.0, cfg.RatePerMinute)
	wc := cfg.Wikis["enwiki"]
	require.NotNil(t, wc)
	assert.Equal(t, "ExampleBot", wc.Account)
	assert.Equal(t, "User:ExampleBot/Run", wc.KillSwitchPage)
	assert.True(t, *wc.TalkPageStop)
	assert.Equal(t, 24*time.Hour, cfg.RevertMemory)
	assert.Equal(t, "Dead link", templateName(wc.Tag.Rules["citation-dead-no-archive"]))
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
wikis:
  testwiki:
    api_url: http://127.0.0.1:1/api.php
    account: some_bot
    operations: [revert]
`))
	require.NoError(t, err)
	assert.False(t, cfg.Live)
	assert.Equal(t, 6.0, cfg.RatePerMinute)
	assert.Equal(t, 60*time.Second, cfg.KillSwitchInterval)
	assert.Equal(t, 24*time.Hour, cfg.RevertMemory)
	wc := cfg.Wikis["testwiki"]
	assert.Equal(t, "Some bot", wc.Account)
	assert.Equal(t, "User:Some bot/Run", wc.KillSwitchPage)
	assert.Equal(t, "User talk:Some bot", wc.FalsePositivePage)
	assert.Equal(t, "bot", wc.Assert)
	assert.Equal(t, "auto", wc.Revert.Method)
	assert.True(t, *wc.Revert.MarkBot)
	assert.Contains(t, wc.Revert.TrustedGroups, "sysop")
	assert.Equal(t, DefaultSummary, wc.Summary)
}

func TestParseConfigErrors(t *testing.T) {
	base := "wikis:\n  w:\n    api_url: http://x/api.php\n    account: B\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "    colour: red\n", "field colour not found"},
		{"no wikis", "live: true\n", "no wikis configured"},
		{"bad url", "wikis:\n  w:\n    api_url: ftp://x\n    account: B\n", "not an http(s) URL"},
		{"no account", "wikis:\n  w:\n    api_url: http://x/api.php\n", "account"},
		{"unknown op", base + "    operations: [delete]\n", `unknown operation "delete"`},
		{"tag without template", base + "    operations: [tag]\n", "tag.template"},
		{"bad template", base + "    operations: [tag]\n    tag: {template: Update}\n", "does not start with {{Name"},
		{"report without page", base + "    operations: [report]\n", "report.page"},
		{"summary without marker", base + "    summary: hi\n", "{marker}"},
		{"bad assert", base + "    assert: admin\n", "assert"},
		{"bad method", base + "    revert: {method: delete}\n", "revert.method"},
		{"bad position", base + "    tag: {position: middle}\n", "tag.position"},
		{"absurd rate", base + "rate_per_minute: 100000\n", "rate_per_minute 100000: between 0.1 and 60"},
		{"fast rate on a public wiki", base + "rate_per_minute: 600\n", "rate_per_minute 600: at most 60 (one edit a second) with wiki w not on loopback"},
		{"tiny rate", base + "rate_per_minute: 0.001\n", "rate_per_minute 0.001"},
		{"negative rate", base + "rate_per_minute: -3\n", "negative rate"},
		{"absurd workers", base + "workers: 10000\n", "workers 10000: between 1 and 64"},
		{"negative workers", base + "workers: -1\n", "negative rate, workers or duration"},
		{"absurd max_hold", base + "max_hold: 24h\n", "max_hold 24h0m0s: between 1s and 10m0s"},
		{"absurd kill_switch_interval", base + "kill_switch_interval: 1ms\n", "kill_switch_interval 1ms: between 1s and 1h0m0s"},
		{"absurd max_alert_age", base + "max_alert_age: 10000h\n", "max_alert_age 10000h0m0s"},
		{"absurd revert_memory", base + "revert_memory: 1s\n", "revert_memory 1s"},
		{"absurd idempotency_ttl", base + "idempotency_ttl: 1m\n", "idempotency_ttl 1m0s"},
		{"absurd claim_ttl", base + "claim_ttl: 100h\n", "claim_ttl 100h0m0s: between 1s and 1h0m0s"},
		{"absurd read_only_wait", base + "read_only_wait: 1ms\n", "read_only_wait 1ms"},
		{"absurd error_wait", base + "error_wait: 48h\n", "error_wait 48h0m0s"},
		{"absurd ack_wait", base + "ack_wait: 1h\n", "ack_wait 1h0m0s: between 1s and 10m0s"},
		{"absurd tag memory", base + "    tag: {memory: 1m}\n", "tag.memory 1m0s"},
		{"absurd report memory", base + "    report: {memory: 100000h}\n", "report.memory 100000h0m0s"},
		{"virtual namespace", base + "    tag: {namespaces: [-1]}\n", "virtual namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// A test wiki on loopback may run fast (the end-to-end and rehearsal tests).
func TestParseConfigLoopbackRate(t *testing.T) {
	for _, host := range []string{"127.0.0.1:8080", "localhost", "[::1]:80"} {
		cfg, err := ParseConfig([]byte("rate_per_minute: 6000\nwikis:\n  w:\n    api_url: http://" + host + "/api.php\n    account: B\n"))
		require.NoError(t, err, host)
		assert.Equal(t, 6000.0, cfg.RatePerMinute)
	}
}

func TestLoadCredentials(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	env := map[string]string{EnvBotPassword: secret + "\n"}
	getenv := func(k string) string { return env[k] }

	c, err := LoadCredentials(getenv, "", "")
	require.NoError(t, err)
	assert.Equal(t, "botpassword", c.Kind())
	for _, s := range []string{c.String(), c.GoString()} {
		assert.NotContains(t, s, secret)
	}

	dir := t.TempDir()
	tok := filepath.Join(dir, "oauth-token")
	require.NoError(t, os.WriteFile(tok, []byte("tok-SECRET-value\n"), 0o600))
	c, err = LoadCredentials(getenv, tok, "")
	require.NoError(t, err)
	assert.Equal(t, "oauth2", c.Kind(), "the OAuth token wins")
	assert.Equal(t, "tok-SECRET-value", c.oauthToken)
	assert.NotContains(t, c.String(), "SECRET")

	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err = LoadCredentials(getenv, "", empty)
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = LoadCredentials(getenv, filepath.Join(dir, "missing"), "")
	require.Error(t, err)

	c, err = LoadCredentials(func(string) string { return "" }, "", "")
	require.NoError(t, err)
	assert.Equal(t, "", c.Kind())
}
