package evidence

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
)

// s3Rig is a rig whose store is a real MinIO bucket with object locking.
func s3Rig(t *testing.T, mod func(*Config)) *rig {
	t.Helper()
	srv := s3test.Start(t)
	cfg, err := objstore.ParseS3URL(srv.URL("evidence"))
	require.NoError(t, err)
	cfg.AccessKey, cfg.SecretKey, cfg.Region = srv.AccessKey, srv.SecretKey, s3test.Region
	r := newRig(t, func(c *Config) {
		c.S3 = &cfg
		if mod != nil {
			mod(c)
		}
	})
	require.NoError(t, r.svc.Store().InitBucket(context.Background()))
	return r
}

func (r *rig) accept(t *testing.T, camera, clip string, start time.Time) Clip {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, r.svc.Accept(ctx, r.spool(t, camera, clip, []byte("footage of "+clip), start)))
	c, err := r.svc.Get(ctx, camera, clip)
	require.NoError(t, err)
	return c
}

// stored is what the store says about a clip's object.
func (r *rig) stored(t *testing.T, c Clip) objstore.Object {
	t.Helper()
	o, err := r.svc.store.Stat(context.Background(), c.ObjectKey)
	require.NoError(t, err)
	return o
}

func TestIncidentHoldsUntilClosedThenKeepsForThePeriod(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Evidential = 400 * 24 * time.Hour })
	ctx := context.Background()
	in := r.accept(t, "cam-1", "in", base.Add(-90*time.Second))
	r.svc.uploadQueued(ctx)
	require.NoError(t, r.svc.MarkEvidential(ctx, "inc-1", "cam-1", base.Add(-2*time.Minute), time.Time{}))
	r.svc.applyHolds(ctx)

	c, err := r.svc.Get(ctx, "cam-1", "in")
	require.NoError(t, err)
	assert.True(t, c.LegalHold, "held while the incident is open")
	assert.Equal(t, in.RetainUntil, c.RetainUntil, "no date is needed while the hold keeps it")
	assert.True(t, r.stored(t, c).LegalHold)

	r.now = base.Add(10 * 24 * time.Hour)
	refs, err := r.svc.CloseIncident(ctx, "inc-1", "ig.officer", "investigation closed, no further action")
	require.NoError(t, err)
	assert.Equal(t, []ClipRef{{"cam-1", "in"}}, refs)
	r.svc.applyHolds(ctx)
	c, _ = r.svc.Get(ctx, "cam-1", "in")
	assert.False(t, c.LegalHold, "closing the incident lifts its hold")
	assert.Equal(t, r.now.Add(400*24*time.Hour), c.RetainUntil, "kept for the evidential period after closing")
	o := r.stored(t, c)
	assert.False(t, o.LegalHold)
	assert.Equal(t, c.RetainUntil, o.RetainUntil.UTC(), "the store got the new date")

	_, err = r.svc.CloseIncident(ctx, "inc-1", "ig.officer", "again")
	assert.ErrorContains(t, err, "already closed")

	// A late clip of the closed incident's window is evidential without a hold.
	late := r.accept(t, "cam-1", "late", base.Add(time.Minute))
	assert.Equal(t, Evidential, late.Category)
	assert.False(t, late.LegalHold)
	assert.Equal(t, base.Add(10*24*time.Hour).Add(400*24*time.Hour), late.RetainUntil)

	custody, err := r.svc.Custody(ctx, "cam-1", "in")
	require.NoError(t, err)
	var whats []string
	for _, e := range custody {
		whats = append(whats, e.What)
	}
	assert.Contains(t, whats, "incident closed")
}

func TestPersonsHoldOutlivesTheIncident(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	r.accept(t, "cam-1", "a", base)
	r.svc.uploadQueued(ctx)
	require.NoError(t, r.svc.MarkEvidential(ctx, "inc-2", "cam-1", base.Add(-time.Minute), base.Add(time.Hour)))
	require.NoError(t, r.svc.SetLegalHold(ctx, "cam-1", "a", "dc.smith", "civil claim notified by solicitors"))
	_, err := r.svc.CloseIncident(ctx, "inc-2", "ig", "closed")
	require.NoError(t, err)
	r.svc.applyHolds(ctx)
	c, _ := r.svc.Get(ctx, "cam-1", "a")
	assert.True(t, c.LegalHold, "the person's hold remains after the incident closes")
	assert.True(t, r.stored(t, c).LegalHold)

	require.NoError(t, r.svc.LiftLegalHold(ctx, "cam-1", "a", "ig", "claim settled"))
	r.svc.applyHolds(ctx)
	c, _ = r.svc.Get(ctx, "cam-1", "a")
	assert.False(t, c.LegalHold)
	assert.False(t, r.stored(t, c).LegalHold)
	assert.ErrorContains(t, r.svc.LiftLegalHold(ctx, "cam-1", "a", "ig", "again"), "no legal hold was set")
	assert.ErrorIs(t, r.svc.SetLegalHold(ctx, "cam-1", "nope", "x", "y"), ErrNotFound)
}

func TestRetentionIsOnlyExtended(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	c := r.accept(t, "cam-1", "a", base)
	err := r.svc.ExtendRetention(ctx, "cam-1", "a", c.RetainUntil.Add(-time.Hour), "inv", "shorter")
	assert.ErrorIs(t, err, ErrNotExtended)
	assert.ErrorContains(t, err, "would shorten it")
	until := c.RetainUntil.Add(90 * 24 * time.Hour)
	require.NoError(t, r.svc.ExtendRetention(ctx, "cam-1", "a", until, "inv", "complaint under review"))
	r.svc.uploadQueued(ctx)
	c, _ = r.svc.Get(ctx, "cam-1", "a")
	assert.Equal(t, until, c.RetainUntil)
	assert.Equal(t, until, r.stored(t, c).RetainUntil.UTC(), "uploaded with the extended date")
}

// The sweeper against real MinIO: expired non-evidential footage goes (with a
// GOVERNANCE bypass, because the store's clock has not reached the date the
// injected clock has), held footage stays, and an object the store holds
// refuses even the bypass.
func TestSweepDeletesExpiredFromMinIOAndRefusesHeld(t *testing.T) {
	r := s3Rig(t, func(c *Config) { c.Evidential = time.Hour })
	ctx := context.Background()
	plain := r.accept(t, "cam-1", "plain", base.Add(-time.Hour))
	held := r.accept(t, "cam-1", "held", base.Add(-50*time.Minute))
	storeHeld := r.accept(t, "cam-2", "store-held", base.Add(-40*time.Minute))
	evid := r.accept(t, "cam-2", "evidential", base.Add(-30*time.Minute))
	for range 4 {
		r.svc.uploadQueued(ctx)
	}
	require.NoError(t, r.svc.SetLegalHold(ctx, "cam-1", "held", "inv", "suspect identified"))
	require.NoError(t, r.svc.MarkEvidential(ctx, "inc-3", "cam-2", base.Add(-31*time.Minute), base.Add(-29*time.Minute)))
	_, err := r.svc.CloseIncident(ctx, "inc-3", "ig", "no further action")
	require.NoError(t, err)
	r.svc.applyHolds(ctx)
	// Someone put a hold on one object directly in the store.
	require.NoError(t, r.svc.store.SetLegalHold(ctx, storeHeld.ObjectKey, true))

	// Nothing is due yet.
	due, err := r.svc.Sweep(ctx)
	require.NoError(t, err)
	assert.Empty(t, due)

	r.now = base.Add(32 * 24 * time.Hour)
	due, err = r.svc.Sweep(ctx)
	require.NoError(t, err)
	byClip := map[string]Deletion{}
	for _, d := range due {
		byClip[d.Clip] = d
	}
	assert.NotContains(t, byClip, "held", "a person's hold is never swept")
	require.Contains(t, byClip, "plain")
	assert.NoError(t, byClip["plain"].Err)
	assert.True(t, byClip["plain"].Bypass, "MinIO still protects it under GOVERNANCE until its own clock reaches the date")
	assert.Contains(t, byClip["plain"].Policy, "non-evidential: 31 days after capture")
	require.Contains(t, byClip, "store-held")
	assert.ErrorIs(t, byClip["store-held"].Err, objstore.ErrLocked, "a legal hold in the store refuses even the bypass")
	require.Contains(t, byClip, "evidential")
	assert.ErrorIs(t, byClip["evidential"].Err, objstore.ErrLocked, "evidential footage is never deleted with a bypass")
	assert.False(t, byClip["evidential"].Bypass)

	_, err = r.svc.store.Stat(ctx, plain.ObjectKey)
	assert.ErrorIs(t, err, objstore.ErrNotFound, "gone from MinIO")
	for _, c := range []Clip{held, storeHeld, evid} {
		_, err := r.svc.store.Stat(ctx, c.ObjectKey)
		assert.NoError(t, err, "%s is still stored", c.Clip)
	}
	c, _ := r.svc.Get(ctx, "cam-1", "plain")
	assert.Equal(t, stateDeleted, c.State)
	dels, err := r.svc.Deletions(ctx, time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, dels, 1)
	assert.Equal(t, "plain", dels[0].Clip)
	assert.True(t, dels[0].Bypass)

	// The ledger keeps the entry and verification accounts for the deletion.
	rep, err := r.svc.Verify(ctx, false)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
	assert.Equal(t, 1, rep.Deleted)
	assert.Equal(t, 4, rep.Entries)
	assert.ErrorIs(t, r.svc.SetLegalHold(ctx, "cam-1", "plain", "x", "too late"), ErrDeleted)

	// Marking a clip deleted in the database does not hide it from verify.
	_, err = r.svc.db.Exec(`UPDATE clips SET state='deleted' WHERE clip='held'`)
	require.NoError(t, err)
	rep, err = r.svc.Verify(ctx, false)
	require.NoError(t, err)
	assert.Contains(t, rep.Problems, "clip cam-1/held: marked deleted but no deletion was recorded by the retention sweeper")
}
