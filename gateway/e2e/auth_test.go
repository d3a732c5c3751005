package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/pki"
	firmwaresim "github.com/vigil-gw/vigil/firmware-sim"
	"github.com/vigil-gw/vigil/gateway/internal/testnet"
)

// e2eGatewayID is the --gateway-id startVigil gives every gateway: the CN of
// the gateway certificate and the user in the Mosquitto ACL.
const e2eGatewayID = "vigil-e2e"

// authPKI makes a site CA with `vigil pki`'s package: a server certificate
// for 127.0.0.1, the gateway's certificate and two devices'.
func authPKI(t *testing.T) (dir string, roots *x509.CertPool) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	require.NoError(t, pki.Init(dir, "Vigil e2e CA", now))
	for _, c := range []struct {
		cn    string
		kind  pki.Kind
		hosts []string
	}{
		{"broker", pki.Server, []string{"127.0.0.1"}}, {e2eGatewayID, pki.Gateway, nil},
		{"btn-0001", pki.Device, nil}, {"btn-0002", pki.Device, nil},
	} {
		_, _, err := pki.Issue(dir, c.cn, c.kind, c.hosts, 0, now)
		require.NoError(t, err)
	}
	ca, err := pki.LoadCA(dir)
	require.NoError(t, err)
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return dir, roots
}

// deviceTLS is the TLS configuration of a device holding its certificate
// (none when id is empty).
func deviceTLS(t *testing.T, dir string, roots *x509.CertPool, id string) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if id != "" {
		pair, err := tls.LoadX509KeyPair(pki.Paths(dir, pki.Device, id))
		require.NoError(t, err)
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// startSiteMosquitto runs Mosquitto with the shipped deploy/mosquitto
// vigil.conf and vigil.acl, changed only where an installation differs: the
// listener on a free loopback port, the certificate, ACL and persistence
// paths, and the gateway id in the ACL. So the test checks what we ship,
// including allow_anonymous false (startMosquitto sets it true). extraACL is
// appended to the ACL (the benchmarks' probe clients). It returns the ssl://
// URL.
func startSiteMosquitto(t testing.TB, pkiDir string, extraACL ...string) string {
	t.Helper()
	addr := testnet.ClosedAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()

	acl, err := os.ReadFile("../../deploy/mosquitto/vigil.acl")
	require.NoError(t, err)
	require.Contains(t, string(acl), "\nuser GATEWAY_ID\n", "the ACL's placeholder for the installer")
	aclPath := filepath.Join(dir, "vigil.acl")
	require.NoError(t, os.WriteFile(aclPath, []byte(strings.Replace(string(acl), "\nuser GATEWAY_ID\n", "\nuser "+e2eGatewayID+"\n", 1)+strings.Join(extraACL, "")), 0o600))

	raw, err := os.ReadFile("../../deploy/mosquitto/vigil.conf")
	require.NoError(t, err)
	cert, key := pki.Paths(pkiDir, pki.Server, "broker")
	set := map[string]string{"listener": port + " 127.0.0.1", "cafile": pki.CAPath(pkiDir), "certfile": cert, "keyfile": key,
		"acl_file": aclPath, "persistence_location": dir + "/"}
	seen := map[string]bool{}
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) > 0 {
			if v, ok := set[f[0]]; ok {
				lines[i], seen[f[0]] = f[0]+" "+v, true
			}
		}
	}
	for k := range set {
		require.True(t, seen[k], "vigil.conf has no %s line", k)
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	// As in startMosquitto: run as the test's user, log problems to the test.
	extra := "\nuser root\nlog_dest stderr\nlog_type error\nlog_type warning\n"
	require.NoError(t, os.WriteFile(conf, []byte(strings.Join(lines, "\n")+extra), 0o600))
	runMosquitto(t, conf, addr)
	return "ssl://" + addr
}

// authWorld is a gateway behind a broker that authenticates by certificate.
type authWorld struct {
	pki    string
	roots  *x509.CertPool
	broker string // ssl:// URL devices use
	vigil  *proc
	arc    *arc
	state  string
	cfg    string
}

// startAuthWorld starts Vigil with btn-0001 and btn-0002 registered, behind
// Mosquitto ("mosquitto") or its own embedded broker in TLS mode ("embedded").
func startAuthWorld(t *testing.T, brokerKind string) *authWorld {
	t.Helper()
	w := &authWorld{state: t.TempDir(), arc: startARC(t, nil)}
	w.pki, w.roots = authPKI(t)
	addDevice(t, w.state, site, "btn-0001", "Nurse A")
	addDevice(t, w.state, site, "btn-0002", "Nurse B")
	gwCert, gwKey := pki.Paths(w.pki, pki.Gateway, e2eGatewayID)
	mqttTLS := fmt.Sprintf("  ca_file: %s\n  cert_file: %s\n  key_file: %s\n", pki.CAPath(w.pki), gwCert, gwKey)
	var cfg string
	switch brokerKind {
	case "mosquitto":
		w.broker = startSiteMosquitto(t, w.pki)
		cfg = "mqtt:\n  url: " + w.broker + "\n" + mqttTLS
	case "embedded":
		addr := testnet.ClosedAddr(t)
		w.broker = "ssl://" + addr
		srvCert, srvKey := pki.Paths(w.pki, pki.Server, "broker")
		cfg = fmt.Sprintf("broker:\n  listen: %s\n  tls_cert_file: %s\n  tls_key_file: %s\n  client_ca_file: %s\nmqtt:\n%s",
			addr, srvCert, srvKey, pki.CAPath(w.pki), mqttTLS)
	default:
		t.Fatalf("broker kind %q", brokerKind)
	}
	cfg += fmt.Sprintf("arc:\n  - url: %q\n", w.arc.url())
	w.cfg = filepath.Join(t.TempDir(), "vigil.yaml")
	require.NoError(t, os.WriteFile(w.cfg, []byte(cfg), 0o600))
	w.vigil = startVigil(t, w.state, "--config", w.cfg)
	return w
}

// button connects a simulated button holding certificate certID (usually
// its own) as device.
func (w *authWorld) button(t *testing.T, device, certID string) *firmwaresim.Button {
	t.Helper()
	b, err := firmwaresim.NewButton(firmwaresim.ButtonConfig{Broker: w.broker, Site: site, Device: device,
		TLS: deviceTLS(t, w.pki, w.roots, certID)})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, b.Connect(ctx))
	t.Cleanup(b.Close)
	return b
}

// duress presses b's button and waits for alert_received.
func duress(t *testing.T, b *firmwaresim.Button) firmwaresim.Press {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	press, err := b.Duress(ctx)
	require.NoError(t, err)
	_, err = b.WaitReceived(ctx, press.Seq)
	require.NoError(t, err, "alert_received for %s", press.ID)
	return press
}

// spoof publishes, as a client holding certID's certificate, a well-formed
// duress on victim's event topic, claiming to be victim. It returns once the
// broker has dealt with it: a PUBACK (Mosquitto acknowledges and drops what
// the ACL denies, under MQTT 3.1.1) or a dropped connection (mochi's answer).
func (w *authWorld) spoof(t *testing.T, certID, victim string, seq uint64) {
	t.Helper()
	lost := make(chan struct{})
	o := paho.NewClientOptions().AddBroker(w.broker).SetClientID("spoofer").SetTLSConfig(deviceTLS(t, w.pki, w.roots, certID)).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	defer c.Disconnect(0)
	payload := fmt.Sprintf(`{"v":1,"id":"spoof-%d","device":%q,"seq":%d,"type":"duress","ts":%q}`,
		seq, victim, seq, time.Now().UTC().Format(time.RFC3339))
	pub := c.Publish(devices.EventTopic(site, victim), 1, false, payload)
	select {
	case <-pub.Done():
		if err := pub.Error(); err != nil {
			// Refused: paho fails the publish when the broker hangs up.
			select {
			case <-lost:
			case <-time.After(10 * time.Second):
				t.Fatalf("spoofed publish failed without the broker refusing it: %v", err)
			}
		}
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker neither acknowledged nor refused the spoofed publish")
	}
}

// familyTotal sums every sample of a metric family in /metrics.
func familyTotal(t *testing.T, httpAddr, family string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	total := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, family+"{") || strings.HasPrefix(line, family+" ") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err)
			total += v
		}
	}
	return int(total)
}

// TestAuthDeviceCertificates: behind a broker that authenticates devices by
// certificate (Mosquitto with the shipped configuration, and Vigil's own
// embedded broker), a device with a valid certificate raises an alarm and
// gets alert_received; a device that publishes on another device's event
// topic is refused and Vigil never journals it; a client without a
// certificate cannot connect.
func TestAuthDeviceCertificates(t *testing.T) {
	for _, brokerKind := range []string{"mosquitto", "embedded"} {
		t.Run(brokerKind, func(t *testing.T) {
			w := startAuthWorld(t, brokerKind)

			// 1. A device with a valid certificate.
			btn1 := w.button(t, "btn-0001", "btn-0001")
			p1 := duress(t, btn1)

			// 2. btn-0002 raises an alarm in btn-0001's name, then a positive
			// control from btn-0002's own topic: once the control has been
			// journaled, the spoof would have been too.
			const spoofSeq = 4242424242
			w.spoof(t, "btn-0002", "btn-0001", spoofSeq)
			btn2 := w.button(t, "btn-0002", "btn-0002")
			p2 := duress(t, btn2)

			alerts := w.vigil.alerts(t)
			var keys []string
			for _, a := range alerts.Alerts {
				keys = append(keys, a.Key)
			}
			assert.ElementsMatch(t, []string{fmt.Sprintf("btn-0001:%d", p1.Seq), fmt.Sprintf("btn-0002:%d", p2.Seq)}, keys)
			assert.Equal(t, 2, metric(t, w.vigil.http, `vigil_events_total{source="mqtt",type="duress"}`), "two duress events journaled")
			assert.Equal(t, 2, familyTotal(t, w.vigil.http, "vigil_events_total"))
			assert.Zero(t, familyTotal(t, w.vigil.http, "vigil_events_rejected_total"), "the spoof never reached Vigil, not even its quarantine")
			assert.Equal(t, map[string]int{"001": 1, "002": 1}, w.arc.alarms(), "the ARC got the two real alarms only")

			// 3. No certificate, no connection.
			o := paho.NewClientOptions().AddBroker(w.broker).SetClientID("anonymous").
				SetTLSConfig(deviceTLS(t, w.pki, w.roots, "")).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
			c := paho.NewClient(o)
			tok := c.Connect()
			require.True(t, tok.WaitTimeout(10*time.Second))
			require.Error(t, tok.Error(), "a client without a certificate connected")
			assert.False(t, c.IsConnected())

		})
	}
}

// TestAuthMosquittoSessionIsBoundToIdentity: with the shipped Mosquitto
// configuration, a device that connects with the gateway's client id while
// the gateway is down cannot take over the gateway's session: the alarm
// queued in it reaches Vigil when Vigil returns (without
// use_username_as_clientid it is lost: Mosquitto hands the session to the
// device and then drops the message on the ACL check).
func TestAuthMosquittoSessionIsBoundToIdentity(t *testing.T) {
	w := startAuthWorld(t, "mosquitto")
	btn1 := w.button(t, "btn-0001", "btn-0001")
	duress(t, btn1) // Vigil's persistent session exists and is subscribed
	w.vigil.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	press, err := btn1.Duress(ctx)
	require.NoError(t, err)
	require.NoError(t, btn1.Flush(ctx), "the broker holds the duress for the absent gateway")

	o := paho.NewClientOptions().AddBroker(w.broker).SetClientID(e2eGatewayID).SetCleanSession(false).
		SetTLSConfig(deviceTLS(t, w.pki, w.roots, "btn-0002")).SetAutoReconnect(false)
	thief := paho.NewClient(o)
	tok := thief.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	assert.False(t, tok.(*paho.ConnectToken).SessionPresent(), "the device was given the gateway's session")
	thief.Disconnect(100)

	w.vigil = startVigil(t, w.state, "--config", w.cfg)
	_, err = btn1.WaitReceived(ctx, press.Seq)
	require.NoError(t, err, "the alarm queued while the gateway was away was lost")
}
