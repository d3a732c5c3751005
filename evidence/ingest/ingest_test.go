package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

var goodMeta = map[string]string{"camera": "cam-1", "clip": "c1.mp4", "sha256": strings.Repeat("ab", 32),
	"start": "2026-11-21T10:00:00Z", "end": "2026-11-21T10:05:00Z"}

func with(k, v string) map[string]string {
	m := map[string]string{}
	for a, b := range goodMeta {
		m[a] = b
	}
	if v == "\x00delete" {
		delete(m, k)
	} else {
		m[k] = v
	}
	return m
}

func TestParseUploadMetadata(t *testing.T) {
	cases := []struct {
		name  string
		md    map[string]string
		size  int64
		field string
	}{
		{"good", goodMeta, 100, ""},
		{"no camera", with("camera", "\x00delete"), 100, "camera"},
		{"path trick clip", with("clip", "../../etc/passwd"), 100, "clip"},
		{"slash clip", with("clip", "a/b"), 100, "clip"},
		{"dot dot inside", with("clip", "a..b"), 100, "clip"},
		{"hidden clip", with("clip", ".profile"), 100, "clip"},
		{"upper digest", with("sha256", strings.Repeat("AB", 32)), 100, "sha256"},
		{"short digest", with("sha256", "abc"), 100, "sha256"},
		{"zero size", goodMeta, 0, "size"},
		{"bad start", with("start", "yesterday"), 100, "start"},
		{"end before start", with("end", "2026-11-21T09:00:00Z"), 100, "end"},
		{"two day clip", with("end", "2026-11-23T10:00:00Z"), 100, "end"},
		{"unknown key", with("colour", "red"), 100, "colour"},
		{"filename with slash", with("filename", "x/y.mp4"), 100, "filename"},
		{"long value", with("filename", strings.Repeat("x", 300)), 100, "filename"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseUploadMetadata(tc.md, tc.size)
			if tc.field == "" {
				require.NoError(t, err)
				assert.Equal(t, "cam-1", m.Camera)
				assert.Equal(t, tc.size, m.Size)
				return
			}
			var me *MetaError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, tc.field, me.Field, err.Error())
		})
	}
}

func TestParseSidecar(t *testing.T) {
	good := `{"camera":"cam-1","clip":"c1","sha256":"` + strings.Repeat("0", 64) + `","size":5,"start":"2026-11-21T10:00:00Z","end":"2026-11-21T10:01:00Z"}`
	_, err := ParseSidecar([]byte(good))
	require.NoError(t, err)
	for name, bad := range map[string]string{
		"unknown field": strings.Replace(good, `"size"`, `"sise"`, 1),
		"wrong type":    strings.Replace(good, `"size":5`, `"size":"5"`, 1),
		"trailing":      good + "{}",
		"not json":      "clip",
		"path trick":    strings.Replace(good, `"c1"`, `"../c1"`, 1),
	} {
		_, err := ParseSidecar([]byte(bad))
		var me *MetaError
		assert.ErrorAs(t, err, &me, name)
	}
}

func FuzzParseUploadMetadata(f *testing.F) {
	f.Add("cam-1", "c1.mp4", strings.Repeat("ab", 32), "2026-11-21T10:00:00Z", "2026-11-21T10:05:00Z", "x.mp4", int64(10))
	f.Add("", "../x", "zz", "now", "", "a/b", int64(-1))
	f.Fuzz(func(t *testing.T, cam, clip, sum, start, end, name string, size int64) {
		m, err := ParseUploadMetadata(map[string]string{"camera": cam, "clip": clip, "sha256": sum, "start": start, "end": end, "filename": name}, size)
		if err != nil {
			return
		}
		// Whatever passes is safe to use as a path segment.
		if strings.ContainsAny(m.Clip, "/\\") || strings.Contains(m.Clip, "..") || m.Clip == "" || m.Clip[0] == '.' {
			t.Fatalf("unsafe clip id %q accepted", m.Clip)
		}
		if filepath.Base(m.Clip) != m.Clip {
			t.Fatalf("clip id %q is not a single path segment", m.Clip)
		}
	})
}

func FuzzParseSidecar(f *testing.F) {
	f.Add([]byte(`{"camera":"cam-1","clip":"c1","sha256":"` + strings.Repeat("0", 64) + `","size":5,"start":"2026-11-21T10:00:00Z","end":"2026-11-21T10:01:00Z"}`))
	f.Add([]byte(`{"clip":"../../x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSidecar(b)
		if err == nil && (filepath.Base(m.Clip) != m.Clip || strings.Contains(m.Clip, "..")) {
			t.Fatalf("unsafe clip id %q accepted", m.Clip)
		}
	})
}

// fakeSink records what it is given; it is the consumer-side interface.
type fakeSink struct {
	mu       sync.Mutex
	dir      string
	admitErr error
	accepted []Spooled
	fail     int // fail this many Accepts with a plain error first
}

func (s *fakeSink) Admit(_ context.Context, m Meta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accepted {
		if a.Camera == m.Camera && a.Clip == m.Clip {
			return ErrDuplicate
		}
	}
	return s.admitErr
}

func (s *fakeSink) Accept(_ context.Context, sp Spooled) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return fmt.Errorf("database is locked")
	}
	dst := filepath.Join(s.dir, sp.Camera+"_"+sp.Clip)
	if err := os.Rename(sp.Path, dst); err != nil {
		return err
	}
	if sp.Digest != sp.SHA256 {
		return ErrMismatch
	}
	sp.Path = dst
	s.accepted = append(s.accepted, sp)
	return nil
}

func (s *fakeSink) got() []Spooled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Spooled(nil), s.accepted...)
}

const base = "/api/evidence/uploads/"

func newTus(t *testing.T, sink *fakeSink) (*Tus, *httptest.Server) {
	t.Helper()
	sink.dir = t.TempDir()
	tus, err := NewTus(TusConfig{Dir: t.TempDir(), BasePath: base, MaxSize: 1 << 20, Sink: sink,
		Auth: func(r *http.Request) (string, bool) {
			switch r.Header.Get("Authorization") {
			case "Bearer tok-1":
				return "cam-1", true
			case "Bearer tok-2":
				return "cam-2", true
			}
			return "", false
		}})
	require.NoError(t, err)
	srv := httptest.NewServer(tus)
	t.Cleanup(srv.Close)
	return tus, srv
}

func encodeMeta(md map[string]string) string {
	var parts []string
	for k, v := range md {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func do(t *testing.T, method, url, token string, hdr map[string]string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Tus-Resumable", "1.0.0")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func create(t *testing.T, srv *httptest.Server, token string, md map[string]string, size int) *http.Response {
	return do(t, http.MethodPost, srv.URL+base, token, map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": encodeMeta(md)}, nil)
}

func patch(t *testing.T, loc, token string, off int, b []byte) *http.Response {
	return do(t, http.MethodPatch, loc, token, map[string]string{"Upload-Offset": strconv.Itoa(off), "Content-Type": "application/offset+octet-stream"}, b)
}

func body(r *http.Response) string {
	b := new(bytes.Buffer)
	b.ReadFrom(r.Body)
	return b.String()
}

func TestTusUploadInChunksHashesWhileStreaming(t *testing.T) {
	sink := &fakeSink{}
	_, srv := newTus(t, sink)
	data := bytes.Repeat([]byte("footage!"), 20000) // 160 kB
	resp := create(t, srv, "tok-1", with("sha256", digest(data)), len(data))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body(resp))
	loc := resp.Header.Get("Location")
	for off := 0; off < len(data); off += 50000 {
		end := min(off+50000, len(data))
		r := patch(t, loc, "tok-1", off, data[off:end])
		require.Equal(t, http.StatusNoContent, r.StatusCode, body(r))
	}
	got := sink.got()
	require.Len(t, got, 1)
	assert.Equal(t, digest(data), got[0].Digest)
	assert.Equal(t, "tus", got[0].Ingest)
	stored, err := os.ReadFile(got[0].Path)
	require.NoError(t, err)
	assert.Equal(t, data, stored)

	// The same clip again is refused at creation: the camera learns it is done.
	again := create(t, srv, "tok-1", with("sha256", digest(data)), len(data))
	assert.Equal(t, http.StatusConflict, again.StatusCode)
}

func TestTusResumeAfterRestartContinuesTheHash(t *testing.T) {
	sink := &fakeSink{}
	tus, srv := newTus(t, sink)
	data := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 30000)
	resp := create(t, srv, "tok-1", with("sha256", digest(data)), len(data))
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	loc := resp.Header.Get("Location")
	require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 0, data[:100000]).StatusCode)

	// A new endpoint over the same spool (the gateway restarted) resumes.
	tus2, err := NewTus(tus.cfg)
	require.NoError(t, err)
	srv2 := httptest.NewServer(tus2)
	defer srv2.Close()
	loc2 := srv2.URL + strings.TrimPrefix(loc, srv.URL)
	head := do(t, http.MethodHead, loc2, "tok-1", nil, nil)
	require.Equal(t, "100000", head.Header.Get("Upload-Offset"))
	// The saved hash state covers exactly the bytes on disk.
	id := filepath.Base(loc)
	require.NotNil(t, tus2.store.loadState(id, 100000))
	require.Equal(t, http.StatusNoContent, patch(t, loc2, "tok-1", 100000, data[100000:]).StatusCode)
	require.Len(t, sink.got(), 1)
	assert.Equal(t, digest(data), sink.got()[0].Digest)
}

// TestTusHashesPartsForAStreamer: a Streamer with a part size is given the
// SHA-256 of each part as its bytes arrive, across chunk boundaries and a
// restart, the clip's short last part once complete; after a lost hash
// state it is given none from there on.
func TestTusHashesPartsForAStreamer(t *testing.T) {
	const ps = 30000
	data := make([]byte, 160000) // five parts of 30000 and one of 10000
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	want := func(n int) []string {
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, digest(data[i*ps:min((i+1)*ps, len(data))]))
		}
		return out
	}
	start := func(t *testing.T, sink *streamSink, dir string) (*Tus, *httptest.Server) {
		tus, err := NewTus(TusConfig{Dir: dir, BasePath: base, MaxSize: 1 << 20, Sink: sink,
			Auth: func(r *http.Request) (string, bool) { return "cam-1", r.Header.Get("Authorization") == "Bearer tok-1" }})
		require.NoError(t, err)
		srv := httptest.NewServer(tus)
		t.Cleanup(srv.Close)
		return tus, srv
	}
	// begin starts an endpoint over dir for a new streaming sink, creates
	// the upload and sends its first upto bytes.
	begin := func(t *testing.T, dir string, upto int) (sink *streamSink, tus *Tus, srv *httptest.Server, loc string) {
		sink = &streamSink{partSize: ps}
		sink.dir = t.TempDir()
		tus, srv = start(t, sink, dir)
		loc = create(t, srv, "tok-1", with("sha256", digest(data)), len(data)).Header.Get("Location")
		require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 0, data[:upto]).StatusCode)
		return sink, tus, srv, loc
	}

	t.Run("across chunks and a restart", func(t *testing.T) {
		dir := t.TempDir()
		sink, _, srv, loc := begin(t, dir, 50000)
		require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 50000, data[50000:100000]).StatusCode)

		// The gateway restarts; the camera resumes.
		_, srv2 := start(t, sink, dir)
		loc2 := srv2.URL + strings.TrimPrefix(loc, srv.URL)
		require.Equal(t, http.StatusNoContent, patch(t, loc2, "tok-1", 100000, data[100000:150000]).StatusCode)
		require.Equal(t, http.StatusNoContent, patch(t, loc2, "tok-1", 150000, data[150000:]).StatusCode)

		require.Len(t, sink.parts, 4)
		assert.Equal(t, want(1), sink.parts[0], "50000 bytes: part 1")
		assert.Equal(t, want(3), sink.parts[1], "100000 bytes: parts 1-3")
		assert.Equal(t, want(5), sink.parts[2], "150000 bytes, after the restart: parts 1-5")
		assert.Equal(t, want(6), sink.parts[3], "complete: the short last part too")
		require.Len(t, sink.got(), 1)
		assert.Equal(t, digest(data), sink.got()[0].Digest)
	})

	t.Run("a lost hash state gives no more parts", func(t *testing.T) {
		sink, tus, _, loc := begin(t, t.TempDir(), 70000)
		require.NoError(t, os.Remove(tus.store.statePath(filepath.Base(loc))))
		require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 70000, data[70000:]).StatusCode)
		require.Len(t, sink.parts, 2)
		assert.Equal(t, want(2), sink.parts[0])
		assert.Empty(t, sink.parts[1], "the sink hashes the parts itself")
		require.Len(t, sink.got(), 1)
		assert.Equal(t, digest(data), sink.got()[0].Digest, "the whole clip is re-read instead")
	})

	t.Run("a changed part size gives no more parts", func(t *testing.T) {
		dir := t.TempDir()
		sink, _, srv, loc := begin(t, dir, 70000)
		sink.partSize = 40000
		_, srv2 := start(t, sink, dir)
		loc2 := srv2.URL + strings.TrimPrefix(loc, srv.URL)
		require.Equal(t, http.StatusNoContent, patch(t, loc2, "tok-1", 70000, data[70000:]).StatusCode)
		require.Len(t, sink.parts, 2)
		assert.Empty(t, sink.parts[1])
		assert.Equal(t, digest(data), sink.got()[0].Digest, "the whole-clip hash carries on")
	})
}

func TestTusLostHashStateFallsBackToRereading(t *testing.T) {
	sink := &fakeSink{}
	tus, srv := newTus(t, sink)
	data := bytes.Repeat([]byte("x"), 9000)
	loc := create(t, srv, "tok-1", with("sha256", digest(data)), len(data)).Header.Get("Location")
	require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 0, data[:4000]).StatusCode)
	// A crash between the data and its hash state: the state is behind.
	require.NoError(t, os.Remove(tus.store.statePath(filepath.Base(loc))))
	require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 4000, data[4000:]).StatusCode)
	require.Len(t, sink.got(), 1)
	assert.Equal(t, digest(data), sink.got()[0].Digest)
}

func TestTusRefusals(t *testing.T) {
	sink := &fakeSink{}
	_, srv := newTus(t, sink)
	data := []byte("some bytes")

	r := create(t, srv, "", goodMeta, len(data))
	assert.Equal(t, http.StatusUnauthorized, r.StatusCode, "no token")
	r = create(t, srv, "wrong", goodMeta, len(data))
	assert.Equal(t, http.StatusUnauthorized, r.StatusCode, "bad token")
	r = create(t, srv, "tok-2", goodMeta, len(data))
	assert.Equal(t, http.StatusForbidden, r.StatusCode, "cam-2 uploading as cam-1")
	r = create(t, srv, "tok-1", with("clip", "../../../etc/passwd"), len(data))
	assert.Equal(t, http.StatusBadRequest, r.StatusCode)
	assert.Contains(t, body(r), "metadata clip")
	r = create(t, srv, "tok-1", goodMeta, 2<<20)
	assert.Equal(t, http.StatusRequestEntityTooLarge, r.StatusCode, "over MaxSize")
	r = do(t, http.MethodPost, srv.URL+base, "tok-1", map[string]string{"Upload-Defer-Length": "1", "Upload-Metadata": encodeMeta(goodMeta)}, nil)
	assert.GreaterOrEqual(t, r.StatusCode, 400, "deferred length")

	// Another camera cannot touch cam-1's upload, nor learn it exists.
	loc := create(t, srv, "tok-1", with("sha256", digest(data)), len(data)).Header.Get("Location")
	require.NotEmpty(t, loc)
	assert.Equal(t, http.StatusNotFound, do(t, http.MethodHead, loc, "tok-2", nil, nil).StatusCode)
	assert.Equal(t, http.StatusNotFound, patch(t, loc, "tok-2", 0, data).StatusCode)
	assert.Equal(t, http.StatusNotFound, do(t, http.MethodHead, srv.URL+base+"..%2f..%2fetc", "tok-1", nil, nil).StatusCode)
	// No downloads and no deletes through the upload endpoint.
	assert.NotEqual(t, http.StatusOK, do(t, http.MethodGet, loc, "tok-1", nil, nil).StatusCode)
	assert.NotEqual(t, http.StatusNoContent, do(t, http.MethodDelete, loc, "tok-1", nil, nil).StatusCode)

	sink.admitErr = ErrFull
	r = create(t, srv, "tok-1", with("clip", "c2"), len(data))
	assert.Equal(t, http.StatusInsufficientStorage, r.StatusCode)
	assert.Empty(t, sink.got())
}

func TestTusWrongDigestIsRefusedAtTheEnd(t *testing.T) {
	sink := &fakeSink{}
	_, srv := newTus(t, sink)
	data := []byte("the real bytes")
	loc := create(t, srv, "tok-1", with("sha256", digest([]byte("other bytes"))), len(data)).Header.Get("Location")
	r := patch(t, loc, "tok-1", 0, data)
	assert.Equal(t, StatusChecksumMismatch, r.StatusCode)
	assert.Contains(t, body(r), "does not match")
	assert.Empty(t, sink.got())
}

func TestTusRecoverFinishesWhatTheSinkMissed(t *testing.T) {
	sink := &fakeSink{fail: 1}
	tus, srv := newTus(t, sink)
	data := []byte("complete but not taken")
	loc := create(t, srv, "tok-1", with("sha256", digest(data)), len(data)).Header.Get("Location")
	r := patch(t, loc, "tok-1", 0, data)
	assert.Equal(t, http.StatusInternalServerError, r.StatusCode)
	assert.NotContains(t, body(r), "database", "internal errors are not shown to cameras")
	require.Empty(t, sink.got())
	tus.Recover(context.Background())
	require.Empty(t, sink.got(), "a just-completed upload may still be finishing: left alone")
	tus.cfg.Now = func() time.Time { return time.Now().Add(2 * orphanAge) }
	tus.Recover(context.Background())
	require.Len(t, sink.got(), 1)
	assert.Equal(t, digest(data), sink.got()[0].Digest)
	entries, _ := os.ReadDir(tus.cfg.Dir)
	assert.Empty(t, entries, "the spool keeps nothing of a finished upload")
}

func TestTusRecoverExpiresAbandonedUploads(t *testing.T) {
	sink := &fakeSink{}
	tus, srv := newTus(t, sink)
	loc := create(t, srv, "tok-1", with("sha256", digest([]byte("abcdef"))), 6).Header.Get("Location")
	require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 0, []byte("abc")).StatusCode)
	tus.Recover(context.Background())
	entries, _ := os.ReadDir(tus.cfg.Dir)
	assert.NotEmpty(t, entries, "a recent partial upload is kept")
	tus.cfg.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	tus.Recover(context.Background())
	entries, _ = os.ReadDir(tus.cfg.Dir)
	assert.Empty(t, entries)
}

func TestDock(t *testing.T) {
	sink := &fakeSink{dir: t.TempDir()}
	dir := t.TempDir()
	var rejected []string
	d, err := NewDock(DockConfig{Dir: dir, Spool: t.TempDir(), Sink: sink, Rejected: func(s string, _ error) { rejected = append(rejected, s) }})
	require.NoError(t, err)
	put := func(name string, data []byte, sum string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
		side := fmt.Sprintf(`{"camera":"cam-1","clip":%q,"sha256":%q,"size":%d,"start":"2026-11-21T10:00:00Z","end":"2026-11-21T10:01:00Z"}`, name, sum, len(data))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), []byte(side), 0o600))
	}
	good := []byte("dock footage")
	put("d1.mp4", good, digest(good))
	put("d2.mp4", []byte("tampered"), digest(good))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "junk.json"), []byte(`{"clip":"../x"}`), 0o600))
	d.Scan(context.Background())

	got := sink.got()
	require.Len(t, got, 1)
	assert.Equal(t, "d1.mp4", got[0].Clip)
	assert.Equal(t, "dock", got[0].Ingest)
	assert.Equal(t, []string{"junk.json"}, rejected)
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for i := range left {
		left[i] = filepath.Base(left[i])
	}
	assert.ElementsMatch(t, []string{"junk.json.rejected", "junk.json.reason"}, left, "ingested and quarantined clips leave the dock")
	d.Scan(context.Background())
	assert.Len(t, rejected, 1, "a rejected sidecar is reported once")
	_ = t0
}

// streamSink is a fakeSink that is also a Streamer: it records, in one
// log with Accept, what it was told and how much of the spool file was
// there when it was told.
type streamSink struct {
	fakeSink
	log       []string
	abandoned []string
	ids       map[string]bool
	partSize  int64
	parts     [][]string // what each Arriving was given
}

func (s *streamSink) PartSize() int64 { return s.partSize }

func (s *streamSink) Arriving(id string, m Meta, path string, durable int64, parts []string) {
	fi, err := os.Stat(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[id] = true
	onDisk := int64(-1)
	if err == nil {
		onDisk = fi.Size()
	}
	s.log = append(s.log, fmt.Sprintf("arriving %s %d (file %d)", m.Clip, durable, onDisk))
	s.parts = append(s.parts, parts)
}

func (s *streamSink) Abandoned(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandoned = append(s.abandoned, id)
}

func (s *streamSink) Accept(ctx context.Context, sp Spooled) error {
	s.mu.Lock()
	s.log = append(s.log, "accept "+sp.Clip)
	known := s.ids[sp.Upload]
	s.mu.Unlock()
	if !known {
		return fmt.Errorf("Accept for upload %q, which never arrived", sp.Upload)
	}
	return s.fakeSink.Accept(ctx, sp)
}

func TestTusTellsAStreamerWhatIsDurableBeforeAccept(t *testing.T) {
	sink := &streamSink{}
	sink.dir = t.TempDir()
	tus, err := NewTus(TusConfig{Dir: t.TempDir(), BasePath: base, MaxSize: 1 << 20, Sink: sink,
		Auth: func(r *http.Request) (string, bool) { return "cam-1", r.Header.Get("Authorization") == "Bearer tok-1" }})
	require.NoError(t, err)
	srv := httptest.NewServer(tus)
	defer srv.Close()

	data := bytes.Repeat([]byte("footage!"), 20000) // 160 kB
	loc := create(t, srv, "tok-1", with("sha256", digest(data)), len(data)).Header.Get("Location")
	for off := 0; off < len(data); off += 50000 {
		end := min(off+50000, len(data))
		require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", off, data[off:end]).StatusCode)
	}
	assert.Equal(t, []string{
		"arriving c1.mp4 50000 (file 50000)",
		"arriving c1.mp4 100000 (file 100000)",
		"arriving c1.mp4 150000 (file 150000)",
		"arriving c1.mp4 160000 (file 160000)",
		"accept c1.mp4",
	}, sink.log, "each chunk is announced once written and synced, the whole clip before Accept")
	require.Len(t, sink.got(), 1)
	assert.Equal(t, filepath.Base(loc), sink.got()[0].Upload)

	// An upload given up is reported as abandoned.
	loc = create(t, srv, "tok-1", with("clip", "c2"), 10).Header.Get("Location")
	require.Equal(t, http.StatusNoContent, patch(t, loc, "tok-1", 0, []byte("abc")).StatusCode)
	assert.True(t, TusUploadExists(tus.cfg.Dir, filepath.Base(loc)))
	tus.Recover(context.Background())
	assert.Empty(t, sink.abandoned)
	tus.cfg.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	tus.Recover(context.Background())
	assert.Equal(t, []string{filepath.Base(loc)}, sink.abandoned)
	assert.False(t, TusUploadExists(tus.cfg.Dir, filepath.Base(loc)))
	assert.False(t, TusUploadExists(tus.cfg.Dir, "../"+filepath.Base(loc)), "not a path")
}
