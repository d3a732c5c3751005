package registry

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func TestAddListLookup(t *testing.T) {
	r := Open(filepath.Join(t.TempDir(), "devices.json"))
	_, ok, err := r.Lookup("btn-1")
	require.NoError(t, err)
	assert.False(t, ok, "empty registry")

	d, err := r.Add(Device{ID: "btn-1", Kind: KindButton, Site: "leeds", Wearer: "Nurse A", Camera: "cam-1"}, now)
	require.NoError(t, err)
	assert.Equal(t, 1, d.Zone)
	d2, err := r.Add(Device{ID: "btn-2", Kind: KindButton, Site: "leeds", Wearer: "Nurse B"}, now)
	require.NoError(t, err)
	assert.Equal(t, 2, d2.Zone, "zones are unique per site")
	d3, err := r.Add(Device{ID: "btn-3", Kind: KindButton, Site: "york", Wearer: "Nurse C"}, now)
	require.NoError(t, err)
	assert.Equal(t, 1, d3.Zone, "another site starts at 1")

	_, err = r.Add(Device{ID: "btn-1", Kind: KindButton, Site: "leeds", Wearer: "X"}, now)
	require.ErrorIs(t, err, ErrExists)

	got, ok, err := r.Lookup("btn-1")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "Nurse A", got.Wearer)
	assert.Equal(t, "cam-1", got.Camera)

	list, err := r.List()
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, []string{"btn-1", "btn-2", "btn-3"}, []string{list[0].ID, list[1].ID, list[2].ID})
}

func TestLookupSeesChangesFromAnotherWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.json")
	reader, writer := Open(path), Open(path)
	_, ok, err := reader.Lookup("btn-9")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = writer.Add(Device{ID: "btn-9", Kind: KindButton, Site: "s", Wearer: "W"}, now)
	require.NoError(t, err)
	_, ok, err = reader.Lookup("btn-9")
	require.NoError(t, err)
	assert.True(t, ok, "a running gateway sees a device added by the CLI")
}

func TestConcurrentAddsAllLand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.json")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Open(path).Add(Device{ID: "b" + string(rune('a'+i)), Kind: KindButton, Site: "s", Wearer: "W"}, now)
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	list, err := Open(path).List()
	require.NoError(t, err)
	assert.Len(t, list, 20)
	zones := map[int]bool{}
	for _, d := range list {
		zones[d.Zone] = true
	}
	assert.Len(t, zones, 20, "no two devices share a zone")
}

func TestValidate(t *testing.T) {
	for name, d := range map[string]Device{
		"bad id":        {ID: "a/b", Kind: KindButton, Site: "s", Wearer: "W"},
		"bad kind":      {ID: "a", Kind: "phone", Site: "s", Wearer: "W"},
		"bad site":      {ID: "a", Kind: KindButton, Site: "", Wearer: "W"},
		"no wearer":     {ID: "a", Kind: KindButton, Site: "s"},
		"camera on cam": {ID: "a", Kind: KindCamera, Site: "s", Wearer: "W", Camera: "c"},
		"bad camera id": {ID: "a", Kind: KindButton, Site: "s", Wearer: "W", Camera: "c#"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(filepath.Join(t.TempDir(), "d.json")).Add(d, now)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "registry: ")
		})
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.json")
	require.NoError(t, os.WriteFile(path, []byte("{not json"), 0o600))
	_, _, err := Open(path).Lookup("x")
	require.ErrorContains(t, err, "is not a registry file")
}

func TestCameraByToken(t *testing.T) {
	r := Open(filepath.Join(t.TempDir(), "devices.json"))
	tok, hash, err := NewUploadToken()
	require.NoError(t, err)
	_, err = r.Add(Device{ID: "cam-1", Kind: KindCamera, Site: "s", Wearer: "Ann", UploadTokenSHA256: hash}, time.Now())
	require.NoError(t, err)
	_, err = r.Add(Device{ID: "btn-1", Kind: KindButton, Site: "s", Wearer: "Ann", UploadTokenSHA256: hash}, time.Now())
	require.Error(t, err, "only cameras have upload tokens")

	d, ok, err := r.CameraByToken(tok)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "cam-1", d.ID)
	for _, bad := range []string{"", hash, tok + "x", "vcam_"} {
		_, ok, err := r.CameraByToken(bad)
		require.NoError(t, err)
		assert.False(t, ok, "%q must not authenticate", bad)
	}
	b, err := os.ReadFile(r.Path())
	require.NoError(t, err)
	assert.NotContains(t, string(b), tok, "the token itself is never stored")
}
