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
	mu sync.Mutex
	ds []devices.Delivery
}

func (s *sink) handle(d devices.Delivery) {
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
