package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/governance/access"
)

// maxBody caps API request bodies.
const maxBody = 16 << 10

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/alerts", a.guard(access.ReadAlerts, a.listAlerts))
	mux.HandleFunc("GET /api/alerts/{id}", a.guard(access.ReadAlerts, a.getAlert))
	mux.HandleFunc("POST /api/alerts/{id}/ack", a.guard(access.ActOnAlerts, a.ackAlert))
	mux.HandleFunc("POST /api/alerts/{id}/resolve", a.guard(access.ActOnAlerts, a.resolveAlert))
	mux.HandleFunc("POST /api/alerts/{id}/note", a.guard(access.ActOnAlerts, a.noteAlert))
	mux.HandleFunc("GET /api/amber", a.guard(access.ReadAlerts, a.listAmber))
	mux.HandleFunc("GET /api/devices", a.guard(access.ReadDevices, a.listDevices))
	mux.HandleFunc("GET /api/quarantine", a.guard(access.ReadRejected, a.listQuarantine))
	mux.HandleFunc("GET /api/routes", a.guard(access.ReadRoutes, a.listRoutes))
	mux.HandleFunc("GET /api/evidence/status", a.guard(access.ReadEvidenceStatus, a.evidenceStatus))
	mux.HandleFunc("POST /api/session", a.login)
	mux.HandleFunc("GET /api/session", a.guard(signedIn, a.whoAmI))
	mux.HandleFunc("DELETE /api/session", a.logout)
	// Cameras authenticate with their own upload tokens, not API tokens.
	// tusd bounds each upload by its declared length and evidence.max_clip_mib.
	mux.Handle(UploadPath, a.tus)
	a.governanceRoutes(mux)
	a.incidentRoutes(mux)
	a.consoleRoutes(mux)
	return mux
}

// bearer is the credential in an "Authorization: Bearer …" header: an API
// token, or a camera's upload token.
func bearer(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// callerKey is the request context key of the authenticated Principal.
type callerKey struct{}

// caller is who is making the request, as guard authenticated them.
func caller(r *http.Request) access.Principal {
	p, _ := r.Context().Value(callerKey{}).(access.Principal)
	return p
}

// signedIn is the "permission" of endpoints any authenticated caller may
// use, whatever their role (who am I).
const signedIn access.Permission = ""

// guard lets the request through only for a caller whose role grants p: 401
// without valid credentials, 403 with a role that does not grant it.
//
// Credentials are an API token (Authorization: Bearer vgl_…) or a web
// session cookie (POST /api/session). A bearer header wins when both are
// sent. Browsers attach cookies to requests other sites make them send, so
// a cookie-authenticated POST, PUT, PATCH or DELETE must also come from a
// page of this host (Origin, or else Referer): a forged one is refused
// before the session is even looked up.
//
// Each refusal is counted (vigil_api_denied_total by reason) and logged at
// most once a minute per client address and reason.
func (a *App) guard(p access.Permission, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		if p != signedIn && !who.Role.Allows(p) {
			a.deny(w, r, http.StatusForbidden, "role", fmt.Errorf("role %s may not %s", who.Role, strings.ReplaceAll(string(p), "_", " ")))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
	}
}

// authenticate returns the caller of r, or writes the refusal and false.
func (a *App) authenticate(w http.ResponseWriter, r *http.Request) (access.Principal, bool) {
	if r.Header.Get("Authorization") != "" {
		secret, ok := bearer(r)
		if !ok {
			a.deny(w, r, http.StatusUnauthorized, "no_token", errors.New("authentication required: send Authorization: Bearer <token> (create one with vigil token create)"))
			return access.Principal{}, false
		}
		who, err := a.accounts.Authenticate(r.Context(), secret)
		switch {
		case errors.Is(err, access.ErrUnknown) || errors.Is(err, access.ErrDisabled):
			a.deny(w, r, http.StatusUnauthorized, "bad_token", err)
			return access.Principal{}, false
		case err != nil:
			a.deny(w, r, http.StatusInternalServerError, "error", err)
			return access.Principal{}, false
		}
		return who, true
	}
	if c, err := r.Cookie(access.SessionCookie); err == nil {
		if unsafeMethod(r.Method) {
			if err := sameOrigin(r); err != nil {
				a.deny(w, r, http.StatusForbidden, "csrf", err)
				return access.Principal{}, false
			}
		}
		who, err := a.accounts.Session(r.Context(), c.Value, time.Now())
		switch {
		case errors.Is(err, access.ErrNoSession):
			clearSessionCookie(w, r)
			a.deny(w, r, http.StatusUnauthorized, "bad_session", err)
			return access.Principal{}, false
		case err != nil:
			a.deny(w, r, http.StatusInternalServerError, "error", err)
			return access.Principal{}, false
		}
		return who, true
	}
	a.deny(w, r, http.StatusUnauthorized, "no_token", errors.New("authentication required: send Authorization: Bearer <token> (create one with vigil token create) or log in with POST /api/session"))
	return access.Principal{}, false
}

// deny refuses a request: counted by reason, logged at most once a minute
// per client address and reason.
func (a *App) deny(w http.ResponseWriter, r *http.Request, code int, reason string, err error) {
	a.metrics.apiDenied.WithLabelValues(reason).Inc()
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if a.limiter.Allow("api:" + host + ":" + reason) {
		a.log.Warn("API request refused", "from", host, "path", r.URL.Path, "reason", reason, "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
	}
	writeError(w, code, err)
}

// unsafeMethod reports whether a method changes something: the ones a
// forged cross-site request could abuse.
func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// sameOrigin checks that a browser request comes from a page of this host:
// its Origin header, or its Referer when it sends no Origin, must name the
// request's Host (and https when the request came over TLS). A request with
// neither is refused: a browser sends Origin on every cross-site POST.
func sameOrigin(r *http.Request) error {
	src, header := r.Header.Get("Origin"), "Origin"
	if src == "" {
		src, header = r.Header.Get("Referer"), "Referer"
	}
	if src == "" {
		return fmt.Errorf("csrf: a cookie-authenticated %s needs an Origin or Referer header naming this host (%s)", r.Method, r.Host)
	}
	u, err := url.Parse(src)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) || (r.TLS != nil && u.Scheme != "https") {
		return fmt.Errorf("csrf: cross-site %s refused: %s %q is not this host (%s)", r.Method, header, src, r.Host)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (a *App) ready(w http.ResponseWriter, _ *http.Request) {
	if !a.mqtt.Connected() {
		http.Error(w, "not ready: not connected to the MQTT broker", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ready\n")
}

func (a *App) listAlerts(w http.ResponseWriter, r *http.Request) {
	limit := 200
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %q must be 1-10000", s))
			return
		}
		limit = n
	}
	list, err := a.engine.List(limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	counts, err := a.engine.Count()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if list == nil {
		list = []alert.View{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": list, "open": counts.Open, "undelivered": counts.Undelivered})
}

func (a *App) getAlert(w http.ResponseWriter, r *http.Request) {
	v, err := a.engine.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// transitionRequest is the body of ack, resolve and note. The person acting
// is the token's holder; a "by" in the body is accepted for older clients
// and ignored.
type transitionRequest struct {
	By      string `json:"by"`
	Note    string `json:"note"`
	Outcome string `json:"outcome"`
}

func decodeTransition(w http.ResponseWriter, r *http.Request) (transitionRequest, bool) {
	var req transitionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: want JSON {\"note\":…, \"outcome\":…}: %w", err))
		return req, false
	}
	return req, true
}

func (a *App) ackAlert(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeTransition(w, r)
	if !ok {
		return
	}
	al, err := a.engine.Acknowledge(r.PathValue("id"), caller(r).Name, req.Note)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	a.log.Info("alert acknowledged", "alert", al.ID, "by", al.AcknowledgedBy)
	writeJSON(w, http.StatusOK, al)
}

func (a *App) resolveAlert(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeTransition(w, r)
	if !ok {
		return
	}
	al, err := a.engine.Resolve(r.PathValue("id"), caller(r).Name, req.Outcome, req.Note)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	a.log.Info("alert resolved", "alert", al.ID, "by", al.ResolvedBy)
	writeJSON(w, http.StatusOK, al)
}

func (a *App) noteAlert(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeTransition(w, r)
	if !ok {
		return
	}
	al, err := a.engine.AddNote(r.PathValue("id"), caller(r).Name, req.Note)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, al)
}

func (a *App) listAmber(w http.ResponseWriter, _ *http.Request) {
	s, err := a.engine.AmberSessions()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if s == nil {
		s = []alert.AmberSession{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": s})
}

func statusFor(err error) int {
	switch {
	case errors.Is(err, alert.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, alert.ErrTransition):
		return http.StatusConflict
	case errors.Is(err, alert.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (a *App) listDevices(w http.ResponseWriter, _ *http.Request) {
	reg, err := a.registry.List()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	status, err := a.engine.Status()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"registered": reg, "status": status})
}

func (a *App) listQuarantine(w http.ResponseWriter, _ *http.Request) {
	q, err := a.journal.Quarantined(500)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"rejected": q})
}

func (a *App) listRoutes(w http.ResponseWriter, _ *http.Request) {
	s, err := a.outbox.Stats()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": s})
}
