package rules

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/event"
)

// An alert's event reference carries the performer's edit count and
// registration when the enricher fetched them for an account, for every
// alert of that event (also a rule that did not need them); unknown, they
// are absent.
func TestAlertRefCarriesUserInfo(t *testing.T) {
	reg := time.Date(2024, 2, 5, 10, 0, 0, 0, time.UTC)
	named := `{"meta":{"id":"b","dt":"2024-02-06T16:58:10Z"},"type":"edit","user":"Alice","length":{"old":5000,"new":20}}`
	ip := `{"meta":{"id":"c","dt":"2024-02-06T16:58:10Z"},"type":"edit","user":"192.0.2.1","length":{"old":5000,"new":20}}`
	small := `{"meta":{"id":"d","dt":"2024-02-06T16:58:10Z"},"type":"edit","user":"Alice","length":{"old":5000,"new":4990}}`
	for _, tc := range []struct {
		name     string
		enricher Enricher
		event    string
		rules    []string
		count    *int64
		reg      int64
	}{
		{"fetched", &recordingEnricher{out: Enrichment{UserEditCount: 3, UserRegistration: reg}},
			named, []string{"new-user-removal", "metadata-only", "any-edit"}, ptr(int64(3)), reg.Unix()},
		{"fetched, zero edits, no registration", &recordingEnricher{out: Enrichment{}},
			named, []string{"new-user-removal", "metadata-only", "any-edit"}, ptr(int64(0)), 0},
		{"user missing", &recordingEnricher{out: Enrichment{UserEditCount: 3, Missing: []string{"user"}}},
			named, []string{"new-user-removal", "metadata-only", "any-edit"}, nil, 0},
		{"enrichment failed", &recordingEnricher{fail: assert.AnError},
			named, []string{"new-user-removal", "metadata-only", "any-edit"}, nil, 0},
		{"no enricher", nil, named, []string{"new-user-removal", "metadata-only", "any-edit"}, nil, 0},
		{"not needed", &recordingEnricher{out: Enrichment{UserEditCount: 3, UserRegistration: reg}},
			small, []string{"any-edit"}, nil, 0},
		{"ip", &recordingEnricher{out: Enrichment{UserEditCount: 3, IPEditsBefore: 2, AddedLines: []string{"x"}}},
			ip, []string{"metadata-only", "any-edit"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, EngineConfig{Enricher: tc.enricher, MaxMatchRate: -1}, nil,
				src("r.yaml", enrichRules+`
  - id: any-edit
    when: type == "edit"
    severity: info
`))
			alerts := e.Eval(context.Background(), mustEvent(t, tc.event), nil, t0)
			require.Equal(t, tc.rules, alertRules(alerts))
			for _, a := range alerts {
				assert.Equal(t, tc.count, a.Event.UserEditCount, a.Rule.ID)
				assert.Equal(t, tc.reg, a.Event.UserRegistration, a.Rule.ID)
			}
		})
	}
	// The state of one evaluation does not leak into the next.
	en := &recordingEnricher{out: Enrichment{UserEditCount: 3, UserRegistration: reg}}
	e := newTestEngine(t, EngineConfig{Enricher: en, MaxMatchRate: -1}, nil, src("r.yaml", enrichRules+`
  - id: any-edit
    when: type == "edit"
    severity: info
`))
	require.NotEmpty(t, e.Eval(context.Background(), mustEvent(t, named), nil, t0))
	for _, a := range e.Eval(context.Background(), mustEvent(t, small), nil, t0) {
		assert.Nil(t, a.Event.UserEditCount)
		assert.Zero(t, a.Event.UserRegistration)
	}
}

func ptr[T any](v T) *T { return &v }

// The JSON names patrol tools read; absent when unknown.
func TestRefUserInfoJSON(t *testing.T) {
	n := int64(0)
	b, err := json.Marshal(&event.Alert{Event: event.Ref{UserEditCount: &n, UserRegistration: 1707210000}})
	require.NoError(t, err)
	assert.Contains(t, string(b), `"user_edit_count":0`)
	assert.Contains(t, string(b), `"user_registration":1707210000`)
}
