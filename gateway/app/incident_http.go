package app

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/incident"
	"github.com/vigil-gw/vigil/gateway/monthly"
	"github.com/vigil-gw/vigil/governance/access"
)

// incidentRoutes registers incident records, support plans and the monthly
// report. Every incident leaves through incident.View, which withholds
// names in a confidential incident from everyone but an IG officer.
func (a *App) incidentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/incidents", a.guard(access.ReadIncidents, a.listIncidents))
	mux.HandleFunc("POST /api/incidents", a.guard(access.ReportIncident, a.reportIncident))
	mux.HandleFunc("GET /api/incidents/options", a.guard(signedIn, a.incidentOptions))
	mux.HandleFunc("GET /api/incidents/{id}", a.guard(access.ReadIncidents, a.getIncident))
	mux.HandleFunc("POST /api/incidents/{id}/classification", a.guard(access.ManageIncidents, a.classifyIncident))
	mux.HandleFunc("POST /api/incidents/{id}/confidential", a.guard(access.ManageIncidents, a.confidentialIncident))
	mux.HandleFunc("POST /api/incidents/{id}/tasks/{task}", a.guard(access.ManageIncidents, a.completeTask))
	mux.HandleFunc("GET /api/reports/monthly", a.guard(access.ReadReports, a.monthlyReport))
}

// viewer is the caller as incident redaction sees them.
func viewer(r *http.Request) incident.Viewer {
	p := caller(r)
	return incident.Viewer{Name: p.Name, Role: string(p.Role)}
}

// mayRead reports whether the caller may see inc at all: everything with
// ReadIncidents in ScopeAll, a wearer only their own, and never a
// confidential one they are not the reporter of (the point of a
// confidential report is that nobody else can find it by name).
func mayRead(p access.Principal, inc incident.Incident) bool {
	switch p.Scope(access.ReadIncidents) {
	case access.ScopeAll:
		return true
	case access.ScopeOwn:
		return p.Wearer != "" && (inc.Wearer == p.Wearer || inc.Reporter == p.Name)
	}
	return false
}

func incidentStatus(err error) int {
	switch {
	case errors.Is(err, incident.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, incident.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, incident.ErrTransition):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (a *App) listIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := incident.Filter{Site: q.Get("site"), Open: q.Get("open") == "1" || q.Get("open") == "true"}
	var err error
	if f.From, f.To, err = queryRange(q); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	list, err := a.incidents.List(f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	p, v := caller(r), viewer(r)
	out := make([]incident.Incident, 0, len(list))
	for _, inc := range list {
		if mayRead(p, inc) {
			out = append(out, incident.View(inc, v))
		}
	}
	overdue, now := 0, time.Now()
	for _, inc := range out {
		overdue += inc.Overdue(now)
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": out, "overdue": overdue})
}

// incidentJSON is one incident with its alert's timeline, when it came
// from an alarm and the caller may read alerts.
type incidentJSON struct {
	incident.Incident
	Alert *alert.View `json:"alert,omitempty"`
}

func (a *App) getIncident(w http.ResponseWriter, r *http.Request) {
	inc, err := a.incidents.Get(r.PathValue("id"))
	if err == nil && !mayRead(caller(r), inc) {
		// Not found rather than forbidden: a wearer must not learn that
		// someone else's incident exists.
		err = fmt.Errorf("%w: %s", incident.ErrNotFound, r.PathValue("id"))
	}
	if err != nil {
		writeError(w, incidentStatus(err), err)
		return
	}
	out := incidentJSON{Incident: incident.View(inc, viewer(r))}
	if inc.AlertID != "" && out.AlertID != incident.Redacted && caller(r).Role.Allows(access.ReadAlerts) {
		if v, err := a.engine.Get(inc.AlertID); err == nil {
			out.Alert = &v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// reportRequest is the console's quick form.
type reportRequest struct {
	Type         string    `json:"type"`
	Site         string    `json:"site"`
	Wearer       string    `json:"wearer"`
	Place        string    `json:"place"`
	OccurredAt   time.Time `json:"occurred_at"`
	Text         string    `json:"text"`
	Confidential bool      `json:"confidential"`
	// Key guards against a double submit: the form makes one per opening.
	Key string `json:"key"`
}

func (a *App) reportIncident(w http.ResponseWriter, r *http.Request) {
	var req reportRequest
	if !decode(w, r, &req) {
		return
	}
	p := caller(r)
	if p.Scope(access.ReportIncident) == access.ScopeOwn {
		// A wearer reports for themselves, whatever the form said.
		if p.Wearer == "" {
			writeError(w, http.StatusForbidden, errors.New("this user is not linked to a wearer: ask an admin to link it"))
			return
		}
		req.Wearer = p.Wearer
	}
	in := incident.ReportInput{Source: incident.SourceForm, Site: req.Site, Wearer: req.Wearer, Reporter: p.Name,
		Type: req.Type, OccurredAt: req.OccurredAt, Text: req.Text, Place: req.Place, Confidential: req.Confidential}
	if req.Key != "" {
		in.Key = "form:" + p.Name + ":" + req.Key
	}
	inc, err := a.incidents.Report(in, time.Now())
	if err != nil {
		writeError(w, incidentStatus(err), err)
		return
	}
	a.log.Info("incident reported", "incident", inc.ID, "site", inc.Site, "by", p.Name)
	writeJSON(w, http.StatusCreated, incident.View(inc, viewer(r)))
}

func (a *App) classifyIncident(w http.ResponseWriter, r *http.Request) {
	var c incident.Classification
	if !decode(w, r, &c) {
		return
	}
	inc, err := a.incidents.Classify(r.PathValue("id"), c, caller(r).Name, time.Now())
	if err != nil {
		writeError(w, incidentStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, incident.View(inc, viewer(r)))
}

func (a *App) confidentialIncident(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Confidential bool `json:"confidential"`
	}
	if !decode(w, r, &req) {
		return
	}
	inc, err := a.incidents.SetConfidential(r.PathValue("id"), req.Confidential, caller(r).Name, time.Now())
	if err != nil {
		writeError(w, incidentStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, incident.View(inc, viewer(r)))
}

func (a *App) completeTask(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status string `json:"status"` // done or not_needed
		Note   string `json:"note"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Status == "" {
		req.Status = incident.StatusDone
	}
	inc, err := a.incidents.CompleteTask(r.PathValue("id"), r.PathValue("task"), caller(r).Name, req.Note, req.Status, time.Now())
	if err != nil {
		writeError(w, incidentStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, incident.View(inc, viewer(r)))
}

// incidentOptions lists the choices the console's forms offer, so the
// lists live in one place (the incident package), not in JavaScript too.
func (a *App) incidentOptions(w http.ResponseWriter, r *http.Request) {
	sites := []string{a.cfg.Site}
	if reg, err := a.registry.List(); err == nil {
		for _, d := range reg {
			if !slices.Contains(sites, d.Site) {
				sites = append(sites, d.Site)
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"types": incident.Types(), "causes": incident.Causes(), "settings": incident.Settings(),
		"injuries": incident.Injuries(), "kinds": []string{incident.KindVerbal, incident.KindPhysical},
		"confidential_types": []string{incident.TypeSexualHarassment, incident.TypeSexualAssault},
		"sites":              sites,
	})
}

// monthlyReport answers GET /api/reports/monthly?month=2026-11[&site=S]
// [&format=html|csv|json][&named=1]. The month is a calendar month in
// governance.timezone.
func (a *App) monthlyReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	loc := a.reportOptions.Location
	month := time.Now().In(loc)
	if s := q.Get("month"); s != "" {
		m, err := time.ParseInLocation("2006-01", s, loc)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("month: %q is not YYYY-MM", s))
			return
		}
		month = m
	}
	named := q.Get("named") == "1" || q.Get("named") == "true"
	if named && caller(r).Scope(access.ReadIncidents) != access.ScopeAll {
		writeError(w, http.StatusForbidden, errors.New("a named report needs read_incidents for all incidents; ask for the anonymised one"))
		return
	}
	rep, err := a.buildMonthly(month, loc, q.Get("site"), named, time.Now())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeReport(w, q.Get("format"), rep.CSV, rep.HTML, rep)
}

// buildMonthly gathers a month of incidents and alerts into the report.
func (a *App) buildMonthly(month time.Time, loc *time.Location, site string, named bool, now time.Time) (monthly.Report, error) {
	start := time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, loc)
	end := start.AddDate(0, 1, 0)
	incs, err := a.incidents.List(incident.Filter{From: start, To: end})
	if err != nil {
		return monthly.Report{}, err
	}
	alerts, err := a.engine.Raised(start, end)
	if err != nil {
		return monthly.Report{}, err
	}
	in := monthly.Input{Month: start, Location: loc, Site: site, Named: named, Generated: now}
	for _, inc := range incs {
		in.Incidents = append(in.Incidents, monthlyIncident(inc, now))
	}
	for _, al := range alerts {
		in.Alerts = append(in.Alerts, monthly.Alert{Site: al.Site, Priority: al.Priority, Event: al.Event,
			Raised: al.RaisedAt, Delivered: al.DeliveredAt, Acknowledged: al.AcknowledgedAt, Resolved: al.ResolvedAt})
	}
	return monthly.Build(in), nil
}

// monthlyIncident flattens an incident record for the report.
func monthlyIncident(inc incident.Incident, now time.Time) monthly.Incident {
	out := monthly.Incident{ID: inc.ID, Site: inc.Site, Team: inc.Team, Occurred: inc.OccurredAt, Type: inc.Type(),
		Physical: inc.Kind() == incident.KindPhysical, Wearer: inc.Wearer, Confidential: inc.Confidential, Resolved: inc.Resolved,
		Overdue: inc.Overdue(now)}
	if c := inc.Classification; c != nil {
		out.Cause, out.Police, out.CrimeRef, out.ProsecutionOutcome = c.Cause, c.Police, c.CrimeRef, c.ProsecutionOutcome
	}
	for _, t := range inc.Plan {
		if t.Status != incident.StatusDone {
			continue
		}
		switch t.ID {
		case incident.TaskWelfareContact:
			out.WelfareContact = t.DoneAt
		case incident.TaskDefusing:
			out.Defused = t.DoneAt
		case incident.TaskDebriefing:
			out.Debriefed = t.DoneAt
		}
	}
	return out
}
