package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-gw/vigil/gateway/alert"
)

// maxBody caps API request bodies.
const maxBody = 16 << 10

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/alerts", a.listAlerts)
	mux.HandleFunc("GET /api/alerts/{id}", a.getAlert)
	mux.HandleFunc("POST /api/alerts/{id}/ack", a.ackAlert)
	mux.HandleFunc("POST /api/alerts/{id}/resolve", a.resolveAlert)
	mux.HandleFunc("POST /api/alerts/{id}/note", a.noteAlert)
	mux.HandleFunc("GET /api/amber", a.listAmber)
	mux.HandleFunc("GET /api/devices", a.listDevices)
	mux.HandleFunc("GET /api/quarantine", a.listQuarantine)
	mux.HandleFunc("GET /api/routes", a.listRoutes)
	return mux
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
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: want JSON {\"by\":…, \"note\"|\"outcome\":…}: %w", err))
		return req, false
	}
	return req, true
}

func (a *App) ackAlert(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeTransition(w, r)
	if !ok {
		return
	}
	al, err := a.engine.Acknowledge(r.PathValue("id"), req.By, req.Note)
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
	al, err := a.engine.Resolve(r.PathValue("id"), req.By, req.Outcome, req.Note)
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
	al, err := a.engine.AddNote(r.PathValue("id"), req.By, req.Note)
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
