package app

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/internal/schema"
	"github.com/vigil-gw/vigil/gateway/internal/syncbuf"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
)

// extractState unpacks testdata/state-v0.tar.gz (made by
// testdata/make-state-v0.sh with the last unversioned vigil) and returns
// its state directory.
func extractState(t *testing.T) string {
	t.Helper()
	f, err := os.Open("testdata/state-v0.tar.gz")
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		require.True(t, strings.HasPrefix(path, dir+string(filepath.Separator)), "entry %q stays inside", h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(path, 0o750))
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o750))
			// Owner-writable even for the store's read-only objects, so
			// t.TempDir can remove them.
			out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)|0o600)
			require.NoError(t, err)
			_, err = io.Copy(out, tr)
			require.NoError(t, err)
			require.NoError(t, out.Close())
		}
	}
	return filepath.Join(dir, "state")
}

// versions reads the three stores' schema versions with nothing running.
func versions(t *testing.T, state string) (stateDB, evidenceDB, governanceDB int) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(state, StateDB), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.View(func(tx *bolt.Tx) error { var err error; stateDB, err = schema.Version(tx); return err }))
	require.NoError(t, db.Close())
	for _, x := range []struct {
		file string
		v    *int
	}{{evidence.DBFile, &evidenceDB}, {GovernanceDB, &governanceDB}} {
		sdb, err := sqlitedb.Open(filepath.Join(state, x.file))
		require.NoError(t, err)
		*x.v, err = sqlitedb.Version(context.Background(), sdb)
		require.NoError(t, err)
		require.NoError(t, sdb.Close())
	}
	return stateDB, evidenceDB, governanceDB
}

func fixtureConfig(state string) Config {
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen, cfg.GatewayID = state, "127.0.0.1:0", "127.0.0.1:0", "vigil-fixture"
	return cfg
}

// A state directory written by the previous, unversioned vigil opens with
// this one: every store is migrated to the current version, logged, and
// the alerts, the alarm still waiting in the outbox, the devices, the users
// and the audit trail are all there.
func TestMigrateStateV0(t *testing.T) {
	ctx := context.Background()
	state := extractState(t)
	b, e, g := versions(t, state)
	require.Equal(t, [3]int{0, 0, 0}, [3]int{b, e, g}, "the fixture is unversioned")

	arc := startTestARC(t) // the receiver that had gone is back, at a new address
	cfg := fixtureConfig(state)
	cfg.ARC = []ARCConfig{{URL: arc.url()}}
	logs := &syncbuf.Buffer{}
	a, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	stop := runApp(t, a)
	for _, store := range []string{StateDB, evidence.DBFile, GovernanceDB} {
		assert.Contains(t, logs.String(), `msg="schema migrated" store=`+store+" from=0 to=1")
	}

	// Alerts: the acknowledged one as it was; the undelivered one reaches
	// the receiver from the outbox entry the old version left pending.
	// The fixture's devices were last heard from when it was made, so their
	// offline deadlines have passed: the timers carried over fire at start,
	// at a moment of their own, and raise offline alerts beside these
	// (checked below).
	all, err := a.engine.List(0)
	require.NoError(t, err)
	var list []alert.View
	byDevice := map[string]alert.View{}
	for _, v := range all {
		if v.Event != alert.EventOffline {
			list = append(list, v)
			byDevice[v.Device] = v
		}
	}
	require.Len(t, list, 3, "two duress alarms and the old receiver's link-down alert")
	acked := byDevice["btn-1"]
	assert.Equal(t, alert.Acknowledged, acked.State)
	assert.Equal(t, "Admin", acked.AcknowledgedBy)
	assert.True(t, acked.Verified)
	assert.Equal(t, "Nurse A", acked.Wearer)
	pending := byDevice["btn-2"]
	require.Equal(t, alert.Raised, pending.State, "undelivered when the old gateway stopped")
	waitUntil(t, 10*time.Second, "the pending alarm at the receiver", func() bool {
		v, err := a.engine.Get(pending.ID)
		return err == nil && v.State == alert.Delivered
	})
	assert.True(t, arc.zones()["002"], "btn-2's zone reached the receiver")
	waitUntil(t, 10*time.Second, "btn-1 reported offline from its carried-over timer", func() bool {
		list, err := a.engine.List(0)
		return err == nil && slices.ContainsFunc(list, func(v alert.View) bool { return v.Event == alert.EventOffline && v.Device == "btn-1" })
	})
	n, err := a.journal.Count()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 2, "the journal records")

	devices, err := a.registry.List()
	require.NoError(t, err)
	var ids []string
	for _, d := range devices {
		ids = append(ids, d.ID)
	}
	assert.Equal(t, []string{"btn-1", "btn-2"}, ids)

	users, err := a.accounts.Users(ctx)
	require.NoError(t, err)
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	slices.Sort(names)
	assert.Equal(t, []string{"Admin", "IG Officer", "Ops One"}, names)
	_, who, err := a.accounts.Login(ctx, "Ops One", "correct horse battery", time.Now())
	require.NoError(t, err, "the old password hash still logs in")
	assert.Equal(t, access.Operator, who.Role)

	searches, err := a.audit.Query(ctx, audit.Query{Action: audit.ActionClipSearch})
	require.NoError(t, err)
	require.NotEmpty(t, searches, "the audit trail's clip search")
	assert.Equal(t, "IG Officer", searches[0].Actor)
	report, err := a.audit.Verify(ctx)
	require.NoError(t, err)
	assert.True(t, report.OK(), "the audit chain and its seal still verify: %s", report)

	require.NoError(t, stop())
	b, e, g = versions(t, state)
	assert.Equal(t, [3]int{len(schema.State()), evidence.SchemaVersion(), access.DBSchema().Version()}, [3]int{b, e, g},
		"every store is at this build's version")
}

// A store written by a newer vigil is refused, naming the store and both
// versions, and left as it was.
func TestNewerStateIsRefused(t *testing.T) {
	for _, tc := range []struct {
		store string
		bump  func(t *testing.T, path string, v int)
		known int
	}{
		{StateDB, func(t *testing.T, path string, v int) {
			db, err := bolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bolt.Tx) error { return schema.SetVersion(tx, v) }))
			require.NoError(t, db.Close())
		}, len(schema.State())},
		{GovernanceDB, bumpSQLite, access.DBSchema().Version()},
		{evidence.DBFile, bumpSQLite, evidence.SchemaVersion()},
	} {
		t.Run(tc.store, func(t *testing.T) {
			state := extractState(t)
			future := tc.known + 1
			tc.bump(t, filepath.Join(state, tc.store), future)
			_, err := New(fixtureConfig(state), nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.store+": state written by a newer vigil (schema "+itoa(future)+
				", this build knows "+itoa(tc.known)+"); upgrade vigil or restore a backup")
			switch tc.store {
			case StateDB:
				b, _, _ := versions(t, state)
				assert.Equal(t, future, b)
			case GovernanceDB:
				_, _, g := versions(t, state)
				assert.Equal(t, future, g)
			default:
				_, e, _ := versions(t, state)
				assert.Equal(t, future, e)
			}
		})
	}
}

func bumpSQLite(t *testing.T, path string, v int) {
	db, err := sqlitedb.Open(path)
	require.NoError(t, err)
	_, err = db.Exec("PRAGMA user_version = " + itoa(v))
	require.NoError(t, err)
	require.NoError(t, db.Close())
}

func itoa(i int) string { return strconv.Itoa(i) }
