package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

const testOrigin = "vigil.test/site-a/evidence"

// t0 is the fixed start of test time.
var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func openDB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "evidence.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is a ledger on a fresh database with a known key.
type fixture struct {
	l      *Ledger
	db     *sql.DB
	signer note.Signer
	v      note.Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	_, signer, v := ledgertest.SeededKey(t, "vigil-test", 7)
	db := openDB(t)
	l, err := Open(context.Background(), db, signer, testOrigin)
	require.NoError(t, err)
	return &fixture{l: l, db: db, signer: signer, v: v}
}

// clipN is the n-th test clip of a camera: 5-minute clips, one every 10
// minutes, with a digest derived from its name.
func clipN(camera string, n int) Clip {
	start := t0.Add(time.Duration(n) * 10 * time.Minute)
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", camera, n)))
	return Clip{
		Camera:   camera,
		Clip:     fmt.Sprintf("c%d", n),
		Wearer:   "w-" + camera,
		Site:     "site-a",
		Start:    start,
		End:      start.Add(5 * time.Minute),
		Size:     int64(1000 + n),
		SHA256:   hex.EncodeToString(sum[:]),
		Received: start.Add(6 * time.Minute),
		Ingest:   IngestTUS,
	}
}

// appendAlternating appends n clips alternating between cameras: entry i
// belongs to cams[i%len(cams)] and is that camera's clip i/len(cams).
func (f *fixture) appendAlternating(t testing.TB, n int, cams ...string) []Entry {
	t.Helper()
	var out []Entry
	for i := 0; i < n; i++ {
		e, err := f.l.Append(context.Background(), clipN(cams[i%len(cams)], i/len(cams)))
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

// exec runs tamper SQL directly on the database.
func (f *fixture) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	_, err := f.db.Exec(q, args...)
	require.NoError(t, err, q)
}

// bulkLoad inserts n valid, chained entries in one transaction, bypassing
// Append, to set up large ledgers quickly.
func bulkLoad(t testing.TB, db *sql.DB, n, cameras int) {
	t.Helper()
	tx, err := db.Begin()
	require.NoError(t, err)
	defer tx.Rollback()
	stmt, err := tx.Prepare(`INSERT INTO ledger_entries
		(idx, camera, clip, wearer, site, start_ms, end_ms, size, sha256, received_ms, ingest, prev, hash, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	require.NoError(t, err)
	defer stmt.Close()
	last := make(map[string]string)
	for i := 0; i < n; i++ {
		c := clipN(fmt.Sprintf("cam-%d", i%cameras), i/cameras)
		prev := last[c.Camera]
		b, err := encodeBody(c, prev)
		require.NoError(t, err)
		h := hexHash(LeafHash(b))
		_, err = stmt.Exec(i, c.Camera, c.Clip, c.Wearer, c.Site, c.Start.UnixMilli(), c.End.UnixMilli(), c.Size,
			c.SHA256, c.Received.UnixMilli(), c.Ingest, prev, h, b)
		require.NoError(t, err)
		last[c.Camera] = h
	}
	require.NoError(t, tx.Commit())
}

// problemsText renders a report for failure messages.
func problemsText(r Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  [%d %s/%s] %s\n", p.Index, p.Camera, p.Clip, p.What)
	}
	return b.String()
}
