package edit

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrInvalidConfig is wrapped by every edit worker configuration error.
var ErrInvalidConfig = errors.New("invalid edit configuration")

// Edit operations a rule can ask for with "edit:<operation>" in its actions.
const (
	OpTag    = "tag"
	OpReport = "report"
	OpRevert = "revert"
)

// Config is the configuration of the edit worker (docs/EDIT.md).
type Config struct {
	// Live makes real edits; false (the default) is dry-run: every change
	// is logged and published to the audit subject, and none is made.
	Live bool `yaml:"live"`
	// RatePerMinute is the edit budget of one bot account, shared by every
	// replica through NATS KV (default 6, pywikibot's 10-second put throttle).
	RatePerMinute float64 `yaml:"rate_per_minute"`
	// MaxHold is the longest a handler waits in-process for its budget slot;
	// beyond it the alert is redelivered when the slot is near (default 30s).
	MaxHold time.Duration `yaml:"max_hold"`
	// KillSwitchInterval is how often the kill switch page and the bot's talk
	// page are read (at most; default 60s). They are always read before the
	// first edit.
	KillSwitchInterval time.Duration `yaml:"kill_switch_interval"`
	// MaxAlertAge skips alerts detected longer ago than this (default 1h;
	// negative: never).
	MaxAlertAge time.Duration `yaml:"max_alert_age"`
	// RevertMemory is how long a reverted (page, user) pair is not reverted
	// again (default 24h).
	RevertMemory time.Duration `yaml:"revert_memory"`
	// IdempotencyTTL is how long an alert's done operations are remembered
	// (default 31 days: longer than the ALERTS stream keeps an alert).
	IdempotencyTTL time.Duration `yaml:"idempotency_ttl"`
	// ClaimTTL is how long one replica owns an alert's operation while it
	// edits; a replica that died mid-edit is taken over after it (default 2m).
	ClaimTTL time.Duration `yaml:"claim_ttl"`
	// ReadOnlyWait is the redelivery delay when the wiki is read-only
	// (default 60s); ErrorWait after other transient failures (default 30s).
	ReadOnlyWait time.Duration `yaml:"read_only_wait"`
	ErrorWait    time.Duration `yaml:"error_wait"`
	// Workers is the number of alerts handled concurrently (default 2).
	Workers int `yaml:"workers"`
	// AckWait of the "edit" consumer; a handler waiting for its slot reports
	// progress (default 60s).
	AckWait time.Duration `yaml:"ack_wait"`
	// Wikis maps an alert's wiki (event "wiki", e.g. enwiki) to its settings.
	// Alerts of other wikis are skipped.
	Wikis map[string]*WikiConfig `yaml:"wikis"`
}

// WikiConfig is what the worker may do on one wiki.
type WikiConfig struct {
	// APIURL is the wiki's api.php.
	APIURL string `yaml:"api_url"`
	// Account is the bot's user name (for {{bots}}, the talk page, the
	// budget key and BotPassword login).
	Account string `yaml:"account"`
	// AppID is the BotPassword app id (login name Account@AppID).
	AppID string `yaml:"app_id"`
	// UserAgent is sent on every request (a contact address is required on
	// Wikimedia wikis).
	UserAgent string `yaml:"user_agent"`
	// AllowInsecureAuth lets credentials go to a plain http:// api_url on a
	// host that is not loopback: only for a test wiki on a private network.
	// Off (the default), such a configuration is refused.
	AllowInsecureAuth bool `yaml:"allow_insecure_auth"`
	// Assert is "bot" (default) or "user".
	Assert string `yaml:"assert"`
	// Operations enabled on this wiki (tag, report, revert); others are
	// skipped with reason "disabled".
	Operations []string `yaml:"operations"`
	// KillSwitchPage must read "true" for any edit (default User:<Account>/Run).
	KillSwitchPage string `yaml:"kill_switch_page"`
	// TalkPageStop stops editing when someone else leaves a message on the
	// bot's talk page, until an operator resets it (default true).
	TalkPageStop *bool `yaml:"talk_page_stop"`
	// OptOutName is the message type matched against {{bots|optout=…}}
	// (default "rcwatch"); "all" always opts out.
	OptOutName string `yaml:"optout_name"`
	// Summary is the edit summary template; placeholders: {op} {rule}
	// {rule_version} {user} {title} {score} {severity} {marker} {fp_page}.
	// It must contain {marker} (how a restarted worker recognises its own
	// edit). Default: see DefaultSummary.
	Summary string `yaml:"summary"`
	// FalsePositivePage is where false positives are reported (the {fp_page}
	// link in summaries); default User talk:<Account>.
	FalsePositivePage string `yaml:"false_positive_page"`
	// ChangeTags are added to every edit (they must exist on the wiki).
	ChangeTags []string     `yaml:"change_tags"`
	Tag        TagConfig    `yaml:"tag"`
	Report     ReportConfig `yaml:"report"`
	Revert     RevertConfig `yaml:"revert"`
}

// TagConfig configures the tag operation.
type TagConfig struct {
	// Template is added by default, e.g. "{{Update|date={month} {year}}}";
	// {month} and {year} are the current month name and year.
	Template string `yaml:"template"`
	// Rules overrides Template per rule id.
	Rules map[string]string `yaml:"rules"`
	// Position is "top" (default) or "bottom".
	Position string `yaml:"position"`
	// Namespaces that may be tagged (default [0], articles).
	Namespaces []int `yaml:"namespaces"`
	// Memory is how long a tagged (page, template) is never tagged again,
	// even if someone removed the template (default 90 days).
	Memory time.Duration `yaml:"memory"`
}

// ReportConfig configures the report operation.
type ReportConfig struct {
	// Page is the noticeboard the line is appended to.
	Page string `yaml:"page"`
	// Line is the line template; placeholders as in Summary plus {diff}
	// {reasons} {user_link}. Default: DefaultReportLine.
	Line string `yaml:"line"`
	// Memory is how long a (user, page) pair is not reported again
	// (default 24h); a line already on the page is never added twice.
	Memory time.Duration `yaml:"memory"`
}

// RevertConfig configures the revert operation.
type RevertConfig struct {
	// Method is "auto" (rollback when the bot has the right, else undo),
	// "rollback" or "undo" (default auto).
	Method string `yaml:"method"`
	// MarkBot marks a rollback (and the reverted edits) as bot edits
	// (default true: the rollback is otherwise not flagged bot).
	MarkBot *bool `yaml:"mark_bot"`
	// TrustedGroups: revisions by members are never reverted or reported
	// (default sysop, bot, rollbacker, autoreviewer, extendedconfirmed).
	TrustedGroups []string `yaml:"trusted_groups"`
	// TrustedUsers: names never reverted or reported.
	TrustedUsers []string `yaml:"trusted_users"`
}

// DefaultSummary names the operation, the rule, a marker the worker
// finds its own edits by, and where to report a false positive.
const DefaultSummary = "rcwatch {op}: rule {rule} ({marker}). Wrong? Report at [[{fp_page}]]"

// DefaultReportLine is the default report line.
const DefaultReportLine = "* {user_link} on [[:{title}]]: rule {rule} (score {score}; {reasons}) {diff} ~~~~~"

// DefaultConfig returns the defaults every config starts from.
func DefaultConfig() Config {
	return Config{
		RatePerMinute:      6,
		MaxHold:            30 * time.Second,
		KillSwitchInterval: 60 * time.Second,
		MaxAlertAge:        time.Hour,
		RevertMemory:       24 * time.Hour,
		IdempotencyTTL:     31 * 24 * time.Hour,
		ClaimTTL:           2 * time.Minute,
		ReadOnlyWait:       time.Minute,
		ErrorWait:          30 * time.Second,
		Workers:            2,
		AckWait:            time.Minute,
	}
}

// LoadConfig reads a YAML file strictly (unknown keys fail), applies
// the defaults and validates.
func LoadConfig(file string) (Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("reading edit config %s: %w", file, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("edit config %s: %w", file, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML over DefaultConfig strictly and validates.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	if err := cfg.checkBounds(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// loopbackURL reports whether u's host is loopback (a local test wiki).
func loopbackURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := pu.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkBounds refuses the absurd values of a configuration file
// (rate_per_minute: 100000, a claim that outlives a day…). It is applied
// by ParseConfig, after the defaults; a Config built in Go (tests that run
// a wiki at test speed) is only checked by Validate.
func (c *Config) checkBounds() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	const day = 24 * time.Hour
	switch {
	case c.RatePerMinute < 0.1 || c.RatePerMinute > 6000:
		bad("rate_per_minute %v: between 0.1 and 60 (up to 6000 when every wiki is a test wiki on loopback)", c.RatePerMinute)
	case c.RatePerMinute > 60:
		for name, w := range c.Wikis {
			if w != nil && !loopbackURL(w.APIURL) {
				bad("rate_per_minute %v: at most 60 (one edit a second) with wiki %s not on loopback; Wikimedia bots usually make a few a minute", c.RatePerMinute, name)
			}
		}
	}
	dur := func(key string, v, lo, hi time.Duration) {
		if v < lo || v > hi {
			bad("%s %v: between %v and %v", key, v, lo, hi)
		}
	}
	dur("max_hold", c.MaxHold, time.Second, 10*time.Minute)
	dur("kill_switch_interval", c.KillSwitchInterval, time.Second, time.Hour)
	if c.MaxAlertAge > 0 { // negative: never
		dur("max_alert_age", c.MaxAlertAge, time.Minute, 30*day)
	}
	dur("revert_memory", c.RevertMemory, time.Minute, 365*day)
	dur("idempotency_ttl", c.IdempotencyTTL, time.Hour, 365*day)
	dur("claim_ttl", c.ClaimTTL, time.Second, time.Hour)
	dur("read_only_wait", c.ReadOnlyWait, time.Second, time.Hour)
	dur("error_wait", c.ErrorWait, time.Second, time.Hour)
	dur("ack_wait", c.AckWait, time.Second, 10*time.Minute)
	if c.Workers < 1 || c.Workers > 64 {
		bad("workers %d: between 1 and 64 (the edit budget, not workers, sets the pace)", c.Workers)
	}
	for name, w := range c.Wikis {
		if w == nil {
			continue
		}
		if w.Tag.Memory < time.Hour || w.Tag.Memory > 10*365*day {
			bad("wiki %s: tag.memory %v: between 1h and 87600h", name, w.Tag.Memory)
		}
		if w.Report.Memory < time.Minute || w.Report.Memory > 365*day {
			bad("wiki %s: report.memory %v: between 1m and 8760h", name, w.Report.Memory)
		}
		for _, ns := range w.Tag.Namespaces {
			if ns < 0 {
				bad("wiki %s: tag.namespaces: %d is a virtual namespace (Special/Media), never editable", name, ns)
			}
		}
	}
	return errors.Join(errs...)
}

// Validate fills per-wiki defaults and checks the configuration.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.RatePerMinute == 0 {
		c.RatePerMinute = d.RatePerMinute
	}
	for _, p := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.MaxHold, d.MaxHold}, {&c.KillSwitchInterval, d.KillSwitchInterval}, {&c.RevertMemory, d.RevertMemory},
		{&c.IdempotencyTTL, d.IdempotencyTTL}, {&c.ClaimTTL, d.ClaimTTL}, {&c.ReadOnlyWait, d.ReadOnlyWait},
		{&c.ErrorWait, d.ErrorWait}, {&c.AckWait, d.AckWait}} {
		if *p.v == 0 {
			*p.v = p.def
		}
	}
	if c.MaxAlertAge == 0 {
		c.MaxAlertAge = d.MaxAlertAge
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.RatePerMinute < 0 || c.Workers < 0 || c.MaxHold < 0 || c.KillSwitchInterval < 0 || c.RevertMemory < 0 ||
		c.IdempotencyTTL < 0 || c.ClaimTTL < 0 || c.ReadOnlyWait < 0 || c.ErrorWait < 0 || c.AckWait < 0 {
		return fmt.Errorf("%w: negative rate, workers or duration (0 takes the default)", ErrInvalidConfig)
	}
	if len(c.Wikis) == 0 {
		return fmt.Errorf("%w: no wikis configured", ErrInvalidConfig)
	}
	var errs []error
	for name, w := range c.Wikis {
		if w == nil {
			errs = append(errs, fmt.Errorf("%w: wiki %s: empty", ErrInvalidConfig, name))
			continue
		}
		if err := w.validate(c); err != nil {
			errs = append(errs, fmt.Errorf("wiki %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (w *WikiConfig) validate(c *Config) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	if !strings.HasPrefix(w.APIURL, "http://") && !strings.HasPrefix(w.APIURL, "https://") {
		return bad("api_url %q is not an http(s) URL", w.APIURL)
	}
	if strings.TrimSpace(w.Account) == "" {
		return bad("account (the bot's user name) is required")
	}
	w.Account = normalizeTitlePart(w.Account)
	switch w.Assert {
	case "":
		w.Assert = "bot"
	case "bot", "user":
	default:
		return bad("assert %q: want bot or user", w.Assert)
	}
	for _, op := range w.Operations {
		if !slices.Contains([]string{OpTag, OpReport, OpRevert}, op) {
			return bad("unknown operation %q (want tag, report or revert)", op)
		}
	}
	if w.KillSwitchPage == "" {
		w.KillSwitchPage = "User:" + w.Account + "/Run"
	}
	if w.TalkPageStop == nil {
		t := true
		w.TalkPageStop = &t
	}
	if w.OptOutName == "" {
		w.OptOutName = "rcwatch"
	}
	if w.FalsePositivePage == "" {
		w.FalsePositivePage = "User talk:" + w.Account
	}
	if w.Summary == "" {
		w.Summary = DefaultSummary
	}
	if !strings.Contains(w.Summary, "{marker}") {
		return bad("summary must contain {marker} (a restarted worker recognises its own edits by it)")
	}
	if slices.Contains(w.Operations, OpTag) {
		if w.Tag.Template == "" && len(w.Tag.Rules) == 0 {
			return bad("tag is enabled but tag.template and tag.rules are empty")
		}
		for _, t := range append([]string{w.Tag.Template}, mapValues(w.Tag.Rules)...) {
			if t != "" && templateName(t) == "" {
				return bad("tag template %q does not start with {{Name", t)
			}
		}
	}
	switch w.Tag.Position {
	case "":
		w.Tag.Position = "top"
	case "top", "bottom":
	default:
		return bad("tag.position %q: want top or bottom", w.Tag.Position)
	}
	if len(w.Tag.Namespaces) == 0 {
		w.Tag.Namespaces = []int{0}
	}
	if w.Tag.Memory <= 0 {
		w.Tag.Memory = 90 * 24 * time.Hour
	}
	if slices.Contains(w.Operations, OpReport) && strings.TrimSpace(w.Report.Page) == "" {
		return bad("report is enabled but report.page is empty")
	}
	if w.Report.Line == "" {
		w.Report.Line = DefaultReportLine
	}
	if w.Report.Memory <= 0 {
		w.Report.Memory = 24 * time.Hour
	}
	switch w.Revert.Method {
	case "":
		w.Revert.Method = "auto"
	case "auto", "rollback", "undo":
	default:
		return bad("revert.method %q: want auto, rollback or undo", w.Revert.Method)
	}
	if w.Revert.MarkBot == nil {
		t := true
		w.Revert.MarkBot = &t
	}
	if w.Revert.TrustedGroups == nil {
		w.Revert.TrustedGroups = []string{"sysop", "bot", "rollbacker", "autoreviewer", "extendedconfirmed"}
	}
	_ = c
	return nil
}

func (w *WikiConfig) enabled(op string) bool { return slices.Contains(w.Operations, op) }

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Credentials authenticate the bot: an OAuth 2 owner-only access token
// (preferred) or a BotPassword secret. They never come from a flag and are
// never logged or formatted.
type Credentials struct {
	oauthToken  string
	botPassword string
}

// String never shows a secret.
func (c Credentials) String() string {
	switch {
	case c.oauthToken != "":
		return "Credentials(oauth2, redacted)"
	case c.botPassword != "":
		return "Credentials(botpassword, redacted)"
	}
	return "Credentials(none)"
}

// GoString never shows a secret.
func (c Credentials) GoString() string { return c.String() }

// Kind is "oauth2", "botpassword" or "" (none).
func (c Credentials) Kind() string {
	switch {
	case c.oauthToken != "":
		return "oauth2"
	case c.botPassword != "":
		return "botpassword"
	}
	return ""
}

// Environment variables the credentials are read from.
const (
	EnvOAuthToken  = "RCWATCH_EDIT_OAUTH_TOKEN"
	EnvBotPassword = "RCWATCH_EDIT_BOT_PASSWORD"
)

// LoadCredentials reads the credentials: from the files when named (a
// mounted Kubernetes Secret), else from the environment variables
// RCWATCH_EDIT_OAUTH_TOKEN and RCWATCH_EDIT_BOT_PASSWORD (getenv is
// os.Getenv outside tests). The OAuth token wins when both are set. Errors
// name the source, never the value.
func LoadCredentials(getenv func(string) string, oauthTokenFile, botPasswordFile string) (Credentials, error) {
	read := func(file string) (string, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading credentials file %s: %w", file, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%w: credentials file %s is empty", ErrInvalidConfig, file)
		}
		return v, nil
	}
	var c Credentials
	var err error
	if oauthTokenFile != "" {
		if c.oauthToken, err = read(oauthTokenFile); err != nil {
			return Credentials{}, err
		}
	} else {
		c.oauthToken = strings.TrimSpace(getenv(EnvOAuthToken))
	}
	if botPasswordFile != "" {
		if c.botPassword, err = read(botPasswordFile); err != nil {
			return Credentials{}, err
		}
	} else {
		c.botPassword = strings.TrimSpace(getenv(EnvBotPassword))
	}
	return c, nil
}
