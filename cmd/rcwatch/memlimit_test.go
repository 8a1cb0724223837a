package main

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
)

func TestContainerMemoryLimit(t *testing.T) {
	tests := []struct {
		name  string
		env   string
		files map[string]string
		want  int64
	}{
		{"cgroup v2 limit", "", map[string]string{"/sys/fs/cgroup/memory.max": "1073741824\n"}, 966367641},
		{"cgroup v2 no limit", "", map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, 0},
		{"cgroup v1 limit", "", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, 483183820},
		{"cgroup v1 no limit", "", map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"GOMEMLIMIT set wins", "300MiB", map[string]string{"/sys/fs/cgroup/memory.max": "1073741824\n"}, 0},
		{"no cgroup", "", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOMEMLIMIT" {
					return tc.env
				}
				return ""
			}
			read := func(p string) ([]byte, error) {
				if v, ok := tc.files[p]; ok {
					return []byte(v), nil
				}
				return nil, errors.Join(fs.ErrNotExist)
			}
			assert.Equal(t, tc.want, containerMemoryLimit(getenv, read))
		})
	}
}

func TestLogMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	tests := []struct {
		name  string
		limit int64
		env   string
		want  string
	}{
		{"none", math.MaxInt64, "", `"message":"Go memory limit: none`},
		{"from GOMEMLIMIT", 300 << 20, "300MiB", `"bytes":314572800,"from":"GOMEMLIMIT"`},
		{"from the container", 400 << 20, "", `"bytes":419430400,"from":"container memory limit × 0.9"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetMemoryLimit(tc.limit)
			var buf bytes.Buffer
			logMemoryLimit(zerolog.New(&buf), func(string) string { return tc.env })
			assert.Contains(t, buf.String(), tc.want)
		})
	}
}
