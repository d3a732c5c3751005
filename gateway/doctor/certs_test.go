package doctor

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices/pki"
	"github.com/vigil-gw/vigil/gateway/app"
)

// writeCert writes a self-signed certificate for cn, valid from notBefore
// to notAfter, to dir/name and returns the path.
func writeCert(t *testing.T, dir, name, cn string, notBefore, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return p
}

func TestCheckCertificates(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	dir := t.TempDir()
	good := writeCert(t, dir, "good.crt", "api.site", now.Add(-day), now.Add(400*day))
	soon := writeCert(t, dir, "soon.crt", "broker.site", now.Add(-300*day), now.Add(10*day+time.Hour))
	expired := writeCert(t, dir, "expired.crt", "old.site", now.Add(-400*day), now.Add(-2*day))
	notPEM := filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600))
	// A chain file: the first certificate is fine, the second expires soon.
	chain := filepath.Join(dir, "chain.crt")
	a, err := os.ReadFile(good)
	require.NoError(t, err)
	b, err := os.ReadFile(soon)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(chain, append(a, b...), 0o600))

	file := func(p string) certFile { return certFile{path: p, keys: []string{"http_cert_file"}} }
	tests := []struct {
		name     string
		files    []certFile
		want     Status
		contains []string
	}{
		{"none configured", nil, OK, []string{"no certificate files are configured"}},
		{"valid", []certFile{file(good)}, OK, []string{"1 certificates in 1 files are valid; the first to expire is in " + good + ", on " + day2(now.Add(400*day))}},
		{"near expiry", []certFile{file(good), file(soon)}, Warn, []string{soon + " (broker.site) expires on " + day2(now.Add(10*day+time.Hour)) + " (in 10 days)"}},
		{"expired", []certFile{file(expired)}, Fail, []string{expired + " (old.site) expired on " + day2(now.Add(-2*day))}},
		{"expired outranks near expiry, both named", []certFile{file(soon), file(expired)}, Fail, []string{"soon.crt (broker.site) expires", "expired.crt (old.site) expired"}},
		{"missing file", []certFile{file(filepath.Join(dir, "nope.crt"))}, Fail, []string{"nope.crt (http_cert_file) cannot be read: no such file or directory"}},
		{"no certificate in it", []certFile{file(notPEM)}, Fail, []string{"key.pem (http_cert_file) holds no PEM certificate"}},
		{"a chain with a problem further down", []certFile{file(chain)}, Warn, []string{"chain.crt (broker.site) expires"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := checkCertificates(tt.files, now)
			assert.Equal(t, checkCerts, f.Name)
			assert.Equal(t, tt.want, f.Status, f.Summary)
			for _, c := range tt.contains {
				assert.Contains(t, f.Summary, c)
			}
			assert.Len(t, f.Details["files"], len(tt.files))
			if tt.want != OK {
				assert.Contains(t, f.Advice, "renew")
			}
		})
	}
}

func day2(t time.Time) string { return t.UTC().Format("2006-01-02") }

func TestCertFiles(t *testing.T) {
	state := t.TempDir()
	cfg := app.DefaultConfig()
	cfg.State = state
	ca := pki.CAPath(pki.DefaultDir(state))
	cfg.HTTPCertFile = "/etc/vigil/api.crt"
	cfg.MQTT.CAFile = ca // the same file under two names
	cfg.Broker.ClientCAFile = ca
	cfg.Evidence.CAFile = "/etc/vigil/../vigil/minio-ca.crt"

	var got []string
	for _, f := range certFiles(cfg) {
		got = append(got, f.path+" "+strings.Join(f.keys, ","))
	}
	assert.Equal(t, []string{
		"/etc/vigil/api.crt http_cert_file",
		ca + " broker.client_ca_file,mqtt.ca_file",
		"/etc/vigil/minio-ca.crt evidence.ca_file",
	}, got, "each file once, under every setting that names it")

	// Once `vigil pki init` has made the site CA, it is checked even when
	// no setting names it.
	cfg.MQTT.CAFile, cfg.Broker.ClientCAFile = "", ""
	require.NoError(t, pki.Init(pki.DefaultDir(state), "site", time.Now()))
	got = nil
	for _, f := range certFiles(cfg) {
		got = append(got, f.path+" "+strings.Join(f.keys, ","))
	}
	assert.Contains(t, got, ca+" site CA")

	f := checkCertificates(certFiles(cfg)[2:], time.Now())
	assert.Equal(t, OK, f.Status, f.Summary)
}
