package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/evidence"
	"github.com/vigil-gw/vigil/governance"
)

// governanceRoutes registers the footage, retention, release and audit
// endpoints. They only authenticate here: the governance service decides
// (by role, scope, justification) and audits every refusal.
func (a *App) governanceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/clips", a.guard(signedIn, a.listClips))
	mux.HandleFunc("POST /api/clips/{id}/access", a.guard(signedIn, a.accessClip))
	mux.HandleFunc("POST /api/clips/{id}/hold", a.guard(signedIn, a.clipChange(holdSet)))
	mux.HandleFunc("DELETE /api/clips/{id}/hold", a.guard(signedIn, a.clipChange(holdLift)))
	mux.HandleFunc("POST /api/clips/{id}/retention", a.guard(signedIn, a.clipChange(retain)))
	mux.HandleFunc("POST /api/incidents/{id}/assign", a.guard(signedIn, a.assignIncident))
	mux.HandleFunc("POST /api/incidents/{id}/close", a.guard(signedIn, a.closeIncident))
	mux.HandleFunc("GET /api/releases", a.guard(signedIn, a.listReleases))
	mux.HandleFunc("POST /api/releases", a.guard(signedIn, a.requestRelease))
	mux.HandleFunc("POST /api/releases/{id}/approve", a.guard(signedIn, a.decideRelease(true)))
	mux.HandleFunc("POST /api/releases/{id}/refuse", a.guard(signedIn, a.decideRelease(false)))
	mux.HandleFunc("GET /api/releases/{id}/package", a.guard(signedIn, a.exportRelease))
	mux.HandleFunc("GET /api/audit/report", a.guard(signedIn, a.auditReport))
	mux.HandleFunc("GET /api/sar", a.guard(signedIn, a.subjectAccess))
	// The link is the credential: signed, short-lived, bound to the clip.
	mux.HandleFunc("GET "+governance.LinkPath+"{token}", a.fetchFootage)
}

// who is the caller as governance records them.
func who(r *http.Request) governance.Who {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return governance.Who{Principal: caller(r), From: host}
}

// govError answers a governance error: 403 or 400 for refusals (already
// audited), 404 for what does not exist.
func (a *App) govError(w http.ResponseWriter, err error) {
	var ref *governance.Refused
	if errors.As(err, &ref) {
		a.metrics.apiDenied.WithLabelValues("governance").Inc()
	}
	switch {
	case errors.As(err, &ref) && ref.Forbidden:
		writeError(w, http.StatusForbidden, errors.New(ref.Reason))
	case errors.As(err, &ref):
		writeError(w, http.StatusBadRequest, errors.New(ref.Reason))
	case errors.Is(err, governance.ErrNotFound), errors.Is(err, evidence.ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

// ClipID is how the API names a clip: "CAMERA:CLIP" (clip ids are unique per
// camera; neither may contain a colon).
func ClipID(camera, clip string) string { return camera + ":" + clip }

// SplitClipID splits a CAMERA:CLIP id.
func SplitClipID(id string) (string, string, error) {
	cam, clip, ok := strings.Cut(id, ":")
	if !ok || cam == "" || clip == "" {
		return "", "", fmt.Errorf("clip id %q: expected CAMERA:CLIP", id)
	}
	return cam, clip, nil
}

// clipJSON is a clip as the API shows it.
type clipJSON struct {
	ID string `json:"id"`
	evidence.Clip
}

func (a *App) listClips(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s := governance.Search{Wearer: q.Get("wearer"), Camera: q.Get("camera"), Incident: q.Get("incident")}
	var err error
	if s.From, s.To, err = queryRange(q); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	clips, err := a.gov.Clips(r.Context(), who(r), s)
	if err != nil {
		a.govError(w, err)
		return
	}
	out := make([]clipJSON, len(clips))
	for i, c := range clips {
		out[i] = clipJSON{ID: ClipID(c.Camera, c.Clip), Clip: c}
	}
	writeJSON(w, http.StatusOK, map[string]any{"clips": out})
}

// queryRange reads the optional ?from= and ?to= (RFC 3339) of a request.
func queryRange(q url.Values) (from, to time.Time, err error) {
	parse := func(name string) (time.Time, error) {
		s := q.Get(name)
		if s == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return t, fmt.Errorf("%s: %q is not an RFC 3339 time", name, s)
		}
		return t, nil
	}
	if from, err = parse("from"); err != nil {
		return
	}
	to, err = parse("to")
	return
}

// decode reads a JSON request body strictly.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

func (a *App) accessClip(w http.ResponseWriter, r *http.Request) {
	cam, clip, err := SplitClipID(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var req struct {
		Why      string `json:"why"`
		Incident string `json:"incident"`
		Purpose  string `json:"purpose"`
	}
	if !decode(w, r, &req) {
		return
	}
	g, err := a.gov.Access(r.Context(), who(r), governance.AccessRequest{Camera: cam, Clip: clip, Why: req.Why, Incident: req.Incident, Purpose: req.Purpose})
	if err != nil {
		a.govError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"url": g.URL, "expires": g.Expires, "clip": clipJSON{ID: ClipID(g.Clip.Camera, g.Clip.Clip), Clip: g.Clip}})
}

type changeKind int

const (
	holdSet changeKind = iota
	holdLift
	retain
)

func (a *App) clipChange(kind changeKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cam, clip, err := SplitClipID(r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		var req struct {
			Why      string    `json:"why"`
			Incident string    `json:"incident"`
			Until    time.Time `json:"until"`
		}
		if !decode(w, r, &req) {
			return
		}
		c := governance.Change{Camera: cam, Clip: clip, Incident: req.Incident, Why: req.Why}
		switch kind {
		case holdSet:
			err = a.gov.SetLegalHold(r.Context(), who(r), c)
		case holdLift:
			err = a.gov.LiftLegalHold(r.Context(), who(r), c)
		case retain:
			if req.Until.IsZero() {
				writeError(w, http.StatusBadRequest, errors.New("until: required (RFC 3339)"))
				return
			}
			err = a.gov.ExtendRetention(r.Context(), who(r), c, req.Until)
		}
		if err != nil {
			a.govError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

func (a *App) assignIncident(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
		Why  string `json:"why"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := a.gov.Assign(r.Context(), who(r), r.PathValue("id"), req.User, req.Why); err != nil {
		a.govError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "assigned"})
}

func (a *App) closeIncident(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Why string `json:"why"`
	}
	if !decode(w, r, &req) {
		return
	}
	refs, err := a.gov.CloseIncident(r.Context(), who(r), r.PathValue("id"), req.Why)
	if err != nil {
		a.govError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"clips": len(refs)})
}

func (a *App) listReleases(w http.ResponseWriter, r *http.Request) {
	list, err := a.gov.Releases(r.Context(), who(r))
	if err != nil {
		a.govError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"releases": list})
}

func (a *App) requestRelease(w http.ResponseWriter, r *http.Request) {
	var req governance.ReleaseRequest
	if !decode(w, r, &req) {
		return
	}
	rel, err := a.gov.RequestRelease(r.Context(), who(r), req)
	if err != nil {
		a.govError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rel)
}

func (a *App) decideRelease(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Reason string `json:"reason"`
		}
		if !decode(w, r, &req) {
			return
		}
		rel, err := a.gov.Decide(r.Context(), who(r), r.PathValue("id"), approve, req.Reason)
		if err != nil {
			a.govError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rel)
	}
}

// exportRelease streams the package. A failure after the first byte can
// only cut the stream short; the client's zip reader (and vigil-verify)
// then fail, and the export is audited as an error.
func (a *App) exportRelease(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rel, err := a.gov.Release(r.Context(), id)
	if err != nil {
		a.govError(w, err)
		return
	}
	sw := &startWriter{w: w, start: func() {
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.zip"`, rel.ID, safeName(rel.ExhibitRef)))
		w.Header().Set("Cache-Control", "no-store")
	}}
	if _, err := a.gov.Export(r.Context(), who(r), id, sw); err != nil {
		if !sw.started {
			a.govError(w, err)
			return
		}
		a.log.Error("evidence package export failed part way", "release", id, "err", err)
		panic(http.ErrAbortHandler) // tell the client the body is incomplete
	}
}

// startWriter sets headers just before the first byte, so that a refusal
// can still be answered with an error status.
type startWriter struct {
	w       http.ResponseWriter
	start   func()
	started bool
}

func (s *startWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	return s.w.Write(p)
}

// safeName keeps a reference usable in a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func (a *App) auditReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rq := governance.ReportQuery{User: q.Get("user"), Camera: q.Get("camera"), Clip: q.Get("clip"), Incident: q.Get("incident"), Options: a.reportOptions}
	var err error
	if rq.From, rq.To, err = queryRange(q); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	rep, err := a.gov.AuditReport(r.Context(), who(r), rq)
	if err != nil {
		a.govError(w, err)
		return
	}
	writeReport(w, q.Get("format"), rep.CSV, rep.HTML, rep)
}

func (a *App) subjectAccess(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sar, err := a.gov.SubjectAccess(r.Context(), who(r), q.Get("wearer"))
	if err != nil {
		a.govError(w, err)
		return
	}
	writeReport(w, q.Get("format"), sar.Text, sar.HTML, sar)
}

// writeReport answers a report as JSON (default), CSV/text or HTML.
func writeReport(w http.ResponseWriter, format string, text, html func(io.Writer) error, v any) {
	w.Header().Set("Cache-Control", "no-store")
	switch format {
	case "", "json":
		writeJSON(w, http.StatusOK, v)
	case "csv", "text":
		ct := "text/csv; charset=utf-8"
		if format == "text" {
			ct = "text/plain; charset=utf-8"
		}
		w.Header().Set("Content-Type", ct)
		text(w)
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		html(w)
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("format %q: json, csv, text or html", format))
	}
}

func (a *App) fetchFootage(w http.ResponseWriter, r *http.Request) {
	rc, c, purpose, err := a.gov.Fetch(r.Context(), r.PathValue("token"), who(r).From)
	if errors.Is(err, governance.ErrLink) {
		writeError(w, http.StatusForbidden, err)
		return
	}
	if err != nil {
		a.govError(w, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", fmt.Sprint(c.Size))
	if purpose == governance.Download {
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, safeName(c.Clip)))
	}
	io.Copy(w, rc)
}
