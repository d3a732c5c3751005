package app

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// notifySocket is a service manager's notification socket: it collects the
// datagrams sd_notify sends.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A short path: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "sd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	s := &notifySocket{conn: conn, msgs: make(chan string, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return s
}

// next returns the next datagram that satisfies match, failing after d.
func (s *notifySocket) next(t *testing.T, d time.Duration, what string, match func(string) bool) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-s.msgs:
			require.True(t, ok, "notify socket closed while waiting for %s", what)
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s from the gateway within %s", what, d)
		}
	}
}

func has(line string) func(string) bool {
	return func(m string) bool { return strings.Contains("\n"+m+"\n", "\n"+line+"\n") }
}

func stalledStatus(m string) bool { return strings.Contains(m, "STATUS=alert pipeline stalled") }

// Under systemd the gateway says READY=1 once it runs, feeds the watchdog
// while the alert pipeline answers, stops feeding it while a loop is stuck
// (here: the state database held by a writer that does not finish, as a
// hung fsync would), starts again when it recovers, brackets a reload, and
// says STOPPING=1 at shutdown.
func TestServiceNotifications(t *testing.T) {
	sock := listenNotify(t)
	const interval = 400 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	stop := runApp(t, a)

	ready := sock.next(t, 20*time.Second, "READY=1", has("READY=1"))
	assert.Contains(t, ready, "STATUS=running; MQTT", "a readable status comes with READY")
	for range 3 {
		sock.next(t, 10*interval, "WATCHDOG=1", has("WATCHDOG=1"))
	}

	// Stall the pipeline: a write transaction that does not end.
	locked, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unlock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unlock) // registered after the stop: runs before it, even if the test fails here
	go a.db.Update(func(*bolt.Tx) error { close(locked); <-release; return nil })
	<-locked
	// Two stalled rounds in a row: the first probe after the lock may still
	// have been answered, but from now on nothing can be.
	for {
		sock.next(t, 10*interval, "a stalled status", stalledStatus)
		m := sock.next(t, 10*interval, "the next round", func(m string) bool { return has("WATCHDOG=1")(m) || stalledStatus(m) })
		if stalledStatus(m) {
			assert.Contains(t, m, "timer loop has not answered", "the status names the stuck loop")
			break
		}
	}
	quiet := time.After(3 * interval)
	for waiting := true; waiting; {
		select {
		case m := <-sock.msgs:
			require.False(t, has("WATCHDOG=1")(m), "no watchdog ping while the pipeline is stuck: got %q", m)
		case <-quiet:
			waiting = false
		}
	}
	unlock()
	sock.next(t, 10*interval, "WATCHDOG=1 after recovery", has("WATCHDOG=1"))

	// A reload is bracketed by RELOADING=1 and READY=1, also when refused.
	require.Error(t, a.Reload(context.Background()), "no configuration source")
	m := sock.next(t, 5*time.Second, "RELOADING=1", has("RELOADING=1"))
	assert.Contains(t, m, "MONOTONIC_USEC=")
	m = sock.next(t, 5*time.Second, "READY=1 after the reload", has("READY=1"))
	assert.Contains(t, m, "reload refused")

	require.NoError(t, stop())
	sock.next(t, 5*time.Second, "STOPPING=1", has("STOPPING=1"))
}
