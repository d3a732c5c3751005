package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// Record is one audited action: who did what to which footage, when, from
// where, why, and how it ended. The caller fills in the action's fields;
// Append assigns Seq, At, Prev and Hash, which is what makes the record a
// link in the chain.
type Record struct {
	Seq      int64     // 1, 2, 3 … assigned by Append
	At       time.Time // assigned by Append from Config.Now (UTC, millisecond)
	Actor    string    // user name, or "vigil" (SystemActor) for the system
	Role     string    // operator, supervisor, investigator, ig_officer, admin, wearer, system
	Action   string    // one of the Action* constants, or another dotted verb
	Camera   string    // footage concerned, when one clip is ("" otherwise)
	Clip     string    // the clip id within Camera
	Incident string    // incident id when linked ("" when none)
	Release  string    // release request id when relevant
	Why      string    // the justification the person gave
	From     string    // client address ("cli" for the command line, "" for the system)
	Outcome  string    // OutcomeOK, OutcomeRefused or OutcomeError
	Detail   string    // what else matters: the refusal reason, the retention date, the policy that deleted
	Prev     string    // hex hash of the previous record ("" for the first)
	Hash     string    // hex hash of this record
}

// Actions the gateway audits. Action is free text so a new kind of access is
// never refused an audit record, but these spellings are what reports and
// queries look for, so use them.
const (
	ActionClipView        = "clip.view"
	ActionClipDownload    = "clip.download"
	ActionClipSearch      = "clip.search"
	ActionRetentionExtend = "retention.extend"
	ActionHoldSet         = "hold.set"
	ActionHoldLift        = "hold.lift"
	ActionClipDelete      = "clip.delete"
	ActionReleaseRequest  = "release.request"
	ActionReleaseApprove  = "release.approve"
	ActionReleaseRefuse   = "release.refuse"
	ActionReleaseExport   = "release.export"
	ActionLogin           = "login"
	ActionUserAdd         = "user.add"

	// ActionClipFetch is the use of a download link handed out by an
	// earlier clip.download: the moment the bytes actually leave.
	ActionClipFetch = "clip.fetch"
	// ActionEvidential is the system making a camera's footage evidential
	// for an incident (an alert), which puts it under legal hold.
	ActionEvidential     = "footage.evidential"
	ActionIncidentAssign = "incident.assign"
	ActionIncidentClose  = "incident.close"
	// ActionAuditReport and ActionSAR audit the reading of the audit trail
	// itself: who looked at who looked.
	ActionAuditReport = "audit.report"
	ActionSAR         = "audit.sar"
	ActionAuditVerify = "audit.verify"
)

// Outcomes. A refused access is audited as much as a granted one: repeated
// refusals are what an IG officer looks for.
const (
	OutcomeOK      = "ok"
	OutcomeRefused = "refused"
	OutcomeError   = "error"
)

// Roles as they appear in records: the role the actor acted in.
const (
	RoleOperator     = "operator"
	RoleSupervisor   = "supervisor"
	RoleInvestigator = "investigator"
	RoleIGOfficer    = "ig_officer"
	RoleAdmin        = "admin"
	RoleWearer       = "wearer"
	RoleSystem       = "system"
)

// SystemActor is the Actor of what the gateway does by itself (retention
// deletions, sealing), and FromCLI the From of actions taken on the
// gateway's command line, so reports can tell them from people on the API.
const (
	SystemActor = "vigil"
	FromCLI     = "cli"
)

// MaxField is the largest value, in bytes, of any one text field. It keeps a
// runaway justification or detail from bloating every verification.
const MaxField = 8 << 10

// ErrInvalid is wrapped by Append when the record cannot be audited as
// given: a required field is empty or a field is not valid UTF-8.
var ErrInvalid = errors.New("audit: invalid record")

// ErrNoSigner is returned by Seal when the log was opened without a signing
// key (a verify-only tool): the gateway that holds the key seals instead.
var ErrNoSigner = errors.New("audit: no signing key: this log cannot seal")

// SealStore is the object store as the audit log uses it; *objstore.S3 and
// *objstore.Dir satisfy it. Seals are small, so PutSmall is enough.
type SealStore interface {
	PutSmall(ctx context.Context, key string, data []byte, opts objstore.PutOptions) error
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) ([]objstore.Object, error)
}

// Config configures a Log. Zero durations and counts take the defaults.
type Config struct {
	// Signer is the gateway's Ed25519 note key, which signs seals. It may
	// be nil in a tool that only appends and verifies; such a log never
	// seals (the gateway's Run does).
	Signer note.Signer
	// Verifier is the public half of the gateway's key. Required: every
	// seal is checked with it before it is believed.
	Verifier note.Verifier
	// Origin names this log in the first line of every seal, e.g.
	// "vigil/gw-1/audit". It must not change over the log's life.
	Origin string
	// SealEvery seals after this many unsealed records (default 100).
	SealEvery int
	// SealInterval seals at most this long after the oldest unsealed
	// record was appended (default 15 minutes).
	SealInterval time.Duration
	// Retention is how long stored seals are kept under COMPLIANCE
	// retention, counted from the seal time (default 10 years).
	Retention time.Duration
	// Store receives the seals. It may be nil: seals then stay in the
	// local database only, where someone with write access could rewrite
	// them, and Verify warns about it.
	Store SealStore
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives operational messages (default: discarded). It is
	// never given record contents, only seq numbers.
	Logger *slog.Logger
}

// Defaults for Config. A hundred records or a quarter of an hour bounds how
// much of the trail the hash chain alone protects; ten years covers the
// retention asked of health and police records of access to evidence.
const (
	DefaultSealEvery    = 100
	DefaultSealInterval = 15 * time.Minute
	DefaultRetention    = 87660 * time.Hour // 10 years of 365.25 days
)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.SealEvery <= 0 {
		c.SealEvery = DefaultSealEvery
	}
	if c.SealInterval <= 0 {
		c.SealInterval = DefaultSealInterval
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate checks what cannot be defaulted.
func (c Config) validate() error {
	if err := checkOrigin(c.Origin); err != nil {
		return err
	}
	if c.Verifier == nil {
		return errors.New("a verifier key is required: seals cannot be checked without it")
	}
	if c.Signer != nil && (c.Signer.Name() != c.Verifier.Name() || c.Signer.KeyHash() != c.Verifier.KeyHash()) {
		return fmt.Errorf("the signing key %s+%08x is not the verifier key %s+%08x: every seal would fail verification",
			c.Signer.Name(), c.Signer.KeyHash(), c.Verifier.Name(), c.Verifier.KeyHash())
	}
	return nil
}

// checkOrigin accepts what can be the first line of a seal.
func checkOrigin(origin string) error {
	if origin == "" || !utf8.ValidString(origin) || strings.TrimSpace(origin) != origin {
		return fmt.Errorf("origin %q must be non-empty UTF-8 without surrounding spaces", origin)
	}
	for _, r := range origin {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("origin %q contains a control character", origin)
		}
	}
	return nil
}

// Log is the audit trail in one SQLite database. It is safe for concurrent
// use, and other processes (the command line) may append to the same
// database at the same time: every write is one IMMEDIATE transaction.
type Log struct {
	db  *sql.DB
	cfg Config
	log *slog.Logger

	// mu serialises this process's write transactions, so they queue here
	// rather than spin in SQLite's busy handler.
	mu sync.Mutex
	// pushMu serialises uploads of seals, so Seal and Run never send the
	// same seal twice at once; refused is guarded by it.
	pushMu sync.Mutex
	// refused holds seals the store would not take because another object
	// already holds their key (ErrLocked): retrying cannot help, so they
	// are not retried until restart, and Verify names them.
	refused map[int64]bool
	// kick wakes Run after an append, so interval sealing and uploads
	// notice new work without polling fast.
	kick chan struct{}
	// after is the timer Run waits on; tests replace it to drive Run
	// with a fake clock.
	after func(time.Duration) <-chan time.Time
}

const schema = `
CREATE TABLE IF NOT EXISTS audit_records (
	seq        INTEGER PRIMARY KEY,
	at_ms      INTEGER NOT NULL,
	actor      TEXT    NOT NULL,
	role       TEXT    NOT NULL,
	action     TEXT    NOT NULL,
	camera     TEXT    NOT NULL,
	clip       TEXT    NOT NULL,
	incident   TEXT    NOT NULL,
	release_id TEXT    NOT NULL,
	why        TEXT    NOT NULL,
	from_addr  TEXT    NOT NULL,
	outcome    TEXT    NOT NULL,
	detail     TEXT    NOT NULL,
	prev       TEXT    NOT NULL,
	hash       TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_at ON audit_records (at_ms);
CREATE INDEX IF NOT EXISTS audit_records_actor ON audit_records (actor, at_ms);
CREATE INDEX IF NOT EXISTS audit_records_clip ON audit_records (camera, clip);
CREATE INDEX IF NOT EXISTS audit_records_incident ON audit_records (incident);
CREATE TABLE IF NOT EXISTS audit_seals (
	last      INTEGER PRIMARY KEY,
	first     INTEGER NOT NULL,
	at_ms     INTEGER NOT NULL,
	note      BLOB    NOT NULL,
	stored_ms INTEGER
);
`

// Open returns the audit log stored in db, creating its tables (prefix
// "audit_") if missing. db should come from evidence/sqlitedb,
// whose synchronous=FULL is what makes an appended record durable.
func Open(ctx context.Context, db *sql.DB, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("audit: open: create tables: %w", err)
	}
	l := &Log{
		db: db, cfg: cfg, log: cfg.Logger.With("component", "audit"),
		refused: map[int64]bool{},
		kick:    make(chan struct{}, 1),
		after:   time.After,
	}
	// A log that changed its name mid-way could not be verified as one
	// log. A latest seal that does not parse is left for Verify to name:
	// refusing to open would stop the gateway auditing at all.
	var raw []byte
	err := db.QueryRowContext(ctx, `SELECT note FROM audit_seals ORDER BY last DESC LIMIT 1`).Scan(&raw)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("audit: open: latest seal: %w", err)
	default:
		if s, err := ParseSeal(raw, cfg.Verifier); err == nil && s.Origin != cfg.Origin {
			return nil, fmt.Errorf("audit: open: the stored seals are for origin %q, not %q", s.Origin, cfg.Origin)
		}
	}
	return l, nil
}

// normalize checks r and clears what Append assigns.
func normalize(r Record) (Record, error) {
	r.Seq, r.At, r.Prev, r.Hash = 0, time.Time{}, "", ""
	if r.Outcome == "" {
		r.Outcome = OutcomeOK
	}
	fields := []struct{ name, v string }{
		{"actor", r.Actor}, {"role", r.Role}, {"action", r.Action}, {"camera", r.Camera},
		{"clip", r.Clip}, {"incident", r.Incident}, {"release", r.Release}, {"why", r.Why},
		{"from", r.From}, {"outcome", r.Outcome}, {"detail", r.Detail},
	}
	for _, f := range fields {
		if !utf8.ValidString(f.v) {
			return r, fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, f.name)
		}
		if len(f.v) > MaxField {
			return r, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrInvalid, f.name, len(f.v), MaxField)
		}
	}
	for _, f := range fields[:3] {
		if strings.TrimSpace(f.v) == "" {
			return r, fmt.Errorf("%w: %s is empty: every record says who did what in which role", ErrInvalid, f.name)
		}
	}
	switch r.Outcome {
	case OutcomeOK, OutcomeRefused, OutcomeError:
	default:
		return r, fmt.Errorf("%w: outcome %q is not %q, %q or %q", ErrInvalid, r.Outcome, OutcomeOK, OutcomeRefused, OutcomeError)
	}
	return r, nil
}

// Append records r as the next record and returns it with Seq, At, Prev and
// Hash filled in. An empty Outcome means OutcomeOK. The record is durable
// when Append returns, so a caller audits first and serves the footage
// after; if Append fails, the access must not happen.
//
// Reading the last record and inserting the next happen in one IMMEDIATE
// transaction, which holds SQLite's write lock from the start, so appends
// from several goroutines or processes never pick the same seq or link to a
// stale head. When SealEvery unsealed records have accumulated, Append also
// seals them in the local database (the upload happens in Run or Seal); a
// failure to seal is logged, not returned, because the record itself is
// safely written.
func (l *Log) Append(ctx context.Context, r Record) (Record, error) {
	r, err := normalize(r)
	if err != nil {
		return Record{}, fmt.Errorf("audit: append %s: %w", r.Action, err)
	}
	var unsealed int64
	err = l.writeTx(ctx, func(c *sql.Conn) error {
		var last int64
		var prev string
		err := c.QueryRowContext(ctx, `SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			last, prev = 0, ""
		case err != nil:
			return fmt.Errorf("last record: %w", err)
		case !isHash(prev):
			// Chaining to something that is not a hash would bury the
			// damage; Verify names the record, an operator must act.
			return fmt.Errorf("the last record (%d) holds no valid hash: the database was edited; run audit verify", last)
		}
		// The time is taken under the write lock, so record times follow
		// seq order whichever process appends.
		r.Seq, r.At, r.Prev = last+1, l.cfg.Now().UTC().Truncate(time.Millisecond), prev
		r.Hash = r.ComputeHash()
		_, err = c.ExecContext(ctx, `INSERT INTO audit_records
			(seq, at_ms, actor, role, action, camera, clip, incident, release_id, why, from_addr, outcome, detail, prev, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Seq, r.At.UnixMilli(), r.Actor, r.Role, r.Action, r.Camera, r.Clip, r.Incident, r.Release,
			r.Why, r.From, r.Outcome, r.Detail, r.Prev, r.Hash)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		var sealed int64
		if err := c.QueryRowContext(ctx, `SELECT COALESCE(MAX(last), 0) FROM audit_seals`).Scan(&sealed); err != nil {
			return fmt.Errorf("last seal: %w", err)
		}
		unsealed = r.Seq - sealed
		return nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("audit: append %s: %w", r.Action, err)
	}
	if unsealed >= int64(l.cfg.SealEvery) && l.cfg.Signer != nil {
		if _, err := l.sealLocal(ctx); err != nil {
			l.log.Error("sealing after append failed; Run will retry", "seq", r.Seq, "err", err)
		}
	}
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return r, nil
}

// writeTx runs fn in an IMMEDIATE transaction on one connection. IMMEDIATE
// takes the write lock before the first read: a deferred transaction that
// read the head and then tried to write could find another process had
// appended in between (SQLITE_BUSY_SNAPSHOT, which the busy timeout does
// not cure), and would have to start over.
func (l *Log) writeTx(ctx context.Context, fn func(c *sql.Conn) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, err := l.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	// Rollback must run even when ctx is what failed, or the connection
	// would go back to the pool inside a transaction.
	rollback := func() { _, _ = c.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`) }
	if err := fn(c); err != nil {
		rollback()
		return err
	}
	// COMMIT is the durability point (WAL, synchronous=FULL): only after it
	// returns may the audited action go ahead.
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		rollback()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Query selects records. Zero fields match all.
type Query struct {
	// From and To keep records with From <= At < To; a zero bound is open.
	From, To time.Time
	// Actor, Camera, Clip, Incident and Action match exactly.
	Actor, Camera, Clip, Incident, Action string
	// Limit caps the number of records returned (0: no cap).
	Limit int
}

// recordColumns is the column list every record scan reads, in scanRecord's
// order.
const recordColumns = `seq, at_ms, actor, role, action, camera, clip, incident, release_id, why, from_addr, outcome, detail, prev, hash`

// scanRecord reads one row selected with recordColumns.
func scanRecord(sc interface{ Scan(...any) error }) (Record, error) {
	var r Record
	var ms int64
	err := sc.Scan(&r.Seq, &ms, &r.Actor, &r.Role, &r.Action, &r.Camera, &r.Clip, &r.Incident,
		&r.Release, &r.Why, &r.From, &r.Outcome, &r.Detail, &r.Prev, &r.Hash)
	r.At = time.UnixMilli(ms).UTC()
	return r, err
}

// Query returns the records matching q, oldest first. It reads the database
// as it is: use Verify to know whether it can be trusted.
func (l *Log) Query(ctx context.Context, q Query) ([]Record, error) {
	var where []string
	var args []any
	if !q.From.IsZero() {
		where, args = append(where, "at_ms >= ?"), append(args, q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		where, args = append(where, "at_ms < ?"), append(args, q.To.UnixMilli())
	}
	for _, f := range []struct{ col, v string }{
		{"actor", q.Actor}, {"camera", q.Camera}, {"clip", q.Clip}, {"incident", q.Incident}, {"action", q.Action},
	} {
		if f.v != "" {
			where, args = append(where, f.col+" = ?"), append(args, f.v)
		}
	}
	stmt := `SELECT ` + recordColumns + ` FROM audit_records`
	if len(where) > 0 {
		stmt += ` WHERE ` + strings.Join(where, " AND ")
	}
	stmt += ` ORDER BY seq`
	if q.Limit > 0 {
		stmt += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := l.db.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: query: %w", err)
	}
	out, err := sqlitedb.Collect(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("audit: query: %w", err)
	}
	return out, nil
}
