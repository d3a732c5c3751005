package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/app"
)

// TestReportAsksTheRunningGateway: `vigil report` gets the monthly report
// from the gateway's API as the token's holder, in each format.
func TestReportAsksTheRunningGateway(t *testing.T) {
	state := t.TempDir()
	code, out, errs := vigil("token", "create", "--role", "supervisor", "--name", "Sam Lead", "--state", state)
	require.Equal(t, 0, code, errs)
	sup := strings.TrimSpace(out)
	code, out, errs = vigil("token", "create", "--role", "operator", "--name", "Operator 7", "--state", state)
	require.Equal(t, 0, code, errs)
	op := strings.TrimSpace(out)

	cfg := app.DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = state, "127.0.0.1:0", "127.0.0.1:0"
	a, err := app.New(cfg, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	api := "http://" + a.HTTPAddr()
	month := time.Now().Format("2006-01")

	t.Setenv("VIGIL_TOKEN", sup)
	code, out, errs = vigil("report", "--state", state, "--api", api, "--month", month, "--format", "html")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "<svg", "the safety cross is drawn inline")
	code, out, errs = vigil("report", "--state", state, "--api", api, "--month", month, "--format", "csv")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "safety_cross")

	code, _, errs = vigil("report", "--state", state, "--api", api, "--month", "November")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, `--month "November": want YYYY-MM`)

	t.Setenv("VIGIL_TOKEN", op)
	code, _, errs = vigil("report", "--state", state, "--api", api)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "403")

	t.Setenv("VIGIL_TOKEN", "")
	code, _, errs = vigil("report", "--state", state, "--api", api)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "who are you?")
}
