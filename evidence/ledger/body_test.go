package ledger

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sampleSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func sampleClip() Clip {
	return Clip{
		Camera:   "cam-1",
		Clip:     "c1",
		Wearer:   "w-17",
		Site:     "site-a",
		Start:    time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC),
		End:      time.Date(2025, 3, 1, 9, 5, 0, 0, time.UTC),
		Size:     1048576,
		SHA256:   sampleSHA,
		Received: time.Date(2025, 3, 1, 9, 6, 12, 345e6, time.UTC),
		Ingest:   IngestTUS,
	}
}

// TestCanonicalBodyFormat pins the byte format documented in doc.go: if
// this test has to change, every existing entry hash has changed.
func TestCanonicalBodyFormat(t *testing.T) {
	want := `{"camera":"cam-1","clip":"c1","wearer":"w-17","site":"site-a",` +
		`"start":"2025-03-01T09:00:00.000Z","end":"2025-03-01T09:05:00.000Z",` +
		`"size":1048576,"sha256":"` + sampleSHA + `",` +
		`"received":"2025-03-01T09:06:12.345Z","ingest":"tus","prev":""}`
	b, err := CanonicalBody(sampleClip(), "")
	require.NoError(t, err)
	assert.Equal(t, want, string(b))

	c, prev, err := ParseBody(b)
	require.NoError(t, err)
	assert.Equal(t, sampleClip(), c)
	assert.Equal(t, "", prev)

	// A local time and nanoseconds encode as the same UTC milliseconds.
	local := sampleClip()
	local.Received = local.Received.In(time.FixedZone("X", -5*3600)).Add(999 * time.Microsecond)
	b2, err := CanonicalBody(local, "")
	require.NoError(t, err)
	assert.Equal(t, want, string(b2))

	_, err = CanonicalBody(sampleClip(), "XYZ")
	assert.ErrorIs(t, err, ErrInvalid)
}

// TestCanonicalBodyClockUnsynchronised pins the optional key: present and
// true after prev when the gateway's clock was unsynchronised, absent
// otherwise (so older bodies keep their bytes and hashes), never false.
func TestCanonicalBodyClockUnsynchronised(t *testing.T) {
	c := sampleClip()
	c.ClockUnsynchronised = true
	b, err := CanonicalBody(c, sampleSHA)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(b), `"ingest":"tus","prev":"`+sampleSHA+`","clock_unsynchronised":true}`), string(b))

	got, prev, err := ParseBody(b)
	require.NoError(t, err)
	assert.Equal(t, c, got)
	assert.Equal(t, sampleSHA, prev)

	plain, err := CanonicalBody(sampleClip(), sampleSHA)
	require.NoError(t, err)
	assert.NotContains(t, string(plain), "clock")
	assert.NotEqual(t, LeafHash(plain), LeafHash(b), "the mark is committed to by the entry hash")

	for name, body := range map[string]string{
		"false spelt out": strings.Replace(string(b), `:true}`, `:false}`, 1),
		"before prev":     strings.Replace(strings.Replace(string(b), `,"clock_unsynchronised":true`, ``, 1), `"prev":`, `"clock_unsynchronised":true,"prev":`, 1),
		"as a string":     strings.Replace(string(b), `:true}`, `:"true"}`, 1),
	} {
		_, _, err := ParseBody([]byte(body))
		assert.Error(t, err, name)
	}
}

func TestParseBodyRejects(t *testing.T) {
	good, err := CanonicalBody(sampleClip(), sampleSHA)
	require.NoError(t, err)
	g := string(good)
	tests := []struct {
		name string
		body string
		want string
	}{
		{"empty", "", "EOF"},
		{"not JSON", "garbage", "invalid character"},
		{"trailing newline", g + "\n", "not in canonical form"},
		{"trailing data", g + "{}", "data after the JSON object"},
		{"spaces", strings.Replace(g, `"clip":`, `"clip": `, 1), "not in canonical form"},
		{"key order", strings.Replace(g, `{"camera":"cam-1","clip":"c1"`, `{"clip":"c1","camera":"cam-1"`, 1), "not in canonical form"},
		{"key case", strings.Replace(g, `"camera"`, `"Camera"`, 1), "not in canonical form"},
		{"unknown key", strings.Replace(g, `"prev":`, `"extra":1,"prev":`, 1), "unknown field"},
		{"missing key", strings.Replace(g, `"ingest":"tus",`, ``, 1), `ingest "" is neither`},
		{"escaped character", strings.Replace(g, `"c1"`, `"\u00631"`, 1), "not in canonical form"},
		{"time without millis", strings.Replace(g, "09:00:00.000Z", "09:00:00Z", 1), "start time"},
		{"time with offset", strings.Replace(g, "09:00:00.000Z", "10:00:00.000+01:00", 1), "not in canonical form"},
		{"size as string", strings.Replace(g, `"size":1048576`, `"size":"1048576"`, 1), "cannot unmarshal"},
		{"size with exponent", strings.Replace(g, `"size":1048576`, `"size":1.048576e6`, 1), "cannot unmarshal"},
		{"bad prev", strings.Replace(g, sampleSHA+`"}`, `zz"}`, 1), `prev "zz" is neither empty`},
		{"invalid metadata", strings.Replace(g, `"cam-1"`, `"cam/1"`, 1), `camera "cam/1" is not a device id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseBody([]byte(tt.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// FuzzParseBody checks that ParseBody never panics and that whatever it
// accepts is canonical: encoding the result gives the input back.
func FuzzParseBody(f *testing.F) {
	good, err := CanonicalBody(sampleClip(), sampleSHA)
	require.NoError(f, err)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(strings.Replace(string(good), `"size":1048576`, `"size":-1`, 1)))
	f.Add([]byte(strings.Replace(string(good), `w-17`, `\"\\`, 1)))
	marked := sampleClip()
	marked.ClockUnsynchronised = true
	unsync, err := CanonicalBody(marked, sampleSHA)
	require.NoError(f, err)
	f.Add(unsync)
	f.Add([]byte(strings.Replace(string(unsync), `:true}`, `:false}`, 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, prev, err := ParseBody(b)
		if err != nil {
			return
		}
		again, err := CanonicalBody(c, prev)
		require.NoError(t, err)
		require.Equal(t, string(b), string(again))
	})
}
