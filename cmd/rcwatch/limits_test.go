package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/pipeline"
)

func TestLimitFlags(t *testing.T) {
	tests := []struct {
		name       string
		bytes, age map[string]string
		want       map[string]pipeline.Limits
		errHas     string
	}{
		{"none", nil, nil, map[string]pipeline.Limits{}, ""},
		{"units", map[string]string{"recentchange": "2GiB", "ALERTS": "1.5GB", "AUDIT": "512K"}, map[string]string{"RECENTCHANGE": "2d", "ALERTS": "36h"},
			map[string]pipeline.Limits{
				pipeline.StreamRecentChange: {MaxBytes: 2 << 30, MaxAge: 48 * time.Hour},
				pipeline.StreamAlerts:       {MaxBytes: 1_500_000_000, MaxAge: 36 * time.Hour},
				pipeline.StreamAudit:        {MaxBytes: 512 << 10},
			}, ""},
		{"not a size", map[string]string{"ALERTS": "lots"}, nil, nil, "positive size"},
		{"zero", map[string]string{"ALERTS": "0"}, nil, nil, "positive size"},
		{"absurd", map[string]string{"ALERTS": "9000TB"}, nil, nil, "over 1 PiB"},
		{"bad age", nil, map[string]string{"ALERTS": "-1h"}, nil, "positive duration"},
		{"bad days", nil, map[string]string{"ALERTS": "1e9d"}, nil, "days"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := limitFlags{MaxBytes: tc.bytes, MaxAge: tc.age}.limits()
			if tc.errHas != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errHas)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}
