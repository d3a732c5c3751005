// Package broker runs the embedded MQTT broker (mochi-mqtt) that lets Vigil
// work on a fresh machine with nothing else installed. Vigil itself always
// talks to it as an ordinary MQTT client, exactly as it would to Mosquitto.
//
// Sessions and in-flight messages are kept in a bbolt file in the state
// directory, so an event the broker accepted from a device but Vigil had not
// yet acknowledged survives a restart of the gateway process.
package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/listeners"
	bbolt "go.etcd.io/bbolt"
)

// Config says where the broker listens and where it keeps its sessions.
type Config struct {
	Addr      string // e.g. 127.0.0.1:1883
	StorePath string // bbolt file for sessions; "" keeps them in memory only
	Logger    *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv   *mqtt.Server
	tcp   *listeners.TCP
	close sync.Once
	err   error
}

// Start opens the listener and begins serving.
func Start(cfg Config) (*Broker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		Logger:       log.With("component", "broker"),
	})
	// Device authentication arrives with the device registry's credentials;
	// until then the embedded broker listens on loopback by default.
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: auth hook: %w", err)
	}
	if cfg.StorePath != "" {
		if err := srv.AddHook(new(bolt.Hook), &bolt.Options{Path: cfg.StorePath, Options: &bbolt.Options{Timeout: 0}}); err != nil {
			return nil, fmt.Errorf("broker: session store %s: %w", cfg.StorePath, err)
		}
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: cfg.Addr})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("broker: listen %s: %w", cfg.Addr, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return &Broker{srv: srv, tcp: tcp}, nil
}

// Addr is the address the broker listens on (useful with port 0).
func (b *Broker) Addr() string { return b.tcp.Address() }

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
