package dc09

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vectors is the golden file testdata/vectors.json.
type vectors struct {
	CRC []struct {
		Name, Input, CRC string
	} `json:"crc"`
	Frames []struct {
		Name   string    `json:"name"`
		Region string    `json:"region"` // the CRC-covered region; the test adds LF, CRC, LEN, CR
		Raw    string    `json:"raw"`    // or the whole frame
		CRC    string    `json:"crc"`
		Len    string    `json:"len"`
		Want   wantFrame `json:"want"`
	} `json:"frames"`
	Invalid []struct {
		Name  string `json:"name"`
		Raw   string `json:"raw"`  // the whole frame, or
		Body  string `json:"body"` // a region the test wraps with a correct CRC and LEN
		Field string `json:"field"`
		Error string `json:"error"` // the exact message, when given
	} `json:"invalid"`
}

type wantFrame struct {
	ID        string   `json:"id"`
	Seq       int      `json:"seq"`
	Receiver  string   `json:"receiver"`
	Prefix    string   `json:"prefix"`
	Account   string   `json:"account"`
	Data      string   `json:"data"`
	XData     []string `json:"xdata"`
	Timestamp string   `json:"timestamp"`
}

func (w wantFrame) frame(t *testing.T) Frame {
	f := Frame{ID: w.ID, Seq: w.Seq, Receiver: w.Receiver, Prefix: w.Prefix, Account: w.Account, Data: w.Data, XData: w.XData}
	if w.Timestamp != "" {
		ts, err := time.Parse(time.RFC3339, w.Timestamp)
		require.NoError(t, err)
		f.Timestamp, f.HasTimestamp = ts, true
	}
	return f
}

func loadVectors(t testing.TB) vectors {
	b, err := os.ReadFile("testdata/vectors.json")
	require.NoError(t, err)
	var v vectors
	require.NoError(t, json.Unmarshal(b, &v))
	return v
}

// wrap surrounds a region with LF, its CRC and LEN, and CR.
func wrap(region string) []byte {
	return fmt.Appendf(nil, "\n%04X%04X%s\r", CRC16([]byte(region)), len(region), region)
}

func TestCRC16Vectors(t *testing.T) {
	for _, tc := range loadVectors(t).CRC {
		t.Run(tc.Name, func(t *testing.T) {
			assert.Equal(t, tc.CRC, fmt.Sprintf("%04X", CRC16([]byte(tc.Input))))
		})
	}
}

func TestParseFrameVectors(t *testing.T) {
	for _, tc := range loadVectors(t).Frames {
		t.Run(tc.Name, func(t *testing.T) {
			raw := []byte(tc.Raw)
			if tc.Region != "" {
				raw = wrap(tc.Region)
			}
			if tc.CRC != "" {
				assert.Equal(t, tc.CRC, string(raw[1:5]), "CRC")
			}
			if tc.Len != "" {
				assert.Equal(t, tc.Len, string(raw[5:9]), "LEN")
			}
			f, err := ParseFrame(raw, nil)
			require.NoError(t, err)
			assert.Equal(t, tc.Want.frame(t), f)

			// Encoding the parsed frame gives back the same bytes.
			again, err := f.Encode(nil)
			require.NoError(t, err)
			assert.Equal(t, string(raw), string(again))
		})
	}
}

func TestParseFrameInvalid(t *testing.T) {
	for _, tc := range loadVectors(t).Invalid {
		t.Run(tc.Name, func(t *testing.T) {
			raw := []byte(tc.Raw)
			if tc.Body != "" {
				raw = wrap(tc.Body)
			}
			_, err := ParseFrame(raw, nil)
			require.Error(t, err)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.Field, fe.Field, "field of %v", err)
			assert.True(t, strings.HasPrefix(err.Error(), "dc09: "+tc.Field+": "), err.Error())
			if tc.Error != "" {
				assert.EqualError(t, err, tc.Error)
			}
		})
	}
}

// testKeys are one key of each AES size, and nil for clear frames.
var testKeys = map[string][]byte{
	"clear":   nil,
	"AES-128": bytes.Repeat([]byte{0x11}, 16),
	"AES-192": bytes.Repeat([]byte{0x22}, 24),
	"AES-256": bytes.Repeat([]byte{0x33}, 32),
}

func TestFrameRoundTrip(t *testing.T) {
	ts := time.Date(2025, 6, 1, 10, 0, 5, 0, time.UTC)
	frames := map[string]Frame{
		"ADM-CID alarm": {ID: IDADMCID, Seq: 1, Receiver: "1", Prefix: "2", Account: "1234", Data: "#1234|1121 01 005",
			XData: []string{"H10:00:00,06-01-2025", "X-1.234567", "Y53.123456", "Ihelp"}, Timestamp: ts, HasTimestamp: true},
		"ADM-CID restore": {ID: IDADMCID, Seq: 2, Account: "1234", Data: "#1234|3121 01 005", Timestamp: ts, HasTimestamp: true},
		"SIA-DCS alarm":   {ID: IDSIADCS, Seq: 9999, Account: "ABCDEF", Data: "#ABCDEF|Nri1/HA005", Timestamp: ts, HasTimestamp: true},
		"SIA-DCS restore": {ID: IDSIADCS, Seq: 10, Prefix: "789ABC", Account: "ABCDEF", Data: "#ABCDEF|Nri1/HR005", Timestamp: ts, HasTimestamp: true},
		"NULL":            {ID: IDNull, Seq: 77, Account: "000", Timestamp: ts, HasTimestamp: true},
		"ACK":             {ID: IDACK, Seq: 77, Receiver: "ABCDEF", Account: "000", Timestamp: ts, HasTimestamp: true},
	}
	for name, f := range frames {
		for keyName, key := range testKeys {
			t.Run(name+"/"+keyName, func(t *testing.T) {
				raw, err := f.Encode(key)
				require.NoError(t, err)
				require.Equal(t, byte('\n'), raw[0])
				require.Equal(t, byte('\r'), raw[len(raw)-1])
				if key != nil {
					assert.Contains(t, string(raw), `"*`+f.ID+`"`)
					if f.Data != "" {
						assert.NotContains(t, string(raw), f.Data, "data must not appear in clear")
					}
				}
				got, err := ParseFrame(raw, key)
				require.NoError(t, err)
				want := f
				want.Encrypted = key != nil
				assert.Equal(t, want, got)
			})
		}
	}
}

func TestEncryptedRegionLayout(t *testing.T) {
	key := testKeys["AES-128"]
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	// Body lengths around the block size, including exact multiples, which
	// must get a full block of pad.
	for dataLen := 0; dataLen < 40; dataLen++ {
		t.Run(fmt.Sprint(dataLen), func(t *testing.T) {
			f := Frame{ID: IDSIADCS, Seq: 1, Account: "1234", Data: strings.Repeat("d", dataLen), Timestamp: ts, HasTimestamp: true}
			raw, err := f.Encode(key)
			require.NoError(t, err)
			open := bytes.IndexByte(raw, '[')
			hexText := raw[open+1 : len(raw)-1]
			require.Zero(t, len(hexText)%32, "ciphertext is whole blocks")
			assert.Equal(t, strings.ToUpper(string(hexText)), string(hexText), "hex is upper case")
			plain, err := decryptHex(key, hexText)
			require.NoError(t, err)
			bar := bytes.IndexByte(plain, '|')
			require.GreaterOrEqual(t, bar, 1, "pad is at least one byte")
			require.LessOrEqual(t, bar, 16, "pad is at most one block")
			assert.NotContains(t, string(plain[:bar]), "[")
			assert.NotContains(t, string(plain[:bar]), "]")
			assert.Equal(t, f.Data+"]_03:04:05,01-02-2025", string(plain[bar+1:]))
		})
	}
}

func TestParseFrameEncryptedErrors(t *testing.T) {
	key := testKeys["AES-256"]
	f := Frame{ID: IDADMCID, Seq: 5, Account: "1234", Data: "#1234|1121 01 001", Timestamp: time.Now(), HasTimestamp: true}
	raw, err := f.Encode(key)
	require.NoError(t, err)
	cases := map[string]struct {
		raw   []byte
		key   []byte
		field string
	}{
		"no key":           {raw, nil, "key"},
		"wrong key":        {raw, testKeys["AES-128"], "data"},
		"bad key size":     {raw, []byte("short"), "key"},
		"odd ciphertext":   {wrap(`"*NULL"0001#1234[ABC`), key, "data"},
		"not hex":          {wrap(`"*NULL"0001#1234[` + strings.Repeat("Z", 32)), key, "data"},
		"empty ciphertext": {wrap(`"*NULL"0001#1234[`), key, "data"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseFrame(tc.raw, tc.key)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.field, fe.Field, err.Error())
			// The header read before the failure is kept for the receiver's answer.
			assert.NotEmpty(t, got.Account)
		})
	}
}

// Under a wrong key the decrypted text is noise; whatever it happens to
// contain, the error names the data, or the timestamp an encrypted frame
// must end with when the noise parsed as a body without one, with the key
// as the likely cause; never whichever later field the noise broke. Many
// keys, so the chance passes of the pad check are covered every run (the IV
// is random, so the noise differs from run to run).
func TestParseFrameWrongKeys(t *testing.T) {
	f := Frame{ID: IDADMCID, Seq: 5, Account: "1234", Data: "#1234|1121 01 001",
		Timestamp: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC), HasTimestamp: true}
	raw, err := f.Encode(testKeys["AES-256"])
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	passedPad := 0
	for i := range 2000 {
		wrong := make([]byte, 32)
		for j := range wrong {
			wrong[j] = byte(rng.Uint32())
		}
		_, err := ParseFrame(raw, wrong)
		var fe *FieldError
		require.ErrorAs(t, err, &fe, "key %d", i)
		require.Contains(t, []string{"data", "timestamp"}, fe.Field, "key %d: %v", i, err)
		require.Contains(t, err.Error(), "wrong key?", "key %d", i)
		if strings.Contains(err.Error(), "not a valid body") {
			passedPad++
		}
	}
	t.Logf("%d of 2000 wrong keys passed the pad check", passedPad)
}

func TestEncodeRejectsBadFields(t *testing.T) {
	ok := Frame{ID: IDADMCID, Seq: 1, Account: "1234", Data: "x"}
	cases := map[string]struct {
		edit  func(*Frame)
		key   []byte
		field string
	}{
		"id":                     {func(f *Frame) { f.ID = "a b" }, nil, "id"},
		"seq 0":                  {func(f *Frame) { f.Seq = 0 }, nil, "seq"},
		"seq 10000":              {func(f *Frame) { f.Seq = 10000 }, nil, "seq"},
		"receiver":               {func(f *Frame) { f.Receiver = "1234567" }, nil, "receiver"},
		"prefix":                 {func(f *Frame) { f.Prefix = "XY" }, nil, "prefix"},
		"account":                {func(f *Frame) { f.Account = "12" }, nil, "account"},
		"data bracket":           {func(f *Frame) { f.Data = "a]b" }, nil, "data"},
		"data newline":           {func(f *Frame) { f.Data = "a\nb" }, nil, "data"},
		"xdata empty":            {func(f *Frame) { f.XData = []string{""} }, nil, "xdata"},
		"timestamp year":         {func(f *Frame) { f.Timestamp, f.HasTimestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), true }, nil, "timestamp"},
		"encrypted no timestamp": {func(f *Frame) {}, testKeys["AES-128"], "timestamp"},
		"bad key":                {func(f *Frame) { f.HasTimestamp = true }, []byte("0123"), "key"},
		"too long":               {func(f *Frame) { f.Data = strings.Repeat("a", 0x10000) }, nil, "len"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := ok
			tc.edit(&f)
			_, err := f.Encode(tc.key)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tc.field, fe.Field, err.Error())
		})
	}
}

func TestFrameReader(t *testing.T) {
	a := wrap(`"NULL"0001#1234[]`)
	b := wrap(`"ACK"0001#1234[]`)
	c := wrap(`"NULL"0002#1234[]`)
	var stream bytes.Buffer
	stream.WriteString("noise before")
	stream.Write(a)
	stream.Write(b) // two frames back to back
	stream.WriteString("\npartial frame cut by a new LF")
	stream.Write(c)
	stream.WriteString("\ntrailing partial")

	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream.Bytes()),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream.Bytes())),
		"halves":   iotest.HalfReader(bytes.NewReader(stream.Bytes())),
	} {
		t.Run(name, func(t *testing.T) {
			fr := newFrameReader(r)
			for _, want := range [][]byte{a, b, c} {
				got, err := fr.next()
				require.NoError(t, err)
				assert.Equal(t, string(want), string(got))
			}
			_, err := fr.next()
			assert.ErrorIs(t, err, io.EOF)
		})
	}

	t.Run("over-long frame is skipped", func(t *testing.T) {
		long := append([]byte{'\n'}, bytes.Repeat([]byte{'x'}, MaxFrameSize+10)...)
		fr := newFrameReader(bytes.NewReader(append(long, a...)))
		_, err := fr.next()
		require.ErrorIs(t, err, errFrameTooLong)
		got, err := fr.next()
		require.NoError(t, err)
		assert.Equal(t, string(a), string(got))
	})
}

func TestFieldErrorUnwrap(t *testing.T) {
	_, err := ParseFrame(wrap(`"*NULL"0001#1234[`+strings.Repeat("0", 32)), []byte("bad"))
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "key", fe.Field)
	_, err = decryptHex(testKeys["AES-128"], []byte(hex.EncodeToString(make([]byte, 16))))
	require.NoError(t, err)
	wrapped := &FieldError{Field: "key", Problem: "x", Err: io.ErrUnexpectedEOF}
	assert.True(t, errors.Is(wrapped, io.ErrUnexpectedEOF))
	assert.Equal(t, "dc09: key: x: unexpected EOF", wrapped.Error())
}
