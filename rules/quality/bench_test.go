package quality_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	json "github.com/goccy/go-json"

	"github.com/rcwatch/rcwatch/internal/testbed/fixtures"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
	"github.com/rcwatch/rcwatch/rules/quality"
)

// BenchmarkStageQuality is the evaluator stage from RECENTCHANGE to ALERTS
// on a real embedded JetStream, 8 workers, no enrichment, with the live
// self-measurement off and on. The worst case for it: a rule alerts on
// every edit by a human (14% of the fixture events), so each of those
// costs a KV read and write; b.N fixture events with distinct ids.
func BenchmarkStageQuality(b *testing.B) {
	for _, window := range []time.Duration{0, 48 * time.Hour} {
		name := "off"
		if window > 0 {
			name = "on"
		}
		b.Run(name, func(b *testing.B) { benchStage(b, window) })
	}
}

func benchStage(b *testing.B, window time.Duration) {
	srv := natstest.Start(b)
	_, js := srv.Connect(b)
	evs := fixtures.RecentChanges(b)
	for i := 0; i < b.N; i++ {
		ev := *evs[i%len(evs)]
		ev.Meta.ID = ev.Meta.ID + "-" + strconv.Itoa(i)
		if ev.Revision.New != nil {
			r := *ev.Revision.New + int64(i/len(evs))*1e9 // distinct revisions per round
			ev.Revision.New = &r
		}
		data, err := json.Marshal(&ev)
		require.NoError(b, err)
		m := nats.NewMsg(pipeline.RecentChangeSubject(ev.Wiki, ev.Type))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.Meta.ID)
		_, err = js.PublishMsgAsync(m)
		require.NoError(b, err)
		if i%1000 == 999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	dir := b.TempDir()
	require.NoError(b, os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(`rules:
  - id: human-edit
    when: type == "edit" && !bot
    severity: low
`), 0o644))
	reg := prometheus.NewRegistry()
	s, err := rules.NewStage(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, rules.StageConfig{Paths: []string{dir}, Workers: 8,
		Engine: rules.EngineConfig{MaxMatchRate: -1}, Quality: quality.Config{Window: window}}, nil)
	require.NoError(b, err)
	natstest.BenchStage(b, js, s, pipeline.StreamRecentChange, "rules")
	if window > 0 {
		// What the self-measurement keeps: bytes per page key in its bucket
		// (with -benchtime 2305x, one pass over the recordings: each page as
		// often as it was edited there).
		kv, err := js.KeyValue(context.Background(), pipeline.BucketQuality)
		require.NoError(b, err)
		st, err := kv.Status(context.Background())
		require.NoError(b, err)
		b.ReportMetric(float64(st.Values()), "keys")
		if st.Values() > 0 {
			b.ReportMetric(float64(st.Bytes())/float64(st.Values()), "bytes/key")
		}
	}
}
