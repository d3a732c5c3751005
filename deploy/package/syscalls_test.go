package packaging

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syscallsWithinFilter runs the installed gateway as the vigil user under
// strace, through what the service does (start, READY=1, the API and its
// metrics, watchdog pings, a SIGHUP reload, SIGTERM), and checks every
// system call it made is allowed by the unit's SystemCallFilter= lines.
// systemd is not PID 1 here, so the sandbox cannot be tried for real; this
// finds the call a new library or Go release brings that would fail with
// EPERM on the Pi.
func syscallsWithinFilter(t *testing.T, root *fakeRoot, env []string) {
	allowed := unitSyscalls(t, root.path("lib/systemd/system/vigil.service"), env)
	uid, gid := root.user(t, "vigil")

	dir := t.TempDir()
	openTo(t, dir)
	require.NoError(t, os.Chmod(dir, 0o777)) // strace, as vigil, writes its trace here
	// The service manager's end of sd_notify.
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, os.Chmod(sock, 0o777))
	notes := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()
	waitNote := func(want string) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case n, ok := <-notes:
				require.True(t, ok, "notify socket closed while waiting for %s", want)
				if slices.Contains(strings.Split(n, "\n"), want) {
					return
				}
			case <-deadline:
				t.Fatalf("vigil did not send %s within 60 s", want)
			}
		}
	}

	trace := filepath.Join(dir, "trace")
	require.NoError(t, os.WriteFile(trace, nil, 0o600))
	require.NoError(t, os.Chown(trace, uid, gid))
	httpAddr, brokerAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command("strace", "-f", "-qq", "-o", trace, root.path("usr/bin/vigil"), "run",
		"--config", root.path("etc/vigil/vigil.yaml"), "--state", root.path("var/lib/vigil"),
		"--http", httpAddr, "--broker-listen", brokerAddr)
	cmd.Env = append(env, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=2000000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("vigil's log:\n%s", logs.String())
		}
	}()

	waitNote("READY=1")
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	waitNote("WATCHDOG=1")
	pid := tracee(t, cmd.Process.Pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGHUP))
	waitNote("RELOADING=1")
	waitNote("READY=1")
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		require.NoError(t, err, "vigil must stop cleanly on SIGTERM")
	case <-time.After(60 * time.Second):
		t.Fatal("vigil did not stop within 60 s of SIGTERM")
	}

	used := tracedSyscalls(t, trace)
	require.Contains(t, used, "adjtimex", "the clock check must have run (the reason adjtimex is allowed)")
	var outside []string
	for name := range used {
		if !allowed[name] {
			outside = append(outside, name)
		}
	}
	sort.Strings(outside)
	assert.Empty(t, outside, "system calls vigil made that vigil.service's SystemCallFilter= refuses (EPERM)")
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// tracee returns the pid of strace's child, the gateway.
func tracee(t *testing.T, strace int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(strace) + "/task/" + strconv.Itoa(strace) + "/children")
	require.NoError(t, err)
	f := strings.Fields(string(b))
	require.Len(t, f, 1, "strace's children")
	pid, err := strconv.Atoi(f[0])
	require.NoError(t, err)
	return pid
}

// tracedSyscalls returns the system calls named in strace -f output
// ("PID name(args) = ret", or "PID name(args <unfinished ...>").
func tracedSyscalls(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	re := regexp.MustCompile(`^\d+\s+([a-z_0-9]+)\(`)
	used := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			used[m[1]] = true
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, used, "strace recorded nothing")
	return used
}

// unitSyscalls applies a unit's SystemCallFilter= lines in order, as
// systemd does: the first is an allow list (with @default implied), a later
// "~" line removes from it, a later plain line adds to it.
func unitSyscalls(t *testing.T, unit string, env []string) map[string]bool {
	t.Helper()
	groups := syscallGroups(t, env)
	var expand func(name string, into map[string]bool, add bool)
	expand = func(name string, into map[string]bool, add bool) {
		if members, ok := groups[name]; ok {
			for _, m := range members {
				expand(m, into, add)
			}
			return
		}
		require.False(t, strings.HasPrefix(name, "@"), "unknown syscall group %s", name)
		if add {
			into[name] = true
		} else {
			delete(into, name)
		}
	}
	allowed := map[string]bool{}
	expand("@default", allowed, true)
	lines := 0
	for _, line := range strings.Split(readFile(t, unit), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "SystemCallFilter=")
		if !ok {
			continue
		}
		deny := strings.HasPrefix(v, "~")
		require.False(t, deny && lines == 0, "the first SystemCallFilter= must be an allow list")
		for _, name := range strings.Fields(strings.TrimPrefix(v, "~")) {
			expand(name, allowed, !deny)
		}
		lines++
	}
	require.NotZero(t, lines, "vigil.service has no SystemCallFilter=")
	return allowed
}

// syscallGroups parses `systemd-analyze syscall-filter`: "@group" lines,
// then the group's members indented, "#" comments and nested "@groups"
// among them.
func syscallGroups(t *testing.T, env []string) map[string][]string {
	t.Helper()
	out := run(t, env, "systemd-analyze", "syscall-filter", "--no-pager")
	groups := map[string][]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "@"):
			cur = strings.TrimSpace(line)
			groups[cur] = nil
		case strings.TrimSpace(line) == "" || !strings.HasPrefix(line, " "):
			cur = ""
		case cur != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			groups[cur] = append(groups[cur], strings.TrimSpace(line))
		}
	}
	require.Contains(t, groups, "@system-service")
	return groups
}
