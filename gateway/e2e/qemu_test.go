package e2e

import (
	"context"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// TestQEMUArm64Duress runs the gateway as it ships for a Raspberry Pi class
// board: vigil and vigil-sim cross-built for linux/arm64 (CGO off, as `make
// cross` builds them), executed under qemu user mode. The button is
// registered and the gateway started with the arm64 CLI, a simulated duress
// goes through the embedded broker, and a real TCP DC-09 receiver must get the
// AES-encrypted alarm with the right account and event code. The native
// suite cannot see arm-only faults (byte order, syscall struct layouts, crypto
// assembly); the emulated unit tests (make test-emulated) cover the packages,
// and this covers the binary wired together.
func TestQEMUArm64Duress(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds and emulates the gateway: not with -short")
	}
	qemu := qemuAarch64(t)
	start := time.Now()
	dir := t.TempDir()
	buildArm64(t, dir)
	t.Logf("cross-built vigil and vigil-sim for linux/arm64 in %s", time.Since(start).Round(time.Millisecond))
	vigil := qemuWrapper(t, qemu, filepath.Join(dir, "vigil"))
	sim := qemuWrapper(t, qemu, filepath.Join(dir, "vigil-sim"))

	state := t.TempDir()
	out, err := exec.Command(vigil, "device", "add", "btn-0001", "--kind", "button", "--site", site,
		"--wearer", "Nurse A", "--state", state).CombinedOutput()
	require.NoError(t, err, "arm64 vigil device add: %s", out)

	key := []byte("0123456789abcdef0123456789abcdef") // AES-256
	rcv := startARCWithKey(t, nil, key)
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("arc:\n  - url: %q\n", rcv.url()+"&key="+hex.EncodeToString(key))), 0o600))
	broker := testnet.ClosedAddr(t)
	booted := time.Now()
	v := startVigilBin(t, vigil, state, "--config", cfg, "--broker-listen", broker)
	t.Logf("arm64 gateway ready under qemu in %s", time.Since(booted).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	press := exec.CommandContext(ctx, sim, "button", "--duress", "--broker", "tcp://"+broker, "--site", site,
		"--device", "btn-0001", "--lat", "53.8008", "--lon", "-1.5491", "--timeout", "30s")
	out, err = press.CombinedOutput()
	require.NoError(t, err, "arm64 vigil-sim button --duress: %s", out)
	assert.Contains(t, string(out), "duress btn-0001 seq", "the simulator printed its confirmation: %s", out)
	assert.Contains(t, string(out), "confirmed", "%s", out)

	waitFor(t, 10*time.Second, "the alarm at the DC-09 receiver", func() bool { return rcv.lastAlarm() != nil })
	alarm := rcv.lastAlarm()
	assert.Equal(t, "ADM-CID", alarm.Frame.ID)
	assert.True(t, alarm.Frame.Encrypted, "the key in the ARC URL encrypts the frame")
	assert.Equal(t, arcAccount, alarm.Frame.Account)
	assert.Contains(t, alarm.Frame.Data, "|1121 01 001", "new duress event, partition 01, zone 001")
	assert.Len(t, rcv.alarms(), 1, "one alarm, from the one press")

	al := v.alerts(t)
	require.Len(t, al.Alerts, 1)
	assert.Equal(t, "delivered", al.Alerts[0].State)
	assert.True(t, al.Alerts[0].Verified, "the button registered with the arm64 CLI was recognised")
	assert.Equal(t, "Nurse A", al.Alerts[0].Wearer)

	v.stop(t) // SIGTERM through qemu to the guest; requires exit status 0
	assert.Equal(t, 0, v.cmd.ProcessState.ExitCode())
	t.Logf("whole arm64 smoke test: %s", time.Since(start).Round(time.Millisecond))
}

// qemuAarch64 finds the arm64 user-mode emulator: VIGIL_QEMU_AARCH64 (printed
// by deploy/testenv/install.sh, exported by make test), else PATH.
func qemuAarch64(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VIGIL_QEMU_AARCH64"); p != "" {
		return p
	}
	if p, err := exec.LookPath("qemu-aarch64-static"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("qemu-aarch64-static (Debian qemu-user-static) is required in CI: deploy/testenv/install.sh installs it, make test runs that")
	}
	t.Skip("qemu-aarch64-static is not installed (deploy/testenv/install.sh installs qemu-user-static): skipping the arm64 smoke test")
	return ""
}

// buildArm64 cross-builds vigil and vigil-sim into dir with the flags `make
// cross` uses (-trimpath, CGO off), so the two share the build cache, and
// checks they really are arm64 executables: this machine has no binfmt
// handler, so nothing below could run them natively by accident.
func buildArm64(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator),
		"github.com/vigil-gw/vigil/cmd/vigil", "github.com/vigil-gw/vigil/cmd/vigil-sim")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "cross-build for linux/arm64: %s", out)
	for _, name := range []string{"vigil", "vigil-sim"} {
		f, err := elf.Open(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, elf.EM_AARCH64, f.Machine, "%s is an arm64 executable", name)
		f.Close()
	}
}

// qemuWrapper writes an executable script that runs bin under qemu, so the
// harness's helpers (launchVigil, adminToken) start the emulated binary as
// they would a native one. The script execs qemu, so signals sent to the
// process reach qemu, which delivers them to the guest.
func qemuWrapper(t *testing.T, qemu, bin string) string {
	t.Helper()
	path := bin + ".qemu"
	script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", shellQuote(qemu), shellQuote(bin))
	require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
	return path
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	out := "'"
	for _, r := range s {
		if r == '\'' {
			out += `'\''`
		} else {
			out += string(r)
		}
	}
	return out + "'"
}
