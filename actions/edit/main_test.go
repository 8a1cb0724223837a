package edit

import (
	"testing"

	"github.com/rcwatch/rcwatch/internal/testbed/leaktest"
)

// TestMain fails the package when a test leaves a goroutine behind.
func TestMain(m *testing.M) { leaktest.Main(m) }
