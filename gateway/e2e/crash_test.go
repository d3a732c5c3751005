package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
)

// world is a Mosquitto broker, n registered buttons, an ARC receiver and a
// webhook receiver, with the vigil arguments that connect them.
type world struct {
	broker, state string
	arc           *arc
	hooks         *hooks
	args          []string
}

func newWorld(t *testing.T, n int) *world {
	t.Helper()
	w := &world{broker: startMosquitto(t), state: t.TempDir(), arc: startARC(t, nil), hooks: startHooks(t, hookSecret)}
	addDevices(t, w.state, site, n)
	w.args = []string{"--mqtt", w.broker, "--arc", w.arc.url(), "--webhook", w.hooks.srv.URL, "--webhook-secret-file", secretFile(t)}
	return w
}

// pressAll connects n buttons and has each press duress once, spread over
// spread, returning the idempotency keys it published.
func pressAll(t *testing.T, broker string, n int, spread time.Duration) (keys []string, buttons []*firmwaresim.Button) {
	t.Helper()
	buttons = make([]*firmwaresim.Button, n)
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: broker, Site: site, Device: deviceID(i + 1)})
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			buttons[i] = b
			return b.Connect(cctx)
		})
	}
	require.NoError(t, g.Wait())
	t.Cleanup(func() {
		for _, b := range buttons {
			b.Close()
		}
	})
	var mu sync.Mutex
	var wg sync.WaitGroup
	gap := spread / time.Duration(n)
	for i, b := range buttons {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * gap) // stagger presses so the crash lands mid-stream
			p, err := b.Duress(context.Background())
			assert.NoError(t, err)
			mu.Lock()
			keys = append(keys, fmt.Sprintf("%s:%d", b.Device(), p.Seq))
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, b := range buttons {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		require.NoError(t, b.Flush(ctx), "the broker accepted every press")
		cancel()
	}
	return keys, buttons
}

// TestCrashLosesNothing kills Vigil with SIGKILL while 500 duress events are in
// flight, restarts it, and checks that every one reaches both receivers, with
// duplicates only under the same idempotency key.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs in the full suite")
	}
	const n = 500
	w := newWorld(t, n)
	broker, state, rcv, hk, args := w.broker, w.state, w.arc, w.hooks, w.args
	v := startVigil(t, state, args...)

	pressed := make(chan []string, 1)
	go func() {
		keys, _ := pressAll(t, broker, n, 2*time.Second)
		pressed <- keys
	}()
	// Kill once deliveries have started but long before all are through.
	waitFor(t, 60*time.Second, "first deliveries", func() bool { return len(rcv.alarms()) >= 20 })
	v.kill9(t)
	before := len(rcv.alarms())
	t.Logf("killed after %d of %d alarms reached the ARC", before, n)
	require.Less(t, before, n, "the kill must land while events are in flight")

	v = startVigil(t, state, args...)
	keys := <-pressed
	require.Len(t, keys, n)
	waitFor(t, 120*time.Second, "every alarm at the ARC", func() bool { return len(rcv.alarms()) == n })
	waitFor(t, 60*time.Second, "every alarm at the webhook", func() bool { k, _ := hk.snapshot(); return len(k) == n })

	got, bad := hk.snapshot()
	assert.Zero(t, bad)
	for _, k := range keys {
		assert.Positive(t, got[k], "webhook missing %s", k)
	}
	assert.Len(t, got, n, "no key the buttons did not publish")
	zones := rcv.alarms()
	for i := 1; i <= n; i++ {
		assert.Positive(t, zones[fmt.Sprintf("%03d", i)], "ARC missing zone %03d", i)
	}
	dups := 0
	for _, c := range zones {
		dups += c - 1
	}
	t.Logf("ARC duplicates after the crash: %d (same alarm resent; the ARC dedupes on account, zone and [H] time)", dups)
	al := v.alerts(t)
	assert.Equal(t, n, len(al.Alerts), "one alert per press, none doubled by redelivery")
	assert.Zero(t, al.Undelivered)
}

// TestDowntimeLosesNothing stops Vigil for 30 s while buttons keep publishing;
// the persistent session at the broker holds their events and every one is
// delivered after the restart.
func TestDowntimeLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("downtime test takes 30 s")
	}
	const n = 20
	w := newWorld(t, n)
	broker, state, rcv, hk, args := w.broker, w.state, w.arc, w.hooks, w.args
	v := startVigil(t, state, args...)
	v.stop(t)
	downSince := time.Now()

	// While Vigil is down: every button presses duress and heartbeats.
	keys, buttons := pressAll(t, broker, n, 5*time.Second)
	heartbeats := 0
	for range 3 {
		for _, b := range buttons {
			_, err := b.Heartbeat(context.Background())
			require.NoError(t, err)
			heartbeats++
		}
	}
	for _, b := range buttons {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, b.Flush(ctx))
		cancel()
	}
	time.Sleep(30*time.Second - time.Since(downSince)) // the outage itself, not a wait for a condition
	assert.Empty(t, rcv.alarms(), "nothing can arrive while the gateway is down")

	v = startVigil(t, state, args...)
	waitFor(t, 30*time.Second, "every alarm at the ARC", func() bool { return len(rcv.alarms()) == n })
	waitFor(t, 30*time.Second, "every alarm at the webhook", func() bool { k, _ := hk.snapshot(); return len(k) == n })
	got, _ := hk.snapshot()
	for _, k := range keys {
		assert.Positive(t, got[k], "webhook missing %s", k)
	}
	waitFor(t, 30*time.Second, "every heartbeat journaled", func() bool {
		return metric(t, v.http, `vigil_events_total{source="mqtt",type="heartbeat"}`) == heartbeats
	})
}

// metric reads one sample from /metrics (0 if absent).
func metric(t testing.TB, httpAddr, series string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			require.NoError(t, err)
			return int(v)
		}
	}
	return 0
}
