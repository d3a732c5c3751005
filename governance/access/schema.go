package access

import (
	"context"

	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

// DBSchema is the governance database's schema history (users, tokens and
// sessions, the audit trail, assignments and releases all live in it) for
// sqlitedb.Migrate, oldest first. Append, never edit: a released step has
// run on someone's gateway.
func DBSchema() sqlitedb.Schema {
	return sqlitedb.Schema{Name: DBFile, Migrations: []sqlitedb.Migration{
		// Version 1 is the layout released unversioned, with its version
		// recorded: the tables were already what this build creates.
		{Name: "record the schema version", Up: func(context.Context, sqlitedb.Execer) error { return nil }},
	}}
}
