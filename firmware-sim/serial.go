package firmwaresim

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bugst "go.bug.st/serial"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/serial"
)

// DefaultRetransmitInterval is how long a simulated pendant waits for the
// gateway's ack frame before it sends its event frame again.
const DefaultRetransmitInterval = 500 * time.Millisecond

// Bounds on what a relay remembers per pendant.
const (
	// maxReplayHistory is how many acknowledged frames a pendant keeps for
	// the Replay fault to send again.
	maxReplayHistory = 16
	// serialWriteTimeout bounds one write to a line that can time out (a
	// pty): a gateway that is not reading must not wedge the relay.
	serialWriteTimeout = 2 * time.Second
)

// ErrRelayClosed is returned by Press after the relay's Run has returned or
// Close was called.
var ErrRelayClosed = errors.New("firmwaresim: serial relay is closed")

// SerialFaults says how often a relay misbehaves on the line. Each rate is a
// probability per transmission (first sends and retransmissions alike), from
// 0 (never) to 1 (always).
type SerialFaults struct {
	// Noise is the fraction of transmissions preceded by 1-32 random bytes,
	// as a radio picks up interference.
	Noise float64
	// Truncate is the fraction of transmissions cut short: the end of the
	// frame is lost and the pendant retransmits.
	Truncate float64
	// Replay is the fraction of transmissions followed by an earlier frame
	// of the same pendant that the gateway has already acknowledged, sent
	// again byte for byte, as an attacker who recorded it would.
	Replay float64
	// WrongKey is the fraction of transmissions whose MAC is made with a
	// random key instead of the pendant's, as a forger's would be.
	WrongKey float64
}

func (f SerialFaults) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"noise", f.Noise}, {"truncate", f.Truncate}, {"replay", f.Replay}, {"wrong-key", f.WrongKey}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("firmwaresim: %s rate %g is not a fraction between 0 and 1", r.name, r.v)
		}
	}
	return nil
}

// SerialRelayConfig describes a simulated radio receiver that relays many
// pendants onto one serial line.
type SerialRelayConfig struct {
	// Port is the serial device the relay writes to and reads acks from,
	// opened at Baud by Run (e.g. one end of a socat pair, or a USB adapter
	// wired to the gateway's). Set Port or Line, not both.
	Port string
	// Baud is the line speed for Port (115200 if zero).
	Baud int
	// Line is an already open line, such as the master of a PTY. Once
	// NewSerialRelay accepts it the relay owns it, and closes it when Run
	// returns or Close is called.
	Line io.ReadWriteCloser

	// Pendants maps each pendant's device id to its HMAC key (at least 16
	// bytes), the same key the gateway's registry holds for it.
	Pendants map[string][]byte
	// Site is the site the pendants belong to, for logs: frames do not
	// carry it (the gateway's serial port configuration does).
	Site string

	// RetransmitInterval is how long a pendant waits for the ack before it
	// sends its frame again (DefaultRetransmitInterval if zero).
	RetransmitInterval time.Duration
	// SerialFaults makes the relay put noise, cut frames, replays and
	// forgeries on the line.
	SerialFaults

	// FirstCounter is each pendant's first counter when no seq file holds
	// one; zero means Now in Unix seconds, which a restarted simulator will
	// not have reached unless its pendants sent more than one frame a second.
	FirstCounter uint32
	// SeqDir, if set, holds one file per pendant (<id>.seq) recording its
	// last counter, durably, before each event; the next run continues after
	// it. A counter must never be reused: the gateway would take it for a
	// replay.
	SeqDir string

	// Seed makes the fault decisions reproducible; zero means random.
	Seed uint64
	// Now is the pendants' clock for event timestamps (time.Now if nil).
	Now func() time.Time
	// Logger receives line and protocol diagnostics (discarded if nil).
	Logger *slog.Logger
}

// SerialPress records one event a pendant queued for sending.
type SerialPress struct {
	Device  string       // the pendant
	Counter uint32       // the frame counter, also the event's seq; WaitAcked takes it
	ID      string       // the event's unique id
	Type    devices.Type // the event type
	At      time.Time    // when it was queued: the moment of the press
}

// serialFrame is one event frame and its fate.
type serialFrame struct {
	press SerialPress
	frame serial.Frame
	wire  []byte        // as sent, under the pendant's key
	done  chan struct{} // closed when the ack arrives
	rtt   time.Duration // press to ack, set before done is closed
}

// pendant is one simulated pendant behind the relay.
type pendant struct {
	id   string
	key  []byte
	seq  *seqSource
	wake chan struct{} // nudges the sender: a frame was queued or acked

	mu      sync.Mutex
	queue   []*serialFrame          // unacknowledged, in counter order; the head is on the air
	frames  map[uint32]*serialFrame // recent frames by counter, for WaitAcked
	history [][]byte                // recently acknowledged frames, for the Replay fault
}

// SerialRelay is a simulated radio receiver relaying pendants onto a serial
// line in the gateway's serial frame protocol. Each pendant sends one event
// frame at a time, as firmware does: it retransmits the same bytes every
// RetransmitInterval until the gateway's ack frame for that counter arrives
// (with a MAC that verifies), and only then sends its next event. That is
// what the gateway's replay detection relies on: a counter reaches it in
// order, and only the last one is ever repeated. Its methods are safe for
// concurrent use.
type SerialRelay struct {
	cfg      SerialRelayConfig
	log      *slog.Logger
	line     io.ReadWriteCloser // set before Run starts its goroutines
	pendants map[string]*pendant
	ids      []string // sorted, for stable output
	stats    serialCounters

	wmu sync.Mutex // one writer on the line at a time

	rmu sync.Mutex
	rng *rand.Rand

	running    atomic.Bool
	closed     atomic.Bool
	lineMu     sync.Mutex // orders setting line in Run against Close
	lineClosed bool       // guarded by lineMu
}

// NewSerialRelay validates cfg and makes the pendants; Run opens the line
// and puts them on the air. Events can be pressed before Run: they wait.
func NewSerialRelay(cfg SerialRelayConfig) (*SerialRelay, error) {
	if cfg.RetransmitInterval == 0 {
		cfg.RetransmitInterval = DefaultRetransmitInterval
	}
	if cfg.Baud == 0 {
		cfg.Baud = serial.DefaultBaud
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	first := uint64(cfg.FirstCounter)
	if first == 0 {
		first = uint64(max(cfg.Now().Unix(), 1))
	}
	r := &SerialRelay{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "firmware-sim", "relay", cfg.Site),
		pendants: make(map[string]*pendant, len(cfg.Pendants)),
		line:     cfg.Line,
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	for id, key := range cfg.Pendants {
		path := ""
		if cfg.SeqDir != "" {
			path = filepath.Join(cfg.SeqDir, id+".seq")
		}
		seq, err := newSeqSource(path, first)
		if err != nil {
			return nil, err
		}
		r.pendants[id] = &pendant{id: id, key: slices.Clone(key), seq: seq, wake: make(chan struct{}, 1), frames: make(map[uint32]*serialFrame)}
		r.ids = append(r.ids, id)
	}
	slices.Sort(r.ids)
	return r, nil
}

func (c *SerialRelayConfig) validate() error {
	switch {
	case c.Port == "" && c.Line == nil:
		return errors.New("firmwaresim: serial relay needs a port path or an open line")
	case c.Port != "" && c.Line != nil:
		return errors.New("firmwaresim: serial relay takes a port path or an open line, not both")
	case c.Baud < 0:
		return fmt.Errorf("firmwaresim: baud rate %d must be positive", c.Baud)
	case !devices.ValidID(c.Site):
		return fmt.Errorf("firmwaresim: site %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", c.Site)
	case len(c.Pendants) == 0:
		return errors.New("firmwaresim: serial relay has no pendants")
	case c.RetransmitInterval < 0:
		return fmt.Errorf("firmwaresim: retransmit interval %s must not be negative", c.RetransmitInterval)
	}
	for id, key := range c.Pendants {
		if !devices.ValidID(id) {
			return fmt.Errorf("firmwaresim: pendant %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", id)
		}
		if len(key) < 16 {
			return fmt.Errorf("firmwaresim: pendant %s: key of %d bytes is too short (want at least 16, 32 recommended)", id, len(key))
		}
	}
	return c.SerialFaults.validate()
}

// Pendants returns the ids of the relay's pendants, sorted.
func (r *SerialRelay) Pendants() []string { return slices.Clone(r.ids) }

// Run opens the line (for a Port) and puts the pendants on the air: it reads
// the gateway's ack frames and (re)transmits each pendant's event frames
// until ctx ends, when it closes the line and returns nil, or until opening
// or reading the line fails, when it returns why. Run can be called once.
func (r *SerialRelay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("firmwaresim: serial relay is already running")
	}
	if r.cfg.Port != "" {
		sp, err := bugst.Open(r.cfg.Port, &bugst.Mode{BaudRate: r.cfg.Baud})
		if err != nil {
			r.Close()
			return fmt.Errorf("firmwaresim: open %s: %w", r.cfg.Port, err)
		}
		r.lineMu.Lock()
		r.line = sp
		r.lineMu.Unlock()
	}
	if r.closed.Load() {
		r.Close()
		return ErrRelayClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, id := range r.ids {
		p := r.pendants[id]
		wg.Go(func() { r.send(ctx, p) })
	}
	readDone := make(chan error, 1)
	go func() { readDone <- r.read() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-readDone:
		r.log.Error("serial line failed", "err", err)
	}
	cancel()
	// Closing the line interrupts the reader and any write in progress.
	r.Close()
	wg.Wait()
	if err == nil {
		<-readDone
	}
	return err
}

// Close closes the line; Run returns and Press fails from then on. Events
// not yet acknowledged are lost, as they are when a receiver is switched off.
func (r *SerialRelay) Close() {
	r.lineMu.Lock()
	defer r.lineMu.Unlock()
	r.closed.Store(true)
	if r.line == nil || r.lineClosed {
		return
	}
	r.lineClosed = true
	if err := r.line.Close(); err != nil {
		r.log.Debug("closing the serial line", "err", err)
	}
}

// send is a pendant's transmitter: the head of its queue goes on the air,
// again every RetransmitInterval, until it is acknowledged.
func (r *SerialRelay) send(ctx context.Context, p *pendant) {
	var last *serialFrame
	for {
		p.mu.Lock()
		var head *serialFrame
		if len(p.queue) > 0 {
			head = p.queue[0]
		}
		p.mu.Unlock()
		if head == nil {
			select {
			case <-p.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		r.transmit(p, head, head == last)
		last = head
		t := time.NewTimer(r.cfg.RetransmitInterval)
		select {
		case <-head.done:
			t.Stop()
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// transmit puts one event frame on the line, with whatever faults the dice
// decide.
func (r *SerialRelay) transmit(p *pendant, fr *serialFrame, again bool) {
	// Always draw the same numbers so that one rate does not shift the
	// others' random sequence.
	r.rmu.Lock()
	noise, trunc, wrong, replay := r.rng.Float64(), r.rng.Float64(), r.rng.Float64(), r.rng.Float64()
	garbage := make([]byte, 1+r.rng.IntN(32))
	for i := range garbage {
		garbage[i] = byte(r.rng.UintN(256))
	}
	cut := 2 + r.rng.IntN(len(fr.wire)-3) // keeps the leading 0x00 and at least one byte, loses the trailing one
	forger := make([]byte, 32)
	for i := range forger {
		forger[i] = byte(r.rng.UintN(256))
	}
	pick := r.rng.IntN(maxReplayHistory)
	r.rmu.Unlock()

	var out []byte
	if noise < r.cfg.Noise {
		out = append(out, garbage...)
		r.stats.noise.Add(1)
	}
	switch {
	case wrong < r.cfg.WrongKey:
		w, err := serial.Encode(fr.frame, forger)
		if err != nil { // cannot happen: the frame encoded with the real key
			r.log.Error("frame not encoded", "err", err)
			return
		}
		out = append(out, w...)
		r.stats.wrongKey.Add(1)
	case trunc < r.cfg.Truncate:
		out = append(out, fr.wire[:cut]...)
		r.stats.truncated.Add(1)
	default:
		out = append(out, fr.wire...)
	}
	if replay < r.cfg.Replay {
		p.mu.Lock()
		if n := len(p.history); n > 0 {
			out = append(out, p.history[pick%n]...)
			r.stats.replayed.Add(1)
		}
		p.mu.Unlock()
	}
	r.stats.transmissions.Add(1)
	if again {
		r.stats.retransmissions.Add(1)
	}
	r.write(out, p.id, fr.press.Counter)
}

// write puts bytes on the line, one writer at a time so frames do not
// interleave.
func (r *SerialRelay) write(b []byte, device string, counter uint32) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if d, ok := r.line.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(time.Now().Add(serialWriteTimeout)) // not every file supports it
	}
	if _, err := r.line.Write(b); err != nil {
		r.stats.writeErrors.Add(1)
		if !r.closed.Load() {
			r.log.Warn("frame not written; it will be retransmitted", "device", device, "counter", counter, "err", err)
		}
	}
}

// read takes the gateway's frames off the line until it fails.
func (r *SerialRelay) read() error {
	var df serial.Deframer
	buf := make([]byte, 1024)
	for {
		n, err := r.line.Read(buf)
		df.Feed(buf[:n], r.onRun)
		if err != nil {
			if r.closed.Load() {
				return nil
			}
			return fmt.Errorf("firmwaresim: read serial line: %w", err)
		}
	}
}

// keyOf is the relay's key lookup: its own pendants only.
func (r *SerialRelay) keyOf(id string) ([]byte, bool) {
	p, ok := r.pendants[id]
	if !ok {
		return nil, false
	}
	return p.key, true
}

// onRun handles one run read from the gateway: an ack frame, verified as the
// pendant's firmware would (CRC, MAC under its own key, its current counter).
func (r *SerialRelay) onRun(run []byte, oversize bool) {
	if oversize {
		r.stats.badFrames.Add(1)
		return
	}
	f, _, err := serial.Decode(run, r.keyOf)
	if err == nil && f.Type != serial.FrameAck {
		err = fmt.Errorf("%s frame from the gateway", f.Type)
	}
	if err != nil {
		r.stats.badFrames.Add(1)
		r.log.Warn("frame from the gateway ignored", "err", err)
		return
	}
	p := r.pendants[f.Device]
	p.mu.Lock()
	var fr *serialFrame
	if len(p.queue) > 0 && p.queue[0].press.Counter == f.Counter {
		fr = p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		fr.rtt = time.Since(fr.press.At)
		close(fr.done)
		p.history = append(p.history, fr.wire)
		if len(p.history) > maxReplayHistory {
			p.history = p.history[1:]
		}
	}
	p.mu.Unlock()
	if fr == nil {
		// An ack for a replayed frame, or a second ack for one already
		// acknowledged (the gateway re-acks a retransmission).
		r.stats.staleAcks.Add(1)
		r.log.Debug("ack for no frame on the air", "device", f.Device, "counter", f.Counter)
		return
	}
	r.stats.addAcked(fr.rtt)
	r.log.Debug("event acknowledged", "device", f.Device, "counter", f.Counter, "type", fr.press.Type, "round_trip", fr.rtt)
	nudgeChan(p.wake)
}

func nudgeChan(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Press queues an event of type typ from the pendant device with its next
// counter and returns without waiting: the pendant sends it once every event
// before it is acknowledged, and retransmits it until it is itself (see
// WaitAcked). The counter is recorded (in SeqDir, if set) before it is used.
func (r *SerialRelay) Press(ctx context.Context, device string, typ devices.Type) (SerialPress, error) {
	if err := ctx.Err(); err != nil {
		return SerialPress{}, err
	}
	if r.closed.Load() {
		return SerialPress{}, ErrRelayClosed
	}
	p, ok := r.pendants[device]
	if !ok {
		return SerialPress{}, fmt.Errorf("firmwaresim: no pendant %q on this relay", device)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Taking the counter and queueing under one lock keeps the queue in
	// counter order.
	n, err := p.seq.take()
	if err != nil {
		return SerialPress{}, err
	}
	if n > math.MaxUint32 {
		return SerialPress{}, fmt.Errorf("firmwaresim: pendant %s has used every counter: give it a new id and key", device)
	}
	ev := devices.Event{
		V:      devices.Version,
		ID:     crand.Text(), // 26 random base32 characters: unique without coordination
		Device: device,
		Seq:    n,
		Type:   typ,
		TS:     r.cfg.Now().UTC().Truncate(time.Millisecond),
	}
	payload, err := devices.Encode(ev)
	if err != nil {
		return SerialPress{}, err
	}
	f := serial.Frame{Type: serial.FrameEvent, Device: device, Counter: uint32(n), Payload: payload}
	wire, err := serial.Encode(f, p.key)
	if err != nil {
		return SerialPress{}, err
	}
	fr := &serialFrame{
		press: SerialPress{Device: device, Counter: uint32(n), ID: ev.ID, Type: typ, At: time.Now()},
		frame: f, wire: wire, done: make(chan struct{}),
	}
	p.queue = append(p.queue, fr)
	p.remember(fr)
	r.stats.addPressed(typ)
	nudgeChan(p.wake)
	return fr.press, nil
}

// remember keeps fr for WaitAcked, forgetting the oldest acknowledged frame
// once maxPending are kept. The caller holds p.mu.
func (p *pendant) remember(fr *serialFrame) {
	if len(p.frames) >= maxPending {
		oldest, found := uint32(0), false
		for c, f := range p.frames {
			select {
			case <-f.done:
				if !found || c < oldest {
					oldest, found = c, true
				}
			default:
			}
		}
		if found {
			delete(p.frames, oldest)
		}
	}
	p.frames[fr.press.Counter] = fr
}

// WaitAcked waits for the gateway's ack of the pendant's event frame with
// the given counter and returns the press-to-ack round trip, or fails when
// ctx ends.
func (r *SerialRelay) WaitAcked(ctx context.Context, device string, counter uint32) (time.Duration, error) {
	p, ok := r.pendants[device]
	if !ok {
		return 0, fmt.Errorf("firmwaresim: no pendant %q on this relay", device)
	}
	p.mu.Lock()
	fr := p.frames[counter]
	p.mu.Unlock()
	if fr == nil {
		return 0, fmt.Errorf("%w: %s counter %d", ErrUnknownPress, device, counter)
	}
	select {
	case <-fr.done:
		return fr.rtt, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("firmwaresim: %s counter %d: no ack: %w", device, counter, ctx.Err())
	}
}

// Queued is the number of events not acknowledged yet, across all pendants.
func (r *SerialRelay) Queued() int {
	n := 0
	for _, p := range r.pendants {
		p.mu.Lock()
		n += len(p.queue)
		p.mu.Unlock()
	}
	return n
}

// Stats returns the relay's counters.
func (r *SerialRelay) Stats() SerialStats {
	s := r.stats.snapshot()
	s.Pendants = len(r.pendants)
	s.Queued = r.Queued()
	return s
}

// serialCounters are updated lock-free by the relay's goroutines.
type serialCounters struct {
	pressed                               [len(eventTypes)]atomic.Uint64
	transmissions, retransmissions, acked atomic.Uint64
	noise, truncated, wrongKey, replayed  atomic.Uint64
	staleAcks, badFrames, writeErrors     atomic.Uint64
	rttTotal, rttMax                      atomic.Int64 // nanoseconds, over acked
}

func (c *serialCounters) addPressed(t devices.Type) {
	for i, et := range eventTypes {
		if et == t {
			c.pressed[i].Add(1)
			return
		}
	}
}

func (c *serialCounters) addAcked(rtt time.Duration) {
	c.acked.Add(1)
	c.rttTotal.Add(int64(rtt))
	for {
		m := c.rttMax.Load()
		if int64(rtt) <= m || c.rttMax.CompareAndSwap(m, int64(rtt)) {
			return
		}
	}
}

func (c *serialCounters) snapshot() SerialStats {
	s := SerialStats{
		Pressed:         make(map[devices.Type]uint64, len(eventTypes)),
		Transmissions:   c.transmissions.Load(),
		Retransmissions: c.retransmissions.Load(),
		Acked:           c.acked.Load(),
		Noise:           c.noise.Load(),
		Truncated:       c.truncated.Load(),
		WrongKey:        c.wrongKey.Load(),
		Replayed:        c.replayed.Load(),
		StaleAcks:       c.staleAcks.Load(),
		BadFrames:       c.badFrames.Load(),
		WriteErrors:     c.writeErrors.Load(),
		RoundTripMax:    time.Duration(c.rttMax.Load()),
	}
	if s.Acked > 0 {
		s.RoundTripMean = time.Duration(c.rttTotal.Load() / int64(s.Acked))
	}
	for i, t := range eventTypes {
		s.Pressed[t] = c.pressed[i].Load()
	}
	return s
}

// SerialStats is a snapshot of what a serial relay has done since it started.
type SerialStats struct {
	// Pendants is how many pendants the relay carries.
	Pendants int
	// Queued is how many events await the gateway's ack.
	Queued int
	// Pressed counts events queued, by type.
	Pressed map[devices.Type]uint64
	// Transmissions counts event frames put on the line, first sends and
	// retransmissions, faulty or not.
	Transmissions uint64
	// Retransmissions counts the sends of a frame after its first.
	Retransmissions uint64
	// Acked counts events whose ack frame arrived and verified.
	Acked uint64
	// RoundTripMean and RoundTripMax summarise press-to-ack times.
	RoundTripMean, RoundTripMax time.Duration
	// Noise, Truncated, WrongKey and Replayed count the faults injected.
	Noise, Truncated, WrongKey, Replayed uint64
	// StaleAcks counts verified acks for no frame on the air: answers to
	// replays, or a second ack for a retransmitted frame.
	StaleAcks uint64
	// BadFrames counts what the gateway sent that did not decode or verify
	// as an ack frame: it must be zero.
	BadFrames uint64
	// WriteErrors counts writes to the line that failed (the frame is
	// retransmitted).
	WriteErrors uint64
}

// PressedTotal is the number of events of every type queued.
func (s SerialStats) PressedTotal() uint64 { return total(s.Pressed) }

// String renders the snapshot on one line for logs and the command line.
func (s SerialStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pendants %d queued %d pressed", s.Pendants, s.Queued)
	for _, t := range eventTypes {
		fmt.Fprintf(&b, " %s=%d", t, s.Pressed[t])
	}
	fmt.Fprintf(&b, " transmissions=%d retransmissions=%d acked=%d", s.Transmissions, s.Retransmissions, s.Acked)
	if s.Acked > 0 {
		fmt.Fprintf(&b, " round_trip_mean=%s max=%s", s.RoundTripMean.Round(10*time.Microsecond), s.RoundTripMax.Round(10*time.Microsecond))
	}
	if f := s.Noise + s.Truncated + s.WrongKey + s.Replayed; f > 0 {
		fmt.Fprintf(&b, " faults: noise=%d truncated=%d wrong_key=%d replayed=%d", s.Noise, s.Truncated, s.WrongKey, s.Replayed)
	}
	if s.StaleAcks > 0 {
		fmt.Fprintf(&b, " stale_acks=%d", s.StaleAcks)
	}
	if s.BadFrames > 0 {
		fmt.Fprintf(&b, " bad_frames=%d", s.BadFrames)
	}
	if s.WriteErrors > 0 {
		fmt.Fprintf(&b, " write_errors=%d", s.WriteErrors)
	}
	return b.String()
}
