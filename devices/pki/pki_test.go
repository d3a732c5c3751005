package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices/pki"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func newCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	require.NoError(t, pki.Init(dir, "Vigil test CA", now))
	return dir
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	b, _ := pem.Decode(raw)
	require.NotNil(t, b)
	require.Equal(t, "CERTIFICATE", b.Type)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func pool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	ca, err := pki.LoadCA(dir)
	require.NoError(t, err)
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Mode().Perm()
}

func TestInit(t *testing.T) {
	dir := newCA(t)
	assert.Equal(t, fs.FileMode(0o700), mode(t, dir))
	assert.Equal(t, fs.FileMode(0o600), mode(t, filepath.Join(dir, pki.CAKeyFile)))
	assert.Equal(t, fs.FileMode(0o644), mode(t, pki.CAPath(dir)))

	ca := readCert(t, pki.CAPath(dir))
	assert.True(t, ca.IsCA)
	assert.True(t, ca.MaxPathLenZero, "no intermediate CAs below the site CA")
	assert.Equal(t, "Vigil test CA", ca.Subject.CommonName)
	assert.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, ca.KeyUsage)
	assert.WithinDuration(t, now.Add(pki.DefaultCAValidity), ca.NotAfter, time.Second)
	assert.True(t, ca.NotBefore.Before(now))
	assert.Equal(t, x509.ECDSA, ca.PublicKeyAlgorithm)
	assert.Equal(t, 1, ca.SerialNumber.Sign(), "positive serial")

	err := pki.Init(dir, "another", now)
	require.ErrorIs(t, err, pki.ErrExists, "an existing CA is never overwritten")
	assert.Equal(t, ca.Raw, readCert(t, pki.CAPath(dir)).Raw)

	require.Error(t, pki.Init(filepath.Join(t.TempDir(), "x"), "", now), "a CA needs a name")
}

func TestInitTightensAnExistingDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, pki.Init(dir, "CA", now))
	assert.Equal(t, fs.FileMode(0o700), mode(t, dir))
}

func TestIssue(t *testing.T) {
	dir := newCA(t)
	roots := pool(t, dir)
	for _, tc := range []struct {
		name    string
		cn      string
		kind    pki.Kind
		hosts   []string
		valid   time.Duration
		usage   x509.ExtKeyUsage // must verify for this
		notFor  x509.ExtKeyUsage // and must not for this
		dnsName string           // server: a name it must verify for
		subdir  string
	}{
		{name: "device", cn: "btn-1", kind: pki.Device, usage: x509.ExtKeyUsageClientAuth, notFor: x509.ExtKeyUsageServerAuth, subdir: "devices"},
		{name: "gateway", cn: "vigil-gw_1", kind: pki.Gateway, usage: x509.ExtKeyUsageClientAuth, notFor: x509.ExtKeyUsageServerAuth, subdir: "gateways", valid: 30 * 24 * time.Hour},
		{name: "server", cn: "broker.site.example", kind: pki.Server, hosts: []string{"127.0.0.1", "::1", "broker.site.example", "localhost"},
			usage: x509.ExtKeyUsageServerAuth, notFor: x509.ExtKeyUsageClientAuth, dnsName: "broker.site.example", subdir: "servers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certPath, keyPath, err := pki.Issue(dir, tc.cn, tc.kind, tc.hosts, tc.valid, now)
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(dir, tc.subdir, tc.cn+".crt"), certPath)
			assert.Equal(t, filepath.Join(dir, tc.subdir, tc.cn+".key"), keyPath)
			wantCert, wantKey := pki.Paths(dir, tc.kind, tc.cn)
			assert.Equal(t, wantCert, certPath)
			assert.Equal(t, wantKey, keyPath)

			assert.Equal(t, fs.FileMode(0o600), mode(t, keyPath), "key readable by its owner only")
			assert.Equal(t, fs.FileMode(0o644), mode(t, certPath))
			assert.Equal(t, fs.FileMode(0o700), mode(t, filepath.Dir(keyPath)))
			_, err = tls.LoadX509KeyPair(certPath, keyPath)
			require.NoError(t, err, "the key belongs to the certificate")

			c := readCert(t, certPath)
			assert.Equal(t, tc.cn, c.Subject.CommonName)
			assert.Equal(t, []string{string(tc.kind)}, c.Subject.OrganizationalUnit)
			assert.False(t, c.IsCA)
			assert.Equal(t, x509.KeyUsageDigitalSignature, c.KeyUsage)
			assert.Equal(t, []x509.ExtKeyUsage{tc.usage}, c.ExtKeyUsage)
			assert.Equal(t, 1, c.SerialNumber.Sign())
			assert.LessOrEqual(t, c.SerialNumber.BitLen(), 128)
			assert.Greater(t, c.SerialNumber.BitLen(), 64, "random 128-bit serial (fails with probability 2^-64)")
			valid := tc.valid
			if valid == 0 {
				valid = pki.DefaultLeafValidity
			}
			assert.WithinDuration(t, now.Add(valid), c.NotAfter, time.Second)

			opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{tc.usage}, DNSName: tc.dnsName}
			_, err = c.Verify(opts)
			require.NoError(t, err, "verifies against the CA for its purpose")
			opts.KeyUsages = []x509.ExtKeyUsage{tc.notFor}
			_, err = c.Verify(opts)
			assert.Error(t, err, "and not for the other purpose")
			_, err = c.Verify(x509.VerifyOptions{Roots: pool(t, newCA(t)), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			assert.Error(t, err, "another site's CA does not vouch for it")

			if tc.kind == pki.Server {
				assert.Len(t, c.IPAddresses, 2)
				assert.Equal(t, []string{"broker.site.example", "localhost"}, c.DNSNames)
				require.NoError(t, c.VerifyHostname("127.0.0.1"))
				assert.Error(t, c.VerifyHostname("other.site.example"), "names outside the SANs are refused")
			} else {
				assert.Empty(t, c.DNSNames)
				assert.Empty(t, c.IPAddresses)
			}

			_, _, err = pki.Issue(dir, tc.cn, tc.kind, tc.hosts, tc.valid, now)
			require.ErrorIs(t, err, pki.ErrExists, "an issued certificate is not overwritten")
			assert.Equal(t, c.Raw, readCert(t, certPath).Raw)

			_, _, err = pki.Reissue(dir, tc.cn, tc.kind, tc.hosts, tc.valid, now.Add(time.Hour))
			require.NoError(t, err, "unless asked")
			again := readCert(t, certPath)
			assert.NotEqual(t, c.SerialNumber, again.SerialNumber)
			_, err = tls.LoadX509KeyPair(certPath, keyPath)
			require.NoError(t, err)
			assert.Equal(t, fs.FileMode(0o600), mode(t, keyPath))
		})
	}
	entries, err := os.ReadDir(filepath.Join(dir, "devices"))
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "."), "no temporary file left: %s", e.Name())
	}
}

func TestIssueRefuses(t *testing.T) {
	dir := newCA(t)
	for _, tc := range []struct {
		name  string
		cn    string
		kind  pki.Kind
		hosts []string
		valid time.Duration
		want  string
	}{
		{name: "empty id", cn: "", kind: pki.Device, want: "not a valid device id"},
		{name: "path in id", cn: "../ca", kind: pki.Device, want: "not a valid device id"},
		{name: "slash in id", cn: "a/b", kind: pki.Gateway, want: "not a valid gateway id"},
		{name: "topic wildcard in id", cn: "+", kind: pki.Device, want: "not a valid device id"},
		{name: "space in id", cn: "btn 1", kind: pki.Device, want: "not a valid device id"},
		{name: "leading dash", cn: "-btn", kind: pki.Device, want: "not a valid device id"},
		{name: "too long", cn: strings.Repeat("a", 65), kind: pki.Device, want: "not a valid device id"},
		{name: "host on a device", cn: "btn-1", kind: pki.Device, hosts: []string{"127.0.0.1"}, want: "server certificates only"},
		{name: "server without hosts", cn: "broker", kind: pki.Server, want: "at least one host"},
		{name: "server bad host", cn: "broker", kind: pki.Server, hosts: []string{"bad host"}, want: "neither an IP address nor a DNS name"},
		{name: "server path name", cn: "../broker", kind: pki.Server, hosts: []string{"x"}, want: "name"},
		{name: "unknown kind", cn: "btn-1", kind: pki.Kind("admin"), want: "not device, gateway or server"},
		{name: "negative validity", cn: "btn-1", kind: pki.Device, valid: -time.Hour, want: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := pki.Issue(dir, tc.cn, tc.kind, tc.hosts, tc.valid, now)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "nothing written but the CA")
}

func TestIssueNeedsAValidCA(t *testing.T) {
	_, _, err := pki.Issue(t.TempDir(), "btn-1", pki.Device, nil, 0, now)
	require.ErrorIs(t, err, pki.ErrNoCA)

	dir := newCA(t)
	_, _, err = pki.Issue(dir, "btn-1", pki.Device, nil, 0, now.Add(pki.DefaultCAValidity+time.Hour))
	require.ErrorContains(t, err, "not now", "an expired CA issues nothing")

	// No certificate outlives the CA.
	late := now.Add(pki.DefaultCAValidity - 24*time.Hour)
	certPath, _, err := pki.Issue(dir, "btn-1", pki.Device, nil, 0, late)
	require.NoError(t, err)
	ca, err := pki.LoadCA(dir)
	require.NoError(t, err)
	assert.Equal(t, ca.NotAfter, readCert(t, certPath).NotAfter)

	// A CA certificate without its key (a copy handed to a broker) cannot issue.
	copyDir := t.TempDir()
	raw, err := os.ReadFile(pki.CAPath(dir))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(pki.CAPath(copyDir), raw, 0o644))
	_, _, err = pki.Issue(copyDir, "btn-2", pki.Device, nil, 0, now)
	require.ErrorIs(t, err, pki.ErrNoCA)

	// A key that is not the CA's is refused.
	other := newCA(t)
	key, err := os.ReadFile(filepath.Join(other, pki.CAKeyFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(copyDir, pki.CAKeyFile), key, 0o600))
	_, _, err = pki.Issue(copyDir, "btn-2", pki.Device, nil, 0, now)
	require.ErrorContains(t, err, "does not belong to")
}

func TestErrorsNeverCarryKeys(t *testing.T) {
	dir := newCA(t)
	key, err := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	require.NoError(t, err)
	// Corrupt the key so that parsing fails, and check that the error names
	// the file but does not echo its content.
	b, _ := pem.Decode(key)
	b.Bytes[len(b.Bytes)/2] ^= 0xff
	bad := pem.EncodeToMemory(b)
	require.NoError(t, os.WriteFile(filepath.Join(dir, pki.CAKeyFile), bad, 0o600))
	_, _, err = pki.Issue(dir, "btn-1", pki.Device, nil, 0, now)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), strings.TrimSpace(string(bad[28:60])))
	assert.Contains(t, err.Error(), pki.CAKeyFile)
}

func TestParseKind(t *testing.T) {
	for _, s := range []string{"device", "gateway", "server"} {
		k, err := pki.ParseKind(s)
		require.NoError(t, err)
		assert.Equal(t, pki.Kind(s), k)
	}
	_, err := pki.ParseKind("Device")
	assert.Error(t, err)
}
