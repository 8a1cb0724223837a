package main

import (
	"errors"
	"io/fs"
	"testing"

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
