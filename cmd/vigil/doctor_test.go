package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/gateway/app"
)

// doctorConfig writes a configuration whose embedded broker takes any free
// port, so the check does not depend on what else runs on 1883.
func doctorConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(p, []byte("http: 127.0.0.1:0\nbroker:\n  listen: 127.0.0.1:0\nevidence:\n  high_water: 1\n"), 0o600))
	return p
}

func TestDoctorCommand(t *testing.T) {
	cfg := doctorConfig(t)
	state := t.TempDir()

	code, out, errs := vigil("doctor", "--config", cfg, "--state", state)
	require.Equal(t, 0, code, "%s%s", out, errs)
	assert.Regexp(t, `(?m)^ok    state_dir +`+state+` is writable`, out)
	assert.Regexp(t, `(?m)^\d+ failed, \d+ warnings?, \d+ ok$`, out)

	code, out, _ = vigil("doctor", "--config", cfg, "--state", state, "--json")
	require.Equal(t, 0, code)
	var r struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name, Status, Summary, Advice string
			Details                       map[string]any
		} `json:"checks"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.True(t, r.OK)
	var names []string
	for _, c := range r.Checks {
		names = append(names, c.Name)
		assert.Contains(t, []string{"ok", "warn", "fail"}, c.Status)
		assert.NotNil(t, c.Details)
	}
	assert.Equal(t, []string{"state_dir", "fsync_latency", "disk_space", "clock_sync", "broker", "object_store", "certificates"}, names)

	// A failed check: exit 1, and the JSON still says which.
	file := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	code, out, _ = vigil("doctor", "--config", cfg, "--state", file, "--json")
	assert.Equal(t, 1, code)
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	assert.False(t, r.OK)
	assert.Equal(t, "fail", r.Checks[0].Status)

	code, out, _ = vigil("doctor", "--config", cfg, "--state", file)
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL  state_dir +the state path `+file+` is not a directory$`, out)

	// Usage errors are 2; a configuration vigil run would refuse is 1.
	code, _, _ = vigil("doctor", "--frobnicate")
	assert.Equal(t, 2, code)
	code, _, _ = vigil("doctor", "extra")
	assert.Equal(t, 2, code)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("site: 'no spaces allowed'\n"), 0o600))
	code, _, errs = vigil("doctor", "--config", bad)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "vigil doctor: config: site")
	code, _, _ = vigil("doctor", "-h")
	assert.Equal(t, 0, code)
}

func TestRunRefusesUnusableState(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	// A state directory held by another gateway (here: this test, holding
	// the database the way a running vigil does).
	held := t.TempDir()
	db, err := bolt.Open(filepath.Join(held, app.StateDB), 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()

	for name, tt := range map[string]struct{ state, want string }{
		"a file":          {file, "vigil: state_dir: cannot create the state directory " + file},
		"another gateway": {held, "vigil: state_dir: " + filepath.Join(held, app.StateDB) + " is in use by another vigil process: only one gateway may use a state directory"},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			code, _, errs := vigil("run", "--state", tt.state, "--http", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0")
			assert.Equal(t, 1, code)
			last := strings.TrimSpace(errs)
			last = last[strings.LastIndex(last, "\n")+1:]
			assert.True(t, strings.HasPrefix(last, tt.want), "reason line: %q", last)
			assert.Less(t, time.Since(start), 5*time.Second, "refused at once, before opening anything")
		})
	}
}
