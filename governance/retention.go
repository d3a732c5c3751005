package governance

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
)

// Change is a retention change to one clip.
type Change struct {
	Camera, Clip string
	Incident     string // required when the clip is linked to one
	Why          string
}

// ExtendRetention keeps a clip at least until until.
func (s *Service) ExtendRetention(ctx context.Context, who Who, c Change, until time.Time) error {
	r := audit.Record{Action: audit.ActionRetentionExtend, Camera: c.Camera, Clip: c.Clip, Incident: c.Incident, Why: c.Why,
		Detail: "until " + until.UTC().Format(time.RFC3339)}
	return s.change(ctx, who, access.ExtendRetention, r, c, func() error {
		return s.ev.ExtendRetention(ctx, c.Camera, c.Clip, until, who.Name, c.Why)
	})
}

// SetLegalHold puts a clip under legal hold until an IG officer lifts it.
func (s *Service) SetLegalHold(ctx context.Context, who Who, c Change) error {
	r := audit.Record{Action: audit.ActionHoldSet, Camera: c.Camera, Clip: c.Clip, Incident: c.Incident, Why: c.Why}
	return s.change(ctx, who, access.SetLegalHold, r, c, func() error {
		return s.ev.SetLegalHold(ctx, c.Camera, c.Clip, who.Name, c.Why)
	})
}

// LiftLegalHold lifts a legal hold (IG officers only).
func (s *Service) LiftLegalHold(ctx context.Context, who Who, c Change) error {
	r := audit.Record{Action: audit.ActionHoldLift, Camera: c.Camera, Clip: c.Clip, Incident: c.Incident, Why: c.Why}
	return s.change(ctx, who, access.LiftLegalHold, r, c, func() error {
		return s.ev.LiftLegalHold(ctx, c.Camera, c.Clip, who.Name, c.Why)
	})
}

// change checks and audits a retention change, then applies it. A change
// the evidence service refuses (shortening retention, lifting a hold that is
// not there) is audited as refused too.
func (s *Service) change(ctx context.Context, who Who, p access.Permission, r audit.Record, c Change, apply func() error) error {
	sc, err := s.scope(ctx, who, p, r)
	if err != nil {
		return err
	}
	if _, err := s.clipFor(ctx, who, r, sc, c.Camera, c.Clip, c.Incident, c.Why); err != nil {
		return err
	}
	if err := apply(); err != nil {
		return s.refuse(ctx, who, r, false, "%v", err)
	}
	return s.record(ctx, who, r)
}

// CloseIncident records that an incident's footage is no longer needed as
// open evidence: its legal hold ends and the evidential period starts.
func (s *Service) CloseIncident(ctx context.Context, who Who, incident, why string) ([]evidence.ClipRef, error) {
	r := audit.Record{Action: audit.ActionIncidentClose, Incident: incident, Why: why}
	sc, err := s.scope(ctx, who, access.CloseIncident, r)
	if err != nil {
		return nil, err
	}
	if err := s.needAssigned(ctx, who, r, sc, incident); err != nil {
		return nil, err
	}
	if err := s.needWhy(ctx, who, r, why, "justification"); err != nil {
		return nil, err
	}
	refs, err := s.ev.CloseIncident(ctx, incident, who.Name, why)
	if err != nil {
		return nil, s.refuse(ctx, who, r, false, "%v", err)
	}
	r.Detail = fmt.Sprintf("%d clips: legal hold ended, kept for the evidential period from now", len(refs))
	return refs, s.record(ctx, who, r)
}

// Sweep deletes expired footage (evidence.Service.Sweep) and audits each
// deletion, bypass and refusal, as Vigil.
func (s *Service) Sweep(ctx context.Context) ([]evidence.Deletion, error) {
	dels, err := s.ev.Sweep(ctx)
	for _, d := range dels {
		r := audit.Record{Action: audit.ActionClipDelete, Camera: d.Camera, Clip: d.Clip, Why: "retention policy", Detail: d.Policy}
		switch {
		case d.Err != nil:
			r.Outcome, r.Detail = audit.OutcomeRefused, d.Policy+": the store refused: "+d.Err.Error()
		case d.Bypass:
			r.Detail += "; GOVERNANCE retention bypassed (non-evidential footage due by policy)"
		}
		if aerr := s.record(ctx, System, r); aerr != nil {
			return dels, aerr
		}
	}
	return dels, err
}

// Evidence is the evidence service as the alert path uses it (making
// footage evidential on a duress), with each change audited as Vigil's.
func (s *Service) Evidence() *SystemEvidence { return &SystemEvidence{s: s} }

// SystemEvidence audits what the alert path does to footage.
type SystemEvidence struct{ s *Service }

// MarkEvidential makes a camera's footage evidential for an incident.
func (e *SystemEvidence) MarkEvidential(ctx context.Context, incident, camera string, from, to time.Time) error {
	if err := e.s.ev.MarkEvidential(ctx, incident, camera, from, to); err != nil {
		return err
	}
	detail := fmt.Sprintf("footage of camera %s from %s made evidential (legal hold)", camera, from.UTC().Format(time.RFC3339))
	return e.s.record(ctx, System, audit.Record{Action: audit.ActionEvidential, Camera: camera, Incident: incident, Why: "alert", Detail: detail})
}

// CloseWindow ends an incident's window of footage when its alert is resolved.
func (e *SystemEvidence) CloseWindow(ctx context.Context, incident, camera string, resolved time.Time) error {
	return e.s.ev.CloseWindow(ctx, incident, camera, resolved)
}

// PreEvent is how far before an alert footage becomes evidential.
func (e *SystemEvidence) PreEvent() time.Duration { return e.s.ev.PreEvent() }
