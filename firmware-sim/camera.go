package firmwaresim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vigil-gw/vigil/devices"
)

// Defaults applied to a zero CameraConfig field.
const (
	DefaultClipSize   = 8 << 20
	DefaultClipLength = 30 * time.Second
)

// CameraConfig describes one simulated body-worn camera.
type CameraConfig struct {
	// Broker, Username, Password and TLS are as in ButtonConfig.
	Broker   string
	Username string
	Password string
	TLS      *tls.Config
	// Site and Device name the camera in its topics, payloads, clip ids
	// and upload metadata; both must satisfy devices.ValidID.
	Site   string
	Device string

	// Gateway is the gateway's HTTP base URL (http://host:port), or the
	// full tus creation URL; UploadPath is appended to a bare base URL.
	Gateway string
	// Token is the camera's bearer token, as printed by
	// vigil device add CAM --kind camera.
	Token string
	// HTTPClient uploads the clips (NewGatewayHTTPClient(GatewayTLS) if nil).
	HTTPClient *http.Client
	// GatewayTLS verifies an https:// gateway when HTTPClient is nil (nil
	// means the system roots).
	GatewayTLS *tls.Config
	// ChunkSize is the size of one PATCH (DefaultChunkSize if zero).
	ChunkSize int64
	// MaxRetries, MinBackoff and MaxBackoff are as in TusConfig.
	MaxRetries             int
	MinBackoff, MaxBackoff time.Duration

	// Dir is where clip files are written; it must exist. Clips are left
	// there after upload, as a camera keeps footage until it is docked.
	Dir string
	// ClipSize is each clip's size in bytes (DefaultClipSize if zero).
	ClipSize int64
	// ClipLength is each clip's duration (DefaultClipLength if zero). A
	// recording takes this long in real time, as on a real camera: the file
	// is generated meanwhile, and recording_stopped follows at the end.
	ClipLength time.Duration
	// Format picks how clip bytes are made (FormatAuto if empty); FFmpeg
	// names the executable for FormatMP4 ("" looks it up on PATH).
	Format ClipFormat
	FFmpeg string

	// CutHalfway cuts each upload's connection once half the file is sent
	// and resumes from the server's offset.
	CutHalfway bool
	// WrongDigest declares a wrong sha256 in clip_ready and in the upload
	// metadata, which the gateway must reject.
	WrongDigest bool
	// Twice uploads each clip a second time once the first upload has
	// finished, to see the gateway's answer to a duplicate.
	Twice bool

	// Heartbeat is the interval of heartbeats in Run (DefaultHeartbeat if
	// zero).
	Heartbeat time.Duration
	// FirstSeq and SeqFile are as in ButtonConfig: sequence numbers are
	// never reused, across restarts too.
	FirstSeq uint64
	SeqFile  string
	// ReconnectInterval and ConnectTimeout are as in ButtonConfig.
	// ConnectTimeout also bounds the wait for the broker to acknowledge
	// clip_ready before the upload starts.
	ReconnectInterval time.Duration
	ConnectTimeout    time.Duration
	// Now is the camera clock for timestamps and clip spans (time.Now if nil).
	Now func() time.Time
	// Logger receives diagnostics (discarded if nil).
	Logger *slog.Logger
}

func (c *CameraConfig) setDefaults() {
	if c.ClipSize == 0 {
		c.ClipSize = DefaultClipSize
	}
	if c.ClipLength == 0 {
		c.ClipLength = DefaultClipLength
	}
	if c.Format == "" {
		c.Format = FormatAuto
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *CameraConfig) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("firmwaresim: clip directory is not set")
	case c.ClipSize < 0:
		return fmt.Errorf("firmwaresim: clip size %d is negative", c.ClipSize)
	case c.ClipLength < 0 || c.ClipLength > devices.MaxClipDuration:
		return fmt.Errorf("firmwaresim: clip length %s is not between 0 and %s", c.ClipLength, devices.MaxClipDuration)
	case c.Format != FormatAuto && c.Format != FormatRandom && c.Format != FormatMP4:
		return fmt.Errorf("firmwaresim: clip format %q is not auto, random or mp4", c.Format)
	}
	if st, err := os.Stat(c.Dir); err != nil {
		return fmt.Errorf("firmwaresim: clip directory: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("firmwaresim: clip directory %s is not a directory", c.Dir)
	}
	return nil
}

// Camera is one simulated body-worn camera. It speaks the real protocols: the
// v1 camera events on MQTT (through a Button's session, queue and persistent
// sequence numbers) and tus uploads to the gateway's evidence ingest. Its
// methods are safe for concurrent use; recordings happen one at a time.
type Camera struct {
	cfg    CameraConfig
	log    *slog.Logger
	btn    *Button
	tus    *TusClient
	format ClipFormat // resolved: random or mp4
	ffmpeg string
	stats  cameraCounters

	rec   sync.Mutex // held for a whole recording: a camera records one clip at a time
	clips atomic.Uint64
	// after times a recording (time.After); tests shorten the real wait
	// while the clip still declares ClipLength.
	after func(time.Duration) <-chan time.Time
}

// NewCamera validates cfg and makes a camera; Connect brings it online.
func NewCamera(cfg CameraConfig) (*Camera, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	format, ffmpeg, err := resolveFormat(cfg.Format, cfg.FFmpeg)
	if err != nil {
		return nil, err
	}
	bc := ButtonConfig{
		Broker: cfg.Broker, Username: cfg.Username, Password: cfg.Password, TLS: cfg.TLS,
		Site: cfg.Site, Device: cfg.Device,
		Heartbeat: cfg.Heartbeat, FirstSeq: cfg.FirstSeq, SeqFile: cfg.SeqFile,
		ReconnectInterval: cfg.ReconnectInterval, ConnectTimeout: cfg.ConnectTimeout,
		Now: cfg.Now, Logger: cfg.Logger,
	}
	bc.setDefaults()
	if err := bc.validate(); err != nil {
		return nil, err
	}
	btn, err := newButton(bc, &counters{})
	if err != nil {
		return nil, err
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		httpClient = NewGatewayHTTPClient(cfg.GatewayTLS)
	}
	tus, err := NewTusClient(TusConfig{
		Endpoint: cfg.Gateway, Token: cfg.Token, HTTPClient: httpClient,
		ChunkSize: cfg.ChunkSize, MaxRetries: cfg.MaxRetries,
		MinBackoff: cfg.MinBackoff, MaxBackoff: cfg.MaxBackoff,
		Logger: cfg.Logger.With("device", cfg.Device),
	})
	if err != nil {
		return nil, err
	}
	return &Camera{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "firmware-sim/camera", "site", cfg.Site, "device", cfg.Device),
		btn:    btn,
		tus:    tus,
		format: format,
		ffmpeg: ffmpeg,
		after:  time.After,
	}, nil
}

// Device is the camera's device id.
func (c *Camera) Device() string { return c.cfg.Device }

// Format is the clip format in use: FormatMP4 or FormatRandom.
func (c *Camera) Format() ClipFormat { return c.format }

// Endpoint is the tus creation URL the camera uploads to.
func (c *Camera) Endpoint() string { return c.tus.Endpoint() }

// Connect opens the camera's MQTT session and returns once it is connected
// and subscribed to its command topic, or when ctx ends. The session then
// reconnects by itself, as a Button's does.
func (c *Camera) Connect(ctx context.Context) error { return c.btn.Connect(ctx) }

// Connected reports whether the connection to the broker is open now.
func (c *Camera) Connected() bool { return c.btn.Connected() }

// Flush waits until the broker has acknowledged every event published so far.
func (c *Camera) Flush(ctx context.Context) error { return c.btn.Flush(ctx) }

// Close ends the MQTT session; events not yet acknowledged are lost.
func (c *Camera) Close() { c.btn.Close() }

// ClipReport is what happened to one recorded clip.
type ClipReport struct {
	// Clip is the clip as declared in clip_ready and in the upload metadata;
	// with WrongDigest its SHA256 is not the file's.
	Clip devices.Clip
	// FileSHA256 is the file's real digest.
	FileSHA256 string
	// Path is the clip file.
	Path string
	// Format is how the file was made.
	Format ClipFormat
	// WrongDigest records that a wrong digest was declared on purpose.
	WrongDigest bool
	// Upload is the first upload's result.
	Upload UploadResult
	// Again is the second upload's result, with Twice; nil otherwise.
	Again *UploadResult
}

// AsExpected reports whether the clip ended as the camera's faults say it
// should: accepted or already received, or, when a wrong digest was
// declared, rejected. A second upload (Twice) may also be answered as
// already received.
func (r ClipReport) AsExpected() bool {
	want := OutcomeAccepted
	if r.WrongDigest {
		want = OutcomeRejected
	}
	first := r.Upload.Outcome == want || (!r.WrongDigest && r.Upload.Outcome == OutcomeAlreadyReceived)
	again := r.Again == nil || r.Again.Outcome == want || r.Again.Outcome == OutcomeAlreadyReceived
	return first && again
}

// Record records one clip now and delivers it: recording_started, the clip
// recorded for ClipLength (its file generated meanwhile), recording_stopped,
// clip_ready with the clip's digest and size, then the tus upload (twice
// with Twice). Errors are failures to record or upload; a clip the gateway
// rejects or already has is reported in the ClipReport, not as an error.
func (c *Camera) Record(ctx context.Context) (ClipReport, error) {
	c.rec.Lock()
	defer c.rec.Unlock()
	start := c.cfg.Now().UTC().Truncate(time.Second)
	id := c.clipID(start)
	rep := ClipReport{
		Clip:        devices.Clip{ID: id, Start: start, End: start.Add(c.cfg.ClipLength)},
		WrongDigest: c.cfg.WrongDigest,
	}
	if _, err := c.publish(ctx, devices.TypeRecordingStarted, &devices.Clip{ID: id}); err != nil {
		return rep, err
	}
	file, err := c.record(ctx, id)
	if err != nil {
		c.stats.failed.Add(1)
		if ctx.Err() == nil {
			// The recording failed (a full disk, a broken ffmpeg) but the
			// camera has stopped recording all the same.
			_, _ = c.publish(ctx, devices.TypeRecordingStopped, &devices.Clip{ID: id})
		}
		return rep, err
	}
	c.stats.recorded.Add(1)
	rep.Path, rep.Format, rep.FileSHA256 = file.Path, file.Format, file.SHA256
	rep.Clip.Size, rep.Clip.SHA256 = file.Size, file.SHA256
	if c.cfg.WrongDigest {
		rep.Clip.SHA256 = wrongDigest(file.SHA256)
	}
	if _, err := c.publish(ctx, devices.TypeRecordingStopped, &devices.Clip{ID: id}); err != nil {
		return rep, err
	}
	clip := rep.Clip
	if _, err := c.publish(ctx, devices.TypeClipReady, &clip); err != nil {
		return rep, err
	}
	c.awaitAnnouncement(ctx, id)

	up := Upload{Path: file.Path, Camera: c.cfg.Device, Clip: rep.Clip,
		Filename: filepath.Base(file.Path), Type: file.Type, CutHalfway: c.cfg.CutHalfway}
	rep.Upload, err = c.upload(ctx, up)
	if err != nil {
		return rep, err
	}
	if c.cfg.Twice {
		up.CutHalfway = false // the fault is about the duplicate, not the connection
		again, err := c.upload(ctx, up)
		rep.Again = &again
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// record generates the clip file while the recording's time runs, and
// returns once both are done: a real camera's file is complete only when
// the recording stops.
func (c *Camera) record(ctx context.Context, id string) (ClipFile, error) {
	c.log.Info("recording", "clip", id, "length", c.cfg.ClipLength, "size", c.cfg.ClipSize, "format", c.format)
	stop := c.after(c.cfg.ClipLength)
	file, err := GenerateClip(ctx, ClipSpec{
		Dir: c.cfg.Dir, Camera: c.cfg.Device, ID: id,
		Size: c.cfg.ClipSize, Length: c.cfg.ClipLength,
		Format: c.format, FFmpeg: c.ffmpeg,
	})
	if err != nil {
		return ClipFile{}, err
	}
	select {
	case <-stop:
		return file, nil
	case <-ctx.Done():
		return ClipFile{}, fmt.Errorf("firmwaresim: record %s: %w", id, ctx.Err())
	}
}

// awaitAnnouncement waits, for at most ConnectTimeout, until the broker has
// clip_ready, so the gateway normally learns of a clip before its upload
// starts. The upload goes ahead regardless: footage must not wait for MQTT,
// and the event stays queued for the connection's return.
func (c *Camera) awaitAnnouncement(ctx context.Context, id string) {
	fctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	if err := c.btn.Flush(fctx); err != nil && ctx.Err() == nil {
		c.log.Warn("clip_ready not yet acknowledged by the broker; uploading anyway", "clip", id, "err", err)
	}
}

// upload runs one tus upload and counts its outcome.
func (c *Camera) upload(ctx context.Context, up Upload) (UploadResult, error) {
	res, err := c.tus.Upload(ctx, up)
	c.stats.bytesSent.Add(uint64(res.Sent))
	c.stats.resumes.Add(uint64(res.Resumes))
	if err != nil {
		c.stats.failed.Add(1)
		return res, err
	}
	switch res.Outcome {
	case OutcomeAccepted:
		c.stats.uploaded.Add(1)
	case OutcomeAlreadyReceived:
		c.stats.already.Add(1)
	case OutcomeRejected:
		c.stats.rejected.Add(1)
	default:
		c.stats.failed.Add(1)
	}
	c.log.Info("upload finished", "clip", up.Clip.ID, "outcome", res.Outcome, "status", res.Status,
		"sent", res.Sent, "resumes", res.Resumes, "elapsed", res.Elapsed)
	return res, nil
}

// publish queues one camera event carrying clip.
func (c *Camera) publish(ctx context.Context, typ devices.Type, clip *devices.Clip) (Press, error) {
	p, err := c.btn.emit(ctx, typ, nil, func(e *devices.Event) { e.Clip = clip })
	if err != nil {
		return p, fmt.Errorf("firmwaresim: publish %s for clip %s: %w", typ, clip.ID, err)
	}
	c.stats.events.Add(1)
	return p, nil
}

// clipID names the n-th clip of this camera's run:
// {device}-{yyyymmddThhmmss}-{n}. A device id is at most 64 characters, so
// the id stays well inside the 128 that devices.ValidClipID allows.
func (c *Camera) clipID(start time.Time) string {
	n := c.clips.Add(1)
	return c.cfg.Device + "-" + start.UTC().Format("20060102T150405") + "-" + strconv.FormatUint(n, 10)
}

// wrongDigest is a well-formed digest that is certainly not the file's: the
// digest of the real one.
func wrongDigest(real string) string {
	sum := sha256.Sum256([]byte(real))
	return hex.EncodeToString(sum[:])
}

// Run keeps the camera on duty until ctx ends: a heartbeat every Heartbeat
// interval, and a clip recorded and delivered for each start_recording
// command, including any the broker queued for the camera's persistent
// session while it was away. onClip (which may be nil) hears of each clip;
// a failed clip is reported with its error and Run goes on, as a camera
// does. Run returns nil when ctx ends.
func (c *Camera) Run(ctx context.Context, onClip func(ClipReport, error)) error {
	if onClip == nil {
		onClip = func(ClipReport, error) {}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.btn.Run(gctx) })
	g.Go(func() error {
		for seen := 0; ; {
			cmd, next, err := c.nextCommand(gctx, seen)
			if err != nil {
				return nil // ctx ended
			}
			seen = next
			if cmd.Cmd != devices.CmdStartRecording {
				continue
			}
			c.stats.commands.Add(1)
			c.log.Info("start_recording received", "alert", cmd.Alert)
			rep, err := c.Record(gctx)
			if gctx.Err() != nil {
				return nil
			}
			onClip(rep, err)
		}
	})
	return g.Wait()
}

// nextCommand waits for the command after the first seen ones the Button
// has received, and returns it with the new count.
func (c *Camera) nextCommand(ctx context.Context, seen int) (devices.Command, int, error) {
	b := c.btn
	for {
		b.mu.Lock()
		if seen < len(b.commands) {
			cmd := b.commands[seen]
			b.mu.Unlock()
			return cmd, seen + 1, nil
		}
		signal := b.commandSignal
		b.mu.Unlock()
		select {
		case <-signal:
		case <-ctx.Done():
			return devices.Command{}, seen, ctx.Err()
		}
	}
}

// Stats returns the camera's counters.
func (c *Camera) Stats() CameraStats {
	s := c.stats.snapshot()
	s.Queued = c.btn.Queued()
	return s
}

// cameraCounters are a camera's counters, updated lock-free.
type cameraCounters struct {
	recorded, uploaded, already, rejected, failed atomic.Uint64
	bytesSent, resumes, events, commands          atomic.Uint64
}

func (c *cameraCounters) snapshot() CameraStats {
	return CameraStats{
		Recorded:        c.recorded.Load(),
		Uploaded:        c.uploaded.Load(),
		AlreadyReceived: c.already.Load(),
		Rejected:        c.rejected.Load(),
		Failed:          c.failed.Load(),
		BytesSent:       c.bytesSent.Load(),
		Resumes:         c.resumes.Load(),
		Events:          c.events.Load(),
		Commands:        c.commands.Load(),
	}
}

// CameraStats is a snapshot of what a camera has done since it was made.
// Each upload (a Twice clip has two) counts in exactly one of Uploaded,
// AlreadyReceived, Rejected and Failed.
type CameraStats struct {
	// Recorded counts clip files made.
	Recorded uint64
	// Uploaded counts uploads the gateway accepted (204 on the last PATCH).
	Uploaded uint64
	// AlreadyReceived counts uploads answered 409: the gateway had the clip.
	AlreadyReceived uint64
	// Rejected counts uploads the gateway refused when finished, such as
	// for a digest mismatch.
	Rejected uint64
	// Failed counts recordings and uploads that ended in an error, or whose
	// verdict was lost with the connection.
	Failed uint64
	// BytesSent counts bytes sent in PATCH bodies, including bytes sent
	// again after a failure.
	BytesSent uint64
	// Resumes counts uploads continued from the server's offset after a
	// failed or cut PATCH.
	Resumes uint64
	// Events counts camera events queued for the broker.
	Events uint64
	// Commands counts start_recording commands obeyed.
	Commands uint64
	// Queued is how many events still await the broker's PUBACK.
	Queued int
}

// String renders the snapshot on one line for logs and the command line.
func (s CameraStats) String() string {
	return fmt.Sprintf("recorded=%d uploaded=%d already_received=%d rejected=%d failed=%d bytes_sent=%d resumes=%d events=%d commands=%d queued=%d",
		s.Recorded, s.Uploaded, s.AlreadyReceived, s.Rejected, s.Failed, s.BytesSent, s.Resumes, s.Events, s.Commands, s.Queued)
}
