package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/objstore"
)

type fakeCameras map[string]Camera

func (f fakeCameras) Camera(id string) (Camera, bool) { c, ok := f[id]; return c, ok }
func (f fakeCameras) CameraByToken(string) (Camera, bool) {
	return Camera{}, false
}

type alerts struct {
	mu    sync.Mutex
	kinds []string
}

func (a *alerts) raise(kind, _, _ string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kinds = append(a.kinds, kind)
}

func (a *alerts) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.kinds...)
}

var base = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type rig struct {
	svc    *Service
	state  string
	alerts *alerts
	now    time.Time
}

func newRig(t *testing.T, mod func(*Config)) *rig {
	t.Helper()
	r := &rig{state: t.TempDir(), alerts: &alerts{}, now: base.Add(time.Hour)}
	cfg := Config{State: r.state, Cameras: fakeCameras{"cam-1": {ID: "cam-1", Site: "leeds", Wearer: "Nurse A"}, "cam-2": {ID: "cam-2", Site: "leeds", Wearer: "Nurse B"}},
		Alert: r.alerts.raise, Now: func() time.Time { return r.now }, CheckpointEvery: 2}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { svc.Close() })
	r.svc = svc
	return r
}

// spool writes a clip file as ingest would leave it and returns its Spooled.
func (r *rig) spool(t *testing.T, camera, clip string, data []byte, start time.Time) ingest.Spooled {
	t.Helper()
	p := filepath.Join(t.TempDir(), clip)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	return ingest.Spooled{Meta: ingest.Meta{Camera: camera, Clip: clip, SHA256: d, Size: int64(len(data)), Start: start, End: start.Add(time.Minute)},
		Path: p, Digest: d, Ingest: "tus", Received: r.now}
}

func TestAcceptUploadVerifyDelete(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	sp := r.spool(t, "cam-1", "c1", []byte("footage one"), base)
	require.NoError(t, r.svc.Admit(ctx, sp.Meta))
	require.NoError(t, r.svc.Accept(ctx, sp))
	_, err := os.Stat(sp.Path)
	assert.True(t, errors.Is(err, os.ErrNotExist), "the service took the file over")

	c, err := r.svc.Get(ctx, "cam-1", "c1")
	require.NoError(t, err)
	assert.Equal(t, stateQueued, c.State)
	assert.Equal(t, NonEvidential, c.Category)
	assert.Equal(t, base.Add(31*24*time.Hour), c.RetainUntil, "non-evidential footage: 31 days from capture")
	assert.Equal(t, "clips/leeds/cam-1/2026/11/21/c1", c.ObjectKey)

	assert.ErrorIs(t, r.svc.Admit(ctx, sp.Meta), ingest.ErrDuplicate)
	r.svc.uploadQueued(ctx)
	c, err = r.svc.Get(ctx, "cam-1", "c1")
	require.NoError(t, err)
	assert.Equal(t, stateUploaded, c.State)
	o, err := r.svc.store.Stat(ctx, c.ObjectKey)
	require.NoError(t, err)
	assert.Equal(t, objstore.Governance, o.Mode)
	assert.Equal(t, c.RetainUntil, o.RetainUntil.UTC())
	assert.Equal(t, c.SHA256, o.SHA256)
	left, _ := os.ReadDir(filepath.Join(r.state, Dir, clipsDir))
	assert.Empty(t, left, "the local copy goes once the stored one is verified")

	ev, err := r.svc.Custody(ctx, "cam-1", "c1")
	require.NoError(t, err)
	var steps []string
	for _, e := range ev {
		steps = append(steps, e.What)
	}
	assert.Equal(t, []string{"received", "ledgered", "uploaded", "verified", "local copy deleted"}, steps)

	rep, err := r.svc.Verify(ctx, true)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
	assert.Equal(t, 1, rep.Stored)
}

func TestMismatchIsQuarantinedWithAnAlert(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	sp := r.spool(t, "cam-1", "c1", []byte("real"), base)
	sp.SHA256 = strings.Repeat("0", 64)
	err := r.svc.Accept(ctx, sp)
	require.ErrorIs(t, err, ingest.ErrMismatch)
	assert.Contains(t, err.Error(), "cam-1/c1")
	q, err := r.svc.Quarantine(ctx)
	require.NoError(t, err)
	require.Len(t, q, 1)
	_, err = os.Stat(q[0].Path)
	assert.NoError(t, err, "the quarantined bytes are kept")
	assert.Equal(t, []string{"clip_digest_mismatch"}, r.alerts.got())
	_, err = r.svc.Get(ctx, "cam-1", "c1")
	assert.ErrorIs(t, err, ErrNotFound, "never entered as evidence")
	size, _ := r.svc.ledger.Size(ctx)
	assert.Zero(t, size)
}

func TestUnknownCameraAndOversizeRefused(t *testing.T) {
	r := newRig(t, func(c *Config) { c.MaxClipSize = 10 })
	ctx := context.Background()
	sp := r.spool(t, "cam-9", "c1", []byte("x"), base)
	assert.ErrorIs(t, r.svc.Admit(ctx, sp.Meta), ingest.ErrUnknownCamera)
	big := r.spool(t, "cam-1", "c2", []byte("more than ten bytes"), base)
	var me *ingest.MetaError
	assert.ErrorAs(t, r.svc.Admit(ctx, big.Meta), &me)
}

func TestDuressMakesFootageEvidentialBeforeAndAfterUpload(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	// Three clips: before the window, inside it (already uploaded), and one
	// that arrives after the alert.
	old := r.spool(t, "cam-1", "old", []byte("old"), base.Add(-time.Hour))
	in := r.spool(t, "cam-1", "in", []byte("inside"), base.Add(-90*time.Second))
	other := r.spool(t, "cam-2", "other", []byte("other camera"), base)
	for _, sp := range []ingest.Spooled{old, in, other} {
		require.NoError(t, r.svc.Accept(ctx, sp))
	}
	r.svc.uploadQueued(ctx)

	require.NoError(t, r.svc.MarkEvidential(ctx, "btn-1.5", "cam-1", base.Add(-2*time.Minute), time.Time{}))
	r.svc.applyHolds(ctx)
	c, err := r.svc.Get(ctx, "cam-1", "in")
	require.NoError(t, err)
	assert.Equal(t, Evidential, c.Category)
	assert.True(t, c.LegalHold)
	assert.Equal(t, []string{"btn-1.5"}, c.Incidents)
	o, err := r.svc.store.Stat(ctx, c.ObjectKey)
	require.NoError(t, err)
	assert.True(t, o.LegalHold, "the stored object got the hold")
	assert.Equal(t, base.Add(-90*time.Second).Add(31*24*time.Hour), o.RetainUntil.UTC(), "the hold keeps it while the incident is open; the date is set when it closes")

	for _, id := range []string{"old"} {
		c, _ := r.svc.Get(ctx, "cam-1", id)
		assert.Equal(t, NonEvidential, c.Category, id)
	}
	c2, _ := r.svc.Get(ctx, "cam-2", "other")
	assert.Equal(t, NonEvidential, c2.Category, "another wearer's camera is untouched")

	// A clip recorded during the (still open) incident arrives later.
	late := r.spool(t, "cam-1", "late", []byte("late"), base.Add(20*time.Minute))
	require.NoError(t, r.svc.Accept(ctx, late))
	c, _ = r.svc.Get(ctx, "cam-1", "late")
	assert.Equal(t, Evidential, c.Category)
	assert.True(t, c.LegalHold)

	// Resolution closes the window 10 minutes later; clips after that are ordinary.
	require.NoError(t, r.svc.CloseWindow(ctx, "btn-1.5", "cam-1", base.Add(30*time.Minute)))
	after := r.spool(t, "cam-1", "after", []byte("after"), base.Add(41*time.Minute))
	require.NoError(t, r.svc.Accept(ctx, after))
	c, _ = r.svc.Get(ctx, "cam-1", "after")
	assert.Equal(t, NonEvidential, c.Category)
	linked, err := r.svc.List(ctx, Filter{Incident: "btn-1.5"})
	require.NoError(t, err)
	assert.Len(t, linked, 2)
}

func TestHighWaterRefusesOnlyNonEvidential(t *testing.T) {
	r := newRig(t, func(c *Config) { c.HighWater = 1e-9 }) // any disk is "full"
	ctx := context.Background()
	sp := r.spool(t, "cam-1", "c1", []byte("x"), base)
	assert.ErrorIs(t, r.svc.Admit(ctx, sp.Meta), ingest.ErrFull)
	assert.Equal(t, []string{"evidence_spool_full"}, r.alerts.got())
	require.NoError(t, r.svc.MarkEvidential(ctx, "a1", "cam-1", base.Add(-time.Minute), time.Time{}))
	assert.NoError(t, r.svc.Admit(ctx, sp.Meta), "evidential footage is never refused")
}

func TestCheckpointsAreSignedAndStored(t *testing.T) {
	r := newRig(t, nil) // CheckpointEvery: 2
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c"} {
		require.NoError(t, r.svc.Accept(ctx, r.spool(t, "cam-1", id, []byte(id), base.Add(time.Duration(i)*time.Minute))))
	}
	// The first entry is signed at once, then every second one.
	cps, err := r.svc.ledger.Checkpoints(ctx)
	require.NoError(t, err)
	require.Len(t, cps, 2)
	assert.Equal(t, []uint64{1, 3}, []uint64{cps[0].Size, cps[1].Size})
	before, err := r.svc.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), before.UnstoredCheckpoints)
	r.svc.uploadCheckpoints(ctx)
	o, err := r.svc.store.Stat(ctx, CheckpointKey(3))
	require.NoError(t, err)
	assert.Equal(t, objstore.Compliance, o.Mode)
	st, err := r.svc.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), st.LedgerSize)
	assert.Equal(t, uint64(3), st.CheckpointSize)
	assert.Equal(t, int64(3), st.Backlog)
	assert.Zero(t, st.UnstoredCheckpoints)

	require.NoError(t, r.svc.Accept(ctx, r.spool(t, "cam-1", "d", []byte("d"), base.Add(5*time.Minute))))
	cp, _, _ := r.svc.ledger.Latest(ctx)
	assert.Equal(t, uint64(3), cp.Size, "one new entry is not enough")
	r.now = r.now.Add(11 * time.Minute)
	r.svc.maybeCheckpoint(ctx, false)
	cp, _, _ = r.svc.ledger.Latest(ctx)
	assert.Equal(t, uint64(4), cp.Size, "the interval signs a grown ledger")
}

func TestVerifyNamesTamperedRecordsAndObjects(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c"} {
		require.NoError(t, r.svc.Accept(ctx, r.spool(t, "cam-1", id, []byte("clip "+id), base.Add(time.Duration(i)*time.Minute))))
	}
	r.svc.uploadQueued(ctx)
	r.svc.maybeCheckpoint(ctx, true)
	rep, err := r.svc.Verify(ctx, true)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)

	// Someone edits a clip record's digest directly in the database.
	_, err = r.svc.db.Exec(`UPDATE clips SET sha256=? WHERE clip='b'`, strings.Repeat("1", 64))
	require.NoError(t, err)
	rep, err = r.svc.Verify(ctx, false)
	require.NoError(t, err)
	require.Len(t, rep.Problems, 1, "%v", rep.Problems)
	assert.Contains(t, rep.Problems[0], "cam-1/b")
	assert.Contains(t, rep.Problems[0], "edited")
}

func TestRestartResumesTheQueue(t *testing.T) {
	state := t.TempDir()
	cfg := Config{State: state, Cameras: fakeCameras{"cam-1": {ID: "cam-1", Site: "s", Wearer: "W"}}}
	svc, err := Open(context.Background(), cfg)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "c1")
	require.NoError(t, os.WriteFile(p, []byte("bytes"), 0o600))
	sum := sha256.Sum256([]byte("bytes"))
	d := hex.EncodeToString(sum[:])
	require.NoError(t, svc.Accept(context.Background(), ingest.Spooled{Meta: ingest.Meta{Camera: "cam-1", Clip: "c1", SHA256: d, Size: 5, Start: base, End: base}, Path: p, Digest: d, Ingest: "dock", Received: base}))
	require.NoError(t, svc.Close())

	svc, err = Open(context.Background(), cfg)
	require.NoError(t, err)
	defer svc.Close()
	st, err := svc.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, int64(1), st.Backlog)
	svc.uploadQueued(context.Background())
	st, _ = svc.Status(context.Background())
	assert.Zero(t, st.Backlog)
}

func TestVerifyCatchesARollbackThroughTheStoredCheckpoints(t *testing.T) {
	r := newRig(t, func(c *Config) { c.CheckpointEvery = 1 })
	ctx := context.Background()
	for i, id := range []string{"a", "b", "c"} {
		require.NoError(t, r.svc.Accept(ctx, r.spool(t, "cam-1", id, []byte("clip "+id), base.Add(time.Duration(i)*time.Minute))))
	}
	r.svc.uploadQueued(ctx)
	r.svc.uploadCheckpoints(ctx)
	// An administrator removes the newest clip and every trace of it from
	// the gateway's database, checkpoints included; the local ledger is
	// then self-consistent, but the store kept the checkpoint of 3 entries.
	for _, q := range []string{`DELETE FROM ledger_entries WHERE idx=2`, `DELETE FROM ledger_checkpoints WHERE size=3`,
		`DELETE FROM checkpoint_objects WHERE size=3`, `DELETE FROM clips WHERE clip='c'`, `DELETE FROM custody WHERE clip='c'`} {
		_, err := r.svc.db.Exec(q)
		require.NoError(t, err, q)
	}
	rep, err := r.svc.Verify(ctx, false)
	require.NoError(t, err)
	joined := strings.Join(rep.Problems, "\n")
	assert.Contains(t, joined, "checkpoint object "+CheckpointKey(3)+": signed a ledger of 3 entries but the ledger now has 2")
	assert.Contains(t, joined, "clips/leeds/cam-1/2026/11/21/c: stored but not in the ledger")
}

func TestDockIngestIntoTheService(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	dock := t.TempDir()
	d, err := ingest.NewDock(ingest.DockConfig{Dir: dock, Spool: filepath.Join(r.state, Dir, dockSpool), Sink: r.svc, Now: func() time.Time { return r.now }})
	require.NoError(t, err)
	data := []byte("footage offloaded from a dock")
	sum := sha256.Sum256(data)
	require.NoError(t, os.WriteFile(filepath.Join(dock, "d1.mp4"), data, 0o600))
	side := `{"camera":"cam-1","clip":"d1.mp4","sha256":"` + hex.EncodeToString(sum[:]) + `","size":29,"start":"2026-11-21T10:00:00Z","end":"2026-11-21T10:01:00Z"}`
	require.NoError(t, os.WriteFile(filepath.Join(dock, "d1.mp4.json"), []byte(side), 0o600))
	d.Scan(ctx)
	c, err := r.svc.Get(ctx, "cam-1", "d1.mp4")
	require.NoError(t, err)
	assert.Equal(t, "dock", c.Ingest)
	left, _ := os.ReadDir(dock)
	assert.Empty(t, left, "the dock copy is removed once the clip is in the ledger")
	r.svc.uploadQueued(ctx)
	rep, err := r.svc.Verify(ctx, true)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
}
