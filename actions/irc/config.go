package irc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rcwatch/rcwatch/event"
)

// ErrInvalidConfig is wrapped by every IRC configuration error.
var ErrInvalidConfig = errors.New("invalid IRC configuration")

// Config is the configuration of the IRC worker (docs/IRC.md).
type Config struct {
	// ReplicaID names this replica in leases and !status (default:
	// hostname-pid).
	ReplicaID string `yaml:"replica_id"`
	// LeaseTTL is how long a channel lease lives without renewal: the time
	// another replica needs to take over from a dead one (default 10s).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// IdempotencyTTL is how long a sent (alert, channel) pair is remembered
	// (default 72h).
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// AckWait of the channel consumers; a handler waiting in the flood queue
	// reports progress every AckWait/3 (default 10s).
	AckWait time.Duration `yaml:"ack_wait"`
	// MaxAlertAge drops (and counts) alerts detected longer ago than this,
	// e.g. after a long outage (0: never).
	MaxAlertAge time.Duration `yaml:"max_alert_age"`
	// MaxMute caps the duration of !mute (default 7 days).
	MaxMute time.Duration `yaml:"max_mute"`
	// BacklogFold folds a channel's backlog in the ALERTS consumer into
	// per-(rule, wiki) digest lines when the channel cannot keep up.
	BacklogFold BacklogFoldConfig `yaml:"backlog_fold"`
	Networks    []NetworkConfig   `yaml:"networks"`
}

// BacklogFoldConfig says when a channel is behind: the consumer has more
// than Pending alerts waiting after the one in hand, or the alert in hand
// entered ALERTS more than Age ago. Alerts handled while behind are counted
// into one digest line per (rule, wiki) instead of lines of their own.
type BacklogFoldConfig struct {
	// Off disables folding from the backlog.
	Off bool `yaml:"off"`
	// Age of the alert in hand (since it was stored in ALERTS) beyond
	// which the channel is behind (default 10s).
	Age time.Duration `yaml:"age"`
	// Pending alerts in the channel's consumer beyond which the channel is
	// behind (default 20: 10 s of lines at 2 lines/s).
	Pending int `yaml:"pending"`
	// FeedURL is the patroller feed's base URL (docs/FEED.md); a backlog
	// digest links to it filtered by rule and wiki. Empty: no link.
	FeedURL string `yaml:"feed_url"`
}

// NetworkConfig is one IRC connection.
type NetworkConfig struct {
	Name     string `yaml:"name"`
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
	TLS      bool   `yaml:"tls"`
	Insecure bool   `yaml:"tls_insecure_skip_verify"`
	Nick     string `yaml:"nick"`
	User     string `yaml:"user"`
	RealName string `yaml:"realname"`
	// SASL PLAIN account; the password comes from a secret.
	SASLUser     string `yaml:"sasl_user"`
	SASLPassword Secret `yaml:"sasl_password"`
	// ServerPassword is sent with PASS before registration.
	ServerPassword Secret `yaml:"server_password"`
	// HostLen bounds the length of the host part of our prefix as the server
	// relays it, for the 512-byte limit (default 64).
	HostLen int            `yaml:"host_len"`
	Flood   FloodConfig    `yaml:"flood"`
	Control *ControlConfig `yaml:"control"`
	// Channels that receive alerts.
	Channels []ChannelConfig `yaml:"channels"`
	// ReconnectMin and ReconnectMax bound the reconnect backoff (default 1s, 1m).
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

// Secret names where a password comes from: an environment variable or a
// file. The value itself never appears in a config file, a flag or a log.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

// IsSet reports whether a source is configured.
func (s Secret) IsSet() bool { return s.Env != "" || s.File != "" }

// Resolve reads the secret. Errors name the source, never the value.
func (s Secret) Resolve() (string, error) {
	switch {
	case s.Env != "" && s.File != "":
		return "", fmt.Errorf("%w: a secret takes env or file, not both", ErrInvalidConfig)
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("%w: environment variable %s is empty or unset", ErrInvalidConfig, s.Env)
		}
		return v, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("reading secret file %s: %w", s.File, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("%w: secret file %s is empty", ErrInvalidConfig, s.File)
		}
		return v, nil
	}
	return "", nil
}

// FloodConfig is the token bucket of one connection and its backlog.
type FloodConfig struct {
	// Rate in lines per second (default 2) and Burst (default 4).
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// Backlog is how many single lines may wait for a token; beyond it,
	// alerts are folded into digest lines (default 8).
	Backlog int `yaml:"backlog"`
	// MaxDigests bounds the digest lines waiting; beyond it, alerts join a
	// per-channel "other" digest (default 16).
	MaxDigests int `yaml:"max_digests"`
}

// ControlConfig is the control channel of a network.
type ControlConfig struct {
	Channel string `yaml:"channel"`
	// Trusted lists nicks ("alice") or masks with * ("alice!*@wikimedia/*")
	// whose !mute, !unmute and !status are obeyed. A bare nick is only as
	// safe as the network's nick protection: prefer masks with a cloak.
	Trusted []string `yaml:"trusted"`
}

// ChannelConfig is one channel and its routing.
type ChannelConfig struct {
	Name     string `yaml:"name"`
	Plain    bool   `yaml:"plain"`
	ShowWiki bool   `yaml:"show_wiki"`
	Route    Route  `yaml:"route"`
}

// Route says which alerts a channel receives: those whose rule names the
// channel in its actions (irc:#channel or irc:network/#channel) unless
// FromActions is false, and those matching every filter given (when at
// least one filter is set).
type Route struct {
	FromActions *bool    `yaml:"from_actions"`
	Wikis       []string `yaml:"wikis"`
	Namespaces  []int    `yaml:"namespaces"`
	Rules       []string `yaml:"rules"`
	MinSeverity string   `yaml:"min_severity"`
	MinScore    float64  `yaml:"min_score"`
}

func (r Route) fromActions() bool { return r.FromActions == nil || *r.FromActions }

func (r Route) hasFilter() bool {
	return len(r.Wikis) > 0 || len(r.Namespaces) > 0 || len(r.Rules) > 0 || r.MinSeverity != "" || r.MinScore > 0
}

// Matches reports whether alert a goes to channel on network.
func (r Route) Matches(a *event.Alert, network, channel string) bool {
	if r.fromActions() {
		for _, act := range a.Actions {
			target, ok := strings.CutPrefix(act, "irc:")
			if !ok {
				continue
			}
			if n, ch, ok := strings.Cut(target, "/"); ok {
				if strings.EqualFold(n, network) && strings.EqualFold(ch, channel) {
					return true
				}
			} else if strings.EqualFold(target, channel) {
				return true
			}
		}
	}
	if !r.hasFilter() {
		return false
	}
	if len(r.Wikis) > 0 && !slices.Contains(r.Wikis, a.Event.Wiki) {
		return false
	}
	if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, a.Event.Namespace) {
		return false
	}
	if len(r.Rules) > 0 && !slices.Contains(r.Rules, a.Rule.ID) {
		return false
	}
	if r.MinSeverity != "" && event.SeverityRank(a.Severity) < event.SeverityRank(r.MinSeverity) {
		return false
	}
	return a.Score >= r.MinScore
}

// loopbackHost reports whether host is loopback (a local test server).
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultFlood is 2 lines/s with a burst of 4, 8 lines of backlog.
func DefaultFlood() FloodConfig { return FloodConfig{Rate: 2, Burst: 4, Backlog: 8, MaxDigests: 16} }

// LoadConfig reads a YAML file strictly (unknown keys fail), applies the
// defaults and validates.
func LoadConfig(file string) (Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("reading IRC config %s: %w", file, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("IRC config %s: %w", file, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML strictly, applies defaults and validates.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func (c *Config) applyDefaults() {
	if c.ReplicaID == "" {
		h, _ := os.Hostname()
		c.ReplicaID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = 72 * time.Hour
	}
	if c.AckWait == 0 {
		c.AckWait = 10 * time.Second
	}
	if c.MaxMute == 0 {
		c.MaxMute = 7 * 24 * time.Hour
	}
	if c.BacklogFold.Age == 0 {
		c.BacklogFold.Age = 10 * time.Second
	}
	if c.BacklogFold.Pending == 0 {
		c.BacklogFold.Pending = 20
	}
	def := DefaultFlood()
	for i := range c.Networks {
		n := &c.Networks[i]
		if n.Name == "" {
			n.Name = n.Host
		}
		if n.Port == 0 {
			n.Port = 6667
			if n.TLS {
				n.Port = 6697
			}
		}
		if n.User == "" {
			n.User = n.Nick
		}
		if n.RealName == "" {
			n.RealName = "rcwatch alerts"
		}
		if n.HostLen == 0 {
			n.HostLen = 64
		}
		if n.Flood.Rate == 0 {
			n.Flood.Rate = def.Rate
		}
		if n.Flood.Burst == 0 {
			n.Flood.Burst = def.Burst
		}
		if n.Flood.Backlog == 0 {
			n.Flood.Backlog = def.Backlog
		}
		if n.Flood.MaxDigests == 0 {
			n.Flood.MaxDigests = def.MaxDigests
		}
		if n.ReconnectMin == 0 {
			n.ReconnectMin = time.Second
		}
		if n.ReconnectMax == 0 {
			n.ReconnectMax = time.Minute
		}
	}
}

// Validate checks the configuration after defaults.
func (c *Config) Validate() error {
	var errs []string
	add := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if len(c.Networks) == 0 {
		add("no networks")
	}
	if c.LeaseTTL < time.Second {
		add("lease_ttl %v: at least 1s (the KV per-key TTL resolution)", c.LeaseTTL)
	}
	if c.AckWait < time.Second {
		add("ack_wait %v: at least 1s", c.AckWait)
	}
	if c.IdempotencyTTL < time.Minute || c.IdempotencyTTL > 30*24*time.Hour {
		add("idempotency_ttl %v: between 1m and 720h", c.IdempotencyTTL)
	}
	if c.AckWait > 10*time.Minute {
		add("ack_wait %v: at most 10m", c.AckWait)
	}
	if c.LeaseTTL > 10*time.Minute {
		add("lease_ttl %v: at most 10m (a dead poster is replaced only after it)", c.LeaseTTL)
	}
	if c.MaxAlertAge < 0 {
		add("max_alert_age %v: negative (0 turns it off)", c.MaxAlertAge)
	}
	if c.MaxMute < time.Minute || c.MaxMute > 365*24*time.Hour {
		add("max_mute %v: between 1m and 8760h", c.MaxMute)
	}
	if bf := c.BacklogFold; !bf.Off {
		if bf.Age < time.Second || bf.Age > time.Hour {
			add("backlog_fold.age %v: between 1s and 1h", bf.Age)
		}
		if bf.Pending < 1 || bf.Pending > 1_000_000 {
			add("backlog_fold.pending %d: between 1 and 1000000", bf.Pending)
		}
	}
	if u := c.BacklogFold.FeedURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			add("backlog_fold.feed_url %q: not an http(s) URL", u)
		}
	}
	names := map[string]bool{}
	for i, n := range c.Networks {
		where := fmt.Sprintf("networks[%d] (%s)", i, n.Name)
		if n.Host == "" {
			add("%s: host is required", where)
		}
		if names[n.Name] {
			add("%s: duplicate network name", where)
		}
		names[n.Name] = true
		if n.Port < 1 || n.Port > 65535 {
			add("%s: port %d out of range", where, n.Port)
		}
		if n.Nick == "" || strings.ContainsAny(n.Nick, " ,*?!@#:\r\n\x00") {
			add("%s: nick %q is not a valid nick", where, n.Nick)
		}
		if strings.ContainsAny(n.User, " @\r\n\x00") {
			add("%s: user %q is not valid", where, n.User)
		}
		if n.SASLUser != "" && !n.SASLPassword.IsSet() {
			add("%s: sasl_user needs sasl_password (env or file)", where)
		}
		for _, s := range []Secret{n.SASLPassword, n.ServerPassword} {
			if s.Env != "" && s.File != "" {
				add("%s: a secret takes env or file, not both", where)
			}
		}
		if n.Flood.Rate <= 0 || n.Flood.Burst < 1 || n.Flood.Backlog < 1 || n.Flood.MaxDigests < 1 {
			add("%s: flood rate, burst, backlog and max_digests must be positive", where)
		}
		// A local test server (the rehearsal) may take much more than a
		// public network, which disconnects floods (2 lines/s is usual).
		maxRate, maxBurst, maxBacklog := 10.0, 20, 1000
		if loopbackHost(n.Host) {
			maxRate, maxBurst, maxBacklog = 1000, 1000, 100_000
		}
		if n.Flood.Rate > maxRate {
			add("%s: flood rate %v lines/s: at most %v on this host (public networks disconnect floods; 2 is the usual limit)", where, n.Flood.Rate, maxRate)
		}
		if n.Flood.Burst > maxBurst {
			add("%s: flood burst %d: at most %d on this host", where, n.Flood.Burst, maxBurst)
		}
		if n.Flood.Backlog > maxBacklog {
			add("%s: flood backlog %d: at most %d on this host (a longer queue only makes lines later)", where, n.Flood.Backlog, maxBacklog)
		}
		if n.Flood.MaxDigests > 1000 {
			add("%s: flood max_digests %d: at most 1000", where, n.Flood.MaxDigests)
		}
		if n.HostLen < 1 || n.HostLen > 255 {
			add("%s: host_len %d: between 1 and 255", where, n.HostLen)
		}
		if n.ReconnectMax > time.Hour {
			add("%s: reconnect_max %v: at most 1h", where, n.ReconnectMax)
		}
		if n.ReconnectMin <= 0 || n.ReconnectMax < n.ReconnectMin {
			add("%s: reconnect_min must be positive and at most reconnect_max", where)
		}
		chans := map[string]bool{}
		for _, ch := range n.Channels {
			if err := validChannel(ch.Name); err != nil {
				add("%s: %v", where, err)
			}
			key := strings.ToLower(ch.Name)
			if chans[key] {
				add("%s: duplicate channel %s", where, ch.Name)
			}
			chans[key] = true
			r := ch.Route
			if r.MinSeverity != "" && event.SeverityRank(r.MinSeverity) == 0 {
				add("%s: channel %s: unknown min_severity %q", where, ch.Name, r.MinSeverity)
			}
			if !r.fromActions() && !r.hasFilter() {
				add("%s: channel %s: from_actions is false and no filter is set: it would receive nothing", where, ch.Name)
			}
		}
		if n.Control != nil {
			if err := validChannel(n.Control.Channel); err != nil {
				add("%s: control: %v", where, err)
			}
			if chans[strings.ToLower(n.Control.Channel)] {
				add("%s: control channel %s is also an alert channel", where, n.Control.Channel)
			}
			if len(n.Control.Trusted) == 0 {
				add("%s: control: no trusted nicks", where)
			}
			for _, m := range n.Control.Trusted {
				if _, err := path.Match(strings.ToLower(m), "x"); err != nil {
					add("%s: control: bad mask %q", where, m)
				}
			}
		}
		if len(n.Channels) == 0 && n.Control == nil {
			add("%s: no channels", where)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(errs, "; "))
	}
	return nil
}

func validChannel(name string) error {
	if len(name) < 2 || len(name) > 50 || (name[0] != '#' && name[0] != '&') || strings.ContainsAny(name, " ,\x07\r\n\x00") {
		return fmt.Errorf("channel name %q is not valid", name)
	}
	return nil
}
