package actions_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/actions"
	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { leaktest.Main(m) }

// rawMsg is a jetstream.Msg holding data (only Data is used).
type rawMsg struct {
	jetstream.Msg
	data []byte
}

func (m rawMsg) Data() []byte { return m.data }

func TestDecodeAlert(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantID  string
		wantErr string
	}{
		{name: "valid", data: `{"id":"a1","rule":{"id":"r"},"event":{"wiki":"enwiki"}}`, wantID: "a1"},
		{name: "not JSON", data: `{"id":`, wantErr: "decoding alert"},
		{name: "no id", data: `{"rule":{"id":"r"}}`, wantErr: "alert without id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := actions.DecodeAlert(rawMsg{data: []byte(tc.data)})
			if tc.wantErr != "" {
				var inv *pipeline.InvalidError
				require.ErrorAs(t, err, &inv, "a malformed alert is dead-lettered, never retried")
				assert.Equal(t, actions.ReasonBadAlert, inv.Reason)
				assert.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantID, a.ID)
		})
	}
}

func TestKeyToken(t *testing.T) {
	assert.Equal(t, actions.KeyToken("#Alerts"), actions.KeyToken("#alerts"), "case-folded")
	assert.NotEqual(t, actions.KeyToken("#alerts"), actions.KeyToken("&alerts"), "the hash keeps names apart")
	assert.NotEqual(t, actions.KeyToken("a b"), actions.KeyToken("a_b"))
	assert.Regexp(t, `^alerts-[0-9a-f]{6}$`, actions.KeyToken("#alerts"))
	assert.Regexp(t, `^[A-Za-z0-9_-]+$`, actions.KeyToken("x.>*\r\n"))
}

func TestFilterSubjects(t *testing.T) {
	assert.Nil(t, actions.FilterSubjects(nil))
	assert.Equal(t, []string{pipeline.AlertFilterWiki("dewiki"), pipeline.AlertFilterWiki("enwiki")}, actions.FilterSubjects([]string{"enwiki", "dewiki"}))
}

// TestStartFrom: a new durable starts at the alerts stored since since();
// an existing one keeps its start policy through the runner's update.
func TestStartFrom(t *testing.T) {
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	publish := func(id string) {
		m := nats.NewMsg(pipeline.AlertSubject("enwiki", "r"))
		m.Data = []byte(`{"id":"` + id + `"}`)
		_, err := js.PublishMsg(ctx, m)
		require.NoError(t, err)
	}
	publish("old")
	time.Sleep(50 * time.Millisecond) // the stream's timestamps must differ
	mid := time.Now()
	publish("a1")
	publish("a2")

	sjs := actions.StartFrom(js, func() time.Time { return mid })
	cfg := jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy}
	c, err := sjs.CreateOrUpdateConsumer(ctx, pipeline.StreamAlerts, cfg)
	require.NoError(t, err)
	assert.Equal(t, jetstream.DeliverByStartTimePolicy, c.CachedInfo().Config.DeliverPolicy)
	batch, err := c.FetchNoWait(10)
	require.NoError(t, err)
	var got []string
	for m := range batch.Messages() {
		a, err := actions.DecodeAlert(m)
		require.NoError(t, err)
		got = append(got, a.ID)
		require.NoError(t, m.Ack())
	}
	assert.Equal(t, []string{"a1", "a2"}, got, "the alerts since the start time, not the older one, not only new ones")

	// A restart: the start time has moved, the consumer is kept as it is.
	sjs = actions.StartFrom(js, time.Now)
	cfg.AckWait = 42 * time.Second
	c, err = sjs.CreateOrUpdateConsumer(ctx, pipeline.StreamAlerts, cfg)
	require.NoError(t, err)
	info := c.CachedInfo()
	assert.Equal(t, 42*time.Second, info.Config.AckWait, "what may change is updated")
	require.NotNil(t, info.Config.OptStartTime)
	assert.True(t, info.Config.OptStartTime.Equal(mid.UTC()), "the start time is kept")
	assert.Equal(t, uint64(2), info.AckFloor.Consumer, "the position is kept")
}
