// Package buildinfo says which build of Vigil is running: the version,
// commit and build date the Makefile stamps into every binary with
// -ldflags -X, and the Go toolchain that compiled it. A technician reading
// `vigil version` on a box in a cupboard, or an expert checking which
// vigil-verify produced a report, needs to name the exact source.
//
// A binary built without the Makefile (go build, go install) still knows its
// commit: the go command records it in the binary's build information, which
// Get falls back to.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set only by the linker (-X), never at run time: they are constants that
// the build, not the source, decides. Unexported so nothing can change them.
var (
	version string
	commit  string
	date    string
)

// Info describes one build.
type Info struct {
	// Version is `git describe --tags --always --dirty` at build time, the
	// module version for go install, or "0.0.0-dev" when neither is known.
	Version string
	// Commit is the full revision, with "-dirty" when the tree had
	// uncommitted changes and the version did not already say so; "unknown"
	// when it cannot be told.
	Commit string
	// Date is when the commit was made (the Makefile's default, which keeps
	// builds reproducible) or the build date it was given, RFC 3339;
	// "unknown" when it cannot be told.
	Date string
	// GoVersion is the toolchain that compiled the binary.
	GoVersion string
	// Platform is GOOS/GOARCH, with the ARM variant when there is one.
	Platform string
}

// Fallbacks for what nothing recorded.
const (
	DevVersion = "0.0.0-dev"
	unknown    = "unknown"
)

// Get returns this binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolve(Info{Version: version, Commit: commit, Date: date}, bi)
}

// resolve fills what the linker did not stamp from the go command's build
// information (vcs.revision, vcs.time, vcs.modified, the module version),
// then from the fallbacks.
func resolve(stamped Info, bi *debug.BuildInfo) Info {
	info := stamped
	info.GoVersion = runtime.Version()
	info.Platform = runtime.GOOS + "/" + runtime.GOARCH
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if settings["GOOS"] != "" && settings["GOARCH"] != "" {
			info.Platform = settings["GOOS"] + "/" + settings["GOARCH"]
		}
		if arm := settings["GOARM"]; arm != "" && settings["GOARCH"] == "arm" {
			info.Platform += "v" + arm
		}
		if info.Version == "" {
			// go build in a checkout says "(devel)" or a pseudo-version
			// derived from the commit, go install MODULE@VERSION the version.
			if v := bi.Main.Version; v != "" && v != "(devel)" {
				info.Version = v
			}
		}
		if info.Commit == "" && settings["vcs.revision"] != "" {
			info.Commit = settings["vcs.revision"]
			if settings["vcs.modified"] == "true" {
				info.Commit += "-dirty"
			}
		}
		if info.Date == "" {
			info.Date = settings["vcs.time"]
		}
	}
	if info.Version == "" {
		info.Version = DevVersion
	}
	if info.Commit == "" {
		info.Commit = unknown
	}
	if info.Date == "" {
		info.Date = unknown
	}
	return info
}

// String is the one line `vigil version` prints after the program's name.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, built %s, %s %s)", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
}
