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
	"strings"
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
	// Sites, when not empty, limits the subscription to these sites' event
	// topics (vigil/v1/{site}/+/event), so that several gateways can share
	// one broker with each site served by exactly one of them; every gateway
	// then has its own plain subscription (no shared subscription), and a
	// site's events reach only the gateway that lists it. Empty subscribes to
	// every site (devices.EventFilter).
	Sites []string
}

// Client is a connection to the broker.
type Client struct {
	cfg    Config
	c      paho.Client
	log    *slog.Logger
	handle func(devices.Delivery)
	up     atomic.Bool
	// filters are the subscriptions made on every connect; prefixes are the
	// served sites' topic prefixes (vigil/v1/{site}/), nil for every site.
	filters  map[string]byte
	prefixes []string
	// foreign counts messages for sites this gateway does not serve, and
	// foreignLogged is when that was last logged (Unix ns).
	foreign       atomic.Uint64
	foreignLogged atomic.Int64
	// cleaned is when a stale subscription was last dropped (Unix ns).
	cleaned atomic.Int64
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
	cl := &Client{cfg: cfg, log: cfg.Logger.With("component", "mqtt"), handle: handle, filters: map[string]byte{devices.EventFilter: 1}}
	if len(cfg.Sites) > 0 {
		cl.filters = map[string]byte{}
		for _, s := range cfg.Sites {
			// A valid id has no '/', '+' or '#': one topic level, never a
			// wildcard that would widen the subscription to other sites.
			if !devices.ValidID(s) {
				return nil, fmt.Errorf("mqtt: site %q must be 1-64 of A-Z a-z 0-9 _ - (a topic level, no wildcards)", s)
			}
			f := devices.EventTopic(s, "+") // vigil/v1/{site}/+/event
			if _, dup := cl.filters[f]; dup {
				return nil, fmt.Errorf("mqtt: site %q is listed twice", s)
			}
			cl.filters[f] = 1
			cl.prefixes = append(cl.prefixes, strings.TrimSuffix(f, "+/event"))
		}
	}
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
	cl.log.Info("connected to broker", "url", cl.cfg.URL, "sites", cl.cfg.Sites)
	go func() {
		if !cl.subscribe(c) {
			return // not up: /readyz says so; the next connect tries again
		}
		if cl.prefixes != nil {
			// The persistent session may still hold the every-site filter
			// from a time this gateway served all sites; it would go on
			// delivering other gateways' events. Dropped only after the
			// per-site filters are in place, so no own event falls in a gap.
			ut := c.Unsubscribe(devices.EventFilter)
			if !ut.WaitTimeout(10*time.Second) || ut.Error() != nil {
				cl.log.Warn("could not drop the every-site subscription", "filter", devices.EventFilter, "err", ut.Error())
			}
		}
		cl.setUp(true)
	}()
}

// subscribeAttempts bounds how often one connection retries a refused
// subscription.
const subscribeAttempts = 5

// subscribe subscribes to the event filters, and reports whether the broker
// granted every one. Subscribing again on every connect is harmless with a
// kept session and necessary when the broker lost it. A refusal is retried a
// few times: besides an ACL, a broker may refuse a SUBSCRIBE whose packet id
// is still in use by a message it is resending from the session (mochi
// does), which a new packet id a moment later clears.
func (cl *Client) subscribe(c paho.Client) bool {
	for attempt := 1; ; attempt++ {
		tok := c.SubscribeMultiple(cl.filters, cl.onMessage)
		var refused []string
		if !tok.WaitTimeout(10 * time.Second) {
			cl.log.Error("subscribe timed out", "filters", len(cl.filters))
		} else if err := tok.Error(); err != nil {
			cl.log.Error("subscribe failed", "filters", len(cl.filters), "err", err)
		} else {
			if st, ok := tok.(*paho.SubscribeToken); ok {
				for f, code := range st.Result() {
					if code > 2 { // not a granted QoS: 0x80 (MQTT 3.1.1), or a v5 reason code
						refused = append(refused, fmt.Sprintf("%s (0x%02x)", f, code))
					}
				}
			}
			if len(refused) == 0 {
				return true
			}
			cl.log.Error("subscription refused by the broker", "filters", refused, "attempt", attempt)
		}
		if attempt == subscribeAttempts || !c.IsConnectionOpen() {
			return false
		}
		time.Sleep(time.Duration(attempt) * 250 * time.Millisecond) // backoff; this goroutine has nothing else to do
	}
}

// serves reports whether topic belongs to a site this client serves.
func (cl *Client) serves(topic string) bool {
	if cl.prefixes == nil {
		return true
	}
	for _, p := range cl.prefixes {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

func (cl *Client) onMessage(_ paho.Client, m paho.Message) {
	if !cl.serves(m.Topic()) {
		cl.skipForeign(m)
		return
	}
	now := cl.cfg.Now()
	d := devices.Delivery{Source: "mqtt", Topic: m.Topic(), Payload: m.Payload(), Received: now}
	var once sync.Once
	d.Ack = func() { once.Do(m.Ack) }
	_, d.Device, _ = devices.ParseEventTopic(m.Topic())
	d.Decoded, d.Err = devices.Decode(m.Topic(), m.Payload(), now)
	cl.handle(d)
}

// skipForeign acknowledges, without handing on, a message for a site this
// gateway does not serve. Only a subscription the persistent session kept
// from an earlier configuration (a site since removed from the list) brings
// one; the gateway that serves that site has its own subscription and its own
// copy. Left unacknowledged it would hold one of the broker's in-flight slots
// for this session for ever.
func (cl *Client) skipForeign(m paho.Message) {
	m.Ack()
	n := cl.foreign.Add(1)
	now := time.Now().UnixNano()
	if last := cl.foreignLogged.Load(); now-last >= int64(time.Minute) && cl.foreignLogged.CompareAndSwap(last, now) {
		cl.log.Warn("ignored an event for a site this gateway does not serve (a subscription left in the broker session from an earlier mqtt.sites)",
			"topic", m.Topic(), "sites", cl.cfg.Sites, "ignored_total", n)
	}
	// Drop the subscription that brought it: the every-site filter, or the
	// filter of a site since removed from the list. At most once a second,
	// so a queue of such events costs one UNSUBSCRIBE, not one each; again
	// later if the broker did not take it (an MQTT 3.1.1 UNSUBACK cannot say).
	if last := cl.cleaned.Load(); now-last >= int64(time.Second) && cl.cleaned.CompareAndSwap(last, now) {
		filters := []string{devices.EventFilter}
		if parts := strings.Split(m.Topic(), "/"); len(parts) == 5 && devices.ValidID(parts[2]) {
			filters = append(filters, devices.EventTopic(parts[2], "+"))
		}
		// Not waited for here: this is paho's delivery goroutine.
		cl.c.Unsubscribe(filters...)
	}
}

// Foreign is how many messages for sites this gateway does not serve were
// acknowledged and ignored since the client was made.
func (cl *Client) Foreign() uint64 { return cl.foreign.Load() }

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
