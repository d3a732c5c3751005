package alert

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/gateway/outbox"
	"github.com/vigil-gw/vigil/gateway/timer"
)

// Amber (timed) sessions: a wearer going into a home visit starts a timer with
// a note of where and why. If it runs out, the device is sent a pre-alert;
// if there is still no check-in after the grace period, a P1 "failed to check
// in" alert is raised with the last known location and the note.

// EventAmberOverrun is the alert raised when a wearer fails to check in.
const EventAmberOverrun = "amber_overrun"

// Amber session states.
const (
	AmberRunning    = "running"
	AmberPrealerted = "prealerted" // the timer ran out; the wearer was asked to check in
	AmberAlerted    = "alerted"    // the grace period ran out; an alert was raised
)

// Timer kinds owned by the engine.
const (
	timerAmberDue   = "amber_due"
	timerAmberGrace = "amber_grace"
	timerOffline    = "offline"
)

// AmberSession is one wearer's timed visit.
type AmberSession struct {
	Device     string           `json:"device"`
	Site       string           `json:"site"`
	Started    time.Time        `json:"started"`
	Deadline   time.Time        `json:"deadline"`
	Note       string           `json:"note,omitempty"`
	State      string           `json:"state"`
	Alert      string           `json:"alert,omitempty"` // the overrun alert, once raised
	StartKey   string           `json:"start_key"`
	Registered *registry.Device `json:"registered,omitempty"`
}

func amberTimerID(device string) string { return "amber:" + device }

func amberSession(tx *bolt.Tx, device string) (AmberSession, bool, error) {
	var s AmberSession
	v := tx.Bucket(bucketAmber).Get([]byte(device))
	if v == nil {
		return s, false, nil
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return s, false, fmt.Errorf("alert: amber session %s: %w", device, err)
	}
	return s, true, nil
}

// amberTimer starts a session (amber_start) or gives it more time
// (amber_extend, which starts one if none is running): the deadline becomes
// now + duration either way.
func (e *Engine) amberTimer(tx *bolt.Tx, rec journal.Record) error {
	now := e.now()
	s, ok, err := amberSession(tx, rec.Event.Device)
	if err != nil {
		return err
	}
	if !ok || rec.Event.Type == devices.TypeAmberStart {
		s = AmberSession{Device: rec.Event.Device, Site: rec.Site, Started: now, StartKey: rec.Key()}
	}
	if rec.Event.Note != "" {
		s.Note = rec.Event.Note
	}
	s.Registered = rec.Registered
	s.State, s.Alert = AmberRunning, ""
	s.Deadline = now.Add(time.Duration(rec.Event.DurationS) * time.Second)
	if err := putJSON(tx.Bucket(bucketAmber), s.Device, s); err != nil {
		return err
	}
	return timer.Set(tx, timer.Timer{ID: amberTimerID(s.Device), Kind: timerAmberDue, Due: s.Deadline})
}

// amberCheckin ends the session. If a failed-to-check-in alert was already
// raised it stays open for a person to resolve, with a note that the wearer
// checked in.
func (e *Engine) amberCheckin(tx *bolt.Tx, rec journal.Record) error {
	s, ok, err := amberSession(tx, rec.Event.Device)
	if err != nil || !ok {
		return err
	}
	if err := timer.Cancel(tx, amberTimerID(s.Device)); err != nil {
		return err
	}
	if s.Alert != "" {
		if a, err := get(tx, s.Alert); err == nil && a.Open() {
			a.Notes = append(a.Notes, Note{At: e.now(), By: "wearer", Text: "wearer checked in (key " + rec.Key() + ")"})
			if err := putJSON(tx.Bucket(bucketAlerts), a.ID, a); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketAmber).Delete([]byte(s.Device))
}

// Fire is the timer wheel's FireFunc.
func (e *Engine) Fire(tx *bolt.Tx, t timer.Timer) error {
	e.changed(tx)
	switch t.Kind {
	case timerAmberDue, timerAmberGrace:
		return e.amberFire(tx, t)
	case timerOffline:
		return e.offlineFire(tx, t)
	}
	return nil // an unknown kind from a newer version: dropped, not fired forever
}

func (e *Engine) amberFire(tx *bolt.Tx, t timer.Timer) error {
	device := t.ID[len("amber:"):]
	s, ok, err := amberSession(tx, device)
	if err != nil || !ok {
		return err
	}
	now := e.now()
	if t.Kind == timerAmberDue {
		// Ask the wearer to check in, discreetly, before anyone is alarmed.
		s.State = AmberPrealerted
		if e.routes().Wearer != "" {
			m := forward.Message{Key: fmt.Sprintf("%s:prealert:%d", s.StartKey, s.Deadline.Unix()), AlertID: "", Kind: forward.KindAlarm,
				Event: devices.CmdAmberPrealert, Priority: P1, Device: s.Device, Site: s.Site, Time: now, RaisedAt: now}
			if _, err := outbox.Enqueue(tx, e.routes().Wearer, m, now); err != nil {
				return err
			}
		}
		if err := timer.Set(tx, timer.Timer{ID: t.ID, Kind: timerAmberGrace, Due: now.Add(e.opts.AmberGrace)}); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketAmber), s.Device, s)
	}
	st, err := status(tx, s.Device)
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s:overrun", s.StartKey)
	a := Alert{ID: IDForKey(key), Key: key, Event: EventAmberOverrun, Priority: P1, Site: s.Site, Device: s.Device,
		EventTime: s.Deadline, Location: st.Location, Battery: st.Battery, Note: s.Note}
	if d := s.Registered; d != nil && d.Site == s.Site {
		a.Verified, a.Wearer, a.Zone, a.Camera = true, d.Wearer, d.Zone, d.Camera
	}
	who := a.Wearer
	if !a.Verified {
		who = "UNVERIFIED device " + a.Device
	}
	a.Text = fmt.Sprintf("FAILED TO CHECK IN %s at %s: %s", who, a.Site, s.Note)
	if err := e.raise(tx, &a); err != nil {
		return err
	}
	s.State, s.Alert = AmberAlerted, a.ID
	return putJSON(tx.Bucket(bucketAmber), s.Device, s)
}

// AmberSessions lists running sessions.
func (e *Engine) AmberSessions() ([]AmberSession, error) {
	var out []AmberSession
	err := e.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAmber).ForEach(func(_, v []byte) error {
			var s AmberSession
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}
