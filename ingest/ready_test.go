package ingest_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/ingest"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
)

func readyErrContains(in *ingest.Ingester, s string) func() bool {
	return func() bool {
		err := in.Ready()
		return err != nil && strings.Contains(err.Error(), s)
	}
}

// Not ready while the source answers nothing but errors; ready once it
// delivers.
func TestReadyFalseWhileSourceUnreachable(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := srv.Connect(t)
	replay := ingest.NewReplay(ingest.ReplayConfig{Events: uniqueEvents(t, 20)}, zerolog.Nop())
	var up atomic.Bool
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		replay.ServeHTTP(w, r)
	}))
	defer hs.Close()
	r := startIngester(t, nc, hs.URL, ingest.Config{BackoffMax: 100 * time.Millisecond})
	require.Eventually(t, readyErrContains(r.in, "source unreachable"), 10*time.Second, 10*time.Millisecond)
	require.ErrorContains(t, r.in.Ready(), "503")

	up.Store(true)
	require.Eventually(t, func() bool { return r.in.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
}

// Not ready while JetStream refuses what ingest publishes (RECENTCHANGE
// full): the position stops moving with publishes outstanding. Ready again,
// and nothing lost, once there is room.
func TestReadyFalseWhilePublishesFail(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx := context.Background()
	st, err := js.Stream(ctx, pipeline.StreamRecentChange)
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	cfg.MaxBytes, cfg.Discard = 4096, jetstream.DiscardNew
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "rc.filler.x", bytes.Repeat([]byte("x"), 3900))
	require.NoError(t, err)

	const n = 50
	_, url := startReplay(t, ingest.ReplayConfig{Events: uniqueEvents(t, n)})
	r := startIngester(t, nc, url, ingest.Config{StallAfter: 300 * time.Millisecond, AckTimeout: 200 * time.Millisecond})
	require.Eventually(t, readyErrContains(r.in, "stalled"), 20*time.Second, 10*time.Millisecond)

	require.NoError(t, st.Purge(ctx))
	cfg.MaxBytes, cfg.Discard = -1, jetstream.DiscardOld
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	natstest.WaitCount(t, js, pipeline.StreamRecentChange, n, 30*time.Second)
	require.Eventually(t, func() bool { return r.in.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
}
