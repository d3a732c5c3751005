// Package sysclock tells whether the kernel's clock is synchronised to a
// time source (NTP through systemd-timesyncd, chrony or ntpd).
//
// A Raspberry Pi has no battery-backed clock: it boots at the time it last
// saved (fake-hwclock) or at 1970, and only an NTP daemon makes it right.
// Until then every timestamp the gateway takes (alert transitions, the
// "received" time of evidence, DC-09 frame times) may be wrong by hours or
// years, so the gateway asks the kernel, exports the answer as a metric,
// marks evidence recorded meanwhile and raises an alert when it lasts.
//
// On Linux the answer comes from adjtimex(2), read-only, which needs no
// privilege. Other systems report Unknown.
package sysclock

import (
	"context"
	"time"
)

// State is what the kernel says about its clock.
type State int

// States. Unknown means the system cannot tell (not Linux, or adjtimex
// failed); callers must not treat it as unsynchronised, since nothing has
// shown the clock to be wrong.
const (
	Unknown State = iota
	Synchronised
	Unsynchronised
)

func (s State) String() string {
	switch s {
	case Synchronised:
		return "synchronised"
	case Unsynchronised:
		return "unsynchronised"
	}
	return "unknown"
}

// Status is one reading of the kernel clock.
type Status struct {
	State State
	// MaxError is the kernel's bound on the clock's error. An NTP daemon
	// sets it at each update; the kernel grows it by 500 µs every second
	// after that and caps it at 16 s, the point at which it declares the
	// clock unsynchronised.
	MaxError time.Duration
	// EstError is the daemon's estimate of the actual error.
	EstError time.Duration
	// UnsyncFlag is the kernel's STA_UNSYNC status bit, reported for
	// diagnosis only: chrony keeps it set on a synchronised clock when it
	// is not asked to maintain the RTC (rtcsync), so it cannot decide.
	UnsyncFlag bool
	// Reason says why State is Unknown.
	Reason string
}

// Reader reads the clock state. Kernel is the real one; tests inject fakes.
type Reader interface {
	Read() Status
}

// Kernel reads the clock state from the running kernel.
type Kernel struct{}

// maxErrorLimit is the kernel's NTP_PHASE_LIMIT (16 s in microseconds): a
// maximum error at or beyond it means no time source has vouched for the
// clock recently (or ever, since boot).
const maxErrorLimit = 16_000_000

// staUnsync is the STA_UNSYNC bit of struct timex's status (linux/timex.h),
// declared here so the judgement is tested on every platform.
const staUnsync = 0x0040

// judge turns adjtimex's status bits and maximum error (µs) into a Status.
// It follows systemd's ntp_synced(), which timedatectl's "System clock
// synchronized" shows: the maximum error alone decides, because the
// STA_UNSYNC bit is also set deliberately by chrony on a good clock.
func judge(status int64, maxErrorUS, estErrorUS int64) Status {
	st := Status{MaxError: time.Duration(maxErrorUS) * time.Microsecond, EstError: time.Duration(estErrorUS) * time.Microsecond,
		UnsyncFlag: status&staUnsync != 0, State: Synchronised}
	if maxErrorUS >= maxErrorLimit || maxErrorUS < 0 {
		st.State = Unsynchronised
	}
	return st
}

// WatchConfig configures a Watch. Zero durations take the defaults.
type WatchConfig struct {
	Reader Reader
	// Interval is the time between readings (30 s).
	Interval time.Duration
	// AlertAfter is how long the clock must stay unsynchronised before
	// OnProlonged is called (5 min): long enough that an NTP daemon
	// finishing its first synchronisation after boot raises nothing.
	AlertAfter time.Duration
	// Now measures how long a spell lasts; default time.Now. An
	// unsynchronised clock that is stepped forward makes a spell look
	// longer, never shorter, which errs on the side of telling someone.
	Now func() time.Time
	// OnChange is called with the first reading and whenever the state
	// changes.
	OnChange func(Status)
	// OnProlonged is called once per unsynchronised spell, when it has
	// lasted AlertAfter.
	OnProlonged func(lasted time.Duration, st Status)
	// OnResynchronised is called when a spell that OnProlonged reported
	// ends with a synchronised clock.
	OnResynchronised func(Status)
}

// Watch polls a Reader and reports what changes. Its callbacks run on the
// goroutine that calls Run, one at a time.
type Watch struct {
	cfg     WatchConfig
	started bool
	last    State
	inSpell bool      // the clock has been unsynchronised since `since`
	since   time.Time // start of the current unsynchronised spell
	alerted bool      // OnProlonged was called for the current spell
}

// NewWatch returns a Watch for cfg with defaults filled in.
func NewWatch(cfg WatchConfig) *Watch {
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.AlertAfter <= 0 {
		cfg.AlertAfter = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Reader == nil {
		cfg.Reader = Kernel{}
	}
	return &Watch{cfg: cfg}
}

// Run reads the clock at once and then every Interval until ctx is done.
func (w *Watch) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		w.poll()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll takes one reading and calls the callbacks it calls for. A spell of
// unsynchronised clock starts at the first unsynchronised reading and ends
// only at a synchronised one: an Unknown reading in between (adjtimex
// failing once) neither ends it nor starts a new one.
func (w *Watch) poll() {
	st := w.cfg.Reader.Read()
	now := w.cfg.Now()
	switch st.State {
	case Unsynchronised:
		if !w.inSpell {
			w.inSpell, w.since = true, now
		}
	case Synchronised:
		if w.alerted && w.cfg.OnResynchronised != nil {
			w.cfg.OnResynchronised(st)
		}
		w.inSpell, w.alerted = false, false
	}
	if !w.started || st.State != w.last {
		w.started, w.last = true, st.State
		if w.cfg.OnChange != nil {
			w.cfg.OnChange(st)
		}
	}
	if st.State == Unsynchronised && !w.alerted {
		if lasted := now.Sub(w.since); lasted >= w.cfg.AlertAfter {
			w.alerted = true
			if w.cfg.OnProlonged != nil {
				w.cfg.OnProlonged(lasted, st)
			}
		}
	}
}
