package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{1}, 1},
		{[]float64{1, 2, 10}, 2},
		{[]float64{1, 2, 4, 10}, 3},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, median(tc.in), "%v", tc.in)
	}
}
