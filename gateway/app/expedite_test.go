package app

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/alert"
)

// A duress reaches the ARC while the state database is held by another
// writer (a slow fsync, another commit): the frame does not wait for the
// journal. The button is acknowledged only after the journal commits, and
// the delivery the ARC acknowledged early is then recorded on the alert,
// without a second frame.
func TestDuressReachesARCWhileTheJournalWaits(t *testing.T) {
	arc := startTestARC(t)
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen, cfg.Site = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", "demo"
	cfg.ARC = []ARCConfig{{URL: arc.url()}}
	a, err := New(cfg, nil)
	require.NoError(t, err)
	_, err = a.registry.Add(registry.Device{ID: "btn-01", Kind: registry.KindButton, Site: "demo", Wearer: "Nurse A"}, time.Now())
	require.NoError(t, err)
	runApp(t, a)
	// The ARC route looks at its empty queue once at start: then it is idle.
	waitUntil(t, 10*time.Second, "the ARC route idle", func() bool { return a.outbox.Idle("arc0") })

	locked, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() { held <- a.db.Update(func(*bolt.Tx) error { close(locked); <-release; return nil }) }()
	<-locked
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	var acked atomic.Bool
	now := time.Now()
	a.ingest(devices.Delivery{Source: "mqtt", Topic: devices.EventTopic("demo", "btn-01"), Device: "btn-01", Received: now,
		Decoded: devices.Decoded{Site: "demo", Event: devices.Event{V: 1, ID: "btn-01-7", Device: "btn-01", Seq: 7,
			Type: devices.TypeDuress, TS: now}},
		Ack: func() { acked.Store(true) }})
	waitUntil(t, 10*time.Second, "the frame at the ARC while the database is held", func() bool { return arc.zones()["001"] })
	assert.False(t, acked.Load(), "the button is not acknowledged before the journal commits")

	close(release)
	released = true
	require.NoError(t, <-held)
	waitUntil(t, 10*time.Second, "the button acknowledged", acked.Load)
	waitUntil(t, 10*time.Second, "the early delivery recorded", func() bool {
		v, err := a.engine.Get("btn-01.7")
		return err == nil && v.State == alert.Delivered
	})
	v, err := a.engine.Get("btn-01.7")
	require.NoError(t, err)
	require.NotEmpty(t, v.Deliveries)
	assert.Equal(t, "arc0", v.Deliveries[0].Route)
	assert.Equal(t, 1, v.Deliveries[0].Attempts, "delivered by the early send")
	assert.True(t, v.Feedback, "the ARC's ACK queued the wearer's confirmation")
	frames := 0
	for _, f := range arc.Frames() {
		if f.Frame.ID != "NULL" && f.Frame.ID != "*NULL" {
			frames++
		}
	}
	assert.Equal(t, 1, frames, fmt.Sprintf("one alarm frame, not a second from the queue: %+v", arc.Frames()))
	body := scrapeMetrics(t, a)
	n, ok := metricSample(body, `vigil_alarm_first_attempts_total{route="arc0",via="before_commit"}`)
	assert.True(t, ok && n == 1, "counted as sent before the commit:\n%s", metricLines(body, "vigil_alarm_first_attempts_total"))
	n, ok = metricSample(body, `vigil_alarm_first_attempts_total{route="arc0",via="queue"}`)
	assert.True(t, ok && n == 0, "none from the queue:\n%s", metricLines(body, "vigil_alarm_first_attempts_total"))
}
