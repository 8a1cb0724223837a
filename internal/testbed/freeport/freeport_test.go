package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rcwatch/rcwatch/internal/testbed/freeport"
)

// The port is free: a listener can take it.
func TestMustIsListenable(t *testing.T) {
	p := freeport.Must(t)
	require.Positive(t, p)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	require.NoError(t, err)
	require.NoError(t, l.Close())
}
