package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/gateway/forward/dc09"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// startMetricsApp runs a gateway with cfg (state, HTTP and broker on
// temporary places) until the test ends.
func startMetricsApp(t *testing.T, cfg Config) *App {
	t.Helper()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	runApp(t, a)
	return a
}

// scrapeMetrics returns the gateway's /metrics page.
func scrapeMetrics(t *testing.T, a *App) string {
	t.Helper()
	code, body := call(t, a, "GET", "/metrics", "", "")
	require.Equal(t, 200, code, body)
	return body
}

// metricSample is the value of one series in an exposition, given exactly as the
// exposition writes it (`name` or `name{label="v",…}`, labels sorted).
func metricSample(body, series string) (float64, bool) {
	for l := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), series+" ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		v, err := strconv.ParseFloat(f[0], 64)
		return v, err == nil
	}
	return 0, false
}

// publishDuress presses a registered duress button (a verified alarm goes to
// the ARC; an unverified one never does): the device publishes a duress
// event to the gateway's embedded broker, QoS 1, as a real button does.
func publishDuress(t *testing.T, a *App, device string, seq uint64) {
	t.Helper()
	_, err := a.registry.Add(registry.Device{ID: device, Kind: registry.KindButton, Site: a.cfg.Site, Wearer: "Nurse A"}, time.Now())
	require.NoError(t, err)
	// On a fresh broker nothing is kept for a subscriber that has not
	// subscribed yet: wait until the gateway has.
	require.Eventually(t, func() bool {
		v, ok := metricSample(scrapeMetrics(t, a), "vigil_mqtt_connected")
		return ok && v == 1
	}, 10*time.Second, 10*time.Millisecond, "the gateway should connect to its broker")
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + a.BrokerAddr()).SetClientID(device).
		SetCleanSession(true).SetAutoReconnect(false))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second), "connect to the embedded broker")
	require.NoError(t, tok.Error())
	defer c.Disconnect(100)
	payload, err := devices.Encode(devices.Event{ID: device + "-" + strconv.FormatUint(seq, 10), Device: device, Seq: seq,
		Type: devices.TypeDuress, TS: time.Now()})
	require.NoError(t, err)
	tok = c.Publish(devices.EventTopic(a.cfg.Site, device), 1, false, payload)
	require.True(t, tok.WaitTimeout(5*time.Second), "publish the duress")
	require.NoError(t, tok.Error())
}

// TestUndeliveredAlertAgeGrows: with the ARC receiver down, a duress waits on
// its route; the oldest-pending age on /metrics grows while it waits (what
// VigilAlertUndelivered fires on) and the link gauge says down (what
// VigilARCUnreachable fires on). When a real DC-09 receiver comes up on the
// address the queue drains, the age returns to 0 and the link to 1.
func TestUndeliveredAlertAgeGrows(t *testing.T) {
	addr := testnet.ClosedAddr(t)
	cfg := DefaultConfig()
	cfg.ARC = []ARCConfig{{URL: "tcp://" + addr + "?account=1234&link_test=200ms&dial_timeout=1s"}}
	cfg.Outbox.BackoffBase, cfg.Outbox.BackoffMax = 50*time.Millisecond, 300*time.Millisecond
	a := startMetricsApp(t, cfg)
	publishDuress(t, a, "btn-7", 1)

	const (
		age   = `vigil_outbox_oldest_age_seconds{route="arc0"}`
		depth = `vigil_outbox_depth{route="arc0"}`
		link  = `vigil_arc_link_up{route="arc0"}`
	)
	var first float64
	require.Eventually(t, func() bool {
		body := scrapeMetrics(t, a)
		d, okD := metricSample(body, depth)
		l, okL := metricSample(body, link)
		u, okU := metricSample(body, "vigil_alerts_undelivered")
		first, _ = metricSample(body, age)
		return okD && d == 1 && okL && l == 0 && okU && u >= 1 && first > 0
	}, 10*time.Second, 20*time.Millisecond, "the duress should wait on arc0 with the link gauge at 0")

	require.Eventually(t, func() bool {
		v, ok := metricSample(scrapeMetrics(t, a), age)
		return ok && v >= first+0.5
	}, 10*time.Second, 50*time.Millisecond, "the oldest undelivered message's age should grow past %.3fs", first+0.5)
	retries, ok := metricSample(scrapeMetrics(t, a), `vigil_forward_attempts_total{result="retry",route="arc0"}`)
	assert.True(t, ok && retries >= 1, "failed attempts are counted as retries")

	// The receiver comes back: the queue drains and the age is 0 again.
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	rx := &dc09.Receiver{}
	go func() { served <- rx.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-served) })
	require.Eventually(t, func() bool {
		body := scrapeMetrics(t, a)
		d, _ := metricSample(body, depth)
		v, okA := metricSample(body, age)
		l, _ := metricSample(body, link)
		return d == 0 && okA && v == 0 && l == 1
	}, 10*time.Second, 20*time.Millisecond, "once the ARC answers, arc0's queue should drain")
	var alarms int
	for _, f := range rx.Frames() {
		if f.Frame.ID != dc09.IDNull {
			alarms++
		}
	}
	assert.Equal(t, 1, alarms, "the receiver should have had the duress once")
	body := scrapeMetrics(t, a)
	n, ok := metricSample(body, `vigil_alert_delivery_seconds_count{event="duress",route="arc0"}`)
	assert.True(t, ok && n == 1, "the delivery is timed:\n%s", metricLines(body, "vigil_alert_delivery_seconds_count"))
}

// TestRefusedDeliveryCounted: a receiver that refuses a message for good
// (HTTP 400 from a webhook) is counted as result="permanent", the series
// VigilAlertRefused fires on, not as a retry.
func TestRefusedDeliveryCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unknown account", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	secret := filepath.Join(t.TempDir(), "webhook.key")
	require.NoError(t, os.WriteFile(secret, []byte("a webhook secret of some length"), 0o600))
	cfg := DefaultConfig()
	cfg.Webhooks = []HookConfig{{URL: srv.URL, SecretFile: secret}}
	a := startMetricsApp(t, cfg)
	_, err := a.engine.RaiseSystem("test", a.cfg.Site, "a test alert for the webhook")
	require.NoError(t, err)
	a.outbox.Wake()
	require.Eventually(t, func() bool {
		v, ok := metricSample(scrapeMetrics(t, a), `vigil_forward_attempts_total{result="permanent",route="webhook0"}`)
		return ok && v == 1
	}, 10*time.Second, 20*time.Millisecond)
	body := scrapeMetrics(t, a)
	retries, ok := metricSample(body, `vigil_forward_attempts_total{result="retry",route="webhook0"}`)
	assert.True(t, ok && retries == 0, "a refusal is not a retry:\n%s", metricLines(body, "vigil_forward_attempts_total"))
}

// TestAttemptCountersStartAtZero: every route's attempt counters exist at 0
// from the start, so the first refusal is a rise increase() can see.
func TestAttemptCountersStartAtZero(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ARC = []ARCConfig{{URL: "tcp://" + testnet.ClosedAddr(t) + "?account=1234&link_test=off"}}
	a := startMetricsApp(t, cfg)
	body := scrapeMetrics(t, a)
	for _, route := range []string{"arc0", "wearer", "evidence"} {
		for _, result := range []string{"ok", "retry", "permanent"} {
			v, ok := metricSample(body, `vigil_forward_attempts_total{result="`+result+`",route="`+route+`"}`)
			assert.True(t, ok && v == 0, "%s %s:\n%s", route, result, metricLines(body, "vigil_forward_attempts_total"))
		}
		for _, via := range []string{"before_commit", "in_commit", "queue"} {
			v, ok := metricSample(body, `vigil_alarm_first_attempts_total{route="`+route+`",via="`+via+`"}`)
			assert.True(t, ok && v == 0, "%s %s:\n%s", route, via, metricLines(body, "vigil_alarm_first_attempts_total"))
		}
	}
}

// TestSystemMetrics: build, start time, disk use and the high-water mark as
// an operator scrapes them.
func TestSystemMetrics(t *testing.T) {
	before := time.Now()
	cfg := DefaultConfig()
	cfg.Evidence.HighWater = 0.85
	a := startMetricsApp(t, cfg)
	after := time.Now()
	body := scrapeMetrics(t, a)

	version, _ := buildVersion()
	v, ok := metricSample(body, `vigil_build_info{goversion="`+runtime.Version()+`",version="`+version+`"}`)
	assert.True(t, ok && v == 1, "build info with this binary's Go version:\n%s", metricLines(body, "vigil_build_info"))

	started, ok := metricSample(body, "vigil_start_time_seconds")
	require.True(t, ok)
	assert.GreaterOrEqual(t, started, float64(before.Unix()))
	assert.LessOrEqual(t, started, float64(after.UnixNano())/1e9)

	hw, ok := metricSample(body, "vigil_evidence_high_water_ratio")
	assert.True(t, ok && hw == 0.85, "high water %v", hw)

	used, ok := metricSample(body, "vigil_state_disk_used_ratio")
	require.True(t, ok)
	var st syscall.Statfs_t
	require.NoError(t, syscall.Statfs(filepath.Join(a.cfg.State, evidence.Dir), &st))
	want := 1 - float64(st.Bavail)/float64(st.Blocks)
	assert.InDelta(t, want, used, 0.01, "other processes write to this disk too, hence the tolerance")
	assert.Greater(t, used, 0.0)
	assert.LessOrEqual(t, used, 1.0)
}

// TestDiskUnreadable: a disk that cannot be read leaves no used-ratio series
// (an alert on it then sees absent data, never a reassuring 0).
func TestDiskUnreadable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.State = filepath.Join(t.TempDir(), "not-there")
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(newSystemCollector(cfg, time.Unix(1_700_000_000, 500_000_000))))
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		require.Len(t, f.GetMetric(), 1, f.GetName())
		got[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	assert.Equal(t, map[string]float64{"vigil_build_info": 1, "vigil_start_time_seconds": 1_700_000_000.5,
		"vigil_evidence_high_water_ratio": 0.9}, got)
}

// metricLines returns the lines of body that contain s (for failure messages).
func metricLines(body, s string) string {
	var out []string
	for l := range strings.Lines(body) {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func TestVersionFrom(t *testing.T) {
	ld := func(v string) debug.BuildSetting { return debug.BuildSetting{Key: "-ldflags", Value: v} }
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "0.0.0-dev"},
		{"go build in a checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "0.0.0-dev"},
		{"go install at a version", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"the Makefile's stamp wins", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261121-abcdef"}, Settings: []debug.BuildSetting{
			ld("-s -w -X github.com/vigil-gw/vigil/cmd/internal/buildinfo.version=v1.2.3-4-gabc -X github.com/vigil-gw/vigil/cmd/internal/buildinfo.commit=abc")}},
			"v1.2.3-4-gabc"},
		{"-X= form, quoted", &debug.BuildInfo{Settings: []debug.BuildSetting{
			ld("-X='github.com/vigil-gw/vigil/cmd/internal/buildinfo.version=1.0.0'")}}, "1.0.0"},
		{"another package's version is not ours", &debug.BuildInfo{Settings: []debug.BuildSetting{
			ld("-X example.com/other.version=9.9.9")}}, "0.0.0-dev"},
		{"an empty stamp is no stamp", &debug.BuildInfo{Main: debug.Module{Version: "v2.0.0"}, Settings: []debug.BuildSetting{
			ld("-X github.com/vigil-gw/vigil/cmd/internal/buildinfo.version=")}}, "v2.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, gov := versionFrom(tc.bi)
			assert.Equal(t, tc.want, v)
			assert.NotEmpty(t, gov)
		})
	}
}

// FuzzVersionFrom: whatever the -ldflags setting holds, the version label is
// never empty (an empty label value would drop the label from the series).
func FuzzVersionFrom(f *testing.F) {
	f.Add("v1.0.0", "-s -w -X github.com/vigil-gw/vigil/cmd/internal/buildinfo.version=v1.2.3")
	f.Add("(devel)", "-X='github.com/vigil-gw/vigil/cmd/internal/buildinfo.version='")
	f.Add("", "-X=github.com/vigil-gw/vigil/cmd/internal/buildinfo.version=\"x y\"")
	f.Fuzz(func(t *testing.T, main, ldflags string) {
		v, gov := versionFrom(&debug.BuildInfo{Main: debug.Module{Version: main}, Settings: []debug.BuildSetting{{Key: "-ldflags", Value: ldflags}}})
		if v == "" || gov == "" {
			t.Fatalf("empty version %q or Go version %q", v, gov)
		}
	})
}
