package firmwaresim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClipFormat says how a simulated camera makes the bytes of its clips.
type ClipFormat string

// Clip formats.
const (
	// FormatAuto makes MP4 clips when ffmpeg is on PATH and random ones
	// otherwise, so the simulator works on a bare machine.
	FormatAuto ClipFormat = "auto"
	// FormatRandom writes deterministic pseudo-random bytes: cheap, any
	// size, and reproducible from the camera and clip id alone.
	FormatRandom ClipFormat = "random"
	// FormatMP4 has ffmpeg encode a test pattern, for footage a person can
	// play back from the evidence store.
	FormatMP4 ClipFormat = "mp4"
)

// ErrNoFFmpeg is returned when FormatMP4 is asked for and no ffmpeg
// executable can be found.
var ErrNoFFmpeg = errors.New("firmwaresim: ffmpeg not found on PATH")

// ClipSpec describes one clip file to generate.
type ClipSpec struct {
	// Dir is the directory the file is written to; it must exist.
	Dir string
	// Camera and ID name the clip. Together they seed the pseudo-random
	// bytes, so a clip can be regenerated identically for a test.
	Camera, ID string
	// Size is the number of bytes wanted. Random clips have exactly this
	// size; MP4 clips too unless the smallest video ffmpeg can make at this
	// length is larger (see writeMP4).
	Size int64
	// Length is the clip's duration, which an MP4's video follows up to
	// maxVideo.
	Length time.Duration
	// Format picks the generator; FFmpeg is the executable FormatMP4 runs
	// ("" means look it up on PATH).
	Format ClipFormat
	FFmpeg string
}

// ClipFile is a generated clip on disk.
type ClipFile struct {
	// Path is the file; its name is the clip id with an extension.
	Path string
	// Size is the file's size in bytes.
	Size int64
	// SHA256 is the lowercase hex digest of the file, computed while it was
	// written, so a multi-gigabyte clip is never read back.
	SHA256 string
	// Format is the generator used (FormatRandom or FormatMP4).
	Format ClipFormat
	// Type is the MIME type declared in the upload metadata.
	Type string
}

// genBufSize is the generator's one buffer: the only memory a clip costs,
// whatever its size.
const genBufSize = 1 << 20

// GenerateClip writes the clip described by spec and returns its size and
// digest. The file appears under its final name only once complete: it is
// written under a temporary name in the same directory and renamed, so a
// crash or cancellation never leaves a truncated clip that looks whole.
// It is not fsynced: a simulator never trusts a clip file across a crash,
// every run records new clips, so only the atomic name matters.
func GenerateClip(ctx context.Context, spec ClipSpec) (ClipFile, error) {
	if spec.Size <= 0 {
		return ClipFile{}, fmt.Errorf("firmwaresim: generate clip %s: size %d is not positive", spec.ID, spec.Size)
	}
	format, ffmpeg, err := resolveFormat(spec.Format, spec.FFmpeg)
	if err != nil {
		return ClipFile{}, fmt.Errorf("firmwaresim: generate clip %s: %w", spec.ID, err)
	}
	ext, mime := ".bin", "application/octet-stream"
	if format == FormatMP4 {
		ext, mime = ".mp4", "video/mp4"
	}
	path := filepath.Join(spec.Dir, spec.ID+ext)
	tmp, err := os.CreateTemp(spec.Dir, "."+spec.ID+ext+".part-*")
	if err != nil {
		return ClipFile{}, fmt.Errorf("firmwaresim: generate clip %s: %w", spec.ID, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	w := &hashingWriter{w: tmp, h: sha256.New()}
	switch format {
	case FormatMP4:
		err = writeMP4(ctx, w, ffmpeg, spec, clipSeed(spec.Camera, spec.ID))
	default:
		err = writeRandom(ctx, w, clipSeed(spec.Camera, spec.ID), spec.Size)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return ClipFile{}, fmt.Errorf("firmwaresim: generate clip %s: %w", spec.ID, err)
	}
	return ClipFile{Path: path, Size: w.n, SHA256: hex.EncodeToString(w.h.Sum(nil)), Format: format, Type: mime}, nil
}

// resolveFormat turns FormatAuto into a concrete format and finds ffmpeg.
func resolveFormat(f ClipFormat, ffmpeg string) (ClipFormat, string, error) {
	switch f {
	case FormatRandom:
		return FormatRandom, "", nil
	case FormatMP4, FormatAuto, "":
		path, err := lookFFmpeg(ffmpeg)
		switch {
		case err == nil:
			return FormatMP4, path, nil
		case f == FormatMP4:
			return "", "", err
		default:
			return FormatRandom, "", nil
		}
	}
	return "", "", fmt.Errorf("firmwaresim: clip format %q is not auto, random or mp4", f)
}

// lookFFmpeg finds the ffmpeg executable, "" meaning the one on PATH.
func lookFFmpeg(name string) (string, error) {
	if name == "" {
		name = "ffmpeg"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		if name == "ffmpeg" {
			return "", ErrNoFFmpeg
		}
		return "", fmt.Errorf("firmwaresim: ffmpeg %q: %w", name, err)
	}
	return path, nil
}

// hashingWriter writes through to w while hashing and counting, so the
// digest is ready the moment the last byte is written.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

// clipSeed derives the generator's key from the camera and clip id, so
// every clip differs and any one can be regenerated.
func clipSeed(camera, id string) [32]byte {
	return sha256.Sum256([]byte("vigil-sim clip\x00" + camera + "\x00" + id))
}

// writeRandom writes size bytes of ChaCha8 output keyed by seed, one buffer
// at a time, checking ctx between buffers so a cancelled recording stops
// promptly even in the middle of gigabytes.
func writeRandom(ctx context.Context, w io.Writer, seed [32]byte, size int64) error {
	rng := rand.NewChaCha8(seed)
	buf := make([]byte, min(size, genBufSize))
	for left := size; left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := buf[:min(left, int64(len(buf)))]
		_, _ = rng.Read(p) // ChaCha8.Read always fills p
		if _, err := w.Write(p); err != nil {
			return err
		}
		left -= int64(len(p))
	}
	return nil
}

// Limits of the MP4 generator.
const (
	// maxVideo caps the encoded video's duration: encoding costs CPU time
	// in proportion to it, and a simulated hour-long clip need not take
	// minutes to make. A longer clip declares its full span all the same.
	maxVideo = 60 * time.Second
	// mp4MaxBitrate is about the most ffmpeg's built-in MPEG-4 encoder
	// reaches on a noisy 640x360 picture; above it the padding box fills
	// the rest of the requested size.
	mp4MaxBitrate = 200_000_000
	// mp4NoisyBitrate is where the generator switches from a plain test
	// pattern (which compresses to a few hundred kbit/s at best, however
	// high the target) to a noisy one that the encoder cannot squeeze.
	mp4NoisyBitrate = 1_200_000
	// mp4FloorBitrate is about what the plain 320x240 pattern costs; a
	// smaller clip gets a shorter video rather than an oversized file.
	mp4FloorBitrate = 300_000
	// mp4Headroom aims the encoder below the requested size, because its
	// rate control overshoots (by up to 11% on a two-second clip, less on
	// longer ones) and padding can only add.
	mp4Headroom = 0.8
)

// mp4Plan is how ffmpeg is asked to make a clip of a given size.
type mp4Plan struct {
	size    string // WxH
	rate    int    // frames per second
	seconds float64
	bitrate int64 // bits per second
	noise   bool
	// seed varies the noise and title names the clip in the file's
	// metadata, so every clip's bytes differ (ffmpeg's output is otherwise
	// the same for the same settings) yet are reproducible from its id.
	seed  uint32
	title string
}

// planMP4 picks picture size, duration and bitrate so the video comes out a
// little under size bytes.
func planMP4(size int64, length time.Duration) mp4Plan {
	seconds := min(max(length, time.Second), maxVideo).Seconds()
	bits := float64(size) * 8 * mp4Headroom
	br := bits / seconds
	p := mp4Plan{size: "640x360", rate: 25, seconds: seconds, noise: true}
	switch {
	case br >= mp4NoisyBitrate:
		br = min(br, mp4MaxBitrate)
	case bits >= mp4FloorBitrate:
		p = mp4Plan{size: "320x240", rate: 15, seconds: seconds}
		if br < mp4FloorBitrate {
			p.seconds = bits / mp4FloorBitrate
			br = mp4FloorBitrate
		}
	default:
		// Under a second of the smallest picture: the file will be about
		// 10 KB, larger than asked.
		p = mp4Plan{size: "160x120", rate: 5, seconds: 1}
		br = max(br, 40_000)
	}
	p.bitrate = int64(br)
	return p
}

// args renders the ffmpeg command line. The output is fragmented MP4 on
// stdout, which needs no seeking, so the digest is computed as ffmpeg
// writes instead of by reading the file back.
func (p mp4Plan) args() []string {
	br := strconv.FormatInt(p.bitrate, 10)
	args := []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%s:rate=%d:duration=%.3f", p.size, p.rate, p.seconds)}
	if p.noise {
		args = append(args, "-vf", fmt.Sprintf("noise=alls=30:allf=t+u:all_seed=%d", p.seed))
	}
	if p.title != "" {
		args = append(args, "-metadata", "title="+p.title)
	}
	return append(args, "-c:v", "mpeg4", "-qmin", "1",
		"-b:v", br, "-maxrate", br, "-bufsize", strconv.FormatInt(max(p.bitrate/2, 40_000), 10),
		"-f", "mp4", "-movflags", "frag_keyframe+empty_moov", "pipe:1")
}

// writeMP4 has ffmpeg encode a test pattern into w, then pads the file to
// size with a top-level "free" box, which MP4 readers skip, so the clip has
// the requested size and still plays. A video that came out larger than
// size (only for clips of a few kilobytes) is left as it is.
func writeMP4(ctx context.Context, w *hashingWriter, ffmpeg string, spec ClipSpec, seed [32]byte) error {
	size := spec.Size
	plan := planMP4(size, spec.Length)
	plan.seed = binary.BigEndian.Uint32(seed[:4]) & math.MaxInt32 // ffmpeg takes a non-negative int
	plan.title = spec.Camera + " " + spec.ID
	cmd := exec.CommandContext(ctx, ffmpeg, plan.args()...)
	cmd.Stdout = w
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("ffmpeg: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return padFree(ctx, w, size-w.n)
}

// padFree writes a "free" box of exactly n bytes, or nothing when n is too
// small to hold a box header. Boxes over 4 GiB use the 64-bit size form.
func padFree(ctx context.Context, w io.Writer, n int64) error {
	var hdr []byte
	switch {
	case n < 8:
		return nil
	case n <= math.MaxUint32:
		hdr = binary.BigEndian.AppendUint32(nil, uint32(n))
		hdr = append(hdr, "free"...)
	default:
		hdr = binary.BigEndian.AppendUint32(nil, 1) // size 1: a 64-bit size follows the type
		hdr = append(hdr, "free"...)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	zeros := make([]byte, min(n, genBufSize))
	for left := n - int64(len(hdr)); left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := w.Write(zeros[:min(left, int64(len(zeros)))])
		if err != nil {
			return err
		}
		left -= int64(k)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it: ffmpeg can print a
// warning per frame, and only the end of its complaint is worth reporting.
type tailBuffer struct {
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.buf.String() }
