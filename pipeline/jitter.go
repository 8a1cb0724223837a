package pipeline

import (
	"math/rand/v2"
	"time"
)

// Jitter spreads a retry's wait d over [d/2, d] ("equal jitter"), so that
// workers and replicas that failed together do not all retry together.
// Every capped backoff of the stages draws its wait from it.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1) //nolint:gosec // jitter, not security
}
