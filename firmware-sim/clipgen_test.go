package firmwaresim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fileDigest reads a file back and hashes it, independently of the generator.
func fileDigest(t *testing.T, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil)), n
}

func TestGenerateRandomClip(t *testing.T) {
	for _, size := range []int64{1, 1000, genBufSize, genBufSize + 7, 3*genBufSize + 12345} {
		t.Run(strconv.FormatInt(size, 10), func(t *testing.T) {
			dir := t.TempDir()
			f, err := GenerateClip(t.Context(), ClipSpec{Dir: dir, Camera: "cam-1", ID: "cam-1-20261121T101530-1", Size: size, Format: FormatRandom})
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(dir, "cam-1-20261121T101530-1.bin"), f.Path)
			assert.Equal(t, size, f.Size)
			assert.Equal(t, FormatRandom, f.Format)
			assert.Equal(t, "application/octet-stream", f.Type)
			digest, n := fileDigest(t, f.Path)
			assert.Equal(t, size, n, "file size")
			assert.Equal(t, digest, f.SHA256, "digest computed while writing matches the file")

			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, entries, 1, "no temporary file left behind")
		})
	}
}

func TestGenerateRandomClipIsDeterministic(t *testing.T) {
	gen := func(camera, id string) ClipFile {
		f, err := GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), Camera: camera, ID: id, Size: 100_000, Format: FormatRandom})
		require.NoError(t, err)
		return f
	}
	a, b := gen("cam-1", "clip-1"), gen("cam-1", "clip-1")
	assert.Equal(t, a.SHA256, b.SHA256, "same camera and clip, same bytes")
	ab, err := os.ReadFile(a.Path)
	require.NoError(t, err)
	bb, err := os.ReadFile(b.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(ab, bb))

	assert.NotEqual(t, a.SHA256, gen("cam-1", "clip-2").SHA256, "another clip differs")
	assert.NotEqual(t, a.SHA256, gen("cam-2", "clip-1").SHA256, "another camera's clip differs")

	// A prefix does not depend on the size: the stream is the same.
	short, err := GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), Camera: "cam-1", ID: "clip-1", Size: 1000, Format: FormatRandom})
	require.NoError(t, err)
	sb, err := os.ReadFile(short.Path)
	require.NoError(t, err)
	assert.Equal(t, ab[:1000], sb)
}

// TestGenerateRandomClipStreams checks that a clip costs one buffer of
// memory, not its size: a 64 MiB clip allocates a small fraction of that.
func TestGenerateRandomClipStreams(t *testing.T) {
	const size = 64 << 20
	dir := t.TempDir()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := GenerateClip(t.Context(), ClipSpec{Dir: dir, Camera: "cam-1", ID: "big", Size: size, Format: FormatRandom})
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	assert.Equal(t, int64(size), f.Size)
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(4*genBufSize), "allocated %d bytes for a %d byte clip", allocated, size)
}

func TestGenerateClipCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := GenerateClip(ctx, ClipSpec{Dir: dir, Camera: "cam-1", ID: "gone", Size: 10 << 20, Format: FormatRandom})
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "firmwaresim: generate clip gone")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "neither the clip nor its temporary file remains")
}

func TestGenerateClipErrors(t *testing.T) {
	_, err := GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), ID: "x", Size: 0, Format: FormatRandom})
	assert.ErrorContains(t, err, "size 0 is not positive")
	_, err = GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), ID: "x", Size: 1, Format: "avi"})
	assert.ErrorContains(t, err, `clip format "avi" is not auto, random or mp4`)
	_, err = GenerateClip(t.Context(), ClipSpec{Dir: filepath.Join(t.TempDir(), "missing"), ID: "x", Size: 1, Format: FormatRandom})
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), ID: "x", Size: 1, Format: FormatMP4, FFmpeg: "no-such-ffmpeg-here"})
	assert.ErrorContains(t, err, `ffmpeg "no-such-ffmpeg-here"`)
}

func TestPlanMP4(t *testing.T) {
	tests := []struct {
		name    string
		size    int64
		length  time.Duration
		want    string // picture size
		noise   bool
		seconds float64
	}{
		{"body-cam bitrate", 32 << 20, 30 * time.Second, "640x360", true, 30},
		{"huge clip is capped in bitrate", 4 << 30, 30 * time.Second, "640x360", true, 30},
		{"long clip is capped in duration", 100 << 20, time.Hour, "640x360", true, 60},
		{"low bitrate uses the plain pattern", 2 << 20, 30 * time.Second, "320x240", false, 30},
		{"small clip gets a shorter video", 200 << 10, 30 * time.Second, "320x240", false, 200 << 10 * 8 * mp4Headroom / mp4FloorBitrate},
		{"tiny clip", 5000, 30 * time.Second, "160x120", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planMP4(tt.size, tt.length)
			assert.Equal(t, tt.want, p.size)
			assert.Equal(t, tt.noise, p.noise)
			assert.InDelta(t, tt.seconds, p.seconds, 0.001)
			assert.LessOrEqual(t, p.bitrate, int64(mp4MaxBitrate))
			if tt.size > 1<<20 {
				assert.LessOrEqual(t, float64(p.bitrate)*p.seconds/8, float64(tt.size), "aims under the size")
			}
		})
	}
}

// limitedCapture keeps the first bytes written and counts the rest.
type limitedCapture struct {
	head []byte
	n    int64
}

func (c *limitedCapture) Write(p []byte) (int, error) {
	if room := 64 - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(room, len(p))]...)
	}
	c.n += int64(len(p))
	return len(p), nil
}

func TestPadFree(t *testing.T) {
	tests := []struct {
		n    int64
		head []byte
	}{
		{0, nil},
		{7, nil},
		{8, []byte{0, 0, 0, 8, 'f', 'r', 'e', 'e'}},
		{3 << 20, []byte{0, 0x30, 0, 0, 'f', 'r', 'e', 'e', 0}},
		{1<<32 + 16, binary.BigEndian.AppendUint64([]byte{0, 0, 0, 1, 'f', 'r', 'e', 'e'}, 1<<32+16)},
	}
	for _, tt := range tests {
		t.Run(strconv.FormatInt(tt.n, 10), func(t *testing.T) {
			var c limitedCapture
			require.NoError(t, padFree(t.Context(), &c, tt.n))
			if tt.head == nil {
				assert.Zero(t, c.n)
				return
			}
			assert.Equal(t, tt.n, c.n, "the box fills exactly the gap")
			assert.Equal(t, tt.head, c.head[:len(tt.head)])
		})
	}
}

// TestGenerateMP4Clip runs the real ffmpeg when it is installed: the clip is
// an MP4 of exactly the requested size (padded with a free box) whose digest
// matches, and ffprobe, if present, reads it as video.
func TestGenerateMP4Clip(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg is not installed")
	}
	for _, size := range []int64{400 << 10, 3 << 20} {
		t.Run(strconv.FormatInt(size, 10), func(t *testing.T) {
			dir := t.TempDir()
			f, err := GenerateClip(t.Context(), ClipSpec{Dir: dir, Camera: "cam-1", ID: "cam-1-mp4", Size: size, Length: 2 * time.Second, Format: FormatAuto})
			require.NoError(t, err)
			assert.Equal(t, FormatMP4, f.Format)
			assert.Equal(t, "video/mp4", f.Type)
			assert.Equal(t, filepath.Join(dir, "cam-1-mp4.mp4"), f.Path)
			assert.Equal(t, size, f.Size)
			digest, n := fileDigest(t, f.Path)
			assert.Equal(t, size, n)
			assert.Equal(t, digest, f.SHA256)

			head := make([]byte, 8)
			fh, err := os.Open(f.Path)
			require.NoError(t, err)
			_, err = io.ReadFull(fh, head)
			fh.Close()
			require.NoError(t, err)
			assert.Equal(t, "ftyp", string(head[4:8]), "starts with an MP4 file type box")

			// Reproducible from the clip id, and different for another clip.
			same, err := GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), Camera: "cam-1", ID: "cam-1-mp4", Size: size, Length: 2 * time.Second, Format: FormatMP4})
			require.NoError(t, err)
			assert.Equal(t, f.SHA256, same.SHA256)
			other, err := GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), Camera: "cam-1", ID: "cam-1-mp4-2", Size: size, Length: 2 * time.Second, Format: FormatMP4})
			require.NoError(t, err)
			assert.NotEqual(t, f.SHA256, other.SHA256)

			if _, err := exec.LookPath("ffprobe"); err == nil {
				out, err := exec.CommandContext(t.Context(), "ffprobe", "-v", "error", "-select_streams", "v:0",
					"-show_entries", "stream=codec_name,width", "-of", "csv=p=0", f.Path).CombinedOutput()
				require.NoError(t, err, "%s", out)
				assert.Equal(t, "mpeg4,", strings.TrimSpace(string(out))[:6], "%s", out)
			}
		})
	}
}
