package ledger

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrNotFound means no entry has the requested clip or index. Callers
	// tell a clip the ledger never saw from a failure to read it.
	ErrNotFound = errors.New("ledger: not found")
	// ErrDuplicate means the camera already has an entry for the clip id.
	// Append returns the existing entry with it, so a re-delivered clip can
	// be compared (same sha256: already recorded) rather than re-recorded.
	ErrDuplicate = errors.New("ledger: duplicate clip")
	// ErrInvalid means a clip's metadata breaks a body rule (see the package
	// documentation); the caller should quarantine the clip, not retry.
	ErrInvalid = errors.New("ledger: invalid clip")
)

// Clip is the canonical metadata of one accepted clip: what the ledger
// commits to. Its fields, in this order, are the fields of the entry body.
type Clip struct {
	Camera   string    `json:"camera"`
	Clip     string    `json:"clip"` // clip id, unique per camera
	Wearer   string    `json:"wearer"`
	Site     string    `json:"site"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"` // lowercase hex digest of the clip bytes
	Received time.Time `json:"received"`
	Ingest   string    `json:"ingest"` // IngestTUS or IngestDock
	// ClockUnsynchronised marks a clip received while the gateway's clock
	// was not synchronised to a time source, so Received may be wrong (the
	// camera's Start and End come from the camera's own clock). It is in
	// the body, so the mark cannot be removed without breaking the chain.
	ClockUnsynchronised bool `json:"clock_unsynchronised,omitempty"`
}

// Entry is one ledger entry: a clip, where it sits in the log, and the bytes
// that were hashed, so that a proof can be checked against exactly what was
// committed.
type Entry struct {
	// Index is the 0-based position in the Merkle log.
	Index uint64
	Clip
	// Prev is the hex entry hash of the previous entry of the same camera,
	// "" for the camera's first entry.
	Prev string
	// Hash is the hex RFC 6962 leaf hash SHA-256(0x00 || Body).
	Hash string
	// Body is the canonical bytes (see the package documentation).
	Body []byte
}

// Filter selects entries for List. Zero fields do not restrict.
type Filter struct {
	// Camera, when set, keeps only that camera's entries.
	Camera string
	// From and To keep entries whose [Start, End] overlaps [From, To]; a
	// zero bound is unbounded on that side.
	From, To time.Time
}

// Ledger is the evidence ledger over one SQLite database. It is safe for
// concurrent use; appends and checkpoints are serialised.
type Ledger struct {
	db     *sql.DB
	signer note.Signer
	origin string

	// mu serialises the read-then-write transactions (Append, Checkpoint)
	// so two of them in this process never pick the same index or sequence
	// number, whatever the pool size of db.
	mu sync.Mutex
}

const schema = `
CREATE TABLE IF NOT EXISTS ledger_entries (
	idx         INTEGER PRIMARY KEY,
	camera      TEXT    NOT NULL,
	clip        TEXT    NOT NULL,
	wearer      TEXT    NOT NULL,
	site        TEXT    NOT NULL,
	start_ms    INTEGER NOT NULL,
	end_ms      INTEGER NOT NULL,
	size        INTEGER NOT NULL,
	sha256      TEXT    NOT NULL,
	received_ms INTEGER NOT NULL,
	ingest      TEXT    NOT NULL,
	prev        TEXT    NOT NULL,
	hash        TEXT    NOT NULL,
	body        BLOB    NOT NULL,
	UNIQUE (camera, clip)
);
CREATE INDEX IF NOT EXISTS ledger_entries_camera ON ledger_entries (camera, idx);
CREATE INDEX IF NOT EXISTS ledger_entries_start ON ledger_entries (start_ms);
CREATE INDEX IF NOT EXISTS ledger_entries_leaf ON ledger_entries (idx, hash);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
	seq     INTEGER PRIMARY KEY,
	size    INTEGER NOT NULL,
	root    BLOB    NOT NULL,
	time_ms INTEGER NOT NULL,
	note    BLOB    NOT NULL,
	tree    BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_subtrees (
	idx  INTEGER PRIMARY KEY,
	hash BLOB    NOT NULL
);
`

// Open returns the ledger stored in db, creating its tables if absent.
//
// signer signs checkpoints; it may be nil for a read-only ledger (for
// example `vigil evidence verify`, which needs only the verifier key), in
// which case Checkpoint fails. origin names this log in every checkpoint
// (C2SP origin line, e.g. "vigil.example.org/site-a/evidence"); it must
// match the origin of checkpoints already stored, because a log that
// changed its name mid-way could not be verified as one log.
func Open(ctx context.Context, db *sql.DB, signer note.Signer, origin string) (*Ledger, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("ledger: open: create tables: %w", err)
	}
	l := &Ledger{db: db, signer: signer, origin: origin}
	cp, ok, err := l.Latest(ctx)
	if errors.Is(err, errCorruptCheckpoint) {
		// Verify names it; Checkpoint refuses to build on it.
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open: %w", err)
	}
	if ok && cp.Origin != origin {
		return nil, fmt.Errorf("ledger: open: stored checkpoints are for origin %q, not %q", cp.Origin, origin)
	}
	return l, nil
}

// checkOrigin accepts what can be the first line of a checkpoint.
func checkOrigin(origin string) error {
	if origin == "" || !utf8.ValidString(origin) || strings.TrimSpace(origin) != origin {
		return fmt.Errorf("origin %q must be non-empty UTF-8 without surrounding spaces", clipTrim(origin))
	}
	for _, r := range origin {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("origin %q contains a control character", clipTrim(origin))
		}
	}
	return nil
}

// Origin returns the log's name, the first line of its checkpoints.
func (l *Ledger) Origin() string { return l.origin }

// Append records c as the next entry. It validates and normalises the clip
// (times to UTC milliseconds), links it to the camera's previous entry and
// assigns its index in one transaction, so a committed entry is always
// complete and chained. If the camera already has an entry for the clip id,
// Append returns that entry and an error wrapping ErrDuplicate; invalid
// metadata gives an error wrapping ErrInvalid.
//
// Append does not touch the Merkle tree: roots are computed when a
// checkpoint or proof needs them, so an append costs a few index lookups
// and one insert whatever the ledger's size.
func (l *Ledger) Append(ctx context.Context, c Clip) (Entry, error) {
	c = normalize(c)
	if err := validateClip(c); err != nil {
		return Entry{}, fmt.Errorf("ledger: append %s/%s: %w: %s", clipTrim(c.Camera), clipTrim(c.Clip), ErrInvalid, err.Error())
	}
	key := c.Camera + "/" + c.Clip

	l.mu.Lock()
	defer l.mu.Unlock()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: append %s: %w", key, err)
	}
	defer tx.Rollback() // a no-op after Commit

	existing, err := scanEntry(tx.QueryRowContext(ctx,
		`SELECT idx, hash, body FROM ledger_entries WHERE camera = ? AND clip = ?`, c.Camera, c.Clip))
	switch {
	case err == nil:
		return existing, fmt.Errorf("ledger: append %s: %w (entry %d)", key, ErrDuplicate, existing.Index)
	case !errors.Is(err, ErrNotFound):
		return Entry{}, fmt.Errorf("ledger: append %s: %w", key, err)
	}

	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries`).Scan(&next); err != nil {
		return Entry{}, fmt.Errorf("ledger: append %s: next index: %w", key, err)
	}
	var prev string
	err = tx.QueryRowContext(ctx,
		`SELECT hash FROM ledger_entries WHERE camera = ? ORDER BY idx DESC LIMIT 1`, c.Camera).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Entry{}, fmt.Errorf("ledger: append %s: previous entry: %w", key, err)
	}
	if err := validatePrev(prev); err != nil {
		// The stored hash of the camera's last entry is not a hash: the row
		// was edited. Chaining to it would hide that; refuse instead.
		return Entry{}, fmt.Errorf("ledger: append %s: camera's previous entry is corrupt (%s): run verify", key, err.Error())
	}
	b, err := encodeBody(c, prev)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: append %s: %w", key, err)
	}
	hash := hexHash(LeafHash(b))
	_, err = tx.ExecContext(ctx, `INSERT INTO ledger_entries
		(idx, camera, clip, wearer, site, start_ms, end_ms, size, sha256, received_ms, ingest, prev, hash, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		next, c.Camera, c.Clip, c.Wearer, c.Site, c.Start.UnixMilli(), c.End.UnixMilli(), c.Size,
		c.SHA256, c.Received.UnixMilli(), c.Ingest, prev, hash, b)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: append %s: insert: %w", key, err)
	}
	// The commit is the durability point (WAL, synchronous=FULL): only
	// after it returns may the caller tell the camera the clip is recorded.
	if err := tx.Commit(); err != nil {
		return Entry{}, fmt.Errorf("ledger: append %s: commit: %w", key, err)
	}
	return Entry{Index: uint64(next), Clip: c, Prev: prev, Hash: hash, Body: b}, nil
}

// Get returns the entry for the camera's clip, or an error wrapping
// ErrNotFound.
func (l *Ledger) Get(ctx context.Context, camera, clip string) (Entry, error) {
	e, err := scanEntry(l.db.QueryRowContext(ctx,
		`SELECT idx, hash, body FROM ledger_entries WHERE camera = ? AND clip = ?`, camera, clip))
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: get %s/%s: %w", clipTrim(camera), clipTrim(clip), err)
	}
	return e, nil
}

// At returns the entry at a ledger index, or an error wrapping ErrNotFound.
func (l *Ledger) At(ctx context.Context, index uint64) (Entry, error) {
	if index > maxIndex {
		return Entry{}, fmt.Errorf("ledger: at %d: %w", index, ErrNotFound)
	}
	e, err := scanEntry(l.db.QueryRowContext(ctx,
		`SELECT idx, hash, body FROM ledger_entries WHERE idx = ?`, int64(index)))
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: at %d: %w", index, err)
	}
	return e, nil
}

// maxIndex is the largest index SQLite's signed 64-bit rowid can hold.
const maxIndex = 1<<63 - 1

// List returns the entries matching f in index order. An entry matches the
// time bounds when its [Start, End] overlaps [f.From, f.To] (both closed), so
// a clip that was running at From is included.
func (l *Ledger) List(ctx context.Context, f Filter) ([]Entry, error) {
	q := `SELECT idx, hash, body FROM ledger_entries WHERE 1 = 1`
	var args []any
	if f.Camera != "" {
		q += ` AND camera = ?`
		args = append(args, f.Camera)
	}
	if !f.From.IsZero() {
		q += ` AND end_ms >= ?`
		args = append(args, f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		q += ` AND start_ms <= ?`
		args = append(args, f.To.UnixMilli())
	}
	q += ` ORDER BY idx`
	rows, err := l.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: list: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: list: %w", err)
	}
	return out, nil
}

// Size returns the number of entries, which is the size of the Merkle tree
// a checkpoint made now would sign. It is one past the highest index, so a
// deleted row in the middle does not shrink it (Verify reports the gap).
func (l *Ledger) Size(ctx context.Context) (uint64, error) {
	n, err := size(ctx, l.db)
	if err != nil {
		return 0, fmt.Errorf("ledger: size: %w", err)
	}
	return n, nil
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func size(ctx context.Context, q querier) (uint64, error) {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries`).Scan(&n); err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0 // only negative indices exist: rows forged outside the ledger
	}
	return uint64(n), nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanEntry reads (idx, hash, body) and decodes the entry from its body,
// the truth; the denormalised columns are for queries and for Verify to
// cross-check. A body that does not parse is an error telling the caller to
// run Verify.
func scanEntry(s scanner) (Entry, error) {
	var (
		idx  int64
		hash string
		b    []byte
	)
	if err := s.Scan(&idx, &hash, &b); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Entry{}, ErrNotFound
		}
		return Entry{}, err
	}
	c, prev, err := ParseBody(b)
	if err != nil {
		return Entry{}, fmt.Errorf("entry %d is corrupt (run verify): %w", idx, err)
	}
	if idx < 0 {
		return Entry{}, fmt.Errorf("entry %d has a negative index (run verify)", idx)
	}
	return Entry{Index: uint64(idx), Clip: c, Prev: prev, Hash: hash, Body: b}, nil
}

// decodeHash parses a stored hex leaf hash (64 lowercase hex digits). It is
// on the per-leaf path of every root and proof, so it avoids the regexp.
func decodeHash(s []byte) ([]byte, bool) {
	if len(s) != 64 {
		return nil, false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, false
		}
	}
	h := make([]byte, 32)
	_, err := hex.Decode(h, s)
	return h, err == nil
}
