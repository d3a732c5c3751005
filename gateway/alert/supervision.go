package alert

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/gateway/outbox"
	"github.com/vigil-gw/vigil/gateway/timer"
)

// Supervision: a registered device that falls silent for OfflineIntervals
// heartbeat intervals raises a P3 alert, cleared automatically when it is
// heard from again; a battery below the threshold raises a P4 alert, grouped
// so a site gets at most one low-battery notification per window.

// Events raised by supervision.
const (
	EventOffline    = "device_offline"
	EventLowBattery = "low_battery"
)

// OutcomeBackOnline resolves an offline alert when the device returns.
const OutcomeBackOnline = "back_online"

type offlineData struct {
	Site       string          `json:"site"`
	Registered registry.Device `json:"registered"`
}

func offlineTimerID(device string) string { return "offline:" + device }

func (e *Engine) supervise(tx *bolt.Tx, rec journal.Record, st DeviceStatus) error {
	d := rec.Registered
	if d == nil {
		return nil // nothing to supervise: an unknown device has no schedule
	}
	now := e.now()
	interval := e.opts.HeartbeatInterval
	if st.IntervalS > 0 {
		interval = time.Duration(st.IntervalS) * time.Second
	}
	data, err := json.Marshal(offlineData{Site: rec.Site, Registered: *d})
	if err != nil {
		return fmt.Errorf("alert: offline timer %s: %w", d.ID, err)
	}
	if err := timer.Set(tx, timer.Timer{ID: offlineTimerID(d.ID), Kind: timerOffline,
		Due: now.Add(time.Duration(e.opts.OfflineIntervals) * interval), Data: data}); err != nil {
		return err
	}
	changed := false
	if st.OfflineAlert != "" {
		if err := e.clearOffline(tx, st.OfflineAlert, rec.Key()); err != nil {
			return err
		}
		st.OfflineAlert, changed = "", true
	}
	if b := rec.Event.Battery; b != nil {
		switch {
		case *b < e.opts.BatteryThreshold && !st.BatteryLow:
			if err := e.lowBattery(tx, rec, *b); err != nil {
				return err
			}
			st.BatteryLow, changed = true, true
		case *b >= e.opts.BatteryThreshold+5 && st.BatteryLow: // hysteresis: charged, not just noise
			st.BatteryLow, changed = false, true
		}
	}
	if !changed {
		return nil
	}
	return putJSON(tx.Bucket(bucketStatus), st.Device, st)
}

// clearOffline resolves an offline alert and restores it on its routes.
func (e *Engine) clearOffline(tx *bolt.Tx, id, key string) error {
	a, err := get(tx, id)
	if err != nil || !a.Open() {
		return nil // resolved by a person already, or gone
	}
	now := e.now()
	a.State, a.ResolvedAt, a.ResolvedBy, a.Outcome = Resolved, now, "vigil", OutcomeBackOnline
	for _, r := range a.Routes {
		if _, err := outbox.Enqueue(tx, r, a.message(forward.KindRestore, key+":online", a.Seq), now); err != nil {
			return err
		}
	}
	return putJSON(tx.Bucket(bucketAlerts), a.ID, a)
}

func (e *Engine) offlineFire(tx *bolt.Tx, t timer.Timer) error {
	var od offlineData
	if err := json.Unmarshal(t.Data, &od); err != nil {
		return fmt.Errorf("alert: offline timer %s: %w", t.ID, err)
	}
	st, err := status(tx, od.Registered.ID)
	if err != nil || st.OfflineAlert != "" {
		return err
	}
	now := e.now()
	a := Alert{ID: fmt.Sprintf("offline.%s.%d", od.Registered.ID, now.UnixNano()), Event: EventOffline, Priority: P3,
		Site: od.Site, Device: od.Registered.ID, Wearer: od.Registered.Wearer, Zone: od.Registered.Zone, Verified: true,
		EventTime: now, Location: st.Location, Battery: st.Battery,
		Text: fmt.Sprintf("OFFLINE %s (%s) at %s: not heard from since %s", od.Registered.ID, od.Registered.Wearer, od.Site, st.LastSeen.UTC().Format(time.RFC3339))}
	if err := e.raise(tx, &a); err != nil {
		return err
	}
	st.OfflineAlert = a.ID
	return putJSON(tx.Bucket(bucketStatus), st.Device, st)
}

type group struct {
	Alert string    `json:"alert"`
	Since time.Time `json:"since"`
}

// lowBattery adds the device to its site's open low-battery alert if that
// was raised within the window (no new notification), or raises a new one.
func (e *Engine) lowBattery(tx *bolt.Tx, rec journal.Record, pct int) error {
	now := e.now()
	who := fmt.Sprintf("%s (%s) %d%%", rec.Event.Device, rec.Registered.Wearer, pct)
	gk := "battery:" + rec.Site
	var g group
	if v := tx.Bucket(bucketGroups).Get([]byte(gk)); v != nil {
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("alert: battery group %s: %w", rec.Site, err)
		}
		if now.Sub(g.Since) < e.opts.BatteryGroupWindow {
			if a, err := get(tx, g.Alert); err == nil && a.Open() {
				a.Devices = append(a.Devices, rec.Event.Device)
				a.Notes = append(a.Notes, Note{At: now, By: "vigil", Text: "also low: " + who})
				return putJSON(tx.Bucket(bucketAlerts), a.ID, a)
			}
		}
	}
	a := Alert{ID: fmt.Sprintf("battery.%s.%d", rec.Site, now.UnixNano()), Event: EventLowBattery, Priority: P4,
		Site: rec.Site, Verified: true, EventTime: rec.Event.TS, Devices: []string{rec.Event.Device},
		Text: "LOW BATTERY at " + rec.Site + ": " + who}
	if err := e.raise(tx, &a); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketGroups), gk, group{Alert: a.ID, Since: now})
}
