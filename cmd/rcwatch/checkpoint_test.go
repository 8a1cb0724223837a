package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// A stage that had not finished messages which retention then removed: the
// checkpoint moves past them (a restart will not read them again), and the
// checkpointer says so once, at error level, with the count and the time
// span they lie in (after the previous checkpoint, before the first kept).
func TestCheckpointLogsWhatRetentionRemoved(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	natstest.EnsureSmallRecentChange(ctx, t, js)
	_, err := js.CreateOrUpdateConsumer(ctx, pipeline.StreamRecentChange, jetstream.ConsumerConfig{
		Durable: "evaluate", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)

	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	body := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	for i := range 200 { // three times the 64 KiB limit
		m := nats.NewMsg(pipeline.RecentChangeSubject("enwiki", "edit"))
		m.Data = body
		m.Header.Set(pipeline.HeaderEventTime, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano))
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	rc, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	info, err := rc.Info(ctx)
	require.NoError(t, err)
	first := info.State.FirstSeq
	require.Greater(t, first, uint64(1))
	kept := base.Add(time.Duration(first-1) * time.Second)

	var logs bytes.Buffer
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	c := &checkpointer{file: file, every: time.Second, js: js, log: zerolog.New(&logs),
		last: base} // the checkpoint read at start: before every lost message
	c.write(ctx)
	c.write(ctx) // the same range again: not logged twice

	cp, ok, err := pipeline.ReadCheckpoint(file)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, kept, cp.ResumeFrom.UTC(), "the checkpoint moves on to the first kept message")
	require.NoError(t, c.Ready())

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		lines = append(lines, m)
	}
	require.Len(t, lines, 1, logs.String())
	l := lines[0]
	assert.Equal(t, "error", l["level"])
	assert.Equal(t, pipeline.StreamRecentChange, l["stream"])
	assert.Equal(t, "evaluate", l["consumer"])
	assert.EqualValues(t, first-1, l["count"])
	assert.Equal(t, false, l["count_is_upper_bound"], "an unfiltered consumer: every removed message was its own")
	assert.EqualValues(t, 1, l["first_seq"])
	assert.EqualValues(t, first-1, l["last_seq"])
	assert.Equal(t, kept.Format(time.RFC3339), l["kept_from"])
	assert.Equal(t, base.Format(time.RFC3339), l["lost_after"])
	assert.EqualValues(t, kept.Sub(base).Milliseconds(), l["span_at_most"])
	assert.Contains(t, l["message"], "a restart will not read them again")
}
