package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/governance/access"
)

func startApp(t *testing.T) (*App, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return a, cfg.State
}

func call(t *testing.T, a *App, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+a.HTTPAddr()+path, strings.NewReader(body))
	require.NoError(t, err)
	switch {
	case strings.HasPrefix(token, "Basic "):
		req.Header.Set("Authorization", token)
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPIRoles(t *testing.T) {
	a, state := startApp(t)
	op, _, err := OpenTokens(state).Create("Operator 7", access.Operator, time.Now())
	require.NoError(t, err)
	sup, _, err := OpenTokens(state).Create("Team lead", access.Supervisor, time.Now())
	require.NoError(t, err)

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
		{"operator reads alerts", "GET", "/api/alerts", op, 200, `"alerts"`},
		{"operator acts on alerts", "POST", "/api/alerts/nope/ack", op, 404, "not found"},
		{"operator may not read quarantine", "GET", "/api/quarantine", op, 403, "role operator may not read rejected"},
		{"operator may not read devices", "GET", "/api/devices", op, 403, "role operator"},
		{"supervisor reads devices", "GET", "/api/devices", sup, 200, `"registered"`},
		{"supervisor reads routes", "GET", "/api/routes", sup, 200, `"routes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, a, tc.method, tc.path, tc.token, "{}")
			assert.Equal(t, tc.want, code, body)
			assert.Contains(t, body, tc.body)
		})
	}
	_, metrics := call(t, a, "GET", "/metrics", "", "")
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="role"} 2`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="no_token"} 2`)
	assert.Contains(t, metrics, `vigil_api_denied_total{reason="bad_token"} 1`)
}
