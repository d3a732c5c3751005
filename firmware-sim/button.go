package firmwaresim

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/vigil-gw/vigil/devices"
)

// Defaults applied to a zero ButtonConfig field.
const (
	DefaultHeartbeat         = 30 * time.Second
	DefaultReconnectInterval = 5 * time.Second
	DefaultConnectTimeout    = 10 * time.Second
)

// maxPending bounds how many unconfirmed duress presses a button remembers,
// so a fleet running for days against a gateway that never answers does not
// grow without limit. The oldest press is forgotten first.
const maxPending = 1024

// ErrNotConnected is returned by publishing methods called before Connect or
// after Close.
var ErrNotConnected = errors.New("firmwaresim: button is not connected")

// ErrUnknownPress is returned by WaitReceived for a seq that is not a duress
// this button published (or one so old it has been forgotten).
var ErrUnknownPress = errors.New("firmwaresim: no such duress press")

// ButtonConfig describes one simulated duress button.
type ButtonConfig struct {
	// Broker is the MQTT broker URL, tcp://host:port or ssl://host:port.
	Broker string
	// Username and Password authenticate to the broker when Username is set.
	Username string
	Password string
	// TLS configures ssl:// connections; nil means the system roots and the
	// host name from Broker.
	TLS *tls.Config

	// Site and Device name the button in its topics and payloads; both must
	// satisfy devices.ValidID.
	Site   string
	Device string

	// Lat, Lon and AccM are the position reported with every event. A zero
	// Lat and Lon leave the location out, as a button without a fix does.
	Lat, Lon, AccM float64
	// Place is the on-site location text reported with every event ("Ward 7,
	// bay 3"), as a pendant paired with an indoor beacon reports it; "" for
	// none.
	Place string
	// Battery is the charge in percent reported with every event; 0 leaves
	// the field out. Battery events change it.
	Battery int

	// Heartbeat is the interval of the Run loop (DefaultHeartbeat if zero).
	Heartbeat time.Duration
	// ClockSkew is added to Now for event timestamps, to simulate a device
	// whose clock is wrong. Round-trip times are not affected.
	ClockSkew time.Duration
	// Faults makes the button publish malformed or duplicated events.
	Faults

	// FirstSeq is the first sequence number when no SeqFile holds one; zero
	// means Now in Unix milliseconds, which a restarted simulator will not
	// have reached before unless it published faster than once a millisecond.
	FirstSeq uint64
	// SeqFile, if set, records the last sequence number used, durably, before
	// each publish, and the next run continues after it.
	SeqFile string

	// ReconnectInterval caps the wait between reconnection attempts
	// (DefaultReconnectInterval if zero).
	ReconnectInterval time.Duration
	// ConnectTimeout bounds one connection attempt, TCP and TLS handshake
	// and CONNACK (DefaultConnectTimeout if zero). A broker that accepts the
	// socket but never answers holds a reconnect up for this long.
	ConnectTimeout time.Duration
	// Seed makes the fault decisions reproducible; zero means random.
	Seed uint64
	// Now is the device clock for timestamps (time.Now if nil).
	Now func() time.Time
	// Logger receives connection and protocol diagnostics (discarded if nil).
	Logger *slog.Logger
}

func (c *ButtonConfig) setDefaults() {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = DefaultReconnectInterval
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
}

func (c *ButtonConfig) validate() error {
	if err := validateBroker(c.Broker); err != nil {
		return err
	}
	if !devices.ValidID(c.Site) {
		return fmt.Errorf("firmwaresim: site %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", c.Site)
	}
	if !devices.ValidID(c.Device) {
		return fmt.Errorf("firmwaresim: device %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", c.Device)
	}
	if !(c.Lat >= -90 && c.Lat <= 90) || !(c.Lon >= -180 && c.Lon <= 180) || !(c.AccM >= 0) {
		return fmt.Errorf("firmwaresim: lat %g lon %g acc %g is not a position", c.Lat, c.Lon, c.AccM)
	}
	if c.Battery < 0 || c.Battery > 100 {
		return fmt.Errorf("firmwaresim: battery %d is not a percentage", c.Battery)
	}
	if c.Heartbeat < 0 || c.ReconnectInterval < 0 || c.ConnectTimeout < 0 {
		return fmt.Errorf("firmwaresim: heartbeat %s, reconnect interval %s and connect timeout %s must not be negative",
			c.Heartbeat, c.ReconnectInterval, c.ConnectTimeout)
	}
	return c.Faults.validate()
}

// validateBroker accepts the URL forms the simulator supports.
func validateBroker(broker string) error {
	u, err := url.Parse(broker)
	if err != nil {
		return fmt.Errorf("firmwaresim: broker URL %q: %w", broker, err)
	}
	if u.Scheme != "tcp" && u.Scheme != "ssl" {
		return fmt.Errorf("firmwaresim: broker URL %q: scheme must be tcp or ssl", broker)
	}
	if u.Host == "" || u.Port() == "" {
		return fmt.Errorf("firmwaresim: broker URL %q: want host:port", broker)
	}
	return nil
}

// Press records one event the button queued for sending: a button press or
// an automatic report.
type Press struct {
	// Seq is the event's sequence number; a duress's Seq is what
	// WaitReceived takes.
	Seq uint64
	// ID is the event's unique id.
	ID string
	// Type is the event type.
	Type devices.Type
	// At is when the event was queued for sending, i.e. the moment of the
	// press (wall clock with monotonic reading; the event's own ts may be
	// skewed).
	At time.Time
	// Malformed is the kind of broken payload sent instead of the event, if any.
	Malformed Malformation
	// Duplicated is set when the event was published twice.
	Duplicated bool
}

// Confirmation is the gateway's answer to a duress press.
type Confirmation struct {
	// Seq is the sequence number of the duress confirmed.
	Seq uint64
	// Alert is the id of the alert the gateway raised for it.
	Alert string
	// RoundTrip is from the press (Press.At) to receiving alert_received:
	// what the wearer waits for the haptic confirmation, including any time
	// the duress spent queued behind an unacknowledged event.
	RoundTrip time.Duration
}

// pending is a duress awaiting its alert_received command.
type pending struct {
	at   time.Time
	done chan struct{} // closed when conf is set
	conf Confirmation
}

// outbound is one payload waiting in a button's send queue.
type outbound struct {
	payload   []byte
	typ       devices.Type
	seq       uint64
	malformed Malformation
	duplicate bool // the second copy of a duplicated event
}

// Button is one simulated duress button with its own persistent MQTT
// session. Its methods are safe for concurrent use.
//
// Events go through the button's own FIFO queue, and a sender goroutine hands
// them to paho one at a time, each only after the broker has acknowledged the
// previous one. That is how a device's firmware behaves, and it is needed for
// order: paho resends its stored messages after a reconnect concurrently with
// new publishes, so with several in flight a queued event could reach the
// broker after a newer one.
type Button struct {
	cfg   ButtonConfig
	log   *slog.Logger
	seq   *seqSource
	stats *counters
	store *notifyingStore
	event string // event topic
	cmd   string // command topic

	wake chan struct{} // nudges the sender: the queue grew or a PUBACK came
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the sender has returned

	mu      sync.Mutex
	client  paho.Client
	closed  bool
	battery int
	rng     *rand.Rand
	queue   []outbound
	pending map[uint64]*pending
	// commands are every command received; commandSignal is closed and
	// replaced when one arrives.
	commands      []devices.Command
	commandSignal chan struct{}
	subscribed    chan struct{} // closed after the first command subscription
	lastErr       error         // the latest failed connection attempt
}

// notifyingStore is paho's ordered in-memory session store, which also tells
// the sender when a message leaves it (on PUBACK). The ordered store resends
// queued messages in publication order; the default one uses map order.
type notifyingStore struct {
	*paho.OrderedMemoryStore
	deleted func()
}

// Del removes a message, then nudges the sender.
func (s *notifyingStore) Del(key string) {
	s.OrderedMemoryStore.Del(key)
	s.deleted()
}

// inFlight counts the event publishes in the store: sent or queued by paho
// but not yet acknowledged by the broker.
func (s *notifyingStore) inFlight() int {
	n := 0
	for _, k := range s.All() {
		if !strings.HasPrefix(k, "o.") { // outbound keys; inbound are "i."
			continue
		}
		if _, ok := s.Get(k).(*packets.PublishPacket); ok {
			n++
		}
	}
	return n
}

// NewButton validates cfg and makes a button; Connect brings it online.
func NewButton(cfg ButtonConfig) (*Button, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newButton(cfg, &counters{})
}

func newButton(cfg ButtonConfig, stats *counters) (*Button, error) {
	first := cfg.FirstSeq
	if first == 0 {
		first = uint64(cfg.Now().UnixMilli())
	}
	seq, err := newSeqSource(cfg.SeqFile, first)
	if err != nil {
		return nil, err
	}
	b := &Button{
		cfg:           cfg,
		log:           cfg.Logger.With("component", "firmware-sim", "site", cfg.Site, "device", cfg.Device),
		seq:           seq,
		stats:         stats,
		event:         devices.EventTopic(cfg.Site, cfg.Device),
		cmd:           devices.CommandTopic(cfg.Site, cfg.Device),
		wake:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
		battery:       cfg.Battery,
		rng:           rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		pending:       make(map[uint64]*pending),
		commandSignal: make(chan struct{}),
		subscribed:    make(chan struct{}),
	}
	b.store = &notifyingStore{OrderedMemoryStore: paho.NewOrderedMemoryStore(), deleted: b.nudge}
	return b, nil
}

// nudge wakes the sender without blocking; one pending wake-up is enough
// because the sender re-checks everything when it wakes.
func (b *Button) nudge() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Device is the button's device id.
func (b *Button) Device() string { return b.cfg.Device }

// ClientID is the MQTT client id, stable across runs so that the broker keeps
// the session (and any commands queued for it) while the simulator is down.
func (b *Button) ClientID() string { return "sim-" + b.cfg.Site + "-" + b.cfg.Device }

// Connect opens the MQTT session and returns once the button is connected and
// subscribed to its command topic, or when ctx ends. The client keeps
// reconnecting by itself after that; if ctx ends first, Connect closes it.
func (b *Button) Connect(ctx context.Context) error {
	if err := b.start(); err != nil {
		return err
	}
	if err := b.waitSubscribed(ctx); err != nil {
		b.Close()
		return err
	}
	return nil
}

// start creates the client and the sender and begins connecting without
// waiting. Events published before the connection is up wait in the queue.
func (b *Button) start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrNotConnected
	}
	if b.client != nil {
		return errors.New("firmwaresim: button already connected")
	}
	opts := paho.NewClientOptions().
		AddBroker(b.cfg.Broker).
		SetClientID(b.ClientID()).
		SetProtocolVersion(4).
		// A persistent session: the broker keeps the command subscription
		// and queues alert_received while we are away.
		SetCleanSession(false).
		SetAutoReconnect(true).
		// ConnectRetry keeps retrying the first connection too, so a
		// simulator started before its broker waits for it.
		SetConnectRetry(true).
		SetConnectRetryInterval(b.cfg.ReconnectInterval).
		SetMaxReconnectInterval(b.cfg.ReconnectInterval).
		SetConnectTimeout(b.cfg.ConnectTimeout).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetStore(b.store).
		SetDefaultPublishHandler(b.onMessage).
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			b.log.Warn("connection lost; events are queued until it returns", "err", err)
		}).
		SetConnectionNotificationHandler(b.onNotification)
	if b.cfg.Username != "" {
		opts.SetUsername(b.cfg.Username).SetPassword(b.cfg.Password)
	}
	if b.cfg.TLS != nil {
		opts.SetTLSConfig(b.cfg.TLS)
	}
	b.client = paho.NewClient(opts)
	// With ConnectRetry the token completes once connected, after paho has
	// resent what its store held; waitSubscribed watches the subscription.
	connected := b.client.Connect()
	go b.send(b.client, connected)
	return nil
}

// onConnect (re)subscribes to the command topic after every connection: a
// broker that lost its sessions (a restart without persistence) would
// otherwise never deliver another command.
func (b *Button) onConnect(c paho.Client) {
	tok := c.Subscribe(b.cmd, 1, b.onMessage)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.log.Error("subscribe to the command topic failed", "topic", b.cmd, "err", tok.Error())
		return
	}
	b.log.Debug("connected and subscribed", "topic", b.cmd)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastErr = nil
	select {
	case <-b.subscribed:
	default:
		close(b.subscribed)
	}
}

// onNotification remembers why the latest connection attempt failed, so a
// timeout can say more than "timed out". paho calls it synchronously.
func (b *Button) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	var err error
	switch n := n.(type) {
	case paho.ConnectionNotificationFailed:
		err = n.Reason
	case paho.ConnectionNotificationBrokerFailed:
		err = n.Reason
	default:
		return
	}
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
}

func (b *Button) waitSubscribed(ctx context.Context) error {
	select {
	case <-b.subscribed:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		last := b.lastErr
		b.mu.Unlock()
		if last != nil {
			return fmt.Errorf("firmwaresim: connect %s to %s: %w (last attempt: %v)", b.cfg.Device, b.cfg.Broker, ctx.Err(), last)
		}
		return fmt.Errorf("firmwaresim: connect %s to %s: %w", b.cfg.Device, b.cfg.Broker, ctx.Err())
	}
}

// Connected reports whether the connection to the broker is open now.
func (b *Button) Connected() bool {
	b.mu.Lock()
	c := b.client
	b.mu.Unlock()
	return c != nil && c.IsConnectionOpen()
}

// Queued is the number of events the broker has not acknowledged yet, in
// the button's queue or in flight: they are delivered when the connection
// allows and lost only if the button is closed first.
func (b *Button) Queued() int {
	b.mu.Lock()
	n := len(b.queue)
	b.mu.Unlock()
	return n + b.store.inFlight()
}

// Flush waits until the broker has acknowledged every event published so far,
// or ctx ends. Call it before Close when the last events must not be lost.
func (b *Button) Flush(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		n := b.Queued()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("firmwaresim: flush %s: %d events not acknowledged: %w", b.cfg.Device, n, ctx.Err())
		case <-t.C:
		}
	}
}

// Close stops the sender and ends the session. Events still queued (see
// Queued) are lost, as they are when a device is switched off.
func (b *Button) Close() {
	b.mu.Lock()
	c := b.client
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if already {
		return
	}
	close(b.stop)
	if c == nil {
		return
	}
	<-b.done
	c.Disconnect(250)
}

// Duress publishes a duress event: the wearer pressed the button. It returns
// once the event is queued for sending, without waiting for the connection
// or the broker's PUBACK (see Queued and Flush); use WaitReceived for the
// gateway's confirmation.
func (b *Button) Duress(ctx context.Context) (Press, error) {
	return b.emit(ctx, devices.TypeDuress, nil)
}

// Cancel publishes a duress_cancel event: the wearer stood the alarm down.
func (b *Button) Cancel(ctx context.Context) (Press, error) {
	return b.emit(ctx, devices.TypeDuressCancel, nil)
}

// ManDown publishes a man_down event: the device detected a fall and the
// wearer did not cancel within the device's own window. WaitReceived works
// for it as for a duress.
func (b *Button) ManDown(ctx context.Context) (Press, error) {
	return b.emit(ctx, devices.TypeManDown, nil)
}

// CovertCancel publishes a duress_cancel entered with the duress PIN: to
// anyone watching it cancels; to the gateway it is a silent duress.
func (b *Button) CovertCancel(ctx context.Context) (Press, error) {
	return b.emit(ctx, devices.TypeDuressCancel, nil, func(e *devices.Event) { e.Covert = true })
}

// AmberStart begins a timed visit of d with a note saying where and why.
func (b *Button) AmberStart(ctx context.Context, d time.Duration, note string) (Press, error) {
	return b.emit(ctx, devices.TypeAmberStart, nil, func(e *devices.Event) { e.DurationS, e.Note = int(d/time.Second), note })
}

// AmberExtend asks for d more, counted from now.
func (b *Button) AmberExtend(ctx context.Context, d time.Duration) (Press, error) {
	return b.emit(ctx, devices.TypeAmberExtend, nil, func(e *devices.Event) { e.DurationS = int(d / time.Second) })
}

// CheckIn ends the timed visit: the wearer is safe.
func (b *Button) CheckIn(ctx context.Context) (Press, error) {
	return b.emit(ctx, devices.TypeAmberCheckin, nil)
}

// Report publishes a report event: the wearer records an incident that
// needed no alarm, kind devices.ReportVerbal or devices.ReportPhysical. Use
// Flush to wait for the broker to have it; the gateway sends no reply.
func (b *Button) Report(ctx context.Context, kind string) (Press, error) {
	if kind != devices.ReportVerbal && kind != devices.ReportPhysical {
		return Press{}, fmt.Errorf("firmwaresim: report kind %q is not %q or %q", kind, devices.ReportVerbal, devices.ReportPhysical)
	}
	return b.emit(ctx, devices.TypeReport, nil, func(e *devices.Event) { e.Kind = kind })
}

// Heartbeat publishes a heartbeat event, which tells the gateway the button
// is alive (its absence raises a loss-of-supervision trouble).
func (b *Button) Heartbeat(ctx context.Context) (Press, error) {
	return b.emit(ctx, devices.TypeHeartbeat, nil)
}

// Battery sets the charge level to pct percent and publishes a battery event
// carrying it.
func (b *Button) Battery(ctx context.Context, pct int) (Press, error) {
	if pct < 0 || pct > 100 {
		return Press{}, fmt.Errorf("firmwaresim: battery %d is not a percentage", pct)
	}
	b.mu.Lock()
	b.battery = pct
	b.mu.Unlock()
	return b.emit(ctx, devices.TypeBattery, &pct)
}

// Run publishes a heartbeat at once and then every Heartbeat interval until
// ctx ends, when it returns nil. A heartbeat that cannot be queued is logged
// and the loop goes on, as a device's would.
func (b *Button) Run(ctx context.Context) error {
	b.mu.Lock()
	started := b.client != nil
	b.mu.Unlock()
	if !started {
		return ErrNotConnected
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := b.Heartbeat(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("heartbeat not published", "err", err)
			}
			t.Reset(b.cfg.Heartbeat)
		}
	}
}

// emit builds an event, possibly breaks or doubles it, and queues it for the
// sender. battery overrides the reported level (a battery event carries the
// new level even when it is 0).
func (b *Button) emit(ctx context.Context, typ devices.Type, battery *int, with ...func(*devices.Event)) (Press, error) {
	if err := ctx.Err(); err != nil {
		return Press{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil || b.closed {
		return Press{}, ErrNotConnected
	}
	if battery == nil && b.battery > 0 {
		level := b.battery
		battery = &level
	}
	// Taking the seq and queueing under one lock keeps the queue in seq order.
	seq, err := b.seq.take()
	if err != nil {
		return Press{}, err
	}
	ev := devices.Event{
		V:       devices.Version,
		ID:      crand.Text(), // 26 random base32 characters: unique without coordination
		Device:  b.cfg.Device,
		Seq:     seq,
		Type:    typ,
		TS:      b.cfg.Now().Add(b.cfg.ClockSkew).UTC().Truncate(time.Millisecond),
		Battery: battery,
	}
	if b.cfg.Lat != 0 || b.cfg.Lon != 0 {
		ev.Loc = &devices.Location{Lat: b.cfg.Lat, Lon: b.cfg.Lon, AccM: b.cfg.AccM}
	}
	ev.Place = b.cfg.Place
	for _, f := range with {
		f(&ev)
	}
	p := Press{Seq: seq, ID: ev.ID, Type: typ}
	// Always draw the same numbers so one rate does not shift the others'
	// random sequence.
	m, d, k := b.rng.Float64(), b.rng.Float64(), b.rng.IntN(len(malformations))
	var payload []byte
	if m < b.cfg.MalformedRate {
		p.Malformed = malformations[k]
		payload, err = malform(ev, p.Malformed, b.rng)
	} else {
		payload, err = devices.Encode(ev)
		p.Duplicated = d < b.cfg.DuplicateRate
	}
	if err != nil {
		return Press{}, err
	}

	p.At = time.Now()
	if typ.Alarm() {
		b.track(seq, p.At)
	}
	out := outbound{payload: payload, typ: typ, seq: seq, malformed: p.Malformed}
	b.queue = append(b.queue, out)
	if p.Duplicated {
		out.duplicate = true
		b.queue = append(b.queue, out)
	}
	b.nudge()
	return p, nil
}

// send is the button's sender goroutine: it hands queued payloads to paho
// with QoS 1, one at a time, each once the broker has acknowledged the one
// before (the store holds no publish). While the connection is down the one
// handed over waits in paho's store and the rest in the queue; paho sends its
// stored message first on reconnect. It returns when Close is called.
//
// It starts only once the first connection is complete: paho marks the
// client connected before it resends its store, so a message published in
// between is sent twice, once directly and once by the resend.
func (b *Button) send(client paho.Client, connected paho.Token) {
	defer close(b.done)
	select {
	case <-connected.Done():
	case <-b.stop:
		return
	}
	for {
		select {
		case <-b.stop:
			return
		case <-b.wake:
		}
		for b.store.inFlight() == 0 {
			b.mu.Lock()
			if len(b.queue) == 0 {
				b.mu.Unlock()
				break
			}
			out := b.queue[0]
			b.mu.Unlock()
			b.publish(client, out)
			// Dequeue only now, so that Queued (and so Flush) never misses
			// an event that is between the queue and paho's store; it may
			// count one twice for a moment instead.
			b.mu.Lock()
			b.queue[0] = outbound{}
			b.queue = b.queue[1:]
			b.mu.Unlock()
		}
	}
}

// publish hands one payload to paho and counts it. Publish stores a QoS 1
// message before it returns, whatever the connection state, so only an
// immediate refusal (client closed, no message id free) loses it. A token that
// completes later with an error does not mean the message is lost: it stays
// in the store until the broker acknowledges it.
func (b *Button) publish(client paho.Client, out outbound) {
	tok := client.Publish(b.event, 1, false, out.payload)
	select {
	case <-tok.Done():
		err := tok.Error()
		if errors.Is(err, paho.ErrNotConnected) {
			b.stats.publishErrors.Add(1)
			b.log.Error("event dropped: the MQTT client is closed", "type", out.typ, "seq", out.seq)
			return
		}
		if err != nil {
			// For example a write timeout: the message is already in the
			// store and goes out again on reconnect.
			b.log.Warn("publish reported an error; the event stays queued", "type", out.typ, "seq", out.seq, "err", err)
		}
	default:
	}
	switch {
	case out.malformed != "":
		b.stats.addMalformed(out.malformed)
		b.log.Debug("published malformed payload", "kind", out.malformed, "seq", out.seq)
	case out.duplicate:
		b.stats.duplicates.Add(1)
	default:
		b.stats.addPublished(out.typ)
	}
}

// track remembers a duress so its confirmation can be matched and timed.
// The caller holds b.mu.
func (b *Button) track(seq uint64, at time.Time) {
	if len(b.pending) >= maxPending {
		oldest := seq
		for s := range b.pending {
			oldest = min(oldest, s)
		}
		delete(b.pending, oldest)
	}
	b.pending[seq] = &pending{at: at, done: make(chan struct{})}
}

// onMessage handles a message on the command topic. It runs on paho's
// delivery goroutine and must not block.
func (b *Button) onMessage(_ paho.Client, m paho.Message) {
	if m.Topic() != b.cmd {
		b.log.Warn("message on an unexpected topic ignored", "topic", m.Topic())
		return
	}
	cmd, err := devices.DecodeCommand(m.Payload())
	if err != nil {
		b.stats.badCommands.Add(1)
		b.log.Warn("undecodable command ignored", "err", err)
		return
	}
	b.mu.Lock()
	b.commands = append(b.commands, cmd)
	close(b.commandSignal)
	b.commandSignal = make(chan struct{})
	b.mu.Unlock()
	if cmd.Cmd != devices.CmdAlertReceived {
		b.log.Info("command received", "cmd", cmd.Cmd, "alert", cmd.Alert)
		return
	}
	now := time.Now()
	b.mu.Lock()
	p := b.pending[cmd.Seq]
	fresh := false
	if p != nil {
		select {
		case <-p.done: // a QoS 1 redelivery of a confirmation we already have
		default:
			p.conf = Confirmation{Seq: cmd.Seq, Alert: cmd.Alert, RoundTrip: now.Sub(p.at)}
			close(p.done)
			fresh = true
		}
	}
	b.mu.Unlock()
	switch {
	case p == nil:
		b.stats.unmatched.Add(1)
		b.log.Info("alert_received for no pending duress", "seq", cmd.Seq, "alert", cmd.Alert)
	case fresh:
		b.stats.addConfirmed(p.conf.RoundTrip)
		b.log.Debug("duress confirmed", "seq", cmd.Seq, "alert", cmd.Alert, "round_trip", p.conf.RoundTrip)
	}
}

// WaitCommand waits until a command named name has arrived (at any time since
// the button was made) and returns the first such command.
func (b *Button) WaitCommand(ctx context.Context, name string) (devices.Command, error) {
	for {
		b.mu.Lock()
		for _, c := range b.commands {
			if c.Cmd == name {
				b.mu.Unlock()
				return c, nil
			}
		}
		signal := b.commandSignal
		b.mu.Unlock()
		select {
		case <-signal:
		case <-ctx.Done():
			return devices.Command{}, fmt.Errorf("firmwaresim: %s: no %s command: %w", b.cfg.Device, name, ctx.Err())
		}
	}
}

// WaitConfirmation waits for the gateway's alert_received command for the
// duress with sequence number seq and returns it, or fails when ctx ends.
func (b *Button) WaitConfirmation(ctx context.Context, seq uint64) (Confirmation, error) {
	b.mu.Lock()
	p := b.pending[seq]
	b.mu.Unlock()
	if p == nil {
		return Confirmation{}, fmt.Errorf("%w: %s seq %d", ErrUnknownPress, b.cfg.Device, seq)
	}
	select {
	case <-p.done:
		return p.conf, nil
	case <-ctx.Done():
		return Confirmation{}, fmt.Errorf("firmwaresim: %s seq %d: no alert_received: %w", b.cfg.Device, seq, ctx.Err())
	}
}

// WaitReceived waits for the gateway's alert_received command for the duress
// with sequence number seq and returns the publish-to-command round trip.
func (b *Button) WaitReceived(ctx context.Context, seq uint64) (time.Duration, error) {
	c, err := b.WaitConfirmation(ctx, seq)
	return c.RoundTrip, err
}

// Stats returns the button's counters. A button made by a Fleet shares the
// fleet's counters.
func (b *Button) Stats() Stats {
	s := b.stats.snapshot()
	s.Buttons = 1
	if b.Connected() {
		s.Connected = 1
	}
	s.Queued = b.Queued()
	return s
}
