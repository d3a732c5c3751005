package firmwaresim

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// newTestButton makes and connects a button on tb; cfg fills in the rest.
func newTestButton(t *testing.T, tb *testBroker, cfg ButtonConfig) *Button {
	t.Helper()
	cfg.Broker = tb.url()
	if cfg.Site == "" {
		cfg.Site = "test"
	}
	if cfg.Device == "" {
		cfg.Device = "btn-1"
	}
	if cfg.ReconnectInterval == 0 {
		cfg.ReconnectInterval = 50 * time.Millisecond
	}
	if cfg.ConnectTimeout == 0 {
		// Short, because a mochi broker that is shutting down can accept a
		// reconnecting socket and never answer it.
		cfg.ConnectTimeout = 500 * time.Millisecond
	}
	b, err := NewButton(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	require.NoError(t, b.Connect(ctx))
	t.Cleanup(b.Close)
	return b
}

func TestButtonDuressPublishesValidEvent(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	now := time.Date(2026, 11, 21, 10, 15, 30, 123456789, time.UTC)
	b := newTestButton(t, tb, ButtonConfig{
		Device: "btn-1", Lat: 53.8008, Lon: -1.5491, AccM: 8, Battery: 87,
		Now: func() time.Time { return now },
	})

	p, err := b.Duress(t.Context())
	require.NoError(t, err)
	assert.Equal(t, devices.TypeDuress, p.Type)
	assert.Empty(t, p.Malformed)
	assert.False(t, p.Duplicated)

	require.Eventually(t, func() bool { return len(tb.messages()) == 1 }, waitFor, 5*time.Millisecond)
	m := tb.messages()[0]
	assert.Equal(t, "vigil/v1/test/btn-1/event", m.Topic)
	d, err := devices.Decode(m.Topic, m.Payload, now)
	require.NoError(t, err, "payload %s", m.Payload)
	assert.Empty(t, d.Warnings)
	assert.Equal(t, "test", d.Site)
	ev := d.Event
	assert.Equal(t, 1, ev.V)
	assert.Equal(t, p.ID, ev.ID)
	assert.Equal(t, "btn-1", ev.Device)
	assert.Equal(t, p.Seq, ev.Seq)
	assert.Equal(t, devices.TypeDuress, ev.Type)
	assert.True(t, now.Truncate(time.Millisecond).Equal(ev.TS), "ts %s", ev.TS)
	require.NotNil(t, ev.Loc)
	assert.Equal(t, devices.Location{Lat: 53.8008, Lon: -1.5491, AccM: 8}, *ev.Loc)
	require.NotNil(t, ev.Battery)
	assert.Equal(t, 87, *ev.Battery)

	// The wire form matches the protocol example: UTC with milliseconds.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(m.Payload, &raw))
	assert.Equal(t, "2026-11-21T10:15:30.123Z", raw["ts"])
}

func TestButtonWaitReceived(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	tb.answerDuress()
	b := newTestButton(t, tb, ButtonConfig{Device: "btn-7"})

	p, err := b.Duress(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	rtt, err := b.WaitReceived(ctx, p.Seq)
	require.NoError(t, err)
	assert.Positive(t, rtt)

	c, err := b.WaitConfirmation(ctx, p.Seq)
	require.NoError(t, err)
	assert.Equal(t, Confirmation{Seq: p.Seq, Alert: "btn-7." + strconv.FormatUint(p.Seq, 10), RoundTrip: rtt}, c)
	assert.EqualValues(t, 1, b.Stats().Confirmed)

	_, err = b.WaitReceived(ctx, p.Seq+1000)
	assert.ErrorIs(t, err, ErrUnknownPress)
}

func TestButtonWaitReceivedTimesOut(t *testing.T) {
	tb := startBroker(t, freeAddr(t)) // no responder: the gateway is down
	b := newTestButton(t, tb, ButtonConfig{})
	p, err := b.Duress(t.Context())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = b.WaitReceived(ctx, p.Seq)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestButtonIgnoresStrayCommands(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	b := newTestButton(t, tb, ButtonConfig{Device: "btn-2"})
	cmdTopic := devices.CommandTopic("test", "btn-2")

	require.NoError(t, tb.srv.Publish(cmdTopic, []byte(`{not json`), false, 1))
	stray, err := devices.EncodeCommand(devices.Command{Cmd: devices.CmdAlertReceived, Alert: "old", Seq: 42})
	require.NoError(t, err)
	require.NoError(t, tb.srv.Publish(cmdTopic, stray, false, 1))

	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.BadCommands == 1 && s.Unmatched == 1
	}, waitFor, 5*time.Millisecond)
	assert.Zero(t, b.Stats().Confirmed)
}

func TestButtonRunPublishesHeartbeats(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	b := newTestButton(t, tb, ButtonConfig{Heartbeat: 20 * time.Millisecond, Battery: 55})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	require.Eventually(t, func() bool { return len(ofType(tb.decoded(), devices.TypeHeartbeat)) >= 4 }, waitFor, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return after its context ended")
	}

	hbs := ofType(tb.decoded(), devices.TypeHeartbeat)
	for i, ev := range hbs {
		require.NotNil(t, ev.Battery)
		assert.Equal(t, 55, *ev.Battery)
		if i > 0 {
			assert.Greater(t, ev.Seq, hbs[i-1].Seq, "seq must increase")
			assert.False(t, ev.TS.Before(hbs[i-1].TS), "ts must not go back")
		}
	}
}

func TestButtonSeqsStrictlyIncrease(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	b := newTestButton(t, tb, ButtonConfig{})

	// Four goroutines pressing at once must still reach the broker in seq order.
	const each = 25
	var wg sync.WaitGroup
	for _, send := range []func(context.Context) (Press, error){
		b.Duress, b.Cancel, b.Heartbeat,
		func(ctx context.Context) (Press, error) { return b.Battery(ctx, 50) },
	} {
		wg.Go(func() {
			for range each {
				_, err := send(t.Context())
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	if !assert.Eventually(t, func() bool { return len(tb.messages()) == 4*each }, waitFor, 5*time.Millisecond) {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		t.Fatalf("broker got %d; queue %d in flight %d keys %v connected %v", len(tb.messages()), q, b.store.inFlight(), b.store.All(), b.Connected())
	}
	ds := tb.decoded()
	require.Len(t, ds, 4*each)
	for i := 1; i < len(ds); i++ {
		require.Greater(t, ds[i].Event.Seq, ds[i-1].Event.Seq, "arrival %d", i)
	}
	// The default first seq is the start time in Unix milliseconds.
	assert.InDelta(t, time.Now().UnixMilli(), ds[0].Event.Seq, float64(time.Minute.Milliseconds()))

	s := b.Stats()
	for _, typ := range []devices.Type{devices.TypeDuress, devices.TypeDuressCancel, devices.TypeHeartbeat, devices.TypeBattery} {
		assert.EqualValues(t, each, s.Published[typ], "%s", typ)
	}
}

func TestButtonClockSkew(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	b := newTestButton(t, tb, ButtonConfig{ClockSkew: 10 * time.Minute, Now: func() time.Time { return now }})

	_, err := b.Heartbeat(t.Context())
	require.NoError(t, err)
	_, err = b.Duress(t.Context())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(tb.messages()) == 2 }, waitFor, 5*time.Millisecond)

	ms := tb.messages()
	// A heartbeat from a clock this far ahead is rejected on its timestamp…
	_, err = devices.Decode(ms[0].Topic, ms[0].Payload, now)
	require.Error(t, err)
	assert.Equal(t, "ts", devices.Reason(err))
	// …but a duress is raised anyway, with a warning and the gateway's time.
	d, err := devices.Decode(ms[1].Topic, ms[1].Payload, now)
	require.NoError(t, err)
	assert.NotEmpty(t, d.Warnings)

	var raw struct{ TS time.Time }
	require.NoError(t, json.Unmarshal(ms[1].Payload, &raw))
	assert.True(t, now.Add(10*time.Minute).Equal(raw.TS), "ts %s", raw.TS)
}

func TestButtonSeqFileSurvivesRestart(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	seqFile := filepath.Join(t.TempDir(), "btn-1.seq")

	b1 := newTestButton(t, tb, ButtonConfig{SeqFile: seqFile, FirstSeq: 100})
	p1, err := b1.Heartbeat(t.Context())
	require.NoError(t, err)
	p2, err := b1.Duress(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []uint64{100, 101}, []uint64{p1.Seq, p2.Seq})
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	require.NoError(t, b1.Flush(ctx))
	b1.Close()

	got, err := os.ReadFile(seqFile)
	require.NoError(t, err)
	assert.Equal(t, "101\n", string(got))

	// A restarted simulator continues after the recorded seq, whatever
	// FirstSeq says.
	b2 := newTestButton(t, tb, ButtonConfig{SeqFile: seqFile, FirstSeq: 100})
	p3, err := b2.Heartbeat(t.Context())
	require.NoError(t, err)
	assert.EqualValues(t, 102, p3.Seq)
}

func TestSeqFileRejectsGarbage(t *testing.T) {
	seqFile := filepath.Join(t.TempDir(), "seq")
	require.NoError(t, os.WriteFile(seqFile, []byte("twelve\n"), 0o600))
	_, err := NewButton(ButtonConfig{Broker: "tcp://127.0.0.1:1883", Site: "s", Device: "d", SeqFile: seqFile})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not a sequence number")
}

func TestButtonConnectTimeoutSaysWhy(t *testing.T) {
	addr := freeAddr(t) // nothing listens here
	b, err := NewButton(ButtonConfig{Broker: "tcp://" + addr, Site: "s", Device: "d", ReconnectInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = b.Connect(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "last attempt")
	assert.Contains(t, err.Error(), "refused")

	_, err = b.Duress(t.Context())
	assert.ErrorIs(t, err, ErrNotConnected, "a failed Connect closes the button")
}

func TestButtonNotConnected(t *testing.T) {
	b, err := NewButton(ButtonConfig{Broker: "tcp://127.0.0.1:1883", Site: "s", Device: "d"})
	require.NoError(t, err)
	_, err = b.Duress(t.Context())
	assert.ErrorIs(t, err, ErrNotConnected)
	assert.ErrorIs(t, b.Run(t.Context()), ErrNotConnected)
}

func TestButtonConfigValidation(t *testing.T) {
	ok := ButtonConfig{Broker: "tcp://127.0.0.1:1883", Site: "site-1", Device: "btn-1"}
	tests := []struct {
		name   string
		change func(*ButtonConfig)
		want   string
	}{
		{"valid tcp", func(*ButtonConfig) {}, ""},
		{"valid ssl", func(c *ButtonConfig) { c.Broker = "ssl://broker.example:8883" }, ""},
		{"websocket scheme", func(c *ButtonConfig) { c.Broker = "ws://127.0.0.1:1883" }, "scheme must be tcp or ssl"},
		{"no port", func(c *ButtonConfig) { c.Broker = "tcp://127.0.0.1" }, "want host:port"},
		{"empty broker", func(c *ButtonConfig) { c.Broker = "" }, "scheme must be tcp or ssl"},
		{"site with slash", func(c *ButtonConfig) { c.Site = "a/b" }, `site "a/b" is not a valid id`},
		{"empty device", func(c *ButtonConfig) { c.Device = "" }, `device "" is not a valid id`},
		{"battery", func(c *ButtonConfig) { c.Battery = 101 }, "battery 101 is not a percentage"},
		{"latitude", func(c *ButtonConfig) { c.Lat = 91 }, "is not a position"},
		{"malformed rate", func(c *ButtonConfig) { c.MalformedRate = 1.5 }, "malformed rate 1.5"},
		{"duplicate rate", func(c *ButtonConfig) { c.DuplicateRate = -0.1 }, "duplicate rate -0.1"},
		{"negative heartbeat", func(c *ButtonConfig) { c.Heartbeat = -time.Second }, "heartbeat -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			_, err := NewButton(cfg)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestButtonBatteryRejectsBadLevel(t *testing.T) {
	b, err := NewButton(ButtonConfig{Broker: "tcp://127.0.0.1:1883", Site: "s", Device: "d"})
	require.NoError(t, err)
	_, err = b.Battery(t.Context(), -1)
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrNotConnected), "the level is checked first")
}
