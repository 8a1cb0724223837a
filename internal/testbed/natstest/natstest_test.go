package natstest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// The stream helpers agree with what was published, also across a restart
// of the server; a wait that cannot be met fails the test.
func TestStreamHelpers(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	subject := pipeline.RecentChangeSubject("testwiki", "edit")
	for i := range 5 {
		natstest.Publish(t, js, subject, fmt.Sprint("id-", i), []byte(fmt.Sprint("event ", i)))
	}
	natstest.Publish(t, js, subject, "id-0", []byte("duplicate")) // same Nats-Msg-Id: dropped
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 5, 10*time.Second)
	assert.Equal(t, 5, natstest.Count(t, js, pipeline.StreamRecentChange))
	msgs := natstest.Messages(t, js, pipeline.StreamRecentChange)
	require.Len(t, msgs, 5)
	for i, m := range msgs {
		assert.Equal(t, fmt.Sprint("event ", i), string(m.Data()))
	}
	assert.Empty(t, natstest.Messages(t, js, pipeline.StreamAlerts))

	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		natstest.WaitCount(ft, js, pipeline.StreamRecentChange, 6, 100*time.Millisecond)
	}()
	assert.True(t, ft.failed, "a count never reached fails the test")

	srv.Restart(t)
	_, js = srv.Connect(t)
	assert.Len(t, natstest.StreamMessages(t, js, pipeline.StreamRecentChange, 5, 10*time.Second), 5, "file storage survives a restart")
}

// ConsumerInfo and WaitConsumerDone follow a durable consumer.
func TestConsumerHelpers(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	natstest.Publish(t, js, pipeline.RecentChangeSubject("testwiki", "edit"), "a", []byte("a"))
	ctx := t.Context()
	c, err := js.CreateOrUpdateConsumer(ctx, pipeline.StreamRecentChange, jetstream.ConsumerConfig{Durable: "probe", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	natstest.WaitConsumer(t, js, pipeline.StreamRecentChange, "pro", 10*time.Second)
	assert.EqualValues(t, 1, natstest.ConsumerInfo(t, js, pipeline.StreamRecentChange, "probe").NumPending)
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
	}
	natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, "probe", 10*time.Second)
	natstest.WaitConsumerDone(t, js, pipeline.StreamRecentChange, "", 10*time.Second) // every durable
}

// A three-node cluster elects a JetStream leader and takes the topology.
func TestCluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	require.Len(t, c.Nodes, 3)
	nc, err := pipeline.Connect(c.URLs(), t.Name(), zerolog.Nop())
	require.NoError(t, err)
	defer nc.Close()
	js, err := pipeline.JetStream(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return pipeline.Ensure(t.Context(), js, pipeline.Topology{Replicas: 3, Storage: jetstream.FileStorage}) == nil
	}, 60*time.Second, 200*time.Millisecond)
	natstest.Publish(t, js, pipeline.RecentChangeSubject("testwiki", "edit"), "a", []byte("a"))
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, 1, 10*time.Second)
}

// fakeTB records a failure instead of ending the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fakeTB) Fatal(...any)          { f.failed = true; panic("fatal") }
func (f *fakeTB) Helper()               {}
