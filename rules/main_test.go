package rules

import (
	"testing"

	"go.uber.org/goleak"
)

// A goroutine left behind by the engine or the stage fails the package.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
