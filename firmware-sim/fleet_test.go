package firmwaresim

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// runFleet starts f.Run and returns a function that stops it and waits.
func runFleet(t *testing.T, f *Fleet) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("fleet Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestFleetFaultModes(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	f, err := NewFleet(FleetConfig{
		Broker: tb.url(), Site: "faulty", Buttons: 6,
		Heartbeat: 5 * time.Millisecond,
		Faults:    Faults{MalformedRate: 0.3, DuplicateRate: 0.2},
		Seed:      7, ReconnectInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	stop := runFleet(t, f)
	require.Eventually(t, func() bool { return f.Stats().Messages() >= 800 }, waitFor, 10*time.Millisecond)
	stop()

	// Everything counted reached the broker: nothing was published after
	// Run returned, and Run returned only after every button had handed its
	// last message to the connection.
	s := f.Stats()
	require.Eventually(t, func() bool { return uint64(len(tb.messages())) == s.Messages() }, waitFor, 10*time.Millisecond,
		"broker has %d messages, stats say %d (%s)", len(tb.messages()), s.Messages(), s)

	byReason := map[string]uint64{}
	type key struct {
		device string
		seq    uint64
	}
	copies := map[key][]devices.Event{}
	for _, m := range tb.messages() {
		d, err := devices.Decode(m.Topic, m.Payload, time.Now())
		if err != nil {
			byReason[devices.Reason(err)]++
			continue
		}
		k := key{d.Event.Device, d.Event.Seq}
		copies[k] = append(copies[k], d.Event)
	}

	// Every malformed payload is rejected, for the reason its kind implies.
	wantByReason := map[string]uint64{}
	for kind, n := range s.Malformed {
		wantByReason[wantReason[kind]] += n
		assert.Positive(t, n, "kind %s never injected", kind)
	}
	assert.Equal(t, wantByReason, byReason)
	malformedShare := float64(s.MalformedTotal()) / float64(s.MalformedTotal()+s.PublishedTotal())
	assert.InDelta(t, 0.3, malformedShare, 0.08, "malformed share")

	// Duplicates share seq and id; nothing else repeats a seq.
	var dups uint64
	for k, evs := range copies {
		switch len(evs) {
		case 1:
		case 2:
			dups++
			assert.Equal(t, evs[0], evs[1], "duplicate of %v differs", k)
		default:
			t.Errorf("%v published %d times", k, len(evs))
		}
	}
	assert.Equal(t, s.Duplicates, dups)
	assert.EqualValues(t, s.PublishedTotal(), len(copies))
	assert.InDelta(t, 0.2, float64(dups)/float64(s.PublishedTotal()), 0.07, "duplicate share")
}

func TestFleetDuressIsConfirmed(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	tb.answerDuress()
	f, err := NewFleet(FleetConfig{
		Broker: tb.url(), Site: "busy", Buttons: 10,
		Heartbeat: time.Hour, DuressRate: 100,
		Lat: 53.8008, Lon: -1.5491,
		Seed: 3, ReconnectInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	runFleet(t, f)

	require.Eventually(t, func() bool {
		s := f.Stats()
		return s.Connected == 10 && s.Confirmed >= 20
	}, waitFor, 10*time.Millisecond)

	duress := ofType(tb.decoded(), devices.TypeDuress)
	require.NotEmpty(t, duress)
	devs := map[string]bool{}
	for _, ev := range duress {
		devs[ev.Device] = true
		require.NotNil(t, ev.Loc)
		assert.InDelta(t, 53.8008, ev.Loc.Lat, 0.03)
		assert.InDelta(t, -1.5491, ev.Loc.Lon, 0.03)
	}
	assert.Greater(t, len(devs), 1, "presses go to random buttons")
	s := f.Stats()
	assert.Positive(t, s.RoundTripMean)
	assert.GreaterOrEqual(t, s.RoundTripMax, s.RoundTripMean)
	assert.Contains(t, s.String(), "round_trip_mean=")
}

func TestFleetJittersFirstHeartbeats(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	const n = 20
	f, err := NewFleet(FleetConfig{
		Broker: tb.url(), Site: "calm", Buttons: n,
		Heartbeat: 400 * time.Millisecond, Seed: 11,
		ReconnectInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	start := time.Now()
	runFleet(t, f)

	// Every button reports once within about one interval, but not all at once.
	require.Eventually(t, func() bool {
		devs := map[string]bool{}
		for _, d := range tb.decoded() {
			devs[d.Event.Device] = true
		}
		return len(devs) == n
	}, waitFor, 10*time.Millisecond)
	var first, last time.Time
	seen := map[string]bool{}
	for _, m := range tb.messages() {
		d, err := devices.Decode(m.Topic, m.Payload, time.Now())
		require.NoError(t, err)
		if seen[d.Event.Device] {
			continue
		}
		seen[d.Event.Device] = true
		if first.IsZero() {
			first = m.At
		}
		last = m.At
	}
	assert.Greater(t, last.Sub(first), 100*time.Millisecond, "first heartbeats should spread over the interval (started %s ago)", time.Since(start))
	for i, b := range f.Buttons() {
		assert.Equal(t, fmt.Sprintf("btn-%04d", i+1), b.Device())
		assert.Equal(t, "sim-calm-"+b.Device(), b.ClientID())
	}
}

func TestFleetClockSkewFraction(t *testing.T) {
	for _, tt := range []struct {
		fraction float64
		lo, hi   int
	}{{0, 200, 200}, {1, 200, 200}, {0.25, 30, 70}} {
		t.Run(fmt.Sprint(tt.fraction), func(t *testing.T) {
			f, err := NewFleet(FleetConfig{
				Broker: "tcp://127.0.0.1:1883", Site: "s", Buttons: 200,
				ClockSkew: -2 * time.Hour, SkewFraction: tt.fraction, Seed: 5,
			})
			require.NoError(t, err)
			skewed := 0
			for _, b := range f.Buttons() {
				switch b.cfg.ClockSkew {
				case -2 * time.Hour:
					skewed++
				case 0:
				default:
					t.Fatalf("%s has skew %s", b.Device(), b.cfg.ClockSkew)
				}
			}
			assert.GreaterOrEqual(t, skewed, tt.lo)
			assert.LessOrEqual(t, skewed, tt.hi)
		})
	}
}

func TestFleetConfigValidation(t *testing.T) {
	ok := FleetConfig{Broker: "tcp://127.0.0.1:1883", Site: "s", Buttons: 1}
	tests := []struct {
		name   string
		change func(*FleetConfig)
		want   string
	}{
		{"valid", func(*FleetConfig) {}, ""},
		{"no buttons", func(c *FleetConfig) { c.Buttons = 0 }, "at least one button"},
		{"negative rate", func(c *FleetConfig) { c.DuressRate = -1 }, "duress rate -1"},
		{"skew fraction", func(c *FleetConfig) { c.SkewFraction = 2 }, "skew fraction 2"},
		{"malformed rate", func(c *FleetConfig) { c.MalformedRate = 2 }, "malformed rate 2"},
		{"bad site", func(c *FleetConfig) { c.Site = "" }, "site"},
		{"bad broker", func(c *FleetConfig) { c.Broker = "localhost:1883" }, "scheme must be tcp or ssl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			_, err := NewFleet(cfg)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestFleetRunsOnce(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	f, err := NewFleet(FleetConfig{Broker: tb.url(), Site: "s", Buttons: 1, Heartbeat: time.Hour})
	require.NoError(t, err)
	stop := runFleet(t, f)
	stop()
	assert.Error(t, f.Run(t.Context()))
}
