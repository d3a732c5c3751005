package firmwaresim

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vigil-gw/vigil/devices"
)

// eventTypes lists the v1 event types in the order statistics report them.
var eventTypes = [...]devices.Type{devices.TypeDuress, devices.TypeDuressCancel, devices.TypeHeartbeat, devices.TypeBattery}

// counters are shared by every button of a fleet (or owned by a lone button)
// and updated lock-free from their publishing goroutines.
type counters struct {
	published     [len(eventTypes)]atomic.Uint64
	malformed     [len(malformations)]atomic.Uint64
	duplicates    atomic.Uint64
	confirmed     atomic.Uint64
	unmatched     atomic.Uint64
	badCommands   atomic.Uint64
	publishErrors atomic.Uint64
	rttTotal      atomic.Int64 // nanoseconds, over confirmed
	rttMax        atomic.Int64
}

func (c *counters) addConfirmed(rtt time.Duration) {
	c.confirmed.Add(1)
	c.rttTotal.Add(int64(rtt))
	for {
		m := c.rttMax.Load()
		if int64(rtt) <= m || c.rttMax.CompareAndSwap(m, int64(rtt)) {
			return
		}
	}
}

func (c *counters) addPublished(t devices.Type) {
	for i, et := range eventTypes {
		if et == t {
			c.published[i].Add(1)
			return
		}
	}
}

func (c *counters) addMalformed(m Malformation) {
	for i, k := range malformations {
		if k == m {
			c.malformed[i].Add(1)
			return
		}
	}
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Published:     make(map[devices.Type]uint64, len(eventTypes)),
		Malformed:     make(map[Malformation]uint64, len(malformations)),
		Duplicates:    c.duplicates.Load(),
		Confirmed:     c.confirmed.Load(),
		Unmatched:     c.unmatched.Load(),
		BadCommands:   c.badCommands.Load(),
		PublishErrors: c.publishErrors.Load(),
		RoundTripMax:  time.Duration(c.rttMax.Load()),
	}
	if s.Confirmed > 0 {
		s.RoundTripMean = time.Duration(c.rttTotal.Load() / int64(s.Confirmed))
	}
	for i, t := range eventTypes {
		s.Published[t] = c.published[i].Load()
	}
	for i, k := range malformations {
		s.Malformed[k] = c.malformed[i].Load()
	}
	return s
}

// Stats is a snapshot of what a button or fleet has done since it started.
type Stats struct {
	// Buttons is how many buttons the numbers cover.
	Buttons int
	// Connected is how many of them have an open connection right now.
	Connected int
	// Queued is how many events still await the broker's PUBACK, queued or in
	// flight, for instance because the broker is down.
	Queued int
	// Published counts well-formed events handed to the MQTT client, by type;
	// a duplicated event counts once.
	Published map[devices.Type]uint64
	// Malformed counts publishes replaced by a broken payload, by kind.
	Malformed map[Malformation]uint64
	// Duplicates counts events sent a second time with the same seq and id.
	Duplicates uint64
	// Confirmed counts alert_received commands that matched a pending duress.
	Confirmed uint64
	// RoundTripMean and RoundTripMax summarise the press-to-confirmation
	// times of the confirmed presses.
	RoundTripMean, RoundTripMax time.Duration
	// Unmatched counts alert_received commands for no pending duress, such as
	// a confirmation queued for a previous run of the simulator.
	Unmatched uint64
	// BadCommands counts command payloads that could not be decoded.
	BadCommands uint64
	// PublishErrors counts events the MQTT client refused outright (it was
	// closed), which are therefore lost.
	PublishErrors uint64
}

// PublishedTotal is the number of well-formed events of every type.
func (s Stats) PublishedTotal() uint64 { return total(s.Published) }

// MalformedTotal is the number of malformed payloads of every kind.
func (s Stats) MalformedTotal() uint64 { return total(s.Malformed) }

// total adds up a map of counters.
func total[K comparable](m map[K]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// Messages is the number of MQTT messages the numbers account for: events,
// malformed payloads and second copies of duplicated events.
func (s Stats) Messages() uint64 { return s.PublishedTotal() + s.MalformedTotal() + s.Duplicates }

// String renders the snapshot on one line for logs and the command line.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connected %d/%d queued %d published", s.Connected, s.Buttons, s.Queued)
	for _, t := range eventTypes {
		fmt.Fprintf(&b, " %s=%d", t, s.Published[t])
	}
	fmt.Fprintf(&b, " malformed=%d duplicates=%d confirmed=%d", s.MalformedTotal(), s.Duplicates, s.Confirmed)
	if s.Confirmed > 0 {
		fmt.Fprintf(&b, " round_trip_mean=%s max=%s", s.RoundTripMean.Round(10*time.Microsecond), s.RoundTripMax.Round(10*time.Microsecond))
	}
	if s.Unmatched > 0 {
		fmt.Fprintf(&b, " unmatched=%d", s.Unmatched)
	}
	if s.BadCommands > 0 {
		fmt.Fprintf(&b, " bad_commands=%d", s.BadCommands)
	}
	if s.PublishErrors > 0 {
		fmt.Fprintf(&b, " publish_errors=%d", s.PublishErrors)
	}
	return b.String()
}
