package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/vigil-gw/vigil/governance/access"
)

// loginRequest is the body of POST /api/session.
type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// login checks a user's password and sets the session cookie. It counts
// wrong passwords (bad_password) and refusals while a name is locked out
// (locked_out) like any other refusal.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	// A login forged from another site would sign the victim's browser into
	// the attacker's account; browsers send Origin with every POST.
	if r.Header.Get("Origin") != "" {
		if err := sameOrigin(r); err != nil {
			a.deny(w, r, http.StatusForbidden, "csrf", err)
			return
		}
	}
	var req loginRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.User == "" || req.Password == "" {
		writeError(w, http.StatusBadRequest, errors.New(`body: want JSON {"user": …, "password": …}`))
		return
	}
	secret, who, err := a.accounts.Login(r.Context(), req.User, req.Password, time.Now())
	var locked *access.LockedOutError
	switch {
	case errors.As(err, &locked):
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(locked.Until).Seconds())+1))
		a.deny(w, r, http.StatusTooManyRequests, "locked_out", err)
		return
	case errors.Is(err, access.ErrLoginFailed):
		a.deny(w, r, http.StatusUnauthorized, "bad_password", err)
		return
	case errors.Is(err, access.ErrDisabled):
		a.deny(w, r, http.StatusForbidden, "disabled", err)
		return
	case err != nil:
		a.deny(w, r, http.StatusInternalServerError, "error", fmt.Errorf("login: %w", err))
		return
	}
	// No Max-Age: the cookie ends with the browser, and the server ends the
	// session after the idle or absolute timeout whatever the cookie says.
	http.SetCookie(w, &http.Cookie{Name: access.SessionCookie, Value: secret, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	a.log.Info("user logged in", "user", who.Name, "role", who.Role)
	writeJSON(w, http.StatusOK, map[string]string{"user": who.Name, "role": string(who.Role)})
}

// logout ends the session in the cookie, if any, and clears the cookie.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(access.SessionCookie)
	if err == nil {
		if err := sameOrigin(r); err != nil {
			a.deny(w, r, http.StatusForbidden, "csrf", err)
			return
		}
		if err := a.accounts.Logout(r.Context(), c.Value); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	clearSessionCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// whoAmI describes the caller and what their role lets them do, so that a
// page shows only what will work.
func (a *App) whoAmI(w http.ResponseWriter, r *http.Request) {
	who := caller(r)
	perms := map[access.Permission]access.Scope{}
	for _, p := range access.Permissions() {
		if s := who.Scope(p); s != access.ScopeNone {
			perms[p] = s
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": who.Name, "role": who.Role, "wearer": who.Wearer,
		"via": who.Via, "permissions": perms})
}

// clearSessionCookie tells the browser to drop the session cookie.
func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: access.SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}
