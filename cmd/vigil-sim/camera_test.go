package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	expslog "golang.org/x/exp/slog"

	"github.com/vigil-gw/vigil/devices"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
)

const camToken = "cam-secret"

// startGateway serves a real tusd handler at firmwaresim.UploadPath with the
// evidence contract's answers: 401 without the camera's token, 409 for a
// clip already held, 460 when the bytes do not match the declared sha256.
func startGateway(t *testing.T) string {
	t.Helper()
	var mu sync.Mutex
	held := map[string]bool{}
	composer := tusd.NewStoreComposer()
	filestore.New(t.TempDir()).UseIn(composer)
	memorylocker.New().UseIn(composer)
	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:   composer,
		BasePath:        firmwaresim.UploadPath,
		DisableDownload: true,
		Logger:          expslog.New(expslog.NewTextHandler(io.Discard, nil)),
		PreUploadCreateCallback: func(hook tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
			key := hook.Upload.MetaData["camera"] + "/" + hook.Upload.MetaData["clip"]
			mu.Lock()
			defer mu.Unlock()
			if held[key] {
				return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_CLIP_HELD", key+" already received", http.StatusConflict)
			}
			return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, nil
		},
		PreFinishResponseCallback: func(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
			f, err := os.Open(hook.Upload.Storage["Path"])
			if err != nil {
				return tusd.HTTPResponse{}, err
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return tusd.HTTPResponse{}, err
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != hook.Upload.MetaData["sha256"] {
				return tusd.HTTPResponse{}, tusd.NewError("ERR_DIGEST_MISMATCH", "received sha256 "+got, 460)
			}
			mu.Lock()
			held[hook.Upload.MetaData["camera"]+"/"+hook.Upload.MetaData["clip"]] = true
			mu.Unlock()
			return tusd.HTTPResponse{}, nil
		},
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(firmwaresim.UploadPath, http.StripPrefix(firmwaresim.UploadPath, h))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+camToken {
			http.Error(w, "unknown camera token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// cameraBroker is an in-process broker that records camera events.
type cameraBroker struct {
	url string
	srv *mqtt.Server

	mu     sync.Mutex
	events []devices.Event
}

func startCameraBroker(t *testing.T) *cameraBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, srv.AddHook(new(auth.AllowHook), nil))
	require.NoError(t, srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})))
	cb := &cameraBroker{url: "tcp://" + addr, srv: srv}
	require.NoError(t, srv.Subscribe(devices.EventFilter, 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		d, err := devices.Decode(pk.TopicName, pk.Payload, time.Now())
		if !assert.NoError(t, err, "payload %s", pk.Payload) {
			return
		}
		cb.mu.Lock()
		cb.events = append(cb.events, d.Event)
		cb.mu.Unlock()
	}))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { _ = srv.Close() })
	return cb
}

// types lists the types of the events received so far.
func (cb *cameraBroker) types() []devices.Type {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	var out []devices.Type
	for _, e := range cb.events {
		out = append(out, e.Type)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe to read while the command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"1048576", 1 << 20, ""},
		{"100B", 100, ""},
		{"512KiB", 512 << 10, ""},
		{"8MiB", 8 << 20, ""},
		{"8mib", 8 << 20, ""},
		{"3 GiB", 3 << 30, ""},
		{"0", 0, "must be positive"},
		{"-1KiB", 0, "must be positive"},
		{"8MB", 0, `"8MB" is not a size`},
		{"1.5GiB", 0, `"1.5GiB" is not a size`},
		{"GiB", 0, `"GiB" is not a size`},
		{"", 0, `"" is not a size`},
		{"9000000000GiB", 0, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if tt.err != "" {
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	for _, n := range []int64{1, 1000, 1 << 10, 3 << 20, 5 << 30, 5<<30 + 1} {
		b := byteSize(n)
		back, err := parseSize(b.String())
		require.NoError(t, err)
		assert.Equal(t, n, back, "%s round-trips", b.String())
	}
}

func TestCameraUsageErrors(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("\n"), 0o600))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing token", nil, "vigil-sim camera: missing camera token: give --token TOKEN or --token-file FILE"},
		{"both tokens", []string{"--token", "a", "--token-file", tokenFile}, "--token and --token-file are mutually exclusive"},
		{"empty token file", []string{"--token-file", tokenFile}, "is empty"},
		{"bad size", []string{"--token", "a", "--clip-size", "8MB"}, `invalid value "8MB" for flag -clip-size: "8MB" is not a size`},
		{"bad chunk", []string{"--token", "a", "--chunk", "0"}, `invalid value "0" for flag -chunk`},
		{"no clips", []string{"--token", "a", "--clips", "0"}, "--clips 0 must be at least 1"},
		{"clips with listen", []string{"--token", "a", "--clips", "2", "--listen"}, "--clips and --listen are mutually exclusive"},
		{"long clip", []string{"--token", "a", "--clip-length", "25h"}, "--clip-length 25h0m0s must be positive and at most 24h0m0s"},
		{"bad gateway", []string{"--token", "a", "--gateway", "gw:8080"}, "want http://host:port"},
		{"gateway ca without https", []string{"--token", "a", "--gateway-ca", "ca.pem"}, "--gateway-ca needs an https:// gateway URL"},
		{"bad format", []string{"--token", "a", "--format", "avi"}, `clip format "avi" is not auto, random or mp4`},
		{"bad device", []string{"--token", "a", "--device", "cam 1"}, `device "cam 1" is not a valid id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := invoke(t.Context(), append([]string{"camera"}, tt.args...)...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tt.want)
			assert.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		})
	}
}

// clipLineRE matches the line printed for an accepted clip.
var clipLineRE = regexp.MustCompile(`^clip (cam-1-\d{8}T\d{6}-\d+) size (\d+) sha256 ([0-9a-f]{64}): accepted in [0-9.]+[µm]?s \([0-9.]+ MB/s\)`)

func TestCameraUploadsClips(t *testing.T) {
	cb := startCameraBroker(t)
	gw := startGateway(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(camToken+"\n"), 0o600))
	dir := t.TempDir()

	code, out, errOut := invoke(t.Context(), "camera", "--broker", cb.url, "--site", "demo", "--gateway", gw,
		"--token-file", tokenFile, "--clips", "2", "--clip-size", "64KiB", "--clip-length", "10ms",
		"--chunk", "16KiB", "--format", "random", "--dir", dir)
	require.Equal(t, exitOK, code, "stderr: %s", errOut)
	assert.Empty(t, errOut)
	t.Log(out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	for i, line := range lines[:2] {
		m := clipLineRE.FindStringSubmatch(line)
		require.NotNil(t, m, "line %d: %q", i, line)
		assert.True(t, strings.HasSuffix(m[1], fmt.Sprintf("-%d", i+1)), m[1])
		assert.Equal(t, "65536", m[2])
		b, err := os.ReadFile(filepath.Join(dir, m[1]+".bin"))
		require.NoError(t, err, "the clip is kept in --dir")
		sum := sha256.Sum256(b)
		assert.Equal(t, hex.EncodeToString(sum[:]), m[3])
	}
	assert.Equal(t, "cam-1: recorded=2 uploaded=2 already_received=0 rejected=0 failed=0 bytes_sent=131072 resumes=0 events=6 commands=0 queued=0", lines[2])
	require.Eventually(t, func() bool { return len(cb.types()) == 6 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, []devices.Type{
		devices.TypeRecordingStarted, devices.TypeRecordingStopped, devices.TypeClipReady,
		devices.TypeRecordingStarted, devices.TypeRecordingStopped, devices.TypeClipReady,
	}, cb.types())
}

func TestCameraFaultFlags(t *testing.T) {
	tests := []struct {
		flag string
		want string // regexp on the clip line
	}{
		{"--wrong-digest", `^clip \S+ size 65536 sha256 [0-9a-f]{64} \(declared [0-9a-f]{64}\): rejected \(460: ERR_DIGEST_MISMATCH: received sha256 [0-9a-f]{64}\) in \S+$`},
		{"--twice", `: accepted in .*; second upload: already received \(409: ERR_CLIP_HELD: cam-1/\S+ already received\) in \S+$`},
		{"--cut-halfway", `: accepted in .*; cut at offset 32768, resumed from offset \d+$`},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			cb := startCameraBroker(t)
			gw := startGateway(t)
			code, out, errOut := invoke(t.Context(), "camera", "--broker", cb.url, "--gateway", gw, "--token", camToken,
				"--clip-size", "64KiB", "--clip-length", "10ms", "--chunk", "16KiB", "--format", "random", tt.flag)
			require.Equal(t, exitOK, code, "the fault's outcome is the expected one; stderr: %s", errOut)
			t.Log(out)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Len(t, lines, 2, out)
			assert.Regexp(t, tt.want, lines[0])
		})
	}
}

func TestCameraWrongTokenFails(t *testing.T) {
	cb := startCameraBroker(t)
	gw := startGateway(t)
	code, out, errOut := invoke(t.Context(), "camera", "--broker", cb.url, "--gateway", gw, "--token", "not-it",
		"--clip-size", "1KiB", "--clip-length", "10ms", "--format", "random")
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, out)
	assert.Regexp(t, `^vigil-sim camera: clip 1 of 1 \(cam-1-\S+\): firmwaresim: upload \S+: tus create: 401 Unauthorized: unknown camera token\n$`, errOut)
}

func TestCameraListensForStartRecording(t *testing.T) {
	cb := startCameraBroker(t)
	gw := startGateway(t)
	ctx, cancel := context.WithCancel(t.Context()) // cancel stands in for SIGINT
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runArgs(ctx, []string{"camera", "--broker", cb.url, "--site", "demo", "--gateway", gw, "--token", camToken,
			"--listen", "--heartbeat", "1h", "--clip-size", "32KiB", "--clip-length", "10ms", "--format", "random"}, &out, &errOut)
	}()

	// The first heartbeat shows the camera is subscribed and on duty.
	require.Eventually(t, func() bool { return len(cb.types()) > 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, out.String(), "cam-1 on site demo recording 32KiB random clips on start_recording, uploading to "+gw+firmwaresim.UploadPath)
	cmd, err := devices.EncodeCommand(devices.Command{Cmd: devices.CmdStartRecording, Alert: "btn-1.7"})
	require.NoError(t, err)
	require.NoError(t, cb.srv.Publish(devices.CommandTopic("demo", "cam-1"), cmd, false, 1))

	require.Eventually(t, func() bool { return strings.Contains(out.String(), "\nclip cam-1-") }, 5*time.Second, 5*time.Millisecond)
	cancel()
	code := <-done
	assert.Equal(t, exitOK, code, "stderr: %s", errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3, out.String())
	assert.Regexp(t, clipLineRE, lines[1])
	assert.Contains(t, lines[2], "cam-1: recorded=1 uploaded=1 ")
	assert.Contains(t, lines[2], " commands=1 ")
}
