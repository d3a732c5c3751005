package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// startBroker runs an in-process broker; with answer set it confirms every
// duress the way the gateway does.
func startBroker(t *testing.T, answer bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, srv.AddHook(new(auth.AllowHook), nil))
	require.NoError(t, srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})))
	if answer {
		require.NoError(t, srv.Subscribe(devices.EventFilter, 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
			d, err := devices.Decode(pk.TopicName, pk.Payload, time.Now())
			if err != nil || d.Event.Type != devices.TypeDuress {
				return
			}
			seq := strconv.FormatUint(d.Event.Seq, 10)
			cmd, _ := devices.EncodeCommand(devices.Command{Cmd: devices.CmdAlertReceived, Alert: d.Event.Device + "." + seq, Seq: d.Event.Seq})
			_ = srv.Publish(devices.CommandTopic(d.Site, d.Event.Device), cmd, false, 1)
		}))
	}
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { _ = srv.Close() })
	return "tcp://" + addr
}

// invoke runs the command line and returns the exit code and both streams.
func invoke(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runArgs(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestButtonDuressConfirmed(t *testing.T) {
	broker := startBroker(t, true)
	code, out, errOut := invoke(t.Context(), "button", "--broker", broker, "--site", "demo", "--device", "btn-1", "--duress", "--timeout", "10s")
	require.Equal(t, exitOK, code, "stderr: %s", errOut)
	assert.Regexp(t, regexp.MustCompile(`^duress btn-1 seq (\d+) confirmed: alert btn-1\.(\d+) in [0-9.]+[µm]?s\n$`), out)
	m := regexp.MustCompile(`seq (\d+) confirmed: alert btn-1\.(\d+) `).FindStringSubmatch(out)
	require.Len(t, m, 3)
	assert.Equal(t, m[1], m[2], "the alert answers this press")
	assert.Empty(t, errOut)
}

func TestButtonDuressTimesOut(t *testing.T) {
	broker := startBroker(t, false) // the gateway is not there
	code, out, errOut := invoke(t.Context(), "button", "--broker", broker, "--duress", "--timeout", "300ms")
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, out)
	assert.Regexp(t, `^vigil-sim button: duress btn-1 seq \d+ not confirmed within 300ms: is the gateway running and subscribed\?\n$`, errOut)
}

func TestButtonBrokerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	code, _, errOut := invoke(t.Context(), "button", "--broker", "tcp://"+addr, "--duress", "--timeout", "300ms")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, errOut, "could not connect to tcp://"+addr+" within 300ms")
	assert.Contains(t, errOut, "refused")
	assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
}

func TestButtonCancelDelivered(t *testing.T) {
	broker := startBroker(t, false)
	code, out, errOut := invoke(t.Context(), "button", "--broker", broker, "--cancel")
	require.Equal(t, exitOK, code, "stderr: %s", errOut)
	assert.Regexp(t, `^duress_cancel btn-1 seq \d+ delivered\n$`, out)
}

func TestButtonHeartbeatUntilInterrupted(t *testing.T) {
	broker := startBroker(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond) // stands in for SIGINT
	defer cancel()
	code, out, errOut := invoke(ctx, "button", "--broker", broker, "--heartbeat", "50ms")
	require.Equal(t, exitOK, code, "stderr: %s", errOut)
	assert.Contains(t, out, "heartbeat every 50ms until interrupted")
	assert.Regexp(t, `btn-1 stopped: .* heartbeat=[1-9]`, out)
}

func TestFleetRunsForDuration(t *testing.T) {
	broker := startBroker(t, true)
	code, out, errOut := invoke(t.Context(), "fleet", "--broker", broker, "--site", "soak", "--buttons", "5",
		"--heartbeat", "20ms", "--duress-rate", "20", "--malformed-rate", "0.1", "--duplicate-rate", "0.1",
		"--clock-skew", "-1h", "--duration", "700ms", "--stats-interval", "200ms", "--seed", "4")
	require.Equal(t, exitOK, code, "stderr: %s", errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.GreaterOrEqual(t, len(lines), 3, out)
	assert.Equal(t, "fleet of 5 buttons on site soak via "+broker, lines[0])
	assert.Contains(t, lines[1], "published duress=")
	assert.Regexp(t, `^summary after [0-9.]+m?s: connected \d/5 .*heartbeat=[1-9].*confirmed=[1-9].*messages/s$`, lines[len(lines)-1])
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "usage: vigil-sim <command>"},
		{"unknown command", []string{"drone"}, exitUsage, `vigil-sim: unknown command "drone"`},
		{"unknown flag", []string{"button", "--frobnicate"}, exitUsage, "vigil-sim button: flag provided but not defined: -frobnicate (see vigil-sim button -h)\n"},
		{"stray argument", []string{"fleet", "extra"}, exitUsage, `vigil-sim fleet: unexpected argument "extra"`},
		{"bad device", []string{"button", "--device", "a b", "--duress"}, exitUsage, `vigil-sim button: device "a b" is not a valid id`},
		{"bad scheme", []string{"button", "--broker", "mqtt://x:1883"}, exitUsage, "scheme must be tcp or ssl"},
		{"bad rate", []string{"fleet", "--malformed-rate", "2"}, exitUsage, "malformed rate 2 is not a fraction"},
		{"ca without ssl", []string{"button", "--ca", "ca.pem"}, exitUsage, "--ca needs an ssl:// broker URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := invoke(t.Context(), tt.args...)
			assert.Equal(t, tt.code, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tt.want)
		})
	}
}

func TestHelp(t *testing.T) {
	code, out, errOut := invoke(t.Context(), "fleet", "-h")
	assert.Equal(t, exitOK, code)
	assert.Empty(t, errOut)
	assert.Contains(t, out, "usage: vigil-sim fleet [flags]")
	assert.Contains(t, out, "-duress-rate")

	code, out, _ = invoke(t.Context(), "help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "button")
}
