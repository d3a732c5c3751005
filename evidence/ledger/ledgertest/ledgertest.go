// Package ledgertest gives tests of the ledger and of whatever signs with
// the same note keys (the audit trail's seals) reproducible keys.
package ledgertest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"
)

// SeededKey returns a note signer key ("PRIVATE+KEY+…"), its signer and its
// verifier, whose Ed25519 seed is 32 copies of seed: signatures (which
// Ed25519 makes deterministically) are stable across runs, and a second seed
// makes a different key under the same name.
func SeededKey(t testing.TB, name string, seed byte) (string, note.Signer, note.Verifier) {
	t.Helper()
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	require.NoError(t, err)
	hash := strings.Split(vkey, "+")[1]
	skey := "PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, s...))
	signer, err := note.NewSigner(skey)
	require.NoError(t, err)
	verifier, err := note.NewVerifier(vkey)
	require.NoError(t, err)
	return skey, signer, verifier
}
