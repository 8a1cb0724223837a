package irc

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestLoadConfigExample(t *testing.T) {
	cfg, err := LoadConfig("../../deploy/examples/irc.yaml")
	require.NoError(t, err)
	require.Len(t, cfg.Networks, 2)
	lib := cfg.Networks[0]
	require.Equal(t, 6697, lib.Port)
	require.True(t, lib.TLS)
	require.Equal(t, "RCWATCH_IRC_SASL_PASSWORD", lib.SASLPassword.Env)
	require.Equal(t, DefaultFlood(), lib.Flood)
	require.Equal(t, 10*time.Second, cfg.LeaseTTL)
	require.Equal(t, "rcwatch", cfg.Networks[1].User, "user defaults to the nick")
	require.Equal(t, 64, cfg.Networks[1].HostLen)
}

func TestParseConfigErrors(t *testing.T) {
	base := "networks:\n  - {name: n, host: h, nick: bot, channels: [{name: '#c'}]}\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "bogus: 1\n", "field bogus not found"},
		{"no networks", "lease_ttl: 5s\n", "no networks"},
		{"bad channel", "networks:\n  - {host: h, nick: bot, channels: [{name: 'chan'}]}\n", `channel name "chan" is not valid`},
		{"bad nick", "networks:\n  - {host: h, nick: 'a b', channels: [{name: '#c'}]}\n", `nick "a b" is not a valid nick`},
		{"sasl without password", "networks:\n  - {host: h, nick: b, sasl_user: u, channels: [{name: '#c'}]}\n", "sasl_user needs sasl_password"},
		{"secret env and file", "networks:\n  - {host: h, nick: b, server_password: {env: A, file: B}, channels: [{name: '#c'}]}\n", "env or file, not both"},
		{"unknown severity", "networks:\n  - {host: h, nick: b, channels: [{name: '#c', route: {min_severity: huge}}]}\n", `unknown min_severity "huge"`},
		{"receives nothing", "networks:\n  - {host: h, nick: b, channels: [{name: '#c', route: {from_actions: false}}]}\n", "would receive nothing"},
		{"short lease", base + "lease_ttl: 100ms\n", "lease_ttl 100ms"},
		{"control without trust", "networks:\n  - {host: h, nick: b, control: {channel: '#ops'}}\n", "no trusted nicks"},
		{"duplicate channel", "networks:\n  - {host: h, nick: b, channels: [{name: '#c'}, {name: '#C'}]}\n", "duplicate channel #C"},
		{"flood rate absurd", "networks:\n  - {host: h, nick: b, flood: {rate: 100000}, channels: [{name: '#c'}]}\n", "flood rate 100000 lines/s: at most 10 on this host"},
		{"flood burst absurd", "networks:\n  - {host: h, nick: b, flood: {burst: 100000}, channels: [{name: '#c'}]}\n", "flood burst 100000: at most 20 on this host"},
		{"flood backlog absurd", "networks:\n  - {host: h, nick: b, flood: {backlog: 1000000}, channels: [{name: '#c'}]}\n", "flood backlog 1000000: at most 1000 on this host"},
		{"flood max_digests absurd", "networks:\n  - {host: h, nick: b, flood: {max_digests: 5000}, channels: [{name: '#c'}]}\n", "flood max_digests 5000: at most 1000"},
		{"flood rate absurd on loopback", "networks:\n  - {host: 127.0.0.1, nick: b, flood: {rate: 5000}, channels: [{name: '#c'}]}\n", "flood rate 5000 lines/s: at most 1000 on this host"},
		{"flood rate negative", "networks:\n  - {host: h, nick: b, flood: {rate: -1}, channels: [{name: '#c'}]}\n", "must be positive"},
		{"host_len absurd", "networks:\n  - {host: h, nick: b, host_len: 4000, channels: [{name: '#c'}]}\n", "host_len 4000: between 1 and 255"},
		{"reconnect_max absurd", "networks:\n  - {host: h, nick: b, reconnect_max: 48h, channels: [{name: '#c'}]}\n", "reconnect_max 48h0m0s: at most 1h"},
		{"long lease", base + "lease_ttl: 2h\n", "lease_ttl 2h0m0s: at most 10m"},
		{"long ack_wait", base + "ack_wait: 1h\n", "ack_wait 1h0m0s: at most 10m"},
		{"short idempotency", base + "idempotency_ttl: 1s\n", "idempotency_ttl 1s: between 1m and 720h"},
		{"negative max_alert_age", base + "max_alert_age: -1h\n", "max_alert_age -1h0m0s: negative"},
		{"huge max_mute", base + "max_mute: 100000h\n", "max_mute 100000h0m0s: between 1m and 8760h"},
		{"backlog age absurd", base + "backlog_fold: {age: 100h}\n", "backlog_fold.age 100h0m0s: between 1s and 1h"},
		{"backlog pending absurd", base + "backlog_fold: {pending: 100000000}\n", "backlog_fold.pending 100000000: between 1 and 1000000"},
		{"backlog pending negative", base + "backlog_fold: {pending: -5}\n", "backlog_fold.pending -5"},
		{"feed url not http", base + "backlog_fold: {feed_url: 'ftp://x'}\n", "backlog_fold.feed_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSecretResolve(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(f, []byte("s3cret\n"), 0o600))
	v, err := Secret{File: f}.Resolve()
	require.NoError(t, err)
	require.Equal(t, "s3cret", v)
	t.Setenv("RCWATCH_TEST_PW", "from-env")
	v, err = Secret{Env: "RCWATCH_TEST_PW"}.Resolve()
	require.NoError(t, err)
	require.Equal(t, "from-env", v)
	_, err = Secret{Env: "RCWATCH_TEST_UNSET_PW"}.Resolve()
	require.ErrorContains(t, err, "RCWATCH_TEST_UNSET_PW is empty or unset")
}

func TestRouteMatches(t *testing.T) {
	a := &event.Alert{Rule: event.RuleRef{ID: "blanking"}, Severity: event.SeverityMedium, Score: 0.8,
		Event: event.Ref{Wiki: "enwiki", Namespace: 0}, Actions: []string{"irc:#vandalism", "irc:libera/#ops", "edit:tag"}}
	no := false
	tests := []struct {
		name    string
		route   Route
		network string
		channel string
		want    bool
	}{
		{"named in actions", Route{}, "libera", "#vandalism", true},
		{"named in actions, case-insensitive", Route{}, "libera", "#VANDALISM", true},
		{"named with network", Route{}, "libera", "#ops", true},
		{"named with another network", Route{}, "oftc", "#ops", false},
		{"not named, no filter", Route{}, "libera", "#other", false},
		{"actions ignored", Route{FromActions: &no, Wikis: []string{"dewiki"}}, "libera", "#vandalism", false},
		{"filters all match", Route{Wikis: []string{"enwiki"}, Namespaces: []int{0}, Rules: []string{"blanking"}, MinSeverity: "medium", MinScore: 0.8}, "l", "#x", true},
		{"severity too low", Route{MinSeverity: "high"}, "l", "#x", false},
		{"score too low", Route{MinScore: 0.9}, "l", "#x", false},
		{"other namespace", Route{Namespaces: []int{2}}, "l", "#x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.route.Matches(a, tt.network, tt.channel))
		})
	}
}

func TestNewOptions(t *testing.T) {
	cfg, err := ParseConfig([]byte("networks:\n  - {name: n, host: h, nick: bot, channels: [{name: '#c'}]}\n"))
	require.NoError(t, err)
	tests := []struct {
		name    string
		opt     Option
		wantErr error
	}{
		{"flood", WithFlood(5, 10), nil},
		{"zero rate", WithFlood(0, 10), actions.ErrInvalidOption},
		{"zero burst", WithFlood(5, 0), actions.ErrInvalidOption},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(pipeline.Deps{}, cfg, tc.opt)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, 5.0, w.cfg.Networks[0].Flood.Rate)
			require.Equal(t, 10, w.cfg.Networks[0].Flood.Burst)
		})
	}
}
