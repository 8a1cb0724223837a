package pipeline_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rcwatch/rcwatch/pipeline"
)

func TestAlertFilterSubjects(t *testing.T) {
	many := strings.Split("a b c d e f g h i", " ")
	tests := []struct {
		name         string
		wikis, rules []string
		want         []string
	}{
		{name: "everything", want: nil},
		{name: "wikis", wikis: []string{"enwiki", "dewiki"}, want: []string{"alert.dewiki.*", "alert.enwiki.*"}},
		{name: "rules", rules: []string{"spam"}, want: []string{"alert.*.spam"}},
		{name: "both", wikis: []string{"enwiki"}, rules: []string{"spam", "vandalism"},
			want: []string{"alert.enwiki.spam", "alert.enwiki.vandalism"}},
		{name: "hostile tokens", wikis: []string{"en.>", "*"}, want: []string{"alert._.*", "alert.en__.*"}},
		{name: "too many: filter in memory", wikis: many, rules: many, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, pipeline.AlertFilterSubjects(tc.wikis, tc.rules))
		})
	}
}

func TestRecentChangeFilterSubjects(t *testing.T) {
	assert.Equal(t, []string{"rc.*.edit", "rc.*.new"}, pipeline.RecentChangeFilterSubjects(nil, []string{"new", "edit"}))
	assert.Equal(t, []string{"rc.enwiki.edit"}, pipeline.RecentChangeFilterSubjects([]string{"enwiki"}, []string{"edit"}))
}
