package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// OpenKV opens bucket (created by Ensure). While NATS cannot answer (a
// cluster electing a leader, a server restarting: IsStorageError) it waits
// and tries again with capped, jittered backoff, saying so at most every
// 10 s, so that a stage started in such a moment does not stop with an
// error; another error, or ctx's, is returned.
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket string, log zerolog.Logger) (jetstream.KeyValue, error) {
	wait, logged := 100*time.Millisecond, time.Time{}
	for {
		kv, err := js.KeyValue(ctx, bucket)
		if err == nil || ctx.Err() != nil || !IsStorageError(err) {
			return kv, err
		}
		if time.Since(logged) >= 10*time.Second {
			logged = time.Now()
			log.Warn().Err(err).Str("bucket", bucket).Dur("retry_in", wait).Msg("NATS cannot open the KV bucket yet; waiting")
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1)) //nolint:gosec // jitter
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}
