package pipeline_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// When retention (DiscardOld at the byte limit) removes messages a durable
// consumer has not acknowledged, ResumePoint resumes from the first kept
// message and reports the range in Lost; once the consumer is within the
// stream again nothing is reported and ResumeFrom is its first unfinished
// event.
func TestResumePointReportsWhatRetentionRemoved(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	natstest.EnsureSmallRecentChange(ctx, t, js)

	res, err := pipeline.ResumePoint(ctx, js)
	require.NoError(t, err)
	assert.True(t, res.From.IsZero(), "no resume point while RECENTCHANGE is empty")

	cons, err := js.CreateOrUpdateConsumer(ctx, pipeline.StreamRecentChange, jetstream.ConsumerConfig{
		Durable: "checkpoint-test", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)

	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const n = 200 // 200 × ~1 KiB: three times the 64 KiB limit
	publishEvents(ctx, t, js, base, n)

	rc, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	info, err := rc.Info(ctx)
	require.NoError(t, err)
	first := info.State.FirstSeq
	require.Greater(t, first, uint64(1), "the byte limit removed the oldest messages")
	kept := base.Add(time.Duration(first-1) * time.Second) // message k has event time base + (k-1) s

	res, err = pipeline.ResumePoint(ctx, js)
	require.NoError(t, err)
	assert.Equal(t, kept, res.From.UTC(), "resumes from the first kept message")
	require.Len(t, res.Lost, 1)
	assert.Equal(t, pipeline.Loss{Stream: pipeline.StreamRecentChange, Consumer: "checkpoint-test",
		FromSeq: 1, ThroughSeq: first - 1, KeptFrom: kept}, normalise(res.Lost[0]))

	// The consumer finishes the first ten kept messages: nothing lost any
	// more, and the resume point is its next one.
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(30*time.Second))
	require.NoError(t, err)
	got := 0
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
		got++
	}
	require.NoError(t, batch.Error())
	require.Equal(t, 10, got)
	res, err = pipeline.ResumePoint(ctx, js)
	require.NoError(t, err)
	assert.Empty(t, res.Lost)
	assert.Equal(t, kept.Add(10*time.Second), res.From.UTC())
}

func normalise(l pipeline.Loss) pipeline.Loss { l.KeptFrom = l.KeptFrom.UTC(); return l }

// publishEvents stores n RECENTCHANGE messages of about 1 KiB; message k
// (from 1) has event time base + (k-1) s.
func publishEvents(ctx context.Context, t *testing.T, js jetstream.JetStream, base time.Time, n int) {
	t.Helper()
	body := []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	for i := range n {
		m := nats.NewMsg(pipeline.RecentChangeSubject("enwiki", "edit"))
		m.Data = body
		m.Header.Set(pipeline.HeaderEventTime, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano))
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
}

// A filtered consumer (an action worker's wikis) that has finished its own
// messages is caught up, though its ack floor stays at its last matching
// message while other subjects' messages pass and retention removes that
// one: it neither holds the resume point back nor is reported as losing.
func TestResumePointFilteredConsumerCaughtUp(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	natstest.EnsureSmallRecentChange(ctx, t, js)
	cons, err := js.CreateOrUpdateConsumer(ctx, pipeline.StreamRecentChange, jetstream.ConsumerConfig{
		Durable: "dewiki-only", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: []string{pipeline.RecentChangeSubject("dewiki", "edit")}})
	require.NoError(t, err)

	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	m := nats.NewMsg(pipeline.RecentChangeSubject("dewiki", "edit"))
	m.Data = []byte(`{}`)
	m.Header.Set(pipeline.HeaderEventTime, base.Add(-time.Hour).Format(time.RFC3339Nano))
	_, err = js.PublishMsg(ctx, m)
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(30*time.Second))
	require.NoError(t, err)
	for msg := range batch.Messages() {
		require.NoError(t, msg.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())

	publishEvents(ctx, t, js, base, 200) // enwiki: past the byte limit, the dewiki message is removed
	rc, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	info, err := rc.Info(ctx)
	require.NoError(t, err)
	require.Greater(t, info.State.FirstSeq, uint64(1))

	res, err := pipeline.ResumePoint(ctx, js)
	require.NoError(t, err)
	assert.Empty(t, res.Lost, "nothing of the filtered consumer's was removed unfinished")
	assert.Equal(t, base.Add(199*time.Second), res.From.UTC(), "caught up: the newest stored event")
}
