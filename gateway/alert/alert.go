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
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/gateway/outbox"
)

var (
	bucketAlerts = []byte("alerts")
	bucketStatus = []byte("device-status")
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
	P3 = 3 // trouble: low battery, offline
)

// Errors returned by state changes.
var (
	ErrNotFound   = errors.New("alert: not found")
	ErrTransition = errors.New("alert: invalid transition")
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

	State          State     `json:"state"`
	EventTime      time.Time `json:"event_time"`
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
	Battery  *int              `json:"battery,omitempty"`
	Feedback bool              `json:"feedback_queued,omitempty"` // "help is coming" queued to the wearer
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
		Time: a.EventTime, RaisedAt: a.RaisedAt, Location: a.Location, Battery: a.Battery, Text: a.Text}
}

// Routes names the routes the engine may queue on.
type Routes struct {
	ARC      []string // primary first; backups are reached by outbox escalation
	Webhooks []string
	Wearer   string // device command route for "help is coming"; "" for none
}

// IsARC reports whether route is one of the ARC routes.
func (r Routes) IsARC(route string) bool { return slices.Contains(r.ARC, route) }

// Engine creates and updates alerts in the gateway database.
type Engine struct {
	db     *bolt.DB
	routes Routes
	now    func() time.Time
	// OnDelivered, if set, is told of each first delivery (after the
	// transaction commits is not guaranteed: use it for metrics only).
	OnDelivered func(a Alert)
}

// New prepares the engine's buckets.
func New(db *bolt.DB, routes Routes, now func() time.Time) (*Engine, error) {
	if now == nil {
		now = time.Now
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketAlerts, bucketStatus} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return outbox.Init(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("alert: init: %w", err)
	}
	return &Engine{db: db, routes: routes, now: now}, nil
}

// IDForKey turns an idempotency key ("btn-1:42") into an alert id ("btn-1.42"),
// safe in URLs and stable across replays.
func IDForKey(key string) string { return strings.ReplaceAll(key, ":", ".") }

// Apply is the journal's ApplyFunc: it records device status and raises or
// cancels alerts for the event, queueing their messages.
func (e *Engine) Apply(tx *bolt.Tx, rec journal.Record, key string) error {
	if err := e.recordStatus(tx, rec); err != nil {
		return err
	}
	switch rec.Event.Type {
	case devices.TypeDuress:
		return e.raiseDuress(tx, rec, key)
	case devices.TypeDuressCancel:
		return e.cancel(tx, rec, key)
	}
	return nil
}

// DeviceStatus is what the gateway last heard from a device.
type DeviceStatus struct {
	Device   string            `json:"device"`
	Site     string            `json:"site"`
	LastSeen time.Time         `json:"last_seen"`
	LastType string            `json:"last_type"`
	Battery  *int              `json:"battery,omitempty"`
	Location *forward.Location `json:"location,omitempty"`
}

func (e *Engine) recordStatus(tx *bolt.Tx, rec journal.Record) error {
	b := tx.Bucket(bucketStatus)
	var st DeviceStatus
	if v := b.Get([]byte(rec.Event.Device)); v != nil {
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("alert: device status %s: %w", rec.Event.Device, err)
		}
	}
	if rec.Event.TS.Before(st.LastSeen) {
		return nil // an older event redelivered late does not roll status back
	}
	st.Device, st.Site, st.LastSeen, st.LastType = rec.Event.Device, rec.Site, rec.Event.TS, string(rec.Event.Type)
	if rec.Event.Battery != nil {
		st.Battery = rec.Event.Battery
	}
	if l := location(rec.Event.Loc); l != nil {
		st.Location = l
	}
	return putJSON(b, rec.Event.Device, st)
}

func location(l *devices.Location) *forward.Location {
	if l == nil {
		return nil
	}
	return &forward.Location{Lat: l.Lat, Lon: l.Lon, AccM: l.AccM}
}

func (e *Engine) raiseDuress(tx *bolt.Tx, rec journal.Record, key string) error {
	now := e.now()
	a := Alert{ID: IDForKey(key), Key: key, Event: string(devices.TypeDuress), Priority: P1, Site: rec.Site,
		Device: rec.Event.Device, Seq: rec.Event.Seq, Warnings: slices.Clone(rec.Warnings), State: Raised,
		EventTime: rec.Event.TS, RaisedAt: now, Location: location(rec.Event.Loc), Battery: rec.Event.Battery}
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
	a.Text = fmt.Sprintf("DURESS %s at %s", who, a.Site)
	// An unverified device never reaches the ARC as a verified alarm; people
	// still see it through the webhooks and the console.
	if a.Verified && len(e.routes.ARC) > 0 {
		a.Routes = append(a.Routes, e.routes.ARC[0])
	}
	a.Routes = append(a.Routes, e.routes.Webhooks...)
	for _, r := range a.Routes {
		if _, err := outbox.Enqueue(tx, r, a.message(forward.KindAlarm, key, a.Seq), now); err != nil {
			return err
		}
	}
	return putJSON(tx.Bucket(bucketAlerts), a.ID, a)
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
		if en.Msg.Kind != forward.KindAlarm || seen[en.Route] || en.Route == e.routes.Wearer {
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
	if en.Msg.Kind != forward.KindAlarm || en.Route == e.routes.Wearer {
		return nil
	}
	a, err := get(tx, en.Msg.AlertID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	first := a.DeliveredAt.IsZero()
	if first {
		a.DeliveredAt, a.DeliveredVia = en.DoneAt, en.Route
		if a.State == Raised {
			a.State = Delivered
		}
	}
	// Tell the wearer that help is coming once an ARC has the alarm, or, for
	// an alert no ARC will get, once anyone has it.
	arcBound := slices.ContainsFunc(a.Routes, e.routes.IsARC)
	if e.routes.IsARC(en.Route) || !arcBound {
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
func (e *Engine) confirmToWearer(tx *bolt.Tx, a *Alert) error {
	if a.Feedback || e.routes.Wearer == "" || a.Device == "" {
		return nil
	}
	a.Feedback = true
	m := a.message(forward.KindAlarm, a.Key+":received", a.Seq)
	m.Event = devices.CmdAlertReceived
	_, err := outbox.Enqueue(tx, e.routes.Wearer, m, e.now())
	return err
}

// RaiseSystem raises an alert about the gateway itself (a receiver that stopped
// answering), sent to the webhooks. kind names it; it is P2.
func (e *Engine) RaiseSystem(kind, site, text string) (Alert, error) {
	now := e.now()
	a := Alert{ID: fmt.Sprintf("sys.%s.%d", kind, now.UnixNano()), Event: kind, Priority: P2, Site: site,
		Verified: true, Text: text, State: Raised, EventTime: now, RaisedAt: now}
	a.Key = a.ID
	a.Routes = slices.Clone(e.routes.Webhooks)
	err := e.db.Update(func(tx *bolt.Tx) error {
		for _, r := range a.Routes {
			if _, err := outbox.Enqueue(tx, r, a.message(forward.KindAlarm, a.Key, 0), now); err != nil {
				return err
			}
		}
		return putJSON(tx.Bucket(bucketAlerts), a.ID, a)
	})
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

// Resolve closes the alert with an outcome. An alert resolved without an
// explicit acknowledgement is acknowledged at the same moment by the same person.
func (e *Engine) Resolve(id, by, outcome string) (Alert, error) {
	if strings.TrimSpace(by) == "" || strings.TrimSpace(outcome) == "" {
		return Alert{}, fmt.Errorf("%w: resolve needs the person (by) and an outcome", ErrTransition)
	}
	return e.update(id, func(_ *bolt.Tx, a *Alert, now time.Time) error {
		if a.State == Resolved {
			return fmt.Errorf("%w: %s is already resolved", ErrTransition, a.ID)
		}
		if a.AcknowledgedAt.IsZero() {
			a.AcknowledgedAt, a.AcknowledgedBy = now, by
		}
		a.State, a.ResolvedAt, a.ResolvedBy, a.Outcome = Resolved, now, by, outcome
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
