package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/pki"
)

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		filter, pattern string
		want            bool
	}{
		{"vigil/v1/demo/btn-1/event", "vigil/v1/+/btn-1/event", true},
		{"vigil/v1/+/btn-1/event", "vigil/v1/+/btn-1/event", true},
		{"vigil/v1/demo/btn-2/event", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1/demo/+/event", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1/demo/#", "vigil/v1/+/btn-1/event", false},
		{"#", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1/demo/btn-1/event/x", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1/demo/x/btn-1/event", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1/btn-1/event", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1/demo/btn-1/cmd", "vigil/v1/+/btn-1/event", false},
		{"vigil/v1//btn-1/event", "vigil/v1/+/btn-1/event", true}, // an empty level is a level, as in MQTT
		{"vigil/v1/+/+/event", "vigil/v1/+/+/event", true},
		{"vigil/v1/demo/+/event", "vigil/v1/+/+/event", true},
		{"vigil/v1/+/+/+", "vigil/v1/+/+/event", false},
		{"$share/g/vigil/v1/+/+/event", "vigil/v1/+/+/event", false},
		{"$SYS/broker/clients", "vigil/v1/+/+/event", false},
		{"", "vigil/v1/+/+/event", false},
	} {
		assert.Equal(t, tc.want, within(tc.filter, tc.pattern), "%q within %q", tc.filter, tc.pattern)
	}
}

func TestAllowed(t *testing.T) {
	h := newCertAuth("vigil-gw", discard())
	const read, write = false, true
	for _, tc := range []struct {
		id, topic string
		write     bool
		want      bool
	}{
		{"btn-1", "vigil/v1/demo/btn-1/event", write, true},
		{"btn-1", "vigil/v1/other-site/btn-1/event", write, true},
		{"btn-1", "vigil/v1/demo/btn-2/event", write, false},
		{"btn-1", "vigil/v1/demo/btn-1/event", read, false},
		{"btn-1", "vigil/v1/demo/btn-1/cmd", read, true},
		{"btn-1", "vigil/v1/+/btn-1/cmd", read, true},
		{"btn-1", "vigil/v1/demo/btn-1/cmd", write, false},
		{"btn-1", "vigil/v1/demo/btn-2/cmd", read, false},
		{"btn-1", "vigil/v1/+/+/cmd", read, false},
		{"btn-1", "vigil/v1/+/+/event", read, false},
		{"btn-1", "#", read, false},
		{"vigil-gw", "vigil/v1/+/+/event", read, true},
		{"vigil-gw", "vigil/v1/demo/btn-1/event", read, true},
		{"vigil-gw", "vigil/v1/demo/btn-1/cmd", write, true},
		{"vigil-gw", "vigil/v1/demo/btn-1/event", write, false},
		{"vigil-gw", "vigil/v1/demo/btn-1/cmd", read, false},
		{"vigil-gw", "vigil/v1/#", read, false},
		{"vigil-gw", "$SYS/#", read, false},
		{"", "vigil/v1/demo//event", write, false},
		{"+", "vigil/v1/demo/+/event", write, false},
	} {
		assert.Equal(t, tc.want, h.allowed(tc.id, tc.topic, tc.write), "%s write=%v %s", tc.id, tc.write, tc.topic)
	}
}

// site is a CA with certificates for a gateway, two devices and the broker,
// and an embedded broker in TLS mode using them.
type site struct {
	dir    string
	roots  *x509.CertPool
	broker *Broker
}

const gatewayID = "vigil-gw"

func startSite(t *testing.T) *site {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	require.NoError(t, pki.Init(dir, "test CA", now))
	for _, c := range []struct {
		cn    string
		kind  pki.Kind
		hosts []string
	}{
		{gatewayID, pki.Gateway, nil}, {"btn-1", pki.Device, nil}, {"btn-2", pki.Device, nil},
		{"broker", pki.Server, []string{"127.0.0.1"}},
	} {
		_, _, err := pki.Issue(dir, c.cn, c.kind, c.hosts, 0, now)
		require.NoError(t, err)
	}
	certFile, keyFile := pki.Paths(dir, pki.Server, "broker")
	b, err := Start(Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: pki.CAPath(dir), GatewayID: gatewayID,
		StorePath: filepath.Join(t.TempDir(), "broker.db")})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	ca, err := pki.LoadCA(dir)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &site{dir: dir, roots: roots, broker: b}
}

// tlsFor is a client TLS configuration with the certificate of cn (none if
// cn is empty).
func (s *site) tlsFor(t *testing.T, kind pki.Kind, cn string) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
	if cn != "" {
		pair, err := tls.LoadX509KeyPair(pki.Paths(s.dir, kind, cn))
		require.NoError(t, err)
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// client is one paho connection; lost is closed when the broker drops it.
type client struct {
	paho.Client
	sessionPresent bool // from the CONNACK
	lost           chan struct{}
	mu             sync.Mutex
	got            []string // "topic payload" of every message received
}

func (c *client) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func (c *client) onMessage(_ paho.Client, m paho.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, m.Topic()+" "+string(m.Payload()))
}

// connect opens a connection to the broker with tc; it returns the CONNECT
// error, if any.
func (s *site) connect(t *testing.T, tc *tls.Config, clientID string, opt ...func(*paho.ClientOptions)) (*client, error) {
	t.Helper()
	c := &client{lost: make(chan struct{})}
	var once sync.Once
	o := paho.NewClientOptions().AddBroker(s.broker.URL()).SetClientID(clientID).SetTLSConfig(tc).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(c.onMessage).
		SetConnectionLostHandler(func(paho.Client, error) { once.Do(func() { close(c.lost) }) })
	for _, f := range opt {
		f(o)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	c.sessionPresent = tok.(*paho.ConnectToken).SessionPresent()
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func (s *site) mustConnect(t *testing.T, kind pki.Kind, cn string, opt ...func(*paho.ClientOptions)) *client {
	t.Helper()
	c, err := s.connect(t, s.tlsFor(t, kind, cn), cn, opt...)
	require.NoError(t, err, "connect as %s", cn)
	return c
}

func (c *client) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, nil)
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (c *client) publish(t *testing.T, topic, payload string) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	require.True(t, tok.WaitTimeout(5*time.Second), "PUBACK for %s", topic)
	require.NoError(t, tok.Error())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 5*time.Millisecond, "waiting for %s", what)
}

// The three checks: a device with a valid certificate reaches the gateway
// (and its commands reach it); a device publishing on another device's topic
// is refused; a client without a certificate cannot connect.
func TestCertificateAuthentication(t *testing.T) {
	s := startSite(t)
	assert.True(t, strings.HasPrefix(s.broker.URL(), "ssl://127.0.0.1:"), s.broker.URL())
	gw := s.mustConnect(t, pki.Gateway, gatewayID)
	require.Equal(t, byte(1), gw.subscribe(t, devices.EventFilter))

	btn1 := s.mustConnect(t, pki.Device, "btn-1")
	require.Equal(t, byte(1), btn1.subscribe(t, "vigil/v1/+/btn-1/cmd"))
	btn1.publish(t, devices.EventTopic("demo", "btn-1"), "duress-1")
	waitFor(t, "the gateway to get btn-1's event", func() bool { return len(gw.messages()) == 1 })
	gw.publish(t, devices.CommandTopic("demo", "btn-1"), "alert_received")
	waitFor(t, "btn-1 to get its command", func() bool { return len(btn1.messages()) == 1 })
	assert.Equal(t, []string{"vigil/v1/demo/btn-1/cmd alert_received"}, btn1.messages())

	// btn-2 raises an alarm as btn-1: MQTT 3.1.1 has no negative PUBACK, so
	// the broker drops the connection, and nothing reaches the gateway.
	btn2 := s.mustConnect(t, pki.Device, "btn-2")
	btn2.Publish(devices.EventTopic("demo", "btn-1"), 1, false, "spoofed")
	select {
	case <-btn2.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a spoofing device stays connected")
	}
	// Positive control, published after the spoof: once it has arrived, the
	// spoof would have too.
	btn1.publish(t, devices.EventTopic("demo", "btn-1"), "duress-2")
	waitFor(t, "the positive control", func() bool { return len(gw.messages()) == 2 })
	assert.Equal(t, []string{"vigil/v1/demo/btn-1/event duress-1", "vigil/v1/demo/btn-1/event duress-2"}, gw.messages())

	_, err := s.connect(t, s.tlsFor(t, "", ""), "anon")
	require.Error(t, err, "no certificate, no connection")
	assert.Contains(t, err.Error(), "certificate required")
}

func TestRefusedClients(t *testing.T) {
	s := startSite(t)
	other := filepath.Join(t.TempDir(), "other")
	require.NoError(t, pki.Init(other, "another site", time.Now()))
	_, _, err := pki.Issue(other, "btn-1", pki.Device, nil, 0, time.Now())
	require.NoError(t, err)
	foreign, err := tls.LoadX509KeyPair(pki.Paths(other, pki.Device, "btn-1"))
	require.NoError(t, err)
	server, err := tls.LoadX509KeyPair(pki.Paths(s.dir, pki.Server, "broker"))
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		tls  *tls.Config
		opt  func(*paho.ClientOptions)
	}{
		{name: "no certificate", tls: s.tlsFor(t, "", "")},
		{name: "another site's CA", tls: &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{foreign}}},
		{name: "a server certificate", tls: &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{server}}},
		{name: "username of another device", tls: s.tlsFor(t, pki.Device, "btn-1"),
			opt: func(o *paho.ClientOptions) { o.SetUsername("btn-2").SetPassword("x") }},
		{name: "username of the gateway", tls: s.tlsFor(t, pki.Device, "btn-1"),
			opt: func(o *paho.ClientOptions) { o.SetUsername(gatewayID) }},
		{name: "will on another device's topic", tls: s.tlsFor(t, pki.Device, "btn-1"),
			opt: func(o *paho.ClientOptions) { o.SetWill(devices.EventTopic("demo", "btn-2"), "spoof", 1, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*paho.ClientOptions)
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			_, err := s.connect(t, tc.tls, "c-"+strings.ReplaceAll(tc.name, " ", "-"), opts...)
			require.Error(t, err)
		})
	}

	t.Run("username equal to the certificate", func(t *testing.T) {
		c := s.mustConnect(t, pki.Device, "btn-1", func(o *paho.ClientOptions) { o.SetUsername("btn-1") })
		c.publish(t, devices.EventTopic("demo", "btn-1"), "ok")
	})
	t.Run("will on its own topic", func(t *testing.T) {
		s.mustConnect(t, pki.Device, "btn-2", func(o *paho.ClientOptions) {
			o.SetWill(devices.EventTopic("demo", "btn-2"), "gone", 1, false)
		})
	})
}

// A device cannot widen its subscriptions to other devices' events or
// commands, whatever filter it asks for.
func TestDeviceSubscriptionsAreOwnCommandsOnly(t *testing.T) {
	s := startSite(t)
	btn1 := s.mustConnect(t, pki.Device, "btn-1")
	for _, f := range []string{"#", "vigil/v1/#", devices.EventFilter, "vigil/v1/+/+/cmd", "vigil/v1/demo/btn-2/cmd", "$SYS/#", "vigil/v1/+/btn-1/event"} {
		assert.Equal(t, byte(0x80), btn1.subscribe(t, f), "SUBACK failure for %s", f)
	}
	require.Equal(t, byte(1), btn1.subscribe(t, "vigil/v1/demo/btn-1/cmd"))
	gw := s.mustConnect(t, pki.Gateway, gatewayID)
	gw.publish(t, devices.CommandTopic("demo", "btn-2"), "for btn-2")
	gw.publish(t, devices.CommandTopic("demo", "btn-1"), "for btn-1")
	waitFor(t, "btn-1's own command", func() bool { return len(btn1.messages()) > 0 })
	assert.Equal(t, []string{"vigil/v1/demo/btn-1/cmd for btn-1"}, btn1.messages())

	// The gateway cannot raise device events itself either.
	gw.Publish(devices.EventTopic("demo", "btn-1"), 1, false, "forged")
	select {
	case <-gw.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway may publish device events")
	}
}

// A device that connects with the gateway's client id gets a session of its
// own: it can neither take over the gateway's persistent session (and the
// alarms queued in it while the gateway is away) nor push the gateway off.
func TestSessionBoundToIdentity(t *testing.T) {
	s := startSite(t)
	persistent := func(o *paho.ClientOptions) { o.SetCleanSession(false) }
	gw := s.mustConnect(t, pki.Gateway, gatewayID, persistent)
	require.Equal(t, byte(1), gw.subscribe(t, devices.EventFilter))
	gw.Disconnect(100)

	btn1 := s.mustConnect(t, pki.Device, "btn-1")
	btn1.publish(t, devices.EventTopic("demo", "btn-1"), "queued duress")

	thief, err := s.connect(t, s.tlsFor(t, pki.Device, "btn-2"), gatewayID, persistent)
	require.NoError(t, err)
	assert.False(t, thief.sessionPresent, "the device got the gateway's session")
	thief.Disconnect(100)

	gw, err = s.connect(t, s.tlsFor(t, pki.Gateway, gatewayID), gatewayID, persistent)
	require.NoError(t, err)
	assert.True(t, gw.sessionPresent)
	waitFor(t, "the queued alarm", func() bool { return len(gw.messages()) == 1 })

	thief, err = s.connect(t, s.tlsFor(t, pki.Device, "btn-2"), gatewayID, persistent)
	require.NoError(t, err)
	btn1.publish(t, devices.EventTopic("demo", "btn-1"), "live duress")
	waitFor(t, "the live alarm", func() bool { return len(gw.messages()) == 2 })
	assert.Equal(t, []string{"vigil/v1/demo/btn-1/event queued duress", "vigil/v1/demo/btn-1/event live duress"}, gw.messages())
	select {
	case <-gw.lost:
		t.Fatal("a device connecting with the gateway's client id pushed the gateway off")
	default:
	}
	assert.Empty(t, thief.messages())
}

func TestStartConfig(t *testing.T) {
	s := startSite(t)
	cert, key := pki.Paths(s.dir, pki.Server, "broker")
	ca := pki.CAPath(s.dir)
	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"cert without CA":   {Config{CertFile: cert, KeyFile: key, GatewayID: gatewayID}, "go together"},
		"CA only":           {Config{ClientCAFile: ca, GatewayID: gatewayID}, "go together"},
		"no gateway id":     {Config{CertFile: cert, KeyFile: key, ClientCAFile: ca}, "gateway id"},
		"missing cert file": {Config{CertFile: cert + ".x", KeyFile: key, ClientCAFile: ca, GatewayID: gatewayID}, "tls_cert_file"},
		"CA file not PEM":   {Config{CertFile: cert, KeyFile: key, ClientCAFile: empty, GatewayID: gatewayID}, "no PEM certificates"},
		"missing CA file":   {Config{CertFile: cert, KeyFile: key, ClientCAFile: ca + ".x", GatewayID: gatewayID}, "client_ca_file"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Addr = "127.0.0.1:0"
			_, err := Start(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("wildcard address", func(t *testing.T) {
		b, err := Start(Config{Addr: "0.0.0.0:0", CertFile: cert, KeyFile: key, ClientCAFile: ca, GatewayID: gatewayID})
		require.NoError(t, err)
		defer b.Close()
		assert.Regexp(t, `^ssl://127\.0\.0\.1:\d+$`, b.URL())
	})
}

// Without TLS credentials the broker stays as it was: plain TCP, anyone may
// do anything.
func TestPlainBrokerAllowsAll(t *testing.T) {
	b, err := Start(Config{Addr: "127.0.0.1:0"})
	require.NoError(t, err)
	defer b.Close()
	assert.Equal(t, "tcp://"+b.Addr(), b.URL())
	o := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("anyone").SetAutoReconnect(false)
	var mu sync.Mutex
	var got []string
	o.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Topic())
	})
	c := paho.NewClient(o)
	require.True(t, c.Connect().WaitTimeout(5*time.Second))
	defer c.Disconnect(0)
	tok := c.Subscribe("#", 1, nil)
	require.True(t, tok.WaitTimeout(5*time.Second))
	assert.Equal(t, byte(1), tok.(*paho.SubscribeToken).Result()["#"])
	for i := range 2 {
		require.True(t, c.Publish(fmt.Sprintf("vigil/v1/demo/btn-%d/event", i), 1, false, "x").WaitTimeout(5*time.Second))
	}
	waitFor(t, "both messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
