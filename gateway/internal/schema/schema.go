// Package schema records the schema version of the gateway's bbolt state
// database (vigil.db) and migrates it. The version is a decimal number under
// the key "schema" in the bucket "meta". The layout Vigil wrote before
// versions were recorded has no meta bucket: version 0. Each Migration takes
// the database one version up in its own transaction, which also records the
// new version, so a crash leaves it at one version or the next.
package schema

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

var (
	bucketMeta = []byte("meta")
	keySchema  = []byte("schema")
)

// Migration is one step up: the i-th (0-based) of a list goes from version
// i to i+1.
type Migration struct {
	Name string // what it changes, for the log
	Up   func(tx *bolt.Tx) error
}

// State is the state database's migrations, oldest first; its current
// version is their number. Append, never edit: a released step has run on
// someone's gateway.
func State() []Migration {
	return []Migration{
		// Version 1 is the unversioned layout with its version recorded:
		// the meta bucket is all it adds.
		{Name: "record the schema version", Up: func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucketMeta)
			return err
		}},
	}
}

// TooNewError refuses a database written by a newer Vigil: the same error,
// and the same message, as for the SQLite stores.
type TooNewError = sqlitedb.TooNewError

// Version returns the recorded schema version, 0 if none is.
func Version(tx *bolt.Tx) (int, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return 0, nil
	}
	raw := b.Get(keySchema)
	if raw == nil {
		return 0, nil
	}
	// Only the plain decimal SetVersion writes: anything else ("+1",
	// "007") was not written by vigil and is not trusted.
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 0 || strconv.Itoa(v) != string(raw) {
		return 0, fmt.Errorf("schema: meta/schema holds %q, not a version number", raw)
	}
	return v, nil
}

// SetVersion records v inside tx (a migration's own transaction, or a test
// making a database of another version).
func SetVersion(tx *bolt.Tx, v int) error {
	b, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	return b.Put(keySchema, []byte(strconv.Itoa(v)))
}

// Migrate brings db, named store in messages, to the version of steps: a
// fresh (empty) database is stamped at once, an older one runs each missing
// step in order, logging each, and a newer one is refused with a
// TooNewError before anything is written.
func Migrate(db *bolt.DB, store string, steps []Migration, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	known := len(steps)
	var v int
	var fresh bool
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = Version(tx)
		k, _ := tx.Cursor().First()
		fresh = k == nil
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", store, err)
	case v > known:
		return &TooNewError{Store: store, Found: v, Known: known}
	case fresh:
		if err := db.Update(func(tx *bolt.Tx) error { return SetVersion(tx, known) }); err != nil {
			return fmt.Errorf("%s: record schema version: %w", store, err)
		}
		log.Info("schema version recorded", "store", store, "version", known)
		return nil
	}
	for ; v < known; v++ {
		s := steps[v]
		err := db.Update(func(tx *bolt.Tx) error {
			if err := s.Up(tx); err != nil {
				return err
			}
			return SetVersion(tx, v+1)
		})
		if err != nil {
			return fmt.Errorf("%s: migration %d (%s): %w", store, v+1, s.Name, err)
		}
		log.Info("schema migrated", "store", store, "from", v, "to", v+1, "step", s.Name)
	}
	return nil
}
