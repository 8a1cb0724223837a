package mwtest_test

import (
	"testing"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

// The harness's own goroutines (process supervision, readers) end with the
// server they serve.
func TestMain(m *testing.M) { leaktest.Main(m) }
