// Package pipeline owns everything NATS: the embedded server, connections,
// the stream and KV definitions shared by every stage, the generic
// consume→handle→ack stage runner, and the ops HTTP endpoint (/metrics,
// /healthz, /readyz). Other packages never name a stream or bucket directly.
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

// StreamConfigs returns the streams every stage ensures at start.
func (t Topology) StreamConfigs() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name: StreamRecentChange, Subjects: []string{"rc.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: 7 * 24 * time.Hour,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 20 * time.Minute,
			Discard: jetstream.DiscardOld, MaxMsgSize: 4 << 20,
		},
		{
			Name: StreamAlerts, Subjects: []string{"alert.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: 30 * 24 * time.Hour,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 20 * time.Minute,
			Discard: jetstream.DiscardOld,
		},
		{
			Name: StreamDeadLetter, Subjects: []string{"dlq.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: 30 * 24 * time.Hour,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 2 * time.Minute,
			Discard: jetstream.DiscardOld, MaxMsgSize: 4 << 20,
		},
		{
			Name: StreamAudit, Subjects: []string{"audit.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: 90 * 24 * time.Hour,
			Storage: t.Storage, Replicas: t.Replicas, Duplicates: 20 * time.Minute,
			Discard: jetstream.DiscardOld,
		},
	}
}

// KeyValueConfigs returns the KV buckets every stage ensures at start.
func (t Topology) KeyValueConfigs() []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketIngest, History: 1, Storage: t.Storage, Replicas: t.Replicas,
			Description: "ingest resume positions: key position.<stream> = raw SSE id"},
		{Bucket: BucketActions, History: 1, Storage: t.Storage, Replicas: t.Replicas,
			LimitMarkerTTL: time.Minute,
			Description:    "rate-limit buckets, revert memory, leases, idempotency keys (per-key TTL)"},
		{Bucket: BucketRules, History: 1, Storage: t.Storage, Replicas: t.Replicas,
			LimitMarkerTTL: time.Minute,
			Description:    "rule lists (watched pages, bad words, trusted users) with optional expiry; mutes"},
	}
}

// ErrConfigDrift is returned by Ensure when an existing stream's
// configuration differs from what the code needs. Ensure never changes it.
var ErrConfigDrift = errors.New("stream config drift")

// Ensure creates the streams and KV buckets idempotently. An existing stream
// whose essential settings differ is reported with ErrConfigDrift naming each
// difference; it is not silently updated.
func Ensure(ctx context.Context, js jetstream.JetStream, t Topology) error {
	for _, want := range t.StreamConfigs() {
		if err := ensureStream(ctx, js, want); err != nil {
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

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
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
	if diffs := StreamDrift(want, s.CachedInfo().Config); len(diffs) > 0 {
		return fmt.Errorf("%w: stream %s: %s (fix or delete the stream; rcwatch does not change it)",
			ErrConfigDrift, want.Name, strings.Join(diffs, "; "))
	}
	return nil
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
