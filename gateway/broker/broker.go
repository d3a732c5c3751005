// Package broker runs the embedded MQTT broker (mochi-mqtt) that lets Vigil
// work on a fresh machine with nothing else installed. Vigil itself always
// talks to it as an ordinary MQTT client, exactly as it would to Mosquitto.
//
// Sessions and in-flight messages are kept in a bbolt file in the state
// directory, so an event the broker accepted from a device but Vigil had not
// yet acknowledged survives a restart of the gateway process.
//
// Without TLS credentials the broker lets any client do anything, and listens
// on loopback by default. With them (Config.CertFile, KeyFile, ClientCAFile,
// usually made with `vigil pki`), the listener speaks TLS only, every client
// must present a certificate signed by the site CA, and a client may only
// publish and subscribe as the device or gateway its certificate names (see
// certAuth in auth.go): nobody on the network can raise or cancel an alarm as
// someone else.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/listeners"
	bbolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
)

// Config says where the broker listens and where it keeps its sessions.
type Config struct {
	Addr      string // e.g. 127.0.0.1:1883
	StorePath string // bbolt file for sessions; "" keeps them in memory only
	Logger    *slog.Logger

	// CertFile and KeyFile are the broker's server certificate and key (PEM),
	// and ClientCAFile the CA that signs client certificates. Set all three
	// for a TLS listener that authenticates clients by certificate; leave
	// all three empty for plain TCP without authentication.
	CertFile, KeyFile, ClientCAFile string
	// GatewayID is the identity (certificate common name) that may read
	// every device's events and send every device commands. Required with
	// TLS.
	GatewayID string
}

// tls reports whether cfg asks for a TLS listener, and whether it says
// enough for one.
func (cfg Config) tls() (bool, error) {
	set := 0
	for _, f := range []string{cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile} {
		if f != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return false, nil
	case set < 3:
		return false, errors.New("broker: tls_cert_file, tls_key_file and client_ca_file go together: set all three for client certificates, or none")
	case !devices.ValidID(cfg.GatewayID):
		return false, fmt.Errorf("broker: gateway id %q is not a valid id: it is the identity allowed to read events", cfg.GatewayID)
	}
	return true, nil
}

// Broker is a running embedded broker.
type Broker struct {
	srv    *mqtt.Server
	tcp    *listener
	scheme string // tcp or ssl
	close  sync.Once
	err    error
}

// Start opens the listener and begins serving.
func Start(cfg Config) (*Broker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	useTLS, err := cfg.tls()
	if err != nil {
		return nil, err
	}
	log = log.With("component", "broker")
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Logger:       log,
	})
	lcfg := listeners.Config{ID: "tcp", Address: cfg.Addr}
	scheme := "tcp"
	if useTLS {
		if lcfg.TLSConfig, err = serverTLS(cfg); err != nil {
			return nil, err
		}
		lcfg.ID, scheme = "tls", "ssl"
		// The only authentication hook: mochi admits a client if any hook
		// says yes, so the allow-all hook must not be added next to it.
		if err := srv.AddHook(newCertAuth(cfg.GatewayID, log), nil); err != nil {
			return nil, fmt.Errorf("broker: auth hook: %w", err)
		}
	} else if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		// Without certificates nobody can be told apart: allow all, and
		// listen on loopback by default.
		return nil, fmt.Errorf("broker: auth hook: %w", err)
	}
	if cfg.StorePath != "" {
		if err := srv.AddHook(new(bolt.Hook), &bolt.Options{Path: cfg.StorePath, Options: &bbolt.Options{Timeout: 0}}); err != nil {
			return nil, fmt.Errorf("broker: session store %s: %w", cfg.StorePath, err)
		}
	}
	tcp := newListener(lcfg.ID, lcfg.Address, lcfg.TLSConfig)
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", cfg.Addr, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return &Broker{srv: srv, tcp: tcp, scheme: scheme}, nil
}

// Addr is the address the broker listens on (useful with port 0).
func (b *Broker) Addr() string { return b.tcp.Address() }

// URL is how a client on this machine reaches the broker: tcp://host:port,
// or ssl://host:port with TLS. A wildcard listen address (0.0.0.0, ::)
// becomes 127.0.0.1, so that the broker's certificate must name loopback
// rather than "0.0.0.0".
func (b *Broker) URL() string {
	addr := b.Addr()
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return b.scheme + "://" + addr
}

// Run waits for ctx, then closes the broker.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	return b.Close()
}

// Close stops the broker and its listener; later calls do nothing.
func (b *Broker) Close() error {
	b.close.Do(func() { b.err = b.srv.Close() })
	return b.err
}
