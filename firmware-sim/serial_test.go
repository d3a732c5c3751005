package firmwaresim

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/serial"
)

// serialWait is the deadline for anything the serial tests wait for; they
// never sleep.
const serialWait = 20 * time.Second

func pendantKey(id string) []byte {
	return bytes.Repeat([]byte(id+"/"), 32)[:32]
}

func pendantKeys(ids ...string) map[string][]byte {
	m := make(map[string][]byte, len(ids))
	for _, id := range ids {
		m[id] = pendantKey(id)
	}
	return m
}

// gateway is a real serial.Port on the gateway end of a pty, standing in for
// Vigil: it records every delivery and acknowledges each, from another
// goroutine as the journal does, unless hold says not yet.
type gateway struct {
	port *serial.Port

	mu       sync.Mutex
	valid    []devices.Delivery
	rejected []devices.Delivery
	hold     func(d devices.Delivery) bool // true: do not ack (yet)
	seen     chan devices.Delivery
}

func startGateway(t *testing.T, path string, keys map[string][]byte) *gateway {
	t.Helper()
	g := &gateway{seen: make(chan devices.Delivery, 4096)}
	up := make(chan struct{}, 16)
	p, err := serial.New(serial.Config{
		Path: path, Site: "site-a",
		Keys: func(id string) ([]byte, bool) {
			k, ok := keys[id]
			return k, ok
		},
		OnPort: func(u bool, _ error) {
			if u {
				up <- struct{}{}
			}
		},
		ReopenInterval: 10 * time.Millisecond,
	}, g.handle)
	require.NoError(t, err)
	g.port = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(serialWait):
			t.Error("the gateway port did not stop")
		}
	})
	select {
	case <-up:
	case <-time.After(serialWait):
		t.Fatal("the gateway port did not open")
	}
	return g
}

func (g *gateway) handle(d devices.Delivery) {
	g.mu.Lock()
	if d.Err != nil {
		g.rejected = append(g.rejected, d)
	} else {
		g.valid = append(g.valid, d)
	}
	hold := g.hold != nil && g.hold(d)
	g.mu.Unlock()
	if !hold {
		go d.Ack()
	}
	g.seen <- d
}

func (g *gateway) snapshot() (valid, rejected []devices.Delivery) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]devices.Delivery(nil), g.valid...), append([]devices.Delivery(nil), g.rejected...)
}

// startRelay runs a relay on a fresh pty and returns it with the pty's
// gateway end.
func startRelay(t *testing.T, cfg SerialRelayConfig) (*SerialRelay, string) {
	t.Helper()
	pt, err := OpenPTY("")
	require.NoError(t, err)
	t.Cleanup(func() { pt.Close() })
	cfg.Line = pt.Master
	if cfg.Site == "" {
		cfg.Site = "site-a"
	}
	r, err := NewSerialRelay(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(serialWait):
			t.Error("the relay did not stop")
		}
	})
	return r, pt.Path
}

func waitAcked(t *testing.T, r *SerialRelay, presses ...SerialPress) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), serialWait)
	defer cancel()
	for _, p := range presses {
		_, err := r.WaitAcked(ctx, p.Device, p.Counter)
		require.NoError(t, err)
	}
}

func TestSerialRelayDeliversThroughThePort(t *testing.T) {
	keys := pendantKeys("btn-1", "btn-2")
	r, path := startRelay(t, SerialRelayConfig{Pendants: keys, FirstCounter: 100})
	g := startGateway(t, path, keys)

	duress, err := r.Press(t.Context(), "btn-1", devices.TypeDuress)
	require.NoError(t, err)
	hb, err := r.Press(t.Context(), "btn-2", devices.TypeHeartbeat)
	require.NoError(t, err)
	assert.Equal(t, uint32(100), duress.Counter)
	assert.Equal(t, uint32(100), hb.Counter, "counters are per pendant")
	waitAcked(t, r, duress, hb)

	valid, rejected := g.snapshot()
	assert.Empty(t, rejected)
	require.Len(t, valid, 2)
	byDevice := map[string]devices.Delivery{valid[0].Device: valid[0], valid[1].Device: valid[1]}
	for _, p := range []SerialPress{duress, hb} {
		d := byDevice[p.Device]
		assert.Equal(t, "serial", d.Source)
		assert.True(t, d.Monotonic)
		assert.Equal(t, "site-a", d.Decoded.Site)
		assert.Equal(t, p.ID, d.Decoded.Event.ID)
		assert.Equal(t, p.Type, d.Decoded.Event.Type)
		assert.Equal(t, uint64(p.Counter), d.Decoded.Event.Seq)
	}

	next, err := r.Press(t.Context(), "btn-1", devices.TypeDuressCancel)
	require.NoError(t, err)
	assert.Equal(t, uint32(101), next.Counter)
	waitAcked(t, r, next)

	s := r.Stats()
	assert.Equal(t, uint64(3), s.Acked)
	assert.Zero(t, s.BadFrames)
	assert.Zero(t, s.Queued)
	assert.Equal(t, uint64(1), s.Pressed[devices.TypeDuress])
	assert.Contains(t, s.String(), "acked=3")
}

func TestSerialRelayRetransmitsUntilAcked(t *testing.T) {
	keys := pendantKeys("btn-1")
	r, path := startRelay(t, SerialRelayConfig{Pendants: keys, FirstCounter: 1, RetransmitInterval: 10 * time.Millisecond})
	g := startGateway(t, path, keys)
	// The gateway "loses" the first two copies of counter 1 (its ack never
	// comes), as when the journal is slow or the ack is cut on the line.
	var copies int
	g.mu.Lock()
	g.hold = func(d devices.Delivery) bool {
		if d.Decoded.Event.Seq != 1 {
			return false
		}
		copies++
		return copies <= 2
	}
	g.mu.Unlock()

	first, err := r.Press(t.Context(), "btn-1", devices.TypeDuress)
	require.NoError(t, err)
	second, err := r.Press(t.Context(), "btn-1", devices.TypeHeartbeat)
	require.NoError(t, err)
	waitAcked(t, r, first, second)

	valid, _ := g.snapshot()
	var seqs []uint64
	for _, d := range valid {
		seqs = append(seqs, d.Decoded.Event.Seq)
		if d.Decoded.Event.Seq == 1 {
			assert.Equal(t, first.ID, d.Decoded.Event.ID, "a retransmission is the same event")
		}
	}
	// Stop-and-wait: counter 2 is not sent before counter 1 is acked.
	require.GreaterOrEqual(t, len(seqs), 4)
	assert.Equal(t, []uint64{1, 1, 1}, seqs[:3])
	assert.NotContains(t, seqs[:3], uint64(2))
	assert.Contains(t, seqs, uint64(2))
	assert.GreaterOrEqual(t, r.Stats().Retransmissions, uint64(2))
}

func TestSerialRelayOnlyTrustsAuthenticAcks(t *testing.T) {
	keys := pendantKeys("btn-1")
	pt, err := OpenPTY("")
	require.NoError(t, err)
	t.Cleanup(func() { pt.Close() })
	r, err := NewSerialRelay(SerialRelayConfig{Line: pt.Master, Site: "s", Pendants: keys, FirstCounter: 7, RetransmitInterval: time.Hour})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The test is the gateway here, on a second descriptor of the pty's
	// gateway end.
	gw, err := os.OpenFile(pt.Path, os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { gw.Close() })
	p, err := r.Press(t.Context(), "btn-1", devices.TypeDuress)
	require.NoError(t, err)
	got := make([]byte, 0, 512)
	buf := make([]byte, 512)
	for bytes.Count(got, []byte{0}) < 2 { // read the event frame, delimiter to delimiter
		n, err := gw.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
	}

	ack := func(counter uint32, key []byte) []byte {
		w, err := serial.Encode(serial.Frame{Type: serial.FrameAck, Device: "btn-1", Counter: counter}, key)
		require.NoError(t, err)
		return w
	}
	forged := ack(7, bytes.Repeat([]byte{1}, 32))
	_, err = gw.Write(forged)
	require.NoError(t, err)
	_, err = gw.Write(ack(6, pendantKey("btn-1"))) // authentic, but not for the frame on the air
	require.NoError(t, err)
	assert.Eventually(t, func() bool { s := r.Stats(); return s.BadFrames == 1 && s.StaleAcks == 1 }, serialWait, time.Millisecond)
	assert.Equal(t, 1, r.Queued(), "a forged ack does not acknowledge anything")

	_, err = gw.Write(ack(7, pendantKey("btn-1")))
	require.NoError(t, err)
	waitAcked(t, r, p)
	assert.Zero(t, r.Queued())
}

func TestSerialRelayWithFaultsDeliversEveryEventExactlyOnce(t *testing.T) {
	ids := []string{"btn-1", "btn-2", "btn-3"}
	keys := pendantKeys(ids...)
	r, path := startRelay(t, SerialRelayConfig{
		Pendants: keys, FirstCounter: 1, RetransmitInterval: 15 * time.Millisecond, Seed: 42,
		SerialFaults: SerialFaults{Noise: 0.3, Truncate: 0.2, Replay: 0.2, WrongKey: 0.2},
	})
	g := startGateway(t, path, keys)

	types := []devices.Type{devices.TypeDuress, devices.TypeHeartbeat, devices.TypeBattery, devices.TypeDuressCancel}
	var presses []SerialPress
	for i := range 60 {
		p, err := r.Press(t.Context(), ids[i%len(ids)], types[i%len(types)])
		require.NoError(t, err)
		presses = append(presses, p)
	}
	waitAcked(t, r, presses...)

	// Every frame the relay put on the line has been read once the port's
	// counts catch up with the relay's: each forged frame is one "mac", and
	// each replay (which may trail the last ack) is one more valid frame.
	assert.Eventually(t, func() bool { return g.port.Stats().Rejected["mac"] == r.Stats().WrongKey }, serialWait, time.Millisecond,
		"one mac rejection per forged frame")
	assert.Eventually(t, func() bool {
		valid, _ := g.snapshot()
		return uint64(len(valid)) >= uint64(len(presses))+r.Stats().Replayed
	}, serialWait, time.Millisecond, "every press and every replay delivered")
	s := r.Stats()
	require.Positive(t, s.WrongKey)
	require.Positive(t, s.Truncated)
	require.Positive(t, s.Noise)
	require.Positive(t, s.Replayed)
	assert.Zero(t, s.BadFrames, "every ack the gateway wrote verified")

	type key struct {
		device  string
		counter uint64
	}
	pressed := make(map[key]SerialPress, len(presses))
	for _, p := range presses {
		pressed[key{p.Device, uint64(p.Counter)}] = p
	}
	valid, rejected := g.snapshot()
	delivered := make(map[key]int)
	for _, d := range valid {
		ev := d.Decoded.Event
		k := key{ev.Device, ev.Seq}
		p, ok := pressed[k]
		require.True(t, ok, "delivered %s seq %d was never pressed", ev.Device, ev.Seq)
		assert.Equal(t, p.ID, ev.ID)
		assert.Equal(t, p.Type, ev.Type)
		assert.True(t, d.Monotonic)
		delivered[k]++
	}
	// Deduplicated by (device, counter), as the journal does, every press
	// arrived exactly once.
	assert.Len(t, delivered, len(presses))
	for k := range pressed {
		assert.GreaterOrEqual(t, delivered[k], 1, "%s counter %d never delivered", k.device, k.counter)
	}
	// Retransmissions and replays arrive again; they are valid frames the
	// journal recognises by (device, counter).
	assert.GreaterOrEqual(t, uint64(len(valid)), uint64(len(presses))+s.Replayed)

	reasons := make(map[string]int)
	for _, d := range rejected {
		reason := devices.Reason(d.Err)
		reasons[reason]++
		assert.Contains(t, []string{"crc", "frame", "mac"}, reason, "%v", d.Err)
		assert.True(t, strings.HasPrefix(d.Err.Error(), "serial: "+reason+": "), d.Err.Error())
		if reason == "mac" {
			assert.Contains(t, keys, d.Device, "a forged frame names a real pendant")
		}
	}
	assert.GreaterOrEqual(t, uint64(reasons["crc"]+reasons["frame"]), s.Truncated, "every cut frame is rejected")
	ps := g.port.Stats()
	assert.Equal(t, uint64(len(rejected)), ps.RejectedTotal())
	t.Logf("relay: %s", s)
	t.Logf("port: frames=%d accepted=%d rejected=%v acks=%d", ps.Frames, ps.Accepted, ps.Rejected, ps.AcksSent)
}

func TestSerialRelayCountersPersist(t *testing.T) {
	dir := t.TempDir()
	keys := pendantKeys("btn-1", "btn-2")
	open := func() *SerialRelay {
		pt, err := OpenPTY("")
		require.NoError(t, err)
		t.Cleanup(func() { pt.Close() })
		r, err := NewSerialRelay(SerialRelayConfig{Line: pt.Master, Site: "s", Pendants: keys, SeqDir: dir})
		require.NoError(t, err)
		t.Cleanup(r.Close)
		return r
	}
	r := open()
	a, err := r.Press(t.Context(), "btn-1", devices.TypeHeartbeat)
	require.NoError(t, err)
	b, err := r.Press(t.Context(), "btn-1", devices.TypeHeartbeat)
	require.NoError(t, err)
	assert.Equal(t, a.Counter+1, b.Counter)
	assert.InDelta(t, time.Now().Unix(), int64(a.Counter), 5, "the first counter is the Unix time in seconds")
	r.Close()
	_, err = r.Press(t.Context(), "btn-1", devices.TypeHeartbeat)
	assert.ErrorIs(t, err, ErrRelayClosed)

	saved, err := os.ReadFile(filepath.Join(dir, "btn-1.seq"))
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(uint64(b.Counter), 10), strings.TrimSpace(string(saved)))

	c, err := open().Press(t.Context(), "btn-1", devices.TypeHeartbeat)
	require.NoError(t, err)
	assert.Equal(t, b.Counter+1, c.Counter, "a restarted relay continues after the recorded counter")
}

func TestSerialRelayConfigChecks(t *testing.T) {
	pt, err := OpenPTY("")
	require.NoError(t, err)
	t.Cleanup(func() { pt.Close() })
	ok := SerialRelayConfig{Line: pt.Master, Site: "s", Pendants: pendantKeys("btn-1")}
	for _, tc := range []struct {
		name string
		mut  func(*SerialRelayConfig)
		msg  string
	}{
		{"no line", func(c *SerialRelayConfig) { c.Line = nil }, "needs a port path or an open line"},
		{"both", func(c *SerialRelayConfig) { c.Port = "/dev/ttyUSB9" }, "not both"},
		{"bad site", func(c *SerialRelayConfig) { c.Site = "" }, `site "" is not a valid id`},
		{"no pendants", func(c *SerialRelayConfig) { c.Pendants = nil }, "no pendants"},
		{"bad id", func(c *SerialRelayConfig) { c.Pendants = map[string][]byte{"a b": pendantKey("x")} }, `pendant "a b" is not a valid id`},
		{"short key", func(c *SerialRelayConfig) { c.Pendants = map[string][]byte{"btn-1": []byte("short")} }, "key of 5 bytes is too short"},
		{"bad rate", func(c *SerialRelayConfig) { c.WrongKey = 1.5 }, "wrong-key rate 1.5"},
		{"negative interval", func(c *SerialRelayConfig) { c.RetransmitInterval = -time.Second }, "retransmit interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mut(&cfg)
			_, err := NewSerialRelay(cfg)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "firmwaresim: "), err.Error())
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	// The port is opened by Run, which fails with why; Press then fails too.
	r, err := NewSerialRelay(SerialRelayConfig{Port: filepath.Join(t.TempDir(), "nothing"), Site: "s", Pendants: pendantKeys("btn-1")})
	require.NoError(t, err)
	err = r.Run(t.Context())
	assert.ErrorContains(t, err, "firmwaresim: open ")
	assert.ErrorContains(t, err, "nothing")
	_, err = r.Press(t.Context(), "btn-1", devices.TypeDuress)
	assert.ErrorIs(t, err, ErrRelayClosed)
	assert.ErrorContains(t, r.Run(t.Context()), "already running")
}

func TestOpenPTYLink(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "ttyRELAY")
	pt, err := OpenPTY(link)
	require.NoError(t, err)
	target, err := os.Readlink(link)
	require.NoError(t, err)
	assert.Equal(t, pt.Path, target)

	// A second pty takes the link over, as after a simulated replug.
	pt2, err := OpenPTY(link)
	require.NoError(t, err)
	target, _ = os.Readlink(link)
	assert.Equal(t, pt2.Path, target)
	require.NoError(t, pt.Close())
	_, err = os.Lstat(link)
	assert.NoError(t, err, "closing the old pty leaves the new link alone")
	require.NoError(t, pt2.Close())
	_, err = os.Lstat(link)
	assert.True(t, os.IsNotExist(err), "closing removes its own link")

	regular := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(regular, []byte("keep me"), 0o600))
	_, err = OpenPTY(regular)
	assert.ErrorContains(t, err, "exists and is not a symbolic link")
	b, _ := os.ReadFile(regular)
	assert.Equal(t, "keep me", string(b))
}
