package serial

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bugst "go.bug.st/serial"
	"go.bug.st/serial/enumerator"

	"github.com/vigil-gw/vigil/devices"
)

// Defaults applied to zero Config fields.
const (
	DefaultBaud           = 115200
	DefaultReopenInterval = time.Second
)

// ackQueueLen bounds the acknowledgements waiting for the port. An ack that
// does not fit is dropped and counted: the device retransmits its frame, the
// journal sees a duplicate, and the ack is sent again.
const ackQueueLen = 256

// writerGrace is how long closing a port waits for a write in progress. A
// write blocks only while the line cannot take more bytes (a pty whose other
// end is not read); a real UART drains at line rate.
const writerGrace = 2 * time.Second

// Config says which serial port to read and how to trust what it carries.
type Config struct {
	// Path is the serial device, e.g. /dev/ttyUSB0 or a stable
	// /dev/serial/by-id/... link. Set Path or VIDPID, not both.
	Path string
	// VIDPID finds the port by USB vendor and product id, "0403:6001", when
	// exactly one port matches; it is looked up again at every reopen, so a
	// receiver that comes back under another name is found.
	VIDPID string
	// Baud is the line speed (DefaultBaud if zero); 8 data bits, no parity,
	// one stop bit, no flow control.
	Baud int
	// Site is the site the pendants on this port belong to: frames do not
	// carry it. It must satisfy devices.ValidID.
	Site string
	// Keys returns a device's HMAC key (the registry provides it); a device
	// without one is rejected with reason "device". It is called from the
	// port's reading goroutine only.
	Keys func(device string) ([]byte, bool)
	// OnPort, if set, is told when the port opens (up, nil error) and when it
	// is lost or cannot be opened (down, with why), on each change only. It
	// is not called when Run returns because its context ended.
	OnPort func(up bool, err error)
	// Now is the gateway clock for Received and event validation (time.Now
	// if nil).
	Now func() time.Time
	// Logger receives port and protocol diagnostics (discarded if nil).
	Logger *slog.Logger
	// ReopenInterval is the wait between attempts to open the port
	// (DefaultReopenInterval if zero).
	ReopenInterval time.Duration
}

var vidpidRE = regexp.MustCompile(`^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$`)

// Port reads frames from one serial line and hands each on as a
// devices.Delivery. Its methods are safe for concurrent use.
type Port struct {
	cfg    Config
	handle func(devices.Delivery)
	log    *slog.Logger
	acks   chan []byte // ack frames, ready for the line, for the writer
	stats  counters

	running atomic.Bool
	state   atomic.Int32 // portUnknown, portUp or portDown
}

// Port states, for reporting changes only.
const (
	portUnknown int32 = iota
	portUp
	portDown
)

// New checks cfg and makes a port that calls handle for every frame read, in
// arrival order, on the port's reading goroutine: handle should queue the work
// and return. Run opens the port.
//
// A frame that authenticates is delivered with Monotonic set (the journal
// rejects a counter that is not newer than the last one accepted) and an Ack
// that queues the ack frame for the line; if its event is invalid, Err says
// why, and the ack still lets the device move on once the rejection is
// recorded. Anything else (noise, a truncated or corrupted frame, an unknown
// device, a bad MAC, a run too long to be a frame) is delivered with Err, the
// bytes read and the device id it claims, and an Ack that does nothing: an
// unauthenticated frame is never acknowledged.
func New(cfg Config, handle func(devices.Delivery)) (*Port, error) {
	switch {
	case cfg.Path == "" && cfg.VIDPID == "":
		return nil, errors.New("serial: set the port path or its USB VID:PID")
	case cfg.Path != "" && cfg.VIDPID != "":
		return nil, fmt.Errorf("serial: set the port path (%s) or its USB VID:PID (%s), not both", cfg.Path, cfg.VIDPID)
	case cfg.VIDPID != "" && !vidpidRE.MatchString(cfg.VIDPID):
		return nil, fmt.Errorf("serial: USB id %q: want VID:PID in hex, e.g. 0403:6001", cfg.VIDPID)
	case cfg.Baud < 0:
		return nil, fmt.Errorf("serial: baud rate %d must be positive", cfg.Baud)
	case cfg.ReopenInterval < 0:
		return nil, fmt.Errorf("serial: reopen interval %s must not be negative", cfg.ReopenInterval)
	case !devices.ValidID(cfg.Site):
		return nil, fmt.Errorf("serial: site %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", cfg.Site)
	case cfg.Keys == nil:
		return nil, errors.New("serial: no device key lookup: frames cannot be authenticated")
	case handle == nil:
		return nil, errors.New("serial: no delivery handler")
	}
	if cfg.Baud == 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.ReopenInterval == 0 {
		cfg.ReopenInterval = DefaultReopenInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	name := cfg.Path
	if name == "" {
		name = "usb:" + cfg.VIDPID
	}
	return &Port{
		cfg:    cfg,
		handle: handle,
		log:    cfg.Logger.With("component", "serial", "port", name),
		acks:   make(chan []byte, ackQueueLen),
		stats:  counters{rejected: make(map[string]uint64)},
	}, nil
}

// Run opens the port and reads frames until ctx ends, when it closes the port
// and returns nil. When the port cannot be opened, or is lost (a read fails,
// as when a USB receiver is unplugged), it retries every ReopenInterval,
// logging each new reason once and telling OnPort.
func (p *Port) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("serial: Run is already running for this port")
	}
	defer p.running.Store(false)
	var lastErr string
	for ctx.Err() == nil {
		sp, name, err := p.open()
		if err == nil {
			lastErr = ""
			p.stats.opens.Add(1)
			p.log.Info("serial port open", "device", name, "baud", p.cfg.Baud)
			p.setState(portUp, nil)
			err = p.serve(ctx, sp, name)
			if ctx.Err() != nil {
				break
			}
			p.log.Warn("serial port lost; reopening", "device", name, "err", err, "every", p.cfg.ReopenInterval)
			p.setState(portDown, err)
		} else {
			if err.Error() != lastErr {
				p.log.Error("cannot open serial port; retrying", "err", err, "every", p.cfg.ReopenInterval)
				lastErr = err.Error()
			}
			p.setState(portDown, err)
		}
		t := time.NewTimer(p.cfg.ReopenInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	p.state.Store(portUnknown)
	return nil
}

func (p *Port) setState(s int32, err error) {
	if p.state.Swap(s) != s && p.cfg.OnPort != nil {
		p.cfg.OnPort(s == portUp, err)
	}
}

// Up reports whether the port is open now.
func (p *Port) Up() bool { return p.state.Load() == portUp }

// open opens the configured port, finding it by USB id if so configured.
func (p *Port) open() (bugst.Port, string, error) {
	name := p.cfg.Path
	if name == "" {
		var err error
		if name, err = findUSB(p.cfg.VIDPID); err != nil {
			return nil, "", err
		}
	}
	sp, err := bugst.Open(name, &bugst.Mode{BaudRate: p.cfg.Baud})
	if err != nil {
		return nil, name, fmt.Errorf("serial: open %s: %w", name, err)
	}
	return sp, name, nil
}

// serve reads the open port until a read fails or ctx ends, and writes the
// queued acks meanwhile. It closes the port before it returns.
func (p *Port) serve(ctx context.Context, sp bugst.Port, name string) error {
	topic := "serial:" + name
	// Closing the port is what interrupts a blocked Read.
	stopClosing := context.AfterFunc(ctx, func() { sp.Close() })
	quit, written := make(chan struct{}), make(chan struct{})
	go p.writeAcks(sp, name, quit, written)
	defer func() {
		stopClosing()
		close(quit)
		sp.Close()
		t := time.NewTimer(writerGrace)
		defer t.Stop()
		select {
		case <-written:
		case <-t.C:
			p.log.Error("ack writer stuck in a write to the closed port; leaving it", "device", name)
		}
	}()
	// One deframer per opening of the port: bytes held back when the port
	// is lost are an incomplete frame, which the device will retransmit.
	var df Deframer
	buf := make([]byte, 4096)
	// Discarded bytes are counted before each run is handed on, so whoever
	// sees a frame also sees the noise that came before it in the stats.
	var counted uint64
	account := func() {
		p.stats.discarded.Add(df.Discarded - counted)
		counted = df.Discarded
	}
	emit := func(run []byte, oversize bool) { account(); p.onRun(topic, run, oversize) }
	for {
		n, err := sp.Read(buf)
		df.Feed(buf[:n], emit)
		account()
		if err != nil {
			if df.Pending() > 0 {
				p.log.Debug("incomplete frame at port loss dropped; the device retransmits it", "bytes", df.Pending())
			}
			return fmt.Errorf("serial: read %s: %w", name, err)
		}
	}
}

// writeAcks is the only writer of the port: acks come from whatever goroutine
// made the event durable, and go out one frame at a time.
func (p *Port) writeAcks(sp bugst.Port, name string, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-quit:
			return
		case w := <-p.acks:
			if _, err := sp.Write(w); err != nil {
				p.stats.acksDropped.Add(1)
				p.log.Warn("ack not written; the device will retransmit", "device", name, "err", err)
				continue
			}
			p.stats.acksSent.Add(1)
		}
	}
}

// onRun turns one run read from the line into a Delivery.
func (p *Port) onRun(topic string, run []byte, oversize bool) {
	p.stats.frames.Add(1)
	d := devices.Delivery{Source: "serial", Topic: topic, Received: p.cfg.Now(), Ack: func() {}}
	if oversize {
		p.stats.oversize.Add(1)
		d.Payload = bytes.Clone(run)
		d.Err = errf("frame", "more than %d bytes without a 0x00 delimiter is not a frame; discarded up to the next delimiter", MaxWireFrame)
		p.deliver(d)
		return
	}
	var key []byte
	f, raw, err := Decode(run, func(id string) ([]byte, bool) {
		k, ok := p.cfg.Keys(id)
		key = bytes.Clone(k)
		return k, ok
	})
	d.Device = f.Device
	// The unstuffed frame is a fresh slice; the run belongs to the deframer.
	d.Payload = raw
	if raw == nil {
		d.Payload = bytes.Clone(run)
	}
	if err != nil {
		// A duress from a pendant the gateway has no key for is never
		// dropped: it goes on unauthenticated, to be raised unverified (to
		// people, not to the ARC). It cannot be acknowledged without the key,
		// so the pendant keeps retransmitting; the journal deduplicates.
		if devices.Reason(err) == "device" && f.Type == FrameEvent {
			if dec, derr := DecodeEvent(f, p.cfg.Site, d.Received); derr == nil && dec.Event.Type.Alarm() {
				dec.Warnings = append(dec.Warnings, "serial frame not authenticated: "+err.Error())
				d.Decoded, d.Unauthenticated = dec, true
				p.deliver(d)
				return
			}
		}
		d.Err = err
		p.deliver(d)
		return
	}
	// Authenticated: the counter is the device's and cannot have been
	// rewound by anyone without its key.
	d.Monotonic = true
	d.Decoded, d.Err = DecodeEvent(f, p.cfg.Site, d.Received)
	if f.Type == FrameEvent {
		d.Ack = p.acker(f.Device, f.Counter, key)
	}
	p.deliver(d)
}

func (p *Port) deliver(d devices.Delivery) {
	if d.Err != nil {
		reason := devices.Reason(d.Err)
		p.stats.reject(reason)
		p.log.Debug("frame rejected", "reason", reason, "claimed_device", d.Device, "err", d.Err)
	} else {
		p.stats.accepted.Add(1)
	}
	p.handle(d)
}

// acker returns the Ack of an authenticated event frame: it queues the ack
// frame for the writer, once, without blocking its caller (the journal's
// commit loop must not wait for a serial line).
func (p *Port) acker(device string, counter uint32, key []byte) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			w, err := Encode(Frame{Type: FrameAck, Device: device, Counter: counter}, key)
			if err != nil { // cannot happen for a frame that authenticated
				p.stats.acksDropped.Add(1)
				p.log.Error("ack not encoded", "device", device, "counter", counter, "err", err)
				return
			}
			select {
			case p.acks <- w:
			default:
				p.stats.acksDropped.Add(1)
				p.log.Warn("ack queue full; ack dropped, the device will retransmit", "device", device, "counter", counter)
			}
		})
	}
}

// Stats is a snapshot of what a port has read and written since New.
type Stats struct {
	// Up says the port is open now.
	Up bool
	// Opens counts successful opens (1 + reopens after losses).
	Opens uint64
	// Frames counts runs of bytes read between delimiters: frames, noise,
	// truncated frames and oversize runs alike.
	Frames uint64
	// Accepted counts authenticated frames with a valid event.
	Accepted uint64
	// Rejected counts the other runs by reason ("crc", "mac", "frame", ...).
	Rejected map[string]uint64
	// Oversize counts runs too long to be a frame (also in Rejected["frame"]).
	Oversize uint64
	// Discarded counts the bytes of oversize runs thrown away unreported.
	Discarded uint64
	// AcksSent counts ack frames written to the line.
	AcksSent uint64
	// AcksDropped counts acks not written (queue full, write failed).
	AcksDropped uint64
}

// RejectedTotal is the number of rejected runs of every reason.
func (s Stats) RejectedTotal() uint64 {
	var n uint64
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	s := p.stats.snapshot()
	s.Up = p.Up()
	return s
}

type counters struct {
	opens, frames, accepted, oversize, discarded, acksSent, acksDropped atomic.Uint64

	mu       sync.Mutex
	rejected map[string]uint64
}

func (c *counters) reject(reason string) {
	c.mu.Lock()
	c.rejected[reason]++
	c.mu.Unlock()
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Opens: c.opens.Load(), Frames: c.frames.Load(), Accepted: c.accepted.Load(),
		Oversize: c.oversize.Load(), Discarded: c.discarded.Load(),
		AcksSent: c.acksSent.Load(), AcksDropped: c.acksDropped.Load(),
	}
	c.mu.Lock()
	s.Rejected = make(map[string]uint64, len(c.rejected))
	for k, v := range c.rejected {
		s.Rejected[k] = v
	}
	c.mu.Unlock()
	return s
}

// PortInfo describes a serial port found on the system.
type PortInfo struct {
	// Name is the device path, e.g. /dev/ttyUSB0.
	Name string
	// USB says the port is a USB adapter; the fields below are then known.
	USB bool
	// VIDPID is the USB vendor and product id, "0403:6001", as Config.VIDPID
	// takes it.
	VIDPID       string
	SerialNumber string // the adapter's USB serial number, if it has one
	Product      string // the adapter's USB product name, if known
}

// List returns the serial ports found on the system, USB ones with their ids,
// for choosing Config.Path or Config.VIDPID (`vigil serial list`).
func List() ([]PortInfo, error) {
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, fmt.Errorf("serial: list ports: %w", err)
	}
	out := make([]PortInfo, 0, len(ports))
	for _, d := range ports {
		if d == nil || d.Name == "" {
			continue
		}
		pi := PortInfo{Name: d.Name, USB: d.IsUSB, SerialNumber: d.SerialNumber, Product: d.Product}
		if d.IsUSB {
			pi.VIDPID = strings.ToLower(d.VID + ":" + d.PID)
		}
		out = append(out, pi)
	}
	slices.SortFunc(out, func(a, b PortInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// findUSB returns the one port with USB id vidpid.
func findUSB(vidpid string) (string, error) {
	ports, err := List()
	if err != nil {
		return "", err
	}
	var names []string
	for _, pi := range ports {
		if pi.USB && strings.EqualFold(pi.VIDPID, vidpid) {
			names = append(names, pi.Name)
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("serial: no serial port with USB id %s (is the receiver plugged in?)", vidpid)
	case 1:
		return names[0], nil
	}
	return "", fmt.Errorf("serial: USB id %s matches %d ports (%s): set the port path instead", vidpid, len(names), strings.Join(names, ", "))
}
