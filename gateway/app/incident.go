package app

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/alert"
	"github.com/vigil-gw/vigil/gateway/incident"
	"github.com/vigil-gw/vigil/gateway/journal"
)

// IncidentsConfig sets up incident records and post-incident support.
type IncidentsConfig struct {
	// LineManagers names who owns a wearer's support plan: keyed by device
	// id, else by site id. A wearer with neither is looked after by the
	// supervisor on duty (shown as "supervisor on duty").
	LineManagers map[string]string `yaml:"line_managers"`
	// Plan overrides the framework's default windows.
	Plan PlanConfig `yaml:"plan"`
	// CheckEvery is how often overdue support steps are looked for (1m).
	CheckEvery time.Duration `yaml:"check_every"`
}

// PlanConfig is the support plan's windows, each [opens, due] after the
// alert's resolution (or after a report was recorded). Omitted stages keep
// the framework's defaults: immediate [0, 1h], demobilisation [0, 12h],
// welfare_contact [0, 24h], defusing [72h, 240h], debriefing [168h, 336h],
// review [0, 672h]; check-ins at 168h and 672h, each open for 48h;
// an overdue step reminded again every 24h.
type PlanConfig struct {
	Immediate      []time.Duration `yaml:"immediate"`
	Demobilisation []time.Duration `yaml:"demobilisation"`
	WelfareContact []time.Duration `yaml:"welfare_contact"`
	Defusing       []time.Duration `yaml:"defusing"`
	Debriefing     []time.Duration `yaml:"debriefing"`
	Review         []time.Duration `yaml:"review"`
	CheckIns       []time.Duration `yaml:"checkins"`
	CheckInWindow  time.Duration   `yaml:"checkin_window"`
	RemindEvery    time.Duration   `yaml:"remind_every"`
}

// plan turns the configuration into the incident package's windows.
func (p PlanConfig) plan() (incident.PlanConfig, error) {
	var out incident.PlanConfig
	var errs []error
	window := func(name string, d []time.Duration, w *incident.Window) {
		switch {
		case d == nil:
		case len(d) != 2 || d[0] < 0 || d[1] <= d[0]:
			errs = append(errs, fmt.Errorf("plan.%s: want [opens, due] with 0 <= opens < due, e.g. [72h, 240h]", name))
		default:
			*w = incident.Window{NotBefore: d[0], Due: d[1]}
		}
	}
	window("immediate", p.Immediate, &out.Immediate)
	window("demobilisation", p.Demobilisation, &out.Demobilisation)
	window("welfare_contact", p.WelfareContact, &out.WelfareContact)
	window("defusing", p.Defusing, &out.Defusing)
	window("debriefing", p.Debriefing, &out.Debriefing)
	window("review", p.Review, &out.Review)
	for _, d := range p.CheckIns {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("plan.checkins: %s is not a positive offset", d))
		}
	}
	out.CheckIns = p.CheckIns
	if p.CheckInWindow < 0 || p.RemindEvery < 0 {
		errs = append(errs, errors.New("plan: checkin_window and remind_every must not be negative"))
	}
	out.CheckInWindow, out.RemindEvery = p.CheckInWindow, p.RemindEvery
	return out, errors.Join(errs...)
}

func (c IncidentsConfig) validate() error {
	var errs []error
	if c.CheckEvery <= 0 {
		errs = append(errs, errors.New("check_every must be positive"))
	}
	for k, v := range c.LineManagers {
		if !devices.ValidID(k) || strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("line_managers: %q: %q: keys are device or site ids, values names", k, v))
		}
	}
	_, err := c.Plan.plan()
	return errors.Join(append(errs, err)...)
}

// lineManager owns the support plan of an incident to the wearer of device
// at site: the device's line manager, else the site's.
func (c IncidentsConfig) lineManager(site, device string) string {
	if m, ok := c.LineManagers[device]; ok && device != "" {
		return m
	}
	return c.LineManagers[site]
}

// openIncidents opens the incident store in the gateway's state database,
// so an incident commits in the same transaction as the alert resolution
// or the device report behind it.
func (a *App) openIncidents() (err error) {
	plan, err := a.cfg.Incidents.Plan.plan()
	if err != nil {
		return fmt.Errorf("incidents: %w", err)
	}
	a.incidents, err = incident.New(a.db, incident.Options{Plan: plan, Owner: a.cfg.Incidents.lineManager, Logger: a.log})
	return err
}

// onResolved makes the incident behind a genuine P1 alarm (duress, man-down,
// covert duress, a missed amber check-in) from a device, inside the
// resolving transaction. System alerts and false alarms make none.
func (a *App) onResolved(tx *bolt.Tx, al alert.Alert) error {
	if al.Priority != alert.P1 || al.Device == "" || !incident.Genuine(al.Outcome) {
		return nil
	}
	_, err := a.incidents.FromAlertTx(tx, incident.AlertInfo{
		ID: al.ID, Event: al.Event, Site: al.Site, Device: al.Device, Wearer: al.Wearer, Place: al.Place,
		Raised: al.RaisedAt, Delivered: al.DeliveredAt, Acknowledged: al.AcknowledgedAt, Resolved: al.ResolvedAt,
		Outcome: al.Outcome,
	}, al.ResolvedAt)
	return err
}

// apply is the journal's apply step: the alert engine's, then, for a
// device's report, the incident it records. Both commit with the journal
// record, before the device's message is acknowledged.
func (a *App) apply(tx *bolt.Tx, rec journal.Record, key string) error {
	if err := a.engine.Apply(tx, rec, key); err != nil {
		return err
	}
	if rec.Event.Type != devices.TypeReport {
		return nil
	}
	in := incident.ReportInput{Source: incident.SourceDeviceReport, Key: key, Site: rec.Site,
		Device: rec.Event.Device, Type: rec.Event.Kind, OccurredAt: rec.Event.TS, Place: rec.Event.Place}
	if d := rec.Registered; d != nil && d.Site == rec.Site {
		in.Wearer = d.Wearer
	}
	inc, err := a.incidents.ReportTx(tx, in, rec.Received)
	if errors.Is(err, incident.ErrInvalid) {
		// The device's message is valid (devices checked kind and place) yet
		// the record refuses it: keep the journal going, say so once.
		if a.limiter.Allow("incident-report:" + rec.Event.Device) {
			a.log.Error("device report not recorded as an incident", "device", rec.Event.Device, "err", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	tx.OnCommit(func() { a.log.Info("incident reported from a device", "incident", inc.ID, "site", inc.Site) })
	return nil
}

// remind raises an overdue support step as a P2 system alert: it goes to the
// supervisors' webhooks and shows on the console board. A confidential
// incident's reminder names nobody (the incident package leaves the wearer
// out and makes the owner a role).
func (a *App) remind(r incident.Reminder) error {
	owner := cmp.Or(r.Owner, "supervisor on duty")
	text := fmt.Sprintf("Support overdue: %s %s for %s, owner %s, due %s", r.Incident, r.Title,
		cmp.Or(r.Wearer, "(not named)"), owner, r.Due.Format("2 Jan 15:04"))
	_, err := a.engine.RaiseSystem(EventSupportOverdue, r.Site, text)
	return err
}

// EventSupportOverdue is the system alert raised for an overdue support step.
const EventSupportOverdue = "support_overdue"
