// Package freeport finds a free TCP port on loopback for a test server (the
// embedded NATS server, ngircd, php -S, a process under test). It is the one
// free-port helper of the test bed.
package freeport

import (
	"fmt"
	"net"
	"testing"
)

// Get returns a TCP port on 127.0.0.1 that was free a moment ago.
func Get() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Must is Get for a test: it fails the test when no port can be had.
func Must(tb testing.TB) int {
	tb.Helper()
	p, err := Get()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
