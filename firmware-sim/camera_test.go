package firmwaresim

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// newTestCamera makes and connects a camera on tb that uploads to ts; cfg
// fills in the rest.
func newTestCamera(t *testing.T, tb *testBroker, ts *tusServer, cfg CameraConfig) *Camera {
	t.Helper()
	cfg.Broker, cfg.Gateway, cfg.Token = tb.url(), ts.url(), testToken
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = ts.client()
	}
	if cfg.Site == "" {
		cfg.Site = "test"
	}
	if cfg.Device == "" {
		cfg.Device = "cam-1"
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.ClipSize == 0 {
		cfg.ClipSize = 200_000
	}
	if cfg.ClipLength == 0 {
		cfg.ClipLength = 20 * time.Millisecond
	}
	if cfg.Format == "" {
		cfg.Format = FormatRandom
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	cfg.ReconnectInterval, cfg.ConnectTimeout = 50*time.Millisecond, 500*time.Millisecond
	c, err := NewCamera(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	require.NoError(t, c.Connect(ctx))
	t.Cleanup(c.Close)
	return c
}

// cameraEvents waits until n events of device have reached the broker and
// returns them decoded, failing on any that devices.Decode refuses.
func cameraEvents(t *testing.T, tb *testBroker, device string, n int) []devices.Event {
	t.Helper()
	var mine []message
	require.Eventually(t, func() bool {
		mine = mine[:0]
		for _, m := range tb.messages() {
			if m.Topic == devices.EventTopic("test", device) {
				mine = append(mine, m)
			}
		}
		return len(mine) >= n
	}, waitFor, 5*time.Millisecond)
	var out []devices.Event
	for _, m := range mine {
		d, err := devices.Decode(m.Topic, m.Payload, time.Now())
		require.NoError(t, err, "payload %s", m.Payload)
		assert.Empty(t, d.Warnings)
		out = append(out, d.Event)
	}
	return out
}

// clipEvents keeps the camera events, dropping heartbeats.
func clipEvents(evs []devices.Event) []devices.Event {
	return slices.DeleteFunc(slices.Clone(evs), func(e devices.Event) bool { return !e.Type.Camera() })
}

func TestCameraRecordPublishesAndUploads(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	ts := startTusServer(t)
	// A fixed clock (the gateway checks ts against its own, so it is now).
	now := time.Now().UTC()
	start := now.Truncate(time.Second)
	cam := newTestCamera(t, tb, ts, CameraConfig{
		ClipLength: 30 * time.Second,
		Now:        func() time.Time { return now },
	})
	// The clip declares 30 s, but the test need not wait for them.
	cam.after = func(time.Duration) <-chan time.Time { return time.After(10 * time.Millisecond) }
	rep, err := cam.Record(t.Context())
	require.NoError(t, err)

	assert.Equal(t, "cam-1-"+start.Format("20060102T150405")+"-1", rep.Clip.ID)
	assert.True(t, devices.ValidClipID(rep.Clip.ID))
	assert.Equal(t, start, rep.Clip.Start)
	assert.Equal(t, rep.Clip.Start.Add(30*time.Second), rep.Clip.End)
	assert.Equal(t, int64(200_000), rep.Clip.Size)
	assert.Equal(t, OutcomeAccepted, rep.Upload.Outcome)
	assert.Nil(t, rep.Again)
	assert.True(t, rep.AsExpected())
	digest, size := fileDigest(t, rep.Path)
	assert.Equal(t, digest, rep.Clip.SHA256)
	assert.Equal(t, digest, rep.FileSHA256)
	assert.Equal(t, rep.Clip.Size, size)

	evs := cameraEvents(t, tb, "cam-1", 3)
	require.Len(t, evs, 3)
	assert.Equal(t, []devices.Type{devices.TypeRecordingStarted, devices.TypeRecordingStopped, devices.TypeClipReady},
		[]devices.Type{evs[0].Type, evs[1].Type, evs[2].Type}, "in order")
	assert.Less(t, evs[0].Seq, evs[1].Seq)
	assert.Less(t, evs[1].Seq, evs[2].Seq)
	assert.Equal(t, &devices.Clip{ID: rep.Clip.ID}, evs[0].Clip)
	assert.Equal(t, &devices.Clip{ID: rep.Clip.ID}, evs[1].Clip)
	ready := evs[2].Clip
	require.NoError(t, devices.CheckClip(ready))
	assert.Equal(t, digest, ready.SHA256)
	assert.Equal(t, size, ready.Size)
	assert.True(t, ready.Start.Equal(rep.Clip.Start) && ready.End.Equal(rep.Clip.End))

	metas := ts.creations()
	require.Len(t, metas, 1)
	assert.Equal(t, "cam-1", metas[0]["camera"])
	assert.Equal(t, rep.Clip.ID, metas[0]["clip"])
	assert.Equal(t, digest, metas[0]["sha256"])
	assert.Equal(t, start.Format(time.RFC3339), metas[0]["start"])
	assert.Equal(t, start.Add(30*time.Second).Format(time.RFC3339), metas[0]["end"])
	want, err := os.ReadFile(rep.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, ts.stored("cam-1", rep.Clip.ID)))

	s := cam.Stats()
	assert.Equal(t, uint64(1), s.Recorded)
	assert.Equal(t, uint64(1), s.Uploaded)
	assert.Equal(t, uint64(200_000), s.BytesSent)
	assert.Equal(t, uint64(3), s.Events)
	assert.Contains(t, s.String(), "recorded=1 uploaded=1 already_received=0 rejected=0 failed=0 bytes_sent=200000")
}

func TestCameraFaults(t *testing.T) {
	tests := []struct {
		name   string
		cfg    CameraConfig
		check  func(t *testing.T, rep ClipReport, ts *tusServer)
		events int
	}{
		{"wrong digest is rejected", CameraConfig{WrongDigest: true}, func(t *testing.T, rep ClipReport, ts *tusServer) {
			assert.NotEqual(t, rep.FileSHA256, rep.Clip.SHA256)
			assert.Equal(t, OutcomeRejected, rep.Upload.Outcome)
			assert.Equal(t, 460, rep.Upload.Status)
			assert.Contains(t, rep.Upload.Body, "sha256 mismatch: declared "+rep.Clip.SHA256)
			assert.Equal(t, rep.Clip.SHA256, ts.creations()[0]["sha256"], "the wrong digest is declared in the metadata too")
		}, 3},
		{"twice is already received", CameraConfig{Twice: true}, func(t *testing.T, rep ClipReport, ts *tusServer) {
			assert.Equal(t, OutcomeAccepted, rep.Upload.Outcome)
			require.NotNil(t, rep.Again)
			assert.Equal(t, OutcomeAlreadyReceived, rep.Again.Outcome)
			assert.Equal(t, 409, rep.Again.Status)
			assert.Contains(t, rep.Again.Body, "already received")
			assert.Len(t, ts.creations(), 2)
		}, 3},
		{"cut halfway resumes", CameraConfig{CutHalfway: true, ChunkSize: 64 << 10}, func(t *testing.T, rep ClipReport, ts *tusServer) {
			assert.Equal(t, OutcomeAccepted, rep.Upload.Outcome)
			assert.Equal(t, rep.Clip.Size/2, rep.Upload.CutAt)
			assert.Positive(t, rep.Upload.ResumedFrom)
			assert.Equal(t, 1, rep.Upload.Resumes)
			assert.Equal(t, rep.Clip.Size, ts.patchBytes.Load())
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := startBroker(t, freeAddr(t))
			ts := startTusServer(t)
			cam := newTestCamera(t, tb, ts, tt.cfg)
			rep, err := cam.Record(t.Context())
			require.NoError(t, err)
			assert.True(t, rep.AsExpected(), "%+v", rep)
			tt.check(t, rep, ts)

			evs := cameraEvents(t, tb, "cam-1", tt.events)
			ready := evs[len(evs)-1]
			require.Equal(t, devices.TypeClipReady, ready.Type)
			assert.Equal(t, rep.Clip.SHA256, ready.Clip.SHA256, "clip_ready declares what the upload declares")
		})
	}
}

func TestCameraStartRecordingCommand(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	ts := startTusServer(t)
	cam := newTestCamera(t, tb, ts, CameraConfig{Heartbeat: time.Hour})

	var mu sync.Mutex
	var reports []ClipReport
	ctx, cancel := context.WithCancel(t.Context())
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runErr = cam.Run(ctx, func(rep ClipReport, err error) {
			assert.NoError(t, err)
			mu.Lock()
			reports = append(reports, rep)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	// The heartbeat shows Run is on duty before the command is sent.
	evs := cameraEvents(t, tb, "cam-1", 1)
	require.Equal(t, devices.TypeHeartbeat, evs[0].Type)
	assert.Empty(t, clipEvents(evs), "no clip without a command")

	cmd, err := devices.EncodeCommand(devices.Command{Cmd: devices.CmdStartRecording, Alert: "btn-1.42"})
	require.NoError(t, err)
	require.NoError(t, tb.srv.Publish(devices.CommandTopic("test", "cam-1"), cmd, false, 1))

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) == 1
	}, waitFor, 5*time.Millisecond)
	mu.Lock()
	rep := reports[0]
	mu.Unlock()
	assert.Equal(t, OutcomeAccepted, rep.Upload.Outcome)
	want, err := os.ReadFile(rep.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, ts.stored("cam-1", rep.Clip.ID)))

	clips := clipEvents(cameraEvents(t, tb, "cam-1", 4))
	require.Len(t, clips, 3)
	assert.Equal(t, devices.TypeClipReady, clips[2].Type)
	assert.Equal(t, rep.Clip.ID, clips[2].Clip.ID)
	assert.Equal(t, uint64(1), cam.Stats().Commands)

	// Another command, another clip with the next id.
	require.NoError(t, tb.srv.Publish(devices.CommandTopic("test", "cam-1"), cmd, false, 1))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) == 2
	}, waitFor, 5*time.Millisecond)
	mu.Lock()
	assert.NotEqual(t, reports[0].Clip.ID, reports[1].Clip.ID)
	assert.Regexp(t, `^cam-1-\d{8}T\d{6}-2$`, reports[1].Clip.ID)
	mu.Unlock()

	cancel()
	<-done
	require.NoError(t, runErr)
}

func TestCameraSeqPersists(t *testing.T) {
	tb := startBroker(t, freeAddr(t))
	ts := startTusServer(t)
	seqFile := filepath.Join(t.TempDir(), "cam.seq")
	cam := newTestCamera(t, tb, ts, CameraConfig{SeqFile: seqFile, FirstSeq: 100})
	_, err := cam.Record(t.Context())
	require.NoError(t, err)
	cam.Close()

	cam2 := newTestCamera(t, tb, ts, CameraConfig{SeqFile: seqFile, FirstSeq: 100})
	_, err = cam2.Record(t.Context())
	require.NoError(t, err)
	evs := clipEvents(cameraEvents(t, tb, "cam-1", 6))
	require.Len(t, evs, 6)
	for i, e := range evs {
		assert.Equal(t, uint64(100+i), e.Seq, "event %d continues after the restart", i)
	}
}

func TestCameraConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	base := CameraConfig{Broker: "tcp://127.0.0.1:1883", Site: "s", Device: "cam-1", Gateway: "http://127.0.0.1:8080", Token: "t", Dir: dir, Format: FormatRandom}
	tests := []struct {
		name   string
		change func(*CameraConfig)
		want   string
	}{
		{"no dir", func(c *CameraConfig) { c.Dir = "" }, "clip directory is not set"},
		{"dir is a file", func(c *CameraConfig) { c.Dir = file }, "is not a directory"},
		{"bad device", func(c *CameraConfig) { c.Device = "cam 1" }, `device "cam 1" is not a valid id`},
		{"no token", func(c *CameraConfig) { c.Token = "" }, "gateway token is empty"},
		{"bad gateway", func(c *CameraConfig) { c.Gateway = "gw:8080" }, "want http://host:port"},
		{"long clip", func(c *CameraConfig) { c.ClipLength = 25 * time.Hour }, "clip length 25h0m0s is not between"},
		{"bad format", func(c *CameraConfig) { c.Format = "avi" }, `clip format "avi"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			_, err := NewCamera(cfg)
			assert.ErrorContains(t, err, tt.want)
		})
	}
	_, err := NewCamera(base)
	assert.NoError(t, err)
}

func TestClipReportAsExpected(t *testing.T) {
	r := func(wrong bool, first Outcome, again ...Outcome) ClipReport {
		rep := ClipReport{WrongDigest: wrong, Upload: UploadResult{Outcome: first}}
		if len(again) > 0 {
			rep.Again = &UploadResult{Outcome: again[0]}
		}
		return rep
	}
	assert.True(t, r(false, OutcomeAccepted).AsExpected())
	assert.True(t, r(false, OutcomeAlreadyReceived).AsExpected())
	assert.True(t, r(false, OutcomeAccepted, OutcomeAlreadyReceived).AsExpected())
	assert.False(t, r(false, OutcomeRejected).AsExpected())
	assert.False(t, r(false, OutcomeUnconfirmed).AsExpected())
	assert.False(t, r(false, OutcomeAccepted, OutcomeRejected).AsExpected())
	assert.True(t, r(true, OutcomeRejected).AsExpected())
	assert.True(t, r(true, OutcomeRejected, OutcomeAlreadyReceived).AsExpected())
	assert.False(t, r(true, OutcomeAccepted).AsExpected())
	assert.False(t, r(true, OutcomeAlreadyReceived).AsExpected(), "a wrong digest must be caught")
}
