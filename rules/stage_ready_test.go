package rules

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

// The stage is ready only with rules loaded and its consumer doing its job:
// not before Run, and not while its alerts cannot be stored.
func TestStageReadyCombinesRulesAndConsumer(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := NewStage(pipeline.Deps{NC: nc, JS: js, Reg: prometheus.NewRegistry(), Log: zerolog.Nop()},
		StageConfig{Default: []Source{{Name: "bots.yaml", Data: []byte("rules:\n  - id: bots\n    when: bot\n    severity: info\n")}}}, nil)
	require.NoError(t, err)
	require.ErrorContains(t, s.Ready(), "not running", "not ready before its consumer runs")

	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.Eventually(t, func() bool { return s.Ready() == nil }, 10*time.Second, 10*time.Millisecond)

	// ALERTS full: the alert of a bot edit cannot be stored.
	st, err := js.Stream(ctx, pipeline.StreamAlerts)
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	cfg.MaxBytes, cfg.Discard = 1024, jetstream.DiscardNew
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "alert.filler.x", bytes.Repeat([]byte("x"), 900))
	require.NoError(t, err)
	natstest.Publish(t, js, "rc.enwiki.edit", "e1",
		[]byte(`{"meta":{"id":"e1","dt":"2024-02-06T16:58:10Z"},"type":"edit","wiki":"enwiki","user":"B","bot":true}`))
	require.Eventually(t, func() bool {
		err := s.Ready()
		return err != nil && strings.Contains(err.Error(), "cannot store")
	}, 10*time.Second, 10*time.Millisecond)

	// Space again: the alert is stored and the stage is ready.
	require.NoError(t, st.Purge(ctx))
	cfg.MaxBytes, cfg.Discard = -1, jetstream.DiscardOld
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	natstest.WaitCount(t, js, pipeline.StreamAlerts, 1, 30*time.Second)
	require.Eventually(t, func() bool { return s.Ready() == nil }, 60*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
