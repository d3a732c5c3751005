package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// Streaming: a clip larger than one part is uploaded while it arrives.
//
// A camera's tus upload and the multipart upload to the store used to run
// one after the other; for a 2 GiB clip each took seconds, and the camera's
// bytes sat in the spool while the store waited. Now the multipart upload
// starts at the first durable chunk (ingest.Streamer.Arriving) and sends
// each part as soon as its bytes are in the spool and fsynced, reading them
// back from the spool file: no part is held in memory, as before.
//
// What must not change is when the object comes into existence: only after
// the whole clip is in the spool, fsynced, its SHA-256 is the declared one,
// and its ledger entry is committed. objstore.Gate holds the
// CompleteMultipartUpload back until Accept has committed the clip's row
// (which it does after the ledger entry). A digest mismatch, a duplicate, an
// abandoned upload or a clip that goes to quarantine aborts the multipart
// upload, so no parts are left behind; whatever a crash leaves is found at
// the next start (sweepStreams).
//
// Progress is recorded as for any upload: the multipart upload's id in the
// early_uploads row (the clip has no clips row yet) and every part in
// upload_parts, before the next is sent. Accept moves the upload id to the
// clip's row in the transaction that creates it, so after a restart the
// queue resumes the same multipart upload without re-sending its parts, and
// a camera that resumes its tus upload resumes the early upload too.
//
// Binding object and ledger entry. S3 fixes an object's user metadata when
// the multipart upload is created, which is now before the clip has a
// ledger entry. The entry's index cannot be reserved ahead: the Merkle log
// has no holes, clips from several cameras interleave, and a clip may still
// be refused (mismatch, duplicate, abandoned). So a streamed object carries
// what is known at creation (camera, clip, site, start, end, category at
// that time, and the declared sha256), but not "ledger-index" nor
// "received". The binding that verify --deep, governance and the police
// package rely on never was that metadata: it is the object key, which the
// ledger entry determines (site, camera, capture date, clip id), and the
// entry's size and SHA-256, which the stored bytes are re-hashed against. A
// tampered, swapped or missing object is caught by those, whatever its
// metadata says. Uploads that start after the entry exists (clips of one
// part, the directory store, clips that did not stream) still write
// "ledger-index" and "received", for a person browsing the bucket.
//
// Retention and legal hold are set when the multipart upload is created,
// from the clip's category at that moment. A clip that becomes evidential
// while it streams (an incident window opened before Accept, or after)
// completes with the retention it was created with; the row records what
// the store reports, so applyHolds extends the retention and sets the hold
// in the same round, as it does for a clip made evidential after upload.
//
// The directory store (no S3) does not stream: a local copy costs the same
// at the end as during the upload.

var _ ingest.Streamer = (*Service)(nil)

// streamStore is a store that can take a clip while it arrives: *objstore.S3.
type streamStore interface {
	PartSize() int64
	Uploads(ctx context.Context, key string) ([]objstore.PendingUpload, error)
	Abort(ctx context.Context, key, uploadID string) error
}

const (
	// maxStreams bounds the uploads that run beside the queue; a clip that
	// arrives while they are all busy is uploaded once it is complete.
	maxStreams = 4
	// streamIdle ends an attempt whose camera has sent nothing for this
	// long (or whose clip waits this long for Accept): the next chunk
	// starts another attempt, which resumes from the recorded parts.
	streamIdle = time.Minute
	// streamRetry is the least time between attempts after a failure (the
	// store being down, say): chunks arrive every few milliseconds.
	streamRetry = 10 * time.Second
	// sweepEvery is how often rows of early uploads whose camera upload is
	// gone are looked for after the start-up sweep.
	sweepEvery = 10 * time.Minute
)

var (
	errStreamIdle  = errors.New("evidence: the clip stopped arriving")
	errStreamTaken = errors.New("evidence: the clip cannot stream (already received, streaming through another upload, or its camera is unknown)")
)

const earlySchema = `
CREATE TABLE IF NOT EXISTS early_uploads (
	tus_id TEXT PRIMARY KEY,
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	object_key TEXT NOT NULL,
	size INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	upload_id TEXT NOT NULL DEFAULT '',
	created_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS early_uploads_clip ON early_uploads(camera, clip);
`

// stream is one tus upload whose clip is being uploaded while it arrives.
type stream struct {
	id   string // the tus upload
	m    ingest.Meta
	path string // the spool file; Accept renames it, an open descriptor stays valid

	mu         sync.Mutex
	durable    int64
	parts      []string      // SHA-256 of each part as it arrived (ingest.Streamer)
	grew       chan struct{} // closed, and replaced, when durable grows
	running    bool
	done       chan struct{} // closed when the running attempt ends
	cancel     context.CancelFunc
	endedAt    time.Time
	idled      bool             // the last attempt ended because nothing arrived
	obj        *objstore.Object // set when an attempt completed the object
	dead       bool             // no more attempts: refused, abandoned or taken
	accepted   chan struct{}    // closed by Accept once the clip's row is committed
	isAccepted bool
}

// PartSize is the part size of a store that takes clips while they arrive,
// else 0 (ingest.Streamer): the ingest hashes each part as it arrives, and
// the upload sends the part with that digest instead of hashing it again.
func (s *Service) PartSize() int64 {
	if ss, ok := s.store.(streamStore); ok {
		return ss.PartSize()
	}
	return 0
}

// Arriving starts, or feeds, the upload of a clip still arriving
// (ingest.Streamer). It returns at once.
func (s *Service) Arriving(id string, m ingest.Meta, path string, durable int64, parts []string) {
	if ps := s.PartSize(); ps == 0 || m.Size <= ps {
		return // no streaming store, or one part: uploaded whole once it is complete
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.streamCtx == nil {
		return // not running, or the start-up sweep has not finished
	}
	st := s.streams[id]
	if st == nil {
		for _, o := range s.streams {
			if o.m.Camera == m.Camera && o.m.Clip == m.Clip {
				return // the same clip through another upload: one streams
			}
		}
		st = &stream{id: id, m: m, path: path, grew: make(chan struct{}), accepted: make(chan struct{})}
		s.streams[id] = st
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if durable > st.durable {
		st.durable = durable
		close(st.grew)
		st.grew = make(chan struct{})
	}
	if len(parts) > len(st.parts) {
		st.parts = parts
	}
	if st.running || st.dead || st.obj != nil || st.isAccepted || s.runningStreams >= maxStreams {
		return
	}
	if !st.endedAt.IsZero() && !st.idled && time.Since(st.endedAt) < streamRetry {
		return
	}
	ctx, cancel := context.WithCancel(s.streamCtx)
	st.running, st.done, st.cancel = true, make(chan struct{}), cancel
	s.runningStreams++
	s.streamWG.Add(1)
	go s.runStream(ctx, st)
}

// Abandoned aborts the upload of a clip whose camera upload expired
// (ingest.Streamer).
func (s *Service) Abandoned(id string) {
	s.dropStream(context.Background(), id, "the camera's upload was abandoned")
}

// runStream is one attempt at uploading a clip while it arrives.
func (s *Service) runStream(ctx context.Context, st *stream) {
	defer s.streamWG.Done()
	obj, err := s.streamOnce(ctx, st)
	st.mu.Lock()
	st.cancel()
	st.running, st.endedAt, st.cancel = false, time.Now(), nil
	st.idled = errors.Is(err, errStreamIdle)
	if err == nil {
		st.obj = &obj
	}
	if errors.Is(err, errStreamTaken) {
		st.dead = true
	}
	done, accepted, dead := st.done, st.isAccepted, st.dead
	st.mu.Unlock()
	s.smu.Lock()
	s.runningStreams--
	s.smu.Unlock()
	close(done)
	switch {
	case err == nil:
		s.log.Info("clip stored while it arrived", "camera", st.m.Camera, "clip", st.m.Clip, "bytes", st.m.Size)
	case errors.Is(err, errStreamIdle), errors.Is(err, errStreamTaken), dead, ctx.Err() != nil,
		errors.Is(err, objstore.ErrUnavailable): // the queue reports a store that does not answer

		s.log.Debug("upload while arriving stopped", "camera", st.m.Camera, "clip", st.m.Clip, "err", err)
	default:
		s.log.Warn("upload while arriving failed; it resumes with the next chunk, or from the queue", "camera", st.m.Camera, "clip", st.m.Clip, "err", err)
	}
	if accepted {
		s.Wake() // the queue waits for this attempt
	}
}

// streamOnce claims the clip's early_uploads row and runs the multipart
// upload, fed by the spool file as it grows and completed after Accept.
func (s *Service) streamOnce(ctx context.Context, st *stream) (objstore.Object, error) {
	m := st.m
	cam, ok := s.cfg.Cameras.Camera(m.Camera)
	if !ok {
		return objstore.Object{}, errStreamTaken
	}
	key := ObjectKey(cam.Site, m.Camera, m.Clip, m.Start)
	uploadID, err := s.claimStream(ctx, st.id, m, key)
	if err != nil {
		return objstore.Object{}, err
	}
	resume := objstore.Resume{UploadID: uploadID}
	if uploadID != "" {
		if resume.Parts, err = s.parts(ctx, m.Camera, m.Clip, uploadID); err != nil {
			return objstore.Object{}, err
		}
	}
	incidents, err := s.windowsFor(ctx, m.Camera, m.Start, m.End)
	if err != nil {
		return objstore.Object{}, err
	}
	p, err := s.protectionOf(ctx, s.db, m.Start, incidents)
	if err != nil {
		return objstore.Object{}, err
	}
	retain := fromMS(p.retain)
	if floor := s.cfg.Now().Add(minLock); retain.Before(floor) {
		retain = floor
	}
	f, err := os.Open(st.path)
	if err != nil {
		return objstore.Object{}, fmt.Errorf("evidence: stream %s/%s: %w", m.Camera, m.Clip, err)
	}
	defer f.Close()
	opts := objstore.PutOptions{SHA256: m.SHA256, ContentType: "application/octet-stream",
		Mode: objstore.Governance, RetainUntil: retain, LegalHold: p.hold,
		// No ledger-index or received: see "Binding object and ledger entry" above.
		Meta: clipMeta(m.Camera, m.Clip, cam.Site, m.Start, m.End, p.category)}
	prog := &streamProgress{progress: progress{s: s, ctx: ctx, camera: m.Camera, clip: m.Clip, uploadID: uploadID}, st: st, tusID: st.id}
	s.log.Debug("uploading a clip while it arrives", "camera", m.Camera, "clip", m.Clip, "bytes", m.Size, "resumed_parts", len(resume.Parts))
	return s.store.Upload(ctx, key, &arrivingFile{ctx: ctx, st: st, f: f, ps: s.PartSize()}, m.Size, opts, resume, prog)
}

// claimStream makes (or finds, after a restart) the clip's early_uploads
// row for this tus upload and returns its multipart upload id ("" when none
// was started yet). The insert is one statement so that it cannot slip in
// after Accept committed the clip: a received clip, or one another upload
// streams, is errStreamTaken.
func (s *Service) claimStream(ctx context.Context, id string, m ingest.Meta, key string) (string, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO early_uploads(tus_id, camera, clip, object_key, size, sha256, created_ms)
		SELECT ?,?,?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM clips WHERE camera=? AND clip=?) ON CONFLICT DO NOTHING`,
		id, m.Camera, m.Clip, key, m.Size, m.SHA256, ms(s.cfg.Now()), m.Camera, m.Clip); err != nil {
		return "", fmt.Errorf("evidence: stream %s/%s: %w", m.Camera, m.Clip, err)
	}
	var rowKey, uploadID, sum string
	var size int64
	err := s.db.QueryRowContext(ctx, `SELECT object_key, upload_id, size, sha256 FROM early_uploads WHERE tus_id=?`, id).Scan(&rowKey, &uploadID, &size, &sum)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && (rowKey != key || size != m.Size || sum != m.SHA256):
		return "", errStreamTaken
	case err != nil:
		return "", fmt.Errorf("evidence: stream %s/%s: %w", m.Camera, m.Clip, err)
	}
	return uploadID, nil
}

// streamProgress records an early upload's id and parts, and holds its
// completion back until Accept has committed the clip.
type streamProgress struct {
	progress
	st    *stream
	tusID string
}

// Started records the multipart upload id: on the early_uploads row while
// the clip is arriving, on the clip's row once Accept has moved it there.
func (p *streamProgress) Started(uploadID string) error {
	p.uploadID = uploadID
	tx, err := p.s.db.BeginTx(p.ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(p.ctx, `UPDATE early_uploads SET upload_id=? WHERE tus_id=?`, uploadID, p.tusID)
	if err != nil {
		return err
	}
	n, _ := res.RowsAffected()
	if n == 0 {
		if res, err = tx.ExecContext(p.ctx, `UPDATE clips SET upload_id=? WHERE camera=? AND clip=? AND state=?`, uploadID, p.camera, p.clip, stateQueued); err != nil {
			return err
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return fmt.Errorf("evidence: %s/%s is no longer waiting for this upload", p.camera, p.clip)
		}
	}
	if _, err := tx.ExecContext(p.ctx, `DELETE FROM upload_parts WHERE camera=? AND clip=? AND upload_id!=?`, p.camera, p.clip, uploadID); err != nil {
		return err
	}
	return tx.Commit()
}

// Ready is the objstore.Gate: the object may be completed once Accept has
// committed the clip's row, which follows its ledger entry.
func (p *streamProgress) Ready(ctx context.Context) error {
	t := time.NewTimer(streamIdle)
	defer t.Stop()
	select {
	case <-p.st.accepted:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errStreamIdle
	}
}

// arrivingFile reads the spool file, waiting for bytes that have not been
// made durable yet, and gives the digests of its parts as they arrived.
type arrivingFile struct {
	ctx context.Context
	st  *stream
	f   *os.File
	ps  int64 // the part size the ingest hashed in
}

func (a *arrivingFile) ReadAt(p []byte, off int64) (int, error) {
	want := min(off+int64(len(p)), a.st.m.Size)
	if err := a.wait(want); err != nil {
		return 0, err
	}
	if off >= want {
		return 0, io.EOF
	}
	n, err := a.f.ReadAt(p[:want-off], off)
	if err == nil && n < len(p) {
		err = io.EOF // the end of the clip
	}
	return n, err
}

// PartSHA256 is the digest the ingest computed of part n as its bytes
// arrived (objstore.PartDigests), once they are durable. It is unknown
// when the ingest could not compute it, or computed parts of another size.
func (a *arrivingFile) PartSHA256(n int, off, length int64) (string, bool, error) {
	if err := a.wait(off + length); err != nil {
		return "", false, err
	}
	ps := a.ps
	a.st.mu.Lock()
	parts := a.st.parts
	a.st.mu.Unlock()
	if ps <= 0 || n < 1 || n > len(parts) || off != int64(n-1)*ps || (length != ps && off+length != a.st.m.Size) {
		return "", false, nil
	}
	return parts[n-1], true, nil
}

// wait returns once the first want bytes are durable.
func (a *arrivingFile) wait(want int64) error {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		a.st.mu.Lock()
		durable, grew := a.st.durable, a.st.grew
		a.st.mu.Unlock()
		if durable >= want {
			break
		}
		if t == nil {
			t = time.NewTimer(streamIdle)
		}
		select {
		case <-grew:
		case <-a.ctx.Done():
			return a.ctx.Err()
		case <-t.C:
			return errStreamIdle
		}
	}
	return nil
}

// markAccepted lets the clip's stream complete its object: Accept has
// committed the clip.
func (s *Service) markAccepted(id string) {
	s.smu.Lock()
	st := s.streams[id]
	s.smu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	if !st.isAccepted {
		st.isAccepted = true
		close(st.accepted)
	}
	st.mu.Unlock()
}

// streamed returns the stream of an accepted clip, after waiting for its
// attempt to end, and the object that attempt completed (nil if it did not:
// the queue then resumes the multipart upload from the recorded parts).
func (s *Service) streamed(ctx context.Context, camera, clip string) (*stream, *objstore.Object, error) {
	s.smu.Lock()
	var st *stream
	for _, o := range s.streams {
		if o.m.Camera == camera && o.m.Clip == clip {
			st = o
			break
		}
	}
	s.smu.Unlock()
	if st == nil {
		return nil, nil, nil
	}
	st.mu.Lock()
	running, done, accepted := st.running, st.done, st.isAccepted
	st.mu.Unlock()
	if !accepted {
		return nil, nil, nil // another upload of the same clip: Accept drops it
	}
	if running {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	st.mu.Lock()
	obj := st.obj
	st.mu.Unlock()
	return st, obj, nil
}

// forgetStream drops a finished stream from memory.
func (s *Service) forgetStream(st *stream) {
	s.smu.Lock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
	}
	s.smu.Unlock()
}

// dropStream stops the upload of a clip that will never be accepted through
// tus upload id, aborts its multipart upload and forgets its records. If
// the store cannot be reached the row stays, and the next sweep retries.
func (s *Service) dropStream(ctx context.Context, id, why string) {
	if id == "" {
		return
	}
	s.smu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	s.smu.Unlock()
	if st != nil {
		st.mu.Lock()
		st.dead = true
		running, done, cancel := st.running, st.done, st.cancel
		st.mu.Unlock()
		if running {
			cancel()
			<-done
		}
	}
	ctx = context.WithoutCancel(ctx)
	var camera, clip, key, uploadID string
	if err := s.db.QueryRowContext(ctx, `SELECT camera, clip, object_key, upload_id FROM early_uploads WHERE tus_id=?`, id).Scan(&camera, &clip, &key, &uploadID); err != nil {
		return // nothing was recorded
	}
	if ss, ok := s.store.(streamStore); ok && uploadID != "" {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := ss.Abort(actx, key, uploadID)
		cancel()
		if err != nil {
			s.log.Warn("could not abort an upload started while its clip arrived; will retry", "camera", camera, "clip", clip, "err", err)
			return
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM upload_parts WHERE camera=? AND clip=? AND upload_id=?`, camera, clip, uploadID); err != nil {
		return
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM early_uploads WHERE tus_id=?`, id); err != nil {
		return
	}
	if tx.Commit() == nil {
		s.log.Info("upload started while a clip arrived was aborted", "camera", camera, "clip", clip, "why", why)
	}
}

// sweepStreams cleans up what a crash can leave of early uploads, and on
// its first success lets clips stream. Rows whose tus upload is gone
// (accepted clips have none: Accept deletes the row) are dropped. At the
// start only, before any upload of this run can have begun, every
// multipart upload on the key of a queued clip or an early upload that no
// row records is aborted: one created just before a crash, before its id
// was recorded.
func (s *Service) sweepStreams(ctx context.Context) {
	ss, ok := s.store.(streamStore)
	if !ok {
		return
	}
	s.smu.Lock()
	first := s.streamCtx == nil
	s.smu.Unlock()
	switch {
	case !first && time.Since(s.lastSweep) < sweepEvery:
		return
	case first && !s.lastSweep.IsZero() && time.Since(s.lastSweep) < streamRetry:
		return // the store did not answer a moment ago
	}
	s.lastSweep = time.Now()
	if err := s.sweepGone(ctx); err != nil {
		s.log.Warn("could not look for abandoned early uploads", "err", err)
		return
	}
	if first {
		if err := s.sweepKeys(ctx, ss); err != nil {
			s.log.Warn("could not look for unrecorded multipart uploads; clips are uploaded once complete until it succeeds", "err", err)
			return
		}
		s.smu.Lock()
		s.streamCtx = ctx
		s.smu.Unlock()
	}
}

// sweepGone drops the rows of early uploads whose tus upload is gone. The
// upload's files are checked before the row is read: ingest removes them
// only after Accept has returned, and an accepted clip's row was deleted in
// Accept's transaction, so a row found after its files are gone is a
// leftover.
func (s *Service) sweepGone(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT tus_id FROM early_uploads`)
	if err != nil {
		return err
	}
	ids, err := sqlitedb.Strings(rows)
	if err != nil {
		return err
	}
	tusDir := filepath.Join(s.dir, uploadsDir)
	for _, id := range ids {
		if ingest.TusUploadExists(tusDir, id) {
			continue
		}
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM early_uploads WHERE tus_id=?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			s.dropStream(ctx, id, "its camera upload is gone")
		}
	}
	return nil
}

// sweepKeys aborts multipart uploads that no row records on the keys this
// gateway may have started them on.
func (s *Service) sweepKeys(ctx context.Context, ss streamStore) error {
	// A queued clip of one part has had no multipart upload, unless one is
	// recorded (the part size was smaller when it was started).
	rows, err := s.db.QueryContext(ctx, `SELECT object_key FROM clips WHERE state=? AND (size > ? OR upload_id != '') UNION SELECT object_key FROM early_uploads`, stateQueued, ss.PartSize())
	if err != nil {
		return err
	}
	keys, err := sqlitedb.Strings(rows)
	if err != nil {
		return err
	}
	for _, key := range keys {
		pending, err := ss.Uploads(ctx, key)
		if err != nil {
			return err
		}
		for _, u := range pending {
			var n int
			if err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM clips WHERE object_key=? AND upload_id=?) + (SELECT count(*) FROM early_uploads WHERE object_key=? AND upload_id=?)`,
				key, u.UploadID, key, u.UploadID).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			if err := ss.Abort(ctx, key, u.UploadID); err != nil {
				return err
			}
			s.log.Info("aborted a multipart upload no clip records (left by a stop before its id was saved)", "key", key, "initiated", u.Initiated)
		}
	}
	return nil
}

// stopStreams ends streaming when Run returns and waits for the attempts,
// which stop with Run's context; their uploads stay resumable.
func (s *Service) stopStreams() {
	s.smu.Lock()
	s.streamCtx = nil
	s.smu.Unlock()
	s.streamWG.Wait()
}
