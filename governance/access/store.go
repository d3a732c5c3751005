package access

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// DBFile is the governance database's file name in the state directory. The
// users, tokens and sessions tables live there beside the other governance
// records, so that one backup holds who did what and who they were.
const DBFile = "governance.db"

// OpenDB opens (creating if needed, mode 0600) the governance database at
// path with the pragmas every governance package relies on. It is here
// because gateway and cmd may not import governance's internal packages.
func OpenDB(path string) (*sql.DB, error) {
	// Create the file private before SQLite does: SQLite gives its -wal and
	// -shm files the database file's mode, and they hold the same data.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access: open database: %w", err)
	}
	f.Close()
	db, err := sqlitedb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	// A database from a newer vigil is refused before anything reads or
	// writes it; sqlitedb.Migrate(DBSchema()) brings an older one up.
	if err := sqlitedb.Check(context.Background(), db, DBSchema()); err != nil {
		db.Close()
		return nil, fmt.Errorf("access: %w", err)
	}
	return db, nil
}

// Defaults for Options.
const (
	DefaultSessionIdle     = 30 * time.Minute
	DefaultSessionMax      = 12 * time.Hour
	DefaultLockoutFailures = 5
	DefaultLockoutWindow   = 15 * time.Minute
	DefaultLockoutDuration = 15 * time.Minute
	// DefaultHashConcurrency bounds the password hashes computed at once:
	// each takes HashParams.Memory, and a burst of logins must not push a
	// small board into swap while it is handling alarms.
	DefaultHashConcurrency = 2
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// LegacyTokens is the path of a tokens.json from earlier versions. If it
	// exists, Open imports its tokens and renames it to tokens.json.imported.
	LegacyTokens string
	Logger       *slog.Logger

	Hash            HashParams    // argon2id cost for new hashes
	HashConcurrency int           // password hashes computed at once
	SessionIdle     time.Duration // a session unused this long ends
	SessionMax      time.Duration // a session ends this long after login, used or not
	LockoutFailures int           // failed logins for one user name …
	LockoutWindow   time.Duration // … within this window …
	LockoutDuration time.Duration // … refuse logins for that name this long
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Hash == (HashParams{}) {
		o.Hash = DefaultHashParams()
	}
	if o.HashConcurrency <= 0 {
		o.HashConcurrency = DefaultHashConcurrency
	}
	if o.SessionIdle <= 0 {
		o.SessionIdle = DefaultSessionIdle
	}
	if o.SessionMax <= 0 {
		o.SessionMax = DefaultSessionMax
	}
	if o.LockoutFailures <= 0 {
		o.LockoutFailures = DefaultLockoutFailures
	}
	if o.LockoutWindow <= 0 {
		o.LockoutWindow = DefaultLockoutWindow
	}
	if o.LockoutDuration <= 0 {
		o.LockoutDuration = DefaultLockoutDuration
	}
}

// Errors. Validation errors match ErrInvalid and say which field is wrong.
var (
	ErrInvalid     = errors.New("access: invalid input")
	ErrNoUser      = errors.New("access: no such user")
	ErrExists      = errors.New("access: user already exists")
	ErrDisabled    = errors.New("access: user is disabled")
	ErrUnknown     = errors.New("access: unknown or revoked token")
	ErrNoToken     = errors.New("access: no such token")
	ErrLoginFailed = errors.New("access: wrong user name or password")
	ErrLockedOut   = errors.New("access: too many failed logins for this user")
	ErrNoSession   = errors.New("access: no such session, or it has expired: log in again")
)

// invalidError is a validation failure; it matches ErrInvalid.
type invalidError struct{ msg string }

func (e invalidError) Error() string        { return "access: " + e.msg }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(msg string) error { return invalidError{msg} }

// LockedOutError says until when a user name is locked out. It matches
// ErrLockedOut.
type LockedOutError struct{ Until time.Time }

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("%v: try again after %s", ErrLockedOut, e.Until.UTC().Format("15:04:05 UTC"))
}

// Unwrap makes errors.Is(err, ErrLockedOut) true.
func (e *LockedOutError) Unwrap() error { return ErrLockedOut }

// Store is the users, tokens and sessions in the governance database. It is
// safe for concurrent use and keeps no state of its own beyond its options:
// every answer comes from the database, so other processes' changes count
// at once.
type Store struct {
	db   *sql.DB
	opts Options
	log  *slog.Logger
	sem  chan struct{} // bounds concurrent password hashing
}

// schema creates the tables. Names are compared case-insensitively, so
// "Nurse A" and "nurse a" cannot be two people. Times are Unix nanoseconds.
const schema = `
CREATE TABLE IF NOT EXISTS access_users (
	name     TEXT PRIMARY KEY COLLATE NOCASE,
	role     TEXT NOT NULL,
	wearer   TEXT NOT NULL DEFAULT '',
	password TEXT NOT NULL DEFAULT '',
	disabled INTEGER NOT NULL DEFAULT 0,
	created  INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS access_users_wearer ON access_users (wearer COLLATE NOCASE) WHERE wearer != '';
CREATE TABLE IF NOT EXISTS access_tokens (
	hash    TEXT PRIMARY KEY,
	id      TEXT NOT NULL UNIQUE,
	user    TEXT NOT NULL REFERENCES access_users (name),
	created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_tokens_user ON access_tokens (user);
CREATE TABLE IF NOT EXISTS access_sessions (
	hash      TEXT PRIMARY KEY,
	user      TEXT NOT NULL REFERENCES access_users (name),
	created   INTEGER NOT NULL,
	last_seen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_sessions_user ON access_sessions (user);
CREATE TABLE IF NOT EXISTS access_login_failures (
	name TEXT NOT NULL COLLATE NOCASE,
	at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_login_failures_name ON access_login_failures (name, at);
CREATE INDEX IF NOT EXISTS access_login_failures_at ON access_login_failures (at);
CREATE TABLE IF NOT EXISTS access_lockouts (
	name  TEXT PRIMARY KEY COLLATE NOCASE,
	until INTEGER NOT NULL
);
`

// Open prepares the access tables in db (the governance database, see
// OpenDB) and imports a legacy token file if opts names one. The caller
// keeps ownership of db. OpenDB allows one connection, so a caller sharing
// db must not call the Store while it holds a transaction of its own.
func Open(ctx context.Context, db *sql.DB, opts Options) (*Store, error) {
	opts.defaults()
	s := &Store{db: db, opts: opts, log: opts.Logger.With("component", "access"), sem: make(chan struct{}, opts.HashConcurrency)}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("access: create tables: %w", err)
	}
	if opts.LegacyTokens != "" {
		if err := s.importLegacy(ctx, opts.LegacyTokens); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// User is a stored user: never the password hash.
type User struct {
	Name        string    `json:"name"`
	Role        Role      `json:"role"`
	Wearer      string    `json:"wearer,omitempty"`
	Created     time.Time `json:"created"`
	Disabled    bool      `json:"disabled"`
	HasPassword bool      `json:"has_password"`
	Tokens      int       `json:"tokens"` // API tokens that are not revoked
}

// Name and wearer length limits, in characters.
const (
	MaxNameLength   = 64
	MaxWearerLength = 128
)

// ValidName reports why name cannot be a user name, or nil: 1-64 letters,
// digits, spaces and . _ - @, not starting or ending with a space.
func ValidName(name string) error {
	n := utf8.RuneCountInString(name)
	if n == 0 || n > MaxNameLength {
		return invalid(fmt.Sprintf("name %q: must be 1-%d characters", name, MaxNameLength))
	}
	if strings.TrimSpace(name) != name {
		return invalid(fmt.Sprintf("name %q: must not start or end with a space", name))
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(" ._-@", r) {
			return invalid(fmt.Sprintf("name %q: %q is not allowed (letters, digits, spaces and . _ - @ are)", name, r))
		}
	}
	return nil
}

func roleList() string {
	var b strings.Builder
	for i, r := range Roles() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(r))
	}
	return b.String()
}

func checkRole(role Role) error {
	if !role.Valid() {
		return invalid(fmt.Sprintf("role %q: must be one of %s", role, roleList()))
	}
	return nil
}

// CheckUser reports what is wrong with a new user, or nil: its name (see
// ValidName), its role, and a wearer name iff the role is wearer.
func CheckUser(u User) error {
	if err := ValidName(u.Name); err != nil {
		return err
	}
	if err := checkRole(u.Role); err != nil {
		return err
	}
	switch {
	case u.Role == Wearer && strings.TrimSpace(u.Wearer) == "":
		return invalid("wearer: a wearer user needs the device wearer name it sees footage of (as in the device registry)")
	case u.Role != Wearer && u.Wearer != "":
		return invalid(fmt.Sprintf("wearer: only a wearer user is linked to a wearer, not a %s", u.Role))
	case strings.TrimSpace(u.Wearer) != u.Wearer || utf8.RuneCountInString(u.Wearer) > MaxWearerLength:
		return invalid(fmt.Sprintf("wearer %q: must be 1-%d characters without leading or trailing spaces", u.Wearer, MaxWearerLength))
	}
	return nil
}

// AddUser stores a new user with no password and no tokens; give them one
// with SetPassword or CreateToken.
func (s *Store) AddUser(ctx context.Context, u User, now time.Time) error {
	if err := CheckUser(u); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("access: add user: %w", err)
	}
	defer tx.Rollback()
	if err := insertUser(ctx, tx, u, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("access: add user %s: %w", u.Name, err)
	}
	return nil
}

// insertUser adds u inside tx, naming the conflict if the name or wearer is
// taken.
func insertUser(ctx context.Context, tx *sql.Tx, u User, now time.Time) error {
	var existing string
	err := tx.QueryRowContext(ctx, `SELECT name FROM access_users WHERE name = ?`, u.Name).Scan(&existing)
	if err == nil {
		return fmt.Errorf("%w: %s", ErrExists, existing)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("access: add user %s: %w", u.Name, err)
	}
	if u.Wearer != "" {
		err := tx.QueryRowContext(ctx, `SELECT name FROM access_users WHERE wearer = ? COLLATE NOCASE`, u.Wearer).Scan(&existing)
		if err == nil {
			return invalid(fmt.Sprintf("wearer %q: already linked to user %s", u.Wearer, existing))
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("access: add user %s: %w", u.Name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO access_users (name, role, wearer, created) VALUES (?, ?, ?, ?)`,
		u.Name, string(u.Role), u.Wearer, now.UnixNano()); err != nil {
		return fmt.Errorf("access: add user %s: %w", u.Name, err)
	}
	return nil
}

const userColumns = `u.name, u.role, u.wearer, u.created, u.disabled != 0, u.password != '',
	(SELECT count(*) FROM access_tokens t WHERE t.user = u.name)`

func scanUser(sc interface{ Scan(...any) error }) (User, error) {
	var u User
	var created int64
	var role string
	err := sc.Scan(&u.Name, &role, &u.Wearer, &created, &u.Disabled, &u.HasPassword, &u.Tokens)
	u.Role, u.Created = Role(role), time.Unix(0, created).UTC()
	return u, err
}

// Users lists every user, by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM access_users u ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("access: users: %w", err)
	}
	list, err := sqlitedb.Collect(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("access: users: %w", err)
	}
	return list, nil
}

// User returns one user by name (case-insensitive).
func (s *Store) User(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM access_users u WHERE u.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("%w: %s", ErrNoUser, name)
	}
	if err != nil {
		return User{}, fmt.Errorf("access: user %s: %w", name, err)
	}
	return u, nil
}

// SetPassword sets a user's password (hashed with argon2id) and ends their
// sessions: whoever was logged in with the old password must log in again.
func (s *Store) SetPassword(ctx context.Context, name, password string) error {
	if err := CheckPassword(password); err != nil {
		return err
	}
	if _, err := s.User(ctx, name); err != nil {
		return err
	}
	phc, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	return s.update(ctx, "set password", name,
		`UPDATE access_users SET password = ? WHERE name = ?`, []any{phc, name},
		`DELETE FROM access_sessions WHERE user = ?`)
}

// Disable stops a user authenticating by any means: password, session or
// token. Their sessions end; their tokens stay stored (refused) so that
// Enable restores them.
func (s *Store) Disable(ctx context.Context, name string, now time.Time) error {
	return s.update(ctx, "disable", name,
		`UPDATE access_users SET disabled = ? WHERE name = ?`, []any{now.UnixNano(), name},
		`DELETE FROM access_sessions WHERE user = ?`)
}

// Enable lets a disabled user authenticate again.
func (s *Store) Enable(ctx context.Context, name string) error {
	return s.update(ctx, "enable", name, `UPDATE access_users SET disabled = 0 WHERE name = ?`, []any{name}, "")
}

// update runs one UPDATE of a user row (ErrNoUser when it matches none) and
// optionally a follow-up statement taking the canonical name, in one
// transaction.
func (s *Store) update(ctx context.Context, op, name, stmt string, args []any, then string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("access: %s %s: %w", op, name, err)
	}
	defer tx.Rollback()
	var canonical string
	if err := tx.QueryRowContext(ctx, `SELECT name FROM access_users WHERE name = ?`, name).Scan(&canonical); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNoUser, name)
	} else if err != nil {
		return fmt.Errorf("access: %s %s: %w", op, name, err)
	}
	if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
		return fmt.Errorf("access: %s %s: %w", op, name, err)
	}
	if then != "" {
		if _, err := tx.ExecContext(ctx, then, canonical); err != nil {
			return fmt.Errorf("access: %s %s: %w", op, name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("access: %s %s: %w", op, name, err)
	}
	return nil
}

// hash computes a password hash, waiting for a hashing slot.
func (s *Store) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer s.release()
	return hashPassword(password, s.opts.Hash)
}

func (s *Store) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("access: %w", ctx.Err())
	}
}

func (s *Store) release() { <-s.sem }
