package firmwaresim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	expslog "golang.org/x/exp/slog"

	"github.com/vigil-gw/vigil/devices"
)

const testToken = "cam-token-1234"

// tusServer is a real tusd v2 handler (filestore in a temp dir) at
// UploadPath, behind the gateway's rules as docs/evidence.md states them:
// a bearer token, the clip's metadata, 409 for a clip it already holds and
// 460 with an explanation when the received bytes do not match the
// declared sha256.
type tusServer struct {
	t     *testing.T
	srv   *httptest.Server
	dir   string
	token string

	patchBytes  atomic.Int64 // PATCH body bytes the handler read
	patches     atomic.Int64
	patchesDone atomic.Int64
	heads       atomic.Int64
	// clientPatches, when set, counts the PATCH requests the client has
	// started. A HEAD then waits until the server has finished handling as
	// many, so a cut request's stale handling cannot overlap the resume.
	// Without it the tests would be at the mercy of the scheduler, and
	// tusd v2.10.1 has a data race (httpContext.body, between newContext's
	// goroutine and writeChunk) when a HEAD's lock-release request
	// interrupts a PATCH that has not started writing yet.
	clientPatches func() int64

	mu        sync.Mutex
	metadata  []map[string]string // each creation's Upload-Metadata, decoded by the test
	held      map[string]bool     // camera/clip finished and verified
	paths     map[string]string   // camera/clip → stored file
	failPatch map[int64]failure   // PATCH number (1-based) → answer instead of tusd's
	mismatch  int                 // status for a digest mismatch (460 if zero)
}

func startTusServer(t *testing.T) *tusServer {
	t.Helper()
	ts := &tusServer{t: t, dir: t.TempDir(), token: testToken,
		held: map[string]bool{}, paths: map[string]string{}, failPatch: map[int64]failure{}}
	composer := tusd.NewStoreComposer()
	filestore.New(ts.dir).UseIn(composer)
	memorylocker.New().UseIn(composer)
	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:             composer,
		BasePath:                  UploadPath,
		DisableDownload:           true,
		Logger:                    expslog.New(expslog.NewTextHandler(io.Discard, nil)), // tusd v2.10 logs through x/exp/slog
		PreUploadCreateCallback:   ts.onCreate,
		PreFinishResponseCallback: ts.onFinish,
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(UploadPath, http.StripPrefix(UploadPath, h))
	ts.srv = httptest.NewServer(ts.wrap(mux))
	t.Cleanup(ts.srv.Close)
	return ts
}

// url is the gateway base URL a camera is configured with.
func (ts *tusServer) url() string { return ts.srv.URL }

// wrap checks the bearer token and counts what reaches the tus handler.
func (ts *tusServer) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+ts.token {
			http.Error(w, "camera token not recognised", http.StatusUnauthorized)
			return
		}
		switch r.Method {
		case http.MethodPatch:
			defer ts.patchesDone.Add(1)
			n := ts.patches.Add(1)
			ts.mu.Lock()
			fail := ts.failPatch[n]
			ts.mu.Unlock()
			if fail.status != 0 {
				http.Error(w, fail.body, fail.status)
				return
			}
			r.Body = &serverCounter{r: r.Body, n: &ts.patchBytes}
			if fail.dropAnswer {
				// Let tusd store the bytes and run its verdict, then lose
				// the answer with the connection.
				next.ServeHTTP(httptest.NewRecorder(), r)
				conn, _, err := http.NewResponseController(w).Hijack()
				if assert.NoError(ts.t, err) {
					conn.Close()
				}
				return
			}
		case http.MethodHead:
			ts.heads.Add(1)
			if ts.clientPatches != nil {
				deadline := time.Now().Add(waitFor)
				for ts.patchesDone.Load() < ts.clientPatches() && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// failure is an answer the wrapper gives instead of tusd's.
type failure struct {
	status     int
	body       string
	dropAnswer bool // tusd handles the request, but the connection closes before its answer
}

// patchCounter counts the PATCH requests a client starts.
type patchCounter struct {
	rt http.RoundTripper
	n  atomic.Int64
}

func (p *patchCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch {
		p.n.Add(1)
	}
	return p.rt.RoundTrip(r)
}

// client is an HTTP client whose PATCHes the server's HEAD waits for.
func (ts *tusServer) client() *http.Client {
	pc := &patchCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	ts.clientPatches = pc.n.Load
	return &http.Client{Transport: pc}
}

type serverCounter struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (s *serverCounter) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n.Add(int64(n))
	return n, err
}

func (s *serverCounter) Close() error { return s.r.Close() }

// metadataKeys are the keys a camera's upload declares.
var metadataKeys = []string{"camera", "clip", "sha256", "start", "end", "filename", "type"}

// onCreate decodes the raw Upload-Metadata header itself (strict base64,
// known keys only) and refuses a clip the server already holds with 409.
func (ts *tusServer) onCreate(hook tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
	raw := hook.HTTPRequest.Header.Get("Upload-Metadata")
	meta := map[string]string{}
	for pair := range strings.SplitSeq(raw, ",") {
		k, v, ok := strings.Cut(pair, " ")
		b, err := base64.StdEncoding.Strict().DecodeString(v)
		if !ok || err != nil {
			return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_METADATA", fmt.Sprintf("pair %q is not key base64", pair), http.StatusBadRequest)
		}
		meta[k] = string(b)
	}
	for k := range meta {
		if !assert.Contains(ts.t, metadataKeys, k, "unknown metadata key") {
			return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_METADATA", "unknown key "+k, http.StatusBadRequest)
		}
	}
	assert.Equal(ts.t, meta, map[string]string(hook.Upload.MetaData), "tusd decodes the same metadata")
	key := meta["camera"] + "/" + meta["clip"]
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.metadata = append(ts.metadata, meta)
	if ts.held[key] {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_CLIP_HELD", "clip "+key+" already received", http.StatusConflict)
	}
	return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, nil
}

// onFinish checks the received bytes against the declared digest, as the
// gateway's ingest does.
func (ts *tusServer) onFinish(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
	info := hook.Upload
	path := info.Storage["Path"]
	f, err := os.Open(path)
	if err != nil {
		return tusd.HTTPResponse{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return tusd.HTTPResponse{}, err
	}
	got := hex.EncodeToString(h.Sum(nil))
	key := info.MetaData["camera"] + "/" + info.MetaData["clip"]
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if got != info.MetaData["sha256"] {
		status := ts.mismatch
		if status == 0 {
			status = 460
		}
		return tusd.HTTPResponse{}, tusd.NewError("ERR_DIGEST_MISMATCH",
			fmt.Sprintf("sha256 mismatch: declared %s, received %s", info.MetaData["sha256"], got), status)
	}
	ts.held[key] = true
	ts.paths[key] = path
	return tusd.HTTPResponse{}, nil
}

// stored returns the bytes the server holds for camera/clip.
func (ts *tusServer) stored(camera, clip string) []byte {
	ts.mu.Lock()
	path := ts.paths[camera+"/"+clip]
	ts.mu.Unlock()
	require.NotEmpty(ts.t, path, "no verified upload of %s/%s", camera, clip)
	b, err := os.ReadFile(path)
	require.NoError(ts.t, err)
	return b
}

func (ts *tusServer) creations() []map[string]string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]map[string]string(nil), ts.metadata...)
}

// testClip writes a random clip of size bytes and returns the Upload for it.
func testClip(t *testing.T, id string, size int64) Upload {
	t.Helper()
	f, err := GenerateClip(t.Context(), ClipSpec{Dir: t.TempDir(), Camera: "cam-1", ID: id, Size: size, Format: FormatRandom})
	require.NoError(t, err)
	start := time.Date(2026, 11, 21, 10, 15, 30, 0, time.UTC)
	return Upload{
		Path: f.Path, Camera: "cam-1", Filename: filepath.Base(f.Path), Type: f.Type,
		Clip: devices.Clip{ID: id, SHA256: f.SHA256, Size: f.Size, Start: start, End: start.Add(30 * time.Second)},
	}
}

func newTestTusClient(t *testing.T, ts *tusServer, cfg TusConfig) *TusClient {
	t.Helper()
	cfg.Endpoint = ts.url()
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = ts.client()
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	}
	c, err := NewTusClient(cfg)
	require.NoError(t, err)
	return c
}

func TestTusUploadAccepted(t *testing.T) {
	ts := startTusServer(t)
	c := newTestTusClient(t, ts, TusConfig{ChunkSize: 64 << 10})
	u := testClip(t, "cam-1-20261121T101530-1", 300_000)

	res, err := c.Upload(t.Context(), u)
	require.NoError(t, err)
	assert.Equal(t, OutcomeAccepted, res.Outcome)
	assert.Equal(t, http.StatusNoContent, res.Status)
	assert.Equal(t, int64(300_000), res.Sent)
	assert.Zero(t, res.Resumes)
	assert.True(t, strings.HasPrefix(res.URL, ts.url()+UploadPath), res.URL)
	assert.Equal(t, int64(5), ts.patches.Load(), "300000 bytes in 64 KiB chunks, one PATCH each")

	want, err := os.ReadFile(u.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, ts.stored("cam-1", u.Clip.ID)), "stored bytes equal the clip")

	metas := ts.creations()
	require.Len(t, metas, 1)
	assert.Equal(t, map[string]string{
		"camera":   "cam-1",
		"clip":     "cam-1-20261121T101530-1",
		"sha256":   u.Clip.SHA256,
		"start":    "2026-11-21T10:15:30Z",
		"end":      "2026-11-21T10:16:00Z",
		"filename": "cam-1-20261121T101530-1.bin",
		"type":     "application/octet-stream",
	}, metas[0])
}

func TestTusCutHalfwayResumesFromServerOffset(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		chunk int64
	}{
		{"cut inside the second of four chunks", 1_000_000, 256 << 10},
		{"cut inside a single chunk", 1_000_000, 8 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startTusServer(t)
			c := newTestTusClient(t, ts, TusConfig{ChunkSize: tt.chunk})
			u := testClip(t, "clip-cut", tt.size)
			u.CutHalfway = true

			res, err := c.Upload(t.Context(), u)
			require.NoError(t, err)
			assert.Equal(t, OutcomeAccepted, res.Outcome)
			assert.Equal(t, tt.size/2, res.CutAt)
			assert.Positive(t, res.ResumedFrom, "the server kept what it received before the cut")
			assert.LessOrEqual(t, res.ResumedFrom, res.CutAt)
			assert.Equal(t, 1, res.Resumes)
			assert.GreaterOrEqual(t, ts.heads.Load(), int64(1), "the offset came from a HEAD")
			// Every byte reached the server exactly once: after the cut the
			// upload went on from the server's offset, not from zero.
			assert.Equal(t, tt.size, ts.patchBytes.Load())
			assert.Equal(t, tt.size-res.ResumedFrom+res.CutAt, res.Sent, "sent = up to the cut + from the resume point")

			want, err := os.ReadFile(u.Path)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(want, ts.stored("cam-1", u.Clip.ID)))
		})
	}
}

func TestTusRetriesFailedPatchFromServerOffset(t *testing.T) {
	ts := startTusServer(t)
	ts.failPatch[2] = failure{status: http.StatusServiceUnavailable, body: "injected failure"}
	ts.failPatch[3] = failure{status: http.StatusBadGateway, body: "injected failure"}
	c := newTestTusClient(t, ts, TusConfig{ChunkSize: 100_000})
	u := testClip(t, "clip-retry", 250_000)

	res, err := c.Upload(t.Context(), u)
	require.NoError(t, err)
	assert.Equal(t, OutcomeAccepted, res.Outcome)
	assert.Equal(t, 2, res.Resumes)
	assert.Equal(t, int64(250_000), ts.patchBytes.Load())
	want, err := os.ReadFile(u.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, ts.stored("cam-1", u.Clip.ID)))
}

// TestTusRetriesInterruptedFinalPatch: tusd answers 400 ERR_UPLOAD_INTERRUPTED
// when another request for the upload (such as a cut one handled late) takes
// its lock. On the final PATCH that must not read as a verdict on the clip.
func TestTusRetriesInterruptedFinalPatch(t *testing.T) {
	ts := startTusServer(t)
	ts.failPatch[1] = failure{status: http.StatusBadRequest, body: "ERR_UPLOAD_INTERRUPTED: upload has been interrupted by another request for this upload resource"}
	c := newTestTusClient(t, ts, TusConfig{})
	u := testClip(t, "clip-interrupted", 5000)

	res, err := c.Upload(t.Context(), u)
	require.NoError(t, err)
	assert.Equal(t, OutcomeAccepted, res.Outcome)
	assert.Equal(t, 1, res.Resumes)
	assert.Equal(t, int64(2), ts.patches.Load())
}

// TestTusLostVerdict: the connection drops after the server has every byte
// but before its answer to the last PATCH arrives. HEAD shows the upload
// complete, and the client says it cannot know the verdict rather than
// claiming an acceptance it never saw.
func TestTusLostVerdict(t *testing.T) {
	ts := startTusServer(t)
	ts.failPatch[2] = failure{dropAnswer: true}
	c := newTestTusClient(t, ts, TusConfig{ChunkSize: 600})
	u := testClip(t, "clip-lost", 1000)

	res, err := c.Upload(t.Context(), u)
	require.NoError(t, err)
	assert.Equal(t, OutcomeUnconfirmed, res.Outcome)
	assert.Equal(t, 1, res.Resumes)
	assert.Equal(t, int64(1000), ts.patchBytes.Load())
	assert.Equal(t, int64(2), ts.patches.Load(), "nothing sent after the server had it all")
}

func TestTusGivesUpAfterMaxRetries(t *testing.T) {
	ts := startTusServer(t)
	for i := int64(1); i <= 10; i++ {
		ts.failPatch[i] = failure{status: http.StatusInternalServerError, body: "injected failure"}
	}
	c := newTestTusClient(t, ts, TusConfig{MaxRetries: 2})
	res, err := c.Upload(t.Context(), testClip(t, "clip-down", 1000))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "upload clip-down: tus patch: giving up after 3 failed attempts")
	assert.Contains(t, err.Error(), "500 Internal Server Error: injected failure")
	assert.Empty(t, res.Outcome)
}

func TestTusAlreadyReceived(t *testing.T) {
	ts := startTusServer(t)
	ts.held["cam-1/clip-held"] = true
	c := newTestTusClient(t, ts, TusConfig{})

	res, err := c.Upload(t.Context(), testClip(t, "clip-held", 1000))
	require.NoError(t, err, "a 409 is an answer, not a failure")
	assert.Equal(t, OutcomeAlreadyReceived, res.Outcome)
	assert.Equal(t, http.StatusConflict, res.Status)
	assert.Equal(t, "ERR_CLIP_HELD: clip cam-1/clip-held already received", res.Body)
	assert.Zero(t, ts.patches.Load(), "nothing is sent again")
}

func TestTusRejectedDigest(t *testing.T) {
	for _, status := range []int{460, http.StatusUnprocessableEntity} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ts := startTusServer(t)
			ts.mismatch = status
			c := newTestTusClient(t, ts, TusConfig{ChunkSize: 400})
			u := testClip(t, "clip-bad", 1000)
			real := u.Clip.SHA256
			u.Clip.SHA256 = wrongDigest(real)

			res, err := c.Upload(t.Context(), u)
			require.NoError(t, err, "a rejection is an answer, not a failure")
			assert.Equal(t, OutcomeRejected, res.Outcome)
			assert.Equal(t, status, res.Status)
			assert.Equal(t, "ERR_DIGEST_MISMATCH: sha256 mismatch: declared "+u.Clip.SHA256+", received "+real, res.Body)
			assert.Equal(t, int64(3), ts.patches.Load(), "rejected on the final PATCH")
		})
	}
}

func TestTusUnexpectedAnswersAreErrors(t *testing.T) {
	ts := startTusServer(t)
	c := newTestTusClient(t, ts, TusConfig{Token: "wrong-token"})
	_, err := c.Upload(t.Context(), testClip(t, "clip-auth", 100))
	var se *StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "create", se.Op)
	assert.Equal(t, http.StatusUnauthorized, se.Status)
	assert.Equal(t, "firmwaresim: upload clip-auth: tus create: 401 Unauthorized: camera token not recognised", err.Error())
}

func TestTusClientConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  TusConfig
		want string // error substring, or the endpoint
	}{
		{"base URL gets the upload path", TusConfig{Endpoint: "http://gw:8080", Token: "t"}, "http://gw:8080/api/evidence/uploads/"},
		{"full URL kept", TusConfig{Endpoint: "https://gw/custom/", Token: "t"}, "https://gw/custom/"},
		{"no token", TusConfig{Endpoint: "http://gw:8080"}, "gateway token is empty"},
		{"token with space", TusConfig{Endpoint: "http://gw:8080", Token: "a b"}, "white space"},
		{"bad scheme", TusConfig{Endpoint: "ftp://gw", Token: "t"}, "want http://host:port"},
		{"negative chunk", TusConfig{Endpoint: "http://gw", Token: "t", ChunkSize: -1}, "chunk size -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewTusClient(tt.cfg)
			if err != nil {
				assert.Contains(t, err.Error(), tt.want)
				return
			}
			assert.Equal(t, tt.want, c.Endpoint())
		})
	}
}

func TestTusUploadChecksFile(t *testing.T) {
	ts := startTusServer(t)
	c := newTestTusClient(t, ts, TusConfig{})
	u := testClip(t, "clip-size", 100)
	u.Clip.Size = 99
	_, err := c.Upload(t.Context(), u)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has 100 bytes but the clip declares 99")

	u.Path = filepath.Join(t.TempDir(), "missing")
	_, err = c.Upload(t.Context(), u)
	assert.True(t, errors.Is(err, os.ErrNotExist), "%v", err)
}

func TestBackoffIsCappedWithJitter(t *testing.T) {
	for n := 1; n < 100; n++ {
		d := backoff(100*time.Millisecond, 2*time.Second, n)
		want := min(100*time.Millisecond<<min(n-1, 31), 2*time.Second)
		assert.GreaterOrEqual(t, d, want/2, "attempt %d", n)
		assert.LessOrEqual(t, d, want, "attempt %d", n)
	}
}
