package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/internal/syncbuf"
)

// testARC is a real DC-09 receiver on a loopback port that can be told to
// stop answering.
type testARC struct {
	*dc09.Receiver
	addr   string
	silent atomic.Bool
}

func startTestARC(t *testing.T) *testARC {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &testARC{addr: ln.Addr().String()}
	r.Receiver = &dc09.Receiver{Mode: func(dc09.Frame) dc09.Response {
		if r.silent.Load() {
			return dc09.RespondSilent
		}
		return dc09.RespondACK
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *testARC) url() string { return "tcp://" + r.addr + "?account=1234&receiver=1&prefix=1" }

// zones returns the zones of the alarms the receiver acknowledged.
func (r *testARC) zones() map[string]bool {
	out := map[string]bool{}
	for _, f := range r.Frames() {
		if f.Frame.ID == dc09.IDNull || f.Response != dc09.RespondACK {
			continue
		}
		if i := strings.LastIndexByte(f.Frame.Data, ' '); i >= 0 {
			out[f.Frame.Data[i+1:]] = true
		}
	}
	return out
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// duress feeds a duress from device through the same path as an MQTT
// delivery: registry lookup, journal, alert engine, outbox.
func duress(a *App, device string, seq uint64) {
	now := time.Now()
	a.ingest(devices.Delivery{Source: "mqtt", Topic: devices.EventTopic("demo", device), Device: device, Received: now,
		Decoded: devices.Decoded{Site: "demo", Event: devices.Event{V: 1, ID: fmt.Sprintf("%s-%d", device, seq),
			Device: device, Seq: seq, Type: devices.TypeDuress, TS: now}},
		Ack: func() {}})
}

// A reload moves the alarm path from receiver A to receiver B while alarms
// keep coming: the alarm queued for A when A stopped answering, those raised
// during the reload and those raised after it all reach B, none is lost;
// a device added to the registry is verified from then on; settings that
// need a restart are named; a broken configuration is refused and the
// running one kept.
func TestReloadMovesAlarmsToNewReceiver(t *testing.T) {
	ctx := context.Background()
	arcA, arcB := startTestARC(t), startTestARC(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	reg := OpenRegistry(state)
	for i := 1; i <= 12; i++ {
		_, err := reg.Add(registry.Device{ID: fmt.Sprintf("btn-%02d", i), Kind: registry.KindButton, Site: "demo", Wearer: fmt.Sprintf("W%d", i)}, time.Now())
		require.NoError(t, err)
	}
	path := filepath.Join(dir, "vigil.yaml")
	write := func(body string) { require.NoError(t, os.WriteFile(path, []byte(body), 0o600)) }
	conf := func(arcURL, extra string) string {
		return fmt.Sprintf("state: state\nhttp: 127.0.0.1:0\nsite: demo\ngateway_id: reload-test\nbroker: {listen: 127.0.0.1:0}\n"+
			"alerts: {ack_timeout: 300ms, escalate_after: 1s}\noutbox: {backoff_base: 50ms, backoff_max: 200ms}\narc:\n  - url: %q\n%s", arcURL, extra)
	}
	write(conf(arcA.url(), ""))
	cfg, err := LoadConfig(path)
	require.NoError(t, err)
	logs := &syncbuf.Buffer{}
	a, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	a.ReloadFrom(func() (Config, error) { return LoadConfig(path) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	runApp(t, a)
	delivered := func(id string) bool {
		v, err := a.engine.Get(id)
		return err == nil && v.State == alert.Delivered
	}

	duress(a, "btn-01", 1)
	waitUntil(t, 10*time.Second, "the first alarm at A", func() bool { return delivered("btn-01.1") })
	assert.True(t, arcA.zones()["001"])

	// A stops answering: the next alarm waits in arc0's queue.
	arcA.silent.Store(true)
	duress(a, "btn-02", 1)
	waitUntil(t, 10*time.Second, "an attempt at the silent A", func() bool {
		v, err := a.engine.Get("btn-02.1")
		return err == nil && len(v.Deliveries) > 0 && v.Deliveries[0].Attempts > 0
	})

	// Broken configurations are refused; A stays configured.
	for _, bad := range []struct{ body, want string }{
		{"arc: [\n", "yaml"},
		{conf(arcB.url(), "alerts_typo: 1\n"), "alerts_typo"},
		{conf("udp://"+arcB.addr+"?account=1234", ""), "scheme"},
	} {
		write(bad.body)
		err := a.Reload(ctx)
		require.Error(t, err, bad.body)
		assert.Contains(t, err.Error(), bad.want)
		assert.Equal(t, arcA.addr, a.live.Load().arcs[0].addr, "the running configuration stays")
	}
	assert.Contains(t, logs.String(), "reload refused")

	// Receiver B replaces A, with a setting only a restart applies, while
	// alarms keep arriving.
	write(conf(arcB.url(), "log_level: debug\n"))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 3; i <= 8; i++ {
			duress(a, fmt.Sprintf("btn-%02d", i), 1)
		}
	})
	require.NoError(t, a.Reload(ctx))
	wg.Wait()
	for i := 9; i <= 10; i++ {
		duress(a, fmt.Sprintf("btn-%02d", i), 1)
	}
	waitUntil(t, 20*time.Second, "every alarm delivered", func() bool {
		for i := 2; i <= 10; i++ {
			if !delivered(fmt.Sprintf("btn-%02d.1", i)) {
				return false
			}
		}
		return true
	})
	got := arcB.zones()
	for i := 2; i <= 10; i++ {
		assert.True(t, got[fmt.Sprintf("%03d", i)], "B has the alarm of zone %03d", i)
	}
	assert.Equal(t, map[string]bool{"001": true}, arcA.zones(), "the silent A acknowledged nothing after it went silent")
	assert.Contains(t, logs.String(), "only take effect after a restart")
	assert.Contains(t, logs.String(), "log_level")

	// A device added to the registry counts from the next event on.
	duress(a, "btn-new", 1)
	waitUntil(t, 10*time.Second, "the unknown device's alarm", func() bool { _, err := a.engine.Get("btn-new.1"); return err == nil })
	v, err := a.engine.Get("btn-new.1")
	require.NoError(t, err)
	assert.False(t, v.Verified)
	_, err = reg.Add(registry.Device{ID: "btn-new", Kind: registry.KindButton, Site: "demo", Wearer: "New starter"}, time.Now())
	require.NoError(t, err)
	require.NoError(t, a.Reload(ctx))
	assert.Contains(t, logs.String(), "added=btn-new")
	duress(a, "btn-new", 2)
	waitUntil(t, 10*time.Second, "the registered device's alarm at B", func() bool { return delivered("btn-new.2") })
	v, err = a.engine.Get("btn-new.2")
	require.NoError(t, err)
	assert.True(t, v.Verified)
	assert.Equal(t, "New starter", v.Wearer)
}

// Shrinking the receiver list moves the removed receiver's queue to the
// primary; a removed webhook's queue is kept, not dropped.
func TestReloadRemovedReceiverQueueMovesToPrimary(t *testing.T) {
	ctx := context.Background()
	arcA, arcB := startTestARC(t), startTestARC(t)
	arcB.silent.Store(true)
	dir := t.TempDir()
	path := filepath.Join(dir, "vigil.yaml")
	write := func(arcs ...string) {
		body := "state: state\nhttp: 127.0.0.1:0\nsite: demo\ngateway_id: reload-test\nbroker: {listen: 127.0.0.1:0}\n" +
			"alerts: {ack_timeout: 300ms, escalate_after: 1ms, routing: {p1: [arc1]}}\noutbox: {backoff_base: 50ms, backoff_max: 200ms}\narc:\n"
		for _, u := range arcs {
			body += fmt.Sprintf("  - url: %q\n", u)
		}
		if len(arcs) == 1 {
			body = strings.Replace(body, "p1: [arc1]", "p1: [arc]", 1)
		}
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	}
	write(arcA.url(), arcB.url())
	cfg, err := LoadConfig(path)
	require.NoError(t, err)
	_, err = OpenRegistry(cfg.State).Add(registry.Device{ID: "btn-01", Kind: registry.KindButton, Site: "demo", Wearer: "W"}, time.Now())
	require.NoError(t, err)
	a, err := New(cfg, nil)
	require.NoError(t, err)
	a.ReloadFrom(func() (Config, error) { return LoadConfig(path) })
	runApp(t, a)

	// p1 goes to arc1 (B) only, which does not answer.
	duress(a, "btn-01", 1)
	waitUntil(t, 10*time.Second, "an attempt at B", func() bool {
		v, err := a.engine.Get("btn-01.1")
		return err == nil && len(v.Deliveries) == 1 && v.Deliveries[0].Attempts > 0
	})
	write(arcA.url())
	require.NoError(t, a.Reload(ctx))
	waitUntil(t, 10*time.Second, "the alarm at A", func() bool {
		v, err := a.engine.Get("btn-01.1")
		return err == nil && v.State == alert.Delivered && v.DeliveredVia == "arc0"
	})
	assert.True(t, arcA.zones()["001"])
	v, err := a.engine.Get("btn-01.1")
	require.NoError(t, err)
	states := map[string]string{}
	for _, d := range v.Deliveries {
		if d.Route != wearerRoute { // "help is coming", queued once arc0 had it
			states[d.Route] = string(d.State)
		}
	}
	assert.Equal(t, map[string]string{"arc1": "moved", "arc0": "delivered"}, states)
}
