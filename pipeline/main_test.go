package pipeline_test

import (
	"testing"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

// A goroutine left behind by the runner, the embedded server or a
// connection fails the package.
func TestMain(m *testing.M) { leaktest.Main(m) }
