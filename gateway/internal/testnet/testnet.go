// Package testnet holds network helpers for the gateway's tests.
package testnet

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// ClosedAddr returns a loopback address that was free a moment ago and
// that nothing listens on now: connections to it are refused, as to a
// receiver that is down, and a server can be started on it later.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
