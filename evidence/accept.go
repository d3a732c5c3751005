package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/ledger"
)

// Admit is asked before a clip's bytes are stored (ingest.Sink).
func (s *Service) Admit(ctx context.Context, m ingest.Meta) error {
	cam, ok := s.cfg.Cameras.Camera(m.Camera)
	if !ok {
		return fmt.Errorf("%w: %s", ingest.ErrUnknownCamera, m.Camera)
	}
	if m.Size > s.cfg.MaxClipSize {
		return &ingest.MetaError{Field: "size", Problem: fmt.Sprintf("%d bytes is more than the %d a clip may be", m.Size, s.cfg.MaxClipSize)}
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM clips WHERE camera=? AND clip=?`, m.Camera, m.Clip).Scan(&n); err != nil {
		return fmt.Errorf("evidence: admit: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %s/%s", ingest.ErrDuplicate, m.Camera, m.Clip)
	}
	disk, err := DiskOf(s.dir)
	if err != nil {
		s.log.Warn("cannot read the state disk's usage", "err", err)
		return nil
	}
	used := disk.Used()
	if used < s.cfg.HighWater {
		return nil
	}
	// Above the high-water mark only footage an incident needs gets in.
	incidents, err := s.windowsFor(ctx, m.Camera, m.Start, m.End)
	if err != nil {
		return err
	}
	if len(incidents) > 0 {
		return nil
	}
	s.alert("highwater", "evidence_spool_full", cam.Site, fmt.Sprintf(
		"the state disk is %.0f%% full (high-water mark %.0f%%): new non-evidential clips are refused until uploads free space; evidential clips are still accepted", used*100, s.cfg.HighWater*100))
	return fmt.Errorf("%w: disk %.0f%% used", ingest.ErrFull, used*100)
}

// Accept enters a complete spooled clip (ingest.Sink): a clip whose bytes do
// not match the declared digest goes to quarantine with an alert and never
// into the ledger; otherwise the clip is appended to the ledger, queued for
// upload, and moved into the clip spool.
//
// The order makes a crash at any point recoverable: the ledger entry is
// committed first (while the file is still where ingest left it, so ingest
// hands it over again after a restart), then the clip's row, then the file
// is moved. Accept on a clip already in the ledger with the same digest
// finishes whatever steps are missing.
func (s *Service) Accept(ctx context.Context, sp ingest.Spooled) error {
	cam, ok := s.cfg.Cameras.Camera(sp.Camera)
	if !ok {
		return fmt.Errorf("%w: %s", ingest.ErrUnknownCamera, sp.Camera)
	}
	if sp.Digest != sp.SHA256 {
		// Abort whatever was uploaded while it arrived before the file
		// moves: a crash in between then finds the clip still to refuse.
		s.dropStream(ctx, sp.Upload, "its bytes do not match the declared digest")
		return s.quarantine(ctx, cam, sp)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM clips WHERE camera=? AND clip=?`, sp.Camera, sp.Clip).Scan(&n); err != nil {
		return fmt.Errorf("evidence: accept: %w", err)
	}
	if n > 0 {
		s.dropStream(ctx, sp.Upload, "the clip was already received")
		return fmt.Errorf("%w: %s/%s", ingest.ErrDuplicate, sp.Camera, sp.Clip)
	}
	// The received time was taken from our clock a moment ago (ingest
	// stamps it as the upload completes): if that clock is unsynchronised
	// now, the entry says so for good.
	unsync := s.cfg.ClockUnsynchronised != nil && s.cfg.ClockUnsynchronised()
	e, err := s.ledger.Append(ctx, ledger.Clip{Camera: sp.Camera, Clip: sp.Clip, Wearer: cam.Wearer, Site: cam.Site,
		Start: sp.Start, End: sp.End, Size: sp.Size, SHA256: sp.Digest, Received: sp.Received, Ingest: sp.Ingest, ClockUnsynchronised: unsync})
	if errors.Is(err, ledger.ErrDuplicate) {
		if e.SHA256 != sp.Digest {
			// The same clip id with other bytes: keep them apart, never replace.
			s.dropStream(ctx, sp.Upload, "the ledger holds other bytes under this clip id")
			return s.quarantine(ctx, cam, sp)
		}
		err = nil // a crash after the ledger commit: finish the job
	}
	if err != nil {
		return fmt.Errorf("evidence: accept %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	dst := filepath.Join(s.dir, clipsDir, sp.Camera+"_"+sp.Clip)
	incidents, err := s.windowsFor(ctx, sp.Camera, e.Start, e.End)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("evidence: accept: %w", err)
	}
	defer tx.Rollback()
	p, err := s.protectionOf(ctx, tx, e.Start, incidents)
	if err != nil {
		return fmt.Errorf("evidence: accept %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	category, retain, hold, closed := p.category, p.retain, p.hold, p.closed
	key := ObjectKey(e.Site, e.Camera, e.Clip.Clip, e.Start)
	// The multipart upload started while the clip arrived becomes the
	// clip's, in this transaction: after a crash the queue resumes it.
	uploadID, stale, err := s.takeEarlyUpload(ctx, tx, sp, e.Size, e.SHA256, key)
	if err != nil {
		return fmt.Errorf("evidence: accept %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO clips(camera, clip, idx, site, wearer, start_ms, end_ms, size, sha256, ingest, received_ms,
		object_key, spool_path, state, category, retain_until_ms, legal_hold, upload_id) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.Camera, e.Clip.Clip, e.Index, e.Site, e.Wearer, ms(e.Start), ms(e.End), e.Size, e.SHA256, e.Ingest, ms(e.Received),
		key, dst, stateQueued, category, retain, b2i(hold), uploadID); err != nil {
		return fmt.Errorf("evidence: accept %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	received := fmt.Sprintf("%s upload of %d bytes, sha256 %s computed on receipt matches the camera's", e.Ingest, e.Size, e.SHA256)
	if e.ClockUnsynchronised {
		received += "; the gateway's clock was not synchronised to a time source, so this time may be wrong"
	}
	if err := custody(ctx, tx, e.Camera, e.Clip.Clip, e.Received, "received", received); err != nil {
		return err
	}
	if err := custody(ctx, tx, e.Camera, e.Clip.Clip, now, "ledgered", fmt.Sprintf("ledger entry %d, entry hash %s", e.Index, e.Hash)); err != nil {
		return err
	}
	for i, inc := range incidents {
		if err := s.link(ctx, tx, e.Camera, e.Clip.Clip, inc, now); err != nil {
			return err
		}
		if err := custody(ctx, tx, e.Camera, e.Clip.Clip, now, "evidential", fmt.Sprintf("recorded in incident %s's window: %s", inc, s.keptWords(closed[i]))); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM announced WHERE camera=? AND clip=?`, e.Camera, e.Clip.Clip); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("evidence: accept %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	// The ledger entry and the clip are committed: a stream of it may now
	// complete its object. Streams of the same clip through other uploads
	// never will.
	for _, id := range stale {
		s.dropStream(ctx, id, "the clip was received through another upload")
	}
	if !slices.Contains(stale, sp.Upload) {
		s.markAccepted(sp.Upload)
	}
	if err := moveDurably(sp.Path, dst); err != nil {
		// The row points at dst; reconcile finds the file at its old place
		// only if ingest still has it, so say loudly that it is stuck.
		return fmt.Errorf("evidence: accept %s/%s: move into the spool: %w", sp.Camera, sp.Clip, err)
	}
	s.log.Info("clip accepted", "camera", e.Camera, "clip", e.Clip.Clip, "bytes", e.Size, "index", e.Index, "category", category, "ingest", e.Ingest)
	s.maybeCheckpoint(ctx, false)
	s.Wake()
	return nil
}

// protection is what footage gets when it is entered: its category, its
// retention (ms), its legal hold, and each incident's retention for it
// (0 while the incident is open).
type protection struct {
	category string
	retain   int64
	hold     bool
	closed   []int64
}

// protectionOf works out the protection of footage starting at start that
// falls in the given incidents' windows. Footage inside an incident's
// window is evidential: held while an incident is open, kept Evidential
// after the last one closed.
func (s *Service) protectionOf(ctx context.Context, q querier, start time.Time, incidents []string) (protection, error) {
	p := protection{category: NonEvidential, retain: ms(start.Add(s.cfg.NonEvidential)), closed: make([]int64, len(incidents))}
	for i, inc := range incidents {
		c, err := s.closedRetention(ctx, q, inc)
		if err != nil {
			return p, err
		}
		p.closed[i] = c
		p.category, p.retain, p.hold = Evidential, max(p.retain, c), p.hold || c == 0
	}
	return p, nil
}

// takeEarlyUpload moves the multipart upload streamed through sp's tus
// upload, if any, to the clip being entered: it returns its id and deletes
// its early_uploads row. An upload of other bytes or to another key (the
// camera moved site meanwhile) is not taken. stale lists the tus uploads
// whose early uploads must be dropped once the clip is committed: those of
// the same clip through other uploads, and one not taken.
func (s *Service) takeEarlyUpload(ctx context.Context, tx *sql.Tx, sp ingest.Spooled, size int64, sha256, key string) (uploadID string, stale []string, err error) {
	rows, err := tx.QueryContext(ctx, `SELECT tus_id, object_key, size, sha256, upload_id FROM early_uploads WHERE camera=? AND clip=?`, sp.Camera, sp.Clip)
	if err != nil {
		return "", nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, k, sum, up string
		var n int64
		if err := rows.Scan(&id, &k, &n, &sum, &up); err != nil {
			return "", nil, err
		}
		if id == sp.Upload && k == key && n == size && sum == sha256 {
			uploadID = up
		} else {
			stale = append(stale, id)
		}
	}
	if err := rows.Err(); err != nil {
		return "", nil, err
	}
	rows.Close()
	if _, err := tx.ExecContext(ctx, `DELETE FROM early_uploads WHERE tus_id=? AND NOT ?`, sp.Upload, slices.Contains(stale, sp.Upload)); err != nil {
		return "", nil, err
	}
	return uploadID, stale, nil
}

// quarantine keeps a clip whose bytes are not what the camera declared,
// apart from the evidence, and raises an alert: either the camera is faulty
// or the footage was changed on its way.
func (s *Service) quarantine(ctx context.Context, cam Camera, sp ingest.Spooled) error {
	now := s.cfg.Now()
	dst := filepath.Join(s.dir, quarDir, fmt.Sprintf("%s_%s_%d", sp.Camera, sp.Clip, now.UnixNano()))
	if err := moveDurably(sp.Path, dst); err != nil {
		return fmt.Errorf("evidence: quarantine %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO quarantine(camera, clip, declared, actual, size, path, at_ms) VALUES(?,?,?,?,?,?,?)`,
		sp.Camera, sp.Clip, sp.SHA256, sp.Digest, sp.Size, dst, ms(now)); err != nil {
		return fmt.Errorf("evidence: quarantine %s/%s: %w", sp.Camera, sp.Clip, err)
	}
	s.alert("mismatch:"+sp.Camera+"/"+sp.Clip, "clip_digest_mismatch", cam.Site, fmt.Sprintf(
		"clip %s from camera %s (%s) arrived with sha256 %s but the camera declared %s: kept in quarantine, not entered as evidence",
		sp.Clip, sp.Camera, cam.Wearer, sp.Digest, sp.SHA256))
	return fmt.Errorf("%w: %s/%s declared %s, received %s", ingest.ErrMismatch, sp.Camera, sp.Clip, sp.SHA256, sp.Digest)
}

// Announce records a camera's clip_ready, so a clip that was recorded but
// never arrives shows in the status.
func (s *Service) Announce(ctx context.Context, camera, clip, sha256 string, size int64, start, end time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO announced(camera, clip, sha256, size, start_ms, end_ms, at_ms)
		SELECT ?,?,?,?,?,?,? WHERE NOT EXISTS (SELECT 1 FROM clips WHERE camera=? AND clip=?)
		ON CONFLICT(camera, clip) DO NOTHING`, camera, clip, sha256, size, ms(start), ms(end), ms(s.cfg.Now()), camera, clip)
	if err != nil {
		return fmt.Errorf("evidence: announce %s/%s: %w", camera, clip, err)
	}
	return nil
}

// reconcile repairs what a crash can leave half done: ledger entries
// without a clip row are found again when ingest re-delivers them, so here
// only spool files that no row points at are reported.
func (s *Service) reconcile(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT camera, clip, spool_path FROM clips WHERE state=?`, stateQueued)
	if err != nil {
		return fmt.Errorf("evidence: reconcile: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var camera, clip, path string
		if err := rows.Scan(&camera, &clip, &path); err != nil {
			return err
		}
		if _, err := os.Stat(path); err != nil {
			s.log.Error("a queued clip's local copy is missing", "camera", camera, "clip", clip, "path", path, "err", err)
		}
	}
	return rows.Err()
}

// moveDurably renames a file and fsyncs the destination directory so the
// move survives a power cut. Both paths are on the state disk.
func moveDurably(src, dst string) error {
	if err := os.Rename(src, dst); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const (
	stateQueued   = "queued"
	stateUploaded = "uploaded"
)

// ObjectKey is where a clip is stored: by site, camera and capture date.
func ObjectKey(site, camera, clip string, start time.Time) string {
	return fmt.Sprintf("clips/%s/%s/%s/%s", site, camera, start.UTC().Format("2006/01/02"), clip)
}
