package app

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrokerDownRaisesOneAlert: a gateway that cannot reach its broker
// raises one mqtt_down alert after the grace period, not one per check.
func TestBrokerDownRaisesOneAlert(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	cfg := DefaultConfig()
	cfg.State, cfg.HTTP = t.TempDir(), "127.0.0.1:0"
	cfg.MQTT.URL = "tcp://" + addr
	a, err := New(cfg, nil)
	require.NoError(t, err)
	a.brokerCheckEvery, a.brokerAlertAfter = 10*time.Millisecond, 50*time.Millisecond
	runApp(t, a)

	count := func() int {
		list, err := a.engine.List(0)
		require.NoError(t, err)
		n := 0
		for _, v := range list {
			if v.Event == EventMQTTDown {
				n++
				assert.Contains(t, v.Text, addr)
				assert.Equal(t, 2, v.Priority)
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return count() > 0 }, 10*time.Second, 10*time.Millisecond)
	// Many more checks pass while it stays down: still one alert.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		require.Equal(t, 1, count())
		time.Sleep(20 * time.Millisecond)
	}
}
