//go:build !race

// The race detector allows at most 8,128 live goroutines; a thousand paho
// clients plus the broker's side of their connections need more, so this
// test runs only without -race.

package firmwaresim

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFleetThousandButtons checks that 1,000 buttons, each with its own
// connection, connect and report in one process.
func TestFleetThousandButtons(t *testing.T) {
	if testing.Short() {
		t.Skip("connects 1,000 MQTT clients")
	}
	tb := startBroker(t, freeAddr(t))
	const n = 1000
	f, err := NewFleet(FleetConfig{
		Broker: tb.url(), Site: "big", Buttons: n,
		Heartbeat: 2 * time.Second, DuressRate: 5, Seed: 1,
	})
	require.NoError(t, err)
	start := time.Now()
	runFleet(t, f)

	require.Eventually(t, func() bool { return f.Stats().Connected == n }, 60*time.Second, 50*time.Millisecond)
	connected := time.Since(start)
	require.Eventually(t, func() bool {
		devs := map[string]bool{}
		for _, m := range tb.messages() {
			devs[m.Topic] = true
		}
		return len(devs) == n
	}, 60*time.Second, 50*time.Millisecond)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d buttons connected in %s, all reported in %s; goroutines %d (broker included), heap in use %d MiB, %s",
		n, connected.Round(time.Millisecond), time.Since(start).Round(time.Millisecond),
		runtime.NumGoroutine(), ms.HeapInuse>>20, f.Stats())
}
