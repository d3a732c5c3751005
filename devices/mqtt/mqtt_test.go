package mqtt

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

func startBroker(t *testing.T) (*mochi.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	srv := mochi.New(&mochi.Options{InlineClient: true})
	require.NoError(t, srv.AddHook(new(auth.AllowHook), nil))
	require.NoError(t, srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})))
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { srv.Close() })
	return srv, "tcp://" + addr
}

type sink struct {
	mu  sync.Mutex
	ds  []devices.Delivery
	ack bool // acknowledge every delivery on arrival
}

func (s *sink) handle(d devices.Delivery) {
	if s.ack {
		d.Ack()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ds = append(s.ds, d)
}

func (s *sink) all() []devices.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]devices.Delivery(nil), s.ds...)
}

func runClient(t *testing.T, url string, s *sink) (*Client, context.CancelFunc) {
	t.Helper()
	c, err := New(Config{URL: url, ClientID: "vigil-test"}, s.handle)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	return c, func() { cancel(); <-done }
}

func payload(seq int) []byte {
	return fmt.Appendf(nil, `{"v":1,"id":"e%d","device":"btn-1","seq":%d,"type":"heartbeat","ts":"%s"}`, seq, seq, time.Now().UTC().Format(time.RFC3339))
}

// A message the consumer never acknowledged is delivered again when the
// gateway reconnects with its persistent session; an acknowledged one is not.
func TestUnackedMessagesAreRedelivered(t *testing.T) {
	srv, url := startBroker(t)
	first := &sink{}
	_, stop := runClient(t, url, first)
	topic := devices.EventTopic("s", "btn-1")
	require.NoError(t, srv.Publish(topic, payload(1), false, 1))
	require.NoError(t, srv.Publish(topic, payload(2), false, 1))
	require.Eventually(t, func() bool { return len(first.all()) == 2 }, 5*time.Second, 5*time.Millisecond)
	got := first.all()
	require.NoError(t, got[0].Err)
	assert.Equal(t, uint64(1), got[0].Decoded.Event.Seq)
	got[0].Ack() // seq 1 is durable; seq 2 is not (a crash before fsync)
	got[0].Ack() // acking twice is harmless
	// Let the PUBACK reach the broker before the "crash".
	require.Eventually(t, func() bool {
		cl, ok := srv.Clients.Get("vigil-test")
		return ok && cl.State.Inflight.Len() == 1
	}, 5*time.Second, 5*time.Millisecond)
	stop()

	second := &sink{}
	_, stop2 := runClient(t, url, second)
	defer stop2()
	require.Eventually(t, func() bool { return len(second.all()) >= 1 }, 5*time.Second, 5*time.Millisecond)
	again := second.all()
	require.Len(t, again, 1, "only the unacknowledged message comes back")
	assert.Equal(t, uint64(2), again[0].Decoded.Event.Seq)
}

func TestInvalidMessagesCarryTheirError(t *testing.T) {
	srv, url := startBroker(t)
	s := &sink{}
	_, stop := runClient(t, url, s)
	defer stop()
	require.NoError(t, srv.Publish(devices.EventTopic("s", "btn-1"), []byte("not json"), false, 1))
	require.Eventually(t, func() bool { return len(s.all()) == 1 }, 5*time.Second, 5*time.Millisecond)
	d := s.all()[0]
	require.Error(t, d.Err)
	assert.Equal(t, "payload", devices.Reason(d.Err))
	assert.Equal(t, []byte("not json"), d.Payload)
}

func TestPublishWaitsForBroker(t *testing.T) {
	_, url := startBroker(t)
	c, stop := runClient(t, url, &sink{})
	require.NoError(t, c.Publish(context.Background(), devices.CommandTopic("s", "btn-1"), []byte(`{"cmd":"alert_received"}`)))
	stop()
	require.Error(t, c.Publish(context.Background(), "x", nil), "not connected is an error, not a silent drop")
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{ClientID: "x"}, func(devices.Delivery) {})
	require.ErrorContains(t, err, "broker URL is empty")
	_, err = New(Config{URL: "tcp://127.0.0.1:1"}, func(devices.Delivery) {})
	require.ErrorContains(t, err, "client id is empty")
}

func runSitesClient(t *testing.T, url string, sites []string, s *sink) (*Client, context.CancelFunc) {
	t.Helper()
	c, err := New(Config{URL: url, ClientID: "vigil-sites", Sites: sites}, s.handle)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)
	return c, func() { cancel(); <-done }
}

func sitePayload(device string, seq int) []byte {
	return fmt.Appendf(nil, `{"v":1,"id":"e%d","device":"%s","seq":%d,"type":"heartbeat","ts":"%s"}`, seq, device, seq, time.Now().UTC().Format(time.RFC3339))
}

// topics lists the topics of the deliveries a sink holds.
func topics(s *sink) []string {
	var out []string
	for _, d := range s.all() {
		out = append(out, d.Topic)
	}
	return out
}

// With mqtt.sites the gateway subscribes to its sites only: another site's
// events never reach it, while a gateway serving every site (or that other
// site) gets them on the same broker.
func TestSitesLimitTheSubscription(t *testing.T) {
	srv, url := startBroker(t)
	mine := &sink{}
	c, stop := runSitesClient(t, url, []string{"site-a", "site-b"}, mine)
	defer stop()
	other := &sink{}
	oc, err := New(Config{URL: url, ClientID: "vigil-other", Sites: []string{"site-c"}}, other.handle)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); oc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, oc.Connected, 5*time.Second, 5*time.Millisecond)

	for i, site := range []string{"site-c", "site-a", "site-ab", "site-b", "site-c"} {
		require.NoError(t, srv.Publish(devices.EventTopic(site, "btn-1"), sitePayload("btn-1", i+1), false, 1))
	}
	// A site whose id begins with a served one is not served either.
	require.NoError(t, srv.Publish("vigil/v1/site-a-x/btn-1/event", sitePayload("btn-1", 9), false, 1))
	require.Eventually(t, func() bool { return len(mine.all()) == 2 && len(other.all()) == 2 }, 5*time.Second, 5*time.Millisecond)
	// The broker delivers in order per session; a later own-site message
	// proves the foreign ones before it were never sent to us.
	require.NoError(t, srv.Publish(devices.EventTopic("site-a", "btn-2"), sitePayload("btn-2", 10), false, 1))
	require.Eventually(t, func() bool { return len(mine.all()) == 3 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, []string{"vigil/v1/site-a/btn-1/event", "vigil/v1/site-b/btn-1/event", "vigil/v1/site-a/btn-2/event"}, topics(mine))
	assert.Equal(t, []string{"vigil/v1/site-c/btn-1/event", "vigil/v1/site-c/btn-1/event"}, topics(other))
	assert.Zero(t, c.Foreign(), "the broker sent nothing for other sites")
	for _, d := range mine.all() {
		require.NoError(t, d.Err)
		assert.Contains(t, []string{"site-a", "site-b"}, d.Decoded.Site)
	}
}

// A gateway that served every site keeps the every-site subscription in its
// persistent session. Restarted with mqtt.sites, it drops that subscription,
// and the events for other sites that the session had queued meanwhile are
// acknowledged and ignored, never handed on.
func TestSitesDropTheSessionsEverySiteSubscription(t *testing.T) {
	srv, url := startBroker(t)
	all := &sink{}
	c0, err := New(Config{URL: url, ClientID: "vigil-sites"}, all.handle)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c0.Run(ctx) }()
	require.Eventually(t, c0.Connected, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done

	// Queued in the session by its every-site subscription while down.
	require.NoError(t, srv.Publish(devices.EventTopic("site-z", "btn-1"), sitePayload("btn-1", 1), false, 1))
	require.NoError(t, srv.Publish(devices.EventTopic("site-a", "btn-1"), sitePayload("btn-1", 2), false, 1))

	// Acknowledged at once, as the gateway does after its commit.
	mine := &sink{ack: true}
	c, stop := runSitesClient(t, url, []string{"site-a"}, mine)
	defer stop()
	require.Eventually(t, func() bool { return len(mine.all()) == 1 && c.Foreign() == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "vigil/v1/site-a/btn-1/event", mine.all()[0].Topic)
	// Nothing is left in flight: the foreign event was acknowledged, and
	// the every-site subscription is gone. (mochi refuses an UNSUBSCRIBE
	// whose packet id is that of a message still in flight to the client,
	// and an MQTT 3.1.1 UNSUBACK cannot say so: a later foreign event makes
	// the client unsubscribe again, which this loop provides.)
	seq := 10
	require.Eventually(t, func() bool {
		cl, ok := srv.Clients.Get("vigil-sites")
		if !ok || cl.State.Inflight.Len() != 0 {
			return false
		}
		if _, wide := cl.State.Subscriptions.Get(devices.EventFilter); !wide {
			return true
		}
		seq++
		require.NoError(t, srv.Publish(devices.EventTopic("site-z", "btn-1"), sitePayload("btn-1", seq), false, 1))
		return false
	}, 10*time.Second, 100*time.Millisecond, "nothing in flight and the every-site filter unsubscribed")

	// A new event for another site is not even sent to this client.
	foreign := c.Foreign()
	require.NoError(t, srv.Publish(devices.EventTopic("site-z", "btn-1"), sitePayload("btn-1", 100), false, 1))
	require.NoError(t, srv.Publish(devices.EventTopic("site-a", "btn-1"), sitePayload("btn-1", 101), false, 1))
	require.Eventually(t, func() bool { return len(mine.all()) >= 2 }, 5*time.Second, 5*time.Millisecond)
	for _, d := range mine.all() {
		assert.Equal(t, "vigil/v1/site-a/btn-1/event", d.Topic)
	}
	assert.Equal(t, foreign, c.Foreign(), "the later foreign event never arrived")
}

// A site removed from mqtt.sites leaves its filter in the persistent
// session; its events are ignored, and the first one makes the client drop
// that filter.
func TestSitesDropARemovedSitesSubscription(t *testing.T) {
	srv, url := startBroker(t)
	_, stop := runSitesClient(t, url, []string{"site-a", "site-b"}, &sink{ack: true})
	stop()
	mine := &sink{ack: true}
	c, stop := runSitesClient(t, url, []string{"site-a"}, mine)
	defer stop()
	seq := 0
	require.Eventually(t, func() bool {
		cl, ok := srv.Clients.Get("vigil-sites")
		if !ok {
			return false
		}
		if _, stale := cl.State.Subscriptions.Get(devices.EventTopic("site-b", "+")); !stale {
			return true
		}
		seq++
		require.NoError(t, srv.Publish(devices.EventTopic("site-b", "btn-1"), sitePayload("btn-1", seq), false, 1))
		return false
	}, 10*time.Second, 100*time.Millisecond, "site-b's filter unsubscribed")
	assert.Positive(t, c.Foreign())
	assert.Empty(t, mine.all(), "site-b's events never reached the consumer")
	cl, _ := srv.Clients.Get("vigil-sites")
	_, own := cl.State.Subscriptions.Get(devices.EventTopic("site-a", "+"))
	assert.True(t, own, "the served site's filter stays")
}

func TestSitesConfigErrors(t *testing.T) {
	for name, sites := range map[string][]string{
		"single-level wildcard": {"+"},
		"multi-level wildcard":  {"#"},
		"two levels":            {"site-a/x"},
		"empty":                 {""},
		"twice":                 {"site-a", "site-a"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(Config{URL: "tcp://127.0.0.1:1", ClientID: "x", Sites: sites}, func(devices.Delivery) {})
			require.Error(t, err)
			assert.Contains(t, err.Error(), "mqtt: site")
		})
	}
}
