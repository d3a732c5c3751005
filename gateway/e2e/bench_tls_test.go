package e2e

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/pki"
)

// Client certificates of the Mosquitto probe in the TLS benchmark. The
// shipped ACL grants nothing outside vigil/v1/…, so the benchmark adds
// benchProbeACL for them; use_username_as_clientid makes each certificate's
// common name its client id, so publisher and subscriber need one each.
const (
	benchProbePub = "bench-probe-pub"
	benchProbeSub = "bench-probe-sub"
	benchProbeACL = "\n# Added by the TLS benchmark for its Mosquitto probe.\n" +
		"user " + benchProbePub + "\ntopic write vigil-bench/#\n" +
		"user " + benchProbeSub + "\ntopic read vigil-bench/#\n"
)

// BenchmarkE2ETLSDuressLatency is BenchmarkE2EDuressLatency over TLS with
// client certificates, as a site is meant to be set up: Mosquitto runs the
// shipped deploy/mosquitto/vigil.conf and vigil.acl (TLS listener,
// require_certificate, identity as username and client id, the ACL, and
// persistence with autosave_interval 1), with certificates from a site CA
// made by devices/pki as `vigil pki` makes them. The gateway connects with
// ssl:// and its own certificate; each of the 1,000 buttons has its own
// certificate and connection, heartbeats over it every 10 s, and its duress
// presses go over it too (the ACL lets a device publish only on its own event
// topic). The Mosquitto probe's publisher and subscriber also connect over TLS
// with certificates of their own. Target as for the plain benchmark: Vigil
// p99 ≤ 2 × Mosquitto p99 + one fsync (median), both measured in this run.
//
//	VIGIL_E2E_BENCH=1 go test -run='^$' -bench=E2ETLSDuressLatency -benchtime=1x -timeout 20m ./gateway/e2e/
func BenchmarkE2ETLSDuressLatency(b *testing.B) {
	skipUnlessE2EBench(b)
	n := envInt(b, "VIGIL_BENCH_PRESSES", benchPresses)
	bin := buildBenchVigil(b)
	state := b.TempDir()
	zones := benchRegister(b, state)
	ids := make([]string, 0, benchButtons)
	for i := 1; i <= benchButtons; i++ {
		ids = append(ids, deviceID(i))
	}
	pkiDir, roots := benchPKI(b, ids)
	broker := startSiteMosquitto(b, pkiDir, benchProbeACL)

	frames := newZoneMatcher()
	arcURL := startBenchARC(b, frames.onFrame)
	gwCert, gwKey := pki.Paths(pkiDir, pki.Gateway, e2eGatewayID)
	cfg := filepath.Join(b.TempDir(), "vigil.yaml")
	require.NoError(b, os.WriteFile(cfg, []byte(fmt.Sprintf("mqtt:\n  url: %s\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\narc:\n  - url: %q\n",
		broker, pki.CAPath(pkiDir), gwCert, gwKey, arcURL)), 0o600))
	v := startVigilBin(b, bin, state, "--config", cfg)

	fleet := startTLSFleet(b, broker, pkiDir, roots, ids)
	pr := startProbeWith(b, n, func(id string) paho.Client { return tlsClient(b, broker, pkiDir, roots, id) })
	what := fmt.Sprintf("broker %s with client certificates (shipped vigil.conf, nodelay)", tlsVersion(b, broker, pkiDir, roots))
	measureDuressLatency(b, duressRun{
		what: what, n: n, state: state, zones: zones, frames: frames, vigil: v, probe: pr,
		background: fleet.published.Load,
		publish: func(dev int, payload []byte) paho.Token {
			return fleet.clients[dev-1].Publish(devices.EventTopic(deviceSite(dev), deviceID(dev)), 1, false, payload)
		},
	})
}

// benchPKI makes a site CA with devices/pki and issues the broker's server
// certificate for 127.0.0.1, the gateway's, the probe's two and one for
// each device.
func benchPKI(b *testing.B, devices []string) (dir string, roots *x509.CertPool) {
	b.Helper()
	dir = filepath.Join(b.TempDir(), "pki")
	now := time.Now()
	require.NoError(b, pki.Init(dir, "Vigil bench CA", now))
	issue := func(cn string, kind pki.Kind, hosts []string) error {
		_, _, err := pki.Issue(dir, cn, kind, hosts, 0, now)
		return err
	}
	require.NoError(b, issue("broker", pki.Server, []string{"127.0.0.1"}))
	require.NoError(b, issue(e2eGatewayID, pki.Gateway, nil))
	var g errgroup.Group
	g.SetLimit(4) // each issue fsyncs its files
	for _, cn := range append([]string{benchProbePub, benchProbeSub}, devices...) {
		g.Go(func() error { return issue(cn, pki.Device, nil) })
	}
	require.NoError(b, g.Wait())
	ca, err := pki.LoadCA(dir)
	require.NoError(b, err)
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return dir, roots
}

// tlsConfig is the TLS configuration of a client holding the device
// certificate cn.
func tlsConfig(b *testing.B, dir string, roots *x509.CertPool, cn string) *tls.Config {
	b.Helper()
	pair, err := tls.LoadX509KeyPair(pki.Paths(dir, pki.Device, cn))
	require.NoError(b, err)
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
}

// tlsVersion is the TLS version the broker at the ssl:// URL negotiates with
// a client holding the probe's certificate, e.g. "TLS 1.3".
func tlsVersion(b *testing.B, broker, dir string, roots *x509.CertPool) string {
	b.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(broker, "ssl://"), tlsConfig(b, dir, roots, benchProbePub))
	require.NoError(b, err)
	defer c.Close()
	return tls.VersionName(c.ConnectionState().Version)
}

// tlsClient connects a plain MQTT client over TLS with certificate cn
// (Mosquitto makes cn its client id).
func tlsClient(b *testing.B, broker, dir string, roots *x509.CertPool, cn string) paho.Client {
	b.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(cn).SetCleanSession(true).
		SetTLSConfig(tlsConfig(b, dir, roots, cn)).SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).SetKeepAlive(30 * time.Second))
	tok := c.Connect()
	require.True(b, tok.WaitTimeout(10*time.Second), "connect %s", cn)
	require.NoError(b, tok.Error(), "connect %s", cn)
	b.Cleanup(func() { c.Disconnect(250) })
	return c
}

// tlsFleet is benchButtons devices, each with its own certificate and TLS
// connection, subscribed to its command topic as a button is, heartbeating
// every benchHeartbeat: one device every benchHeartbeat/benchButtons, in
// turn, so about 100 events/s. (firmwaresim.Fleet gives every button the
// same TLS configuration, so it cannot hold one certificate per device.)
type tlsFleet struct {
	clients   []paho.Client // device i+1's
	published atomic.Uint64
}

func startTLSFleet(b *testing.B, broker, dir string, roots *x509.CertPool, ids []string) *tlsFleet {
	b.Helper()
	f := &tlsFleet{clients: make([]paho.Client, len(ids))}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(16) // as firmwaresim.Fleet: do not storm the broker with handshakes
	for i, id := range ids {
		cfg := tlsConfig(b, dir, roots, id)
		g.Go(func() error {
			c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true).
				SetTLSConfig(cfg).SetAutoReconnect(false).SetConnectTimeout(20 * time.Second).
				SetWriteTimeout(10 * time.Second).SetKeepAlive(60 * time.Second))
			if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				return fmt.Errorf("connect %s: %v", id, tok.Error())
			}
			mu.Lock()
			f.clients[i] = c
			mu.Unlock()
			tok := c.Subscribe(devices.CommandTopic(deviceSite(i+1), id), 1, func(paho.Client, paho.Message) {})
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				return fmt.Errorf("subscribe %s: %v", id, tok.Error())
			}
			return nil
		})
	}
	err := g.Wait()
	b.Cleanup(func() {
		for _, c := range f.clients {
			if c != nil {
				c.Disconnect(0)
			}
		}
	})
	require.NoError(b, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Heartbeat seqs start far above the duress presses' 1, 2, … so
		// that no (device, seq) repeats.
		seqs := make([]uint64, len(ids))
		t := time.NewTicker(benchHeartbeat / time.Duration(len(ids)))
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			i := k % len(ids)
			seqs[i]++
			battery := 87
			p, err := devices.Encode(devices.Event{V: devices.Version, ID: crand.Text(), Device: ids[i], Seq: 1_000_000 + seqs[i],
				Type: devices.TypeHeartbeat, TS: time.Now().UTC().Truncate(time.Millisecond),
				Loc: &devices.Location{Lat: 53.8008, Lon: -1.5491, AccM: 8}, Battery: &battery})
			if err != nil {
				panic(err) // a fixed, valid event: cannot happen
			}
			f.clients[i].Publish(devices.EventTopic(deviceSite(i+1), ids[i]), 1, false, p)
			f.published.Add(1)
		}
	}()
	b.Cleanup(func() { cancel(); <-done })
	return f
}
