package incident

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Incident types. The list follows the categories NHS Trusts report
// violence and aggression against staff under, so the data adds up across
// Trusts without a mapping step.
const (
	TypePhysicalAssault  = "physical_assault"
	TypeVerbalAbuse      = "verbal_abuse"
	TypeThreat           = "threat"
	TypeSexualHarassment = "sexual_harassment"
	TypeSexualAssault    = "sexual_assault"
	TypeHateIncident     = "hate_incident"
	TypeOnlineAbuse      = "online_abuse"
)

// Types lists every incident type, in the order a form should offer them.
// It is a function, not a variable, so no caller can change the list for
// everyone else.
func Types() []string {
	return []string{TypePhysicalAssault, TypeVerbalAbuse, TypeThreat, TypeSexualHarassment,
		TypeSexualAssault, TypeHateIncident, TypeOnlineAbuse}
}

// Causes lists the causes of an incident. "medically_related" matters:
// harm from a patient who lacked capacity is reported, but is handled
// differently from deliberate abuse.
func Causes() []string { return []string{"behavioural", "medically_related", "unknown"} }

// Settings lists where an incident may happen, so violence-prevention leads
// can see which settings need the most attention.
func Settings() []string {
	return []string{"patients_home", "community", "ward", "emergency_department",
		"mental_health_unit", "ambulance", "clinic", "other"}
}

// Injuries lists the injury levels, from none up.
func Injuries() []string { return []string{"none", "minor", "major"} }

// Kinds of incident for the safety cross: one box per team per day, green
// for none, yellow for verbal, red for physical.
const (
	KindVerbal   = "verbal"
	KindPhysical = "physical"
)

// Safety-cross colours.
const (
	Green  = "green"
	Yellow = "yellow"
	Red    = "red"
)

// KindOf says whether an incident type is physical (physical or sexual
// assault) or verbal (every other type), which is all the safety cross
// shows. It returns "" for a string that is not a type.
func KindOf(typ string) string {
	switch typ {
	case TypePhysicalAssault, TypeSexualAssault:
		return KindPhysical
	case "":
		return ""
	}
	if slices.Contains(Types(), typ) {
		return KindVerbal
	}
	return ""
}

// ConfidentialAllowed reports whether an incident of this type may be
// reported confidentially. Only sexual harassment and sexual assault may:
// the sexual safety charter asks for a route where the person need not be
// named, and keeping the route narrow keeps other incidents accountable.
func ConfidentialAllowed(typ string) bool {
	return typ == TypeSexualHarassment || typ == TypeSexualAssault
}

// Classification is what a manager records once they know what happened.
// It is separate from the incident so that unclassified incidents are easy
// to find and a reclassification is a visible change.
type Classification struct {
	Type       string `json:"type"`
	Cause      string `json:"cause"`
	Setting    string `json:"setting"`
	StaffGroup string `json:"staff_group,omitempty"`
	// Injury is one of Injuries.
	Injury string `json:"injury"`
	// Police says the police were involved; CrimeRef is their reference.
	Police             bool   `json:"police"`
	CrimeRef           string `json:"crime_ref,omitempty"`
	ProsecutionOutcome string `json:"prosecution_outcome,omitempty"`
	// By and At are filled in by Classify.
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// MaxField bounds the classification's free-text fields (staff group, crime
// reference, prosecution outcome): short labels, not accounts.
const MaxField = 64

// ErrInvalid is wrapped by every *FieldError, so callers can tell bad input
// (a 400) from a storage failure with errors.Is.
var ErrInvalid = errors.New("incident: invalid input")

// FieldError names the field and value that were refused, so a form can put
// the message next to the right box.
type FieldError struct {
	Field   string
	Value   string
	Problem string
}

// Error says which field had which value and what is wrong with it.
func (e *FieldError) Error() string {
	return fmt.Sprintf("incident: %s %q %s", e.Field, e.Value, e.Problem)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func oneOf(field, value string, allowed []string) error {
	if slices.Contains(allowed, value) {
		return nil
	}
	return &FieldError{Field: field, Value: value, Problem: "is not one of " + strings.Join(allowed, ", ")}
}

// Validate checks every enumerated field and returns all the problems
// found, joined, so a form shows them at once rather than one per submit.
func (c Classification) Validate() error {
	errs := []error{
		oneOf("type", c.Type, Types()),
		oneOf("cause", c.Cause, Causes()),
		oneOf("setting", c.Setting, Settings()),
		oneOf("injury", c.Injury, Injuries()),
	}
	for field, v := range map[string]string{"staff_group": c.StaffGroup, "crime_ref": c.CrimeRef, "prosecution_outcome": c.ProsecutionOutcome} {
		if len(v) > MaxField || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' }) {
			errs = append(errs, &FieldError{Field: field, Value: v[:min(len(v), 32)], Problem: fmt.Sprintf("must be at most %d bytes without control characters", MaxField)})
		}
	}
	if !c.Police && c.CrimeRef != "" {
		errs = append(errs, &FieldError{Field: "crime_ref", Value: c.CrimeRef, Problem: "is set but police is false"})
	}
	return errors.Join(errs...)
}

// Viewer is who is looking at an incident, for redaction.
type Viewer struct {
	Name string
	Role string
}

// RoleIGOfficer is the one role that sees who made a confidential report:
// information governance holds the key, not the line management chain.
const RoleIGOfficer = "ig_officer"

// Redacted replaces names and free text in a confidential incident.
const Redacted = "(confidential)"

// View returns a copy of inc fit for viewer. A confidential incident has the
// wearer, reporter, device, alert id (it is made from the device id) and all
// free text redacted unless the viewer is an IG officer; history entries
// made by the wearer or reporter lose the name too. Everything else stays,
// so the incident still counts in reports and its support plan can be run.
func View(inc Incident, viewer Viewer) Incident {
	out := inc.clone()
	if !inc.Confidential || viewer.Role == RoleIGOfficer {
		return out
	}
	hidden := map[string]bool{}
	for _, s := range []*string{&out.Wearer, &out.Reporter, &out.Device, &out.AlertID, &out.Text} {
		if *s != "" {
			hidden[*s] = true
			*s = Redacted
		}
	}
	for i := range out.Plan {
		if out.Plan[i].Note != "" {
			out.Plan[i].Note = Redacted
		}
		if hidden[out.Plan[i].DoneBy] {
			out.Plan[i].DoneBy = Redacted
		}
	}
	for i := range out.History {
		// History notes never carry free text (only sources, types and
		// statuses), so only the names need hiding.
		if hidden[out.History[i].By] {
			out.History[i].By = Redacted
		}
	}
	return out
}

// Day is one box of the safety cross.
type Day struct {
	Date   time.Time `json:"date"` // midnight, in the location of from
	Colour string    `json:"colour"`
	Count  int       `json:"count"`
}

// SafetyCross colours days boxes starting at from's day (in from's
// location): red if any incident that day was physical, yellow if any
// other, green if none. An incident not yet classified counts by the kind
// it was reported as, and as verbal if it carries none: it happened, so the
// day is not green, and a manager's classification will settle the colour.
// Filter incs by team first (List, then select by Team).
func SafetyCross(incs []Incident, from time.Time, days int) []Day {
	loc := from.Location()
	start := time.Date(from.Year(), from.Month(), from.Day(), 0, 0, 0, 0, loc)
	out := make([]Day, days)
	for i := range out {
		out[i] = Day{Date: start.AddDate(0, 0, i), Colour: Green}
	}
	for _, inc := range incs {
		t := inc.OccurredAt.In(loc)
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		for i := range out {
			if !out[i].Date.Equal(d) {
				continue
			}
			out[i].Count++
			if inc.Kind() == KindPhysical {
				out[i].Colour = Red
			} else if out[i].Colour == Green {
				out[i].Colour = Yellow
			}
		}
	}
	return out
}
