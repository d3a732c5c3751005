package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
	"github.com/vigil-gw/vigil/gateway/sysclock"
)

func names(r Report) []string {
	var out []string
	for _, f := range r.Checks {
		out = append(out, f.Name)
	}
	return out
}

func testConfig(t *testing.T) app.Config {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.State, cfg.Broker.Listen = t.TempDir(), "127.0.0.1:0"
	return cfg
}

func fastOptions() Options {
	return Options{FsyncSamples: 5, DialTimeout: 2 * time.Second, Clock: fixedClock{State: sysclock.Synchronised, MaxError: time.Millisecond}}
}

func TestRun(t *testing.T) {
	arc := listen(t)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("k"), 0o600))

	cfg := testConfig(t)
	cfg.ARC = []app.ARCConfig{{URL: "tcp://" + arc.Addr().String() + "?account=1234"}, {URL: "tcp://" + testnet.ClosedAddr(t) + "?account=1234"}}
	cfg.Webhooks = []app.HookConfig{{URL: hook.URL, SecretFile: secret}}
	cfg.Evidence.HighWater = 1 // whatever this machine's disk holds

	r := Run(context.Background(), cfg, fastOptions())
	assert.Equal(t, []string{"state_dir", "fsync_latency", "disk_space", "clock_sync", "broker", "arc[0]", "arc[1]", "webhook[0]", "object_store", "certificates"}, names(r))
	status := map[string]Status{}
	for _, f := range r.Checks {
		status[f.Name] = f.Status
		assert.NotNil(t, f.Details, f.Name)
		assert.NotEmpty(t, f.Summary, f.Name)
	}
	assert.Equal(t, OK, status["state_dir"])
	assert.Equal(t, OK, status["arc[0]"])
	assert.Equal(t, Warn, status["arc[1]"], "an unreachable backup is a warning")
	assert.Equal(t, OK, status["webhook[0]"])
	assert.Equal(t, OK, status["clock_sync"])
	assert.True(t, r.OK, "warnings do not fail the run")

	// Only the local checks, as vigil run does before it opens the state.
	o := fastOptions()
	o.Checks = Local
	r = Run(context.Background(), cfg, o)
	assert.Equal(t, []string{"state_dir", "fsync_latency", "disk_space", "clock_sync", "broker", "certificates"}, names(r))

	// And the network ones, which it runs once it is up.
	o.Checks = Network
	cfg.MQTT.URL = "tcp://" + arc.Addr().String()
	r = Run(context.Background(), cfg, o)
	assert.Equal(t, []string{"broker", "arc[0]", "arc[1]", "webhook[0]", "object_store"}, names(r))
}

func TestRunFailures(t *testing.T) {
	cfg := testConfig(t)
	state := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.WriteFile(state, []byte("not a directory"), 0o600))
	cfg.State = state
	r := Run(context.Background(), cfg, fastOptions())
	assert.False(t, r.OK)
	// Nothing to measure the disk in: those checks are left out rather
	// than run somewhere else.
	assert.Equal(t, []string{"state_dir", "clock_sync", "broker", "object_store", "certificates"}, names(r))
	assert.Equal(t, Fail, r.Checks[0].Status)
	assert.True(t, r.Checks[0].RefusesStart())
}

func TestRunAllTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	out := runAll(ctx, []check{
		{"quick", func(context.Context) Finding { return finding("quick", OK, "fine", "", nil) }},
		{"stuck", func(context.Context) Finding { <-release; return finding("stuck", OK, "late", "", nil) }},
	})
	require.Len(t, out, 2)
	assert.Equal(t, OK, out[0].Status)
	assert.Equal(t, "stuck", out[1].Name)
	assert.Equal(t, Warn, out[1].Status)
	assert.Equal(t, "did not finish in time", out[1].Summary)
	assert.NotNil(t, out[1].Details)
}

func TestWriteText(t *testing.T) {
	r := report([]Finding{
		finding("state_dir", OK, "/var/lib/vigil is writable", "", nil),
		finding("fsync_latency", Warn, "fsync p99 83.0 ms", "an SD card with p99 over 50.0 ms is unfit for the alert journal: move /var/lib/vigil to a USB SSD", nil),
		finding("arc[0]", Fail, "expired", "renew it", nil),
	})
	var b bytes.Buffer
	require.NoError(t, r.WriteText(&b))
	want := "" +
		"ok    state_dir      /var/lib/vigil is writable\n" +
		"WARN  fsync_latency  fsync p99 83.0 ms\n" +
		"                     an SD card with p99 over 50.0 ms is unfit for the alert journal: move\n" +
		"                     /var/lib/vigil to a USB SSD\n" +
		"FAIL  arc[0]         expired\n" +
		"                     renew it\n" +
		"\n1 failed, 1 warning, 1 ok\n"
	assert.Equal(t, want, b.String())
	for _, line := range strings.Split(b.String(), "\n") {
		assert.LessOrEqual(t, len(line), textWidth)
	}
}

func TestWriteJSON(t *testing.T) {
	r := report([]Finding{
		finding("state_dir", OK, "fine", "", nil),
		finding("disk_space", Fail, "full", "free space", map[string]any{"used_fraction": 0.97}),
	})
	var b bytes.Buffer
	require.NoError(t, r.WriteJSON(&b))
	// The contract: {"ok": bool, "checks": [{"name", "status", "summary", "advice", "details": {...}}]}.
	var got struct {
		OK     *bool `json:"ok"`
		Checks []map[string]json.RawMessage
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &got))
	require.NotNil(t, got.OK)
	assert.False(t, *got.OK)
	require.Len(t, got.Checks, 2)
	for _, c := range got.Checks {
		assert.ElementsMatch(t, []string{"name", "status", "summary", "advice", "details"}, keys(c))
	}
	assert.JSONEq(t, `{}`, string(got.Checks[0]["details"]), "details is an object, never null")
	assert.JSONEq(t, `"fail"`, string(got.Checks[1]["status"]))
	assert.JSONEq(t, `{"used_fraction":0.97}`, string(got.Checks[1]["details"]))

	b.Reset()
	require.NoError(t, Report{OK: true}.WriteJSON(&b))
	assert.JSONEq(t, `{"ok":true,"checks":[]}`, b.String())
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
