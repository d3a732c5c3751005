package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-gw/vigil/evidence/objstore"
)

// Retention, as the evidence service keeps it:
//
//   - non-evidential footage is kept NonEvidential after capture (31 days),
//     under GOVERNANCE retention in the store;
//   - evidential footage (linked to an incident) is under legal hold while
//     any of its incidents is open, and kept Evidential after the last of
//     them is closed;
//   - a legal hold set by a person lasts until a person lifts it.
//
// The clips row's legal_hold column is the effective hold (an open incident
// or a person's hold); applyHolds brings the stored object up to it. The
// ledger is never changed: a deleted clip's entry stays, and the deletions
// table says when and under which policy the footage went.

// stateDeleted is a clip whose footage the sweeper deleted.
const stateDeleted = "deleted"

// Errors of retention changes.
var (
	ErrNotExtended = errors.New("evidence: retention can only be extended")
	ErrDeleted     = errors.New("evidence: the footage was deleted under the retention policy")
)

const retentionSchema = `
CREATE TABLE IF NOT EXISTS holds (
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	set_ms INTEGER NOT NULL,
	by TEXT NOT NULL,
	reason TEXT NOT NULL,
	PRIMARY KEY (camera, clip)
);
CREATE TABLE IF NOT EXISTS incidents_closed (
	incident TEXT PRIMARY KEY,
	closed_ms INTEGER NOT NULL,
	by TEXT NOT NULL,
	reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deletions (
	camera TEXT NOT NULL,
	clip TEXT NOT NULL,
	at_ms INTEGER NOT NULL,
	policy TEXT NOT NULL,
	bypass INTEGER NOT NULL,
	PRIMARY KEY (camera, clip)
);
`

// effectiveHold is the SQL for "this clip must be held": a person's hold, or
// a linked incident that is not closed.
const effectiveHold = `(EXISTS (SELECT 1 FROM holds h WHERE h.camera=clips.camera AND h.clip=clips.clip)
	OR EXISTS (SELECT 1 FROM clip_incidents i WHERE i.camera=clips.camera AND i.clip=clips.clip
		AND NOT EXISTS (SELECT 1 FROM incidents_closed c WHERE c.incident=i.incident)))`

// refreshHold recomputes a clip's effective legal hold.
func refreshHold(ctx context.Context, q execer, camera, clip string) error {
	_, err := q.ExecContext(ctx, `UPDATE clips SET legal_hold=`+effectiveHold+` WHERE camera=? AND clip=?`, camera, clip)
	return err
}

// liveClip returns a clip that is still held (not deleted), for a change.
func (s *Service) liveClip(ctx context.Context, camera, clip string) (Clip, error) {
	c, err := s.Get(ctx, camera, clip)
	if err != nil {
		return c, err
	}
	if c.Deleted() {
		return c, fmt.Errorf("%w: %s/%s", ErrDeleted, camera, clip)
	}
	return c, nil
}

// SetLegalHold puts a clip under a person's legal hold: it cannot be deleted
// by anyone, whatever its retention date, until the hold is lifted.
func (s *Service) SetLegalHold(ctx context.Context, camera, clip, by, reason string) error {
	if _, err := s.liveClip(ctx, camera, clip); err != nil {
		return err
	}
	now := s.cfg.Now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO holds(camera, clip, set_ms, by, reason) VALUES(?,?,?,?,?)
			ON CONFLICT DO UPDATE SET set_ms=excluded.set_ms, by=excluded.by, reason=excluded.reason`, camera, clip, ms(now), by, reason); err != nil {
			return err
		}
		if err := refreshHold(ctx, tx, camera, clip); err != nil {
			return err
		}
		return custody(ctx, tx, camera, clip, now, "legal hold set", fmt.Sprintf("by %s: %s", by, reason))
	})
	if err != nil {
		return fmt.Errorf("evidence: legal hold %s/%s: %w", camera, clip, err)
	}
	s.Wake()
	return nil
}

// LiftLegalHold ends a person's legal hold. The clip stays held while an
// incident it is linked to is open.
func (s *Service) LiftLegalHold(ctx context.Context, camera, clip, by, reason string) error {
	if _, err := s.liveClip(ctx, camera, clip); err != nil {
		return err
	}
	now := s.cfg.Now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM holds WHERE camera=? AND clip=?`, camera, clip)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errors.New("no legal hold was set on it by a person")
		}
		if err := refreshHold(ctx, tx, camera, clip); err != nil {
			return err
		}
		return custody(ctx, tx, camera, clip, now, "legal hold lifted", fmt.Sprintf("by %s: %s", by, reason))
	})
	if err != nil {
		return fmt.Errorf("evidence: lift legal hold %s/%s: %w", camera, clip, err)
	}
	s.Wake()
	return nil
}

// ExtendRetention keeps a clip at least until until. Retention is never
// shortened, here as in the store.
func (s *Service) ExtendRetention(ctx context.Context, camera, clip string, until time.Time, by, reason string) error {
	c, err := s.liveClip(ctx, camera, clip)
	if err != nil {
		return err
	}
	if !until.After(c.RetainUntil) {
		return fmt.Errorf("%w: %s/%s is kept until %s; %s would shorten it", ErrNotExtended, camera, clip,
			c.RetainUntil.Format(time.RFC3339), until.UTC().Format(time.RFC3339))
	}
	now := s.cfg.Now()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE clips SET retain_until_ms=max(retain_until_ms, ?) WHERE camera=? AND clip=?`, ms(until), camera, clip); err != nil {
			return err
		}
		return custody(ctx, tx, camera, clip, now, "retention extended", fmt.Sprintf("until %s by %s: %s", until.UTC().Format(time.RFC3339), by, reason))
	})
	if err != nil {
		return fmt.Errorf("evidence: extend retention %s/%s: %w", camera, clip, err)
	}
	s.Wake()
	return nil
}

// ClipRef names one clip.
type ClipRef struct{ Camera, Clip string }

// CloseIncident records that an incident is closed (the investigation is
// over, or the footage was released): its footage is kept Evidential from
// now, and loses the incident's legal hold unless another open incident or a
// person's hold keeps it. It returns the clips concerned.
func (s *Service) CloseIncident(ctx context.Context, incident, by, reason string) ([]ClipRef, error) {
	if incident == "" {
		return nil, errors.New("evidence: close incident: the incident id is required")
	}
	now := s.cfg.Now()
	retain := now.Add(s.cfg.Evidential)
	var refs []ClipRef
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO incidents_closed(incident, closed_ms, by, reason) VALUES(?,?,?,?) ON CONFLICT DO NOTHING`,
			incident, ms(now), by, reason)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("incident %s is already closed", incident)
		}
		// Footage still to arrive for a window left open belongs to it only
		// up to now.
		if _, err := tx.ExecContext(ctx, `UPDATE windows SET to_ms=? WHERE incident=? AND (to_ms IS NULL OR to_ms > ?)`, ms(now), incident, ms(now)); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT i.camera, i.clip FROM clip_incidents i JOIN clips c ON c.camera=i.camera AND c.clip=i.clip
			WHERE i.incident=? AND c.state!=? ORDER BY c.idx`, incident, stateDeleted)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r ClipRef
			if err := rows.Scan(&r.Camera, &r.Clip); err != nil {
				rows.Close()
				return err
			}
			refs = append(refs, r)
		}
		rows.Close()
		for _, r := range refs {
			if _, err := tx.ExecContext(ctx, `UPDATE clips SET retain_until_ms=max(retain_until_ms, ?) WHERE camera=? AND clip=?`, ms(retain), r.Camera, r.Clip); err != nil {
				return err
			}
			if err := refreshHold(ctx, tx, r.Camera, r.Clip); err != nil {
				return err
			}
			if err := custody(ctx, tx, r.Camera, r.Clip, now, "incident closed", fmt.Sprintf("incident %s closed by %s (%s): kept until %s", incident, by, reason, retain.Format(time.RFC3339))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evidence: close incident %s: %w", incident, err)
	}
	s.Wake()
	return refs, nil
}

// IncidentClosed reports whether an incident was closed, and when.
func (s *Service) IncidentClosed(ctx context.Context, incident string) (time.Time, bool, error) {
	var at int64
	err := s.db.QueryRowContext(ctx, `SELECT closed_ms FROM incidents_closed WHERE incident=?`, incident).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	return fromMS(at), err == nil, err
}

// Deletion is one clip the sweeper dealt with: deleted, or refused by the
// store (Err) and left in place.
type Deletion struct {
	Camera, Clip, ObjectKey string
	Category                string
	Policy                  string // the rule that made it due, in words
	Bypass                  bool   // a GOVERNANCE bypass was used (non-evidential footage only)
	Err                     error
}

// Sweep deletes the stored footage whose retention has passed and that no
// hold keeps: from the store first, then the clip's record is marked deleted
// (its ledger entry stays). GOVERNANCE bypass is used only for non-evidential
// footage that is due by Vigil's policy while the store still protects it (a
// shorter policy than when it was stored), and is reported in the Deletion.
// Objects under legal hold in the store are never deleted.
func (s *Service) Sweep(ctx context.Context) ([]Deletion, error) {
	now := s.cfg.Now()
	rows, err := s.db.QueryContext(ctx, `SELECT camera, clip, object_key, category, retain_until_ms FROM clips
		WHERE state=? AND retain_until_ms <= ? AND NOT `+effectiveHold+` ORDER BY idx`, stateUploaded, ms(now))
	if err != nil {
		return nil, fmt.Errorf("evidence: sweep: %w", err)
	}
	var due []Deletion
	var retained []int64
	for rows.Next() {
		var d Deletion
		var until int64
		if err := rows.Scan(&d.Camera, &d.Clip, &d.ObjectKey, &d.Category, &until); err != nil {
			rows.Close()
			return nil, err
		}
		due, retained = append(due, d), append(retained, until)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range due {
		d := &due[i]
		d.Policy = s.policy(ctx, *d, fromMS(retained[i]))
		d.Err = s.store.Delete(ctx, d.ObjectKey, false)
		if errors.Is(d.Err, objstore.ErrLocked) && d.Category == NonEvidential {
			// Vigil's policy says the footage is due but the store still
			// protects it: only GOVERNANCE protection can be bypassed, and
			// a legal hold still refuses.
			d.Bypass, d.Err = true, s.store.Delete(ctx, d.ObjectKey, true)
		}
		if errors.Is(d.Err, objstore.ErrNotFound) {
			d.Err = nil // already gone (a crash after the store delete): finish the record
		}
		if d.Err != nil {
			s.log.Warn("retention sweep: the store refused a deletion", "camera", d.Camera, "clip", d.Clip, "err", d.Err)
			continue
		}
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE clips SET state=? WHERE camera=? AND clip=?`, stateDeleted, d.Camera, d.Clip); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO deletions(camera, clip, at_ms, policy, bypass) VALUES(?,?,?,?,?) ON CONFLICT DO NOTHING`,
				d.Camera, d.Clip, ms(now), d.Policy, b2i(d.Bypass)); err != nil {
				return err
			}
			detail := "deleted from the store under " + d.Policy
			if d.Bypass {
				detail += " (GOVERNANCE retention bypassed)"
			}
			return custody(ctx, tx, d.Camera, d.Clip, now, "deleted", detail)
		})
		if err != nil {
			return due, fmt.Errorf("evidence: sweep: record the deletion of %s/%s: %w", d.Camera, d.Clip, err)
		}
		s.log.Info("retention sweep deleted footage", "camera", d.Camera, "clip", d.Clip, "policy", d.Policy, "bypass", d.Bypass)
	}
	return due, nil
}

// policy says in words why a clip is due.
func (s *Service) policy(ctx context.Context, d Deletion, until time.Time) string {
	if d.Category == Evidential {
		var inc string
		var closed int64
		s.db.QueryRowContext(ctx, `SELECT c.incident, c.closed_ms FROM incidents_closed c JOIN clip_incidents i ON i.incident=c.incident
			WHERE i.camera=? AND i.clip=? ORDER BY c.closed_ms DESC LIMIT 1`, d.Camera, d.Clip).Scan(&inc, &closed)
		return fmt.Sprintf("evidential: %s after incident %s closed on %s (kept until %s)", days(s.cfg.Evidential), inc,
			fromMS(closed).Format(time.DateOnly), until.Format(time.RFC3339))
	}
	return fmt.Sprintf("non-evidential: %s after capture (kept until %s)", days(s.cfg.NonEvidential), until.Format(time.RFC3339))
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}

// Deleted is a clip the sweeper deleted.
type Deleted struct {
	Camera, Clip string
	At           time.Time
	Policy       string
	Bypass       bool
}

// Deletions lists the clips deleted under the retention policy between from
// and to (zero: unbounded), oldest first.
func (s *Service) Deletions(ctx context.Context, from, to time.Time) ([]Deleted, error) {
	hi := int64(1<<63 - 1)
	if !to.IsZero() {
		hi = ms(to)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT camera, clip, at_ms, policy, bypass FROM deletions WHERE at_ms >= ? AND at_ms <= ? ORDER BY at_ms`, ms(from), hi)
	if err != nil {
		return nil, fmt.Errorf("evidence: deletions: %w", err)
	}
	defer rows.Close()
	var out []Deleted
	for rows.Next() {
		var d Deleted
		var at int64
		if err := rows.Scan(&d.Camera, &d.Clip, &at, &d.Policy, &d.Bypass); err != nil {
			return nil, err
		}
		d.At = fromMS(at)
		out = append(out, d)
	}
	return out, rows.Err()
}

// inTx runs f in a transaction.
func (s *Service) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit()
}
