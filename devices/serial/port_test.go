package serial

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
)

// wait is the deadline for anything the tests wait for; they never sleep.
const wait = 10 * time.Second

// next returns the next value from ch, failing the test after the deadline.
func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// eventually polls cond until it holds, failing the test after the deadline.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	assert.Eventually(t, cond, wait, 5*time.Millisecond, what)
}

type portChange struct {
	up  bool
	err error
}

// harness runs a Port and collects what it reports.
type harness struct {
	port       *Port
	deliveries chan devices.Delivery
	changes    chan portChange
}

// startPort runs a Port with the test keys and clock until the test ends.
func startPort(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{deliveries: make(chan devices.Delivery, 1024), changes: make(chan portChange, 64)}
	cfg.OnPort = func(up bool, err error) { h.changes <- portChange{up, err} }
	if cfg.Site == "" {
		cfg.Site = "site-a"
	}
	if cfg.Keys == nil {
		cfg.Keys = testKeys
	}
	cfg.Now = func() time.Time { return testNow }
	if cfg.ReopenInterval == 0 {
		cfg.ReopenInterval = 10 * time.Millisecond
	}
	p, err := New(cfg, func(d devices.Delivery) { h.deliveries <- d })
	require.NoError(t, err)
	h.port = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, next(t, done, "Run to return"))
	})
	return h
}

func (h *harness) waitUp(t *testing.T) {
	t.Helper()
	for {
		c := next(t, h.changes, "the port to open")
		if c.up {
			require.NoError(t, c.err)
			return
		}
	}
}

// device plays pendants on the master side of a pty: it writes frames and
// reads back the gateway's ack frames, verifying them as a pendant does.
type device struct {
	t    *testing.T
	line *os.File
	acks chan Frame // authenticated ack frames
	junk chan error // anything else read from the gateway
}

func newDevice(t *testing.T, line *os.File) *device {
	d := &device{t: t, line: line, acks: make(chan Frame, 256), junk: make(chan error, 256)}
	go func() {
		var df Deframer
		buf := make([]byte, 512)
		for {
			n, err := line.Read(buf)
			df.Feed(buf[:n], func(run []byte, _ bool) {
				f, _, err := Decode(run, testKeys)
				switch {
				case err != nil:
					d.junk <- err
				case f.Type != FrameAck:
					d.junk <- errors.New("not an ack: " + f.Type.String())
				default:
					d.acks <- f
				}
			})
			if err != nil {
				return // the line was closed
			}
		}
	}()
	return d
}

func (d *device) write(b []byte) {
	d.t.Helper()
	_, err := d.line.Write(b)
	require.NoError(d.t, err)
}

// frame encodes an event frame with the device's own key.
func (d *device) frame(id string, counter uint32, typ devices.Type) []byte {
	d.t.Helper()
	key, ok := testKeys(id)
	require.True(d.t, ok)
	w, err := Encode(Frame{Type: FrameEvent, Device: id, Counter: counter, Payload: eventPayload(id, uint64(counter), typ)}, key)
	require.NoError(d.t, err)
	return w
}

// nextAck waits for the next ack frame and checks it is for id and counter.
func (d *device) nextAck(id string, counter uint32) {
	d.t.Helper()
	select {
	case f := <-d.acks:
		assert.Equal(d.t, Frame{Type: FrameAck, Device: id, Counter: counter}, f)
	case err := <-d.junk:
		d.t.Fatalf("the gateway wrote something other than an ack: %v", err)
	case <-time.After(wait):
		d.t.Fatalf("no ack for %s counter %d", id, counter)
	}
}

func TestPortDeliversEventsAndWritesAcks(t *testing.T) {
	pair := openPTY(t)
	h := startPort(t, Config{Path: pair.path})
	h.waitUp(t)
	dev := newDevice(t, pair.master)

	duress := dev.frame("btn-1", 42, devices.TypeDuress)
	dev.write(duress)
	dev.write(dev.frame("btn-2", 7, devices.TypeHeartbeat))

	d1 := next(t, h.deliveries, "the duress")
	require.NoError(t, d1.Err)
	assert.Equal(t, "serial", d1.Source)
	assert.Equal(t, "serial:"+pair.path, d1.Topic)
	assert.Equal(t, "btn-1", d1.Device)
	assert.True(t, d1.Monotonic, "counters under a MAC are monotonic")
	assert.Equal(t, testNow, d1.Received)
	assert.Equal(t, "site-a", d1.Decoded.Site)
	assert.Equal(t, devices.TypeDuress, d1.Decoded.Event.Type)
	assert.Equal(t, uint64(42), d1.Decoded.Event.Seq)
	assert.Equal(t, "btn-1", d1.Decoded.Event.Device)
	raw, err := Unstuff(duress[1 : len(duress)-1])
	require.NoError(t, err)
	assert.Equal(t, raw, d1.Payload, "the frame bytes are kept")

	d2 := next(t, h.deliveries, "the heartbeat")
	require.NoError(t, d2.Err)
	assert.Equal(t, "btn-2", d2.Decoded.Event.Device)
	assert.Equal(t, uint64(7), d2.Decoded.Event.Seq)

	// Ack from other goroutines, as the journal does, and more than once:
	// one ack frame goes out.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(d1.Ack)
	}
	wg.Wait()
	dev.nextAck("btn-1", 42)
	d2.Ack()
	dev.nextAck("btn-2", 7) // and not a second ack for 42 before it

	eventually(t, func() bool { return h.port.Stats().AcksSent == 2 }, "two acks counted")
	s := h.port.Stats()
	assert.True(t, s.Up)
	assert.Equal(t, uint64(2), s.Accepted)
	assert.Equal(t, uint64(2), s.Frames)
	assert.Zero(t, s.RejectedTotal())
	assert.Zero(t, s.AcksDropped)
}

func TestPortResynchronises(t *testing.T) {
	pair := openPTY(t)
	h := startPort(t, Config{Path: pair.path})
	h.waitUp(t)
	dev := newDevice(t, pair.master)

	expectRejected := func(reasons ...string) devices.Delivery {
		t.Helper()
		d := next(t, h.deliveries, "a rejected run")
		require.Error(t, d.Err)
		assert.Contains(t, reasons, devices.Reason(d.Err), d.Err.Error())
		assert.False(t, d.Monotonic)
		assert.NotEmpty(t, d.Payload, "the bytes read are kept for the record")
		return d
	}
	expectGood := func(counter uint64) devices.Delivery {
		t.Helper()
		d := next(t, h.deliveries, "a good frame")
		require.NoError(t, d.Err)
		assert.Equal(t, counter, d.Decoded.Event.Seq)
		return d
	}

	// Noise on the line, then a frame: the frame's leading delimiter ends
	// the noise, which is reported as a bad frame of its own.
	dev.write([]byte("line noise\xff\x13"))
	dev.write(dev.frame("btn-1", 1, devices.TypeHeartbeat))
	expectRejected("frame", "crc")
	expectGood(1)

	// A frame cut short (the radio lost the end of it), then the next one.
	cut := dev.frame("btn-1", 2, devices.TypeHeartbeat)
	dev.write(cut[:len(cut)/2])
	dev.write(dev.frame("btn-1", 3, devices.TypeHeartbeat))
	d := expectRejected("frame", "crc")
	assert.Equal(t, "btn-1", d.Device, "a truncated frame still names its device")
	expectGood(3)

	// A bit flipped on the line is a CRC failure, not a forgery.
	w := dev.frame("btn-1", 4, devices.TypeHeartbeat)
	raw, err := Unstuff(w[1 : len(w)-1])
	require.NoError(t, err)
	raw[30] ^= 0x08
	dev.write(Wire(raw))
	d = expectRejected("crc")
	assert.Equal(t, raw, d.Payload)
	dev.write(dev.frame("btn-1", 5, devices.TypeHeartbeat))
	expectGood(5)

	// A frame written one byte at a time is read whole.
	for _, b := range dev.frame("btn-1", 6, devices.TypeHeartbeat) {
		dev.write([]byte{b})
	}
	expectGood(6)

	// A long run without a delimiter is reported once and skipped.
	dev.write(bytes.Repeat([]byte{0x55}, 3000))
	dev.write(dev.frame("btn-1", 7, devices.TypeHeartbeat))
	d = expectRejected("frame")
	assert.Contains(t, d.Err.Error(), "without a 0x00 delimiter")
	assert.Len(t, d.Payload, MaxWireFrame)
	expectGood(7)

	s := h.port.Stats()
	assert.Equal(t, uint64(5), s.Accepted)
	assert.Equal(t, uint64(4), s.RejectedTotal())
	assert.Equal(t, uint64(1), s.Oversize)
	assert.Equal(t, uint64(3000-MaxWireFrame), s.Discarded)
	assert.Equal(t, uint64(4), s.Rejected["crc"]+s.Rejected["frame"])
	assert.GreaterOrEqual(t, s.Rejected["crc"], uint64(1))
	assert.GreaterOrEqual(t, s.Rejected["frame"], uint64(1))
}

func TestPortNeverAcksWhatDoesNotAuthenticate(t *testing.T) {
	pair := openPTY(t)
	h := startPort(t, Config{Path: pair.path})
	h.waitUp(t)
	dev := newDevice(t, pair.master)

	otherKey := bytes.Repeat([]byte{9}, 32)
	btn2Key, _ := testKeys("btn-2")
	encode := func(f Frame, key []byte) []byte {
		w, err := Encode(f, key)
		require.NoError(t, err)
		return w
	}
	duress := func(id string, counter uint32) Frame {
		return Frame{Type: FrameEvent, Device: id, Counter: counter, Payload: eventPayload(id, uint64(counter), devices.TypeDuress)}
	}
	heartbeat := func(id string, counter uint32) Frame {
		return Frame{Type: FrameEvent, Device: id, Counter: counter, Payload: eventPayload(id, uint64(counter), devices.TypeHeartbeat)}
	}
	for _, tc := range []struct {
		name, reason, device string
		wire                 []byte
		monotonic            bool
	}{
		{"forged with a wrong key", "mac", "btn-1", encode(duress("btn-1", 100), otherKey), false},
		{"made with another pendant's key", "mac", "btn-1", encode(duress("btn-1", 101), btn2Key), false},
		{"unknown device", "device", "btn-9", encode(heartbeat("btn-9", 1), testKey), false},
		{"device registered without a key", "device", "btn-nokey", encode(heartbeat("btn-nokey", 1), testKey), false},
		// An ack frame reflected back at the gateway authenticates, but is
		// not an event and is not acknowledged.
		{"ack frame sent to the gateway", "frame", "btn-1", encode(Frame{Type: FrameAck, Device: "btn-1", Counter: 102}, testKey), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev.write(tc.wire)
			d := next(t, h.deliveries, "the rejected frame")
			require.Error(t, d.Err)
			assert.Equal(t, tc.reason, devices.Reason(d.Err), d.Err.Error())
			assert.True(t, strings.HasPrefix(d.Err.Error(), "serial: "+tc.reason+": "), d.Err.Error())
			assert.Equal(t, tc.device, d.Device, "the claimed device")
			assert.Equal(t, tc.monotonic, d.Monotonic)
			assert.Equal(t, "serial:"+pair.path, d.Topic)
			require.NotNil(t, d.Ack)
			d.Ack() // the gateway acks a rejection once it is recorded: no frame may go out
		})
	}
	// A duress from a pendant without a key is never dropped: it is delivered
	// unauthenticated (to be raised unverified), and still never acked.
	dev.write(encode(duress("btn-9", 2), testKey))
	u := next(t, h.deliveries, "the unauthenticated duress")
	require.NoError(t, u.Err)
	assert.True(t, u.Unauthenticated)
	assert.False(t, u.Monotonic, "an unauthenticated counter proves nothing")
	assert.Equal(t, devices.TypeDuress, u.Decoded.Event.Type)
	assert.Contains(t, strings.Join(u.Decoded.Warnings, " "), "not authenticated")
	u.Ack()

	// Acks go out in order: the first one the device sees must be for the
	// good frame sent after all the bad ones.
	dev.write(dev.frame("btn-1", 103, devices.TypeDuress))
	d := next(t, h.deliveries, "the genuine duress")
	require.NoError(t, d.Err)
	d.Ack()
	dev.nextAck("btn-1", 103)
	// The port counts an ack after writing it, so the device can read it first.
	eventually(t, func() bool { return h.port.Stats().AcksSent == 1 }, "one ack counted")
	assert.Equal(t, map[string]uint64{"mac": 2, "device": 2, "frame": 1}, h.port.Stats().Rejected)
}

func TestPortAcksAuthenticatedButInvalidEvents(t *testing.T) {
	// A pendant whose event is invalid (a wrong clock on a heartbeat, a
	// firmware bug) must still get an ack once the rejection is recorded,
	// or it would retransmit forever and hold back its next events.
	pair := openPTY(t)
	h := startPort(t, Config{Path: pair.path})
	h.waitUp(t)
	dev := newDevice(t, pair.master)

	late, err := devices.Encode(devices.Event{V: 1, ID: "e-9", Device: "btn-1", Seq: 9, Type: devices.TypeHeartbeat, TS: testNow.Add(-48 * time.Hour)})
	require.NoError(t, err)
	for _, tc := range []struct {
		name, reason string
		counter      uint32
		payload      []byte
	}{
		{"seq is not the counter", "seq", 8, eventPayload("btn-1", 80, devices.TypeHeartbeat)},
		{"stale heartbeat", "ts", 9, late},
		{"payload of another device", "device", 10, eventPayload("btn-2", 10, devices.TypeHeartbeat)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Encode(Frame{Type: FrameEvent, Device: "btn-1", Counter: tc.counter, Payload: tc.payload}, testKey)
			require.NoError(t, err)
			dev.write(w)
			d := next(t, h.deliveries, "the invalid event")
			require.Error(t, d.Err)
			assert.Equal(t, tc.reason, devices.Reason(d.Err), d.Err.Error())
			assert.True(t, d.Monotonic)
			assert.Equal(t, "btn-1", d.Device)
			d.Ack()
			dev.nextAck("btn-1", tc.counter)
		})
	}
}

func TestPortUnplugAndReplug(t *testing.T) {
	// Config.Path is a link re-pointed at each new pty, as socat's link=
	// does and as udev's /dev/serial/by-id links are for a real receiver.
	link := filepath.Join(t.TempDir(), "ttyVIGIL")
	h := startPort(t, Config{Path: link})

	// Nothing there yet: reported once, then retried.
	c := next(t, h.changes, "the first open to fail")
	assert.False(t, c.up)
	require.Error(t, c.err)
	assert.Contains(t, c.err.Error(), "serial: open "+link)

	repoint := func(target string) {
		tmp := link + ".tmp"
		require.NoError(t, os.Symlink(target, tmp))
		require.NoError(t, os.Rename(tmp, link))
	}
	first := openPTY(t)
	repoint(first.path)
	h.waitUp(t)
	dev := newDevice(t, first.master)
	dev.write(dev.frame("btn-1", 1, devices.TypeDuress))
	d := next(t, h.deliveries, "a frame on the first line")
	require.NoError(t, d.Err)
	d.Ack()
	dev.nextAck("btn-1", 1)

	// Unplug.
	first.close()
	c = next(t, h.changes, "the port to be lost")
	assert.False(t, c.up)
	require.Error(t, c.err)
	assert.Contains(t, c.err.Error(), "serial: read "+link)
	assert.False(t, h.port.Up())

	// Plug back in: a new pty behind the same link.
	second := openPTY(t)
	repoint(second.path)
	h.waitUp(t)
	dev = newDevice(t, second.master)
	dev.write(dev.frame("btn-1", 2, devices.TypeDuress))
	d = next(t, h.deliveries, "a frame on the second line")
	require.NoError(t, d.Err)
	assert.Equal(t, uint64(2), d.Decoded.Event.Seq)
	d.Ack()
	dev.nextAck("btn-1", 2)
	assert.Equal(t, uint64(2), h.port.Stats().Opens)
}

func TestPortAckWhileUnpluggedGoesOutAfterReplug(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyVIGIL")
	first := openPTY(t)
	require.NoError(t, os.Symlink(first.path, link))
	h := startPort(t, Config{Path: link})
	h.waitUp(t)
	dev := newDevice(t, first.master)
	dev.write(dev.frame("btn-1", 11, devices.TypeDuress))
	d := next(t, h.deliveries, "the duress")
	require.NoError(t, d.Err)

	first.close()
	require.False(t, next(t, h.changes, "the port to be lost").up)
	d.Ack() // the journal finished while the receiver was unplugged

	second := openPTY(t)
	tmp := link + ".tmp"
	require.NoError(t, os.Symlink(second.path, tmp))
	require.NoError(t, os.Rename(tmp, link))
	h.waitUp(t)
	newDevice(t, second.master).nextAck("btn-1", 11)
}

func TestPortRunTwice(t *testing.T) {
	pair := openPTY(t)
	h := startPort(t, Config{Path: pair.path})
	h.waitUp(t)
	err := h.port.Run(t.Context())
	require.Error(t, err)
	assert.Equal(t, "serial: Run is already running for this port", err.Error())
}

func TestPortVIDPIDNotFound(t *testing.T) {
	h := startPort(t, Config{VIDPID: "fffe:fffd"})
	c := next(t, h.changes, "the lookup to fail")
	assert.False(t, c.up)
	require.Error(t, c.err)
	assert.True(t, strings.HasPrefix(c.err.Error(), "serial: "), c.err.Error())
	assert.Contains(t, c.err.Error(), "fffe:fffd")
}

func TestAckQueueBounded(t *testing.T) {
	p, err := New(Config{Path: "/nonexistent", Site: "s", Keys: testKeys}, func(devices.Delivery) {})
	require.NoError(t, err)
	for i := range ackQueueLen + 3 {
		p.acker("btn-1", uint32(i+1), testKey)()
	}
	assert.Equal(t, uint64(3), p.Stats().AcksDropped)
	assert.Len(t, p.acks, ackQueueLen)
}

func TestNewChecksConfig(t *testing.T) {
	handle := func(devices.Delivery) {}
	ok := Config{Path: "/dev/ttyUSB0", Site: "site-a", Keys: testKeys}
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		msg  string
	}{
		{"no port", func(c *Config) { c.Path = "" }, "serial: set the port path or its USB VID:PID"},
		{"both", func(c *Config) { c.VIDPID = "0403:6001" }, "not both"},
		{"bad vidpid", func(c *Config) { c.Path = ""; c.VIDPID = "0403-6001" }, `USB id "0403-6001": want VID:PID in hex`},
		{"bad site", func(c *Config) { c.Site = "a b" }, `site "a b" is not a valid id`},
		{"no keys", func(c *Config) { c.Keys = nil }, "no device key lookup"},
		{"negative baud", func(c *Config) { c.Baud = -1 }, "baud rate -1"},
		{"negative reopen", func(c *Config) { c.ReopenInterval = -time.Second }, "reopen interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mut(&cfg)
			_, err := New(cfg, handle)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "serial: "), err.Error())
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	_, err := New(ok, nil)
	assert.EqualError(t, err, "serial: no delivery handler")
	p, err := New(ok, handle)
	require.NoError(t, err)
	assert.Equal(t, DefaultBaud, p.cfg.Baud)
	assert.Equal(t, DefaultReopenInterval, p.cfg.ReopenInterval)
}

func TestList(t *testing.T) {
	ports, err := List()
	require.NoError(t, err)
	for _, p := range ports {
		assert.NotEmpty(t, p.Name)
		if p.USB {
			assert.Regexp(t, `^[0-9a-f]{4}:[0-9a-f]{4}$`, p.VIDPID)
		}
	}
}
