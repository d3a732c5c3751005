package app

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The documented example must load strictly and describe the defaults.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("../../deploy/examples/vigil.yaml")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	def := DefaultConfig()
	assert.Equal(t, def.HTTP, cfg.HTTP)
	assert.Equal(t, def.Broker, cfg.Broker)
	assert.Equal(t, def.Alerts, cfg.Alerts)
	assert.Equal(t, def.Outbox, cfg.Outbox)
	abs, _ := filepath.Abs("../../deploy/examples/var")
	assert.Equal(t, abs, mustAbs(t, cfg.State), "relative paths resolve against the file")
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}

func TestConfigStrictAndValidated(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.yaml")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o600))
		return p
	}
	_, err := LoadConfig(write("htp: 1\n"))
	require.ErrorContains(t, err, "field htp not found")

	cfg, err := LoadConfig(write(""))
	require.NoError(t, err, "an empty file means defaults")
	assert.Equal(t, 5*time.Second, cfg.Alerts.EscalateAfter)

	cfg, err = LoadConfig(write("site: 'a b'\nmqtt:\n  url: http://x\nwebhooks:\n  - url: https://x/y\nalerts:\n  escalate_after: 0s\n"))
	require.NoError(t, err)
	err = cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{"site:", "mqtt.url:", "webhooks[0]:", "escalate_after"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestMQTTSitesValidated(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MQTT.Sites = []string{"north", "north", "+", ""}
	err := cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mqtt.sites")
	assert.Contains(t, err.Error(), `"+"`)
	assert.Contains(t, err.Error(), `"north" is listed twice`)
	cfg.MQTT.Sites = []string{"north", "south-2"}
	require.NoError(t, cfg.Validate())
}
