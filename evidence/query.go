package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// Clip is one clip as the gateway holds it.
type Clip struct {
	Camera      string    `json:"camera"`
	Clip        string    `json:"clip"`
	Site        string    `json:"site"`
	Wearer      string    `json:"wearer"`
	Index       int64     `json:"ledger_index"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Received    time.Time `json:"received"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Ingest      string    `json:"ingest"`
	ObjectKey   string    `json:"object_key"`
	State       string    `json:"state"` // queued, uploaded, deleted
	Category    string    `json:"category"`
	RetainUntil time.Time `json:"retain_until"`
	LegalHold   bool      `json:"legal_hold"`
	Uploaded    time.Time `json:"uploaded,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Incidents   []string  `json:"incidents"`
}

// Deleted reports whether the sweeper deleted the clip's footage (its
// record and ledger entry stay).
func (c Clip) Deleted() bool { return c.State == stateDeleted }

// Filter selects clips; zero fields match everything.
type Filter struct {
	Camera   string
	From, To time.Time // clips overlapping [From, To]
	Incident string
}

const clipCols = `camera, clip, site, wearer, idx, start_ms, end_ms, received_ms, size, sha256, ingest, object_key, state, category,
	retain_until_ms, legal_hold, uploaded_ms, last_error`

func scanClip(sc interface{ Scan(...any) error }) (Clip, error) {
	var c Clip
	var start, end, recv, retain, up int64
	err := sc.Scan(&c.Camera, &c.Clip, &c.Site, &c.Wearer, &c.Index, &start, &end, &recv, &c.Size, &c.SHA256, &c.Ingest,
		&c.ObjectKey, &c.State, &c.Category, &retain, &c.LegalHold, &up, &c.LastError)
	c.Start, c.End, c.Received, c.RetainUntil, c.Uploaded = fromMS(start), fromMS(end), fromMS(recv), fromMS(retain), fromMS(up)
	return c, err
}

// List returns the clips matching f, in ledger order.
func (s *Service) List(ctx context.Context, f Filter) ([]Clip, error) {
	q := `SELECT ` + clipCols + ` FROM clips WHERE 1=1`
	var args []any
	if f.Camera != "" {
		q += ` AND camera=?`
		args = append(args, f.Camera)
	}
	if !f.From.IsZero() {
		q += ` AND end_ms >= ?`
		args = append(args, ms(f.From))
	}
	if !f.To.IsZero() {
		q += ` AND start_ms <= ?`
		args = append(args, ms(f.To))
	}
	if f.Incident != "" {
		q += ` AND EXISTS (SELECT 1 FROM clip_incidents i WHERE i.camera=clips.camera AND i.clip=clips.clip AND i.incident=?)`
		args = append(args, f.Incident)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY idx`, args...)
	if err != nil {
		return nil, fmt.Errorf("evidence: list: %w", err)
	}
	out, err := sqlitedb.Collect(rows, scanClip)
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Incidents, err = s.incidents(ctx, out[i].Camera, out[i].Clip); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ErrNotFound is returned for a clip the gateway does not hold.
var ErrNotFound = errors.New("evidence: no such clip")

// Get returns one clip.
func (s *Service) Get(ctx context.Context, camera, clip string) (Clip, error) {
	c, err := scanClip(s.db.QueryRowContext(ctx, `SELECT `+clipCols+` FROM clips WHERE camera=? AND clip=?`, camera, clip))
	if errors.Is(err, sql.ErrNoRows) {
		return Clip{}, fmt.Errorf("%w: %s/%s", ErrNotFound, camera, clip)
	}
	if err != nil {
		return Clip{}, err
	}
	c.Incidents, err = s.incidents(ctx, camera, clip)
	return c, err
}

func (s *Service) incidents(ctx context.Context, camera, clip string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT incident FROM clip_incidents WHERE camera=? AND clip=? ORDER BY incident`, camera, clip)
	if err != nil {
		return nil, err
	}
	return sqlitedb.Strings(rows)
}

// Event is one step in a clip's chain of custody.
type Event struct {
	At           time.Time
	Camera, Clip string
	What, Detail string
}

// Custody returns a clip's chain of custody, oldest first.
func (s *Service) Custody(ctx context.Context, camera, clip string) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at_ms, what, detail FROM custody WHERE camera=? AND clip=? ORDER BY id`, camera, clip)
	if err != nil {
		return nil, err
	}
	return sqlitedb.Collect(rows, func(sc sqlitedb.Scanner) (Event, error) {
		e := Event{Camera: camera, Clip: clip}
		var at int64
		err := sc.Scan(&at, &e.What, &e.Detail)
		e.At = fromMS(at)
		return e, err
	})
}

// Status is the state of the evidence path at a glance.
type Status struct {
	Clips               int64
	Backlog             int64 // clips waiting for the store
	BacklogBytes        int64
	OldestQueued        time.Time // received time of the oldest clip not yet stored
	Evidential          int64
	Quarantined         int64
	Announced           int64 // clips a camera announced that have not arrived
	LedgerSize          uint64
	LastCheckpoint      time.Time
	CheckpointSize      uint64
	UnstoredCheckpoints int64
	StoreError          string // the last upload error while uploads are failing
}

// Status reports backlog, quarantine and checkpoint state.
func (s *Service) Status(ctx context.Context) (Status, error) {
	var st Status
	var oldest sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(state=?),0), coalesce(sum(CASE WHEN state=? THEN size ELSE 0 END),0),
		min(CASE WHEN state=? THEN received_ms END), coalesce(sum(category=?),0) FROM clips`,
		stateQueued, stateQueued, stateQueued, Evidential).Scan(&st.Clips, &st.Backlog, &st.BacklogBytes, &oldest, &st.Evidential)
	if err != nil {
		return st, fmt.Errorf("evidence: status: %w", err)
	}
	if oldest.Valid {
		st.OldestQueued = fromMS(oldest.Int64)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM quarantine), (SELECT count(*) FROM announced)`).Scan(&st.Quarantined, &st.Announced); err != nil {
		return st, err
	}
	if st.LedgerSize, err = s.ledger.Size(ctx); err != nil {
		return st, err
	}
	cp, ok, err := s.ledger.Latest(ctx)
	if err != nil {
		return st, err
	}
	if ok {
		st.LastCheckpoint, st.CheckpointSize = cp.Time, cp.Size
	}
	stored, err := s.storedCheckpointSize(ctx)
	if err != nil {
		return st, err
	}
	unstored, err := s.ledger.CheckpointsAfter(ctx, stored)
	if err != nil {
		return st, err
	}
	st.UnstoredCheckpoints = int64(len(unstored))
	s.mu.Lock()
	if s.storeErr != nil {
		st.StoreError = s.storeErr.Error()
	}
	s.mu.Unlock()
	if st.StoreError == "" {
		// Another process (the CLI) sees the last recorded failure instead.
		s.db.QueryRowContext(ctx, `SELECT last_error FROM clips WHERE state=? AND last_error!='' ORDER BY next_attempt_ms DESC LIMIT 1`, stateQueued).Scan(&st.StoreError)
	}
	return st, nil
}

// Quarantined is a clip kept apart because its bytes did not match.
type Quarantined struct {
	Camera, Clip, Declared, Actual, Path string
	Size                                 int64
	At                                   time.Time
}

// Quarantine lists the clips in quarantine.
func (s *Service) Quarantine(ctx context.Context) ([]Quarantined, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT camera, clip, declared, actual, path, size, at_ms FROM quarantine ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return sqlitedb.Collect(rows, func(sc sqlitedb.Scanner) (q Quarantined, err error) {
		var at int64
		err = sc.Scan(&q.Camera, &q.Clip, &q.Declared, &q.Actual, &q.Path, &q.Size, &at)
		q.At = fromMS(at)
		return q, err
	})
}
