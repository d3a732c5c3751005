package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/internal/syncbuf"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// testPKI writes a CA and a server certificate for 127.0.0.1 into dir.
func testPKI(t *testing.T, dir string) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER), pool
}

// TestDuressOverTLSBroker: the broker link is TLS (ssl://), verified against
// the configured CA; the alarm still reaches the ARC and the wearer.
func TestDuressOverTLSBroker(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile, pool := testPKI(t, dir)
	plain := startMosquitto(t, "cafile "+caFile, "certfile "+certFile, "keyfile "+keyFile)
	broker := strings.Replace(plain, "tcp://", "ssl://", 1)

	state := t.TempDir()
	addDevice(t, state, site, "btn-0001", "Nurse A")
	rcv := startARC(t, nil)
	cfg := filepath.Join(dir, "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("mqtt:\n  url: %s\n  ca_file: ca.pem\narc:\n  - url: %q\n", broker, rcv.url())), 0o600))
	startVigil(t, state, "--config", cfg)

	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: broker, Site: site, Device: "btn-0001",
		TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, b.Connect(ctx))
	defer b.Close()
	press, err := b.Duress(ctx)
	require.NoError(t, err)
	_, err = b.WaitReceived(ctx, press.Seq)
	require.NoError(t, err)
	assert.Equal(t, 1, rcv.alarms()["001"])
}

// TestUntrustedBrokerIsRefused: a broker whose certificate the configured CA
// did not sign is never used (the gateway does not become ready).
func TestUntrustedBrokerIsRefused(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile, _ := testPKI(t, dir)
	plain := startMosquitto(t, "cafile "+caFile, "certfile "+certFile, "keyfile "+keyFile)
	other := t.TempDir()
	otherCA, _, _, _ := testPKI(t, other) // a different CA
	cfg := filepath.Join(dir, "vigil.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf("mqtt:\n  url: %s\n  ca_file: %s\n",
		strings.Replace(plain, "tcp://", "ssl://", 1), otherCA)), 0o600))
	httpAddr := testnet.ClosedAddr(t)
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(vigilBin, "run", "--state", t.TempDir(), "--config", cfg, "--http", httpAddr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitFor(t, 10*time.Second, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), "certificate signed by unknown authority")
	})
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready while the broker is untrusted")
	assert.Equal(t, 1, strings.Count(logs.String(), "cannot connect to broker"), "logged once, not every retry")
}
