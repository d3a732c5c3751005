package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/internal/ratelog"
	"github.com/vigil-gw/vigil/governance/access"
)

func startApp(t *testing.T) (*App, string) {
	t.Helper()
	return startAppIn(t, t.TempDir())
}

func startAppIn(t *testing.T, state string) (*App, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = state, "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	runApp(t, a)
	return a, cfg.State
}

// runApp runs a (built by the test, perhaps with test settings) until the
// test ends, when Run must have returned nil. stop ends it sooner and
// returns Run's error; calling it again returns the same.
func runApp(t *testing.T, a *App) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { require.NoError(t, stop()) })
	return stop
}

// request is one API call. token is a bearer token ("Basic …" is sent as
// is); cookie a session secret; header extra headers.
type request struct {
	method, path, token, cookie, body string
	header                            map[string]string
}

func do(t *testing.T, a *App, q request) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(q.method, "http://"+a.HTTPAddr()+q.path, strings.NewReader(q.body))
	require.NoError(t, err)
	switch {
	case strings.HasPrefix(q.token, "Basic "):
		req.Header.Set("Authorization", q.token)
	case q.token != "":
		req.Header.Set("Authorization", "Bearer "+q.token)
	}
	if q.cookie != "" {
		req.AddCookie(&http.Cookie{Name: access.SessionCookie, Value: q.cookie})
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func call(t *testing.T, a *App, method, path, token, body string) (int, string) {
	t.Helper()
	resp, b := do(t, a, request{method: method, path: path, token: token, body: body})
	return resp.StatusCode, b
}

// addUser adds a user (with a password when pw is set) and returns an API
// token for them.
func addUser(t *testing.T, s *access.Store, name string, role access.Role, wearer, pw string) string {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.AddUser(ctx, access.User{Name: name, Role: role, Wearer: wearer}, time.Now()))
	if pw != "" {
		require.NoError(t, s.SetPassword(ctx, name, pw))
	}
	secret, _, err := s.CreateToken(ctx, name, time.Now())
	require.NoError(t, err)
	return secret
}

// denied returns the vigil_api_denied_total lines of the metrics.
func denied(t *testing.T, a *App) string {
	t.Helper()
	_, body := call(t, a, "GET", "/metrics", "", "")
	var lines []string
	for l := range strings.Lines(body) {
		if strings.HasPrefix(l, "vigil_api_denied_total") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "")
}

func TestAPIRoles(t *testing.T) {
	a, _ := startApp(t)
	op := addUser(t, a.accounts, "Operator 7", access.Operator, "", "")
	sup := addUser(t, a.accounts, "Team lead", access.Supervisor, "", "")
	adm := addUser(t, a.accounts, "Admin", access.Admin, "", "")
	inv := addUser(t, a.accounts, "Ines", access.Investigator, "", "")
	ig := addUser(t, a.accounts, "IG", access.IGOfficer, "", "")
	wea := addUser(t, a.accounts, "Nurse A", access.Wearer, "Nurse A", "")
	gone := addUser(t, a.accounts, "Leaver", access.Supervisor, "", "")
	require.NoError(t, a.accounts.Disable(context.Background(), "Leaver", time.Now()))

	for _, tc := range []struct {
		name, method, path, token string
		want                      int
		body                      string // substring of the response
	}{
		{"health needs nothing", "GET", "/healthz", "", 200, "ok"},
		{"metrics need nothing", "GET", "/metrics", "", 200, "vigil_"},
		{"no token", "GET", "/api/alerts", "", 401, "authentication required"},
		{"not a bearer", "GET", "/api/alerts", "Basic xyz", 401, "Bearer"},
		{"bad token", "GET", "/api/alerts", "vgl_nope", 401, "unknown or revoked token"},
		{"disabled user's token", "GET", "/api/alerts", gone, 401, "user is disabled"},
		{"operator reads alerts", "GET", "/api/alerts", op, 200, `"alerts"`},
		{"operator acts on alerts", "POST", "/api/alerts/nope/ack", op, 404, "not found"},
		{"operator may not read quarantine", "GET", "/api/quarantine", op, 403, "role operator may not read rejected"},
		{"operator may not read devices", "GET", "/api/devices", op, 403, "role operator"},
		{"supervisor reads devices", "GET", "/api/devices", sup, 200, `"registered"`},
		{"supervisor reads routes", "GET", "/api/routes", sup, 200, `"routes"`},
		{"admin reads devices", "GET", "/api/devices", adm, 200, `"registered"`},
		{"investigator reads alerts", "GET", "/api/alerts", inv, 200, `"alerts"`},
		{"investigator may not act on alerts", "POST", "/api/alerts/nope/ack", inv, 403, "role investigator may not act on alerts"},
		{"ig officer reads evidence status", "GET", "/api/evidence/status", ig, 200, "{"},
		{"ig officer may not read alerts", "GET", "/api/alerts", ig, 403, "role ig_officer"},
		{"wearer may not read alerts", "GET", "/api/alerts", wea, 403, "role wearer"},
		{"who am I with a token", "GET", "/api/session", wea, 200, `"via": "token"`},
		{"who am I needs credentials", "GET", "/api/session", "", 401, "authentication required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, a, tc.method, tc.path, tc.token, "{}")
			assert.Equal(t, tc.want, code, body)
			assert.Contains(t, body, tc.body)
		})
	}
	metrics := denied(t, a)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="role"} 5`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="no_token"} 3`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="bad_token"} 2`)

	_, body := call(t, a, "GET", "/api/session", wea, "")
	var me struct {
		User, Role, Wearer, Via string
		Permissions             map[string]string
	}
	require.NoError(t, json.Unmarshal([]byte(body), &me))
	assert.Equal(t, "Nurse A", me.User)
	assert.Equal(t, "wearer", me.Role)
	assert.Equal(t, map[string]string{"search_clips": "own", "view_footage": "own", "subject_access": "own",
		"report_incident": "own", "read_incidents": "own"}, me.Permissions)
}

func TestSessionLoginFlow(t *testing.T) {
	a, _ := startApp(t)
	const pw = "control room passphrase"
	token := addUser(t, a.accounts, "Operator 7", access.Operator, "", pw)
	origin := map[string]string{"Origin": "http://" + a.HTTPAddr()}

	resp, body := do(t, a, request{method: "POST", path: "/api/session", body: `{"user":"operator 7","password":"` + pw + `"}`})
	require.Equal(t, 200, resp.StatusCode, body)
	assert.JSONEq(t, `{"user":"Operator 7","role":"operator"}`, body)
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == access.SessionCookie {
			session = c
		}
	}
	require.NotNil(t, session, "Set-Cookie %s", resp.Header.Values("Set-Cookie"))
	assert.True(t, session.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, session.SameSite)
	assert.False(t, session.Secure, "plain HTTP: the browser would not send a Secure cookie back")
	assert.Equal(t, "/", session.Path)
	cookie := session.Value

	for _, tc := range []struct {
		name string
		q    request
		want int
		body string
	}{
		{"cookie reads alerts", request{method: "GET", path: "/api/alerts", cookie: cookie}, 200, `"alerts"`},
		{"who am I", request{method: "GET", path: "/api/session", cookie: cookie}, 200, `"via": "session"`},
		{"role still applies", request{method: "GET", path: "/api/devices", cookie: cookie}, 403, "role operator"},
		{"POST without Origin", request{method: "POST", path: "/api/alerts/nope/ack", cookie: cookie, body: "{}"}, 403, "csrf: a cookie-authenticated POST needs an Origin or Referer"},
		{"POST from another site", request{method: "POST", path: "/api/alerts/nope/ack", cookie: cookie, body: "{}",
			header: map[string]string{"Origin": "https://evil.example"}}, 403, `csrf: cross-site POST refused: Origin`},
		{"Origin null", request{method: "POST", path: "/api/alerts/nope/ack", cookie: cookie, body: "{}",
			header: map[string]string{"Origin": "null"}}, 403, "csrf"},
		{"POST from this host", request{method: "POST", path: "/api/alerts/nope/ack", cookie: cookie, body: "{}", header: origin}, 404, "not found"},
		{"Referer from this host", request{method: "POST", path: "/api/alerts/nope/ack", cookie: cookie, body: "{}",
			header: map[string]string{"Referer": "http://" + a.HTTPAddr() + "/console"}}, 404, "not found"},
		{"bearer needs no Origin", request{method: "POST", path: "/api/alerts/nope/ack", token: token, body: "{}"}, 404, "not found"},
		{"bad cookie", request{method: "GET", path: "/api/alerts", cookie: "forged"}, 401, "no such session"},
		{"wrong password", request{method: "POST", path: "/api/session", body: `{"user":"Operator 7","password":"not the passphrase"}`}, 401, "wrong user name or password"},
		{"unknown user", request{method: "POST", path: "/api/session", body: `{"user":"Nobody","password":"not the passphrase"}`}, 401, "wrong user name or password"},
		{"login from another site", request{method: "POST", path: "/api/session", body: `{"user":"Operator 7","password":"` + pw + `"}`,
			header: map[string]string{"Origin": "https://evil.example"}}, 403, "csrf"},
		{"login body", request{method: "POST", path: "/api/session", body: `{"name":"x"}`}, 400, "want JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, a, tc.q)
			assert.Equal(t, tc.want, resp.StatusCode, body)
			assert.Contains(t, body, tc.body)
		})
	}
	metrics := denied(t, a)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="csrf"} 4`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="bad_password"} 2`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="bad_session"} 1`)

	// Logging out needs this host's Origin too, ends the session and clears
	// the cookie.
	resp, _ = do(t, a, request{method: "DELETE", path: "/api/session", cookie: cookie})
	assert.Equal(t, 403, resp.StatusCode)
	resp, _ = do(t, a, request{method: "DELETE", path: "/api/session", cookie: cookie, header: origin})
	assert.Equal(t, 204, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Set-Cookie"), access.SessionCookie+"=;")
	assert.Contains(t, resp.Header.Get("Set-Cookie"), "Max-Age=0")
	resp, body = do(t, a, request{method: "GET", path: "/api/alerts", cookie: cookie})
	assert.Equal(t, 401, resp.StatusCode, body)
}

func TestLoginLockout(t *testing.T) {
	a, _ := startApp(t)
	const pw = "control room passphrase"
	addUser(t, a.accounts, "sup", access.Supervisor, "", pw)
	login := func(pw string) (*http.Response, string) {
		return do(t, a, request{method: "POST", path: "/api/session", body: `{"user":"sup","password":"` + pw + `"}`})
	}
	for range 4 {
		resp, body := login("not the passphrase")
		require.Equal(t, 401, resp.StatusCode, body)
	}
	resp, body := login("not the passphrase")
	assert.Equal(t, 429, resp.StatusCode, body)
	assert.Contains(t, body, "too many failed logins for this user: try again after")
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	resp, body = login(pw)
	assert.Equal(t, 429, resp.StatusCode, "the right password is refused while locked out: %s", body)

	metrics := denied(t, a)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="bad_password"} 4`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="locked_out"} 2`)
}

// TestCLIWritesWhileRunning: a token made by another process (vigil token
// create, vigil user disable) counts at the next request.
func TestCLIWritesWhileRunning(t *testing.T) {
	a, state := startApp(t)
	cli, closeDB, err := OpenAccess(context.Background(), state, nil)
	require.NoError(t, err)
	defer closeDB()
	token := addUser(t, cli, "Team lead", access.Supervisor, "", "")
	code, body := call(t, a, "GET", "/api/devices", token, "")
	assert.Equal(t, 200, code, body)
	require.NoError(t, cli.Disable(context.Background(), "Team lead", time.Now()))
	code, body = call(t, a, "GET", "/api/devices", token, "")
	assert.Equal(t, 401, code, body)
}

func TestLegacyTokensImportedAtStart(t *testing.T) {
	state := t.TempDir()
	const secret = "vgl_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sum := sha256.Sum256([]byte(secret))
	h := hex.EncodeToString(sum[:])
	require.NoError(t, os.WriteFile(filepath.Join(state, TokensFile),
		[]byte(`{"tokens":[{"id":"`+h[:12]+`","name":"Operator 7","role":"operator","sha256":"`+h+`","created":"2025-01-01T00:00:00Z"}]}`), 0o600))
	a, _ := startAppIn(t, state)
	code, body := call(t, a, "GET", "/api/alerts", secret, "")
	assert.Equal(t, 200, code, body)
	assert.NoFileExists(t, filepath.Join(state, TokensFile))
	assert.FileExists(t, filepath.Join(state, TokensFile+access.ImportedSuffix))
}

// TestSecureCookieOverTLS calls the login handler directly: a request that
// came over TLS gets a Secure cookie.
func TestSecureCookieOverTLS(t *testing.T) {
	s, closeDB, err := OpenAccess(context.Background(), t.TempDir(), nil)
	require.NoError(t, err)
	defer closeDB()
	const pw = "control room passphrase"
	addUser(t, s, "op", access.Operator, "", pw)
	a := &App{accounts: s, metrics: newMetrics(), limiter: ratelog.New(time.Minute, nil), log: slog.New(slog.DiscardHandler)}
	r := httptest.NewRequest("POST", "https://vigil.example/api/session", strings.NewReader(`{"user":"op","password":"`+pw+`"}`))
	require.NotNil(t, r.TLS)
	w := httptest.NewRecorder()
	a.login(w, r)
	require.Equal(t, 200, w.Code, w.Body.String())
	cookies := w.Result().Cookies()
	require.Len(t, cookies, 1)
	assert.True(t, cookies[0].Secure)
	assert.True(t, cookies[0].HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, cookies[0].SameSite)

	// Over TLS, an http:// Origin of the same host is not this site.
	r = httptest.NewRequest("POST", "https://vigil.example/api/alerts/x/ack", nil)
	r.Header.Set("Origin", "http://vigil.example")
	assert.ErrorContains(t, sameOrigin(r), "csrf")
	r.Header.Set("Origin", "https://vigil.example")
	assert.NoError(t, sameOrigin(r))
}
