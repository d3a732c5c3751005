package firmwaresim

import (
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// waitFor is how long a test polls for something that should happen within
// milliseconds; it is generous because -race on two cores is slow.
const waitFor = 10 * time.Second

// testBroker is an in-process mochi broker with an inline subscriber that
// records every device event and, optionally, answers duress like the gateway.
type testBroker struct {
	t    *testing.T
	addr string
	srv  *mqtt.Server

	mu       sync.Mutex
	msgs     []message
	closed   bool
	respond  bool
	answered int
}

// message is one publish the broker routed to a device event topic.
type message struct {
	Topic   string
	Payload []byte
	At      time.Time
}

// freeAddr finds a free loopback port by listening on :0 and closing again.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// startBroker serves MQTT on addr (from freeAddr) until the test ends or
// stop is called.
func startBroker(t *testing.T, addr string) *testBroker {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, srv.AddHook(new(auth.AllowHook), nil))
	require.NoError(t, srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})))
	tb := &testBroker{t: t, addr: addr, srv: srv}
	// Subscribe before serving so that nothing published after a restart
	// can slip past the recorder.
	require.NoError(t, srv.Subscribe(devices.EventFilter, 1, tb.onEvent))
	require.NoError(t, srv.Serve())
	t.Cleanup(tb.stop)
	return tb
}

// url is the broker URL for simulator configs.
func (tb *testBroker) url() string { return "tcp://" + tb.addr }

// stop closes the broker and its listener; it is safe to call twice.
func (tb *testBroker) stop() {
	tb.mu.Lock()
	already := tb.closed
	tb.closed = true
	tb.mu.Unlock()
	if !already {
		_ = tb.srv.Close()
	}
}

// answerDuress makes the broker reply to every well-formed duress with
// alert_received, as the gateway does once the alert is durable.
func (tb *testBroker) answerDuress() {
	tb.mu.Lock()
	tb.respond = true
	tb.mu.Unlock()
}

func (tb *testBroker) onEvent(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
	m := message{Topic: pk.TopicName, Payload: slices.Clone(pk.Payload), At: time.Now()}
	tb.mu.Lock()
	tb.msgs = append(tb.msgs, m)
	respond := tb.respond
	tb.mu.Unlock()
	if !respond {
		return
	}
	d, err := devices.Decode(m.Topic, m.Payload, time.Now())
	if err != nil || d.Event.Type != devices.TypeDuress {
		return
	}
	cmd, err := devices.EncodeCommand(devices.Command{
		Cmd:   devices.CmdAlertReceived,
		Alert: d.Event.Device + "." + strconv.FormatUint(d.Event.Seq, 10),
		Seq:   d.Event.Seq,
	})
	if err != nil {
		tb.t.Errorf("encode command: %v", err)
		return
	}
	if err := tb.srv.Publish(devices.CommandTopic(d.Site, d.Event.Device), cmd, false, 1); err != nil {
		tb.t.Errorf("publish command: %v", err)
		return
	}
	tb.mu.Lock()
	tb.answered++
	tb.mu.Unlock()
}

// messages returns a copy of everything recorded so far, in arrival order.
func (tb *testBroker) messages() []message {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return slices.Clone(tb.msgs)
}

// decoded returns the recorded events that devices.Decode accepts.
func (tb *testBroker) decoded() []devices.Decoded {
	var out []devices.Decoded
	for _, m := range tb.messages() {
		if d, err := devices.Decode(m.Topic, m.Payload, time.Now()); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// ofType keeps the events of one type.
func ofType(ds []devices.Decoded, t devices.Type) []devices.Event {
	var out []devices.Event
	for _, d := range ds {
		if d.Event.Type == t {
			out = append(out, d.Event)
		}
	}
	return out
}
