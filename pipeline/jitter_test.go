package pipeline_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/rcwatch/rcwatch/pipeline"
)

func TestJitter(t *testing.T) {
	tests := []struct {
		d, lo, hi time.Duration
	}{
		{0, 0, 0},
		{-time.Second, 0, 0},
		{time.Nanosecond, 0, time.Nanosecond},
		{time.Second, 500 * time.Millisecond, time.Second},
		{time.Minute, 30 * time.Second, time.Minute},
	}
	for _, tt := range tests {
		for range 200 {
			got := pipeline.Jitter(tt.d)
			assert.GreaterOrEqual(t, got, tt.lo, "Jitter(%v)", tt.d)
			assert.LessOrEqual(t, got, tt.hi, "Jitter(%v)", tt.d)
		}
	}
}
