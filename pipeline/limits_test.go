package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.Config
}

// Every stream gets a byte and an age limit with DiscardOld, the defaults
// add up to at most 1 GiB, and Ensure updates the limits of an existing
// stream (an override, or a stream that has none) instead of failing; a
// stage without overrides leaves an operator's limits alone.
func TestEnsureBoundsEveryStream(t *testing.T) {
	var total int64
	for _, c := range pipeline.DefaultTopology().StreamConfigs() {
		assert.Positive(t, c.MaxBytes, c.Name)
		assert.Positive(t, c.MaxAge, c.Name)
		assert.GreaterOrEqual(t, c.MaxAge, c.Duplicates, c.Name)
		assert.Equal(t, jetstream.DiscardOld, c.Discard, c.Name)
		total += c.MaxBytes
	}
	for _, kv := range pipeline.DefaultTopology().KeyValueConfigs() {
		assert.Positive(t, kv.MaxBytes, kv.Bucket)
		total += kv.MaxBytes
	}
	assert.LessOrEqual(t, total, int64(1<<30), "rcwatch run stays within 1 GiB by default")

	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx := context.Background()
	def := pipeline.DefaultTopology()
	assert.Equal(t, int64(700<<20), streamConfig(t, js, pipeline.StreamRecentChange).MaxBytes)

	// A stream from before the limits: unbounded bytes, publishes refused when full.
	legacy := streamConfig(t, js, pipeline.StreamAlerts)
	legacy.MaxBytes, legacy.Discard = -1, jetstream.DiscardNew
	_, err := js.UpdateStream(ctx, legacy)
	require.NoError(t, err)
	require.NoError(t, pipeline.Ensure(ctx, js, def))
	got := streamConfig(t, js, pipeline.StreamAlerts)
	assert.Equal(t, int64(128<<20), got.MaxBytes, "the default bounds an unbounded stream")
	assert.Equal(t, jetstream.DiscardOld, got.Discard)

	// An override (the flags) is applied to the existing stream.
	small := def
	small.Limits = map[string]pipeline.Limits{pipeline.StreamRecentChange: {MaxBytes: 1 << 20, MaxAge: time.Hour}}
	require.NoError(t, pipeline.Ensure(ctx, js, small))
	got = streamConfig(t, js, pipeline.StreamRecentChange)
	assert.Equal(t, int64(1<<20), got.MaxBytes)
	assert.Equal(t, time.Hour, got.MaxAge)

	// Another stage started without flags keeps it.
	require.NoError(t, pipeline.Ensure(ctx, js, def))
	assert.Equal(t, int64(1<<20), streamConfig(t, js, pipeline.StreamRecentChange).MaxBytes)
}

func TestTopologyValidate(t *testing.T) {
	tests := []struct {
		name   string
		limits map[string]pipeline.Limits
		errHas string
	}{
		{"defaults", nil, ""},
		{"override", map[string]pipeline.Limits{pipeline.StreamRecentChange: {MaxBytes: 2 << 30, MaxAge: 48 * time.Hour}}, ""},
		{"unknown stream", map[string]pipeline.Limits{"RC": {MaxBytes: 1 << 20}}, `unknown stream "RC"`},
		{"tiny", map[string]pipeline.Limits{pipeline.StreamAlerts: {MaxBytes: 100}}, "at least 65536"},
		{"negative", map[string]pipeline.Limits{pipeline.StreamAlerts: {MaxAge: -time.Hour}}, "negative"},
		{"shorter than dedup", map[string]pipeline.Limits{pipeline.StreamRecentChange: {MaxAge: time.Minute}}, "duplicate window"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			top := pipeline.DefaultTopology()
			top.Limits = tc.limits
			err := top.Validate()
			if tc.errHas == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, pipeline.ErrInvalidLimits)
			assert.Contains(t, err.Error(), tc.errHas)
		})
	}
}
