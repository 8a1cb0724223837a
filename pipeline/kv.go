package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
