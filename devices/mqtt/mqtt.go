// Package mqtt is Vigil's MQTT transport: a paho client with a persistent
// session and manual acknowledgement. It decodes every message on the device
// event topics and hands it on with an Ack function; the PUBACK goes to the
// broker only when the consumer calls Ack, after the event is durable, so a
// crash before that makes the broker redeliver it.
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-gw/vigil/devices"
)

// Config says how to reach the broker.
type Config struct {
	URL      string // tcp://host:port or ssl://host:port
	ClientID string // stable across restarts so the broker keeps the session
	Username string
	Password string
	TLS      *tls.Config
	Now      func() time.Time
	Logger   *slog.Logger
	// OnConnection is told when the connection comes up or goes down.
	OnConnection func(up bool)
}

// Client is a connection to the broker.
type Client struct {
	cfg    Config
	c      paho.Client
	log    *slog.Logger
	handle func(devices.Delivery)
	up     atomic.Bool
}

// New makes a client that calls handle for every message on the device event
// topics, in arrival order, on paho's delivery goroutine: handle should queue
// the work and return.
func New(cfg Config, handle func(devices.Delivery)) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("mqtt: broker URL is empty")
	}
	if cfg.ClientID == "" {
		return nil, errors.New("mqtt: client id is empty (it must be stable for a persistent session)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cl := &Client{cfg: cfg, log: cfg.Logger.With("component", "mqtt"), handle: handle}
	opts := paho.NewClientOptions().
		AddBroker(cfg.URL).
		SetClientID(cfg.ClientID).
		// A persistent session: the broker keeps our subscription and queues
		// QoS 1 events while we are down, and delivers them when we return.
		SetCleanSession(false).
		// PUBACK only when the consumer says the event is durable.
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		// After the first connection paho reconnects by itself; the first
		// connection is retried by Run, which logs why it fails.
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		// Messages the broker sends from the stored session can arrive before
		// the SUBSCRIBE round trip completes; the default handler takes them.
		SetDefaultPublishHandler(cl.onMessage).
		SetOnConnectHandler(cl.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			cl.setUp(false)
			cl.log.Warn("broker connection lost", "err", err)
		})
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	cl.c = paho.NewClient(opts)
	return cl, nil
}

func (cl *Client) setUp(up bool) {
	if cl.up.Swap(up) != up && cl.cfg.OnConnection != nil {
		cl.cfg.OnConnection(up)
	}
}

func (cl *Client) onConnect(c paho.Client) {
	cl.log.Info("connected to broker", "url", cl.cfg.URL)
	// Subscribing again on every connect is harmless with a kept session and
	// necessary when the broker lost it.
	tok := c.Subscribe(devices.EventFilter, 1, cl.onMessage)
	go func() {
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			cl.log.Error("subscribe failed", "filter", devices.EventFilter, "err", tok.Error())
			return
		}
		cl.setUp(true)
	}()
}

func (cl *Client) onMessage(_ paho.Client, m paho.Message) {
	now := cl.cfg.Now()
	d := devices.Delivery{Source: "mqtt", Topic: m.Topic(), Payload: m.Payload(), Received: now}
	var once sync.Once
	d.Ack = func() { once.Do(m.Ack) }
	_, d.Device, _ = devices.ParseEventTopic(m.Topic())
	d.Decoded, d.Err = devices.Decode(m.Topic(), m.Payload(), now)
	cl.handle(d)
}

// Run connects (retrying until the broker answers, and logging each new
// reason it does not) and stays connected until ctx is done, then disconnects
// cleanly.
func (cl *Client) Run(ctx context.Context) error {
	var last string
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		tok := cl.c.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			cl.c.Disconnect(0)
			return nil
		}
		err := tok.Error()
		if err == nil {
			break
		}
		if err.Error() != last {
			cl.log.Error("cannot connect to broker; retrying", "url", cl.cfg.URL, "err", err)
			last = err.Error()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
	<-ctx.Done()
	cl.c.Disconnect(250)
	cl.setUp(false)
	return nil
}

// Connected reports whether the client is connected and subscribed.
func (cl *Client) Connected() bool { return cl.up.Load() }

// Publish sends payload to topic at QoS 1 and waits for the broker's PUBACK.
func (cl *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	if !cl.c.IsConnectionOpen() {
		return fmt.Errorf("mqtt: publish %s: not connected to %s", topic, cl.cfg.URL)
	}
	tok := cl.c.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("mqtt: publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: publish %s: %w", topic, ctx.Err())
	}
}
