package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// TestSerialPendantEndToEnd: pendants behind a radio receiver on a serial
// line (a real pty pair) raise duress alarms that reach the ARC; the line
// carries noise, truncated frames, replays and forgeries, which are rejected
// by reason and never raise anything; losing the port raises an alert.
func TestSerialPendantEndToEnd(t *testing.T) {
	state := t.TempDir()
	keys := map[string][]byte{"pend-1": []byte("0123456789abcdef0123456789abcdef"), "pend-2": []byte("fedcba9876543210fedcba9876543210")}
	reg := app.OpenRegistry(state)
	for id, k := range keys {
		_, err := reg.Add(registry.Device{ID: id, Kind: registry.KindButton, Site: site, Wearer: "Carer " + id, SerialKey: hex.EncodeToString(k)}, time.Now())
		require.NoError(t, err)
	}
	link := filepath.Join(t.TempDir(), "ttyVigil")
	line, err := firmwaresim.OpenPTY(link)
	require.NoError(t, err)
	rcv := startARC(t, nil)
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("serial:\n  - path: %s\n    site: %s\narc:\n  - url: %q\n", link, site, rcv.url())), 0o600))
	v := startVigil(t, state, "--config", cfg, "--broker-listen", testnet.ClosedAddr(t))
	waitFor(t, 10*time.Second, "the port to open", func() bool { return metric(t, v.http, `vigil_serial_port_up{port="`+link+`"}`) == 1 })

	relayKeys := map[string][]byte{"pend-9": []byte("an unregistered pendant's own key")}
	for id, k := range keys {
		relayKeys[id] = k
	}
	relay, err := firmwaresim.NewSerialRelay(firmwaresim.SerialRelayConfig{Line: line.Master, Pendants: relayKeys, Site: site,
		RetransmitInterval: 100 * time.Millisecond, Seed: 3,
		SerialFaults: firmwaresim.SerialFaults{Noise: 0.3, Truncate: 0.2, Replay: 0.3, WrongKey: 0.2}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- relay.Run(ctx) }()

	var presses []firmwaresim.SerialPress
	const n = 24
	for i := range n {
		id := []string{"pend-1", "pend-2"}[i%2]
		typ := devices.TypeHeartbeat
		if i >= n-2 {
			typ = devices.TypeDuress
		}
		p, err := relay.Press(ctx, id, typ)
		require.NoError(t, err)
		presses = append(presses, p)
	}
	for _, p := range presses {
		_, err := relay.WaitAcked(ctx, p.Device, p.Counter)
		require.NoError(t, err, "every press is acknowledged once durable, despite the faults")
	}
	waitFor(t, 10*time.Second, "both duress alarms at the ARC", func() bool { return len(rcv.alarms()) == 2 })
	al := v.alerts(t)
	duress := 0
	for _, a := range al.Alerts {
		if a.Key == fmt.Sprintf("%s:%d", presses[n-2].Device, presses[n-2].Counter) || a.Key == fmt.Sprintf("%s:%d", presses[n-1].Device, presses[n-1].Counter) {
			duress++
			assert.True(t, a.Verified)
		}
	}
	assert.Equal(t, 2, duress, "one alert per duress, replays and retransmissions notwithstanding")
	st := relay.Stats()
	t.Logf("relay: %+v", st)
	require.Positive(t, st.WrongKey, "the seed must exercise forgeries")
	require.Positive(t, st.Replayed, "the seed must exercise replays")
	require.Positive(t, st.Noise+st.Truncated, "the seed must exercise line faults")
	assert.Equal(t, int(st.WrongKey), metric(t, v.http, `vigil_events_rejected_total{reason="mac"}`), "every forgery rejected as such")
	assert.Positive(t, metric(t, v.http, `vigil_events_rejected_total{reason="frame"}`)+metric(t, v.http, `vigil_events_rejected_total{reason="crc"}`))
	assert.Zero(t, st.BadFrames, "every ack the gateway sent verified at the pendant")
	assert.Positive(t, metric(t, v.http, `vigil_events_rejected_total{reason="replay"}`), "replayed frames rejected as replays")

	// A pendant the gateway has no key for: its duress is surfaced to people,
	// unverified, and never reaches the ARC as a verified alarm.
	stranger, err := relay.Press(ctx, "pend-9", devices.TypeDuress)
	require.NoError(t, err)
	strangerKey := fmt.Sprintf("pend-9:%d", stranger.Counter)
	waitFor(t, 10*time.Second, "the unverified alert", func() bool {
		for _, a := range v.alerts(t).Alerts {
			if a.Key == strangerKey {
				assert.False(t, a.Verified)
				return true
			}
		}
		return false
	})
	assert.Len(t, rcv.alarms(), 2, "the ARC still has only the two verified alarms")

	// Unplug the receiver: the gateway raises an alert of its own.
	cancel()
	<-runDone
	require.NoError(t, line.Close())
	waitFor(t, 10*time.Second, "the port-down alert", func() bool {
		for _, a := range v.alerts(t).Alerts {
			if len(a.ID) > 20 && a.ID[:21] == "sys.serial_port_down." {
				return true
			}
		}
		return false
	})
	assert.Equal(t, 0, metric(t, v.http, `vigil_serial_port_up{port="`+link+`"}`))
}
