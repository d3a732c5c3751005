package firmwaresim

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// TestBrokerRestartDeliversQueuedEvents checks the promise the gateway's
// durability rests on: a button keeps what it publishes while the broker is
// down and delivers it, in order, once the broker is back on the same port.
func TestBrokerRestartDeliversQueuedEvents(t *testing.T) {
	addr := freeAddr(t)
	tb1 := startBroker(t, addr)
	b := newTestButton(t, tb1, ButtonConfig{Device: "btn-r"})

	before, err := b.Heartbeat(t.Context())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(tb1.messages()) == 1 }, waitFor, 5*time.Millisecond)

	tb1.stop()
	require.Eventually(t, func() bool { return !b.Connected() }, waitFor, 5*time.Millisecond)

	// Publish while the broker is down: paho must queue, not drop.
	var sent []Press
	for _, send := range []func(context.Context) (Press, error){b.Duress, b.Heartbeat, b.Cancel, b.Heartbeat} {
		p, err := send(t.Context())
		require.NoError(t, err, "publishing while disconnected must queue the event")
		sent = append(sent, p)
	}
	// One event is in paho's store, the others in the button's queue.
	require.Eventually(t, func() bool { return b.Queued() == len(sent) && b.store.inFlight() == 1 }, waitFor, time.Millisecond)
	assert.Equal(t, len(sent), b.Stats().Queued)

	tb2 := startBroker(t, addr)
	require.Eventually(t, func() bool { return len(tb2.messages()) >= len(sent) }, waitFor, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	require.NoError(t, b.Flush(ctx))
	assert.Zero(t, b.Queued())

	got := tb2.decoded()
	require.Len(t, got, len(sent), "each queued event delivered exactly once")
	for i, p := range sent {
		assert.Equal(t, p.Seq, got[i].Event.Seq, "event %d in publication order", i)
		assert.Equal(t, p.ID, got[i].Event.ID)
		assert.Equal(t, p.Type, got[i].Event.Type)
		assert.Greater(t, got[i].Event.Seq, before.Seq)
	}

	// The button resubscribed on the new broker (which has no memory of its
	// session), so commands reach it again.
	tb2.answerDuress()
	require.Eventually(t, b.Connected, waitFor, 5*time.Millisecond)
	var rtt time.Duration
	require.Eventually(t, func() bool {
		// Wait for the resubscription to land before pressing, the one
		// thing a fresh broker session cannot do for us.
		p, err := b.Duress(t.Context())
		if !assert.NoError(t, err) {
			return false
		}
		c, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		rtt, err = b.WaitReceived(c, p.Seq)
		return err == nil
	}, waitFor, time.Millisecond)
	assert.Positive(t, rtt)
}

// TestFleetStartsWhileBrokerDown checks that buttons started before the
// broker exists queue their events and deliver them once it appears.
func TestFleetStartsWhileBrokerDown(t *testing.T) {
	addr := freeAddr(t)
	f, err := NewFleet(FleetConfig{
		Broker: "tcp://" + addr, Site: "early", Buttons: 3,
		Heartbeat: 20 * time.Millisecond, ConnectTimeout: 20 * time.Millisecond,
		ReconnectInterval: 50 * time.Millisecond, Seed: 9,
	})
	require.NoError(t, err)
	runFleet(t, f)
	require.Eventually(t, func() bool { return f.Stats().Queued >= 6 }, waitFor, 5*time.Millisecond)
	assert.Zero(t, f.Stats().Connected)

	tb := startBroker(t, addr)
	require.Eventually(t, func() bool { return f.Stats().Connected == 3 }, waitFor, 5*time.Millisecond)
	require.Eventually(t, func() bool { return f.Stats().Queued == 0 }, waitFor, 5*time.Millisecond)

	// Heartbeats published before the first connection arrive, in seq order
	// per device.
	last := map[string]uint64{}
	for _, d := range tb.decoded() {
		ev := d.Event
		assert.Greater(t, ev.Seq, last[ev.Device], "%s seq order", ev.Device)
		last[ev.Device] = ev.Seq
	}
	assert.Len(t, last, 3)
	assert.GreaterOrEqual(t, len(ofType(tb.decoded(), devices.TypeHeartbeat))+len(ofType(tb.decoded(), devices.TypeBattery)), 6)
}
