package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimitShare of the container's limit goes to the Go heap; the rest
// is left for stacks, the runtime and the kernel's page cache accounting.
const memoryLimitShare = 0.9

// containerMemoryLimit returns the soft memory limit to set from the
// container's limit, or 0 when GOMEMLIMIT is set (the runtime already
// honours it) or there is no limit.
func containerMemoryLimit(getenv func(string) string, readFile func(string) ([]byte, error)) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0
	}
	for _, f := range cgroupMemoryFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // "max", or v1's "no limit" (a page-rounded 2^63)
			return 0
		}
		return int64(float64(n) * memoryLimitShare)
	}
	return 0
}

// setMemoryLimit applies containerMemoryLimit, so that at full speed the
// garbage collector works harder instead of the container being killed.
func setMemoryLimit() {
	if n := containerMemoryLimit(os.Getenv, os.ReadFile); n > 0 {
		debug.SetMemoryLimit(n)
	}
}

// logMemoryLimit says which soft memory limit the Go runtime works under
// and where it came from, so an operator sees it (the runtime is silent).
func logMemoryLimit(log zerolog.Logger, getenv func(string) string) {
	n := debug.SetMemoryLimit(-1) // -1 reads without changing
	switch {
	case n == math.MaxInt64:
		log.Info().Msg("Go memory limit: none (no GOMEMLIMIT, no container limit); the heap grows with the load")
	case getenv("GOMEMLIMIT") != "":
		log.Info().Int64("bytes", n).Str("from", "GOMEMLIMIT").Msg("Go memory limit")
	default:
		log.Info().Int64("bytes", n).Str("from", "container memory limit × 0.9").Msg("Go memory limit")
	}
}
