// Package pipeline owns everything NATS: the embedded server, connections,
// the stream, subject and KV definitions shared by every stage (streams.go,
// subjects.go, kv.go), the stage contract (Deps, Stage) and the generic
// consume→handle→ack stage runner. Other packages never name a stream,
// subject or bucket directly. The ops HTTP endpoint is package ops.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream, subject and bucket names: the contracts between stages (DESIGN.md §4).
const (
	StreamRecentChange = "RECENTCHANGE"
	StreamAlerts       = "ALERTS"
	StreamDeadLetter   = "DEADLETTER"
	StreamAudit        = "AUDIT"

	BucketIngest  = "ingest"
	BucketActions = "actions"
	BucketRules   = "rules"
	// BucketFeedClaims holds the patroller feed's claims ("on it", "done"),
	// key claim.<alert stream sequence>, each with a per-key TTL.
	BucketFeedClaims = "feed-claims"
	// BucketQuality holds the rules stage's self-measurement (rules/quality):
	// key p.<hash of wiki and title> = the page's alerted edits and recent
	// reverts, with a per-key TTL of the revert window.
	BucketQuality = "quality"

	// HeaderEventTime carries meta.dt on RECENTCHANGE messages.
	HeaderEventTime = "Rc-Event-Time"
	// HeaderReason carries the reason on a dead-letter message.
	HeaderReason = "Rc-Dead-Letter-Reason"
	// HeaderSource names the stage (and position) a dead letter came from.
	HeaderSource = "Rc-Dead-Letter-Source"
)

// Topology sizes the streams; Replicas is 1 for the embedded server and 3 in a cluster.
type Topology struct {
	Replicas int
	Storage  jetstream.StorageType
	// Limits overrides DefaultLimits by stream name; a zero field keeps the
	// default. Ensure applies an override to an existing stream, and a
	// default only to an existing stream that has no such limit, so stages
	// started without flags do not undo an operator's setting.
	Limits map[string]Limits
}

// Limits bound one stream's history: when either is reached the oldest
// messages go (DiscardOld), so a publish never fails for want of room.
type Limits struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// The live rate of Wikimedia's recentchange stream (measured 2024–2026):
// about 3 million events a day of about 1.4 KB each, some 4.2 GB a day.
const (
	LiveEventsPerDay = 3_000_000
	LiveEventBytes   = 1400
)

// DefaultLimits is 1 GiB across every stream and bucket (KV buckets are
// bounded in KeyValueConfigs): RECENTCHANGE keeps 700 MiB, about 4 hours at
// the live rate; alerts, dead letters and the audit trail are far sparser
// and keep weeks within their share.
func DefaultLimits() map[string]Limits {
	return map[string]Limits{
		StreamRecentChange: {MaxAge: 7 * 24 * time.Hour, MaxBytes: 700 << 20},
		StreamAlerts:       {MaxAge: 30 * 24 * time.Hour, MaxBytes: 128 << 20},
		StreamDeadLetter:   {MaxAge: 30 * 24 * time.Hour, MaxBytes: 64 << 20},
		StreamAudit:        {MaxAge: 90 * 24 * time.Hour, MaxBytes: 64 << 20},
	}
}

// MinStreamBytes is the smallest byte limit accepted: below it a stream
// could not hold one event at the largest size ingest stores.
const MinStreamBytes = 64 << 10

// ErrInvalidLimits is returned by Validate for a limit that cannot work.
var ErrInvalidLimits = errors.New("invalid stream limits")

// Limit is the effective limit of a stream: the override, else the default.
func (t Topology) Limit(stream string) Limits {
	l := DefaultLimits()[stream]
	if o, ok := t.Limits[stream]; ok {
		if o.MaxAge > 0 {
			l.MaxAge = o.MaxAge
		}
		if o.MaxBytes > 0 {
			l.MaxBytes = o.MaxBytes
		}
	}
	return l
}

// Validate refuses overrides of unknown streams and limits that cannot
// work: a negative value, fewer than MinStreamBytes, or an age shorter than
// the stream's duplicate window (dedup needs the window's messages).
func (t Topology) Validate() error {
	defaults := DefaultLimits()
	var errs []error
	for name, o := range t.Limits {
		if _, ok := defaults[name]; !ok {
			errs = append(errs, fmt.Errorf("%w: unknown stream %q (streams: %s, %s, %s, %s)", ErrInvalidLimits,
				name, StreamRecentChange, StreamAlerts, StreamDeadLetter, StreamAudit))
			continue
		}
		if o.MaxBytes < 0 || o.MaxBytes > 0 && o.MaxBytes < MinStreamBytes {
			errs = append(errs, fmt.Errorf("%w: %s max bytes %d, want at least %d", ErrInvalidLimits, name, o.MaxBytes, MinStreamBytes))
		}
		if o.MaxAge < 0 {
			errs = append(errs, fmt.Errorf("%w: %s max age %v is negative", ErrInvalidLimits, name, o.MaxAge))
		}
	}
	for _, c := range t.StreamConfigs() {
		if c.MaxAge < c.Duplicates {
			errs = append(errs, fmt.Errorf("%w: %s max age %v is shorter than its duplicate window %v",
				ErrInvalidLimits, c.Name, c.MaxAge, c.Duplicates))
		}
	}
	return errors.Join(errs...)
}

// DefaultTopology is the single-node file-storage layout of `rcwatch run`.
func DefaultTopology() Topology { return Topology{Replicas: 1, Storage: jetstream.FileStorage} }

// RecentChangeSubject is rc.<wiki>.<type>. Tokens are sanitised so a hostile
// wiki or type can never add subject levels or wildcards.
func RecentChangeSubject(wiki, typ string) string {
	return "rc." + SubjectToken(wiki) + "." + SubjectToken(typ)
}

// AlertSubject is alert.<wiki>.<rule-id>.
func AlertSubject(wiki, ruleID string) string {
	return "alert." + SubjectToken(wiki) + "." + SubjectToken(ruleID)
}

// AlertFilterSubjects returns the filter subjects of the alerts of the
// given wikis and rules (alert.<wiki>.<rule>, a '*' token for an empty
// side), or nil for every alert. It returns nil too when the product would
// exceed 64 subjects: the caller then filters in memory.
func AlertFilterSubjects(wikis, rules []string) []string {
	if len(wikis) == 0 && len(rules) == 0 || max(len(wikis), 1)*max(len(rules), 1) > 64 {
		return nil
	}
	ws, rs := tokensOrStar(wikis), tokensOrStar(rules)
	out := make([]string, 0, len(ws)*len(rs))
	for _, w := range ws {
		for _, r := range rs {
			out = append(out, "alert."+w+"."+r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// RecentChangeFilterSubjects returns the filter subjects of the events of
// the given types on the given wikis (rc.<wiki>.<type>, '*' for an empty side).
func RecentChangeFilterSubjects(wikis, types []string) []string {
	ws, ts := tokensOrStar(wikis), tokensOrStar(types)
	out := make([]string, 0, len(ws)*len(ts))
	for _, w := range ws {
		for _, t := range ts {
			out = append(out, "rc."+w+"."+t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func tokensOrStar(in []string) []string {
	if len(in) == 0 {
		return []string{"*"}
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = SubjectToken(s)
	}
	return out
}

// DeadLetterSubject is dlq.<stage>.
func DeadLetterSubject(stage string) string { return "dlq." + SubjectToken(stage) }

// AuditSubject is audit.<stage>.<wiki>: what an action did or would do.
func AuditSubject(stage, wiki string) string {
	return "audit." + SubjectToken(stage) + "." + SubjectToken(wiki)
}

// SubjectToken maps s to a single, wildcard-free subject token: characters
// outside [A-Za-z0-9_-] become '_', and an empty token becomes "unknown".
func SubjectToken(s string) string {
	if s == "" {
		return "unknown"
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i := range b {
		if !tokenByte(b[i]) {
			b[i] = '_'
		}
	}
	return string(b)
}

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// RecentChangeDuplicates is the duplicate window of RECENTCHANGE (see
// StreamConfigs): twice ingest's longest reconnect backoff.
const RecentChangeDuplicates = 2 * time.Minute

// StreamConfigs returns the streams every stage ensures at start, each
// bounded by its Limit with DiscardOld.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	cfgs := []jetstream.StreamConfig{
		{
			Name: StreamRecentChange, Subjects: []string{"rc.>"}, Retention: jetstream.LimitsPolicy,
			// The duplicate window is what re-sends need: a restart re-reads
			// about a second (the position is stored every second), a
			// replica resumes from its own last id after at most its reconnect
			// backoff (60s). JetStream keeps ~160 B per id for the window, so
			// 20 minutes cost 190 MB at 1,000 ev/s; 2 minutes cost 19 MB.
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: RecentChangeDuplicates,
			Discard: jetstream.DiscardOld, MaxMsgSize: 4 << 20,
		},
		{
			Name: StreamAlerts, Subjects: []string{"alert.>"}, Retention: jetstream.LimitsPolicy,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 20 * time.Minute,
			Discard: jetstream.DiscardOld,
		},
		{
			Name: StreamDeadLetter, Subjects: []string{"dlq.>"}, Retention: jetstream.LimitsPolicy,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 2 * time.Minute,
			Discard: jetstream.DiscardOld, MaxMsgSize: 4 << 20,
		},
		{
			Name: StreamAudit, Subjects: []string{"audit.>"}, Retention: jetstream.LimitsPolicy,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 20 * time.Minute,
			Discard: jetstream.DiscardOld,
		},
	}
	for i := range cfgs {
		l := t.Limit(cfgs[i].Name)
		cfgs[i].MaxAge, cfgs[i].MaxBytes, cfgs[i].Discard = l.MaxAge, l.MaxBytes, jetstream.DiscardOld
	}
	return cfgs
}

// KeyValueConfigs returns the KV buckets every stage ensures at start. Their
// byte limits (67 MiB together) are for new buckets: entries expire by TTL
// or are replaced (history 1), so they stay far below; a full bucket refuses
// a write (KV discards new) rather than lose a key. Existing buckets are
// not changed.
func (t Topology) KeyValueConfigs() []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketIngest, History: 1, Storage: t.Storage, Replicas: t.Replicas, MaxBytes: 1 << 20,
			Description: "ingest resume positions: key position.<stream> = raw SSE id"},
		{Bucket: BucketActions, History: 1, Storage: t.Storage, Replicas: t.Replicas, MaxBytes: 32 << 20,
			LimitMarkerTTL: time.Minute,
			Description:    "rate-limit buckets, revert memory, leases, idempotency keys (per-key TTL)"},
		{Bucket: BucketRules, History: 1, Storage: t.Storage, Replicas: t.Replicas, MaxBytes: 16 << 20,
			LimitMarkerTTL: time.Minute,
			Description:    "rule lists (watched pages, bad words, trusted users) with optional expiry; mutes"},
		{Bucket: BucketFeedClaims, History: 1, Storage: t.Storage, Replicas: t.Replicas, MaxBytes: 8 << 20,
			TTL: 7 * 24 * time.Hour, LimitMarkerTTL: time.Minute, MaxValueSize: 1024,
			Description: "patroller feed claims: key claim.<alert seq> = {id,state,name,at} (per-key TTL)"},
		{Bucket: BucketQuality, History: 1, Storage: t.Storage, Replicas: t.Replicas, MaxBytes: 10 << 20,
			LimitMarkerTTL: time.Minute, MaxValueSize: 16 << 10,
			Description: "rules self-measurement: key p.<page hash> = alerted edits and reverts of the page (per-key TTL: the revert window)"},
	}
}

// ErrConfigDrift is returned by Ensure when an existing stream's
// configuration differs from what the code needs. Ensure never changes it.
var ErrConfigDrift = errors.New("stream config drift")

// Ensure creates the streams and KV buckets idempotently. An existing stream
// whose essential settings differ is reported with ErrConfigDrift naming each
// difference; it is not silently updated. Its limits are updated: to an
// override of t.Limits when it differs, to the default when the stream has
// none (unbounded, or DiscardNew, which would fail publishes when full).
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if err := t.Validate(); err != nil {
		return err
	}
	for _, want := range t.StreamConfigs() {
		if err := ensureStream(ctx, js, want, t.Limits[want.Name]); err != nil {
			return err
		}
	}
	for _, kv := range t.KeyValueConfigs() {
		if _, err := js.KeyValue(ctx, kv.Bucket); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("looking up KV bucket %s: %w", kv.Bucket, err)
		}
		if _, err := js.CreateKeyValue(ctx, kv); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("creating KV bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, override Limits) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("creating stream %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if diffs := StreamDrift(want, have); len(diffs) > 0 {
		return fmt.Errorf("%w: stream %s: %s (fix or delete the stream; rcwatch does not change it)",
			ErrConfigDrift, want.Name, strings.Join(diffs, "; "))
	}
	if upd, changed := LimitUpdate(want, have, override); changed {
		if _, err := js.UpdateStream(ctx, upd); err != nil {
			return fmt.Errorf("updating the limits of stream %s (max bytes %d, max age %v): %w",
				want.Name, upd.MaxBytes, upd.MaxAge, err)
		}
	}
	return nil
}

// LimitUpdate returns have with the limits it should get and whether any
// changed: an override (non-zero field) that differs, the wanted limit where
// have has none, and DiscardOld.
func LimitUpdate(want, have jetstream.StreamConfig, override Limits) (jetstream.StreamConfig, bool) {
	upd := have
	if override.MaxBytes > 0 || have.MaxBytes <= 0 {
		upd.MaxBytes = want.MaxBytes
	}
	if override.MaxAge > 0 || have.MaxAge <= 0 {
		upd.MaxAge = want.MaxAge
	}
	upd.Discard = jetstream.DiscardOld
	if upd.MaxAge > 0 && upd.Duplicates > upd.MaxAge {
		upd.Duplicates = min(want.Duplicates, upd.MaxAge)
	}
	changed := upd.MaxBytes != have.MaxBytes || upd.MaxAge != have.MaxAge ||
		upd.Discard != have.Discard || upd.Duplicates != have.Duplicates
	return upd, changed
}

// StreamDrift lists the essential differences between the wanted and the
// existing config. Settings an operator may tune (MaxAge, MaxBytes, Replicas)
// are only reported when they would break a guarantee: a duplicate window
// shorter than wanted breaks dedup.
func StreamDrift(want, have jetstream.StreamConfig) []string {
	var d []string
	if !slices.Equal(want.Subjects, have.Subjects) {
		d = append(d, fmt.Sprintf("subjects %v, want %v", have.Subjects, want.Subjects))
	}
	if want.Retention != have.Retention {
		d = append(d, fmt.Sprintf("retention %v, want %v", have.Retention, want.Retention))
	}
	if want.Storage != have.Storage {
		d = append(d, fmt.Sprintf("storage %v, want %v", have.Storage, want.Storage))
	}
	if have.Duplicates < want.Duplicates {
		d = append(d, fmt.Sprintf("duplicate window %v, want at least %v", have.Duplicates, want.Duplicates))
	}
	if want.MaxMsgSize > 0 && have.MaxMsgSize > 0 && have.MaxMsgSize < want.MaxMsgSize {
		d = append(d, fmt.Sprintf("max message size %d, want at least %d", have.MaxMsgSize, want.MaxMsgSize))
	}
	return d
}
