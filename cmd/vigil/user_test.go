package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/app"
	"github.com/vigil-gw/vigil/governance/access"
)

const testPW = "a long enough passphrase"

func passwordFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
	return f
}

// store opens the state directory as the gateway would.
func store(t *testing.T, state string) *access.Store {
	t.Helper()
	s, closeDB, err := app.OpenAccess(context.Background(), state, nil)
	require.NoError(t, err)
	t.Cleanup(func() { closeDB() })
	return s
}

// userWithStdin runs vigil user … with the given stdin.
func userWithStdin(stdin string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	if err := userCmd(args[0], args[1:], strings.NewReader(stdin), &o, &e); err != nil {
		e.WriteString("vigil: " + err.Error() + "\n")
		return 1, o.String(), e.String()
	}
	return 0, o.String(), e.String()
}

func TestUserAddWithPasswordFile(t *testing.T) {
	state := t.TempDir()
	pw := passwordFile(t, testPW+"\nsecond line ignored\n")
	code, out, errs := vigil("user", "add", "Ines Investigator", "--role", "investigator", "--password-file", pw, "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "added user Ines Investigator (investigator)\n", out)
	assert.NotContains(t, out+errs, testPW)

	_, p, err := store(t, state).Login(context.Background(), "ines investigator", testPW, time.Now())
	require.NoError(t, err, "the first line is the password")
	assert.Equal(t, access.Investigator, p.Role)

	code, out, _ = vigil("user", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^Ines Investigator\s+investigator\s+yes\s+0\s+active\s+`, out)
}

func TestUserAddWithToken(t *testing.T) {
	state := t.TempDir()
	code, out, errs := vigil("user", "add", "nightly-report", "--role", "ig_officer", "--token", "--state", state)
	require.Equal(t, 0, code, errs)
	secret := strings.TrimSpace(out)
	assert.True(t, strings.HasPrefix(secret, "vgl_"), "only the secret on stdout, for scripts: %q", out)
	assert.Contains(t, errs, "shown once")
	p, err := store(t, state).Authenticate(context.Background(), secret)
	require.NoError(t, err)
	assert.Equal(t, access.Principal{Name: "nightly-report", Role: access.IGOfficer, Via: access.ViaToken, TokenID: p.TokenID}, p)

	// Another token for the same user; both work.
	code, out, errs = vigil("user", "token", "nightly-report", "--state", state)
	require.Equal(t, 0, code, errs)
	second := strings.TrimSpace(out)
	assert.NotEqual(t, secret, second)
	_, err = store(t, state).Authenticate(context.Background(), second)
	require.NoError(t, err)
	code, out, _ = vigil("user", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^nightly-report\s+ig_officer\s+no\s+2\s+active\s+`, out)
}

func TestUserAddFromStdin(t *testing.T) {
	state := t.TempDir()
	code, out, errs := userWithStdin(testPW+"\r\n", "add", "Nurse A", "--role", "wearer", "--wearer", "Nurse A (community)", "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "added user Nurse A (wearer)\n", out)
	_, p, err := store(t, state).Login(context.Background(), "Nurse A", testPW, time.Now())
	require.NoError(t, err)
	assert.Equal(t, "Nurse A (community)", p.Wearer)

	// A terminal (any character device) on stdin is not read: no prompt.
	tty, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer tty.Close()
	var o, e bytes.Buffer
	err = userCmd("add", []string{"op", "--role", "operator", "--state", state}, tty, &o, &e)
	require.ErrorContains(t, err, "no password given: use --password-file F or pipe it on stdin")
}

func TestUserAddRefusals(t *testing.T) {
	state := t.TempDir()
	pw := passwordFile(t, testPW+"\n")
	code, _, errs := vigil("user", "add", "op", "--role", "operator", "--password-file", pw, "--state", state)
	require.Equal(t, 0, code, errs)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"wrong role":           {[]string{"add", "x", "--role", "root", "--password-file", pw}, `role "root": must be one of operator, supervisor, investigator, ig_officer, admin, wearer`},
		"wearer needs wearer":  {[]string{"add", "x", "--role", "wearer", "--password-file", pw}, "a wearer user needs the device wearer name"},
		"wearer only":          {[]string{"add", "x", "--role", "admin", "--wearer", "W", "--password-file", pw}, "only a wearer user is linked to a wearer"},
		"bad name":             {[]string{"add", "x/y", "--role", "operator", "--password-file", pw}, `name "x/y"`},
		"name first":           {[]string{"add", "--role", "operator"}, "the user NAME comes first"},
		"both":                 {[]string{"add", "x", "--role", "operator", "--token", "--password-file", pw}, "choose one"},
		"short password":       {[]string{"add", "x", "--role", "operator", "--password-file", passwordFile(t, "short\n")}, "too short"},
		"empty password":       {[]string{"add", "x", "--role", "operator", "--password-file", passwordFile(t, "\n"+testPW)}, "first line is empty"},
		"missing file":         {[]string{"add", "x", "--role", "operator", "--password-file", "/nonexistent/pw"}, "password file"},
		"duplicate":            {[]string{"add", "OP", "--role", "operator", "--password-file", pw}, "user already exists: op"},
		"unknown user disable": {[]string{"disable", "nobody"}, "no such user: nobody"},
		"unknown user token":   {[]string{"token", "nobody"}, "no such user"},
		"unknown subcommand":   {[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := vigil(append(append([]string{"user"}, tc.args...), "--state", state)...)
			assert.Equal(t, 1, code, out)
			assert.Contains(t, errs, tc.want)
			assert.NotContains(t, errs, testPW)
		})
	}
	code, out, _ := vigil("user", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.Equal(t, 2, strings.Count(out, "\n"), "nothing half made: %s", out)
}

func TestUserDisablePasswdEnable(t *testing.T) {
	state := t.TempDir()
	pw := passwordFile(t, testPW)
	code, _, errs := vigil("user", "add", "sup", "--role", "supervisor", "--password-file", pw, "--state", state)
	require.Equal(t, 0, code, errs)
	code, out, errs := vigil("user", "token", "sup", "--state", state)
	require.Equal(t, 0, code, errs)
	token := strings.TrimSpace(out)
	ctx := context.Background()

	code, out, errs = vigil("user", "disable", "sup", "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "disabled sup")
	_, err := store(t, state).Authenticate(ctx, token)
	require.ErrorIs(t, err, access.ErrDisabled)
	_, _, err = store(t, state).Login(ctx, "sup", testPW, time.Now())
	require.ErrorIs(t, err, access.ErrDisabled)
	code, out, _ = vigil("user", "list", "--state", state)
	require.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^sup\s+supervisor\s+yes\s+1\s+disabled\s+`, out)

	code, _, errs = vigil("user", "enable", "sup", "--state", state)
	require.Equal(t, 0, code, errs)
	const newPW = "a different long passphrase"
	code, out, errs = vigil("user", "passwd", "sup", "--password-file", passwordFile(t, newPW+"\n"), "--state", state)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "password set for sup")
	_, _, err = store(t, state).Login(ctx, "sup", testPW, time.Now())
	require.ErrorIs(t, err, access.ErrLoginFailed)
	_, _, err = store(t, state).Login(ctx, "sup", newPW, time.Now())
	require.NoError(t, err)
	_, err = store(t, state).Authenticate(ctx, token)
	require.NoError(t, err)

	code, _, errs = userWithStdin("short\n", "passwd", "sup", "--state", state)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "too short")
}
