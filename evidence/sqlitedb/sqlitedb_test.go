package sqlitedb

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenIsWALAndFull(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "e.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	var sync int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode %q synchronous %d, want wal and 2 (FULL)", mode, sync)
	}
}

func TestCollect(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "c.db"))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE t (n INTEGER, s TEXT); INSERT INTO t VALUES (2, 'b'), (1, 'a'), (3, NULL)`)
	require.NoError(t, err)

	rows, err := db.Query(`SELECT s FROM t WHERE s IS NOT NULL ORDER BY n`)
	require.NoError(t, err)
	got, err := Strings(rows)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, got, "in query order")

	rows, err = db.Query(`SELECT s FROM t ORDER BY n`)
	require.NoError(t, err)
	_, err = Strings(rows)
	require.Error(t, err, "a scan error (NULL into string) is returned")

	rows, err = db.Query(`SELECT n FROM t WHERE n > 9`)
	require.NoError(t, err)
	none, err := Collect(rows, func(sc Scanner) (n int, err error) { err = sc.Scan(&n); return n, err })
	require.NoError(t, err)
	assert.Nil(t, none)
	require.Equal(t, 0, db.Stats().InUse, "rows are closed, the connection returned")
}
