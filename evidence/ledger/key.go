package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// LoadOrCreateKey returns the gateway's checkpoint signer and its verifier,
// reading the note private key ("PRIVATE+KEY+<name>+<hash>+<key>") from
// path, or, on first run, generating an Ed25519 key named name and writing
// it there with mode 0600.
//
// The key name is part of every signature line and of the verifier key
// police pin, so a key file made under another name is refused rather than
// silently signing under a name the configuration no longer states. A key
// file readable by group or others is refused too: whoever can read it can
// sign checkpoints.
func LoadOrCreateKey(path, name string) (note.Signer, note.Verifier, error) {
	if name == "" || !utf8.ValidString(name) || strings.ContainsRune(name, '+') || strings.IndexFunc(name, unicode.IsSpace) >= 0 {
		// note.GenerateKey does not check; a key written under such a name
		// could never be loaded again.
		return nil, nil, fmt.Errorf("ledger: key %s: name %q must be non-empty, without spaces or '+'", path, clipTrim(name))
	}
	skey, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, err = createKey(path, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: key %s: %w", path, err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: key %s: not a note signer key: %w", path, err)
	}
	if signer.Name() != name {
		return nil, nil, fmt.Errorf("ledger: key %s: key is named %q but the configured name is %q: use the old name or move the key away to make a new one (old checkpoints still need the old verifier key)", path, signer.Name(), name)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: key %s: %w", path, err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: key %s: %w", path, err)
	}
	return signer, verifier, nil
}

// VerifierKey returns the public verifier key ("<name>+<hash>+<key>") for
// the private key at path: what `vigil evidence pubkey` prints, and what a
// police or IG verifier pins to check checkpoints. It never creates a key.
func VerifierKey(path string) (string, error) {
	skey, err := readKey(path)
	if err != nil {
		return "", fmt.Errorf("ledger: verifier key %s: %w", path, err)
	}
	vkey, err := verifierKey(skey)
	if err != nil {
		return "", fmt.Errorf("ledger: verifier key %s: %w", path, err)
	}
	return vkey, nil
}

// readKey reads a key file, refusing one that others can read.
func readKey(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("mode %04o lets others read the signing key: chmod 600 it", perm)
	}
	// A note key is about 100 bytes; the limit keeps a wrong path from
	// reading a huge file into memory.
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// createKey generates a key and writes it to path atomically: a crash
// leaves either no key file or a complete one, never a truncated key that
// the next start would refuse (or, worse, replace, orphaning the
// checkpoints already signed).
func createKey(path, name string) (string, error) {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", fmt.Errorf("generate key named %q: %w", name, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// CreateTemp makes the file 0600 from the start, so the key is never
	// readable by others, even briefly.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // fails harmlessly once renamed
	if _, err := tmp.WriteString(skey + "\n"); err != nil {
		tmp.Close()
		return "", err
	}
	// fsync the data before the rename publishes the name: otherwise a
	// power cut could leave the new name pointing at an empty file.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return "", err
	}
	// fsync the directory so the rename itself survives a power cut.
	d, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return "", err
	}
	return skey, nil
}

// verifierKey derives the verifier key from a note signer key. The note
// package keeps the public half private, so the Ed25519 seed is decoded
// here (format: PRIVATE+KEY+name+hash+base64(0x01 || seed)).
func verifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key (PRIVATE+KEY+name+hash+key)")
	}
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("not a valid note signer key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(parts[2], pub)
	if err != nil {
		return "", err
	}
	return vkey, nil
}
