package sqlitedb

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func openTest(t *testing.T) *sql.DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func version(t *testing.T, db *sql.DB) int {
	t.Helper()
	v, err := Version(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A v2 schema: v1 records the version of the unversioned layout, v2 adds a
// column.
func testSchema(applied *[]string) Schema {
	return Schema{Name: "t.db", Migrations: []Migration{
		{Name: "baseline", Up: func(context.Context, Execer) error { *applied = append(*applied, "baseline"); return nil }},
		{Name: "add note", Up: func(ctx context.Context, tx Execer) error {
			*applied = append(*applied, "add note")
			_, err := tx.ExecContext(ctx, "ALTER TABLE items ADD COLUMN note TEXT NOT NULL DEFAULT ''")
			return err
		}},
	}}
}

func TestMigrateUnversionedRunsEveryStepAndLogs(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if _, err := db.Exec("CREATE TABLE items (id INTEGER PRIMARY KEY); INSERT INTO items VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	var applied []string
	var logs bytes.Buffer
	if err := Migrate(ctx, db, testSchema(&applied), slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(applied, ","); got != "baseline,add note" || version(t, db) != 2 {
		t.Fatalf("applied %q, version %d; want both steps and version 2", got, version(t, db))
	}
	var note string
	if err := db.QueryRow("SELECT note FROM items WHERE id = 7").Scan(&note); err != nil {
		t.Fatalf("the row survives with the new column: %v", err)
	}
	if !strings.Contains(logs.String(), "from=0 to=1 step=baseline") || !strings.Contains(logs.String(), "from=1 to=2") {
		t.Fatalf("each migration is logged:\n%s", logs.String())
	}
	applied = nil
	if err := Migrate(ctx, db, testSchema(&applied), nil); err != nil || len(applied) != 0 {
		t.Fatalf("a current database runs nothing: %v %v", applied, err)
	}
}

func TestMigrateFreshDatabaseIsStamped(t *testing.T) {
	db := openTest(t)
	var applied []string
	if err := Migrate(context.Background(), db, testSchema(&applied), nil); err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 || version(t, db) != 2 {
		t.Fatalf("applied %v, version %d; want none and 2", applied, version(t, db))
	}
}

// A failing step leaves the database at the version before it, with
// nothing of the step applied.
func TestFailedStepRollsBack(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if _, err := db.Exec("CREATE TABLE items (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	s := Schema{Name: "t.db", Migrations: []Migration{
		{Name: "ok", Up: func(context.Context, Execer) error { return nil }},
		{Name: "half", Up: func(ctx context.Context, tx Execer) error {
			if _, err := tx.ExecContext(ctx, "CREATE TABLE half (x)"); err != nil {
				return err
			}
			return errors.New("boom")
		}},
	}}
	err := Migrate(ctx, db, s, nil)
	if err == nil || !strings.Contains(err.Error(), "migration 2 (half): boom") {
		t.Fatalf("err = %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'half'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the failed step's table exists (%d, %v)", n, err)
	}
	if v := version(t, db); v != 1 {
		t.Fatalf("version %d, want 1 (the step before)", v)
	}
}

func TestNewerDatabaseIsRefused(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if _, err := db.Exec("PRAGMA user_version = 9"); err != nil {
		t.Fatal(err)
	}
	var applied []string
	for _, err := range []error{Check(ctx, db, testSchema(&applied)), Migrate(ctx, db, testSchema(&applied), nil)} {
		var tooNew *TooNewError
		if !errors.As(err, &tooNew) || tooNew.Found != 9 || tooNew.Known != 2 {
			t.Fatalf("err = %v, want a TooNewError 9/2", err)
		}
		if want := "t.db: state written by a newer vigil (schema 9, this build knows 2); upgrade vigil or restore a backup"; err.Error() != want {
			t.Fatalf("message %q", err)
		}
	}
	if v := version(t, db); v != 9 {
		t.Fatalf("the version was changed to %d", v)
	}
}
