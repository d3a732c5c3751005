package objstore

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var keyCases = []struct {
	key string
	ok  bool
}{
	{"clips/site/cam-1/2026/03/01/clip_0001.mp4", true},
	{"checkpoints/vigil.example/00000000000000000042", true},
	{"a", true},
	{"a b/c", true},
	{"a.b/c-d_e~f", true},
	{"", false},
	{"/abs/key", false},
	{"a/../b", false},
	{"..", false},
	{"a..b", false},
	{"a//b", false},
	{"a/", false},
	{"./a", false},
	{"a/./b", false},
	{".", false},
	{`a\b`, false},
	{"a\x00b", false},
	{"a\nb", false},
	{"caf\u00e9", false},
	{"a\x7f", false},
	{strings.Repeat("a", 256), false},
	{strings.Repeat("a/", 600) + "a", false},
}

func TestValidKey(t *testing.T) {
	for _, tc := range keyCases {
		t.Run(tc.key, func(t *testing.T) {
			err := validKey(tc.key)
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func FuzzValidKey(f *testing.F) {
	for _, tc := range keyCases {
		f.Add(tc.key)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if validKey(key) != nil {
			return
		}
		// An accepted key names exactly one path below the root.
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", key, seg)
			}
		}
		if strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") {
			t.Fatalf("accepted %q", key)
		}
	})
}

func TestCheckPut(t *testing.T) {
	good := strings.Repeat("ab", 32)
	until := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	out, err := checkPut(PutOptions{SHA256: strings.ToUpper(good), Mode: Compliance, RetainUntil: until, Meta: map[string]string{"camera": "cam-1"}}, true)
	require.NoError(t, err)
	assert.Equal(t, good, out.SHA256)
	assert.Equal(t, time.Date(2030, 1, 2, 2, 4, 6, 0, time.UTC), out.RetainUntil, "rounded up to the second, in UTC")

	bad := []struct {
		name string
		opts PutOptions
		want string
	}{
		{"no digest", PutOptions{}, "SHA256"},
		{"short digest", PutOptions{SHA256: "abc"}, "SHA256"},
		{"bad mode", PutOptions{SHA256: good, Mode: "forever", RetainUntil: until}, "mode"},
		{"mode without date", PutOptions{SHA256: good, Mode: Governance}, "both"},
		{"date without mode", PutOptions{SHA256: good, RetainUntil: until}, "both"},
		{"reserved key", PutOptions{SHA256: good, Meta: map[string]string{"sha256": good}}, "reserved"},
		{"upper-case key", PutOptions{SHA256: good, Meta: map[string]string{"Camera": "x"}}, "a-z"},
		{"binary value", PutOptions{SHA256: good, Meta: map[string]string{"camera": "a\nb"}}, "printable"},
		{"too much", PutOptions{SHA256: good, Meta: map[string]string{"big": strings.Repeat("x", 2100)}}, "limit"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkPut(tc.opts, true)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestRetentionChange(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1, t2 := now.Add(time.Hour), now.Add(2*time.Hour)
	cases := []struct {
		name             string
		curMode          Mode
		curUntil         time.Time
		mode             Mode
		until            time.Time
		wantMode         Mode
		wantUntil        time.Time
		upgrade, changed bool
	}{
		{"none", "", time.Time{}, Governance, t1, Governance, t1, false, true},
		{"expired", Compliance, now.Add(-time.Hour), Governance, t1, Governance, t1, false, true},
		{"extend", Governance, t1, Governance, t2, Governance, t2, false, true},
		{"never shorten", Compliance, t2, Compliance, t1, Compliance, t2, false, false},
		{"same", Compliance, t2, Compliance, t2, Compliance, t2, false, false},
		{"never weaken", Compliance, t1, Governance, t2, Compliance, t2, false, true},
		{"upgrade", Governance, t2, Compliance, t1, Compliance, t2, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, u, up, ch := retentionChange(tc.curMode, tc.curUntil, tc.mode, tc.until, now)
			assert.Equal(t, tc.changed, ch)
			if ch {
				assert.Equal(t, tc.wantMode, m)
				assert.Equal(t, tc.wantUntil, u)
				assert.Equal(t, tc.upgrade, up)
			}
		})
	}
}
