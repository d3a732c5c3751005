package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

func amberSessions(t *testing.T, v *proc) int {
	code, body := v.api(t, http.MethodGet, "/api/amber", "")
	require.Equal(t, http.StatusOK, code)
	var out struct {
		Sessions []json.RawMessage `json:"sessions"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	return len(out.Sessions)
}

// TestAmberSurvivesKill9: an amber session's timers are durable. The gateway
// is killed before the timer runs out and again during the grace period; the
// wearer still gets the pre-alert, and exactly one "failed to check in" alert
// reaches the ARC (ADM-CID 102).
func TestAmberSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 test runs in the full suite")
	}
	w := newWorld(t, 1)
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("alerts:\n  amber_grace: 2s\n"), 0o600))
	args := append([]string{"--config", cfg}, w.args...)
	v := startVigil(t, w.state, args...)

	b := button(t, w.broker, deviceID(1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := b.AmberStart(ctx, 3*time.Second, "visit at 12 Park Rd")
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "the session to be durable", func() bool { return amberSessions(t, v) == 1 })
	v.kill9(t) // before the timer runs out

	v = startVigil(t, w.state, args...)
	prealert, err := b.WaitCommand(ctx, devices.CmdAmberPrealert)
	require.NoError(t, err, "the restarted gateway still asks the wearer to check in")
	assert.Equal(t, devices.CmdAmberPrealert, prealert.Cmd)
	v.kill9(t) // during the grace period

	v = startVigil(t, w.state, args...)
	overrun := func() (n int, last apiAlerts) {
		last = v.alerts(t)
		for _, a := range last.Alerts {
			if strings.HasSuffix(a.Key, ":overrun") {
				n++
			}
		}
		return n, last
	}
	waitFor(t, 20*time.Second, "the failed check-in alert", func() bool { n, _ := overrun(); return n > 0 })
	waitFor(t, 10*time.Second, "the ARC to hold it", func() bool {
		for _, f := range w.arc.Frames() {
			if strings.Contains(f.Frame.Data, "|1102 01 001") {
				return true
			}
		}
		return false
	})
	n, _ := overrun()
	assert.Equal(t, 1, n, "raised exactly once across two crashes")
	assert.Equal(t, 1, amberSessions(t, v), "the session stays until the wearer checks in")

	_, err = b.CheckIn(ctx)
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "the check-in", func() bool { return amberSessions(t, v) == 0 })
	_, last := overrun()
	for _, a := range last.Alerts {
		if strings.HasSuffix(a.Key, ":overrun") {
			assert.Equal(t, "delivered", a.State, fmt.Sprintf("%+v", a))
		}
	}
}
