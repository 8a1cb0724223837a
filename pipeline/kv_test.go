package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/logtest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestKVPutTTL(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, pipeline.BucketActions)
	require.NoError(t, err)

	tests := []struct {
		name    string
		key     string
		rev     func(last uint64) uint64
		wantErr error
	}{
		{name: "no expectation creates", key: "t.a", rev: func(uint64) uint64 { return 0 }},
		{name: "no expectation overwrites", key: "t.a", rev: func(uint64) uint64 { return 0 }},
		{name: "expected revision", key: "t.a", rev: func(last uint64) uint64 { return last }},
		{name: "stale revision", key: "t.a", rev: func(last uint64) uint64 { return last - 1 }, wantErr: pipeline.ErrRevisionMismatch},
		{name: "revision of a key that does not exist", key: "t.b", rev: func(uint64) uint64 { return 1 }, wantErr: pipeline.ErrRevisionMismatch},
	}
	var last uint64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev, err := pipeline.KVPutTTL(ctx, js, kv, tc.key, []byte(tc.name), time.Hour, tc.rev(last))
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			e, err := kv.Get(ctx, tc.key)
			require.NoError(t, err)
			assert.Equal(t, rev, e.Revision())
			assert.Equal(t, tc.name, string(e.Value()))
			last = rev
		})
	}

	// The TTL is the key's: it expires by itself.
	_, err = pipeline.KVPutTTL(ctx, js, kv, "t.short", []byte("x"), time.Second, 0)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := kv.Get(ctx, "t.short")
		return err != nil
	}, 10*time.Second, 50*time.Millisecond, "the key expires after its TTL")
	_, err = kv.Get(ctx, "t.short")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
}

func TestAlertFilterWikis(t *testing.T) {
	assert.Equal(t, "alert.enwiki.>", pipeline.AlertFilterWiki("enwiki"))
	assert.Equal(t, "alert.x__.>", pipeline.AlertFilterWiki("x.>"))
	assert.Nil(t, pipeline.AlertFilterWikis(nil))
	assert.Equal(t, []string{"alert.dewiki.>", "alert.enwiki.>"}, pipeline.AlertFilterWikis([]string{"enwiki", "dewiki", "enwiki"}))
}

// TestOpenKVWaitsForNATS: a stage opening its bucket while NATS cannot
// answer waits and says so, and gets the bucket once the server is back.
func TestOpenKVWaitsForNATS(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	srv.Shutdown()
	logs := logtest.NewSink()
	type result struct {
		kv  jetstream.KeyValue
		err error
	}
	done := make(chan result, 1)
	go func() {
		kv, err := pipeline.OpenKV(context.Background(), js, pipeline.BucketActions, zerolog.New(logs))
		done <- result{kv, err}
	}()
	logs.Await(t, 0, 30*time.Second, "NATS cannot open the KV bucket yet")
	srv.Restart(t)
	select {
	case r := <-done:
		require.NoError(t, r.err)
		assert.Equal(t, pipeline.BucketActions, r.kv.Bucket())
	case <-time.After(60 * time.Second):
		t.Fatal("OpenKV never returned after NATS came back")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := pipeline.OpenKV(ctx, js, pipeline.BucketActions, zerolog.Nop())
	require.ErrorIs(t, err, context.Canceled, "a cancelled start-up is the caller's normal stop")
}
