package firmwaresim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigil-gw/vigil/devices"
)

// Fleet defaults applied to a zero FleetConfig field.
const (
	DefaultConnectConcurrency = 16
)

// FleetConfig describes a fleet of simulated buttons on one site.
type FleetConfig struct {
	// Broker, Username, Password and TLS are as in ButtonConfig.
	Broker   string
	Username string
	Password string
	TLS      *tls.Config
	// Site is the site every button belongs to.
	Site string
	// Buttons is the number of buttons, named btn-0001, btn-0002, ….
	Buttons int
	// Lat and Lon, when not both zero, centre the buttons' positions, which
	// are scattered within about two kilometres of it.
	Lat, Lon float64

	// Heartbeat is each button's heartbeat interval (DefaultHeartbeat if
	// zero). The first heartbeats are spread uniformly over one interval so
	// the fleet does not publish in lock-step.
	Heartbeat time.Duration
	// DuressRate is the number of duress presses per second across the whole
	// fleet, as a Poisson process; each press goes to a random button.
	DuressRate float64
	// Faults applies to every button.
	Faults
	// ClockSkew is added to the clocks of a SkewFraction of the buttons.
	ClockSkew time.Duration
	// SkewFraction is the fraction of buttons whose clock is off by
	// ClockSkew; zero means all of them.
	SkewFraction float64

	// ConnectConcurrency limits simultaneous connection handshakes
	// (DefaultConnectConcurrency if zero), so a thousand buttons do not
	// storm the broker.
	ConnectConcurrency int
	// ConnectTimeout bounds each connection attempt, as in ButtonConfig, and
	// how long the fleet waits for one button's first connection before
	// moving on (DefaultConnectTimeout if zero); a button not connected by
	// then keeps trying in the background and queues its events meanwhile.
	ConnectTimeout time.Duration
	// ReconnectInterval is as in ButtonConfig.
	ReconnectInterval time.Duration
	// Seed makes positions, timing and faults reproducible; zero means random.
	Seed uint64
	// Now is the buttons' clock for timestamps (time.Now if nil).
	Now func() time.Time
	// Logger receives diagnostics (discarded if nil).
	Logger *slog.Logger
}

func (c *FleetConfig) setDefaults() {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.SkewFraction == 0 {
		c.SkewFraction = 1
	}
	if c.ConnectConcurrency == 0 {
		c.ConnectConcurrency = DefaultConnectConcurrency
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectInterval == 0 {
		c.ReconnectInterval = DefaultReconnectInterval
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c *FleetConfig) validate() error {
	if err := validateBroker(c.Broker); err != nil {
		return err
	}
	if !devices.ValidID(c.Site) {
		return fmt.Errorf("firmwaresim: site %q is not a valid id (1-64 of A-Z a-z 0-9 _ -)", c.Site)
	}
	if c.Buttons < 1 {
		return fmt.Errorf("firmwaresim: fleet needs at least one button, got %d", c.Buttons)
	}
	if c.Heartbeat < 0 || c.ReconnectInterval < 0 || c.ConnectTimeout < 0 {
		return fmt.Errorf("firmwaresim: heartbeat %s, reconnect interval %s and connect timeout %s must not be negative",
			c.Heartbeat, c.ReconnectInterval, c.ConnectTimeout)
	}
	if !(c.DuressRate >= 0) || math.IsInf(c.DuressRate, 0) {
		return fmt.Errorf("firmwaresim: duress rate %g per second is not a finite, non-negative number", c.DuressRate)
	}
	if !(c.SkewFraction > 0 && c.SkewFraction <= 1) {
		return fmt.Errorf("firmwaresim: skew fraction %g is not a fraction between 0 and 1", c.SkewFraction)
	}
	if !(c.Lat >= -89 && c.Lat <= 89) || !(c.Lon >= -179 && c.Lon <= 179) {
		return fmt.Errorf("firmwaresim: lat %g lon %g is not a usable fleet centre", c.Lat, c.Lon)
	}
	if c.ConnectConcurrency < 0 {
		return fmt.Errorf("firmwaresim: connect concurrency %d is negative", c.ConnectConcurrency)
	}
	return c.Faults.validate()
}

// Fleet runs many simulated buttons in one process, each with its own MQTT
// connection, as a site full of real devices would.
type Fleet struct {
	cfg     FleetConfig
	log     *slog.Logger
	stats   *counters
	buttons []*Button
	rng     *rand.Rand // used only by Run's goroutine

	mu      sync.Mutex
	running bool
}

// NewFleet validates cfg and makes the fleet's buttons; Run connects them.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Fleet{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "firmware-sim", "site", cfg.Site),
		stats: &counters{},
		rng:   rand.New(rand.NewPCG(cfg.Seed, 1)),
	}
	first := uint64(cfg.Now().UnixMilli())
	for i := range cfg.Buttons {
		bc := ButtonConfig{
			Broker:            cfg.Broker,
			Username:          cfg.Username,
			Password:          cfg.Password,
			TLS:               cfg.TLS,
			Site:              cfg.Site,
			Device:            fmt.Sprintf("btn-%04d", i+1),
			Battery:           40 + f.rng.IntN(61),
			Heartbeat:         cfg.Heartbeat,
			Faults:            cfg.Faults,
			FirstSeq:          first,
			ReconnectInterval: cfg.ReconnectInterval,
			ConnectTimeout:    cfg.ConnectTimeout,
			Seed:              cfg.Seed + uint64(i) + 1,
			Now:               cfg.Now,
			Logger:            cfg.Logger,
		}
		if cfg.Lat != 0 || cfg.Lon != 0 {
			bc.Lat = cfg.Lat + (f.rng.Float64()-0.5)*0.04
			bc.Lon = cfg.Lon + (f.rng.Float64()-0.5)*0.04
			bc.AccM = float64(3 + f.rng.IntN(30))
		}
		if cfg.ClockSkew != 0 && f.rng.Float64() < cfg.SkewFraction {
			bc.ClockSkew = cfg.ClockSkew
		}
		bc.setDefaults()
		b, err := newButton(bc, f.stats)
		if err != nil {
			return nil, err
		}
		f.buttons = append(f.buttons, b)
	}
	return f, nil
}

// Buttons returns the fleet's buttons, for tests and tools that want to
// drive one directly.
func (f *Fleet) Buttons() []*Button { return append([]*Button(nil), f.buttons...) }

// Run connects the buttons, a few at a time, and runs their heartbeats and
// the fleet's duress presses until ctx ends; then it disconnects them and
// returns nil. Events still queued at that moment are lost, as they would be
// if the devices were switched off. A fleet runs once.
func (f *Fleet) Run(ctx context.Context) error {
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return errors.New("firmwaresim: fleet already ran")
	}
	f.running = true
	f.mu.Unlock()

	presses := make([]chan struct{}, len(f.buttons))
	var wg sync.WaitGroup
	defer f.closeAll()
	defer wg.Wait() // button loops stop before their connections close

	// Each button's loop starts as soon as its own connection attempt
	// returns, so a slow broker delays only the buttons still waiting.
	sem := make(chan struct{}, f.cfg.ConnectConcurrency)
	jitter := rand.New(rand.NewPCG(f.cfg.Seed, 2))
	for i, b := range f.buttons {
		presses[i] = make(chan struct{}, 16)
		first := time.Duration(jitter.Int64N(int64(f.cfg.Heartbeat)))
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			f.connect(ctx, b)
			<-sem
			f.runButton(ctx, b, first, presses[i])
		})
	}
	f.log.Info("fleet started", "buttons", len(f.buttons), "duress_rate", f.cfg.DuressRate)

	if f.cfg.DuressRate > 0 {
		f.pressLoop(ctx, presses)
	}
	<-ctx.Done()
	return nil
}

// connect starts one button's session and waits a bounded time for it.
func (f *Fleet) connect(ctx context.Context, b *Button) {
	if err := b.start(); err != nil {
		f.log.Error("button not started", "device", b.Device(), "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.ConnectTimeout)
	defer cancel()
	if err := b.waitSubscribed(cctx); err != nil && ctx.Err() == nil {
		f.log.Warn("button not connected yet; it keeps trying and queues its events", "device", b.Device(), "err", err)
	}
}

// pressLoop presses random buttons at exponentially distributed intervals,
// which makes the presses a Poisson process of DuressRate per second.
func (f *Fleet) pressLoop(ctx context.Context, presses []chan struct{}) {
	t := time.NewTimer(f.nextPress())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case presses[f.rng.IntN(len(presses))] <- struct{}{}:
			case <-ctx.Done():
				return
			}
			t.Reset(f.nextPress())
		}
	}
}

func (f *Fleet) nextPress() time.Duration {
	return time.Duration(f.rng.ExpFloat64() / f.cfg.DuressRate * float64(time.Second))
}

// runButton is one button's life in the fleet: heartbeats (the first after
// the jitter delay) with a slowly draining battery, and presses on demand.
func (f *Fleet) runButton(ctx context.Context, b *Button, first time.Duration, presses <-chan struct{}) {
	rng := rand.New(rand.NewPCG(b.cfg.Seed, 3))
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-presses:
			if p, err := b.Duress(ctx); err != nil {
				f.logPublishError(ctx, b, err)
			} else {
				f.log.Debug("duress pressed", "device", b.Device(), "seq", p.Seq)
			}
		case <-t.C:
			var err error
			b.mu.Lock()
			level := b.battery
			b.mu.Unlock()
			// About one heartbeat in twenty costs a percent; a button near
			// empty is docked and comes back full, reporting both.
			switch {
			case level <= 5:
				_, err = b.Battery(ctx, 100)
			case rng.IntN(20) == 0:
				_, err = b.Battery(ctx, level-1)
			default:
				_, err = b.Heartbeat(ctx)
			}
			if err != nil {
				f.logPublishError(ctx, b, err)
			}
			t.Reset(f.cfg.Heartbeat)
		}
	}
}

func (f *Fleet) logPublishError(ctx context.Context, b *Button, err error) {
	if ctx.Err() == nil {
		f.log.Warn("publish failed", "device", b.Device(), "err", err)
	}
}

// closeAll disconnects the buttons in parallel, bounded like connecting.
func (f *Fleet) closeAll() {
	sem := make(chan struct{}, f.cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	for _, b := range f.buttons {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b.Close()
		})
	}
	wg.Wait()
}

// Stats returns the fleet's counters, summed over its buttons.
func (f *Fleet) Stats() Stats {
	s := f.stats.snapshot()
	s.Buttons = len(f.buttons)
	for _, b := range f.buttons {
		if b.Connected() {
			s.Connected++
		}
		s.Queued += b.Queued()
	}
	return s
}
