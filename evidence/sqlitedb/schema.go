package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// A database's schema version is SQLite's user_version in its header. The
// layout Vigil wrote before versions were recorded has none (0); each
// Migration takes the database one version up, in its own transaction that
// also records the new version, so a crash leaves it at one version or the
// next, never between. A fresh database is stamped with the current version
// at once: the tables its packages create are already the current layout.

// Execer runs a migration's statements, inside its transaction.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Migration is one step up: from version i to i+1 for the i-th (0-based)
// step of a Schema.
type Migration struct {
	Name string // what it changes, for the log
	Up   func(ctx context.Context, tx Execer) error
}

// Schema is the ordered migrations of one database; the current version is
// their number.
type Schema struct {
	Name       string // the database's file name, for messages ("evidence.db")
	Migrations []Migration
}

// Version is the schema version this build writes.
func (s Schema) Version() int { return len(s.Migrations) }

// TooNewError refuses a store written by a newer Vigil, whose layout this
// build does not know: opening it could misread or damage it.
type TooNewError struct {
	Store        string
	Found, Known int
}

func (e *TooNewError) Error() string {
	return fmt.Sprintf("%s: state written by a newer vigil (schema %d, this build knows %d); upgrade vigil or restore a backup",
		e.Store, e.Found, e.Known)
}

// Version returns the database's schema version (0 for one never versioned).
func Version(ctx context.Context, db Execer) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlitedb: read schema version: %w", err)
	}
	return v, nil
}

// Check refuses, with a TooNewError, a database whose schema is newer than s.
func Check(ctx context.Context, db *sql.DB, s Schema) error {
	v, err := Version(ctx, db)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	if v > s.Version() {
		return &TooNewError{Store: s.Name, Found: v, Known: s.Version()}
	}
	return nil
}

// Migrate brings db to s's version: it stamps a fresh database, runs each
// missing migration in order, each in its own transaction that records the
// new version, logging each one, and refuses a newer database with a
// TooNewError. Each step takes the write lock before reading the version
// (BEGIN IMMEDIATE), so two processes opening the same database at once
// (the CLI beside the gateway) apply each step once.
func Migrate(ctx context.Context, db *sql.DB, s Schema, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for {
		done, err := step(ctx, db, s, log)
		if err != nil || done {
			return err
		}
	}
}

// step applies the next migration (or the fresh stamp) and says whether
// the database is current.
func step(ctx context.Context, db *sql.DB, s Schema, log *slog.Logger) (current bool, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("%s: migrate: %w", s.Name, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, fmt.Errorf("%s: migrate: %w", s.Name, err)
	}
	committed := false
	defer func() {
		if !committed {
			// Undo whatever a failed step did (or end the read of a
			// current database).
			if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil && err == nil {
				err = fmt.Errorf("%s: migrate: %w", s.Name, rerr)
			}
		}
	}()
	v, err := Version(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.Name, err)
	}
	switch {
	case v > s.Version():
		return false, &TooNewError{Store: s.Name, Found: v, Known: s.Version()}
	case v == s.Version():
		return true, nil
	}
	to, what, fresh := v+1, s.Migrations[v].Name, false
	if v == 0 {
		var tables int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").Scan(&tables); err != nil {
			return false, fmt.Errorf("%s: migrate: %w", s.Name, err)
		}
		if fresh = tables == 0; fresh {
			to = s.Version()
		}
	}
	if !fresh {
		if err := s.Migrations[v].Up(ctx, conn); err != nil {
			return false, fmt.Errorf("%s: migration %d (%s): %w", s.Name, to, what, err)
		}
	}
	// PRAGMA takes no parameters; to is an int.
	if _, err := conn.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(to)); err != nil {
		return false, fmt.Errorf("%s: migration %d: record version: %w", s.Name, to, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return false, fmt.Errorf("%s: migration %d: commit: %w", s.Name, to, err)
	}
	committed = true
	if fresh {
		log.Info("schema version recorded", "store", s.Name, "version", to)
	} else {
		log.Info("schema migrated", "store", s.Name, "from", v, "to", to, "step", what)
	}
	return to == s.Version(), nil
}
