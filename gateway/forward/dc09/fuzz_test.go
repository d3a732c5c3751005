package dc09

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fuzzKeys selects the key for a fuzz input: none, or one of each AES size.
var fuzzKeys = [][]byte{nil, testKeys["AES-128"], testKeys["AES-192"], testKeys["AES-256"]}

// fuzzSeeds returns the golden vectors and encrypted frames, each with the
// index of the key that reads it. The checked-in corpus in
// testdata/fuzz/FuzzParseFrame holds the same kinds of input.
type fuzzSeed struct {
	raw []byte
	key uint8
}

func fuzzSeeds(t testing.TB) []fuzzSeed {
	v := loadVectors(t)
	var seeds []fuzzSeed
	for _, tc := range v.Frames {
		raw := []byte(tc.Raw)
		if tc.Region != "" {
			raw = wrap(tc.Region)
		}
		seeds = append(seeds, fuzzSeed{raw, 0})
	}
	for _, tc := range v.Invalid {
		raw := []byte(tc.Raw)
		if tc.Body != "" {
			raw = wrap(tc.Body)
		}
		seeds = append(seeds, fuzzSeed{raw, 0})
	}
	ts := time.Date(2025, 6, 1, 10, 0, 5, 0, time.UTC)
	frames := []Frame{
		{ID: IDADMCID, Seq: 1, Receiver: "1", Prefix: "2", Account: "1234", Data: "#1234|1121 01 005",
			XData: []string{"H10:00:00,06-01-2025", "X-1.234567", "Y53.123456", "Ihelp"}, Timestamp: ts, HasTimestamp: true},
		{ID: IDSIADCS, Seq: 9999, Account: "ABCDEF", Data: "#ABCDEF|Nri1/HR005", Timestamp: ts, HasTimestamp: true},
		{ID: IDNull, Seq: 2, Account: "000", Timestamp: ts, HasTimestamp: true},
		{ID: IDACK, Seq: 3, Account: "000", Data: strings.Repeat("|", 31), Timestamp: ts, HasTimestamp: true},
	}
	for i, f := range frames {
		for k, key := range fuzzKeys {
			raw, err := f.Encode(key)
			require.NoError(t, err, "seed %d", i)
			seeds = append(seeds, fuzzSeed{raw, uint8(k)})
		}
	}
	return seeds
}

// FuzzParseFrame checks that ParseFrame never panics, that every error is a
// *FieldError, and that whatever it accepts encodes and parses back to the
// same frame.
func FuzzParseFrame(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.raw, s.key)
	}
	f.Fuzz(func(t *testing.T, raw []byte, keySel uint8) {
		key := fuzzKeys[int(keySel)%len(fuzzKeys)]
		checkParse(t, raw, key)
		// Random bytes almost never carry a matching CRC; also reading the
		// input as the CRC-covered region lets the fuzzer reach the fields.
		if len(raw) <= 0xFFFF {
			checkParse(t, wrap(string(raw)), key)
		}
	})
}

func checkParse(t *testing.T, raw, key []byte) {
	fr, err := ParseFrame(raw, key)
	if err != nil {
		var fe *FieldError
		require.ErrorAs(t, err, &fe)
		require.True(t, strings.HasPrefix(err.Error(), "dc09: "+fe.Field+": "), err.Error())
		return
	}
	var encKey []byte
	if fr.Encrypted {
		encKey = key
	}
	again, err := fr.Encode(encKey)
	require.NoError(t, err, "a parsed frame must encode: %+v", fr)
	back, err := ParseFrame(again, encKey)
	require.NoError(t, err)
	require.Equal(t, fr, back)
}
