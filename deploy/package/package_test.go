package packaging

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What the test stamps into its build, so `vigil version` can be checked
// against it.
const (
	testVersion = "v1.0.0-pkgtest"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
	testDate    = "2026-11-01T09:30:00Z"
	debV1       = "1.0.0~pkgtest1"
	debV2       = "1.0.0~pkgtest2"
)

// need fails the test in CI, or skips it elsewhere, when something it
// needs is missing: a developer's machine without dpkg still runs the rest
// of the suite, CI never silently passes without this test.
func need(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing %s (deploy/testenv/install.sh installs the tools)", what)
	}
	t.Skipf("missing %s (deploy/testenv/install.sh installs the tools); CI fails here", what)
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			need(t, tool)
		}
	}
}

// toolEnv is the environment for dpkg and the scripts: the sbin
// directories hold systemd-sysusers and friends even when the caller's PATH
// lacks them.
func toolEnv() []string {
	env := os.Environ()
	path := os.Getenv("PATH")
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if !strings.Contains(":"+path+":", ":"+dir+":") {
			path += ":" + dir
		}
	}
	// Clipped, so callers appending their own variables never share an array.
	return slices.Clip(append(env, "PATH="+path))
}

// run runs a command and returns its combined output, failing the test
// with that output when it does not succeed.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(env, name, args...)
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

func runErr(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// TestDebVersion checks how build.sh turns `git describe` output into
// Debian versions, and that those sort as the releases do: an upgrade dpkg
// refuses as a downgrade would leave a site on the old gateway.
func TestDebVersion(t *testing.T) {
	needTools(t, "bash", "dpkg")
	script := filepath.Join(repoRoot(t), "deploy/package/build.sh")
	derive := func(version, date string) (string, error) {
		cmd := exec.Command(script, "--print-deb-version")
		cmd.Env = append(os.Environ(), "VERSION="+version, "BUILD_DATE="+date, "COMMIT=x", "DEB_VERSION=")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%w: %s", err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}
	tests := []struct {
		version, date, want string
	}{
		{"0.0.0-dev", testDate, "0.0.0~dev"},
		{"c56b318", "2026-11-01T09:30:00Z", "0.1.0~git20261101.093000.c56b318"},
		{"c56b318-dirty", "2026-11-01T09:30:00Z", "0.1.0~git20261101.093000.c56b318.dirty"},
		{"0a1b2c3", "2026-11-01T10:05:00Z", "0.1.0~git20261101.100500.0a1b2c3"},
		{"v0.1.0-rc1", testDate, "0.1.0~rc1"},
		{"v0.1.0-rc1-4-gabc1234", testDate, "0.1.0~rc1+git4.abc1234"},
		{"v0.1.0", testDate, "0.1.0"},
		{"v0.1.0-dirty", testDate, "0.1.0+dirty"},
		{"v0.1.0-2-gabc1234", testDate, "0.1.0+git2.abc1234"},
		{"v0.1.0-12-gdef5678-dirty", testDate, "0.1.0+git12.def5678.dirty"},
		{"v1.2.3", testDate, "1.2.3"},
	}
	var ordered []string
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			got, err := derive(tt.version, tt.date)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
		ordered = append(ordered, tt.want)
	}
	// The table is in release order: each must sort below the next.
	for i := 0; i+1 < len(ordered); i++ {
		_, err := runErr(os.Environ(), "dpkg", "--compare-versions", ordered[i], "lt", ordered[i+1])
		assert.NoError(t, err, "dpkg must sort %s before %s", ordered[i], ordered[i+1])
	}

	for _, bad := range []string{"weird_thing", "release-candidate", "v1.2.3_beta"} {
		_, err := derive(bad, testDate)
		assert.Error(t, err, "VERSION=%q must be refused, not turned into an invalid package version", bad)
	}
	_, err := derive("c56b318", "unknown")
	assert.Error(t, err, "a bare commit needs the commit time to order builds")
}

// TestDebLifecycle builds the amd64 packages twice (two versions, the
// second with a changed conffile) and takes them through install, upgrade,
// remove and purge with dpkg in a throwaway root, with the maintainer
// scripts run outside a chroot against DPKG_ROOT, as they are when
// bootstrapping a system image. On the installed files it checks the unit
// (systemd-analyze verify and security), runs vigil doctor and the
// technician's commands as the vigil user, and runs the gateway under
// strace against the unit's system call filter.
func TestDebLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs packages: not in -short")
	}
	needTools(t, "bash", "dpkg", "dpkg-query", "systemd-analyze", "systemd-sysusers", "systemd-tmpfiles", "deb-systemd-helper", "kill", "strace")
	if _, err := os.Stat("/usr/lib/systemd/system/multi-user.target"); err != nil {
		need(t, "systemd's units in /usr/lib/systemd/system (package systemd)")
	}
	if os.Geteuid() != 0 {
		need(t, "root (dpkg --root gives files to root and vigil)")
	}
	repo := repoRoot(t)
	env := toolEnv()
	tmp := t.TempDir()

	// Build: binaries once; the second packaging finds them up to date.
	conf2 := filepath.Join(tmp, "vigil.yaml.v2")
	shipped, err := os.ReadFile(filepath.Join(repo, "deploy/package/vigil.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(conf2, append(shipped, []byte("\n# A comment a later release added.\n")...), 0o644))
	build := func(debVersion, out string, extra ...string) {
		args := append([]string{"--out", out, "--bin-dir", filepath.Join(tmp, "bin")}, extra...)
		args = append(args, "amd64")
		benv := append(env, "VERSION="+testVersion, "COMMIT="+testCommit, "BUILD_DATE="+testDate, "DEB_VERSION="+debVersion)
		run(t, benv, filepath.Join(repo, "deploy/package/build.sh"), args...)
	}
	v1, v2 := filepath.Join(tmp, "v1"), filepath.Join(tmp, "v2")
	build(debV1, v1)
	build(debV2, v2, "--conffile", conf2)
	deb := func(dir, name, version string) string {
		p := filepath.Join(dir, fmt.Sprintf("%s_%s_amd64.deb", name, version))
		require.FileExists(t, p)
		return p
	}

	root := newRoot(t, tmp)
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, env, "dpkg", append([]string{"--root", root.dir, "--force-script-chrootless"}, args...)...)
	}

	t.Run("install", func(t *testing.T) {
		dpkg("--install", deb(v1, "vigil", debV1), deb(v1, "vigil-tools", debV1))
		assert.Equal(t, "install ok installed "+debV1, root.status(t, "vigil"))
		assert.Equal(t, "install ok installed "+debV1, root.status(t, "vigil-tools"))

		for _, f := range []struct {
			path string
			mode fs.FileMode
		}{
			{"usr/bin/vigil", 0o755},
			{"usr/bin/vigil-verify", 0o755},
			{"usr/bin/vigil-sim", 0o755},
			{"etc/vigil/vigil.yaml", 0o644},
			{"lib/systemd/system/vigil.service", 0o644},
			{"usr/lib/sysusers.d/vigil.conf", 0o644},
			{"usr/lib/tmpfiles.d/vigil.conf", 0o644},
			{"usr/share/doc/vigil/examples/vigil.yaml", 0o644},
		} {
			root.assertOwned(t, f.path, f.mode, 0, 0)
		}
		assert.Equal(t, md5File(t, filepath.Join(repo, "deploy/systemd/vigil.service")), md5File(t, root.path("lib/systemd/system/vigil.service")))

		// /etc/vigil/vigil.yaml is a conffile, with the shipped file's digest.
		conffiles := run(t, env, "dpkg-query", "--root", root.dir, "--showformat", "${Conffiles}", "--show", "vigil")
		assert.Contains(t, conffiles, " /etc/vigil/vigil.yaml "+md5File(t, filepath.Join(repo, "deploy/package/vigil.yaml")))

		// The system user, in dialout for the serial ports.
		uid, gid := root.user(t, "vigil")
		assert.Less(t, uid, 1000, "vigil must be a system user")
		assert.Equal(t, gid, root.group(t, "vigil").gid, "vigil's primary group is vigil")
		assert.Contains(t, root.group(t, "dialout").members, "vigil")
		root.assertOwned(t, "var/lib/vigil", fs.ModeDir|0o750, uid, gid)
		root.assertOwned(t, "etc/vigil", fs.ModeDir|0o750, 0, gid)

		// Enabled for the next boot; nothing asked of this machine's systemd.
		link, err := os.Readlink(root.path("etc/systemd/system/multi-user.target.wants/vigil.service"))
		require.NoError(t, err, "the unit must be enabled")
		assert.Equal(t, "/lib/systemd/system/vigil.service", link)

		out := run(t, env, root.path("usr/bin/vigil"), "version")
		assert.True(t, strings.HasPrefix(out, fmt.Sprintf("vigil %s (commit %s, built %s, go1.", testVersion, testCommit, testDate)), out)
		assert.True(t, strings.HasSuffix(out, " linux/amd64)\n"), out)
		out = run(t, env, root.path("usr/bin/vigil-verify"), "--version")
		assert.True(t, strings.HasPrefix(out, "vigil-verify "+testVersion+" (commit "+testCommit), out)
	})
	if t.Failed() {
		return
	}

	t.Run("unit", func(t *testing.T) {
		unit := root.path("lib/systemd/system/vigil.service")
		// verify resolves ExecStart= (/usr/bin/vigil) and ExecReload= inside the
		// root, so a missing or misplaced binary fails here.
		out, err := runErr(env, "systemd-analyze", "verify", "--root", root.dir, "/lib/systemd/system/vigil.service")
		assert.NoError(t, err, "systemd-analyze verify:\n%s", out)
		assert.Empty(t, strings.TrimSpace(out), "systemd-analyze verify must have nothing to say")

		out, err = runErr(env, "systemd-analyze", "security", "--offline=true", "--no-pager", unit)
		require.NoError(t, err, out)
		exposure, level := overallExposure(t, out)
		// systemd's levels: PERFECT, SAFE, OK, MEDIUM, EXPOSED, UNSAFE, DANGEROUS.
		assert.Contains(t, []string{"PERFECT", "SAFE", "OK"}, level, "exposure %.1f %s:\n%s", exposure, level, out)
		// 1.9 when written; a change that loosens the sandbox must come
		// with a reason, and with this bar raised.
		assert.LessOrEqual(t, exposure, 2.0, "the unit's exposure grew:\n%s", out)
	})

	t.Run("doctor", func(t *testing.T) {
		// As the vigil user of the root, as the service would run it, on
		// the installed configuration (which doctor validates) and the
		// state directory the package made.
		uid, gid := root.user(t, "vigil")
		cmd := exec.Command(root.path("usr/bin/vigil"), "doctor", "--json",
			"--config", root.path("etc/vigil/vigil.yaml"), "--state", root.path("var/lib/vigil"))
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
			t.Fatalf("vigil doctor: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
		}
		var report struct {
			OK     bool `json:"ok"`
			Checks []struct {
				Name, Status, Summary string
			} `json:"checks"`
		}
		t.Logf("vigil doctor --json:\n%s", stdout.String())
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &report), "vigil doctor --json printed:\n%s\n%s", stdout.String(), stderr.String())
		status := map[string]string{}
		for _, c := range report.Checks {
			status[c.Name] = c.Status
			assert.Contains(t, []string{"ok", "warn", "fail"}, c.Status, "check %s", c.Name)
		}
		for _, name := range []string{"state_dir", "fsync_latency"} {
			require.Contains(t, status, name, "vigil doctor --json: %s", stdout.String())
		}
		// The package made the state directory for this user: it must be
		// usable, or the service could not start.
		assert.Equal(t, "ok", status["state_dir"], "state_dir: %s", stdout.String())
		assert.NotEqual(t, "fail", status["fsync_latency"], "fsync_latency: %s", stdout.String())
	})

	t.Run("syscalls stay within the unit's filter", func(t *testing.T) {
		syscallsWithinFilter(t, root, env)
	})

	t.Run("technician commands as vigil", func(t *testing.T) {
		// The README's commands, as `sudo -u vigil`: what they write in the
		// state directory must be the vigil user's, or the service could
		// not read it.
		uid, gid := root.user(t, "vigil")
		asVigil := func(stdin string, args ...string) string {
			t.Helper()
			args = append(args, "--config", root.path("etc/vigil/vigil.yaml"), "--state", root.path("var/lib/vigil"))
			cmd := exec.Command(root.path("usr/bin/vigil"), args...)
			cmd.Env = env
			cmd.Stdin = strings.NewReader(stdin)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "vigil %s:\n%s", strings.Join(args, " "), out)
			return string(out)
		}
		asVigil("", "device", "add", "cam-1", "--kind", "camera", "--site", "ward7", "--wearer", "Nurse A")
		asVigil("", "device", "add", "btn-1", "--kind", "button", "--site", "ward7", "--wearer", "Nurse A", "--camera", "cam-1")
		assert.Contains(t, asVigil("", "device", "list"), "btn-1")
		asVigil("correct horse battery staple\n", "user", "add", "olive", "--role", "operator")
		assert.Contains(t, asVigil("", "user", "list"), "olive")
		require.NoError(t, filepath.WalkDir(root.path("var/lib/vigil"), func(p string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			fi, err := d.Info()
			require.NoError(t, err)
			st := fi.Sys().(*syscall.Stat_t)
			assert.Equal(t, uid, int(st.Uid), "%s must belong to vigil", p)
			return nil
		}))
	})

	// What a technician changes or adds, and what the gateway accumulates.
	local := bytes.Replace(shipped, []byte("\nsite: demo\n"), []byte("\nsite: ward7\n"), 1)
	require.NotEqual(t, shipped, local, "the shipped config sets site: demo")
	require.NoError(t, os.WriteFile(root.path("etc/vigil/vigil.yaml"), local, 0o644))
	require.NoError(t, os.WriteFile(root.path("etc/vigil/arc-primary.key"), []byte("00112233445566778899aabbccddeeff\n"), 0o640))
	require.NoError(t, os.WriteFile(root.path("var/lib/vigil/state-marker"), []byte("undelivered alarms\n"), 0o600))

	t.Run("upgrade keeps the edited conffile", func(t *testing.T) {
		dpkg("--force-confold", "--force-confdef", "--install", deb(v2, "vigil", debV2), deb(v2, "vigil-tools", debV2))
		assert.Equal(t, "install ok installed "+debV2, root.status(t, "vigil"))
		assert.Equal(t, string(local), readFile(t, root.path("etc/vigil/vigil.yaml")), "the local edit must survive")
		// dpkg leaves the new version beside it for the technician.
		assert.Equal(t, readFile(t, conf2), readFile(t, root.path("etc/vigil/vigil.yaml.dpkg-dist")))
		assert.FileExists(t, root.path("etc/vigil/arc-primary.key"))
		assert.FileExists(t, root.path("var/lib/vigil/state-marker"))
		uid, gid := root.user(t, "vigil")
		root.assertOwned(t, "var/lib/vigil", fs.ModeDir|0o750, uid, gid)
		root.assertOwned(t, "etc/vigil", fs.ModeDir|0o750, 0, gid)
		assert.Contains(t, root.group(t, "dialout").members, "vigil")
	})

	t.Run("remove keeps configuration and state", func(t *testing.T) {
		dpkg("--remove", "vigil", "vigil-tools")
		assert.Equal(t, "deinstall ok config-files "+debV2, root.status(t, "vigil"))
		for _, gone := range []string{"usr/bin/vigil", "usr/bin/vigil-verify", "usr/bin/vigil-sim", "lib/systemd/system/vigil.service"} {
			assert.NoFileExists(t, root.path(gone))
		}
		assert.Equal(t, string(local), readFile(t, root.path("etc/vigil/vigil.yaml")))
		assert.FileExists(t, root.path("etc/vigil/arc-primary.key"))
		assert.FileExists(t, root.path("var/lib/vigil/state-marker"))
		// Masked, so a leftover enablement cannot start a unit whose
		// binary is gone.
		link, err := os.Readlink(root.path("etc/systemd/system/vigil.service"))
		require.NoError(t, err, "the unit must be masked after remove")
		assert.Equal(t, "/dev/null", link)
	})

	t.Run("purge deletes configuration and state", func(t *testing.T) {
		dpkg("--purge", "vigil", "vigil-tools")
		for _, gone := range []string{"etc/vigil", "var/lib/vigil", "etc/systemd/system/vigil.service",
			"etc/systemd/system/multi-user.target.wants/vigil.service"} {
			_, err := os.Lstat(root.path(gone))
			assert.True(t, errors.Is(err, fs.ErrNotExist), "%s must be gone after purge (%v)", gone, err)
		}
		out, _ := runErr(env, "dpkg-query", "--root", root.dir, "--showformat", "${db:Status-Abbrev}", "--show", "vigil")
		assert.NotContains(t, out, "ii", "vigil must not be installed")
		// Debian policy: the system user stays, its uid may own files elsewhere.
		root.user(t, "vigil")
	})
}

// overallExposure parses "→ Overall exposure level for vigil.service: 1.9 OK 🙂".
func overallExposure(t *testing.T, out string) (float64, string) {
	t.Helper()
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) ([A-Z]+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no overall exposure in:\n%s", out)
	exposure, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return exposure, m[2]
}

// fakeRoot is the throwaway system the packages are installed into.
type fakeRoot struct{ dir string }

// newRoot makes the smallest root dpkg works in, laid out like Debian 12
// and Raspberry Pi OS (merged /usr): an empty package database, and the
// accounts of a base system (root, dialout, nobody), so the scripts have to
// create vigil themselves. For systemd-analyze verify it also holds the
// host's systemd units (the targets vigil.service is ordered against) and
// kill (ExecReload=/bin/kill).
func newRoot(t *testing.T, tmp string) *fakeRoot {
	t.Helper()
	r := &fakeRoot{dir: filepath.Join(tmp, "root")}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log", "etc",
		"usr/bin", "usr/sbin", "usr/lib/systemd"} {
		require.NoError(t, os.MkdirAll(r.path(d), 0o755))
	}
	for _, d := range []string{"bin", "sbin", "lib"} {
		require.NoError(t, os.Symlink("usr/"+d, r.path(d)))
	}
	run(t, toolEnv(), "cp", "-a", "/usr/lib/systemd/system", r.path("usr/lib/systemd/"))
	// Should this machine have Vigil installed, the package's own unit is
	// the one under test.
	require.NoError(t, os.RemoveAll(r.path("usr/lib/systemd/system/vigil.service")))
	kill, err := exec.LookPath("kill")
	require.NoError(t, err)
	run(t, toolEnv(), "cp", kill, r.path("usr/bin/kill"))
	for name, content := range map[string]string{
		"var/lib/dpkg/status":    "",
		"var/lib/dpkg/available": "",
		"etc/passwd":             "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
		"etc/group":              "root:x:0:\ndialout:x:20:\nnogroup:x:65534:\n",
		"etc/shadow":             "root:*:20000:0:99999:7:::\nnobody:*:20000:0:99999:7:::\n",
		"etc/gshadow":            "root:*::\ndialout:*::\nnogroup:*::\n",
	} {
		require.NoError(t, os.WriteFile(r.path(name), []byte(content), 0o644))
	}
	openTo(t, r.dir)
	return r
}

// openTo lets the vigil user, which runs commands on files in the root,
// through dir and the test's temporary directories above it (created 0700)
// up to the system's temporary directory.
func openTo(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != filepath.Dir(d); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755))
	}
}

func (r *fakeRoot) path(p string) string { return filepath.Join(r.dir, p) }

// status is dpkg's "want ok status version" for a package.
func (r *fakeRoot) status(t *testing.T, pkg string) string {
	t.Helper()
	return run(t, toolEnv(), "dpkg-query", "--root", r.dir, "--showformat", "${Status} ${Version}", "--show", pkg)
}

// user returns a user's uid and gid from the root's /etc/passwd.
func (r *fakeRoot) user(t *testing.T, name string) (int, int) {
	t.Helper()
	f := r.field(t, "etc/passwd", name)
	require.NotNil(t, f, "no user %s in the root's /etc/passwd", name)
	uid, err := strconv.Atoi(f[2])
	require.NoError(t, err)
	gid, err := strconv.Atoi(f[3])
	require.NoError(t, err)
	return uid, gid
}

type group struct {
	gid     int
	members []string
}

// group returns a group from the root's /etc/group.
func (r *fakeRoot) group(t *testing.T, name string) group {
	t.Helper()
	f := r.field(t, "etc/group", name)
	require.NotNil(t, f, "no group %s in the root's /etc/group", name)
	gid, err := strconv.Atoi(f[2])
	require.NoError(t, err)
	g := group{gid: gid}
	if f[3] != "" {
		g.members = strings.Split(f[3], ",")
	}
	return g
}

// field returns the colon-separated fields of the line for name.
func (r *fakeRoot) field(t *testing.T, file, name string) []string {
	t.Helper()
	f, err := os.Open(r.path(file))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && fields[0] == name {
			return fields
		}
	}
	require.NoError(t, sc.Err())
	return nil
}

// assertOwned checks a path's type, permission bits and owner.
func (r *fakeRoot) assertOwned(t *testing.T, p string, mode fs.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(r.path(p))
	if !assert.NoError(t, err, p) {
		return
	}
	assert.Equal(t, mode.String(), (fi.Mode() & (fs.ModeType | fs.ModePerm)).String(), "mode of %s", p)
	st := fi.Sys().(*syscall.Stat_t)
	assert.Equal(t, [2]int{uid, gid}, [2]int{int(st.Uid), int(st.Gid)}, "owner:group of %s", p)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func md5File(t *testing.T, p string) string {
	t.Helper()
	sum := md5.Sum([]byte(readFile(t, p)))
	return hex.EncodeToString(sum[:])
}
