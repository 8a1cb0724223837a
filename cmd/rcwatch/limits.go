package main

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/rcwatch/rcwatch/pipeline"
)

// limitFlags set the streams' byte and age limits (every stage that ensures
// the streams takes them; set them alike on every stage of a cluster).
type limitFlags struct {
	MaxBytes map[string]string
	MaxAge   map[string]string
}

func (l *limitFlags) register(fs *pflag.FlagSet) {
	fs.StringToStringVar(&l.MaxBytes, "stream-max-bytes", nil,
		"byte limits by stream, e.g. RECENTCHANGE=2GiB,ALERTS=256MiB (default 700MiB, 128MiB, DEADLETTER 64MiB, AUDIT 64MiB: 1 GiB with the KV buckets); the oldest messages go beyond it")
	fs.StringToStringVar(&l.MaxAge, "stream-max-age", nil,
		"age limits by stream, e.g. RECENTCHANGE=2d (default RECENTCHANGE 7d, ALERTS 30d, DEADLETTER 30d, AUDIT 90d)")
}

// limits parses the flags into Topology.Limits and validates them.
func (l limitFlags) limits() (map[string]pipeline.Limits, error) {
	out := map[string]pipeline.Limits{}
	for k, v := range l.MaxBytes {
		n, err := parseBytes(v)
		if err != nil {
			return nil, fmt.Errorf("--stream-max-bytes %s=%s: %w", k, v, err)
		}
		name := strings.ToUpper(k)
		lim := out[name]
		lim.MaxBytes = n
		out[name] = lim
	}
	for k, v := range l.MaxAge {
		d, err := parseAge(v)
		if err != nil {
			return nil, fmt.Errorf("--stream-max-age %s=%s: %w", k, v, err)
		}
		name := strings.ToUpper(k)
		lim := out[name]
		lim.MaxAge = d
		out[name] = lim
	}
	for name, lim := range out {
		if lim.MaxBytes < 0 || lim.MaxAge < 0 {
			return nil, fmt.Errorf("stream %s: limits must be positive", name)
		}
	}
	return out, nil
}

// parseBytes reads 123, 64KiB, 700MiB, 2GiB, 1.5GB (binary and decimal units).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("want a positive size such as 700MiB or 2GiB")
	}
	v := f * mult
	if v > 1<<50 {
		return 0, fmt.Errorf("size over 1 PiB")
	}
	return int64(v), nil
}

// parseAge reads Go durations plus whole days ("7d").
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, fmt.Errorf("want a positive number of days up to 36500, or a duration such as 36h")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive duration such as 36h or 7d")
	}
	return d, nil
}

// validate refuses flag values that cannot work, naming the flag.
func (c commonFlags) validate() error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("--stream-replicas %d: want 1 to 5 (NATS allows at most 5)", c.Replicas)
	}
	if c.OpsAddr != "" {
		_, port, err := net.SplitHostPort(c.OpsAddr)
		if err != nil {
			return fmt.Errorf("--ops-addr %q: want host:port, e.g. 127.0.0.1:9090: %w", c.OpsAddr, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("--ops-addr %q: port %q out of range", c.OpsAddr, port)
		}
	}
	return nil
}

// validate refuses an empty --data-dir and a --nats-port out of range.
func (e embeddedFlags) validate() error {
	if strings.TrimSpace(e.DataDir) == "" {
		return fmt.Errorf("--data-dir is empty")
	}
	if e.Listen < -1 || e.Listen > 65535 {
		return fmt.Errorf("--nats-port %d: want 0 (in-process only), -1 (any free port) or 1-65535", e.Listen)
	}
	return nil
}
