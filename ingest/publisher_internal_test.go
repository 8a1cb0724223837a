package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// Whatever the publisher sent is in the position it returns, and a publish
// after ctx ended sends nothing, even with a free in-flight slot (a select
// on a ready queue and a done ctx picks at random: the stored position was
// one event behind the stream about half the time).
func TestPublisherPositionCoversEverythingSent(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	p := newPublisher(js, 4, "start", m, zerolog.Nop(), time.Now)
	msg := func(id string) *nats.Msg {
		mm := &nats.Msg{Subject: pipeline.RecentChangeSubject("enwiki", "edit"), Data: []byte(`{}`), Header: nats.Header{}}
		mm.Header.Set(jetstream.MsgIDHeader, id)
		return mm
	}
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, p.publish(ctx, msg("a"), "pos-a", time.Time{}, false))
	require.NoError(t, p.mark(ctx, "pos-canary"))
	cancel()
	for i := 0; i < 50; i++ {
		assert.ErrorIs(t, p.publish(ctx, msg("late"), "pos-late", time.Time{}, false), context.Canceled)
		assert.ErrorIs(t, p.mark(ctx, "pos-late"), context.Canceled)
	}
	final, err := p.close(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "pos-canary", final)
	assert.Equal(t, 1, natstest.Count(t, js, pipeline.StreamRecentChange), "nothing published after the cancel")
	assert.Equal(t, 0, p.outstanding())
}
