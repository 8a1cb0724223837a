package event_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/rcwatch/rcwatch/event"
)

func TestRefNewAccount(t *testing.T) {
	edit := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	count := func(n int64) *int64 { return &n }
	tests := []struct {
		name string
		ref  event.Ref
		want bool
	}{
		{"nothing known", event.Ref{Timestamp: edit.Unix()}, false},
		{"9 edits", event.Ref{UserEditCount: count(9)}, true},
		{"10 edits, registration unknown", event.Ref{UserEditCount: count(10)}, false},
		{"0 edits", event.Ref{UserEditCount: count(0)}, true},
		{"registered 3 days before the edit", event.Ref{Timestamp: edit.Unix(), UserEditCount: count(500),
			UserRegistration: edit.Add(-3 * 24 * time.Hour).Unix()}, true},
		{"registered 4 days before the edit", event.Ref{Timestamp: edit.Unix(), UserEditCount: count(500),
			UserRegistration: edit.Add(-event.NewUserAge).Unix()}, false},
		{"no edit time: the detection time", event.Ref{UserRegistration: edit.Add(-time.Hour).Unix()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.ref.NewAccount(edit))
		})
	}
}
