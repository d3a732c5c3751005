package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/sysclock"
)

// fakeClock is a sysclock.Reader the test sets, counting readings.
type fakeClock struct {
	mu    sync.Mutex
	state sysclock.State
	reads int
}

func (f *fakeClock) Read() sysclock.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return sysclock.Status{State: f.state}
}

func (f *fakeClock) set(s sysclock.State) {
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
}

func (f *fakeClock) readings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func clockAlerts(t *testing.T, a *App) []alert.View {
	t.Helper()
	all, err := a.engine.List(0)
	require.NoError(t, err)
	var out []alert.View
	for _, v := range all {
		if v.Event == "clock_unsynchronised" {
			out = append(out, v)
		}
	}
	return out
}

// clockGauge is vigil_clock_synchronised as the registry exports it.
func clockGauge(t *testing.T, a *App) float64 {
	t.Helper()
	families, err := a.metrics.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "vigil_clock_synchronised" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	require.FailNow(t, "vigil_clock_synchronised is not exported")
	return 0
}

// TestClockUnsynchronised runs a gateway on a clock that is not
// synchronised: the gauge says so, one alert is raised however long it
// lasts, evidence accepted meanwhile is marked, and recovery is noted.
func TestClockUnsynchronised(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	fc := &fakeClock{state: sysclock.Unsynchronised}
	a.clock, a.clockEvery, a.clockAlertAfter = fc, 2*time.Millisecond, 10*time.Millisecond
	runApp(t, a)

	eventually(t, func() bool { return len(clockAlerts(t, a)) == 1 }, "the clock alert")
	al := clockAlerts(t, a)[0]
	assert.Equal(t, alert.P2, al.Priority)
	assert.Equal(t, "demo", al.Site)
	assert.Contains(t, al.Text, "not been synchronised to a time source")
	assert.Equal(t, 0.0, clockGauge(t, a))
	// Many more readings later, still one alert for the one spell.
	n := fc.readings()
	eventually(t, func() bool { return fc.readings() > n+10 }, "more readings")
	assert.Len(t, clockAlerts(t, a), 1)

	// A clip accepted now is marked in its ledger entry.
	_, err = a.registry.Add(registry.Device{ID: "cam-1", Kind: registry.KindCamera, Site: "demo", Wearer: "Nurse A"}, time.Now())
	require.NoError(t, err)
	accept := func(clip string) {
		data := []byte("footage " + clip)
		p := filepath.Join(t.TempDir(), clip)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		sum := sha256.Sum256(data)
		d := hex.EncodeToString(sum[:])
		now := time.Now().UTC()
		require.NoError(t, a.evidence.Accept(ctx, ingest.Spooled{Meta: ingest.Meta{Camera: "cam-1", Clip: clip, SHA256: d, Size: int64(len(data)),
			Start: now.Add(-time.Minute), End: now}, Path: p, Digest: d, Ingest: "tus", Received: now}))
	}
	accept("c1")
	e, err := a.evidence.Ledger().Get(ctx, "cam-1", "c1")
	require.NoError(t, err)
	assert.True(t, e.ClockUnsynchronised)

	// NTP answers: the gauge rises, the alert gets a note, new evidence is
	// not marked.
	fc.set(sysclock.Synchronised)
	eventually(t, func() bool { return clockGauge(t, a) == 1 }, "the gauge at 1")
	eventually(t, func() bool {
		got := clockAlerts(t, a)
		return len(got) == 1 && len(got[0].Notes) == 1
	}, "a note on the alert")
	assert.Equal(t, "the clock is synchronised again", clockAlerts(t, a)[0].Notes[0].Text)
	accept("c2")
	e, err = a.evidence.Ledger().Get(ctx, "cam-1", "c2")
	require.NoError(t, err)
	assert.False(t, e.ClockUnsynchronised)

	// Lost again: a new spell, a new alert.
	fc.set(sysclock.Unsynchronised)
	eventually(t, func() bool { return len(clockAlerts(t, a)) == 2 }, "a second alert")
	assert.Equal(t, 0.0, clockGauge(t, a))
}
