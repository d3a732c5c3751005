// Package sqlitedb opens Vigil's SQLite databases (the evidence database and
// the governance database of users, the audit trail and releases):
// modernc.org/sqlite, pure Go, so the arm builds need no C toolchain, in WAL
// mode with full synchronous commits, so a committed row survives a power
// cut. Both use this one opener so their durability settings cannot drift.
package sqlitedb

import (
	"database/sql"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Open opens (creating if needed) the SQLite database at path. The file is
// created 0600 by SQLite's default umask handling only if the directory is
// private; callers keep the state directory 0750 or tighter.
//
// synchronous=FULL is SQLite's default but is set explicitly: in WAL mode
// NORMAL would let the last commits vanish on power loss, and neither a clip
// acknowledged to a camera nor an audit record of a footage access may.
func Open(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(ON)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlitedb: open %s: %w", path, err)
	}
	// One writer at a time is SQLite's model; a single connection also makes
	// every statement see the previous one's writes without surprises.
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitedb: open %s: %w", path, err)
	}
	return db, nil
}

// Scanner is one row: a *sql.Row or the current row of *sql.Rows. It is an
// alias so that the packages' own scan functions, which take the same
// interface literal, fit Collect as they are.
type Scanner = interface{ Scan(dest ...any) error }

// Collect scans every row of rows with scan, in order, and closes rows:
// the loop, the scan error and the rows.Err check that every list query
// needs, written once. It returns nil for no rows.
func Collect[T any](rows *sql.Rows, scan func(Scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Strings collects a query of one text column.
func Strings(rows *sql.Rows) ([]string, error) {
	return Collect(rows, func(sc Scanner) (s string, err error) {
		err = sc.Scan(&s)
		return s, err
	})
}
