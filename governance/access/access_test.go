package access

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCreateAuthenticateAndStoreOnlyHashes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	s := Open(path)
	secret, tok, err := s.Create("Operator 7", Operator, time.Now())
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(secret, "vgl_"))
	assert.Len(t, tok.ID, 12)

	got, err := Open(path).Authenticate(secret)
	require.NoError(t, err, "another process sees it")
	assert.Equal(t, "Operator 7", got.Name)
	assert.Equal(t, Operator, got.Role)

	_, err = s.Authenticate(secret + "x")
	require.ErrorIs(t, err, ErrUnknown)
	_, err = s.Authenticate("Bearer " + secret)
	require.ErrorIs(t, err, ErrUnknown)

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), secret, "the secret is never stored")
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// A token created while the store is in use is picked up.
	secret2, _, err := Open(path).Create("IG officer", Admin, time.Now())
	require.NoError(t, err)
	_, err = s.Authenticate(secret2)
	require.NoError(t, err)
}

func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		role Role
		perm Permission
		ok   bool
	}{
		{Operator, ReadAlerts, true},
		{Operator, ActOnAlerts, true},
		{Operator, ReadDevices, false},
		{Operator, ReadRejected, false},
		{Supervisor, ReadDevices, true},
		{Supervisor, ReadRoutes, true},
		{Admin, ReadRejected, true},
		{Admin, "launch_missiles", false},
		{"intern", ReadAlerts, false},
	} {
		assert.Equal(t, tc.ok, tc.role.Allows(tc.perm), "%s %s", tc.role, tc.perm)
	}
}

func TestCreateValidates(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "tokens.json"))
	_, _, err := s.Create("", Operator, time.Now())
	require.ErrorContains(t, err, "name")
	_, _, err = s.Create("x", "root", time.Now())
	require.ErrorContains(t, err, `role "root"`)
}
