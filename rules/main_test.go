package rules

import (
	"testing"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

// A goroutine left behind by the engine or the stage fails the package.
func TestMain(m *testing.M) {
	leaktest.Main(m)
}
