package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/devices"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
)

// byteSize is a flag holding a size in bytes, written as a whole number with
// an optional binary suffix: 1048576, 512KiB, 8MiB, 2GiB.
type byteSize int64

// sizeUnits are the suffixes byteSize accepts, largest first for String.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// Set parses a size; the suffix is case-insensitive.
func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// String renders the size with the largest suffix that divides it.
func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range sizeUnits {
		if n != 0 && n%u.mult == 0 {
			if u.mult == 1 {
				return strconv.FormatInt(n, 10)
			}
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseSize reads a positive whole number of bytes with an optional KiB,
// MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a size: want a whole number of bytes, optionally with KiB, MiB or GiB", s)
	case n <= 0:
		return 0, fmt.Errorf("%q is not a size: it must be positive", s)
	case n > math.MaxInt64/mult:
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// runCamera simulates a body-worn camera: it records clips, announces them
// on MQTT and uploads them to the gateway with tus, either a number of clips
// back to back or, with --listen, one per start_recording command.
func runCamera(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("camera", flag.ContinueOnError)
	var conn connFlags
	conn.register(fs)
	site := fs.String("site", "demo", "site id")
	device := fs.String("device", "cam-1", "camera device id")
	gateway := fs.String("gateway", "http://127.0.0.1:8080", "the gateway's HTTP URL; uploads go to "+firmwaresim.UploadPath)
	gatewayCA := fs.String("gateway-ca", "", "PEM file of the CA that signed the gateway's certificate (https:// only; default: system roots)")
	token := fs.String("token", "", "camera token printed by 'vigil device add CAM --kind camera' (visible in the process list: prefer --token-file)")
	tokenFile := fs.String("token-file", "", "file holding the camera token")
	clips := fs.Int("clips", 1, "clips to record and upload back to back (not with --listen)")
	clipSize := byteSize(firmwaresim.DefaultClipSize)
	fs.Var(&clipSize, "clip-size", "size of each clip: a number of `bytes`, optionally with KiB, MiB or GiB")
	clipLength := fs.Duration("clip-length", firmwaresim.DefaultClipLength, "duration of each clip; recording takes this long in real time")
	dir := fs.String("dir", "", "directory to keep the clips in (default: a temporary directory, removed on exit)")
	chunk := byteSize(firmwaresim.DefaultChunkSize)
	fs.Var(&chunk, "chunk", "`bytes` per upload request (PATCH), optionally with KiB, MiB or GiB; a cut connection loses at most one")
	format := fs.String("format", string(firmwaresim.FormatAuto), "clip content: mp4 (ffmpeg test pattern), random (pseudo-random bytes), or auto (mp4 when ffmpeg is on PATH)")
	cutHalfway := fs.Bool("cut-halfway", false, "cut each upload's connection halfway through, then resume from the gateway's offset")
	wrongDigest := fs.Bool("wrong-digest", false, "declare a wrong sha256 in clip_ready and the upload (the gateway must reject the clip)")
	twice := fs.Bool("twice", false, "upload each clip a second time once the first upload is done")
	listen := fs.Bool("listen", false, "stay connected and record a clip for each start_recording command until interrupted")
	heartbeat := fs.Duration("heartbeat", firmwaresim.DefaultHeartbeat, "heartbeat interval with --listen")
	seqFile := fs.String("seq-file", "", "file recording the last sequence number, so restarts continue after it (default: start at the current Unix time in ms)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait to connect to the broker")
	if err := parseFlags(fs, args, stdout, "camera --gateway URL (--token TOKEN | --token-file FILE) [flags]"); err != nil {
		return err
	}
	clipsSet := false
	fs.Visit(func(f *flag.Flag) { clipsSet = clipsSet || f.Name == "clips" })
	switch {
	case *listen && clipsSet:
		return usageError{"--clips and --listen are mutually exclusive: with --listen, commands decide when to record"}
	case *clips < 1:
		return usageError{fmt.Sprintf("--clips %d must be at least 1", *clips)}
	case *timeout <= 0:
		return usageError{fmt.Sprintf("--timeout %s must be positive", *timeout)}
	case *clipLength <= 0 || *clipLength > devices.MaxClipDuration:
		return usageError{fmt.Sprintf("--clip-length %s must be positive and at most %s", *clipLength, devices.MaxClipDuration)}
	}
	tok, err := readToken(*token, *tokenFile)
	if err != nil {
		return err
	}
	password, tlsConfig, err := conn.resolve()
	if err != nil {
		return err
	}
	gwTLS, err := gatewayTLS(*gateway, *gatewayCA)
	if err != nil {
		return err
	}
	clipDir := *dir
	if clipDir == "" {
		clipDir, err = os.MkdirTemp("", "vigil-sim-camera-*")
		if err != nil {
			return fmt.Errorf("make a clip directory: %w", err)
		}
		defer os.RemoveAll(clipDir)
	}

	cam, err := firmwaresim.NewCamera(firmwaresim.CameraConfig{
		Broker: conn.broker, Username: conn.username, Password: password, TLS: tlsConfig,
		Site: *site, Device: *device,
		Gateway: *gateway, Token: tok, GatewayTLS: gwTLS, ChunkSize: int64(chunk),
		Dir: clipDir, ClipSize: int64(clipSize), ClipLength: *clipLength, Format: firmwaresim.ClipFormat(*format),
		CutHalfway: *cutHalfway, WrongDigest: *wrongDigest, Twice: *twice,
		Heartbeat: *heartbeat, SeqFile: *seqFile,
		Logger: conn.logger(stderr, slog.LevelWarn),
	})
	switch {
	case errors.Is(err, firmwaresim.ErrNoFFmpeg):
		return usageError{"--format mp4 needs ffmpeg on PATH (or use --format random)"}
	case err != nil:
		return usageError{strings.TrimPrefix(err.Error(), "firmwaresim: ")}
	}

	connectCtx, stop := context.WithTimeout(ctx, *timeout)
	defer stop()
	if err := cam.Connect(connectCtx); err != nil {
		return explain(ctx, err, fmt.Sprintf("could not connect to %s within %s", conn.broker, *timeout))
	}
	defer cam.Close()

	unexpected := 0
	report := func(rep firmwaresim.ClipReport) {
		fmt.Fprintln(stdout, clipLine(rep))
		if !rep.AsExpected() {
			unexpected++
		}
	}
	if *listen {
		fmt.Fprintf(stdout, "%s on site %s recording %s %s clips on start_recording, uploading to %s; heartbeat every %s until interrupted\n",
			*device, *site, &clipSize, cam.Format(), cam.Endpoint(), *heartbeat)
		failed := 0
		err := cam.Run(ctx, func(rep firmwaresim.ClipReport, err error) {
			if err != nil {
				failed++
				fmt.Fprintf(stderr, "vigil-sim camera: clip %s: %s\n", rep.Clip.ID, oneLine(err.Error()))
				return
			}
			report(rep)
		})
		if err != nil {
			return err
		}
		flushAndSummarise(cam, stdout)
		if n := unexpected + failed; n > 0 {
			return fmt.Errorf("%d clips did not end as expected", n)
		}
		return nil
	}

	for i := range *clips {
		rep, err := cam.Record(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			return fmt.Errorf("clip %d of %d (%s): %w", i+1, *clips, rep.Clip.ID, err)
		}
		report(rep)
	}
	flushAndSummarise(cam, stdout)
	if unexpected > 0 {
		return fmt.Errorf("%d of %d clips did not end as expected", unexpected, *clips)
	}
	return nil
}

// flushAndSummarise gives the last events a moment to reach the broker, then
// prints the camera's counters.
func flushAndSummarise(cam *firmwaresim.Camera, stdout io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = cam.Flush(ctx)
	fmt.Fprintf(stdout, "%s: %s\n", cam.Device(), cam.Stats())
}

// clipLine renders one clip's outcome on one line: id, size, digest,
// outcome, upload time and throughput, and what the fault modes did.
func clipLine(rep firmwaresim.ClipReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "clip %s size %d sha256 %s", rep.Clip.ID, rep.Clip.Size, rep.FileSHA256)
	if rep.WrongDigest {
		fmt.Fprintf(&b, " (declared %s)", rep.Clip.SHA256)
	}
	b.WriteString(": " + outcome(rep.Upload, rep.Clip.Size))
	if rep.Upload.CutAt > 0 || rep.Upload.ResumedFrom > 0 {
		fmt.Fprintf(&b, "; cut at offset %d, resumed from offset %d", rep.Upload.CutAt, rep.Upload.ResumedFrom)
	}
	if rep.Again != nil {
		b.WriteString("; second upload: " + outcome(*rep.Again, rep.Clip.Size))
	}
	if !rep.AsExpected() {
		b.WriteString(" [not as expected]")
	}
	return b.String()
}

// outcome describes one upload's result.
func outcome(res firmwaresim.UploadResult, size int64) string {
	secs := res.Elapsed.Seconds()
	switch res.Outcome {
	case firmwaresim.OutcomeAccepted:
		rate := 0.0
		if secs > 0 {
			rate = float64(size) / secs / 1e6
		}
		return fmt.Sprintf("accepted in %s (%.1f MB/s)", res.Elapsed.Round(time.Millisecond), rate)
	case firmwaresim.OutcomeAlreadyReceived, firmwaresim.OutcomeRejected:
		return fmt.Sprintf("%s (%d: %s) in %s", res.Outcome, res.Status, oneLine(res.Body), res.Elapsed.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s in %s", res.Outcome, res.Elapsed.Round(time.Millisecond))
}

// readToken takes the camera token from the flag or the file, exactly one.
func readToken(token, file string) (string, error) {
	switch {
	case token != "" && file != "":
		return "", usageError{"--token and --token-file are mutually exclusive"}
	case token == "" && file == "":
		return "", usageError{"missing camera token: give --token TOKEN or --token-file FILE (the token 'vigil device add CAM --kind camera' printed)"}
	case token != "":
		return token, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", usageError{fmt.Sprintf("token file %s is empty", file)}
	}
	return t, nil
}

// gatewayTLS reads the CA for an https:// gateway, if given.
func gatewayTLS(gateway, caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	if !strings.HasPrefix(gateway, "https://") {
		return nil, usageError{"--gateway-ca needs an https:// gateway URL"}
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read gateway CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("gateway CA file %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
