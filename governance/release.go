package governance

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/evidence/exhibit"
	"github.com/vigil-gw/vigil/evidence/sqlitedb"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
)

// Release states.
const (
	Requested = "requested"
	Approved  = "approved"
	Refusal   = "refused"
)

// ReleaseRequest is what an investigator asks to release to police.
type ReleaseRequest struct {
	Incident   string `json:"incident"`
	CrimeRef   string `json:"crime_reference"`
	Officer    string `json:"officer"`
	Force      string `json:"force"`
	ExhibitRef string `json:"exhibit_reference"`
	Why        string `json:"why"`
}

// Release is a release request and what became of it.
type Release struct {
	ID string `json:"id"`
	ReleaseRequest
	RequestedBy  string    `json:"requested_by"`
	Requested    time.Time `json:"requested"`
	State        string    `json:"state"`
	DecidedBy    string    `json:"decided_by,omitempty"`
	Decided      time.Time `json:"decided,omitzero"`
	Decision     string    `json:"decision,omitempty"`
	Exports      int       `json:"exports"`
	Exported     time.Time `json:"exported,omitzero"`
	ExportSHA256 string    `json:"export_sha256,omitempty"`
}

// RequestRelease records an investigator's request to release an
// incident's footage to police; nothing is released until an IG officer
// other than the requester approves it.
func (s *Service) RequestRelease(ctx context.Context, who Who, req ReleaseRequest) (Release, error) {
	r := audit.Record{Action: audit.ActionReleaseRequest, Incident: req.Incident, Why: req.Why}
	sc, err := s.scope(ctx, who, access.RequestRelease, r)
	if err != nil {
		return Release{}, err
	}
	for _, f := range []struct{ name, v string }{{"incident", req.Incident}, {"crime reference", req.CrimeRef}, {"requesting officer", req.Officer},
		{"force", req.Force}, {"exhibit reference", req.ExhibitRef}} {
		if strings.TrimSpace(f.v) == "" || len(f.v) > 200 || strings.ContainsAny(f.v, "\r\n") {
			return Release{}, s.refuse(ctx, who, r, false, "%s: required, one line of at most 200 characters", f.name)
		}
	}
	if err := s.needWhy(ctx, who, r, req.Why, "justification"); err != nil {
		return Release{}, err
	}
	if err := s.needAssigned(ctx, who, r, sc, req.Incident); err != nil {
		return Release{}, err
	}
	clips, err := s.releasable(ctx, req.Incident)
	if err != nil {
		return Release{}, err
	}
	if len(clips) == 0 {
		return Release{}, s.refuse(ctx, who, r, false, "incident %s has no footage to release", req.Incident)
	}
	now := s.cfg.Now()
	res, err := s.db.ExecContext(ctx, `INSERT INTO gov_releases(incident, crime_ref, officer, force, exhibit_ref, why, requested_by, requested_ms, state)
		VALUES(?,?,?,?,?,?,?,?,?)`, req.Incident, req.CrimeRef, req.Officer, req.Force, req.ExhibitRef, req.Why, who.Name, now.UnixMilli(), Requested)
	if err != nil {
		return Release{}, fmt.Errorf("governance: release request: %w", err)
	}
	n, _ := res.LastInsertId()
	rel, err := s.Release(ctx, "R"+strconv.FormatInt(n, 10))
	if err != nil {
		return rel, err
	}
	r.Release = rel.ID
	r.Detail = fmt.Sprintf("crime reference %s, exhibit %s, for %s (%s): %d clips", req.CrimeRef, req.ExhibitRef, req.Officer, req.Force, len(clips))
	return rel, s.record(ctx, who, r)
}

// releasable returns an incident's footage that can still be released.
func (s *Service) releasable(ctx context.Context, incident string) ([]evidence.Clip, error) {
	all, err := s.ev.List(ctx, evidence.Filter{Incident: incident})
	if err != nil {
		return nil, err
	}
	var out []evidence.Clip
	for _, c := range all {
		if !c.Deleted() {
			out = append(out, c)
		}
	}
	return out, nil
}

// Decide approves or refuses a release request. Only an IG officer who did
// not make the request may decide it.
func (s *Service) Decide(ctx context.Context, who Who, id string, approve bool, reason string) (Release, error) {
	r := audit.Record{Action: audit.ActionReleaseApprove, Release: id, Why: reason}
	if !approve {
		r.Action = audit.ActionReleaseRefuse
	}
	if _, err := s.scope(ctx, who, access.ApproveRelease, r); err != nil {
		return Release{}, err
	}
	rel, err := s.Release(ctx, id)
	if err != nil {
		return rel, s.refuse(ctx, who, r, false, "no release request %s", id)
	}
	r.Incident = rel.Incident
	switch {
	case rel.RequestedBy == who.Name:
		return rel, s.refuse(ctx, who, r, true, "%s made request %s and may not decide it: another IG officer must", who.Name, id)
	case rel.State != Requested:
		return rel, s.refuse(ctx, who, r, false, "request %s was already %s by %s", id, rel.State, rel.DecidedBy)
	}
	if err := s.needWhy(ctx, who, r, reason, "reason"); err != nil {
		return rel, err
	}
	state := Approved
	if !approve {
		state = Refusal
	}
	res, err := s.db.ExecContext(ctx, `UPDATE gov_releases SET state=?, decided_by=?, decided_ms=?, decision=? WHERE id=? AND state=?`,
		state, who.Name, s.cfg.Now().UnixMilli(), reason, releaseNum(id), Requested)
	if err != nil {
		return rel, fmt.Errorf("governance: decide %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return rel, s.refuse(ctx, who, r, false, "request %s was decided meanwhile", id)
	}
	if rel, err = s.Release(ctx, id); err != nil {
		return rel, err
	}
	r.Detail = fmt.Sprintf("%s request by %s (crime reference %s)", state, rel.RequestedBy, rel.CrimeRef)
	return rel, s.record(ctx, who, r)
}

// releaseNum is the row id of a release id "R<n>" (0 for anything else).
func releaseNum(id string) int64 {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "R"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "R") {
		return 0
	}
	return n
}

const releaseCols = `id, incident, crime_ref, officer, force, exhibit_ref, why, requested_by, requested_ms, state, decided_by, decided_ms, decision,
	exports, exported_ms, export_sha256`

func scanRelease(sc interface{ Scan(...any) error }) (Release, error) {
	var r Release
	var id, req, dec, exp int64
	err := sc.Scan(&id, &r.Incident, &r.CrimeRef, &r.Officer, &r.Force, &r.ExhibitRef, &r.Why, &r.RequestedBy, &req, &r.State,
		&r.DecidedBy, &dec, &r.Decision, &r.Exports, &exp, &r.ExportSHA256)
	r.ID, r.Requested = "R"+strconv.FormatInt(id, 10), msTime(req)
	r.Decided, r.Exported = msTime(dec), msTime(exp)
	return r, err
}

func msTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Release returns one release request.
func (s *Service) Release(ctx context.Context, id string) (Release, error) {
	r, err := scanRelease(s.db.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM gov_releases WHERE id=?`, releaseNum(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: release request %s", ErrNotFound, id)
	}
	return r, err
}

// Releases lists release requests, newest first. Anyone who may request,
// approve or export releases may list them.
func (s *Service) Releases(ctx context.Context, who Who) ([]Release, error) {
	if !who.Role.Allows(access.RequestRelease) && !who.Role.Allows(access.ApproveRelease) && !who.Role.Allows(access.ExportRelease) {
		return nil, &Refused{Forbidden: true, Reason: fmt.Sprintf("role %s may not see release requests", roleName(who.Role))}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+releaseCols+` FROM gov_releases ORDER BY id DESC`)
	if err != nil {
		return nil, err
	}
	return sqlitedb.Collect(rows, scanRelease)
}

// Export writes the evidence package of an approved release to w: the
// incident's original clips with their ledger proofs, the signed checkpoint,
// the gateway's key, each clip's continuity from capture to this export and
// a draft Section 9 statement. The export is audited, and recorded on the
// request with the package's SHA-256.
func (s *Service) Export(ctx context.Context, who Who, id string, w io.Writer) (Release, error) {
	r := audit.Record{Action: audit.ActionReleaseExport, Release: id}
	sc, err := s.scope(ctx, who, access.ExportRelease, r)
	if err != nil {
		return Release{}, err
	}
	rel, err := s.Release(ctx, id)
	if err != nil {
		return rel, s.refuse(ctx, who, r, false, "no release request %s", id)
	}
	r.Incident, r.Why = rel.Incident, "release to "+rel.Force+" for crime reference "+rel.CrimeRef
	if rel.State != Approved {
		return rel, s.refuse(ctx, who, r, true, "request %s is %s: a package is built only after an IG officer other than the requester approves it", id, rel.State)
	}
	if err := s.needAssigned(ctx, who, r, sc, rel.Incident); err != nil {
		return rel, err
	}
	pkg, err := s.buildPackage(ctx, who, rel)
	if err != nil {
		return rel, err
	}
	h := sha256.New()
	if err := exhibit.Build(ctx, io.MultiWriter(w, h), pkg); err != nil {
		r.Outcome, r.Detail = audit.OutcomeError, err.Error()
		if aerr := s.record(ctx, who, r); aerr != nil {
			return rel, aerr
		}
		return rel, fmt.Errorf("governance: export %s: %w", id, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	now := s.cfg.Now()
	if _, err := s.db.ExecContext(ctx, `UPDATE gov_releases SET exports=exports+1, exported_ms=?, export_sha256=? WHERE id=?`,
		now.UnixMilli(), sum, releaseNum(id)); err != nil {
		return rel, fmt.Errorf("governance: export %s: %w", id, err)
	}
	r.Detail = fmt.Sprintf("package of %d clips, exhibit %s, sha256 %s", len(pkg.Clips), rel.ExhibitRef, sum)
	if err := s.record(ctx, who, r); err != nil {
		return rel, err
	}
	return s.Release(ctx, id)
}

// buildPackage gathers what an evidence package holds.
func (s *Service) buildPackage(ctx context.Context, who Who, rel Release) (exhibit.Package, error) {
	clips, err := s.releasable(ctx, rel.Incident)
	if err != nil {
		return exhibit.Package{}, err
	}
	refs := make([]evidence.ClipRef, len(clips))
	for i, c := range clips {
		refs[i] = evidence.ClipRef{Camera: c.Camera, Clip: c.Clip}
	}
	cp, proven, err := s.ev.Prove(ctx, refs)
	if err != nil {
		return exhibit.Package{}, err
	}
	pub, err := s.ev.PublicKey()
	if err != nil {
		return exhibit.Package{}, err
	}
	signer, _ := s.ev.Keys()
	now := s.cfg.Now()
	pkg := exhibit.Package{
		SourceOrganization: s.cfg.Organization, ContactName: s.cfg.Contact, ContactEmail: s.cfg.ContactEmail,
		ExhibitRef: rel.ExhibitRef, CrimeRef: rel.CrimeRef, Officer: rel.Officer, Force: rel.Force, Incident: rel.Incident, RequestID: rel.ID,
		RequestedBy: rel.RequestedBy, ApprovedBy: rel.DecidedBy, Bagged: now,
		Checkpoint: cp.Note, PublicKey: pub, Signer: signer,
	}
	for i, c := range clips {
		steps, err := s.continuity(ctx, c)
		if err != nil {
			return pkg, err
		}
		camera, clip := c.Camera, c.Clip
		pkg.Clips = append(pkg.Clips, exhibit.Clip{
			Camera: c.Camera, Clip: c.Clip, Wearer: c.Wearer, Site: c.Site, Start: c.Start, End: c.End, Size: c.Size, SHA256: c.SHA256,
			Body: proven[i].Entry.Body, Proof: proven[i].Proof, Continuity: steps,
			Open: func(ctx context.Context) (io.ReadCloser, error) { return s.ev.Footage(ctx, camera, clip) },
		})
	}
	return pkg, nil
}

// continuity merges a clip's chain of custody (what the gateway did) with
// the audit trail of what people did with it, oldest first.
func (s *Service) continuity(ctx context.Context, c evidence.Clip) ([]exhibit.Step, error) {
	custody, err := s.ev.Custody(ctx, c.Camera, c.Clip)
	if err != nil {
		return nil, err
	}
	steps := []exhibit.Step{{At: c.Start, What: "captured", Who: "camera " + c.Camera, Detail: fmt.Sprintf("worn by %s at %s, recording %s to %s",
		c.Wearer, c.Site, c.Start.UTC().Format(time.RFC3339), c.End.UTC().Format(time.RFC3339))}}
	for _, e := range custody {
		steps = append(steps, exhibit.Step{At: e.At, What: e.What, Who: "vigil", Role: "system", Detail: oneLine(e.Detail)})
	}
	recs, err := s.audit.Query(ctx, audit.Query{Camera: c.Camera, Clip: c.Clip})
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		what := r.Action
		if r.Outcome != audit.OutcomeOK {
			what += " (" + r.Outcome + ")"
		}
		steps = append(steps, exhibit.Step{At: r.At, What: what, Who: r.Actor, Role: r.Role, Why: oneLine(r.Why), Detail: oneLine(r.Detail)})
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At.Before(steps[j].At) })
	return steps, nil
}

// oneLine makes recorded text fit one line of a continuity log: people's
// justifications may hold line breaks or control characters, which the
// package refuses rather than let them forge further lines.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }), " ")
}
