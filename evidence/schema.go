package evidence

import (
	"context"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// dbSchema is the evidence database's schema history for sqlitedb.Migrate,
// oldest first. Append, never edit: a released step has run on someone's
// gateway.
func dbSchema() sqlitedb.Schema {
	return sqlitedb.Schema{Name: DBFile, Migrations: []sqlitedb.Migration{
		// Version 1 is the layout released unversioned, with its version
		// recorded: the tables were already what this build creates.
		{Name: "record the schema version", Up: func(context.Context, sqlitedb.Execer) error { return nil }},
		// Version 2: clips are uploaded while they arrive (stream.go); the
		// multipart upload of a clip not yet in the ledger is recorded here.
		{Name: "record uploads started while a clip arrives", Up: func(ctx context.Context, tx sqlitedb.Execer) error {
			_, err := tx.ExecContext(ctx, earlySchema)
			return err
		}},
	}}
}

// SchemaVersion is the evidence database's schema version this build
// writes (PRAGMA user_version).
func SchemaVersion() int { return dbSchema().Version() }
