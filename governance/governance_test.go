package governance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/exhibit"
	"github.com/vigil-gw/vigil/evidence/ingest"
	"github.com/vigil-gw/vigil/evidence/objstore"
	"github.com/vigil-gw/vigil/evidence/objstore/s3test"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
)

type cameras map[string]evidence.Camera

func (c cameras) Camera(id string) (evidence.Camera, bool)     { v, ok := c[id]; return v, ok }
func (c cameras) CameraByToken(string) (evidence.Camera, bool) { return evidence.Camera{}, false }

var base = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type rig struct {
	ev    *evidence.Service
	users *access.Store
	audit *audit.Log
	gov   *Service
	now   time.Time
	tmp   string
}

func newRig(t *testing.T, s3 *objstore.S3Config, mod func(*Config)) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{now: base, tmp: t.TempDir()}
	clock := func() time.Time { return r.now }
	var err error
	r.ev, err = evidence.Open(ctx, evidence.Config{State: t.TempDir(), S3: s3, Now: clock, Cameras: cameras{
		"cam-1": {ID: "cam-1", Site: "leeds", Wearer: "Nurse A"}, "cam-2": {ID: "cam-2", Site: "leeds", Wearer: "Nurse B"}}})
	require.NoError(t, err)
	t.Cleanup(func() { r.ev.Close() })
	if s3 != nil {
		require.NoError(t, r.ev.Store().InitBucket(ctx))
	}
	db, err := sqlitedb.Open(filepath.Join(t.TempDir(), "governance.db"))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	r.users, err = access.Open(ctx, db, access.Options{})
	require.NoError(t, err)
	signer, verifier := r.ev.Keys()
	r.audit, err = audit.Open(ctx, db, audit.Config{Signer: signer, Verifier: verifier, Origin: "vigil/test/audit", SealEvery: 5,
		Store: r.ev.Store(), Now: clock})
	require.NoError(t, err)
	cfg := Config{Now: clock, Organization: "Test NHS Trust", Contact: "IG Office"}
	if mod != nil {
		mod(&cfg)
	}
	r.gov, err = New(ctx, db, r.ev, r.users, r.audit, cfg)
	require.NoError(t, err)
	for _, u := range []access.User{
		{Name: "op", Role: access.Operator}, {Name: "admin", Role: access.Admin}, {Name: "ian", Role: access.Investigator},
		{Name: "ivy", Role: access.Investigator}, {Name: "iggy", Role: access.IGOfficer}, {Name: "ingrid", Role: access.IGOfficer},
		{Name: "nurse.a", Role: access.Wearer, Wearer: "Nurse A"}, {Name: "sup", Role: access.Supervisor},
	} {
		require.NoError(t, r.users.AddUser(ctx, u, base))
	}
	return r
}

// as is a person calling from an address.
func (r *rig) as(t *testing.T, name string) Who {
	t.Helper()
	u, err := r.users.User(context.Background(), name)
	require.NoError(t, err)
	return Who{Principal: access.Principal{Name: u.Name, Role: u.Role, Wearer: u.Wearer}, From: "10.0.0.7"}
}

// clip puts a clip through the evidence path and returns its bytes.
func (r *rig) clip(t *testing.T, camera, id string, start time.Time) []byte {
	t.Helper()
	data := []byte(strings.Repeat("footage "+camera+"/"+id+" ", 100))
	p := filepath.Join(r.tmp, camera+"_"+id)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	require.NoError(t, r.ev.Accept(context.Background(), ingest.Spooled{Meta: ingest.Meta{Camera: camera, Clip: id, SHA256: d,
		Size: int64(len(data)), Start: start, End: start.Add(time.Minute)}, Path: p, Digest: d, Ingest: "tus", Received: r.now}))
	return data
}

// records returns the audit records of an action, oldest first.
func (r *rig) records(t *testing.T, action string) []audit.Record {
	t.Helper()
	recs, err := r.audit.Query(context.Background(), audit.Query{Action: action})
	require.NoError(t, err)
	return recs
}

func refusedAs(t *testing.T, err error, forbidden bool, reason string) {
	t.Helper()
	var ref *Refused
	require.ErrorAs(t, err, &ref)
	assert.Equal(t, forbidden, ref.Forbidden, ref.Reason)
	assert.Contains(t, ref.Reason, reason)
}

func TestAccessDecisionsAreEnforcedAndAudited(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	r.clip(t, "cam-1", "c1", base.Add(-time.Hour))
	r.clip(t, "cam-1", "c2", base.Add(-90*time.Second))
	r.clip(t, "cam-2", "d1", base.Add(-time.Hour))
	require.NoError(t, r.ev.MarkEvidential(ctx, "inc-1", "cam-1", base.Add(-2*time.Minute), base))
	why := "reviewing the incident of 21 November"

	for _, tc := range []struct {
		name      string
		who       string
		req       AccessRequest
		forbidden bool
		reason    string
	}{
		{"operator sees no footage", "op", AccessRequest{Camera: "cam-1", Clip: "c1", Why: why}, true, "role operator may not view footage"},
		{"admin sees no footage", "admin", AccessRequest{Camera: "cam-1", Clip: "c1", Why: why}, true, "role admin may not view footage"},
		{"IG officer sees no footage", "iggy", AccessRequest{Camera: "cam-1", Clip: "c1", Why: why}, true, "role ig_officer may not view footage"},
		{"no justification", "nurse.a", AccessRequest{Camera: "cam-1", Clip: "c1"}, false, "justification of at least 10 characters"},
		{"too short a justification", "nurse.a", AccessRequest{Camera: "cam-1", Clip: "c1", Why: "  because "}, false, "justification"},
		{"a wearer sees only their own", "nurse.a", AccessRequest{Camera: "cam-2", Clip: "d1", Why: why}, true, "not nurse.a's own footage"},
		{"incident footage needs the incident", "nurse.a", AccessRequest{Camera: "cam-1", Clip: "c2", Why: why}, false, "linked to incident inc-1: give the incident id"},
		{"the wrong incident", "nurse.a", AccessRequest{Camera: "cam-1", Clip: "c2", Why: why, Incident: "inc-9"}, false, "not linked to incident inc-9"},
		{"investigator not assigned", "ian", AccessRequest{Camera: "cam-1", Clip: "c2", Why: why, Incident: "inc-1"}, true, "not footage of an incident assigned to ian"},
		{"investigator, clip of no incident", "ian", AccessRequest{Camera: "cam-1", Clip: "c1", Why: why}, true, "not footage of an incident assigned"},
		{"no such clip", "ian", AccessRequest{Camera: "cam-1", Clip: "nope", Why: why}, false, "no clip cam-1/nope"},
		{"bad purpose", "nurse.a", AccessRequest{Camera: "cam-1", Clip: "c1", Why: why, Purpose: "stream"}, false, `purpose "stream"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.records(t, ""))
			_, err := r.gov.Access(ctx, r.as(t, tc.who), tc.req)
			refusedAs(t, err, tc.forbidden, tc.reason)
			recs := r.records(t, "")
			require.Len(t, recs, before+1, "the refusal is one audit record")
			last := recs[len(recs)-1]
			assert.Equal(t, audit.OutcomeRefused, last.Outcome)
			assert.Equal(t, tc.who, last.Actor)
			assert.Equal(t, "10.0.0.7", last.From)
			assert.Contains(t, last.Detail, tc.reason)
		})
	}

	// Allowed: the wearer's own clip, then the assigned investigator with the incident.
	g, err := r.gov.Access(ctx, r.as(t, "nurse.a"), AccessRequest{Camera: "cam-1", Clip: "c1", Why: "subject access: my own visit"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(g.URL, LinkPath), g.URL)
	refusedAs(t, r.gov.Assign(ctx, r.as(t, "ian"), "inc-1", "ian", why), true, "role investigator may not assign incidents")
	refusedAs(t, r.gov.Assign(ctx, r.as(t, "sup"), "inc-1", "op", why), false, `"op" is not an investigator`)
	require.NoError(t, r.gov.Assign(ctx, r.as(t, "sup"), "inc-1", "ian", "allocated to the violence reduction investigation"))
	g, err = r.gov.Access(ctx, r.as(t, "ian"), AccessRequest{Camera: "cam-1", Clip: "c2", Why: why, Incident: "inc-1", Purpose: Download})
	require.NoError(t, err)
	assert.Equal(t, base.Add(5*time.Minute), g.Expires)
	views := r.records(t, audit.ActionClipDownload)
	require.Len(t, views, 1)
	assert.Equal(t, audit.OutcomeOK, views[0].Outcome)
	assert.Equal(t, "inc-1", views[0].Incident)
	assert.Equal(t, why, views[0].Why)
	assert.Equal(t, "investigator", views[0].Role)

	// Searches are scoped: the investigator sees the incident's clip only,
	// the wearer their own, the IG officer everything, the operator nothing.
	for name, want := range map[string]int{"ian": 1, "nurse.a": 2, "iggy": 3} {
		clips, err := r.gov.Clips(ctx, r.as(t, name), Search{})
		require.NoError(t, err)
		assert.Len(t, clips, want, name)
	}
	_, err = r.gov.Clips(ctx, r.as(t, "op"), Search{})
	refusedAs(t, err, true, "role operator may not search clips")
	_, err = r.gov.Clips(ctx, r.as(t, "nurse.a"), Search{Wearer: "Nurse B"})
	refusedAs(t, err, true, "only their own")

	rep, err := r.gov.VerifyAudit(ctx)
	require.NoError(t, err)
	assert.Empty(t, rep.Problems)
}

func TestLocalLinkServesTheClipUntilItExpires(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	data := r.clip(t, "cam-1", "c1", base)
	g, err := r.gov.Access(ctx, r.as(t, "nurse.a"), AccessRequest{Camera: "cam-1", Clip: "c1", Why: "checking my own footage"})
	require.NoError(t, err)
	token := strings.TrimPrefix(g.URL, LinkPath)
	rc, c, purpose, err := r.gov.Fetch(ctx, token, "10.0.0.8")
	require.NoError(t, err)
	got, _ := io.ReadAll(rc)
	rc.Close()
	assert.Equal(t, data, got)
	assert.Equal(t, "c1", c.Clip)
	assert.Equal(t, View, purpose)
	fetches := r.records(t, audit.ActionClipFetch)
	require.Len(t, fetches, 1)
	assert.Equal(t, "nurse.a", fetches[0].Actor)

	forged := []byte(token)
	forged[3] ^= 1
	_, _, _, err = r.gov.Fetch(ctx, string(forged), "x")
	assert.ErrorIs(t, err, ErrLink)
	r.now = base.Add(5*time.Minute + time.Second)
	_, _, _, err = r.gov.Fetch(ctx, token, "x")
	assert.ErrorIs(t, err, ErrLink, "expired")
}

// Against real MinIO: the link is an S3 presigned URL that works without
// credentials, and stops working when it expires.
func TestPresignedURLWorksAndExpires(t *testing.T) {
	srv := s3test.Start(t)
	cfg, err := objstore.ParseS3URL(srv.URL("evidence"))
	require.NoError(t, err)
	cfg.AccessKey, cfg.SecretKey, cfg.Region = srv.AccessKey, srv.SecretKey, s3test.Region
	r := newRig(t, &cfg, func(c *Config) { c.LinkTTL = time.Second })
	r.now = time.Now() // MinIO checks expiry with its own clock
	ctx := context.Background()
	data := r.clip(t, "cam-1", "c1", r.now.Add(-time.Minute))
	// Upload the clip (Run does it; drive one pass through its public API).
	uploadAll(t, r.ev)

	g, err := r.gov.Access(ctx, r.as(t, "nurse.a"), AccessRequest{Camera: "cam-1", Clip: "c1", Why: "checking my own footage"})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(g.URL, "http://"+srv.Endpoint+"/"), g.URL)
	assert.NotContains(t, g.URL, srv.SecretKey)
	resp, err := http.Get(g.URL)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(got))
	assert.Equal(t, data, got)

	// Expiry is wall-clock time on the store's side: wait it out.
	time.Sleep(2100 * time.Millisecond)
	resp, err = http.Get(g.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, string(body), "expired")
}

// uploadAll runs the evidence service until nothing is queued.
func uploadAll(t *testing.T, ev *evidence.Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ev.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := ev.Status(context.Background())
		require.NoError(t, err)
		if st.Backlog == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "uploads did not finish: %+v", st)
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
}

func TestRetentionChangesNeedRoleAndJustification(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	r.clip(t, "cam-1", "c1", base)
	require.NoError(t, r.ev.MarkEvidential(ctx, "inc-1", "cam-1", base.Add(-time.Minute), base.Add(time.Hour)))
	ch := Change{Camera: "cam-1", Clip: "c1", Incident: "inc-1", Why: "civil claim expected"}
	refusedAs(t, r.gov.SetLegalHold(ctx, r.as(t, "op"), ch), true, "role operator may not set legal hold")
	refusedAs(t, r.gov.SetLegalHold(ctx, r.as(t, "ian"), ch), true, "not footage of an incident assigned to ian")
	refusedAs(t, r.gov.SetLegalHold(ctx, r.as(t, "iggy"), Change{Camera: "cam-1", Clip: "c1", Incident: "inc-1"}), false, "justification")
	require.NoError(t, r.gov.SetLegalHold(ctx, r.as(t, "iggy"), ch))
	require.NoError(t, r.gov.Assign(ctx, r.as(t, "iggy"), "inc-1", "ian", "allocated for the police referral"))
	refusedAs(t, r.gov.LiftLegalHold(ctx, r.as(t, "ian"), ch), true, "role investigator may not lift legal hold")
	refusedAs(t, r.gov.ExtendRetention(ctx, r.as(t, "ian"), ch, base), false, "would shorten it")
	require.NoError(t, r.gov.ExtendRetention(ctx, r.as(t, "ian"), ch, base.AddDate(1, 0, 0)))
	_, err := r.gov.CloseIncident(ctx, r.as(t, "ivy"), "inc-1", "no further action by police")
	refusedAs(t, err, true, "not assigned to ivy")
	refs, err := r.gov.CloseIncident(ctx, r.as(t, "ian"), "inc-1", "no further action by police")
	require.NoError(t, err)
	assert.Len(t, refs, 1)
	got, err := r.ev.Get(ctx, "cam-1", "c1")
	require.NoError(t, err)
	assert.True(t, got.LegalHold, "the IG officer's hold outlives the incident")
	require.NoError(t, r.gov.LiftLegalHold(ctx, r.as(t, "ingrid"), Change{Camera: "cam-1", Clip: "c1", Incident: "inc-1", Why: "claim withdrawn in writing"}))
	got, _ = r.ev.Get(ctx, "cam-1", "c1")
	assert.False(t, got.LegalHold)

	for action, want := range map[string][2]int{ // ok, refused
		audit.ActionHoldSet: {1, 3}, audit.ActionHoldLift: {1, 1}, audit.ActionRetentionExtend: {1, 1}, audit.ActionIncidentClose: {1, 1},
	} {
		var ok, refused int
		for _, rec := range r.records(t, action) {
			switch rec.Outcome {
			case audit.OutcomeOK:
				ok++
			case audit.OutcomeRefused:
				refused++
			}
		}
		assert.Equal(t, want, [2]int{ok, refused}, action)
	}
}

func TestSweepIsAudited(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	r.clip(t, "cam-1", "old", base.Add(-40*24*time.Hour))
	r.clip(t, "cam-2", "new", base)
	uploadAll(t, r.ev)
	dels, err := r.gov.Sweep(ctx)
	require.NoError(t, err)
	require.Len(t, dels, 1)
	recs := r.records(t, audit.ActionClipDelete)
	require.Len(t, recs, 1)
	assert.Equal(t, "old", recs[0].Clip)
	assert.Equal(t, "vigil", recs[0].Actor)
	assert.Equal(t, "system", recs[0].Role)
	assert.Contains(t, recs[0].Detail, "non-evidential: 31 days after capture")
	_, err = r.gov.Access(ctx, r.as(t, "nurse.a"), AccessRequest{Camera: "cam-1", Clip: "old", Why: "checking my own footage"})
	refusedAs(t, err, false, "deleted under the retention policy")
}

func TestReleaseNeedsADistinctIGApproverThenExportsAVerifiablePackage(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	data := r.clip(t, "cam-1", "c1", base.Add(-time.Minute))
	r.clip(t, "cam-2", "zz-secret-clip", base) // another wearer's footage, never in the package
	require.NoError(t, r.ev.MarkEvidential(ctx, "inc-1", "cam-1", base.Add(-2*time.Minute), base.Add(time.Hour)))
	require.NoError(t, r.gov.Assign(ctx, r.as(t, "sup"), "inc-1", "ian", "allocated for the police referral"))
	_, err := r.gov.Access(ctx, r.as(t, "ian"), AccessRequest{Camera: "cam-1", Clip: "c1", Incident: "inc-1", Why: "reviewing before\nthe police referral"})
	require.NoError(t, err)

	req := ReleaseRequest{Incident: "inc-1", CrimeRef: "WY/123456/26", Officer: "DC 4242 Smith", Force: "West Yorkshire Police",
		ExhibitRef: "JS/1", Why: "assault on a community nurse, requested by police"}
	_, err = r.gov.RequestRelease(ctx, r.as(t, "iggy"), req)
	refusedAs(t, err, true, "role ig_officer may not request release")
	_, err = r.gov.RequestRelease(ctx, r.as(t, "ivy"), req)
	refusedAs(t, err, true, "not assigned to ivy")
	bad := req
	bad.CrimeRef = ""
	_, err = r.gov.RequestRelease(ctx, r.as(t, "ian"), bad)
	refusedAs(t, err, false, "crime reference: required")
	rel, err := r.gov.RequestRelease(ctx, r.as(t, "ian"), req)
	require.NoError(t, err)
	assert.Equal(t, Requested, rel.State)

	var buf bytes.Buffer
	_, err = r.gov.Export(ctx, r.as(t, "ian"), rel.ID, &buf)
	refusedAs(t, err, true, "is requested: a package is built only after an IG officer other than the requester approves it")
	assert.Zero(t, buf.Len())
	_, err = r.gov.Decide(ctx, r.as(t, "ian"), rel.ID, true, "I approve my own request")
	refusedAs(t, err, true, "role investigator may not approve release")
	// The requester later became an IG officer: still not their own request.
	promoted := r.as(t, "ian")
	promoted.Role = access.IGOfficer
	_, err = r.gov.Decide(ctx, promoted, rel.ID, true, "I approve my own request")
	refusedAs(t, err, true, "ian made request "+rel.ID+" and may not decide it")
	_, err = r.gov.Decide(ctx, r.as(t, "iggy"), rel.ID, true, "ok")
	refusedAs(t, err, false, "a reason of at least 10 characters")
	rel, err = r.gov.Decide(ctx, r.as(t, "iggy"), rel.ID, true, "lawful basis: prevention and detection of crime")
	require.NoError(t, err)
	assert.Equal(t, Approved, rel.State)
	_, err = r.gov.Decide(ctx, r.as(t, "ingrid"), rel.ID, false, "second decision on the same request")
	refusedAs(t, err, false, "already approved by iggy")

	_, err = r.gov.Export(ctx, r.as(t, "ivy"), rel.ID, &buf)
	refusedAs(t, err, true, "not assigned to ivy")
	rel, err = r.gov.Export(ctx, r.as(t, "ian"), rel.ID, &buf)
	require.NoError(t, err)
	assert.Equal(t, 1, rel.Exports)
	sum := sha256.Sum256(buf.Bytes())
	assert.Equal(t, hex.EncodeToString(sum[:]), rel.ExportSHA256)

	pub, err := r.ev.PublicKey()
	require.NoError(t, err)
	rep, err := exhibit.Verify(ctx, bytes.NewReader(buf.Bytes()), int64(buf.Len()), exhibit.Options{PubKey: pub})
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
	assert.True(t, bytes.Contains(buf.Bytes(), data), "the original clip, byte for byte (stored uncompressed)")
	for _, secret := range []string{"Nurse B", "cam-2", "zz-secret-clip"} {
		assert.False(t, bytes.Contains(buf.Bytes(), []byte(secret)), "the package names %q", secret)
	}
	assert.True(t, bytes.Contains(buf.Bytes(), []byte("reviewing before the police referral")), "the view and its reason are in the continuity log, on one line")

	exports := r.records(t, audit.ActionReleaseExport)
	var ok int
	for _, e := range exports {
		if e.Outcome == audit.OutcomeOK {
			ok++
			assert.Contains(t, e.Detail, rel.ExportSHA256)
			assert.Equal(t, "inc-1", e.Incident)
		}
	}
	assert.Equal(t, 1, ok)

	// The IG view: who saw the footage and why, and the wearer's SAR.
	_, err = r.gov.AuditReport(ctx, r.as(t, "ian"), ReportQuery{})
	refusedAs(t, err, true, "role investigator may not read audit")
	rp, err := r.gov.AuditReport(ctx, r.as(t, "iggy"), ReportQuery{From: base.Add(-time.Hour), To: base.Add(time.Hour)})
	require.NoError(t, err)
	var sawView bool
	for _, row := range rp.Rows {
		if row.Action == audit.ActionClipView && row.Actor == "ian" {
			sawView = true
		}
	}
	assert.True(t, sawView)
	sar, err := r.gov.SubjectAccess(ctx, r.as(t, "nurse.a"), "Nurse A")
	require.NoError(t, err)
	require.Len(t, sar.Clips, 1)
	assert.NotEmpty(t, sar.Accesses)
	_, err = r.gov.SubjectAccess(ctx, r.as(t, "nurse.a"), "Nurse B")
	refusedAs(t, err, true, "only their own")
}
