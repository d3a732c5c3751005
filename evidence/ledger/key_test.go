package ledger

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "evidence") // parent does not exist yet
	path := filepath.Join(dir, "ledger.key")

	signer, verifier, err := LoadOrCreateKey(path, "vigil-site-a")
	require.NoError(t, err)
	assert.Equal(t, "vigil-site-a", signer.Name())
	assert.Equal(t, signer.KeyHash(), verifier.KeyHash())

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "PRIVATE+KEY+vigil-site-a+"), "%s", b)
	leftovers, err := filepath.Glob(filepath.Join(dir, ".ledger.key.tmp-*"))
	require.NoError(t, err)
	assert.Empty(t, leftovers, "the temp file was renamed, not left behind")

	// The second run loads the same key.
	signer2, _, err := LoadOrCreateKey(path, "vigil-site-a")
	require.NoError(t, err)
	assert.Equal(t, signer.KeyHash(), signer2.KeyHash())

	// The printed verifier key verifies what the signer signs.
	vkey, err := VerifierKey(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(vkey, "vigil-site-a+"), vkey)
	assert.NotContains(t, vkey, "PRIVATE")
	pinned, err := note.NewVerifier(vkey)
	require.NoError(t, err)
	f := newFixture(t)
	l, err := Open(context.Background(), f.db, signer2, testOrigin)
	require.NoError(t, err)
	f.appendAlternating(t, 2, "cam-1")
	cp, _, err := l.Checkpoint(context.Background(), t0)
	require.NoError(t, err)
	_, err = ParseCheckpoint(cp.Note, pinned)
	assert.NoError(t, err)
	_, err = ParseCheckpoint(cp.Note, verifier)
	assert.NoError(t, err)
}

func TestLoadOrCreateKeyErrors(t *testing.T) {
	skey, _, _ := ledgertest.SeededKey(t, "vigil-test", 3)
	write := func(t *testing.T, content string, mode os.FileMode) string {
		path := filepath.Join(t.TempDir(), "ledger.key")
		require.NoError(t, os.WriteFile(path, []byte(content), mode))
		require.NoError(t, os.Chmod(path, mode))
		return path
	}
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		keyName string
		want    string
	}{
		{"another name", skey + "\n", 0o600, "vigil-other", `key is named "vigil-test" but the configured name is "vigil-other"`},
		{"readable by others", skey + "\n", 0o644, "vigil-test", "mode 0644 lets others read the signing key: chmod 600 it"},
		{"not a key", "hello\n", 0o600, "vigil-test", "not a note signer key"},
		{"empty file", "", 0o600, "vigil-test", "not a note signer key"},
		{"verifier key instead", "vigil-test+01234567+AQ==\n", 0o600, "vigil-test", "not a note signer key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.content, tt.mode)
			_, _, err := LoadOrCreateKey(path, tt.keyName)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "ledger: key "+path), err.Error())
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tt.content, string(b), "an unusable key file is never replaced")
		})
	}

	t.Run("an unusable name creates nothing", func(t *testing.T) {
		for _, name := range []string{"", "two words", "a+b", "tab\there"} {
			path := filepath.Join(t.TempDir(), "ledger.key")
			_, _, err := LoadOrCreateKey(path, name)
			assert.ErrorContains(t, err, "must be non-empty, without spaces or '+'", "%q", name)
			_, err = os.Stat(path)
			assert.ErrorIs(t, err, os.ErrNotExist)
		}
	})

	t.Run("VerifierKey never creates a key", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.key")
		_, err := VerifierKey(path)
		assert.ErrorIs(t, err, os.ErrNotExist)
		_, err = os.Stat(path)
		assert.ErrorIs(t, err, os.ErrNotExist)
	})

	t.Run("VerifierKey of a seeded key", func(t *testing.T) {
		_, _, v := ledgertest.SeededKey(t, "vigil-test", 3)
		vkey, err := VerifierKey(write(t, skey, 0o600))
		require.NoError(t, err)
		got, err := note.NewVerifier(vkey)
		require.NoError(t, err)
		assert.Equal(t, v.KeyHash(), got.KeyHash())
	})
}
