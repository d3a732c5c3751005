// Package monthly turns one month of incidents, post-incident support and
// alarms into the report a Trust's violence-prevention lead shares with
// staff-side representatives: a safety cross per site, incidents by type and
// cause, P1 alarm response against the BS 8484 answer targets, support-plan
// compliance and police outcomes.
//
// Build is a pure function of its Input: the caller maps its own records into
// the flat Incident and Alert structs, so this package imports nothing else
// from Vigil and can be tested with a hand-computed month. The report is
// anonymised unless Input.Named is set, and the anonymisation happens in Build,
// not in the renderers: a Report built without Named holds no wearer names,
// incident ids or crime reference numbers, so no output format can leak them.
package monthly

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Incident is one reported incident as the caller's incident store knows it.
// Zero times mean "not done".
type Incident struct {
	ID   string // may embed a device id; shown only in named reports
	Site string
	Team string
	// Occurred places the incident in a month and on a safety-cross day, in
	// Input.Location.
	Occurred time.Time
	// Type is one of physical_assault, verbal_abuse, threat,
	// sexual_harassment, sexual_assault, hate_incident, online_abuse, or ""
	// while not yet classified.
	Type string
	// Cause is behavioural, medically_related, unknown, or "" while not yet
	// classified.
	Cause string
	// Physical marks a physical incident (physical_assault or
	// sexual_assault); it turns the day red on the safety cross.
	Physical bool
	Police   bool
	CrimeRef string
	// ProsecutionOutcome is "", "charged", "convicted", "no_further_action",
	// "pending", or another value the caller's records use.
	ProsecutionOutcome string
	Wearer             string // the member of staff; shown only in named reports
	// Confidential incidents are never named, even in a named report.
	Confidential bool

	// Resolved is when the alarm raised for the incident was resolved; zero
	// when no alarm was raised.
	Resolved       time.Time
	WelfareContact time.Time
	Defused        time.Time
	Debriefed      time.Time
	// Overdue counts the support-plan tasks still open and past due when the
	// caller took the snapshot.
	Overdue int
}

// Alert is one alarm raised through Vigil.
type Alert struct {
	Site string
	// Priority 1 is duress or man-down; only P1 alarms are measured
	// against BS 8484.
	Priority int
	Event    string
	// Raised starts every interval; Delivered is when the ARC received it,
	// Acknowledged when the ARC answered it, Resolved when it was closed.
	// Zero means it never happened.
	Raised, Delivered, Acknowledged, Resolved time.Time
}

// Input is everything Build needs. The caller filters nothing: Build selects
// the month and site itself so that the boundaries are decided in one place.
type Input struct {
	// Month is any instant in the reported month; the month is the calendar
	// month that instant falls in, in Location.
	Month time.Time
	// Location decides month and day boundaries; nil means time.Local.
	Location *time.Location
	// Site restricts the report to one site; "" reports all sites, with an
	// all-sites summary followed by one section per site.
	Site      string
	Incidents []Incident
	Alerts    []Alert
	// Named includes wearer names, incident ids, crime references and
	// times of day. The default is an anonymised report.
	Named bool
	// Generated is when the report was produced: safety-cross days that
	// start after it are shown as future, and support milestones whose
	// deadline is after it are counted as not yet due. Zero treats the whole
	// month as past.
	Generated time.Time
}

// Report is one month's report. Build fills it; HTML and CSV render it.
type Report struct {
	// Start is midnight on the first day of the month, End midnight on the
	// first day of the next, both in the report's location.
	Start, End time.Time
	Location   string
	Site       string // the Input.Site filter; "" for all sites
	Named      bool
	Generated  time.Time
	// Summary covers every site; nil when the report is for one site.
	Summary *Section
	// Sites has one section per site with data in the month, sorted by
	// name; exactly one when Input.Site is set.
	Sites []Section
}

// Section is the report for one site, or for all sites together.
type Section struct {
	Site      string // "" on the summary, or for records without a site
	All       bool   // true on the all-sites summary
	Cross     []Day  // one per calendar day of the month
	ByType    []Count
	ByCause   []Count
	Response  Response
	Support   Support
	Outcomes  Outcomes
	Incidents []Row // in order of occurrence
}

// Label names the section for a reader.
func (s Section) Label() string {
	switch {
	case s.All:
		return "All sites"
	case s.Site == "":
		return "(no site recorded)"
	}
	return s.Site
}

// Mark is the colour of one safety-cross box.
type Mark int

// The safety-cross marks. Future is the zero value so that an unfilled day
// never reads as "no incident".
const (
	Future Mark = iota // the day had not started when the report was generated
	Green              // no incident
	Yellow             // only non-physical incidents
	Red                // at least one physical incident
)

// String names the mark for tables and titles.
func (m Mark) String() string {
	switch m {
	case Green:
		return "green"
	case Yellow:
		return "yellow"
	case Red:
		return "red"
	}
	return "future"
}

// Letter is printed in the box so that the cross reads without colour.
func (m Mark) Letter() string {
	switch m {
	case Green:
		return "G"
	case Yellow:
		return "Y"
	case Red:
		return "R"
	}
	return ""
}

// Meaning explains the mark in words, for the legend and box titles.
func (m Mark) Meaning() string {
	switch m {
	case Green:
		return "no incident"
	case Yellow:
		return "non-physical incident only"
	case Red:
		return "physical incident"
	}
	return "future, not yet reported"
}

// Day is one box of the safety cross.
type Day struct {
	Date      time.Time // midnight at the start of the day, in the report's location
	Mark      Mark
	Incidents int
	Physical  int
}

// Count is one bar of a breakdown.
type Count struct {
	Key   string // the value in the input, or "unclassified" / "not_recorded"
	Label string
	N     int
}

// Response summarises P1 alarm handling for the month.
type Response struct {
	// P1 counts the P1 alarms raised in the month; it is the denominator of
	// the BS 8484 shares, so an alarm never acknowledged counts against them.
	P1           int
	Delivered    Latency // raised → delivered to the ARC
	Acknowledged Latency // raised → acknowledged by the ARC
	Resolved     Latency // raised → resolved
	Within10s    Share   // BS 8484: 80% answered within 10 s
	Within40s    Share   // BS 8484: 98.5% answered within 40 s
	// ClockSkew counts milestones stamped before the alarm was raised; they
	// are measured as zero rather than dropped, and shown so that someone
	// looks at the clocks.
	ClockSkew int
}

// Latency is the distribution of one interval over the P1 alarms that
// reached that milestone. Percentiles use the nearest-rank method: the
// p-th percentile of n sorted values is the value at rank ceil(p/100 × n),
// so it is always an observed value, never an interpolation.
type Latency struct {
	N        int
	P50, P90 time.Duration
}

// Share is the fraction of P1 alarms acknowledged within Limit, against a
// BS 8484 target.
type Share struct {
	Limit time.Duration
	Met   int
	Of    int
	// TargetPermille is the target in tenths of a percent (800 = 80%,
	// 985 = 98.5%), so the pass decision is exact integer arithmetic.
	TargetPermille int
}

// Percent is Met as a percentage of Of; 0 when there were no alarms.
func (s Share) Percent() float64 { return percent(s.Met, s.Of) }

// Target is the BS 8484 target as a percentage.
func (s Share) Target() float64 { return float64(s.TargetPermille) / 10 }

// Pass reports whether the target was met. ok is false when there were no
// P1 alarms, because a month without alarms neither passes nor fails.
func (s Share) Pass() (pass, ok bool) {
	if s.Of == 0 {
		return false, false
	}
	return s.Met*1000 >= s.TargetPermille*s.Of, true
}

// Verdict is "pass", "fail" or "no alarms".
func (s Share) Verdict() string {
	pass, ok := s.Pass()
	switch {
	case !ok:
		return "no alarms"
	case pass:
		return "pass"
	}
	return "fail"
}

// Support is post-incident support-plan compliance for the incidents that
// occurred in the month.
type Support struct {
	// Welfare: welfare contact within 24 h of the alarm being resolved, or of
	// the incident when no alarm was raised.
	Welfare Compliance
	// Defusing within 10 days of the incident (the framework's 3–10 days).
	Defusing Compliance
	// Debrief within 14 days of the incident (the framework's 1–2 weeks).
	Debrief Compliance
	// Overdue totals the open support tasks past due.
	Overdue int
}

// Compliance is how many incidents reached a support milestone in time.
type Compliance struct {
	Within time.Duration
	Met    int
	Of     int // every incident in the month
	// NotDue counts incidents that have not reached the milestone but whose
	// deadline is after the report was generated: not met yet, but not late.
	NotDue int
}

// Percent is Met as a percentage of Of; 0 when there were no incidents.
func (c Compliance) Percent() float64 { return percent(c.Met, c.Of) }

// Outcomes summarises police involvement.
type Outcomes struct {
	Police    int // incidents with the police involved
	CrimeRefs int // incidents with a crime reference
	// ByOutcome breaks down the incidents with police involvement, a crime
	// reference or an outcome by prosecution outcome; "not_recorded" when
	// none is recorded yet.
	ByOutcome []Count
}

// Row is one incident as the report shows it. In an anonymised report, and
// for confidential incidents in any report, Ref is the sequence number, Wearer
// and CrimeRef are empty and Occurred is truncated to the day.
type Row struct {
	Seq          int    // 1-based, in order of occurrence across the whole report
	Ref          string // "#seq", or the incident id when named
	Occurred     time.Time
	Site, Team   string
	Type, Cause  string // "unclassified" when empty
	Physical     bool
	Police       bool
	HasCrimeRef  bool
	CrimeRef     string
	Outcome      string
	Wearer       string
	Confidential bool
	Named        bool // whether this row carries the identifying fields
}

const (
	unclassified = "unclassified"
	notRecorded  = "not_recorded"
	day          = 24 * time.Hour
)

// The categories shown even when their count is zero, so that charts keep
// the same bars from month to month. Functions, not package slices, so that
// no caller can change them.
func incidentTypes() []string {
	return []string{"physical_assault", "sexual_assault", "verbal_abuse", "threat",
		"sexual_harassment", "hate_incident", "online_abuse"}
}

func incidentCauses() []string { return []string{"behavioural", "medically_related", "unknown"} }

// outcomeOrder lists outcomes in the order a reader follows a case.
func outcomeOrder() []string { return []string{"charged", "convicted", "pending", "no_further_action"} }

// Build computes the report. Incidents are placed by Occurred and alerts by
// Raised, both in Input.Location; records outside the month or the selected
// site are ignored.
func Build(in Input) Report {
	loc := in.Location
	if loc == nil {
		loc = time.Local
	}
	m := in.Month.In(loc)
	start := time.Date(m.Year(), m.Month(), 1, 0, 0, 0, 0, loc)
	end := start.AddDate(0, 1, 0)
	inMonth := func(t time.Time) bool { return !t.Before(start) && t.Before(end) }

	var incs []Incident
	for _, inc := range in.Incidents {
		if (in.Site == "" || inc.Site == in.Site) && inMonth(inc.Occurred) {
			incs = append(incs, inc)
		}
	}
	// Sequence numbers follow occurrence, then id, so the same input always
	// numbers the same way and numbers agree between summary and site.
	slices.SortStableFunc(incs, func(a, b Incident) int {
		if c := a.Occurred.Compare(b.Occurred); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var alerts []Alert
	for _, a := range in.Alerts {
		if (in.Site == "" || a.Site == in.Site) && inMonth(a.Raised) {
			alerts = append(alerts, a)
		}
	}

	b := builder{in: in, loc: loc, start: start, end: end}
	rows := make([]Row, len(incs))
	for i, inc := range incs {
		rows[i] = b.row(i+1, inc)
	}

	r := Report{
		Start: start, End: end, Location: loc.String(),
		Site: in.Site, Named: in.Named, Generated: in.Generated,
	}
	if !r.Generated.IsZero() {
		r.Generated = r.Generated.In(loc)
	}
	if in.Site != "" {
		r.Sites = []Section{b.section(in.Site, false, incs, rows, alerts)}
		return r
	}
	all := b.section("", true, incs, rows, alerts)
	r.Summary = &all
	var sites []string
	for _, inc := range incs {
		sites = append(sites, inc.Site)
	}
	for _, a := range alerts {
		sites = append(sites, a.Site)
	}
	slices.Sort(sites)
	for _, site := range slices.Compact(sites) {
		var si []Incident
		var sr []Row
		for i, inc := range incs {
			if inc.Site == site {
				si = append(si, inc)
				sr = append(sr, rows[i])
			}
		}
		var sa []Alert
		for _, a := range alerts {
			if a.Site == site {
				sa = append(sa, a)
			}
		}
		r.Sites = append(r.Sites, b.section(site, false, si, sr, sa))
	}
	return r
}

type builder struct {
	in         Input
	loc        *time.Location
	start, end time.Time
}

func (b builder) section(site string, all bool, incs []Incident, rows []Row, alerts []Alert) Section {
	s := Section{Site: site, All: all, Incidents: rows}
	s.Cross = b.cross(incs)
	s.ByType = breakdown(incs, incidentTypes(), func(i Incident) string { return i.Type })
	s.ByCause = breakdown(incs, incidentCauses(), func(i Incident) string { return i.Cause })
	s.Response = response(alerts)
	s.Support = b.support(incs)
	s.Outcomes = outcomes(incs)
	return s
}

func physical(inc Incident) bool {
	// The caller sets Physical, but a classified physical type is red
	// whatever the flag says: under-reporting a red day is the worse error.
	return inc.Physical || inc.Type == "physical_assault" || inc.Type == "sexual_assault"
}

func (b builder) cross(incs []Incident) []Day {
	var days []Day
	for d := b.start; d.Before(b.end); d = d.AddDate(0, 0, 1) {
		days = append(days, Day{Date: d, Mark: Green})
	}
	for _, inc := range incs {
		day := &days[inc.Occurred.In(b.loc).Day()-1]
		day.Incidents++
		if physical(inc) {
			day.Physical++
		}
	}
	for i := range days {
		d := &days[i]
		switch {
		case d.Physical > 0:
			d.Mark = Red
		case d.Incidents > 0:
			d.Mark = Yellow
		case !b.in.Generated.IsZero() && d.Date.After(b.in.Generated):
			// An incident recorded on a "future" day is shown, not hidden:
			// the data outranks the report's clock.
			d.Mark = Future
		}
	}
	return days
}

func breakdown(incs []Incident, known []string, key func(Incident) string) []Count {
	n := map[string]int{}
	for _, inc := range incs {
		k := key(inc)
		if k == "" {
			k = unclassified
		}
		n[k]++
	}
	var out []Count
	for _, k := range known {
		out = append(out, Count{Key: k, Label: label(k), N: n[k]})
		delete(n, k)
	}
	unc := n[unclassified]
	delete(n, unclassified)
	// Values the caller's records use that this package does not know are
	// shown under their own name rather than folded into another bar.
	for _, k := range sortedKeys(n) {
		out = append(out, Count{Key: k, Label: label(k), N: n[k]})
	}
	return append(out, Count{Key: unclassified, Label: label(unclassified), N: unc})
}

func response(alerts []Alert) Response {
	var r Response
	var del, ack, res []time.Duration
	since := func(raised, t time.Time, into *[]time.Duration) (time.Duration, bool) {
		if t.IsZero() {
			return 0, false
		}
		d := t.Sub(raised)
		if d < 0 {
			r.ClockSkew++
			d = 0
		}
		*into = append(*into, d)
		return d, true
	}
	r.Within10s = Share{Limit: 10 * time.Second, TargetPermille: 800}
	r.Within40s = Share{Limit: 40 * time.Second, TargetPermille: 985}
	for _, a := range alerts {
		if a.Priority != 1 {
			continue
		}
		r.P1++
		since(a.Raised, a.Delivered, &del)
		since(a.Raised, a.Resolved, &res)
		if d, ok := since(a.Raised, a.Acknowledged, &ack); ok {
			// Inclusive: an alarm answered at exactly 10 s is within 10 s.
			if d <= r.Within10s.Limit {
				r.Within10s.Met++
			}
			if d <= r.Within40s.Limit {
				r.Within40s.Met++
			}
		}
	}
	r.Within10s.Of, r.Within40s.Of = r.P1, r.P1
	r.Delivered, r.Acknowledged, r.Resolved = latency(del), latency(ack), latency(res)
	return r
}

func latency(ds []time.Duration) Latency {
	slices.Sort(ds)
	l := Latency{N: len(ds)}
	if l.N > 0 {
		l.P50, l.P90 = nearestRank(ds, 50), nearestRank(ds, 90)
	}
	return l
}

// nearestRank returns the p-th percentile of sorted (non-empty) values: the
// value at 1-based rank ceil(p×n/100).
func nearestRank(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

func (b builder) support(incs []Incident) Support {
	s := Support{
		Welfare:  Compliance{Within: day},
		Defusing: Compliance{Within: 10 * day},
		Debrief:  Compliance{Within: 14 * day},
	}
	for _, inc := range incs {
		ref := inc.Resolved
		if ref.IsZero() {
			ref = inc.Occurred
		}
		b.check(&s.Welfare, ref, inc.WelfareContact)
		b.check(&s.Defusing, inc.Occurred, inc.Defused)
		b.check(&s.Debrief, inc.Occurred, inc.Debriefed)
		s.Overdue += inc.Overdue
	}
	return s
}

// check counts one incident against a milestone. Days are elapsed 24-hour
// periods, not calendar days, and the deadline is inclusive.
func (b builder) check(c *Compliance, from, done time.Time) {
	c.Of++
	switch {
	case !done.IsZero() && done.Sub(from) <= c.Within:
		c.Met++
	case done.IsZero() && !b.in.Generated.IsZero() && from.Add(c.Within).After(b.in.Generated):
		c.NotDue++
	}
}

func outcomes(incs []Incident) Outcomes {
	var o Outcomes
	n := map[string]int{}
	for _, inc := range incs {
		if inc.Police {
			o.Police++
		}
		if inc.CrimeRef != "" {
			o.CrimeRefs++
		}
		if !inc.Police && inc.CrimeRef == "" && inc.ProsecutionOutcome == "" {
			continue
		}
		k := inc.ProsecutionOutcome
		if k == "" {
			k = notRecorded
		}
		n[k]++
	}
	add := func(k string) {
		if n[k] > 0 {
			o.ByOutcome = append(o.ByOutcome, Count{Key: k, Label: label(k), N: n[k]})
		}
		delete(n, k)
	}
	for _, k := range outcomeOrder() {
		add(k)
	}
	nr := n[notRecorded]
	delete(n, notRecorded)
	for _, k := range sortedKeys(n) {
		add(k)
	}
	n[notRecorded] = nr
	add(notRecorded)
	return o
}

func (b builder) row(seq int, inc Incident) Row {
	r := Row{
		Seq: seq, Site: inc.Site, Team: inc.Team,
		Type: orUnclassified(inc.Type), Cause: orUnclassified(inc.Cause),
		Physical: physical(inc), Police: inc.Police, HasCrimeRef: inc.CrimeRef != "",
		Outcome: inc.ProsecutionOutcome, Confidential: inc.Confidential,
	}
	r.Ref = "#" + strconv.Itoa(seq)
	t := inc.Occurred.In(b.loc)
	if b.in.Named && !inc.Confidential {
		r.Named = true
		r.Ref = inc.ID
		r.Wearer = inc.Wearer
		r.CrimeRef = inc.CrimeRef
		r.Occurred = t
		return r
	}
	// A time of day plus a team can identify a person as well as a name
	// can, so anonymised rows keep only the date.
	r.Occurred = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, b.loc)
	return r
}

func orUnclassified(s string) string {
	if s == "" {
		return unclassified
	}
	return s
}

// label is a switch rather than a package map so that there is no mutable
// package state.
func label(k string) string {
	switch k {
	case "physical_assault":
		return "Physical assault"
	case "sexual_assault":
		return "Sexual assault"
	case "verbal_abuse":
		return "Verbal abuse"
	case "threat":
		return "Threat"
	case "sexual_harassment":
		return "Sexual harassment"
	case "hate_incident":
		return "Hate incident"
	case "online_abuse":
		return "Online abuse"
	case "behavioural":
		return "Behavioural"
	case "medically_related":
		return "Medically related"
	case "unknown":
		return "Unknown"
	case unclassified:
		return "Unclassified"
	case "charged":
		return "Charged"
	case "convicted":
		return "Convicted"
	case "pending":
		return "Pending"
	case "no_further_action":
		return "No further action"
	case notRecorded:
		return "Not recorded"
	}
	return k
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func percent(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
