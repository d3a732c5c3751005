// Package incident turns duress alarms and staff reports into incident
// records, each with a support plan that follows the NHS Staff Council's
// post-incident support framework (immediate response, demobilisation,
// defusing, debriefing, after-action review, welfare check-ins), and
// reminds the owner of each step when it falls overdue.
//
// Vigil sees every alarm, so it is the cheapest place to make sure that the
// member of staff gets timely, tracked care and that the Trust's incident
// data (type, cause, setting, injury, police, response times) is complete.
// Most incidents go unreported; an incident here costs the worker two button
// presses or one short form.
//
// Records live in the gateway's state database (bbolt), in buckets whose
// names start with "incident_", as JSON. Every operation takes the time as a
// parameter, so plans, due dates and reminders are tested without sleeping.
// The package does not import the alert engine: the caller copies what it
// needs into an AlertInfo, which keeps incident reporting usable on its own
// and keeps the alert path free of it.
package incident

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// bucketIncidents holds id → Incident (JSON).
	bucketIncidents = []byte("incident_records")
	// bucketKeys holds idempotency key → id: "alert:<alert id>" or
	// "report:<key>", so a replayed alarm or device report finds its incident.
	bucketKeys = []byte("incident_keys")
)

// ErrNotFound is returned for an incident or task that does not exist.
var ErrNotFound = errors.New("incident: not found")

// ErrTransition is returned when a task is completed that is no longer open:
// a completed step is history and is not silently rewritten.
var ErrTransition = errors.New("incident: task already closed")

// Sources of an incident.
const (
	SourceAlarm        = "alarm"         // a resolved, genuine duress alarm
	SourceDeviceReport = "device_report" // the wearer's "report" presses, no alarm
	SourceForm         = "form"          // the quick console form
)

// Incident is one incident against a member of staff and the care that
// follows it. Response times are copied from the alert, not referenced,
// because the incident report must still add up after alerts are pruned.
type Incident struct {
	ID string `json:"id"`
	// AlertID is the alarm that raised it; empty for reports.
	AlertID string `json:"alert_id,omitempty"`
	Source  string `json:"source"`
	Site    string `json:"site"`
	Device  string `json:"device,omitempty"`
	Wearer  string `json:"wearer,omitempty"`
	Team    string `json:"team,omitempty"`
	// Place is where on site it happened, as the device or reporter said.
	Place string `json:"place,omitempty"`

	OccurredAt time.Time `json:"occurred_at"`
	RecordedAt time.Time `json:"recorded_at"`

	Raised       time.Time `json:"raised,omitzero"`
	Delivered    time.Time `json:"delivered,omitzero"`
	Acknowledged time.Time `json:"acknowledged,omitzero"`
	Resolved     time.Time `json:"resolved,omitzero"`
	Outcome      string    `json:"outcome,omitempty"`

	Reporter string `json:"reporter,omitempty"`
	// ReportedType is the type the reporter chose, before a manager's
	// classification: a full type from a form, "verbal" or "physical" from
	// a device (it has only two presses to say it with).
	ReportedType string `json:"reported_type,omitempty"`
	// Text is the reporter's own account, if they gave one.
	Text         string `json:"text,omitempty"`
	Confidential bool   `json:"confidential"`

	Classification *Classification `json:"classification,omitempty"`
	Plan           []Task          `json:"plan"`
	History        []Change        `json:"history"`
}

// Kind says whether the incident was physical or verbal, from the
// classification if there is one, else from what was reported; "" if
// nothing says.
func (inc Incident) Kind() string {
	if inc.Classification != nil {
		return KindOf(inc.Classification.Type)
	}
	if inc.ReportedType == KindVerbal || inc.ReportedType == KindPhysical {
		return inc.ReportedType
	}
	return KindOf(inc.ReportedType)
}

// Type is the classified type, or else the reported one if it is a full
// type: the confidentiality rule is checked against it.
func (inc Incident) Type() string {
	if inc.Classification != nil {
		return inc.Classification.Type
	}
	if slices.Contains(Types(), inc.ReportedType) {
		return inc.ReportedType
	}
	return ""
}

// Open reports whether any step of the support plan is still open: the
// incident is not closed until the member of staff's care is.
func (inc Incident) Open() bool {
	return slices.ContainsFunc(inc.Plan, func(t Task) bool { return t.Status == StatusOpen })
}

// Overdue counts the plan's open steps past their due time at now.
func (inc Incident) Overdue(now time.Time) int {
	n := 0
	for _, t := range inc.Plan {
		if t.Status == StatusOpen && now.After(t.Due) {
			n++
		}
	}
	return n
}

func (inc Incident) clone() Incident {
	out := inc
	out.Plan = slices.Clone(inc.Plan)
	out.History = slices.Clone(inc.History)
	if inc.Classification != nil {
		c := *inc.Classification
		out.Classification = &c
	}
	return out
}

// Change is one line of an incident's history: audits ask when welfare
// contact was made and by whom, so every change is kept.
type Change struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	What string    `json:"what"` // created, classified, confidential, task_completed, reminded
	Task string    `json:"task,omitempty"`
	Note string    `json:"note,omitempty"`
}

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// Plan sets the support plan's windows.
	Plan PlanConfig
	// Owner names who owns the support plan of an incident at site for the
	// device: normally the wearer's line manager, from configuration per
	// device or site. nil or "" means the supervisor on duty.
	Owner func(site, device string) string
	// ConfidentialOwner owns the plan of a confidential incident instead of
	// the line manager, who may be the very person the report is about
	// (default "ig_officer", a role rather than a name).
	ConfidentialOwner string
	// Now is Run's clock when it is given none (default time.Now).
	Now func() time.Time
	// Logger receives reminder failures (default: discard).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	o.Plan.defaults()
	if o.Owner == nil {
		o.Owner = func(string, string) string { return "" }
	}
	if o.ConfidentialOwner == "" {
		o.ConfidentialOwner = RoleIGOfficer
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Store keeps incidents in the gateway's state database.
type Store struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger
}

// New prepares the package's buckets in db, which the caller owns and closes.
func New(db *bolt.DB, opts Options) (*Store, error) {
	opts.defaults()
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketIncidents, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("incident: init: %w", err)
	}
	return &Store{db: db, opts: opts, log: opts.Logger.With("component", "incident")}, nil
}

// AlertInfo is what an incident needs from a resolved alert. It is the
// package's own type so that incident does not depend on the alert engine.
type AlertInfo struct {
	ID           string
	Event        string
	Site         string
	Device       string
	Wearer       string
	Team         string
	Place        string
	Raised       time.Time
	Delivered    time.Time
	Acknowledged time.Time
	Resolved     time.Time
	Outcome      string
}

// Genuine reports whether an alert resolved with outcome was a real
// incident. False alarms, tests, accidental presses and cancellations are
// not; anything else, including an outcome this package has never heard of,
// is, because missing a real incident costs more than one spare record.
func Genuine(outcome string) bool {
	switch strings.ToLower(strings.TrimSpace(outcome)) {
	case "false_alarm", "test", "accidental", "cancelled":
		return false
	}
	return true
}

// FromAlert records the incident behind a resolved alert and creates its
// support plan, anchored at the resolution (the moment the person is safe
// and the immediate checks apply). It is idempotent per alert id: a second
// call, say after a restart replays the resolution, returns the existing
// incident unchanged. Whether the alert was genuine is the caller's call
// (see Genuine).
func (s *Store) FromAlert(a AlertInfo, now time.Time) (inc Incident, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		inc, err = s.FromAlertTx(tx, a, now)
		return err
	})
	return inc, err
}

// FromAlertTx is FromAlert inside the caller's transaction on the same
// database: the alert engine resolves the alert and records its incident
// in one commit, so a crash cannot leave a genuine alarm without one.
func (s *Store) FromAlertTx(tx *bolt.Tx, a AlertInfo, now time.Time) (Incident, error) {
	switch {
	case a.ID == "":
		return Incident{}, &FieldError{Field: "alert id", Value: a.ID, Problem: "is required"}
	case a.Site == "":
		return Incident{}, &FieldError{Field: "site", Value: a.Site, Problem: "is required"}
	case a.Resolved.IsZero():
		return Incident{}, &FieldError{Field: "resolved", Value: "", Problem: "is required: only a resolved alert becomes an incident"}
	}
	occurred := a.Raised
	if occurred.IsZero() {
		occurred = a.Resolved
	}
	inc := Incident{
		AlertID: a.ID, Source: SourceAlarm, Site: a.Site, Device: a.Device, Wearer: a.Wearer, Team: a.Team, Place: a.Place,
		OccurredAt: occurred, RecordedAt: now,
		Raised: a.Raised, Delivered: a.Delivered, Acknowledged: a.Acknowledged, Resolved: a.Resolved,
		Outcome: a.Outcome,
	}
	return s.create(tx, "alert:"+a.ID, inc, a.Resolved, "alarm "+a.Event)
}

// ReportInput is an incident reported without an alarm: by the wearer's
// device (two presses, verbal or physical) or by the console's quick form.
type ReportInput struct {
	// Source is SourceDeviceReport or SourceForm.
	Source string
	// Key makes the report idempotent: the device id and seq ("btn-1:42")
	// for a device report, which is required because the journal may replay
	// it; optional for a form (say, a client-generated id against double
	// submits).
	Key    string
	Site   string
	Device string
	Team   string
	Wearer string
	// Reporter is who filled in the form, if not the wearer.
	Reporter string
	// Place is where on site it happened.
	Place string
	// Type is a full type from Types for a form, or KindVerbal/KindPhysical
	// (also accepted from a form, when the reporter would rather not say).
	Type string
	// OccurredAt is when it happened (zero: now).
	OccurredAt time.Time
	Text       string
	// Confidential asks for the reporter's name to be withheld; only for
	// sexual harassment or assault.
	Confidential bool
}

// maxSkew is how far in the future an occurrence time may be before it is
// refused: clocks on consoles and devices drift, but not by hours.
const maxSkew = 5 * time.Minute

// Limits on free text, so a record stays a record and not a document store.
const (
	MaxText  = 4000 // bytes of the reporter's account
	MaxPlace = 128  // bytes, as on a device
)

func (r ReportInput) validate(now time.Time) error {
	var errs []error
	switch r.Source {
	case SourceDeviceReport:
		if r.Device == "" {
			errs = append(errs, &FieldError{Field: "device", Value: r.Device, Problem: "is required for a device report"})
		}
		if r.Key == "" {
			errs = append(errs, &FieldError{Field: "key", Value: r.Key, Problem: "is required for a device report (device id and seq)"})
		}
		errs = append(errs, oneOf("type", r.Type, []string{KindVerbal, KindPhysical}))
	case SourceForm:
		if r.Wearer == "" && r.Reporter == "" {
			errs = append(errs, &FieldError{Field: "wearer", Value: "", Problem: "or reporter is required on a form"})
		}
		errs = append(errs, oneOf("type", r.Type, append(Types(), KindVerbal, KindPhysical)))
	default:
		errs = append(errs, oneOf("source", r.Source, []string{SourceDeviceReport, SourceForm}))
	}
	if r.Site == "" {
		errs = append(errs, &FieldError{Field: "site", Value: r.Site, Problem: "is required"})
	}
	if len(r.Text) > MaxText {
		errs = append(errs, &FieldError{Field: "text", Value: r.Text[:32] + "…", Problem: fmt.Sprintf("is longer than %d bytes", MaxText)})
	}
	if len(r.Place) > MaxPlace {
		errs = append(errs, &FieldError{Field: "place", Value: r.Place[:32] + "…", Problem: fmt.Sprintf("is longer than %d bytes", MaxPlace)})
	}
	if r.OccurredAt.After(now.Add(maxSkew)) {
		errs = append(errs, &FieldError{Field: "occurred_at", Value: r.OccurredAt.Format(time.RFC3339), Problem: "is in the future"})
	}
	if r.Confidential && !ConfidentialAllowed(r.Type) {
		errs = append(errs, &FieldError{Field: "confidential", Value: r.Type,
			Problem: "is only allowed for sexual_harassment or sexual_assault"})
	}
	return errors.Join(errs...)
}

// Report records an incident that raised no alarm and creates its support
// plan, anchored at now (when the organisation learned of it: a late report
// gets its full plan rather than a list of steps already overdue). With a
// Key it is idempotent: the same key returns the existing incident.
func (s *Store) Report(r ReportInput, now time.Time) (inc Incident, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		inc, err = s.ReportTx(tx, r, now)
		return err
	})
	return inc, err
}

// ReportTx is Report inside the caller's transaction: the journal records a
// device's report and its incident in one commit, before the device's
// message is acknowledged.
func (s *Store) ReportTx(tx *bolt.Tx, r ReportInput, now time.Time) (Incident, error) {
	if err := r.validate(now); err != nil {
		return Incident{}, err
	}
	occurred := r.OccurredAt
	if occurred.IsZero() {
		occurred = now
	}
	inc := Incident{
		Source: r.Source, Site: r.Site, Device: r.Device, Wearer: r.Wearer, Team: r.Team, Place: r.Place,
		OccurredAt: occurred, RecordedAt: now, Reporter: r.Reporter, ReportedType: r.Type,
		Text: r.Text, Confidential: r.Confidential,
	}
	key := ""
	if r.Key != "" {
		key = "report:" + r.Key
	}
	by := cmp.Or(r.Reporter, r.Wearer, r.Device)
	return s.create(tx, key, inc, now, by)
}

// create stores a new incident with its plan, unless key already names one.
func (s *Store) create(tx *bolt.Tx, key string, inc Incident, anchor time.Time, by string) (Incident, error) {
	err := func() error {
		keys := tx.Bucket(bucketKeys)
		if key != "" {
			if id := keys.Get([]byte(key)); id != nil {
				var err error
				inc, err = get(tx, string(id))
				return err
			}
		}
		b := tx.Bucket(bucketIncidents)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		// The id is a plain counter, never made from the device or alert
		// id, so it can be shown and sent in reminders even when the
		// incident is confidential.
		inc.ID = fmt.Sprintf("inc-%06d", seq)
		inc.Plan = s.opts.Plan.tasks(anchor, s.owner(inc))
		inc.History = []Change{{At: inc.RecordedAt, By: by, What: "created", Note: inc.Source}}
		if key != "" {
			if err := keys.Put([]byte(key), []byte(inc.ID)); err != nil {
				return err
			}
		}
		return put(tx, inc)
	}()
	if err != nil {
		return Incident{}, fmt.Errorf("incident: create: %w", err)
	}
	return inc, nil
}

func (s *Store) owner(inc Incident) string {
	if inc.Confidential {
		return s.opts.ConfidentialOwner
	}
	return s.opts.Owner(inc.Site, inc.Device)
}

// Classify records a manager's classification of incident id. It may be
// repeated (the police outcome comes months later); each one is in the
// history. A confidential incident cannot be reclassified to a type that may
// not be confidential: the reporter was promised their name is withheld.
func (s *Store) Classify(id string, c Classification, by string, now time.Time) (Incident, error) {
	if err := c.Validate(); err != nil {
		return Incident{}, err
	}
	return s.update(id, func(inc *Incident) error {
		if inc.Confidential && !ConfidentialAllowed(c.Type) {
			return &FieldError{Field: "type", Value: c.Type,
				Problem: "cannot be given to a confidential incident: only sexual_harassment or sexual_assault may be confidential"}
		}
		c.By, c.At = by, now
		inc.Classification = &c
		inc.History = append(inc.History, Change{At: now, By: by, What: "classified", Note: c.Type})
		return nil
	})
}

// SetConfidential marks incident id confidential (or not). It is refused
// unless the incident's type, classified or reported, is sexual harassment
// or sexual assault. Making an incident confidential hands its open support
// steps to Options.ConfidentialOwner, since the line manager was chosen
// from the very device the report is meant not to name.
func (s *Store) SetConfidential(id string, on bool, by string, now time.Time) (Incident, error) {
	return s.update(id, func(inc *Incident) error {
		if on && !ConfidentialAllowed(inc.Type()) {
			return &FieldError{Field: "confidential", Value: cmp.Or(inc.Type(), inc.ReportedType, "unclassified"),
				Problem: "is only allowed for sexual_harassment or sexual_assault"}
		}
		if inc.Confidential == on {
			return nil
		}
		inc.Confidential = on
		owner := s.owner(*inc)
		for i := range inc.Plan {
			if inc.Plan[i].Status == StatusOpen {
				inc.Plan[i].Owner = owner
			}
		}
		what := "confidential"
		if !on {
			what = "not_confidential"
		}
		inc.History = append(inc.History, Change{At: now, By: by, What: what})
		return nil
	})
}

// Get returns one incident, unredacted: pass it through View before showing it.
func (s *Store) Get(id string) (Incident, error) {
	var inc Incident
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		inc, err = get(tx, id)
		return err
	})
	return inc, err
}

// Filter selects incidents for List. Zero fields select everything.
type Filter struct {
	Site string
	// From and To bound OccurredAt: From inclusive, To exclusive.
	From, To time.Time
	// Open keeps only incidents whose support plan is not finished.
	Open bool
}

func (f Filter) match(inc Incident) bool {
	switch {
	case f.Site != "" && inc.Site != f.Site:
		return false
	case !f.From.IsZero() && inc.OccurredAt.Before(f.From):
		return false
	case !f.To.IsZero() && !inc.OccurredAt.Before(f.To):
		return false
	case f.Open && !inc.Open():
		return false
	}
	return true
}

// List returns the incidents f selects, newest occurrence first.
func (s *Store) List(f Filter) ([]Incident, error) {
	out := []Incident{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(inc Incident) error {
			if f.match(inc) {
				out = append(out, inc)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b Incident) int {
		return cmp.Or(b.OccurredAt.Compare(a.OccurredAt), cmp.Compare(b.ID, a.ID))
	})
	return out, err
}

func (s *Store) update(id string, f func(*Incident) error) (Incident, error) {
	var inc Incident
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if inc, err = get(tx, id); err != nil {
			return err
		}
		if err := f(&inc); err != nil {
			return err
		}
		return put(tx, inc)
	})
	return inc, err
}

func get(tx *bolt.Tx, id string) (Incident, error) {
	var inc Incident
	v := tx.Bucket(bucketIncidents).Get([]byte(id))
	if v == nil {
		return inc, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := json.Unmarshal(v, &inc); err != nil {
		return inc, fmt.Errorf("incident: decode %s: %w", id, err)
	}
	return inc, nil
}

func forEach(tx *bolt.Tx, f func(Incident) error) error {
	return tx.Bucket(bucketIncidents).ForEach(func(k, v []byte) error {
		var inc Incident
		if err := json.Unmarshal(v, &inc); err != nil {
			return fmt.Errorf("incident: decode %s: %w", k, err)
		}
		return f(inc)
	})
}

func put(tx *bolt.Tx, inc Incident) error {
	raw, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("incident: encode %s: %w", inc.ID, err)
	}
	return tx.Bucket(bucketIncidents).Put([]byte(inc.ID), raw)
}
