package audit

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
)

const testOrigin = "vigil.test/gw-1/audit"

// t0 is the fixed start of test time. It must be recent: the directory store
// refuses a retain-until date that is not in the future by its own clock.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// fakeClock is a settable clock whose timers fire when it is advanced.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives once the clock reaches now+d.
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// fixture is a log on a real SQLite file with a directory store.
type fixture struct {
	t        testing.TB
	ctx      context.Context
	path     string
	db       *sql.DB
	l        *Log
	store    *objstore.Dir
	clock    *fakeClock
	signer   note.Signer
	verifier note.Verifier
	cfg      Config
}

// newFixture opens a log with SealEvery 10, a directory store and a fake
// clock; opts adjust the config before opening.
func newFixture(t testing.TB, opts ...func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := objstore.NewDir(filepath.Join(dir, "store"))
	require.NoError(t, err)
	require.NoError(t, store.InitBucket(ctx))
	f := &fixture{t: t, ctx: ctx, path: filepath.Join(dir, "gov.db"), store: store, clock: newClock()}
	_, f.signer, f.verifier = ledgertest.SeededKey(t, "vigil-gw-1", 7)
	f.cfg = Config{Signer: f.signer, Verifier: f.verifier, Origin: testOrigin, SealEvery: 10,
		SealInterval: 15 * time.Minute, Store: store, Now: f.clock.Now}
	for _, o := range opts {
		o(&f.cfg)
	}
	f.db, err = sqlitedb.Open(f.path)
	require.NoError(t, err)
	t.Cleanup(func() { f.db.Close() })
	f.l, err = Open(ctx, f.db, f.cfg)
	require.NoError(t, err)
	f.l.after = f.clock.After
	return f
}

// rec is the n-th test record: distinct content for every n.
func rec(n int) Record {
	actors := []string{"alice", "bob", "carol"}
	return Record{
		Actor: actors[n%len(actors)], Role: RoleSupervisor, Action: ActionClipView,
		Camera: "cam-1", Clip: fmt.Sprintf("c%d", n), Incident: fmt.Sprintf("INC-%d", n%4),
		Why: fmt.Sprintf("reviewing incident %d", n), From: "10.0.0.5", Outcome: OutcomeOK,
	}
}

// appendN appends records rec(from) … rec(from+n-1), one second apart.
func (f *fixture) appendN(from, n int) []Record {
	f.t.Helper()
	var out []Record
	for i := from; i < from+n; i++ {
		f.clock.Advance(time.Second)
		r, err := f.l.Append(f.ctx, rec(i))
		require.NoError(f.t, err)
		out = append(out, r)
	}
	return out
}

// exec runs SQL directly on the database, as an attacker with write access
// would.
func (f *fixture) exec(q string, args ...any) {
	f.t.Helper()
	_, err := f.db.ExecContext(f.ctx, q, args...)
	require.NoError(f.t, err)
}

// all returns every record as stored.
func (f *fixture) all() []Record {
	f.t.Helper()
	recs, err := f.l.Query(f.ctx, Query{})
	require.NoError(f.t, err)
	return recs
}

// forge replaces the whole trail with recs renumbered from 1 and re-chained
// with the package's own hashing: the attacker who knows the format.
func (f *fixture) forge(recs []Record) {
	f.t.Helper()
	f.exec(`DELETE FROM audit_records`)
	prev := ""
	for i, r := range recs {
		r.Seq, r.Prev = int64(i+1), prev
		r.Hash = r.ComputeHash()
		prev = r.Hash
		f.exec(`INSERT INTO audit_records (`+recordColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Seq, r.At.UnixMilli(), r.Actor, r.Role, r.Action, r.Camera, r.Clip, r.Incident, r.Release,
			r.Why, r.From, r.Outcome, r.Detail, r.Prev, r.Hash)
	}
}

// verify runs Verify and fails the test on an error.
func (f *fixture) verify() Report {
	f.t.Helper()
	rep, err := f.l.Verify(f.ctx)
	require.NoError(f.t, err)
	return rep
}

// sealCount returns the number of local seals.
func (f *fixture) sealCount() int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.db.QueryRowContext(f.ctx, `SELECT COUNT(*) FROM audit_seals`).Scan(&n))
	return n
}
