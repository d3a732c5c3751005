package doctor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/gateway/sysclock"
)

// holdState opens the state database of dir the way a running gateway does
// (read-write, exclusive lock) until the test ends.
func holdState(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, app.StateDB), 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
}

func TestCheckState(t *testing.T) {
	opts := Options{}
	opts.defaults()
	opts.LockWait = 100 * time.Millisecond
	tests := []struct {
		name    string
		setup   func(t *testing.T) string // returns the state path
		create  bool
		want    Status
		summary string
		dir     func(state string) string // where the disk checks measure ("" for nowhere)
		locked  bool
	}{
		{"empty directory", func(t *testing.T) string { return t.TempDir() }, false, OK, "is writable and no other vigil process holds it",
			func(s string) string { return s }, false},
		{"a stopped gateway's directory", func(t *testing.T) string {
			dir := t.TempDir()
			db, err := bolt.Open(filepath.Join(dir, app.StateDB), 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Close())
			return dir
		}, false, OK, "no other vigil process holds it", func(s string) string { return s }, false},
		{"missing, doctor does not create it", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b") }, false, OK,
			"does not exist yet: vigil run will create it", func(s string) string { return filepath.Dir(filepath.Dir(s)) }, false},
		{"missing, vigil run creates it", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b") }, true, OK,
			"is writable", func(s string) string { return s }, false},
		{"a file, not a directory", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "state")
			require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
			return p
		}, false, Fail, "is not a directory", func(string) string { return "" }, false},
		{"a file, and vigil run would create it", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "state")
			require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
			return p
		}, true, Fail, "cannot create the state directory", func(string) string { return "" }, false},
		{"below a file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			require.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
			return filepath.Join(p, "state")
		}, false, Fail, "not a directory", func(string) string { return "" }, false},
		{"held by a running gateway", func(t *testing.T) string {
			dir := t.TempDir()
			holdState(t, dir)
			return dir
		}, false, Fail, "is in use by another vigil process", func(s string) string { return s }, true},
		{"a database that is not one", func(t *testing.T) string {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, app.StateDB), make([]byte, 8192), 0o600))
			return dir
		}, false, Fail, "cannot be opened", func(string) string { return "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := tt.setup(t)
			o := opts
			o.Create = tt.create
			f, info := checkState(state, o)
			assert.Equal(t, checkStateDir, f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Equal(t, tt.dir(state), info.dir)
			assert.Equal(t, tt.locked, info.locked)
			assert.Equal(t, f.Status == Fail, f.RefusesStart())
			if f.Status != OK {
				assert.NotEmpty(t, f.Advice)
			}
			if info.dir != "" {
				entries, err := os.ReadDir(info.dir)
				require.NoError(t, err)
				for _, e := range entries {
					assert.NotContains(t, e.Name(), ".vigil-doctor", "the probe file is removed")
				}
			}
		})
	}
}

func TestMeasureFsync(t *testing.T) {
	dir := t.TempDir()
	samples, err := measureFsync(dir, 20, 2*time.Second)
	require.NoError(t, err)
	require.NotEmpty(t, samples)
	assert.LessOrEqual(t, len(samples), 20)
	for _, s := range samples {
		assert.Positive(t, s)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "the scratch file is removed")

	// The budget stops the measurement early (but never before one write).
	samples, err = measureFsync(dir, 1000, time.Nanosecond)
	require.NoError(t, err)
	assert.Len(t, samples, 1)

	f := checkFsyncLatency(dir, 10, time.Second)
	assert.Equal(t, checkFsync, f.Name)
	assert.NotEqual(t, Fail, f.Status, f.Summary)
	assert.Contains(t, f.Summary, "fsync p99")

	// A directory that is gone cannot be measured: that is a failure.
	gone := filepath.Join(t.TempDir(), "gone")
	f = checkFsyncLatency(gone, 10, time.Second)
	assert.Equal(t, Fail, f.Status)
	assert.Contains(t, f.Summary, "cannot make writes durable in "+gone)
	assert.True(t, f.RefusesStart())
}

func TestCheckDiskSpace(t *testing.T) {
	dir := t.TempDir()
	f := checkDiskSpace(dir, 1)
	assert.Equal(t, checkDisk, f.Name)
	assert.Contains(t, f.Summary, "the state disk is")
	assert.Positive(t, f.Details["total_bytes"])
	if used := f.Details["used_fraction"].(float64); used < 1 {
		assert.Equal(t, OK, f.Status)
	}
	// With the mark at (almost) nothing, any disk in use is over it.
	f = checkDiskSpace(dir, 1e-9)
	assert.Equal(t, Fail, f.Status)

	f = checkDiskSpace(filepath.Join(dir, "missing"), 0.9)
	assert.Equal(t, Warn, f.Status)
}

type fixedClock sysclock.Status

func (c fixedClock) Read() sysclock.Status { return sysclock.Status(c) }

func TestCheckClockSync(t *testing.T) {
	tests := []struct {
		name    string
		st      sysclock.Status
		want    Status
		summary string
		advice  string
	}{
		{"synchronised", sysclock.Status{State: sysclock.Synchronised, MaxError: 12 * time.Millisecond}, OK, "synchronised (maximum error 12.0 ms)", ""},
		{"unsynchronised", sysclock.Status{State: sysclock.Unsynchronised, MaxError: 16 * time.Second, UnsyncFlag: true}, Warn,
			"not synchronised", "a Raspberry Pi has no RTC: install and enable systemd-timesyncd or chrony"},
		{"unknown", sysclock.Status{State: sysclock.Unknown, Reason: "clock synchronisation cannot be read on plan9"}, Warn,
			"cannot tell whether the clock is synchronised: clock synchronisation cannot be read on plan9", "timedatectl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := checkClockSync(fixedClock(tt.st))
			assert.Equal(t, checkClock, f.Name)
			assert.Equal(t, tt.want, f.Status)
			assert.Contains(t, f.Summary, tt.summary)
			assert.Contains(t, f.Advice, tt.advice)
			assert.Equal(t, tt.st.State.String(), f.Details["state"])
			assert.False(t, f.RefusesStart())
		})
	}
}
