package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// MarkEvidential makes a camera's footage evidential for an incident: every
// clip overlapping [from, to] — those already stored (their retention is
// extended and a legal hold set on the stored object) and those still to
// arrive — is kept as evidence and linked to the incident. A zero to leaves
// the window open until CloseWindow. Calling it again is harmless.
func (s *Service) MarkEvidential(ctx context.Context, incident, camera string, from, to time.Time) error {
	if incident == "" || camera == "" {
		return fmt.Errorf("evidence: mark evidential: incident and camera are required")
	}
	var toMS any
	if !to.IsZero() {
		toMS = ms(to)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO windows(incident, camera, from_ms, to_ms, created_ms) VALUES(?,?,?,?,?)
		ON CONFLICT(incident, camera) DO UPDATE SET from_ms=min(from_ms, excluded.from_ms)`,
		incident, camera, ms(from), toMS, ms(s.cfg.Now())); err != nil {
		return fmt.Errorf("evidence: mark evidential %s %s: %w", incident, camera, err)
	}
	return s.applyWindow(ctx, incident, camera)
}

// CloseWindow ends an incident's open window at to (the alert's resolution
// plus the post-event margin, which the caller adds through PostEvent).
func (s *Service) CloseWindow(ctx context.Context, incident, camera string, resolved time.Time) error {
	to := resolved.Add(s.cfg.PostEvent)
	if _, err := s.db.ExecContext(ctx, `UPDATE windows SET to_ms=? WHERE incident=? AND camera=? AND (to_ms IS NULL OR to_ms < ?)`,
		ms(to), incident, camera, ms(to)); err != nil {
		return fmt.Errorf("evidence: close window %s %s: %w", incident, camera, err)
	}
	return s.applyWindow(ctx, incident, camera)
}

// PreEvent is how far before an alert footage becomes evidential.
func (s *Service) PreEvent() time.Duration { return s.cfg.PreEvent }

// applyWindow marks the clips already received inside a window.
func (s *Service) applyWindow(ctx context.Context, incident, camera string) error {
	var from int64
	var to sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT from_ms, to_ms FROM windows WHERE incident=? AND camera=?`, incident, camera).Scan(&from, &to); err != nil {
		return fmt.Errorf("evidence: window %s %s: %w", incident, camera, err)
	}
	end := int64(math.MaxInt64)
	if to.Valid {
		end = to.Int64
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT clip, start_ms FROM clips WHERE camera=? AND end_ms >= ? AND start_ms <= ?`, camera, from, end)
	if err != nil {
		return err
	}
	type hit struct {
		clip  string
		start int64
	}
	var hits []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.clip, &h.start); err != nil {
			rows.Close()
			return err
		}
		hits = append(hits, h)
	}
	rows.Close()
	now := s.cfg.Now()
	closed, err := s.closedRetention(ctx, tx, incident)
	if err != nil {
		return err
	}
	for _, h := range hits {
		if err := s.link(ctx, tx, camera, h.clip, incident, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE clips SET retain_until_ms=max(retain_until_ms, ?) WHERE camera=? AND clip=?`, closed, camera, h.clip); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE clips SET category=? WHERE camera=? AND clip=? AND category!=?`, Evidential, camera, h.clip, Evidential)
		if err != nil {
			return err
		}
		if err := refreshHold(ctx, tx, camera, h.clip); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			if err := custody(ctx, tx, camera, h.clip, now, "evidential", fmt.Sprintf("made evidential for incident %s: %s", incident, s.keptWords(closed))); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if len(hits) > 0 {
		s.log.Info("footage made evidential", "incident", incident, "camera", camera, "clips", len(hits))
		s.Wake() // the uploader applies holds to stored objects
	}
	return nil
}

// closedRetention is the retention an incident gives its footage: none (0)
// while it is open, when the legal hold keeps it; Evidential after its
// closing once it is closed.
func (s *Service) closedRetention(ctx context.Context, q querier, incident string) (int64, error) {
	var closed int64
	err := q.QueryRowContext(ctx, `SELECT closed_ms FROM incidents_closed WHERE incident=?`, incident).Scan(&closed)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return ms(fromMS(closed).Add(s.cfg.Evidential)), nil
}

// keptWords says how an incident keeps footage, for the custody log.
func (s *Service) keptWords(closedRetain int64) string {
	if closedRetain == 0 {
		return "legal hold while the incident is open"
	}
	return "incident already closed: kept until " + fromMS(closedRetain).Format(time.RFC3339)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// link records that a clip belongs to an incident.
func (s *Service) link(ctx context.Context, q execer, camera, clip, incident string, now time.Time) error {
	_, err := q.ExecContext(ctx, `INSERT INTO clip_incidents(camera, clip, incident, linked_ms) VALUES(?,?,?,?) ON CONFLICT DO NOTHING`,
		camera, clip, incident, ms(now))
	if err != nil {
		return fmt.Errorf("evidence: link %s/%s to %s: %w", camera, clip, incident, err)
	}
	return nil
}

// windowsFor returns the incidents whose windows footage of camera over
// [start, end] falls in: none means the footage is not evidential.
func (s *Service) windowsFor(ctx context.Context, camera string, start, end time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT incident FROM windows WHERE camera=? AND from_ms <= ? AND (to_ms IS NULL OR to_ms >= ?) ORDER BY incident`,
		camera, ms(end), ms(start))
	if err != nil {
		return nil, fmt.Errorf("evidence: windows: %w", err)
	}
	return sqlitedb.Strings(rows)
}
