package access

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHashFormatAndVerify(t *testing.T) {
	const pw = "correct horse battery"
	phc, err := hashPassword(pw, DefaultHashParams())
	require.NoError(t, err)
	assert.Regexp(t, `^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`, phc)

	ok, params, err := verifyPassword(phc, pw)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, DefaultHashParams(), params)
	ok, _, err = verifyPassword(phc, pw+" ")
	require.NoError(t, err)
	assert.False(t, ok)

	again, err := hashPassword(pw, DefaultHashParams())
	require.NoError(t, err)
	assert.NotEqual(t, phc, again, "a fresh salt every time")
}

// TestReferenceVectors checks hashes made by the reference implementation
// verify here, so the PHC strings are the standard ones.
func TestReferenceVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/argon2id.json")
	require.NoError(t, err)
	var f struct {
		Vectors []struct{ Password, PHC string }
	}
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotEmpty(t, f.Vectors)
	for _, v := range f.Vectors {
		ok, _, err := verifyPassword(v.PHC, v.Password)
		require.NoError(t, err, v.PHC)
		assert.True(t, ok, v.PHC)
		ok, _, err = verifyPassword(v.PHC, strings.ToUpper(v.Password))
		require.NoError(t, err)
		assert.False(t, ok)
	}
}

// badHashes are PHC strings parseHash must refuse; they also seed the fuzz
// test.
var badHashes = []string{
	"",
	"plain",
	"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,p=300$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,x=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,p$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
	"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
	"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA$extra",
}

func TestParseHashRefuses(t *testing.T) {
	for _, s := range badHashes {
		_, _, _, err := parseHash(s)
		assert.ErrorIs(t, err, errBadHash, s)
		ok, _, err := verifyPassword(s, "whatever password")
		assert.Error(t, err)
		assert.False(t, ok)
	}
	_, _, _, err := parseHash("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	assert.NoError(t, err, "a well-formed cheap hash parses")
}

func FuzzParseHash(f *testing.F) {
	for _, s := range badHashes {
		f.Add(s)
	}
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$dmlnaWwtdGVzdC1zYWx0IQ$nITm+SDmZ9HarLBMsBmeNc9+6UntMPKDguBq+Om2zSg")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parseHash(s)
		if err != nil {
			return
		}
		if p.Time < 1 || p.Threads < 1 || p.Memory > maxMemory || p.Memory < 8*uint32(p.Threads) || len(salt) < 8 || len(key) < 16 {
			t.Fatalf("accepted unusable parameters %+v from %q", p, s)
		}
	})
}

func TestCheckPassword(t *testing.T) {
	require.NoError(t, CheckPassword("twelve chars"))
	require.NoError(t, CheckPassword("ññññññññññññ"), "characters, not bytes")
	for pw, why := range map[string]string{
		"":                          "too short",
		"elevenchars":               "too short (11 characters)",
		strings.Repeat("x", 1025):   "longer than 1024",
		"\xff\xfe twelve or more x": "UTF-8",
	} {
		err := CheckPassword(pw)
		require.ErrorIs(t, err, ErrInvalid)
		assert.ErrorContains(t, err, why)
		assert.NotContains(t, err.Error(), "elevenchars", "never echoed")
	}
	assert.Regexp(t, regexp.MustCompile(`at least 12`), CheckPassword("short").Error())
}
