package s3test

import (
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// CountingProxy forwards TCP to a target and counts the bytes sent
// upstream: how a test sees how much of an upload was sent again after a
// restart.
type CountingProxy struct {
	Addr string // host:port to connect to instead of the target
	up   atomic.Int64
}

// Up returns the bytes sent upstream so far.
func (p *CountingProxy) Up() int64 { return p.up.Load() }

// StartCountingProxy listens on a free loopback port until the test ends.
func StartCountingProxy(t testing.TB, target string) *CountingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &CountingProxy{Addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(c, u); c.Close() }()
				n, _ := io.Copy(u, c)
				p.up.Add(n)
			}()
		}
	}()
	return p
}
