package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices/pki"
)

func TestPKIInitAndIssue(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	code, out, errs := vigil("pki", "init", "--state", state)
	require.Equal(t, 0, code, errs)
	dir := filepath.Join(state, "pki")
	assert.Equal(t, "wrote "+filepath.Join(dir, "ca.crt")+" and .key\n", out)
	ca, err := pki.LoadCA(dir)
	require.NoError(t, err)
	assert.Equal(t, "Vigil demo CA", ca.Subject.CommonName, "named after the configured site")

	for _, tc := range []struct {
		args []string
		path string
	}{
		{[]string{"btn-1"}, "devices/btn-1.crt"},
		{[]string{"vigil-gw", "--kind", "gateway"}, "gateways/vigil-gw.crt"},
		{[]string{"broker", "--kind", "server", "--host", "127.0.0.1", "--host", "broker.site.example", "--days", "90"}, "servers/broker.crt"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, out, errs := vigil(append(append([]string{"pki", "issue"}, tc.args...), "--state", state)...)
			require.Equal(t, 0, code, errs)
			cert := filepath.Join(dir, tc.path)
			assert.Equal(t, "wrote "+cert+" and .key\n", out, "only the paths, never key material")
			pair, err := tls.LoadX509KeyPair(cert, strings.TrimSuffix(cert, ".crt")+".key")
			require.NoError(t, err)
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			require.NoError(t, err)
			assert.Equal(t, tc.args[0], leaf.Subject.CommonName)
		})
	}
	leafOf := func(p string) *x509.Certificate {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, p+".crt"), filepath.Join(dir, p+".key"))
		require.NoError(t, err)
		c, err := x509.ParseCertificate(pair.Certificate[0])
		require.NoError(t, err)
		return c
	}
	srv := leafOf("servers/broker")
	assert.Equal(t, []string{"broker.site.example"}, srv.DNSNames)
	assert.Len(t, srv.IPAddresses, 1)
	assert.InDelta(t, 90*24, srv.NotAfter.Sub(srv.NotBefore).Hours(), 2)

	// Issuing again is refused unless --force.
	before := leafOf("devices/btn-1")
	code, _, errs = vigil("pki", "issue", "btn-1", "--state", state)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "already exists")
	assert.Contains(t, errs, "--force")
	code, _, errs = vigil("pki", "issue", "btn-1", "--force", "--state", state)
	require.Equal(t, 0, code, errs)
	assert.NotEqual(t, before.SerialNumber, leafOf("devices/btn-1").SerialNumber)
}

func TestPKIConfigAndDir(t *testing.T) {
	base := t.TempDir()
	cfg := filepath.Join(base, "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("state: st\nsite: leeds\n"), 0o600))
	code, out, errs := vigil("pki", "init", "--config", cfg)
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "wrote "+filepath.Join(base, "st", "pki", "ca.crt")+" and .key\n", out, "state from the config file, relative to it")

	other := filepath.Join(base, "offline-ca")
	code, out, errs = vigil("pki", "init", "--dir", other, "--name", "Leeds lone-worker CA")
	require.Equal(t, 0, code, errs)
	assert.Equal(t, "wrote "+filepath.Join(other, "ca.crt")+" and .key\n", out)
	ca, err := pki.LoadCA(other)
	require.NoError(t, err)
	assert.Equal(t, "Leeds lone-worker CA", ca.Subject.CommonName)
}

func TestPKIFailuresAreOneLine(t *testing.T) {
	state := t.TempDir()
	empty := t.TempDir()
	code, _, errs := vigil("pki", "init", "--state", state)
	require.Equal(t, 0, code, errs)
	for name, args := range map[string][]string{
		"init twice":       {"pki", "init", "--state", state},
		"no CA":            {"pki", "issue", "btn-1", "--state", empty},
		"id missing":       {"pki", "issue", "--kind", "device", "--state", state},
		"bad id":           {"pki", "issue", "btn/1", "--state", state},
		"bad kind":         {"pki", "issue", "btn-1", "--kind", "admin", "--state", state},
		"server no host":   {"pki", "issue", "broker", "--kind", "server", "--state", state},
		"host on device":   {"pki", "issue", "btn-1", "--host", "127.0.0.1", "--state", state},
		"negative days":    {"pki", "issue", "btn-1", "--days", "-1", "--state", state},
		"stray argument":   {"pki", "issue", "btn-1", "extra", "--state", state},
		"unknown flag":     {"pki", "init", "--frob", "--state", state},
		"init stray arg":   {"pki", "init", "x", "--state", state},
		"issue bad config": {"pki", "issue", "btn-1", "--config", filepath.Join(empty, "missing.yaml")},
		"dir without CA":   {"pki", "issue", "btn-1", "--dir", filepath.Join(empty, "none")},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := vigil(args...)
			assert.Equal(t, 1, code)
			assert.Empty(t, out)
			last := strings.TrimSpace(errs)
			last = last[strings.LastIndex(last, "\n")+1:]
			assert.True(t, strings.HasPrefix(last, "vigil: "), "reason line: %q", errs)
		})
	}
	code, _, _ = vigil("pki")
	assert.Equal(t, 2, code, "pki without a subcommand is a usage error")
	code, _, _ = vigil("pki", "revoke", "btn-1")
	assert.Equal(t, 2, code)
}

// The embedded broker's TLS keys are checked before anything starts, with a
// reason that says what to add.
func TestRunWithTLSBrokerNeedsTheGatewayCertificate(t *testing.T) {
	state := t.TempDir()
	for _, args := range [][]string{{"pki", "init", "--state", state}, {"pki", "issue", "broker", "--kind", "server", "--host", "127.0.0.1", "--state", state}} {
		code, _, errs := vigil(args...)
		require.Equal(t, 0, code, errs)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"no gateway certificate": {
			yaml: "broker:\n  tls_cert_file: pki/servers/broker.crt\n  tls_key_file: pki/servers/broker.key\n  client_ca_file: pki/ca.crt\n",
			want: "mqtt: ca_file, cert_file and key_file are needed"},
		"half the broker keys": {
			yaml: "broker:\n  tls_cert_file: pki/servers/broker.crt\n",
			want: "tls_cert_file, tls_key_file and client_ca_file go together"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := filepath.Join(state, "vigil.yaml")
			require.NoError(t, os.WriteFile(cfg, []byte("state: .\n"+tc.yaml), 0o600))
			code, _, errs := vigil("run", "--config", cfg, "--http", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0")
			assert.Equal(t, 1, code)
			assert.Contains(t, errs, tc.want)
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(errs), "\n")+1, "one line: %q", errs)
		})
	}
}
