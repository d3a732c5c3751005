// Package alert is the lone-worker alert engine. It turns journaled device
// events into alerts, decides which routes each alert goes to, and moves every
// alert through its states: raised → delivered (a receiver acknowledged it) →
// acknowledged (a person took it) → resolved (with an outcome). Each
// transition is timestamped, because response times are data.
//
// The engine runs inside other components' transactions: Apply inside the
// journal's, Delivered and Failed inside the outbox's. An alert, its outbox
// entries and its state therefore change together or not at all.
package alert

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/gateway/outbox"
	"github.com/vigil-gw/vigil/gateway/timer"
)

var (
	bucketAlerts = []byte("alerts")
	bucketStatus = []byte("device-status")
	bucketAmber  = []byte("amber-sessions")
	bucketGroups = []byte("alert-groups")
)

// State is an alert's furthest stage.
type State string

// Alert states, in order.
const (
	Raised       State = "raised"
	Delivered    State = "delivered"
	Acknowledged State = "acknowledged"
	Resolved     State = "resolved"
)

// Priorities.
const (
	P1 = 1 // duress: someone may be in danger now
	P2 = 2 // the alarm path itself is failing (a receiver stopped answering)
	P3 = 3 // trouble: a device went silent
	P4 = 4 // housekeeping: low batteries, grouped per site
)

// Errors returned by state changes.
var (
	ErrNotFound   = errors.New("alert: not found")
	ErrTransition = errors.New("alert: invalid transition")
	ErrInvalid    = errors.New("alert: invalid request")
)

// Alert is one alert and its history.
type Alert struct {
	ID       string   `json:"id"`
	Key      string   `json:"key"`   // idempotency key of the event that raised it
	Event    string   `json:"event"` // "duress", "arc_link_down", …
	Priority int      `json:"priority"`
	Site     string   `json:"site"`
	Device   string   `json:"device,omitempty"`
	Seq      uint64   `json:"seq,omitempty"`
	Wearer   string   `json:"wearer,omitempty"`
	Zone     int      `json:"zone,omitempty"`
	Camera   string   `json:"camera,omitempty"`
	Verified bool     `json:"verified"`
	Warnings []string `json:"warnings,omitempty"`
	Text     string   `json:"text"`
	Routes   []string `json:"routes"` // routes it was queued on when raised

	State     State     `json:"state"`
	EventTime time.Time `json:"event_time"`
	// ReceivedAt is when the gateway took the event off its transport
	// (the MQTT client's delivery, the serial frame): device → gateway is
	// ReceivedAt − EventTime, and the gateway's own share starts here.
	ReceivedAt     time.Time `json:"received_at,omitzero"`
	RaisedAt       time.Time `json:"raised_at"`
	DeliveredAt    time.Time `json:"delivered_at,omitzero"`
	DeliveredVia   string    `json:"delivered_via,omitempty"`
	AcknowledgedAt time.Time `json:"acknowledged_at,omitzero"`
	AcknowledgedBy string    `json:"acknowledged_by,omitempty"`
	ResolvedAt     time.Time `json:"resolved_at,omitzero"`
	ResolvedBy     string    `json:"resolved_by,omitempty"`
	Outcome        string    `json:"outcome,omitempty"`
	CancelledAt    time.Time `json:"cancelled_at,omitzero"` // the wearer pressed cancel
	Notes          []Note    `json:"notes,omitempty"`

	Location *forward.Location `json:"location,omitempty"`
	// Place is where the wearer is on site, as the device said ("Ward 7, bay 3").
	Place    string `json:"place,omitempty"`
	Battery  *int   `json:"battery,omitempty"`
	Feedback bool   `json:"feedback_queued,omitempty"` // "help is coming" queued to the wearer
	// CameraCommanded is the paired camera told to start recording for this alert.
	CameraCommanded string `json:"camera_commanded,omitempty"`
	// Note is the wearer's own note (an amber session's where and why).
	Note string `json:"note,omitempty"`
	// Devices lists the devices a grouped alert covers (low batteries at a site).
	Devices []string `json:"devices,omitempty"`
}

// Note is a timestamped remark by a person.
type Note struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Text string    `json:"text"`
}

// Open reports whether the alert still needs a person.
func (a Alert) Open() bool { return a.State != Resolved }

// Undelivered reports whether no receiver has acknowledged the alert yet.
func (a Alert) Undelivered() bool { return a.DeliveredAt.IsZero() && a.Open() }

// message is the forwarder message for this alert.
func (a Alert) message(kind forward.Kind, key string, seq uint64) forward.Message {
	return forward.Message{Key: key, AlertID: a.ID, Kind: kind, Event: a.Event, Priority: a.Priority,
		Device: a.Device, Seq: seq, Site: a.Site, Wearer: a.Wearer, Zone: a.Zone, Verified: a.Verified,
		Time: a.EventTime, RaisedAt: a.RaisedAt, Location: a.Location, Place: a.Place, Battery: a.Battery, Text: a.Text}
}

// Routes names the routes the engine may queue on.
type Routes struct {
	ARC      []string // primary first; backups are reached by outbox escalation
	Webhooks []string
	// Wearer is the device command route: "help is coming" to buttons,
	// pre-alerts, "start recording" to cameras. "" for none.
	Wearer string
	// Evidence is the footage route: a P1 alert for a wearer with a paired
	// camera makes that camera's footage evidential. "" for none.
	Evidence string
	// ByPriority lists the routes alerts of each priority go to. Missing
	// priorities take the default: P1 to the primary ARC and every webhook,
	// P2–P4 to every webhook (the supervisors), not the ARC.
	ByPriority map[int][]string
}

// IsARC reports whether route is one of the ARC routes.
func (r Routes) IsARC(route string) bool { return slices.Contains(r.ARC, route) }

// forPriority returns the routes for an alert; an unverified alert never goes
// to an ARC as a verified alarm.
func (r Routes) forPriority(priority int, verified bool) []string {
	routes, ok := r.ByPriority[priority]
	if !ok {
		if priority == P1 && len(r.ARC) > 0 {
			routes = append(routes, r.ARC[0])
		}
		routes = append(routes, r.Webhooks...)
	}
	out := []string{}
	for _, rt := range routes {
		if !verified && r.IsARC(rt) {
			continue
		}
		out = append(out, rt)
	}
	return out
}

// Options tune the lone-worker rules. Zero values take the defaults.
type Options struct {
	Now                func() time.Time
	AmberGrace         time.Duration // after the pre-alert, before "failed to check in" (default 2m)
	OfflineIntervals   int           // heartbeats missed before "offline" (default 3)
	HeartbeatInterval  time.Duration // when a device does not say (default 60s)
	BatteryThreshold   int           // percent; below it a low-battery alert (default 20)
	BatteryGroupWindow time.Duration // one low-battery notification per site per window (default 15m)
	// OnResolved, if set, runs inside the transaction that resolves an
	// alert, so whatever it records (the incident behind a genuine alarm)
	// commits with the resolution or not at all. An error rolls the
	// resolution back.
	OnResolved func(tx *bolt.Tx, a Alert) error
	// Expedite, if set, is given each message of a P1 alert as it is
	// queued, inside the raising transaction (outbox.Dispatcher.Expedite):
	// the alarm goes to its receivers while that transaction's fsync runs.
	Expedite func(outbox.Entry) bool
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AmberGrace <= 0 {
		o.AmberGrace = 2 * time.Minute
	}
	if o.OfflineIntervals <= 0 {
		o.OfflineIntervals = 3
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = time.Minute
	}
	if o.BatteryThreshold <= 0 {
		o.BatteryThreshold = 20
	}
	if o.BatteryGroupWindow <= 0 {
		o.BatteryGroupWindow = 15 * time.Minute
	}
}

// Engine creates and updates alerts in the gateway database.
type Engine struct {
	db *bolt.DB
	// rt is the current Routes; SetRoutes swaps it while the engine runs.
	rt   atomic.Pointer[Routes]
	opts Options
	now  func() time.Time
	// onChange is what SetOnChange set; atomic so a listener can be attached
	// while transactions run.
	onChange atomic.Pointer[func()]
	// OnDelivered, if set, is told of each first delivery (after the
	// transaction commits is not guaranteed: use it for metrics only).
	OnDelivered func(a Alert)
}

// New prepares the engine's buckets.
func New(db *bolt.DB, routes Routes, opts Options) (*Engine, error) {
	opts.defaults()
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAlerts, bucketStatus, bucketAmber, bucketGroups} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := timer.Init(tx); err != nil {
			return err
		}
		return outbox.Init(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("alert: init: %w", err)
	}
	e := &Engine{db: db, opts: opts, now: opts.Now}
	e.SetRoutes(routes)
	return e, nil
}

// SetRoutes changes the routes new alerts are queued on (a configuration
// reload). Alerts already raised keep their messages where they are. A
// transaction under way may still use the previous routes: a caller that
// retires routes waits for it first (any later write transaction will do,
// as bbolt runs them one at a time).
func (e *Engine) SetRoutes(r Routes) {
	r.ARC, r.Webhooks, r.ByPriority = slices.Clone(r.ARC), slices.Clone(r.Webhooks), maps.Clone(r.ByPriority)
	e.rt.Store(&r)
}

// routes returns the current Routes; callers never modify them.
func (e *Engine) routes() Routes { return *e.rt.Load() }

// SetOnChange sets the change listener, called after each committed
// transaction that changed (or may have changed) an alert, a device's
// status or an amber session, so that live views re-read them; never for a
// transaction that rolled back. It runs on the committing goroutine, on the
// alert path: it must return at once (signal, never block). nil removes it.
// It is safe to call while the engine is in use: transactions already under
// way may still report to the previous listener.
func (e *Engine) SetOnChange(f func()) {
	if f == nil {
		e.onChange.Store(nil)
		return
	}
	e.onChange.Store(&f)
}

// changed has the change listener told once tx commits: listeners must
// never see a change that a rollback then undid.
func (e *Engine) changed(tx *bolt.Tx) {
	if f := e.onChange.Load(); f != nil {
		tx.OnCommit(*f)
	}
}

// IDForKey turns an idempotency key ("btn-1:42") into an alert id ("btn-1.42"),
// safe in URLs and stable across replays.
func IDForKey(key string) string { return strings.ReplaceAll(key, ":", ".") }

// Apply is the journal's ApplyFunc: it records device status and raises or
// cancels alerts for the event, queueing their messages.
func (e *Engine) Apply(tx *bolt.Tx, rec journal.Record, key string) error {
	// Every event at least updates its device's status.
	e.changed(tx)
	st, err := e.recordStatus(tx, rec)
	if err != nil {
		return err
	}
	if err := e.supervise(tx, rec, st); err != nil {
		return err
	}
	if event, label, ok := p1Event(rec.Event); ok {
		a := alertFor(rec, key, event, label)
		return e.raise(tx, &a)
	}
	switch rec.Event.Type {
	case devices.TypeDuressCancel:
		return e.cancel(tx, rec, key)
	case devices.TypeAmberStart, devices.TypeAmberExtend:
		return e.amberTimer(tx, rec)
	case devices.TypeAmberCheckin:
		return e.amberCheckin(tx, rec)
	}
	return nil
}

// EventCovertDuress is a cancel entered with the duress PIN: a silent duress.
// It is never shown as a cancel, and the wearer's device is not told anything.
const EventCovertDuress = "duress_covert"

// DeviceStatus is what the gateway last heard from a device.
type DeviceStatus struct {
	Device   string            `json:"device"`
	Site     string            `json:"site"`
	LastSeen time.Time         `json:"last_seen"`
	LastType string            `json:"last_type"`
	Battery  *int              `json:"battery,omitempty"`
	Location *forward.Location `json:"location,omitempty"`
	// IntervalS is the heartbeat interval the device last announced.
	IntervalS int `json:"interval_s,omitempty"`
	// OfflineAlert is the open offline alert for this device, cleared when it
	// is heard from again.
	OfflineAlert string `json:"offline_alert,omitempty"`
	// BatteryLow is set once the device has been reported low, so it is not
	// reported again until it has been charged.
	BatteryLow bool `json:"battery_low,omitempty"`
}

// recordStatus updates and returns what the gateway knows of the device.
func (e *Engine) recordStatus(tx *bolt.Tx, rec journal.Record) (DeviceStatus, error) {
	b := tx.Bucket(bucketStatus)
	st, err := status(tx, rec.Event.Device)
	if err != nil {
		return st, err
	}
	if rec.Event.TS.Before(st.LastSeen) {
		return st, nil // an older event redelivered late does not roll status back
	}
	st.Device, st.Site, st.LastSeen, st.LastType = rec.Event.Device, rec.Site, rec.Event.TS, string(rec.Event.Type)
	if rec.Event.Battery != nil {
		st.Battery = rec.Event.Battery
	}
	if l := location(rec.Event.Loc); l != nil {
		st.Location = l
	}
	if rec.Event.IntervalS > 0 {
		st.IntervalS = rec.Event.IntervalS
	}
	return st, putJSON(b, rec.Event.Device, st)
}

func status(tx *bolt.Tx, device string) (DeviceStatus, error) {
	var st DeviceStatus
	if v := tx.Bucket(bucketStatus).Get([]byte(device)); v != nil {
		if err := json.Unmarshal(v, &st); err != nil {
			return st, fmt.Errorf("alert: device status %s: %w", device, err)
		}
	}
	return st, nil
}

func location(l *devices.Location) *forward.Location {
	if l == nil {
		return nil
	}
	return &forward.Location{Lat: l.Lat, Lon: l.Lon, AccM: l.AccM}
}

// p1Event says whether a device event raises a P1 alert by itself (duress,
// man-down, a cancel entered with the duress PIN), and as what.
func p1Event(ev devices.Event) (event, label string, ok bool) {
	switch {
	case ev.Type == devices.TypeDuress:
		return string(devices.TypeDuress), "DURESS", true
	case ev.Type == devices.TypeManDown:
		return string(devices.TypeManDown), "MAN DOWN", true
	case ev.Type == devices.TypeDuressCancel && ev.Covert:
		return EventCovertDuress, "DURESS (covert)", true
	}
	return "", "", false
}

// alertFor is the P1 alert for a device event, verified when the registry
// knew the device at that site.
func alertFor(rec journal.Record, key, event, label string) Alert {
	a := Alert{ID: IDForKey(key), Key: key, Event: event, Priority: P1, Site: rec.Site,
		Device: rec.Event.Device, Seq: rec.Event.Seq, Warnings: slices.Clone(rec.Warnings),
		EventTime: rec.Event.TS, ReceivedAt: rec.Received, Location: location(rec.Event.Loc), Place: rec.Event.Place, Battery: rec.Event.Battery}
	if d := rec.Registered; d != nil && d.Site == rec.Site {
		a.Verified, a.Wearer, a.Zone, a.Camera = true, d.Wearer, d.Zone, d.Camera
	} else if d != nil {
		a.Warnings = append(a.Warnings, fmt.Sprintf("device is registered at site %s but reported from %s", d.Site, rec.Site))
	} else {
		a.Warnings = append(a.Warnings, "device is not registered")
	}
	who := a.Wearer
	if !a.Verified {
		who = "UNVERIFIED device " + a.Device
	}
	a.Text = fmt.Sprintf("%s %s at %s", label, who, a.Site)
	return a
}

// Preview returns the messages the P1 alert for rec would queue if rec were
// journaled now as new, without a transaction: none for an event that
// raises no P1 alert. The gateway hands them to idle routes
// (outbox.Dispatcher.Expedite) before the journal has even taken the
// record, so a duress is not held up behind another commit. The alert that
// is then raised queues the same messages under the same keys, and the
// route records its delivery against them.
func (e *Engine) Preview(rec journal.Record) []outbox.Entry {
	event, label, ok := p1Event(rec.Event)
	if !ok {
		return nil
	}
	a := alertFor(rec, rec.Key(), event, label)
	a.RaisedAt = e.now()
	var out []outbox.Entry
	for _, q := range e.messages(&a) {
		out = append(out, outbox.Entry{Route: q.route, Msg: q.msg, State: outbox.Pending, Created: a.RaisedAt})
	}
	return out
}

type routed struct {
	route string
	msg   forward.Message
}

// messages are what raising a queues at once: the alarm on each of its
// routes and, for a P1 alert with a paired camera, the camera's command to
// start recording.
func (e *Engine) messages(a *Alert) []routed {
	rt := e.routes()
	a.Routes = rt.forPriority(a.Priority, a.Verified)
	var out []routed
	for _, r := range a.Routes {
		out = append(out, routed{r, a.message(forward.KindAlarm, a.Key, a.Seq)})
	}
	if a.Priority == P1 && a.Camera != "" && rt.Wearer != "" {
		m := a.message(forward.KindAlarm, a.Key+":record", a.Seq)
		m.Event, m.Device = devices.CmdStartRecording, a.Camera
		out = append(out, routed{rt.Wearer, m})
		a.CameraCommanded = a.Camera
	}
	return out
}

// raise stores a new alert and queues it on the routes for its priority. A
// P1 alert for a wearer with a paired camera also tells the camera to start
// recording, at once.
func (e *Engine) raise(tx *bolt.Tx, a *Alert) error {
	now := e.now()
	a.State, a.RaisedAt = Raised, now
	if a.Key == "" {
		a.Key = a.ID
	}
	for _, q := range e.messages(a) {
		en, err := outbox.Enqueue(tx, q.route, q.msg, now)
		if err != nil {
			return err
		}
		if a.Priority == P1 && e.opts.Expedite != nil {
			e.opts.Expedite(en)
		}
	}
	if err := e.evidence(tx, a, forward.EventEvidenceOpen, a.EventTime, now); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketAlerts), a.ID, *a)
}

// evidence queues, for a P1 alert with a paired camera, the message that
// opens (at the event) or closes (at resolution) the window of footage the
// alert makes evidential. Queued in the alert's own transaction, so the
// footage is claimed even if the gateway stops a moment later.
func (e *Engine) evidence(tx *bolt.Tx, a *Alert, event string, at, now time.Time) error {
	if a.Priority != P1 || a.Camera == "" || e.routes().Evidence == "" {
		return nil
	}
	m := a.message(forward.KindEvidence, a.Key+":"+event, a.Seq)
	m.Event, m.Device, m.Time = event, a.Camera, at
	_, err := outbox.Enqueue(tx, e.routes().Evidence, m, now)
	return err
}

// cancel restores the device's newest open duress alert. The alert stays open:
// a cancel may be made under coercion, so a person still resolves it.
func (e *Engine) cancel(tx *bolt.Tx, rec journal.Record, key string) error {
	var target *Alert
	err := forEach(tx, func(a Alert) error {
		if a.Device == rec.Event.Device && a.Event == string(devices.TypeDuress) && a.Open() && a.CancelledAt.IsZero() &&
			(target == nil || a.RaisedAt.After(target.RaisedAt)) {
			target = &a
		}
		return nil
	})
	if err != nil || target == nil {
		return err // a cancel with nothing to cancel is journaled and nothing more
	}
	now := e.now()
	target.CancelledAt = now
	target.Notes = append(target.Notes, Note{At: now, By: "wearer", Text: "wearer pressed cancel (key " + key + ")"})
	entries, err := outbox.ForAlert(tx, target.ID)
	if err != nil {
		return err
	}
	// Restore on every route that has or will have the alarm, including backups
	// it was escalated to.
	seen := map[string]bool{}
	for _, en := range entries {
		if en.Msg.Kind != forward.KindAlarm || seen[en.Route] || en.Route == e.routes().Wearer {
			continue
		}
		seen[en.Route] = true
		if _, err := outbox.Enqueue(tx, en.Route, target.message(forward.KindRestore, key, rec.Event.Seq), now); err != nil {
			return err
		}
	}
	return putJSON(tx.Bucket(bucketAlerts), target.ID, *target)
}

// Delivered is the outbox hook for a receiver's acknowledgement.
func (e *Engine) Delivered(tx *bolt.Tx, en outbox.Entry) error {
	if en.Msg.Kind != forward.KindAlarm || en.Route == e.routes().Wearer {
		return nil
	}
	a, err := get(tx, en.Msg.AlertID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	e.changed(tx)
	first := a.DeliveredAt.IsZero()
	if first {
		a.DeliveredAt, a.DeliveredVia = en.DoneAt, en.Route
		if a.State == Raised {
			a.State = Delivered
		}
	}
	// Tell the wearer that help is coming once an ARC has the alarm, or, for
	// an alert no ARC will get, once anyone has it.
	arcBound := slices.ContainsFunc(a.Routes, e.routes().IsARC)
	if e.routes().IsARC(en.Route) || !arcBound {
		if err := e.confirmToWearer(tx, &a); err != nil {
			return err
		}
	}
	if err := putJSON(tx.Bucket(bucketAlerts), a.ID, a); err != nil {
		return err
	}
	if first && e.OnDelivered != nil {
		e.OnDelivered(a)
	}
	return nil
}

// confirmToWearer queues "alert_received" to the wearer's device, once.
// Only P1 alerts get it, and never a covert duress: whoever is with the
// wearer must not learn that help was called.
func (e *Engine) confirmToWearer(tx *bolt.Tx, a *Alert) error {
	if a.Feedback || e.routes().Wearer == "" || a.Device == "" || a.Priority != P1 || a.Event == EventCovertDuress {
		return nil
	}
	a.Feedback = true
	m := a.message(forward.KindAlarm, a.Key+":received", a.Seq)
	m.Event = devices.CmdAlertReceived
	_, err := outbox.Enqueue(tx, e.routes().Wearer, m, e.now())
	return err
}

// RaiseSystem raises an alert about the gateway itself (a receiver that stopped
// answering), sent to the webhooks. kind names it; it is P2.
func (e *Engine) RaiseSystem(kind, site, text string) (Alert, error) {
	now := e.now()
	a := Alert{ID: fmt.Sprintf("sys.%s.%d", kind, now.UnixNano()), Event: kind, Priority: P2, Site: site,
		Verified: true, Text: text, EventTime: now}
	err := e.db.Update(func(tx *bolt.Tx) error { e.changed(tx); return e.raise(tx, &a) })
	if err != nil {
		return Alert{}, fmt.Errorf("alert: raise %s: %w", kind, err)
	}
	return a, nil
}

// Acknowledge records that a person has taken the alert. A person taking it
// is as good as a receiver's ACK for the wearer: if no confirmation has gone
// to the device yet, one is queued now.
func (e *Engine) Acknowledge(id, by, note string) (Alert, error) {
	if strings.TrimSpace(by) == "" {
		return Alert{}, fmt.Errorf("%w: acknowledge needs the name of the person (by)", ErrTransition)
	}
	return e.update(id, func(tx *bolt.Tx, a *Alert, now time.Time) error {
		if a.State == Acknowledged || a.State == Resolved {
			return fmt.Errorf("%w: %s is already %s", ErrTransition, a.ID, a.State)
		}
		a.State, a.AcknowledgedAt, a.AcknowledgedBy = Acknowledged, now, by
		if note != "" {
			a.Notes = append(a.Notes, Note{At: now, By: by, Text: note})
		}
		return e.confirmToWearer(tx, a)
	})
}

// Outcomes an operator may resolve an alert with.
var Outcomes = []string{"false_alarm", "genuine_no_harm", "genuine_police_attended", "genuine_injury", "test"}

// Resolve closes the alert with one of Outcomes and an optional note. An
// alert resolved without an explicit acknowledgement is acknowledged at the
// same moment by the same person.
func (e *Engine) Resolve(id, by, outcome, note string) (Alert, error) {
	if strings.TrimSpace(by) == "" {
		return Alert{}, fmt.Errorf("%w: resolve needs the person (by)", ErrTransition)
	}
	if !slices.Contains(Outcomes, outcome) {
		return Alert{}, fmt.Errorf("%w: outcome %q is not one of %s", ErrInvalid, outcome, strings.Join(Outcomes, ", "))
	}
	return e.update(id, func(tx *bolt.Tx, a *Alert, now time.Time) error {
		if a.State == Resolved {
			return fmt.Errorf("%w: %s is already resolved", ErrTransition, a.ID)
		}
		if a.AcknowledgedAt.IsZero() {
			a.AcknowledgedAt, a.AcknowledgedBy = now, by
		}
		a.State, a.ResolvedAt, a.ResolvedBy, a.Outcome = Resolved, now, by, outcome
		if note != "" {
			a.Notes = append(a.Notes, Note{At: now, By: by, Text: note})
		}
		if err := e.evidence(tx, a, forward.EventEvidenceClose, now, now); err != nil {
			return err
		}
		if e.opts.OnResolved != nil {
			return e.opts.OnResolved(tx, *a)
		}
		return nil
	})
}

// AddNote records a remark by a person on an alert, open or resolved.
func (e *Engine) AddNote(id, by, text string) (Alert, error) {
	if strings.TrimSpace(by) == "" || strings.TrimSpace(text) == "" {
		return Alert{}, fmt.Errorf("%w: a note needs the person (by) and text", ErrInvalid)
	}
	if len(text) > 2000 {
		return Alert{}, fmt.Errorf("%w: a note is at most 2000 bytes", ErrInvalid)
	}
	return e.update(id, func(_ *bolt.Tx, a *Alert, now time.Time) error {
		a.Notes = append(a.Notes, Note{At: now, By: by, Text: text})
		return nil
	})
}

func (e *Engine) update(id string, f func(*bolt.Tx, *Alert, time.Time) error) (Alert, error) {
	var a Alert
	err := e.db.Update(func(tx *bolt.Tx) error {
		var err error
		if a, err = get(tx, id); err != nil {
			return err
		}
		if err := f(tx, &a, e.now()); err != nil {
			return err
		}
		e.changed(tx)
		return putJSON(tx.Bucket(bucketAlerts), a.ID, a)
	})
	return a, err
}

// View is an alert with the delivery state of each of its routes.
type View struct {
	Alert
	Deliveries []outbox.Entry `json:"deliveries"`
}

// newView makes lists empty rather than absent, so API clients see [] not null.
func newView(a Alert, d []outbox.Entry) View {
	if a.Routes == nil {
		a.Routes = []string{}
	}
	if d == nil {
		d = []outbox.Entry{}
	}
	return View{Alert: a, Deliveries: d}
}

// Get returns one alert.
func (e *Engine) Get(id string) (View, error) {
	var v View
	err := e.db.View(func(tx *bolt.Tx) error {
		a, err := get(tx, id)
		if err != nil {
			return err
		}
		d, err := outbox.ForAlert(tx, id)
		v = newView(a, d)
		return err
	})
	return v, err
}

// List returns alerts in the order a control room needs them: open alerts no
// receiver has acknowledged first, then other open alerts, each by priority
// and newest first, then resolved ones newest first.
func (e *Engine) List(limit int) ([]View, error) {
	var out []View
	err := e.db.View(func(tx *bolt.Tx) error {
		var all []Alert
		if err := forEach(tx, func(a Alert) error { all = append(all, a); return nil }); err != nil {
			return err
		}
		slices.SortFunc(all, compareForControlRoom)
		if limit > 0 && len(all) > limit {
			all = all[:limit]
		}
		for _, a := range all {
			d, err := outbox.ForAlert(tx, a.ID)
			if err != nil {
				return err
			}
			out = append(out, newView(a, d))
		}
		return nil
	})
	return out, err
}

// Raised returns the alerts raised in [from, to), oldest first, for reports
// (response times by month). A zero bound is open.
func (e *Engine) Raised(from, to time.Time) ([]Alert, error) {
	out := []Alert{}
	err := e.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(a Alert) error {
			if (from.IsZero() || !a.RaisedAt.Before(from)) && (to.IsZero() || a.RaisedAt.Before(to)) {
				out = append(out, a)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Alert) int { return cmp.Or(a.RaisedAt.Compare(b.RaisedAt), cmp.Compare(a.ID, b.ID)) })
	return out, err
}

func rank(a Alert) int {
	switch {
	case a.Undelivered():
		return 0
	case a.Open():
		return 1
	}
	return 2
}

func compareForControlRoom(a, b Alert) int {
	return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Priority, b.Priority), b.RaisedAt.Compare(a.RaisedAt), cmp.Compare(a.ID, b.ID))
}

// Counts summarises open alerts for metrics.
type Counts struct{ Open, Undelivered int }

// Count returns how many alerts are open and how many of those are undelivered.
func (e *Engine) Count() (Counts, error) {
	var c Counts
	err := e.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(a Alert) error {
			if a.Open() {
				c.Open++
			}
			if a.Undelivered() {
				c.Undelivered++
			}
			return nil
		})
	})
	return c, err
}

// Status returns what the gateway last heard from each device.
func (e *Engine) Status() ([]DeviceStatus, error) {
	var out []DeviceStatus
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStatus).ForEach(func(_, v []byte) error {
			var s DeviceStatus
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}

func get(tx *bolt.Tx, id string) (Alert, error) {
	var a Alert
	v := tx.Bucket(bucketAlerts).Get([]byte(id))
	if v == nil {
		return a, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := json.Unmarshal(v, &a); err != nil {
		return a, fmt.Errorf("alert: decode %s: %w", id, err)
	}
	return a, nil
}

func forEach(tx *bolt.Tx, f func(Alert) error) error {
	return tx.Bucket(bucketAlerts).ForEach(func(k, v []byte) error {
		var a Alert
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("alert: decode %s: %w", bytes.Clone(k), err)
		}
		return f(a)
	})
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("alert: encode %s: %w", key, err)
	}
	return b.Put([]byte(key), raw)
}
