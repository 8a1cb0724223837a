package pipeline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPullBatch(t *testing.T) {
	tests := []struct {
		name    string
		most    int
		workers int
		avg     time.Duration
		want    int
	}{
		{"no handler finished yet: the small default", 256, 4, 0, 16},
		{"no handler finished yet, many workers", 256, 16, 0, 32},
		{"a default smaller than that", 8, 4, 0, 8},
		{"microsecond handlers: the most", 256, 4, 20 * time.Microsecond, 256},
		{"100 ms handlers: 4 workers × 7.5 s / 0.1 s", 256, 4, 100 * time.Millisecond, 256},
		{"1 s handlers: 4 × 7.5", 256, 4, time.Second, 30},
		{"10 s handlers: one per worker", 256, 4, 10 * time.Second, 4},
		{"never more than the most", 16, 4, time.Nanosecond, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, pullBatch(tt.most, tt.workers, 30*time.Second, tt.avg))
		})
	}
}
