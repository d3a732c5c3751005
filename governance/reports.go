package governance

import (
	"context"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/governance/access"
	"github.com/vigil-gw/vigil/governance/audit"
	"github.com/vigil-gw/vigil/governance/report"
)

// ReportQuery selects the audit records of a report.
type ReportQuery struct {
	From, To           time.Time
	User, Camera, Clip string
	Incident           string
	Options            report.Options
}

func (q ReportQuery) filter() string {
	var parts []string
	for _, f := range []struct{ k, v string }{{"user", q.User}, {"camera", q.Camera}, {"clip", q.Clip}, {"incident", q.Incident}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return strings.Join(parts, " ")
}

// AuditReport answers who accessed what and why over a period, flagging
// accesses with no incident, outside working hours, in bulk, and refused
// attempts. IG officers only; the report itself is audited.
func (s *Service) AuditReport(ctx context.Context, who Who, q ReportQuery) (report.Report, error) {
	r := audit.Record{Action: audit.ActionAuditReport, Camera: q.Camera, Clip: q.Clip, Incident: q.Incident,
		Detail: strings.TrimSpace(q.From.UTC().Format(time.RFC3339) + " to " + q.To.UTC().Format(time.RFC3339) + " " + q.filter())}
	if _, err := s.scope(ctx, who, access.ReadAudit, r); err != nil {
		return report.Report{}, err
	}
	recs, err := s.audit.Query(ctx, audit.Query{From: q.From, To: q.To, Actor: q.User, Camera: q.Camera, Clip: q.Clip, Incident: q.Incident})
	if err != nil {
		return report.Report{}, err
	}
	if err := s.record(ctx, who, r); err != nil {
		return report.Report{}, err
	}
	return report.Build(recs, q.From, q.To, q.filter(), q.Options), nil
}

// SubjectAccess lists a wearer's footage and everyone who accessed it, for a
// subject access request. IG officers for anyone; a wearer for themselves.
func (s *Service) SubjectAccess(ctx context.Context, who Who, wearer string) (report.SAR, error) {
	r := audit.Record{Action: audit.ActionSAR, Detail: "wearer " + wearer}
	sc, err := s.scope(ctx, who, access.SubjectAccess, r)
	if err != nil {
		return report.SAR{}, err
	}
	if sc == access.ScopeOwn && (who.Wearer == "" || wearer != who.Wearer) {
		return report.SAR{}, s.refuse(ctx, who, r, true, "a wearer may see only their own subject access report")
	}
	clips, err := s.ev.List(ctx, evidence.Filter{})
	if err != nil {
		return report.SAR{}, err
	}
	sar := report.SAR{Wearer: wearer, Generated: s.cfg.Now(), Location: s.cfg.Location}
	mine := map[string]bool{}
	for _, c := range clips {
		if c.Wearer != wearer {
			continue
		}
		mine[c.Camera+"/"+c.Clip] = true
		sar.Clips = append(sar.Clips, report.SARClip{Camera: c.Camera, Clip: c.Clip, Site: c.Site, Start: c.Start, End: c.End,
			Category: c.Category, Incidents: c.Incidents, Deleted: c.Deleted()})
	}
	recs, err := s.audit.Query(ctx, audit.Query{})
	if err != nil {
		return sar, err
	}
	for _, rec := range recs {
		if rec.Clip != "" && mine[rec.Camera+"/"+rec.Clip] {
			sar.Accesses = append(sar.Accesses, rec)
		}
	}
	return sar, s.record(ctx, who, r)
}

// VerifyAudit checks the audit trail (audit.Log.Verify).
func (s *Service) VerifyAudit(ctx context.Context) (audit.Report, error) { return s.audit.Verify(ctx) }
