package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/internal/ratelog"
)

// serverTLS is the listener's TLS configuration: the broker's own
// certificate, and client certificates required and verified against the
// site CA (a certificate for client authentication, within its validity).
func serverTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: tls_cert_file/tls_key_file: %w", err)
	}
	pem, err := os.ReadFile(cfg.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("broker: client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("broker: client_ca_file %s has no PEM certificates", cfg.ClientCAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// certAuth is the broker's authentication and authorisation when clients
// present certificates. A client is who its verified certificate's common
// name says: the MQTT username cannot choose another identity, and the
// session (client id) is bound to that identity, so one device cannot take
// over the gateway's persistent session and the alarms queued in it. The
// access rules are those of deploy/mosquitto/vigil.acl:
//
//	the gateway  reads vigil/v1/+/+/event   and writes vigil/v1/+/+/cmd
//	device ID    writes vigil/v1/+/ID/event and reads  vigil/v1/+/ID/cmd
//
// and nothing else, for anyone.
type certAuth struct {
	mqtt.HookBase
	gateway string
	log     *slog.Logger
	limit   *ratelog.Limiter
}

func newCertAuth(gateway string, log *slog.Logger) *certAuth {
	return &certAuth{gateway: gateway, log: log, limit: ratelog.New(time.Minute, time.Now)}
}

// ID names the hook in mochi's logs.
func (h *certAuth) ID() string { return "vigil-cert-auth" }

// Provides says which hook methods mochi should call.
func (h *certAuth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// errNoIdentity is why a connection without a usable certificate is refused.
var errNoIdentity = errors.New("broker: no verified client certificate")

// identity is the verified client certificate's common name.
func identity(conn net.Conn) (string, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return "", errNoIdentity
	}
	// mochi has already read the CONNECT packet through this connection, so
	// the handshake (and with it the certificate verification) is done.
	cs := tc.ConnectionState()
	if !cs.HandshakeComplete || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", errNoIdentity
	}
	cn := cs.PeerCertificates[0].Subject.CommonName
	if !devices.ValidID(cn) {
		return "", fmt.Errorf("broker: certificate common name %q is not a valid device or gateway id", clip(cn))
	}
	return cn, nil
}

// OnConnectAuthenticate admits a client whose certificate names a valid id,
// whose username (if any) is that id, and whose will message (if any) goes
// to a topic it may publish to: mochi would publish a will without asking
// OnACLCheck (Mosquitto accepts such a will and drops it when it fires). It
// then binds the client id to the identity, as Mosquitto's
// use_username_as_clientid does.
func (h *certAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	id, err := identity(cl.Net.Conn)
	if err != nil {
		host, _, _ := net.SplitHostPort(cl.Net.Remote)
		h.deny("connect:"+host, "connection refused", "remote", cl.Net.Remote, "err", err)
		return false
	}
	if u := string(pk.Connect.Username); u != "" && u != id {
		h.deny("connect:"+id, "connection refused: username differs from certificate",
			"identity", id, "username", clip(u), "remote", cl.Net.Remote)
		return false
	}
	if pk.Connect.WillFlag && !h.allowed(id, pk.Connect.WillTopic, true) {
		h.deny("will:"+id, "connection refused: will message to a topic the client may not publish to",
			"identity", id, "topic", clip(pk.Connect.WillTopic))
		return false
	}
	// The client is not yet visible to any other goroutine of the broker:
	// mochi takes over a session by cl.ID right after this hook returns.
	cl.ID = id
	cl.Properties.Username = []byte(id)
	return true
}

// OnACLCheck is asked for every publish (write, a topic name), subscribe
// (read, a filter) and delivery (read, a topic name). The identity is the
// client id, which OnConnectAuthenticate set from the certificate; sessions
// restored from the store keep the client id they had.
func (h *certAuth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.allowed(cl.ID, topic, write) {
		return true
	}
	op := "read"
	if write {
		op = "write"
	}
	h.deny(op+":"+cl.ID, "access refused", "identity", cl.ID, "op", op, "topic", clip(topic))
	return false
}

// allowed applies the access rules to a topic name or filter.
func (h *certAuth) allowed(id, topic string, write bool) bool {
	if !devices.ValidID(id) {
		return false
	}
	var pattern string
	switch {
	case id == h.gateway && write:
		pattern = devices.CommandTopic("+", "+")
	case id == h.gateway:
		pattern = devices.EventFilter
	case write:
		pattern = devices.EventTopic("+", id)
	default:
		pattern = devices.CommandTopic("+", id)
	}
	return within(topic, pattern)
}

// within reports whether every topic that filter matches is matched by
// pattern, a filter whose only wildcards are single levels ("+"). A topic
// name is a filter that matches itself. "#" is never within such a pattern,
// and neither is a shared subscription ($share/…) or a system topic ($SYS/…),
// whose first level is never "vigil".
func within(filter, pattern string) bool {
	f, p := strings.Split(filter, "/"), strings.Split(pattern, "/")
	if len(f) != len(p) {
		return false
	}
	for i := range p {
		switch {
		case f[i] == "#":
			return false
		case p[i] == "+":
		case f[i] != p[i]: // a "+" in the filter is wider than a literal
			return false
		}
	}
	return true
}

// deny logs a refusal at most once a minute per key, so a misbehaving or
// hostile client cannot flood the log.
func (h *certAuth) deny(key, msg string, args ...any) {
	if h.limit.Allow(key) {
		h.log.Warn(msg, args...)
	}
}

// clip bounds client-chosen text before it is logged.
func clip(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
