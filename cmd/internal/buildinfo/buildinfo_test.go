package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestResolve(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name    string
		stamped Info
		bi      *debug.BuildInfo
		want    Info
	}{
		{
			name:    "stamped by the Makefile wins over the go command's record",
			stamped: Info{Version: "v0.2.0-3-gabc1234", Commit: "abc1234def", Date: "2026-11-01T10:00:00Z"},
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261101-abc1234"},
				Settings: vcs("vcs.revision", "ffff", "vcs.time", "2020-01-01T00:00:00Z")},
			want: Info{Version: "v0.2.0-3-gabc1234", Commit: "abc1234def", Date: "2026-11-01T10:00:00Z", GoVersion: "go1.26.8"},
		},
		{
			name: "plain go build in a dirty checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
				Settings: vcs("vcs.revision", "c56b318aa", "vcs.time", "2026-11-01T09:00:00Z", "vcs.modified", "true")},
			want: Info{Version: DevVersion, Commit: "c56b318aa-dirty", Date: "2026-11-01T09:00:00Z", GoVersion: "go1.26.8"},
		},
		{
			name: "go install at a module version, no VCS",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}},
			want: Info{Version: "v0.3.0", Commit: "unknown", Date: "unknown", GoVersion: "go1.26.8"},
		},
		{
			name: "no build information at all",
			want: Info{Version: DevVersion, Commit: "unknown", Date: "unknown", GoVersion: runtime.Version()},
		},
		{
			name:    "only the version stamped",
			stamped: Info{Version: "1.0.0"},
			bi:      &debug.BuildInfo{GoVersion: "go1.26.8", Settings: vcs("vcs.revision", "abc", "vcs.modified", "false")},
			want:    Info{Version: "1.0.0", Commit: "abc", Date: "unknown", GoVersion: "go1.26.8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.stamped, tt.bi)
			assert.True(t, strings.HasPrefix(got.Platform, runtime.GOOS+"/"+runtime.GOARCH), got.Platform)
			got.Platform = ""
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestResolveARMVariant(t *testing.T) {
	bi := &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm"}, {Key: "GOARM", Value: "7"}}}
	assert.Equal(t, "linux/armv7", resolve(Info{}, bi).Platform)
}

func TestString(t *testing.T) {
	i := Info{Version: "1.2.3", Commit: "abc", Date: "2026-11-01T10:00:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"}
	assert.Equal(t, "1.2.3 (commit abc, built 2026-11-01T10:00:00Z, go1.26.8 linux/arm64)", i.String())
}

// TestGet checks the binary under test (built by go test, which stamps
// nothing) still names a version and its toolchain.
func TestGet(t *testing.T) {
	got := Get()
	assert.NotEmpty(t, got.Version)
	assert.NotEmpty(t, got.Commit)
	assert.Equal(t, runtime.Version(), got.GoVersion)
}
