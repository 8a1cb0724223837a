package enrich_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/enrich"
	"github.com/rcwatch/rcwatch/event"
	"github.com/rcwatch/rcwatch/internal/testbed/natstest"
	"github.com/rcwatch/rcwatch/pipeline"
	"github.com/rcwatch/rcwatch/rules"
)

const stageRules = `rules:
  - id: newcomer-adds-banana
    description: "a rule that needs the diff and the user, so enrichment must run"
    when: type == "edit" && user_editcount < 1000 && irlike(added_lines, "BANANA{3,}")
    severity: high
    score: 0.9
    tags: [vandalism]
  - id: bot-edit
    description: "cheap part false for this event, so no enrichment is needed for it"
    when: bot && contains_any(added_lines, "x")
    severity: low
`

// The evaluator stage over real JetStream, enriching from the real local
// MediaWiki: a page the test creates and vandalises as another user gives
// an alert that saw the added lines and the user's edit count.
func TestStageEnrichesFromRealWiki(t *testing.T) {
	w := wiki.Get(t)
	srv := natstest.Start(t)
	_, js := srv.Connect(t)

	title := "Stage enrichment target"
	r1 := w.Edit(t, w.Admin, title, "A fine article.\n\nIt has two paragraphs.", "create")
	r2 := w.Edit(t, w.Other, title, "A fine article.\n\nBANANAAAAA it has two paragraphs.\nBANANAAAA", "vandalism")
	ev := editEvent(w, title, w.Other.Name, r1, r2)
	ev.Meta.DT = time.Now().UTC().Format(time.RFC3339)
	data, err := json.Marshal(ev)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	en := newEnricher(t, pipeline.Deps{Reg: reg, Log: zerolog.Nop()}, enrich.Config{UserAgent: "rcwatch-test"})
	stage, err := rules.NewStage(pipeline.Deps{JS: js, Reg: reg, Log: zerolog.Nop()}, rules.StageConfig{
		Default: []rules.Source{{Name: "stage.yaml", Data: []byte(stageRules)}},
	}, en)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	msg := nats.NewMsg(pipeline.RecentChangeSubject(ev.Wiki, ev.Type))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.Meta.ID)
	_, err = js.PublishMsg(ctx, msg)
	require.NoError(t, err)

	alerts := natstest.StreamMessages(t, js, pipeline.StreamAlerts, 1, 30*time.Second)
	require.Len(t, alerts, 1)
	var a event.Alert
	require.NoError(t, json.Unmarshal(alerts[0].Data(), &a))
	assert.Equal(t, event.AlertID("newcomer-adds-banana", ev.Meta.ID), a.ID)
	assert.False(t, a.Partial, "enrichment succeeded: %v", a.Notes)
	assert.Equal(t, "alert.testwiki.newcomer-adds-banana", alerts[0].Subject())
	assert.NotEmpty(t, a.Reasons)

	// One revisions request (both texts), one users request and the three
	// of the edit-time context (page creation, page history, talk page); the
	// bot-edit rule's cheap part was false, so it asked for nothing more.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var requests float64
	for _, mf := range mfs {
		if mf.GetName() == "rcwatch_enrich_requests_total" {
			for _, m := range mf.GetMetric() {
				requests += m.GetCounter().GetValue()
			}
		}
	}
	assert.Equal(t, 5.0, requests)
}
