package access

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password length limits, in characters. The maximum only bounds the work
// one login can cause.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 1024
)

// HashParams are the argon2id cost parameters for new password hashes.
// Hashes made with other parameters still verify, and are re-hashed with the
// current ones at the next successful login.
type HashParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultHashParams is OWASP's argon2id recommendation m=19 MiB, t=2, p=1:
// about 50-100 ms on a Raspberry Pi 4, and small enough that a few logins at
// once fit in a 1 GB board's memory.
func DefaultHashParams() HashParams { return HashParams{Memory: 19456, Time: 2, Threads: 1} }

const (
	saltLen = 16
	keyLen  = 32
	// maxMemory bounds what a stored hash can make a login allocate (1 GiB).
	maxMemory = 1 << 20
)

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// CheckPassword reports why a password is not acceptable (it enforces the
// length rules), or nil. Its errors never contain the password.
func CheckPassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return invalid("password: not valid UTF-8")
	case n < MinPasswordLength:
		return invalid(fmt.Sprintf("password: too short (%d characters): use at least %d, a passphrase of several words is easiest", n, MinPasswordLength))
	case len(pw) > MaxPasswordLength:
		return invalid(fmt.Sprintf("password: longer than %d bytes", MaxPasswordLength))
	}
	return nil
}

// hashPassword returns pw's argon2id hash as a PHC string:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func hashPassword(pw string, p HashParams) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("access: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash means a stored hash cannot be used: the user cannot log in
// with a password until one is set again.
var errBadHash = errors.New("access: stored password hash is not a usable argon2id PHC string")

// parseHash splits a PHC argon2id string.
func parseHash(phc string) (p HashParams, salt, key []byte, err error) {
	parts := strings.Split(phc, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errBadHash
	}
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return p, nil, nil, errBadHash
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return p, nil, nil, errBadHash
			}
			p.Threads = uint8(n)
		default:
			return p, nil, nil, errBadHash
		}
	}
	if p.Time < 1 || p.Threads < 1 || p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory {
		return p, nil, nil, errBadHash
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// verifyPassword reports whether pw matches the PHC hash, comparing in
// constant time, and the parameters the hash was made with.
func verifyPassword(phc, pw string) (bool, HashParams, error) {
	p, salt, key, err := parseHash(phc)
	if err != nil {
		return false, p, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, p, nil
}
