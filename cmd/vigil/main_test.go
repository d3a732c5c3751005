package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func vigil(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestDeviceAddAndList(t *testing.T) {
	state := t.TempDir()
	code, out, errs := vigil("device", "add", "btn-1", "--kind", "button", "--site", "leeds", "--wearer", "Nurse A", "--camera", "cam-1", "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "added button btn-1 at leeds for Nurse A (zone 001)\n", out)

	code, out, _ = vigil("device", "list", "--state", state)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	assert.Regexp(t, `^btn-1\s+button\s+leeds\s+001\s+Nurse A\s+cam-1\s+`, lines[1])
}

func TestFailuresAreOneLineAndNonZero(t *testing.T) {
	state := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("nonsense: 1\n"), 0o600))
	for name, args := range map[string][]string{
		"duplicate":      {"device", "add", "btn-1", "--kind", "button", "--site", "s", "--wearer", "W", "--state", state},
		"bad kind":       {"device", "add", "btn-2", "--kind", "phone", "--site", "s", "--wearer", "W", "--state", state},
		"id missing":     {"device", "add", "--kind", "button", "--state", state},
		"bad config":     {"device", "list", "--config", cfg},
		"run bad config": {"run", "--config", cfg},
		"run bad arc":    {"run", "--state", state, "--arc", "tcp://127.0.0.1:1?receiver=1", "--http", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0"},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "duplicate" {
				code, _, errs := vigil(args...)
				require.Equal(t, 0, code, errs)
			}
			code, _, errs := vigil(args...)
			assert.Equal(t, 1, code)
			last := strings.TrimSpace(errs)
			last = last[strings.LastIndex(last, "\n")+1:]
			assert.True(t, strings.HasPrefix(last, "vigil: "), "reason line: %q", errs)
		})
	}
	code, _, _ := vigil("frobnicate")
	assert.Equal(t, 2, code, "unknown command is a usage error")
}

func TestTokenCreateAndList(t *testing.T) {
	state := t.TempDir()
	code, out, errs := vigil("token", "create", "--role", "operator", "--name", "Operator 7", "--state", state)
	require.Equal(t, 0, code, errs)
	secret := strings.TrimSpace(out)
	assert.True(t, strings.HasPrefix(secret, "vgl_"), "only the secret on stdout, for scripts")
	assert.Contains(t, errs, "shown once")
	code, out, _ = vigil("token", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "operator  Operator 7")
	assert.NotContains(t, out, secret)
	code, _, errs = vigil("token", "create", "--role", "root", "--name", "x", "--state", state)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, `role "root"`)

	// The named user is created once; another token for the same role is
	// fine, another role is refused rather than changed.
	code, out, errs = vigil("token", "create", "--role", "operator", "--name", "operator 7", "--state", state)
	require.Equal(t, 0, code, errs)
	assert.NotContains(t, errs, "added user", "the user exists")
	assert.True(t, strings.HasPrefix(out, "vgl_"))
	code, _, errs = vigil("token", "create", "--role", "admin", "--name", "Operator 7", "--state", state)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "user Operator 7 exists with role operator, not admin")
	code, out, _ = vigil("user", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^Operator 7\s+operator\s+no\s+2\s+active\s+`, out)

	// Revoking one leaves the other.
	code, out, _ = vigil("token", "list", "--state", state)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	id := strings.Fields(lines[1])[0]
	code, out, errs = vigil("token", "revoke", id, "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "revoked token "+id+"\n", out)
	code, _, errs = vigil("token", "revoke", id, "--state", state)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "no such token")
	code, out, _ = vigil("token", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.NotContains(t, out, id)
	assert.Equal(t, 2, strings.Count(out, "\n"))
}

// TestTokenListImportsLegacyFile: the first command after an upgrade moves
// tokens.json into the governance database, and says so.
func TestTokenListImportsLegacyFile(t *testing.T) {
	state := t.TempDir()
	const secret = "vgl_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sum := sha256.Sum256([]byte(secret))
	h := hex.EncodeToString(sum[:])
	require.NoError(t, os.WriteFile(filepath.Join(state, "tokens.json"),
		[]byte(`{"tokens":[{"id":"`+h[:12]+`","name":"Team lead","role":"supervisor","sha256":"`+h+`","created":"2025-01-01T00:00:00Z"}]}`), 0o600))
	code, out, errs := vigil("token", "list", "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, errs, "imported API tokens from a legacy token file")
	assert.Contains(t, errs, "tokens.json.imported")
	assert.Regexp(t, `(?m)^`+h[:12]+`\s+supervisor\s+Team lead\s+2025-01-01T00:00:00Z$`, out)
	code, _, errs = vigil("token", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.NotContains(t, errs, "imported", "once")
}

func TestDeviceAddWithSerialKey(t *testing.T) {
	state := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "p-1.key")
	code, out, errs := vigil("device", "add", "p-1", "--kind", "button", "--site", "s", "--wearer", "W", "--serial-key-file", keyFile, "--state", state)
	require.Equal(t, 0, code, errs)
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	assert.Len(t, strings.TrimSpace(string(key)), 64, "a new 32-byte key for provisioning")
	assert.NotContains(t, out+errs, strings.TrimSpace(string(key)), "never printed")
	st, err := os.Stat(keyFile)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	// An existing key file is used as it is.
	code, _, errs = vigil("device", "add", "p-2", "--kind", "button", "--site", "s", "--wearer", "W", "--serial-key-file", keyFile, "--state", state)
	require.Equal(t, 0, code, errs)
	bad := filepath.Join(t.TempDir(), "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("abcd"), 0o600))
	code, _, errs = vigil("device", "add", "p-3", "--kind", "button", "--site", "s", "--wearer", "W", "--serial-key-file", bad, "--state", state)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "at least 16 bytes")
}
