package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// ErrRevisionMismatch is returned by KVPutTTL when the key's last revision
// is not the expected one: another writer changed (or created) it first.
var ErrRevisionMismatch = errors.New("KV key changed concurrently")

// KVPutTTL writes key in kv with a per-key TTL (the bucket needs
// LimitMarkerTTL, as BucketActions and BucketRules have), expecting the
// key's last revision to be rev (0: no expectation), and returns the new
// revision. jetstream.KeyValue can set a TTL only on Create, so renewals
// publish to the bucket's subject as Put and Update do, adding the TTL.
func KVPutTTL(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, key string, val []byte, ttl time.Duration, rev uint64) (uint64, error) {
	m := nats.NewMsg(kvSubject(kv.Bucket(), key))
	m.Data = val
	opts := []jetstream.PublishOpt{jetstream.WithMsgTTL(ttl)}
	if rev > 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	ack, err := js.PublishMsg(ctx, m, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("writing %s/%s: %w", kv.Bucket(), key, ErrRevisionMismatch)
		}
		return 0, fmt.Errorf("writing %s/%s: %w", kv.Bucket(), key, err)
	}
	return ack.Sequence, nil
}

// kvSubject is the subject a KV bucket stores key under.
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// OpenKV opens bucket (created by Ensure), waiting while NATS cannot
// answer (WhileNATSUnavailable), so that a stage started during a leader
// election or a server restart does not stop with an error.
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string, log zerolog.Logger) (jetstream.KeyValue, error) {
	return WhileNATSUnavailable(ctx, log.With().Str("bucket", bucket).Logger(), "open the KV bucket", time.Now,
		func(ctx context.Context) (jetstream.KeyValue, error) { return js.KeyValue(ctx, bucket) })
}

// WhileNATSUnavailable runs f until it succeeds, fails with an error other
// than IsStorageError's (returned), or ctx ends (ctx's error): while NATS
// cannot answer it waits with capped, jittered backoff and says so, "NATS
// cannot <what> yet", at most every 10 s.
func WhileNATSUnavailable[T any](ctx context.Context, log zerolog.Logger, what string, now func() time.Time, f func(context.Context) (T, error)) (T, error) {
	wait, logged := 100*time.Millisecond, time.Time{}
	for {
		v, err := f(ctx)
		if err == nil || !IsStorageError(err) {
			return v, err
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		if t := now(); t.Sub(logged) >= 10*time.Second {
			logged = t
			log.Warn().Err(err).Dur("retry_in", wait).Msg("NATS cannot " + what + " yet; waiting")
		}
		t := time.NewTimer(Jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			var zero T
			return zero, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}
