package evidence

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// Run uploads queued clips, applies retention changes to stored objects,
// and signs and stores checkpoints, until ctx ends. Store outages are
// retried with capped backoff; the clips wait on disk meanwhile.
func (s *Service) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	s.ensureBucket(ctx)
	defer s.stopStreams()
	for {
		s.sweepStreams(ctx)
		s.maybeCheckpoint(ctx, false)
		next := s.uploadQueued(ctx)
		s.applyHolds(ctx)
		s.uploadCheckpoints(ctx)
		wait := time.Minute
		if !next.IsZero() {
			wait = max(time.Until(next), 10*time.Millisecond)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-s.wake:
		case <-timer.C:
		case <-tick.C:
		}
		timer.Stop()
	}
}

// ensureBucket checks the bucket once at start so a misconfigured store is
// reported at once rather than at the first clip.
func (s *Service) ensureBucket(ctx context.Context) {
	if err := s.store.CheckBucket(ctx); err != nil {
		s.log.Error("evidence store not usable yet (vigil evidence init-bucket creates a locked bucket)", "err", err)
	}
}

type queued struct {
	camera, clip, site, key, path, sha256, category, uploadID string
	size                                                      int64
	start, end, received, retain                              time.Time
	idx                                                       int64
	hold                                                      bool
	attempts                                                  int
}

// uploadQueued uploads what is due, evidential first, and returns when the
// next retry is due (zero: nothing waiting).
func (s *Service) uploadQueued(ctx context.Context) time.Time {
	for ctx.Err() == nil {
		now := s.cfg.Now()
		var q queued
		var start, end, received, retain, nextAttempt int64
		err := s.db.QueryRowContext(ctx, `SELECT camera, clip, site, object_key, spool_path, sha256, category, upload_id, size,
			start_ms, end_ms, received_ms, retain_until_ms, idx, legal_hold, attempts, next_attempt_ms
			FROM clips WHERE state=? ORDER BY next_attempt_ms > ?, category = ? DESC, received_ms LIMIT 1`, stateQueued, ms(now), Evidential).
			Scan(&q.camera, &q.clip, &q.site, &q.key, &q.path, &q.sha256, &q.category, &q.uploadID, &q.size,
				&start, &end, &received, &retain, &q.idx, &q.hold, &q.attempts, &nextAttempt)
		if err != nil {
			return time.Time{} // sql.ErrNoRows: nothing queued; other errors are retried next round
		}
		if nextAttempt > ms(now) {
			return fromMS(nextAttempt)
		}
		q.start, q.end, q.received, q.retain = fromMS(start), fromMS(end), fromMS(received), fromMS(retain)
		if err := s.upload(ctx, q); err != nil {
			if ctx.Err() != nil {
				return time.Time{}
			}
			s.uploadFailed(ctx, q, err)
		} else {
			s.uploadOK()
		}
	}
	return time.Time{}
}

func (s *Service) upload(ctx context.Context, q queued) error {
	// A clip that arrives after its retention has already run out (a camera
	// back after weeks away) is still stored, entered in the ledger and
	// locked, for a day: the sweeper then deletes it by policy, in the open.
	if floor := s.cfg.Now().Add(minLock); q.retain.Before(floor) {
		q.retain = floor
	}
	st, streamed, err := s.streamed(ctx, q.camera, q.clip)
	if err != nil {
		return err
	}
	var obj objstore.Object
	if streamed != nil {
		obj = *streamed
	} else {
		if st != nil {
			s.forgetStream(st) // it stopped short: resume its upload from here
		}
		if obj, err = s.storeFromSpool(ctx, q); err != nil {
			return err
		}
	}
	// Verify what the store holds before the only other copy goes, and
	// read the protection the object has, which is what it was created
	// with: a clip that became evidential since (while it streamed, or
	// before a restart resumed its upload) gets the rest from applyHolds.
	// One HEAD does both; Verify says what is wrong when something is.
	o, err := s.store.Stat(ctx, q.key)
	if err != nil || o.Size != q.size || !strings.EqualFold(o.SHA256, q.sha256) {
		if verr := s.store.Verify(ctx, q.key, q.size, q.sha256, false); verr != nil {
			err = verr
		}
		if err == nil {
			err = fmt.Errorf("the store reports %d bytes and sha256 %s", o.Size, o.SHA256)
		}
		return fmt.Errorf("evidence: verify %s/%s after upload: %w", q.camera, q.clip, err)
	}
	storeRetain := q.retain
	if o.RetainUntil.Before(q.retain.Truncate(time.Second)) {
		storeRetain = o.RetainUntil
	}
	now := s.cfg.Now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE clips SET state=?, uploaded_ms=?, version_id=?, spool_path='', upload_id='', last_error='',
		store_retain_until_ms=?, store_legal_hold=? WHERE camera=? AND clip=?`,
		stateUploaded, ms(now), obj.VersionID, ms(storeRetain), b2i(o.LegalHold), q.camera, q.clip); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM upload_parts WHERE camera=? AND clip=?`, q.camera, q.clip); err != nil {
		return err
	}
	detail := fmt.Sprintf("stored as %s (version %s), %s retention until %s", q.key, obj.VersionID, o.Mode, storeRetain.Format(time.RFC3339))
	if o.LegalHold {
		detail += ", legal hold"
	}
	if streamed != nil {
		detail += "; uploaded while it arrived, completed after its ledger entry"
	}
	if err := custody(ctx, tx, q.camera, q.clip, now, "uploaded", detail); err != nil {
		return err
	}
	if err := custody(ctx, tx, q.camera, q.clip, now, "verified", fmt.Sprintf("store reports %d bytes and sha256 %s", q.size, q.sha256)); err != nil {
		return err
	}
	if err := custody(ctx, tx, q.camera, q.clip, now, "local copy deleted", "after the stored copy was verified"); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if st != nil {
		s.forgetStream(st)
	}
	// The row now says uploaded: removing the file is safe, and a crash just
	// before it leaves an orphan file, never a lost clip.
	if err := os.Remove(q.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("could not delete an uploaded clip's local copy", "path", q.path, "err", err)
	}
	s.log.Info("clip uploaded", "camera", q.camera, "clip", q.clip, "key", q.key, "bytes", q.size)
	return nil
}

// storeFromSpool uploads a clip from its local copy, resuming the
// multipart upload recorded on its row (by an earlier attempt, or by a
// stream that stopped short).
func (s *Service) storeFromSpool(ctx context.Context, q queued) (objstore.Object, error) {
	// A stream may have recorded an upload since the row was read.
	if err := s.db.QueryRowContext(ctx, `SELECT upload_id FROM clips WHERE camera=? AND clip=?`, q.camera, q.clip).Scan(&q.uploadID); err != nil {
		return objstore.Object{}, fmt.Errorf("evidence: upload %s/%s: %w", q.camera, q.clip, err)
	}
	if q.uploadID != "" {
		// An earlier attempt may have completed the object just before the
		// gateway stopped, with the row still saying queued. Storing it
		// again would make a second version: take the one there once its
		// bytes are re-read and found to be the clip's.
		if o, err := s.store.Stat(ctx, q.key); err == nil && o.Size == q.size && strings.EqualFold(o.SHA256, q.sha256) &&
			s.store.Verify(ctx, q.key, q.size, q.sha256, true) == nil {
			s.log.Info("clip found already stored by an interrupted upload", "camera", q.camera, "clip", q.clip, "key", q.key)
			return o, nil
		}
	}
	f, err := os.Open(q.path)
	if err != nil {
		return objstore.Object{}, fmt.Errorf("evidence: upload %s/%s: local copy: %w", q.camera, q.clip, err)
	}
	defer f.Close()
	resume := objstore.Resume{UploadID: q.uploadID}
	if q.uploadID != "" {
		if resume.Parts, err = s.parts(ctx, q.camera, q.clip, q.uploadID); err != nil {
			return objstore.Object{}, err
		}
	}
	opts := objstore.PutOptions{SHA256: q.sha256, ContentType: "application/octet-stream",
		Mode: objstore.Governance, RetainUntil: q.retain, LegalHold: q.hold,
		Meta: clipMeta(q.camera, q.clip, q.site, q.start, q.end, q.category)}
	opts.Meta["ledger-index"], opts.Meta["received"] = strconv.FormatInt(q.idx, 10), q.received.Format(time.RFC3339)
	obj, err := s.store.Upload(ctx, q.key, f, q.size, opts, resume, &progress{s: s, ctx: ctx, camera: q.camera, clip: q.clip})
	if err != nil {
		return objstore.Object{}, fmt.Errorf("evidence: upload %s/%s: %w", q.camera, q.clip, err)
	}
	return obj, nil
}

// clipMeta is the user metadata every stored clip carries. A clip uploaded
// after its ledger entry also carries "ledger-index" and "received" (see
// "Binding object and ledger entry" in stream.go).
func clipMeta(camera, clip, site string, start, end time.Time, category string) map[string]string {
	return map[string]string{"camera": camera, "clip": clip, "site": site,
		"start": start.Format(time.RFC3339), "end": end.Format(time.RFC3339), "category": category}
}

func (s *Service) uploadFailed(ctx context.Context, q queued, err error) {
	attempts := q.attempts + 1
	backoff := min(time.Duration(1<<min(attempts, 20))*time.Second, s.cfg.UploadRetryMax)
	backoff = backoff/2 + rand.N(backoff/2+1) // jitter: many gateways must not retry in step
	now := s.cfg.Now()
	if _, dberr := s.db.ExecContext(ctx, `UPDATE clips SET attempts=?, next_attempt_ms=?, last_error=? WHERE camera=? AND clip=?`,
		attempts, ms(now.Add(backoff)), err.Error(), q.camera, q.clip); dberr != nil {
		s.log.Error("could not record an upload failure", "err", dberr)
	}
	s.mu.Lock()
	changed := s.storeErr == nil || s.storeErr.Error() != err.Error()
	if s.storeErr == nil {
		s.storeDown = now
	}
	s.storeErr = err
	down := now.Sub(s.storeDown)
	s.mu.Unlock()
	if changed {
		s.log.Warn("upload failed; clips stay queued on disk", "camera", q.camera, "clip", q.clip, "attempt", attempts, "retry_in", backoff.Round(time.Second), "err", err)
	}
	if down >= 5*time.Minute {
		s.alert("store", "evidence_store_down", q.site, fmt.Sprintf("footage uploads have failed for %s: %v; clips are kept on the gateway's disk until the store answers", down.Round(time.Second), err))
	}
}

func (s *Service) uploadOK() {
	s.mu.Lock()
	was := s.storeErr
	s.storeErr = nil
	s.mu.Unlock()
	if was != nil {
		s.log.Info("evidence store answering again")
	}
}

func (s *Service) parts(ctx context.Context, camera, clip, uploadID string) ([]objstore.Part, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT number, size, etag, sha256 FROM upload_parts WHERE camera=? AND clip=? AND upload_id=? ORDER BY number`, camera, clip, uploadID)
	if err != nil {
		return nil, err
	}
	return sqlitedb.Collect(rows, func(sc sqlitedb.Scanner) (p objstore.Part, err error) {
		err = sc.Scan(&p.Number, &p.Size, &p.ETag, &p.SHA256)
		return p, err
	})
}

// progress persists a multipart upload's id and finished parts as they
// happen, so an upload interrupted by a crash resumes without re-sending them.
type progress struct {
	s            *Service
	ctx          context.Context
	camera, clip string
	uploadID     string
}

func (p *progress) Started(uploadID string) error {
	p.uploadID = uploadID
	tx, err := p.s.db.BeginTx(p.ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(p.ctx, `UPDATE clips SET upload_id=? WHERE camera=? AND clip=?`, uploadID, p.camera, p.clip); err != nil {
		return err
	}
	if _, err := tx.ExecContext(p.ctx, `DELETE FROM upload_parts WHERE camera=? AND clip=? AND upload_id!=?`, p.camera, p.clip, uploadID); err != nil {
		return err
	}
	return tx.Commit()
}

func (p *progress) PartDone(pt objstore.Part) error {
	_, err := p.s.db.ExecContext(p.ctx, `INSERT INTO upload_parts(camera, clip, upload_id, number, size, etag, sha256) VALUES(?,?,?,?,?,?,?)
		ON CONFLICT(camera, clip, number) DO UPDATE SET upload_id=excluded.upload_id, size=excluded.size, etag=excluded.etag, sha256=excluded.sha256`,
		p.camera, p.clip, p.uploadID, pt.Number, pt.Size, pt.ETag, pt.SHA256)
	return err
}

// minLock is the shortest retention a clip is stored under.
const minLock = 24 * time.Hour

// applyHolds brings stored objects' retention and legal hold up to what the
// clips' rows say (footage made evidential after it was uploaded).
func (s *Service) applyHolds(ctx context.Context) {
	rows, err := s.db.QueryContext(ctx, `SELECT camera, clip, object_key, retain_until_ms, legal_hold, store_retain_until_ms, store_legal_hold
		FROM clips WHERE state=? AND (retain_until_ms > store_retain_until_ms OR legal_hold != store_legal_hold)`, stateUploaded)
	if err != nil {
		return
	}
	type todo struct {
		camera, clip, key   string
		retain, storeRetain int64
		hold, storeHold     bool
	}
	var list []todo
	for rows.Next() {
		var t todo
		if rows.Scan(&t.camera, &t.clip, &t.key, &t.retain, &t.hold, &t.storeRetain, &t.storeHold) == nil {
			list = append(list, t)
		}
	}
	rows.Close()
	for _, t := range list {
		if t.retain > t.storeRetain {
			if err := s.store.ExtendRetention(ctx, t.key, objstore.Governance, fromMS(t.retain)); err != nil {
				s.log.Warn("could not extend a stored clip's retention; will retry", "key", t.key, "err", err)
				continue
			}
		}
		if t.hold != t.storeHold {
			if err := s.store.SetLegalHold(ctx, t.key, t.hold); err != nil {
				s.log.Warn("could not set a stored clip's legal hold; will retry", "key", t.key, "err", err)
				continue
			}
		}
		now := s.cfg.Now()
		if _, err := s.db.ExecContext(ctx, `UPDATE clips SET store_retain_until_ms=?, store_legal_hold=? WHERE camera=? AND clip=?`,
			t.retain, b2i(t.hold), t.camera, t.clip); err != nil {
			continue
		}
		custody(ctx, s.db, t.camera, t.clip, now, "store retention", fmt.Sprintf("stored object %s: retention until %s, legal hold %v", t.key, fromMS(t.retain).Format(time.RFC3339), t.hold))
	}
}

// maybeCheckpoint signs a checkpoint when CheckpointEvery entries have been
// added since the last one, or (force) whenever the ledger has grown, or when
// the last is older than CheckpointInterval.
func (s *Service) maybeCheckpoint(ctx context.Context, force bool) {
	size, err := s.ledger.Size(ctx)
	if err != nil || size == 0 {
		return
	}
	last, ok, err := s.ledger.Latest(ctx)
	if err != nil {
		return
	}
	due := force || !ok || size-last.Size >= uint64(s.cfg.CheckpointEvery) || s.cfg.Now().Sub(last.Time) >= s.cfg.CheckpointInterval
	if !due || (ok && last.Size == size) {
		return
	}
	cp, made, err := s.ledger.Checkpoint(ctx, s.cfg.Now())
	if err != nil {
		s.log.Error("could not sign a ledger checkpoint", "err", err)
		return
	}
	if made {
		s.log.Info("ledger checkpoint signed", "size", cp.Size)
		s.Wake()
	}
}

// CheckpointKey is where a checkpoint of the given size is stored.
func CheckpointKey(size uint64) string { return fmt.Sprintf("checkpoints/%020d", size) }

// uploadCheckpoints stores every signed checkpoint not yet in the store,
// under COMPLIANCE retention: nobody, not even the store's administrator,
// can remove or shorten it. Checkpoints go up in order and the first failure
// stops the round, so those stored are always the oldest ones: only the
// checkpoints after the largest stored need reading.
func (s *Service) uploadCheckpoints(ctx context.Context) {
	stored, err := s.storedCheckpointSize(ctx)
	if err != nil {
		return
	}
	cps, err := s.ledger.CheckpointsAfter(ctx, stored)
	if err != nil {
		return
	}
	for _, cp := range cps {
		key := CheckpointKey(cp.Size)
		err := s.store.PutSmall(ctx, key, cp.Note, objstore.PutOptions{ContentType: "text/plain; charset=utf-8", Mode: objstore.Compliance,
			RetainUntil: cp.Time.Add(s.cfg.CheckpointRetention), Meta: map[string]string{"ledger-size": strconv.FormatUint(cp.Size, 10)}})
		if err != nil {
			s.log.Warn("could not store a checkpoint; will retry", "size", cp.Size, "err", err)
			return
		}
		s.db.ExecContext(ctx, `INSERT INTO checkpoint_objects(size, key, uploaded_ms) VALUES(?,?,?) ON CONFLICT DO NOTHING`, cp.Size, key, ms(s.cfg.Now()))
	}
}

// storedCheckpointSize is the size of the largest checkpoint in the store.
func (s *Service) storedCheckpointSize(ctx context.Context) (uint64, error) {
	var size int64
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(size), 0) FROM checkpoint_objects`).Scan(&size)
	return uint64(size), err
}
