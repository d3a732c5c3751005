package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
)

// The clips of these tests are two 5 MiB parts and a short third, sent in
// 5 MiB chunks: the last chunk can be held back while the first two parts
// are on the server.
const (
	streamPart = int(objstore.MinPartSize)
	streamClip = 2*streamPart + 1<<20
	bucketName = "evidence"
)

// streamWorld is a gateway's evidence path against a real MinIO: the
// service running (Run) and the tus endpoint cameras upload to.
type streamWorld struct {
	srv  *s3test.Server
	aws  *s3.Client
	cfg  Config
	wrap func(*Service) ingest.Sink // the sink tus hands clips to; nil: the service

	svc    *Service
	tus    *ingest.Tus
	api    *httptest.Server
	stop   func()
	tusNow atomic.Int64 // unix nanoseconds; 0: the real clock
}

func newStreamWorld(t *testing.T, endpoint func(*s3test.Server) string, wrap func(*Service) ingest.Sink) *streamWorld {
	t.Helper()
	w := &streamWorld{srv: s3test.Start(t), wrap: wrap}
	w.aws = w.srv.AWSClient()
	cfg, err := objstore.ParseS3URL(w.srv.URL(bucketName))
	require.NoError(t, err)
	cfg.AccessKey, cfg.SecretKey, cfg.Region, cfg.PartSize = w.srv.AccessKey, w.srv.SecretKey, s3test.Region, objstore.MinPartSize
	st, err := objstore.NewS3(cfg)
	require.NoError(t, err)
	require.NoError(t, st.InitBucket(context.Background()))
	if endpoint != nil {
		cfg.Endpoint = endpoint(w.srv)
	}
	w.cfg = Config{State: t.TempDir(), S3: &cfg, Cameras: fakeCameras{"cam-1": {ID: "cam-1", Site: "leeds", Wearer: "Nurse A"}}}
	w.start(t)
	return w
}

// start opens the service on the world's state and runs it, as a gateway
// (re)starting does, and waits until clips stream.
func (w *streamWorld) start(t *testing.T) {
	t.Helper()
	svc, err := Open(context.Background(), w.cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var sink ingest.Sink = svc
	if w.wrap != nil {
		sink = w.wrap(svc)
	}
	tus, err := ingest.NewTus(ingest.TusConfig{Dir: filepath.Join(w.cfg.State, Dir, uploadsDir), BasePath: "/up/", MaxSize: 1 << 30, Sink: sink,
		Auth: func(r *http.Request) (string, bool) { return "cam-1", r.Header.Get("Authorization") == "Bearer tok" },
		Now: func() time.Time {
			if n := w.tusNow.Load(); n != 0 {
				return time.Unix(0, n)
			}
			return time.Now()
		}})
	require.NoError(t, err)
	api := httptest.NewServer(tus)
	var once sync.Once
	w.svc, w.tus, w.api = svc, tus, api
	w.stop = func() {
		once.Do(func() {
			api.Close()
			cancel()
			require.NoError(t, <-done)
			require.NoError(t, svc.Close())
		})
	}
	t.Cleanup(w.stop)
	waitUntil(t, 20*time.Second, "clips can stream", func() bool {
		svc.smu.Lock()
		defer svc.smu.Unlock()
		return svc.streamCtx != nil
	})
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	if !poll(within, ok) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// poll reports whether ok became true within the time (for goroutines
// other than the test's, which must not stop the test).
func poll(within time.Duration, ok func() bool) bool {
	for end := time.Now().Add(within); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			return false
		}
	}
	return true
}

// clip is random bytes of a clip and its tus metadata.
type clip struct {
	id       string
	data     []byte
	declared string
	start    time.Time
}

func newClip(id string, seed byte) clip {
	data := make([]byte, streamClip)
	rand.NewChaCha8([32]byte{seed}).Read(data)
	sum := sha256.Sum256(data)
	start := time.Now().UTC().Truncate(time.Second).Add(-2 * time.Minute)
	return clip{id: id, data: data, declared: hex.EncodeToString(sum[:]), start: start}
}

func (c clip) key() string { return ObjectKey("leeds", "cam-1", c.id, c.start) }

// create starts the camera's tus upload and returns its URL.
func (w *streamWorld) create(t *testing.T, c clip) string {
	t.Helper()
	md := map[string]string{"camera": "cam-1", "clip": c.id, "sha256": c.declared,
		"start": c.start.Format(time.RFC3339), "end": c.start.Add(time.Minute).Format(time.RFC3339)}
	var enc []string
	for k, v := range md {
		enc = append(enc, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	code, hdr, body := w.do(t, http.MethodPost, w.api.URL+"/up/", map[string]string{"Upload-Length": strconv.Itoa(len(c.data)), "Upload-Metadata": strings.Join(enc, ",")}, nil)
	require.Equal(t, http.StatusCreated, code, body)
	return strings.TrimPrefix(hdr.Get("Location"), w.api.URL)
}

// patch sends data[from:to] of the clip and returns the status.
func (w *streamWorld) patch(t *testing.T, loc string, c clip, from, to int) (int, string) {
	t.Helper()
	code, _, body := w.do(t, http.MethodPatch, w.api.URL+loc, map[string]string{"Upload-Offset": strconv.Itoa(from), "Content-Type": "application/offset+octet-stream"}, c.data[from:to])
	return code, body
}

func (w *streamWorld) do(t *testing.T, method, url string, hdr map[string]string, body []byte) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer tok")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// earlyUploadID is the multipart upload a clip streams to, "" before it has one.
func (w *streamWorld) earlyUploadID(c clip) string {
	var id string
	w.svc.db.QueryRow(`SELECT upload_id FROM early_uploads WHERE camera='cam-1' AND clip=?`, c.id).Scan(&id)
	return id
}

// serverParts is how many parts MinIO holds for the upload.
func (w *streamWorld) serverParts(t *testing.T, c clip, uploadID string) int {
	t.Helper()
	out, err := w.aws.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(bucketName), Key: aws.String(c.key()), UploadId: aws.String(uploadID)})
	if err != nil {
		return -1
	}
	return len(out.Parts)
}

// waitParts waits until the clip's early upload has n parts on the server.
func (w *streamWorld) waitParts(t *testing.T, c clip, n int) string {
	t.Helper()
	var id string
	waitUntil(t, 20*time.Second, fmt.Sprintf("%d parts of %s on the server", n, c.id), func() bool {
		id = w.earlyUploadID(c)
		return id != "" && w.serverParts(t, c, id) == n
	})
	return id
}

// pendingUploads lists the multipart uploads MinIO holds for the clip's key.
func (w *streamWorld) pendingUploads(t *testing.T, c clip) int {
	t.Helper()
	out, err := w.aws.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucketName), Prefix: aws.String(c.key())})
	require.NoError(t, err)
	return len(out.Uploads)
}

func (w *streamWorld) objectVisible(t *testing.T, c clip) bool {
	t.Helper()
	_, err := w.aws.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucketName), Key: aws.String(c.key())})
	return err == nil
}

func (w *streamWorld) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	require.NoError(t, w.svc.db.QueryRow(`SELECT count(*) FROM `+table).Scan(&n))
	return n
}

func (w *streamWorld) waitStored(t *testing.T, clips int64) {
	t.Helper()
	waitUntil(t, 30*time.Second, "the clip stored and verified", func() bool {
		st, err := w.svc.Status(context.Background())
		return err == nil && st.Clips == clips && st.Backlog == 0
	})
}

// storedSum reads the clip's object back and hashes it.
func (w *streamWorld) storedSum(t *testing.T, c clip) (string, map[string]string) {
	t.Helper()
	out, err := w.aws.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(c.key())})
	require.NoError(t, err)
	defer out.Body.Close()
	h := sha256.New()
	_, err = io.Copy(h, out.Body)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil)), out.Metadata
}

// acceptHook runs a check inside the final PATCH, before the service's Accept.
type acceptHook struct {
	*Service
	before func(sp ingest.Spooled)
}

func (a *acceptHook) Accept(ctx context.Context, sp ingest.Spooled) error {
	a.before(sp)
	return a.Service.Accept(ctx, sp)
}

func TestClipStreamsWhileItArrivesAndExistsOnlyAfterItsLedgerEntry(t *testing.T) {
	ctx := context.Background()
	c := newClip("s1", 1)
	var w *streamWorld
	var checked atomic.Bool
	w = newStreamWorld(t, nil, func(svc *Service) ingest.Sink {
		return &acceptHook{Service: svc, before: func(sp ingest.Spooled) {
			// The last byte is in: every part reaches the server, and
			// still there is no object, for there is no ledger entry.
			assert.True(t, poll(20*time.Second, func() bool {
				id := w.earlyUploadID(c)
				return id != "" && w.serverParts(t, c, id) == 3
			}), "all three parts on the server before Accept")
			assert.False(t, w.objectVisible(t, c), "no object before the ledger entry")
			size, err := svc.ledger.Size(ctx)
			assert.NoError(t, err)
			assert.Zero(t, size)
			// A duress opens an incident window over the clip while its
			// upload runs (created as ordinary footage).
			assert.NoError(t, svc.MarkEvidential(ctx, "inc-1", "cam-1", c.start.Add(-time.Minute), time.Time{}))
			checked.Store(true)
		}}
	})

	loc := w.create(t, c)
	code, body := w.patch(t, loc, c, 0, streamPart)
	require.Equal(t, http.StatusNoContent, code, body)
	code, body = w.patch(t, loc, c, streamPart, 2*streamPart)
	require.Equal(t, http.StatusNoContent, code, body)
	// The final chunk is held back: the first two parts are uploaded now.
	w.waitParts(t, c, 2)
	assert.False(t, w.objectVisible(t, c))
	assert.Zero(t, w.count(t, "clips"))

	code, body = w.patch(t, loc, c, 2*streamPart, streamClip)
	require.Equal(t, http.StatusNoContent, code, body)
	require.True(t, checked.Load())
	w.waitStored(t, 1)

	sum, meta := w.storedSum(t, c)
	assert.Equal(t, c.declared, sum)
	assert.Equal(t, "cam-1", meta["camera"])
	assert.Equal(t, c.declared, meta["sha256"])
	assert.NotContains(t, meta, "ledger-index", "fixed before the entry existed: the key and digests bind it")
	assert.Zero(t, w.pendingUploads(t, c))
	assert.Zero(t, w.count(t, "early_uploads"))
	assert.Zero(t, w.count(t, "upload_parts"))

	// Made evidential while it streamed (created as ordinary footage): it
	// ends with the hold, set on the stored object.
	var what []string
	var uploaded string
	waitUntil(t, 20*time.Second, "the legal hold set on the stored clip", func() bool {
		steps, err := w.svc.Custody(ctx, "cam-1", c.id)
		require.NoError(t, err)
		what = what[:0]
		for _, e := range steps {
			what = append(what, e.What)
			if e.What == "uploaded" {
				uploaded = e.Detail
			}
		}
		return len(what) > 0 && what[len(what)-1] == "store retention"
	})
	assert.Equal(t, []string{"received", "ledgered", "evidential", "uploaded", "verified", "local copy deleted", "store retention"}, what)
	assert.Contains(t, uploaded, "uploaded while it arrived, completed after its ledger entry")
	assert.NotContains(t, uploaded, "legal hold", "created before the clip was evidential")
	o, err := w.svc.store.Stat(ctx, c.key())
	require.NoError(t, err)
	assert.True(t, o.LegalHold)
	got, err := w.svc.Get(ctx, "cam-1", c.id)
	require.NoError(t, err)
	assert.Equal(t, Evidential, got.Category)
	rep, err := w.svc.Verify(ctx, true)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
}

func TestStreamedClipRefusedOrAbandonedLeavesNoParts(t *testing.T) {
	w := newStreamWorld(t, nil, nil)

	// A wrong digest: parts went up early; the multipart upload is aborted.
	bad := newClip("bad", 2)
	bad.declared = strings.Repeat("0", 64)
	loc := w.create(t, bad)
	for off := 0; off < 2*streamPart; off += streamPart {
		code, body := w.patch(t, loc, bad, off, off+streamPart)
		require.Equal(t, http.StatusNoContent, code, body)
	}
	w.waitParts(t, bad, 2)
	code, body := w.patch(t, loc, bad, 2*streamPart, streamClip)
	assert.Equal(t, ingest.StatusChecksumMismatch, code, body)
	assert.Zero(t, w.pendingUploads(t, bad), "no parts left on the server")
	assert.False(t, w.objectVisible(t, bad))
	assert.Equal(t, 1, w.count(t, "quarantine"))
	assert.Zero(t, w.count(t, "early_uploads"))
	assert.Zero(t, w.count(t, "upload_parts"))

	// An upload the camera never finishes is aborted when it expires.
	gone := newClip("gone", 3)
	loc = w.create(t, gone)
	code, body = w.patch(t, loc, gone, 0, streamPart)
	require.Equal(t, http.StatusNoContent, code, body)
	w.waitParts(t, gone, 1)
	w.tusNow.Store(time.Now().Add(8 * 24 * time.Hour).UnixNano())
	w.tus.Recover(context.Background())
	assert.Zero(t, w.pendingUploads(t, gone))
	assert.Zero(t, w.count(t, "early_uploads"))
	assert.Zero(t, w.count(t, "upload_parts"))
	assert.Zero(t, w.count(t, "clips"))
}

func TestRestartMidStreamResumesWithoutResending(t *testing.T) {
	ctx := context.Background()
	var proxy *s3test.CountingProxy
	w := newStreamWorld(t, func(srv *s3test.Server) string {
		proxy = s3test.StartCountingProxy(t, srv.Endpoint)
		return proxy.Addr
	}, nil)
	c := newClip("r1", 4)
	loc := w.create(t, c)
	for off := 0; off < 2*streamPart; off += streamPart {
		code, body := w.patch(t, loc, c, off, off+streamPart)
		require.Equal(t, http.StatusNoContent, code, body)
	}
	recorded := w.waitParts(t, c, 2)

	// The gateway stops with the clip half arrived and its upload half done.
	w.stop()
	// A multipart upload created on the same key just before the stop,
	// whose id was never recorded, is aborted by the next start.
	st, err := objstore.NewS3(*w.cfg.S3)
	require.NoError(t, err)
	src := bytes.NewReader(c.data[:1<<20])
	refused := errors.New("stopped")
	_, err = st.Upload(ctx, c.key(), src, 1<<20, objstore.PutOptions{SHA256: digestOf(c.data[:1<<20])}, objstore.Resume{}, refusingGate{refused})
	require.ErrorIs(t, err, refused)
	require.Equal(t, 2, w.pendingUploads(t, c))

	before := proxy.Up()
	w.start(t)
	assert.Equal(t, 1, w.pendingUploads(t, c), "the unrecorded upload is gone, the recorded one kept")
	assert.Equal(t, recorded, w.earlyUploadID(c))
	code, hdr, _ := w.do(t, http.MethodHead, w.api.URL+loc, nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, strconv.Itoa(2*streamPart), hdr.Get("Upload-Offset"), "the camera's upload resumes")
	code, body := w.patch(t, loc, c, 2*streamPart, streamClip)
	require.Equal(t, http.StatusNoContent, code, body)
	w.waitStored(t, 1)

	resent := proxy.Up() - before
	assert.Less(t, resent, int64(streamClip-2*streamPart)+256<<10,
		"only the last part (and requests) went to the store after the restart: %d bytes", resent)
	sum, _ := w.storedSum(t, c)
	assert.Equal(t, c.declared, sum)
	assert.Equal(t, 1, versions(t, w, c), "stored once")
	assert.Zero(t, w.pendingUploads(t, c))
}

// refusingGate leaves a multipart upload on the server with every part and
// no record of it, as a gateway stopped just after creating it would.
type refusingGate struct{ err error }

func (refusingGate) Started(string) error          { return nil }
func (refusingGate) PartDone(objstore.Part) error  { return nil }
func (g refusingGate) Ready(context.Context) error { return g.err }

func versions(t *testing.T, w *streamWorld, c clip) int {
	t.Helper()
	out, err := w.aws.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(bucketName), Prefix: aws.String(c.key())})
	require.NoError(t, err)
	return len(out.Versions)
}

// A gateway that stops after completing an object but before recording it
// finds the object at the next start instead of storing it again.
func TestUploadCompletedBeforeAStopIsNotStoredTwice(t *testing.T) {
	ctx := context.Background()
	w := newStreamWorld(t, nil, nil)
	w.stop()
	svc, err := Open(ctx, w.cfg) // not running: the queue is driven by hand
	require.NoError(t, err)
	defer svc.Close()
	w.svc = svc
	c := newClip("done", 5)
	r := &rig{svc: svc, now: time.Now()}
	sp := r.spool(t, "cam-1", c.id, c.data, c.start)
	require.NoError(t, svc.Accept(ctx, sp))

	var q queued
	var start, end, received, retain int64
	require.NoError(t, svc.db.QueryRow(`SELECT camera, clip, site, object_key, spool_path, sha256, category, size, start_ms, end_ms, received_ms, retain_until_ms, idx
		FROM clips`).Scan(&q.camera, &q.clip, &q.site, &q.key, &q.path, &q.sha256, &q.category, &q.size, &start, &end, &received, &retain, &q.idx))
	q.start, q.end, q.received, q.retain = fromMS(start), fromMS(end), fromMS(received), fromMS(retain)
	_, err = svc.storeFromSpool(ctx, q) // completed; the stop comes before the row says so
	require.NoError(t, err)
	require.Equal(t, 1, versions(t, w, c))

	svc.uploadQueued(ctx)
	got, err := svc.Get(ctx, "cam-1", c.id)
	require.NoError(t, err)
	assert.Equal(t, stateUploaded, got.State)
	assert.Equal(t, 1, versions(t, w, c), "the object found was taken, not stored again")
	rep, err := svc.Verify(ctx, true)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
}

// The directory store keeps a local copy: it costs the same at the end as
// while the clip arrives, so nothing streams.
func TestDirectoryStoreDoesNotStream(t *testing.T) {
	r := newRig(t, nil)
	r.svc.smu.Lock()
	r.svc.streamCtx = context.Background() // as Run would
	r.svc.smu.Unlock()
	r.svc.Arriving("0123abcd", ingest.Meta{Camera: "cam-1", Clip: "big", SHA256: strings.Repeat("0", 64), Size: 1 << 30, Start: base, End: base},
		filepath.Join(t.TempDir(), "x"), 64<<20, nil)
	r.svc.smu.Lock()
	defer r.svc.smu.Unlock()
	assert.Empty(t, r.svc.streams)
	assert.Zero(t, r.svc.runningStreams)
}

// rotHook flips one byte of the spool file once it is durable, before the
// service hears of it: the disk gives back other bytes than arrived.
type rotHook struct {
	*Service
	once sync.Once
}

func (r *rotHook) Arriving(id string, m ingest.Meta, path string, durable int64, parts []string) {
	r.once.Do(func() {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			b := make([]byte, 1)
			f.ReadAt(b, 1000)
			b[0] ^= 0x20
			f.WriteAt(b, 1000)
			f.Close()
		}
	})
	r.Service.Arriving(id, m, path, durable, parts)
}

// TestStreamedPartsAreHeldToTheDigestsOfWhatArrived: a streaming clip's
// parts are sent with the SHA-256 the ingest computed of the camera's
// bytes, not of what the spool gives back, so a part that changed on the
// disk is refused by the store and never becomes part of the object.
func TestStreamedPartsAreHeldToTheDigestsOfWhatArrived(t *testing.T) {
	c := newClip("rot", 3)
	w := newStreamWorld(t, nil, func(svc *Service) ingest.Sink { return &rotHook{Service: svc} })
	loc := w.create(t, c)
	code, body := w.patch(t, loc, c, 0, streamPart)
	require.Equal(t, http.StatusNoContent, code, body)

	tusID := filepath.Base(loc)
	waitUntil(t, 20*time.Second, "the upload attempt of the rotted part to end", func() bool {
		w.svc.smu.Lock()
		st := w.svc.streams[tusID]
		w.svc.smu.Unlock()
		if st == nil {
			return false
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		return !st.running && !st.endedAt.IsZero()
	})
	id := w.earlyUploadID(c)
	require.NotEmpty(t, id, "the multipart upload was started")
	assert.Zero(t, w.serverParts(t, c, id), "the part the disk changed was refused")
	assert.Zero(t, w.count(t, "upload_parts"))
	assert.False(t, w.objectVisible(t, c))
}
