package ingest

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	xslog "golang.org/x/exp/slog"
)

// Spooled is a complete clip on the state disk, durable (fsynced), with the
// SHA-256 of the bytes as they arrived.
type Spooled struct {
	Meta
	Path     string // the file; the sink takes it over (moves it) on Accept
	Digest   string // lowercase hex SHA-256 computed while the bytes streamed in
	Ingest   string // "tus" or "dock"
	Received time.Time
	// Upload is the tus upload the clip arrived through ("" for a dock),
	// as given to a Streamer's Arriving.
	Upload string
}

// Sink receives clips: the evidence service.
type Sink interface {
	// Admit is asked before an upload starts: is the camera known, the clip
	// new, and is there room for it? Errors: ErrDuplicate, ErrFull,
	// ErrUnknownCamera, or any other (500).
	Admit(ctx context.Context, m Meta) error
	// Accept takes over a complete spooled clip: it enters the ledger, or,
	// when the digest does not match the declared one, goes to quarantine
	// (ErrMismatch). On success or ErrMismatch the file at s.Path is no longer
	// the caller's.
	Accept(ctx context.Context, s Spooled) error
}

// Streamer may be implemented by a Sink that starts storing a clip while
// it is still arriving. Its methods are called from the upload's requests,
// so they must return at once (hand the work to a goroutine).
type Streamer interface {
	// PartSize is the size of the parts the sink stores a clip in (0: it
	// has no parts). The ingest hashes each part as its bytes arrive, so
	// that the sink can store them without reading them back to hash.
	PartSize() int64
	// Arriving says that the first durable bytes of tus upload id, a clip
	// described by m, are in the spool file at path and fsynced: they will
	// not change. It is called after every chunk, with durable growing to
	// m.Size before the clip is handed to Accept (whose Spooled.Upload is
	// id). After a restart it is called again as the camera resumes.
	//
	// parts holds the SHA-256 (hex) of the clip's parts of PartSize bytes,
	// from the first, as the bytes arrived: every part wholly durable,
	// the clip's shorter last part too once it is complete. It may hold
	// fewer, down to none, when they could not be computed (a crash lost
	// the hash state; the part size changed). The slice is the sink's.
	Arriving(id string, m Meta, path string, durable int64, parts []string)
	// Abandoned says that upload id was given up (unfinished for longer
	// than the expiry) and its spool file removed: it will never reach
	// Accept.
	Abandoned(id string)
}

// TusUploadExists reports whether the tus spool dir still holds upload id
// (finished or not): once Accept has taken a clip, or an upload expired,
// it does not. A Streamer uses it to find what a crash left behind.
func TusUploadExists(dir, id string) bool {
	if !uploadIDRE(id) {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, id+".info"))
	return err == nil
}

// Errors a Sink returns, each with the HTTP status a camera sees.
var (
	ErrDuplicate     = errors.New("ingest: clip already received")                       // 409
	ErrMismatch      = errors.New("ingest: sha256 of the received bytes does not match") // 460
	ErrFull          = errors.New("ingest: spool is above its high-water mark")          // 507
	ErrUnknownCamera = errors.New("ingest: camera is not registered")                    // 403
)

// StatusChecksumMismatch is the tus checksum extension's status for a body
// whose digest is not the declared one.
const StatusChecksumMismatch = 460

// Authenticate says which camera made the request, from its credentials.
type Authenticate func(r *http.Request) (camera string, ok bool)

// TusConfig configures the tus endpoint.
type TusConfig struct {
	Dir      string // uploads in progress; on the state disk
	BasePath string // e.g. /api/evidence/uploads/
	MaxSize  int64  // largest clip accepted, bytes
	Auth     Authenticate
	Sink     Sink
	// Expire removes unfinished uploads untouched for this long (default 7 days).
	Expire time.Duration
	Logger *slog.Logger
	Now    func() time.Time
}

// Tus is the resumable upload endpoint (tus 1.0, tusd's handler) cameras
// upload clips to. It streams each upload into a spool file, hashing as the
// bytes arrive (the hash state survives restarts next to the file), fsyncs
// every chunk before tus reports its offset, and on the last byte hands the
// clip to the Sink.
type Tus struct {
	cfg     TusConfig
	store   hashingStore
	handler http.Handler // tusd's, under BasePath
	log     *slog.Logger

	mu        sync.Mutex
	finishing map[string]bool // upload ids being handed to the sink
}

type cameraKey struct{}

// NewTus builds the endpoint. Call Recover once before serving and
// periodically after (Run does both).
func NewTus(cfg TusConfig) (*Tus, error) {
	if cfg.Auth == nil || cfg.Sink == nil {
		return nil, errors.New("ingest: tus needs Auth and Sink")
	}
	if cfg.Expire == 0 {
		cfg.Expire = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("ingest: spool %s: %w", cfg.Dir, err)
	}
	fs := filestore.New(cfg.Dir)
	fs.DirModePerm, fs.FileModePerm = 0o750, 0o640
	hs := hashingStore{fs: fs, dir: cfg.Dir}
	if stream, ok := cfg.Sink.(Streamer); ok {
		hs.stream, hs.partSize = stream, max(stream.PartSize(), 0)
	}
	t := &Tus{cfg: cfg, store: hs, log: cfg.Logger.With("component", "tus"), finishing: map[string]bool{}}
	composer := handler.NewStoreComposer()
	composer.UseCore(t.store)
	composer.UseLocker(memorylocker.New())
	h, err := handler.NewHandler(handler.Config{
		StoreComposer:             composer,
		BasePath:                  cfg.BasePath,
		MaxSize:                   cfg.MaxSize,
		DisableDownload:           true, // footage leaves only through governed access
		DisableTermination:        true, // a camera cannot delete what it sent
		DisableConcatenation:      true,
		Cors:                      &handler.CorsConfig{Disable: true},
		PreUploadCreateCallback:   t.preCreate,
		PreFinishResponseCallback: t.preFinish,
		// tusd logs every request through its own slog; Vigil logs what matters itself.
		Logger: xslog.New(xslog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: tus handler: %w", err)
	}
	// tusd routes on the path below its base path.
	t.handler = http.StripPrefix(basePath(cfg.BasePath), h)
	return t, nil
}

// ServeHTTP authenticates the camera, keeps it to its own uploads, and
// passes the request to tusd.
func (t *Tus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	camera, ok := t.cfg.Auth(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil camera upload"`)
		http.Error(w, "camera credentials required: Authorization: Bearer <camera token>", http.StatusUnauthorized)
		return
	}
	if id := strings.Trim(strings.TrimPrefix(r.URL.Path, basePath(t.cfg.BasePath)), "/"); id != "" && r.Method != http.MethodOptions {
		// tusd ids are hex; anything else is not ours (and could be a path trick).
		if !uploadIDRE(id) {
			http.Error(w, "no such upload", http.StatusNotFound)
			return
		}
		info, err := t.store.info(id)
		if err == nil && info.MetaData["camera"] != camera {
			// Another camera's upload: say nothing about it.
			http.Error(w, "no such upload", http.StatusNotFound)
			return
		}
	}
	t.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), cameraKey{}, camera)))
}

func uploadIDRE(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (t *Tus) preCreate(hook handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	camera, _ := hook.Context.Value(cameraKey{}).(string)
	if hook.Upload.SizeIsDeferred {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_LENGTH_REQUIRED", "Upload-Length is required (a clip's size is known before it is sent)", http.StatusBadRequest)
	}
	m, err := ParseUploadMetadata(hook.Upload.MetaData, hook.Upload.Size)
	if err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_METADATA", err.Error(), http.StatusBadRequest)
	}
	if m.Camera != camera {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_CAMERA", fmt.Sprintf("metadata camera %q is not the authenticated camera %q", m.Camera, camera), http.StatusForbidden)
	}
	if err := t.cfg.Sink.Admit(hook.Context, m); err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, t.answer(m.Camera, m.Clip, err)
	}
	return handler.HTTPResponse{}, handler.FileInfoChanges{}, nil
}

func (t *Tus) preFinish(hook handler.HookEvent) (handler.HTTPResponse, error) {
	if err := t.finish(hook.Context, hook.Upload.ID); err != nil {
		return handler.HTTPResponse{}, t.answer(hook.Upload.MetaData["camera"], hook.Upload.MetaData["clip"], err)
	}
	return handler.HTTPResponse{}, nil
}

// answer turns a sink error into the camera's answer, logging the cause of
// an internal error (the camera is only told to retry).
func (t *Tus) answer(camera, clip string, err error) error {
	te := tusError(err)
	if e, ok := te.(handler.Error); ok && e.HTTPResponse.StatusCode == http.StatusInternalServerError {
		t.log.Error("upload not taken; the camera will retry and recovery will finish it", "camera", camera, "clip", clip, "err", err)
	}
	return te
}

// tusError turns a sink error into the answer a camera gets.
func tusError(err error) error {
	switch {
	case errors.Is(err, ErrDuplicate):
		return handler.NewError("ERR_DUPLICATE", err.Error(), http.StatusConflict)
	case errors.Is(err, ErrMismatch):
		return handler.NewError("ERR_CHECKSUM_MISMATCH", err.Error(), StatusChecksumMismatch)
	case errors.Is(err, ErrFull):
		return handler.NewError("ERR_SPOOL_FULL", err.Error(), http.StatusInsufficientStorage)
	case errors.Is(err, ErrUnknownCamera):
		return handler.NewError("ERR_CAMERA", err.Error(), http.StatusForbidden)
	}
	var me *MetaError
	if errors.As(err, &me) {
		return handler.NewError("ERR_METADATA", err.Error(), http.StatusBadRequest)
	}
	return handler.NewError("ERR_INTERNAL", "the gateway could not store the clip; retry later", http.StatusInternalServerError)
}

// finish hands a complete upload to the sink, once even if the final PATCH
// and a recovery sweep race for it.
func (t *Tus) finish(ctx context.Context, id string) error {
	t.mu.Lock()
	if t.finishing[id] {
		t.mu.Unlock()
		return fmt.Errorf("ingest: upload %s is already being finished", id)
	}
	t.finishing[id] = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.finishing, id)
		t.mu.Unlock()
	}()

	info, err := t.store.info(id)
	if err != nil {
		return err
	}
	m, err := ParseUploadMetadata(info.MetaData, info.Size)
	if err != nil {
		return err
	}
	// Durable before it counts (cheap when the last chunk was just synced).
	if err := syncFile(t.store.binPath(id)); err != nil {
		return fmt.Errorf("ingest: fsync upload %s: %w", id, err)
	}
	digest, err := t.store.digest(id, info.Size)
	if err != nil {
		return fmt.Errorf("ingest: digest of upload %s: %w", id, err)
	}
	s := Spooled{Meta: m, Path: t.store.binPath(id), Digest: digest, Ingest: "tus", Received: t.cfg.Now().UTC(), Upload: id}
	err = t.cfg.Sink.Accept(ctx, s)
	switch {
	case err == nil, errors.Is(err, ErrMismatch):
		// The sink has the file: forget the upload.
		t.store.forget(id)
	case errors.Is(err, ErrDuplicate):
		// The gateway already holds this clip: this copy is not needed.
		t.store.forget(id)
		os.Remove(s.Path)
	}
	if err != nil {
		return fmt.Errorf("ingest: %s/%s: %w", m.Camera, m.Clip, err)
	}
	return nil
}

// orphanAge is how long a complete upload is left alone before Recover
// takes it: far longer than a final PATCH takes to be handed to the sink.
const orphanAge = time.Minute

// Recover finishes uploads whose last byte arrived but which never reached
// the sink (the gateway stopped in between, or the sink failed), and removes
// unfinished uploads nobody has touched for cfg.Expire.
func (t *Tus) Recover(ctx context.Context) {
	entries, err := os.ReadDir(t.cfg.Dir)
	if err != nil {
		t.log.Error("upload spool unreadable", "dir", t.cfg.Dir, "err", err)
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".info")
		if !ok || !uploadIDRE(id) {
			continue
		}
		info, err := t.store.info(id)
		if err != nil {
			continue
		}
		if info.Offset == info.Size {
			// A final PATCH may be finishing this upload right now (tusd
			// holds its lock, which Recover must not take: asking for it
			// interrupts the request). Only uploads left complete for a
			// while are orphans: the gateway stopped, or the sink failed.
			if fi, err := os.Stat(t.store.binPath(id)); err != nil || t.cfg.Now().Sub(fi.ModTime()) < orphanAge {
				continue
			}
			if err := t.finish(ctx, id); err != nil {
				t.log.Warn("could not finish a complete upload", "upload", id, "err", err)
			}
			continue
		}
		if fi, err := os.Stat(t.store.binPath(id)); err == nil && t.cfg.Now().Sub(fi.ModTime()) > t.cfg.Expire {
			t.log.Info("removing an abandoned upload", "upload", id, "camera", info.MetaData["camera"], "clip", info.MetaData["clip"], "received", info.Offset, "of", info.Size)
			t.store.forget(id)
			os.Remove(t.store.binPath(id))
			if t.store.stream != nil {
				t.store.stream.Abandoned(id)
			}
		}
	}
}

// Run recovers at start and then every interval until ctx ends.
func (t *Tus) Run(ctx context.Context, every time.Duration) error {
	t.Recover(ctx)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.Recover(ctx)
		}
	}
}

// hashingStore is tusd's file store with a SHA-256 computed as chunks are
// written: of the whole clip, and, for a Streamer with a part size, of each
// part. The hash state is saved after every chunk next to the upload
// (<id>.sha256), so a resumed upload continues the same hashes; if the state
// is missing or behind (a crash between the data and the state), the file is
// re-read once at the end instead, and the parts from there on are not
// hashed here (the sink hashes them itself).
type hashingStore struct {
	fs       filestore.FileStore
	dir      string
	stream   Streamer // nil when the sink does not stream
	partSize int64    // the stream's, or 0
}

type hashState struct {
	Offset int64  `json:"offset"`
	State  []byte `json:"state"`
	// The parts: their size, the digests of those complete, and the state
	// of the one in progress. Absent when parts are not hashed.
	PartSize int64    `json:"part_size,omitempty"`
	Parts    []string `json:"parts,omitempty"`
	Part     []byte   `json:"part,omitempty"`
}

// hashes is an upload's hashes at some offset: the whole clip's and, when
// parts is not nil, its parts'.
type hashes struct {
	whole hash.Hash
	parts *partHasher
}

func (h *hashes) Write(p []byte) (int, error) {
	h.whole.Write(p)
	if h.parts != nil {
		h.parts.Write(p)
	}
	return len(p), nil
}

// partHasher hashes a stream in parts of size bytes.
type partHasher struct {
	size int64
	at   int64 // bytes written since the start of the clip
	cur  hash.Hash
	sums []string
}

func (p *partHasher) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := min(int64(len(b)), p.size-p.at%p.size)
		p.cur.Write(b[:k])
		p.at += k
		b = b[k:]
		if p.at%p.size == 0 {
			p.sums = append(p.sums, hex.EncodeToString(p.cur.Sum(nil)))
			p.cur.Reset()
		}
	}
	return n, nil
}

// end closes the clip's last, shorter part once all size bytes are in.
func (p *partHasher) end(size int64) {
	if p.at == size && int64(len(p.sums)) < (size+p.size-1)/p.size {
		p.sums = append(p.sums, hex.EncodeToString(p.cur.Sum(nil)))
		p.cur.Reset()
	}
}

// complete is the digests of the parts hashed so far, as the sink's copy.
func (p *partHasher) complete() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.sums)
}

func (s hashingStore) binPath(id string) string   { return filepath.Join(s.dir, id) }
func (s hashingStore) statePath(id string) string { return filepath.Join(s.dir, id+".sha256") }

func (s hashingStore) info(id string) (handler.FileInfo, error) {
	up, err := s.fs.GetUpload(context.Background(), id)
	if err != nil {
		return handler.FileInfo{}, err
	}
	return up.GetInfo(context.Background())
}

// forget removes the upload's bookkeeping (the data file is the sink's now).
func (s hashingStore) forget(id string) {
	os.Remove(filepath.Join(s.dir, id+".info"))
	os.Remove(s.statePath(id))
}

func (s hashingStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := s.fs.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	inf, err := up.GetInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.saveState(inf.ID, 0, s.newHashes()); err != nil {
		return nil, err
	}
	return &hashingUpload{Upload: up, s: s, id: inf.ID}, nil
}

func (s hashingStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.fs.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return &hashingUpload{Upload: up, s: s, id: id}, nil
}

// newHashes is the hashes of an empty upload.
func (s hashingStore) newHashes() *hashes {
	h := &hashes{whole: sha256.New()}
	if s.partSize > 0 {
		h.parts = &partHasher{size: s.partSize, cur: sha256.New()}
	}
	return h
}

// loadState returns the hashes saved for upload id at offset, or nil when
// there are none for that offset. Parts saved under another part size, or
// inconsistent with the offset, are dropped: the sink hashes them itself.
func (s hashingStore) loadState(id string, offset int64) *hashes {
	b, err := os.ReadFile(s.statePath(id))
	if err != nil {
		return nil
	}
	var st hashState
	if json.Unmarshal(b, &st) != nil || st.Offset != offset {
		return nil
	}
	h := &hashes{whole: sha256.New()}
	if h.whole.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.State) != nil {
		return nil
	}
	if s.partSize > 0 && st.PartSize == s.partSize && int64(len(st.Parts)) == offset/s.partSize {
		cur := sha256.New()
		if cur.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Part) == nil {
			h.parts = &partHasher{size: s.partSize, at: offset, cur: cur, sums: st.Parts}
		}
	}
	return h
}

func (s hashingStore) saveState(id string, offset int64, h *hashes) error {
	whole, err := h.whole.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	st := hashState{Offset: offset, State: whole}
	if h.parts != nil {
		if st.Part, err = h.parts.cur.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return err
		}
		st.PartSize, st.Parts = h.parts.size, h.parts.sums
	}
	b, _ := json.Marshal(st)
	// Not fsynced: after a crash a lost or stale state only costs one re-read.
	return os.WriteFile(s.statePath(id), b, 0o640)
}

// digest is the SHA-256 of a complete upload of size bytes.
func (s hashingStore) digest(id string, size int64) (string, error) {
	if h := s.loadState(id, size); h != nil {
		return hex.EncodeToString(h.whole.Sum(nil)), nil
	}
	f, err := os.Open(s.binPath(id))
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("spool file holds %d bytes, the upload declared %d", n, size)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type hashingUpload struct {
	handler.Upload
	s  hashingStore
	id string
}

type countingTee struct {
	r io.Reader
	h *hashes // nil: not hashed here
	n int64
}

func (c *countingTee) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if c.h != nil {
			c.h.Write(p[:n])
		}
		c.n += int64(n)
	}
	return n, err
}

// WriteChunk appends the chunk, hashing it on the way, and fsyncs the file
// before tus may report the new offset to the camera: an offset the camera
// has been told stays true after a power cut. (Syncing only every 64 MiB
// was measured: it did not make the ingest faster, see BENCHMARKS.md §5.)
func (u *hashingUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	h := u.s.loadState(u.id, offset)
	tee := &countingTee{r: src, h: h}
	n, werr := u.Upload.WriteChunk(ctx, offset, tee)
	serr := syncFile(u.s.binPath(u.id))
	if serr != nil && werr == nil {
		werr = serr
	}
	var info handler.FileInfo
	var ierr error
	if u.s.stream != nil {
		info, ierr = u.Upload.GetInfo(ctx)
	}
	if h != nil && tee.n == n {
		if h.parts != nil && ierr == nil {
			h.parts.end(info.Size)
		}
		if err := u.s.saveState(u.id, offset+n, h); err != nil {
			os.Remove(u.s.statePath(u.id))
		}
	} else {
		h = nil
		os.Remove(u.s.statePath(u.id)) // re-read at the end instead
	}
	if serr == nil && n > 0 && u.s.stream != nil && ierr == nil {
		var parts []string
		if h != nil {
			parts = h.parts.complete()
		}
		u.arriving(info, offset+n, parts)
	}
	return n, werr
}

// arriving tells the streamer how much of the upload is durable now, and
// the digests of its parts. The metadata was checked when the upload was
// created; it is parsed again here because a restart may have come in
// between.
func (u *hashingUpload) arriving(info handler.FileInfo, durable int64, parts []string) {
	m, err := ParseUploadMetadata(info.MetaData, info.Size)
	if err != nil {
		return
	}
	u.s.stream.Arriving(u.id, m, u.s.binPath(u.id), durable, parts)
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// basePath is p with one leading and one trailing slash, as tusd uses it.
func basePath(p string) string {
	return "/" + strings.Trim(p, "/") + "/"
}
