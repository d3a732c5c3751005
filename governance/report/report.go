// Package report turns audit records into what an information-governance
// (IG) officer reads: who accessed which footage, when and why, with the
// accesses that deserve a second look flagged (no incident, out of hours,
// bulk, refused), the deletions listed apart, and subject access reports
// (SARs) for a wearer who asks what footage of them exists and who has seen
// it.
//
// Reports are built from records the caller has already selected
// (audit.Log.Query) and rendered as CSV for a spreadsheet or as one
// self-contained HTML page. Both treat every field as hostile: the HTML is
// escaped by html/template, and CSV cells that a spreadsheet would run as a
// formula are defused.
package report

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-gw/vigil/governance/audit"
)

// Options tune what Build flags. Zero fields take the defaults.
type Options struct {
	// WorkStart and WorkEnd are working hours as offsets from local
	// midnight, read off the wall clock so that 07:00 means 07:00 on the
	// days clocks change too (default 07:00–19:00). Start is inside, end
	// outside. If WorkEnd is not after WorkStart the window runs over
	// midnight (a night shift, e.g. 19:00–07:00).
	WorkStart, WorkEnd time.Duration
	// WorkDays are the working days (default Monday to Friday), judged by
	// the local date of the access.
	WorkDays []time.Weekday
	// Location is the time zone of working hours and of the times shown
	// (default time.Local).
	Location *time.Location
	// BulkClips: more than this many distinct clips viewed or downloaded
	// by one person within any rolling hour is bulk access (default 20).
	BulkClips int
}

// Defaults for Options: a day shift on weekdays, and a bulk threshold well
// above what reviewing one incident takes.
const (
	DefaultWorkStart = 7 * time.Hour
	DefaultWorkEnd   = 19 * time.Hour
	DefaultBulkClips = 20
)

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	if o.WorkStart == 0 && o.WorkEnd == 0 {
		o.WorkStart, o.WorkEnd = DefaultWorkStart, DefaultWorkEnd
	}
	if len(o.WorkDays) == 0 {
		o.WorkDays = []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.BulkClips <= 0 {
		o.BulkClips = DefaultBulkClips
	}
	return o
}

// outOfHours reports whether t falls outside working hours or days.
func (o Options) outOfHours(t time.Time) bool {
	lt := t.In(o.Location)
	if !slices.Contains(o.WorkDays, lt.Weekday()) {
		return true
	}
	off := time.Duration(lt.Hour())*time.Hour + time.Duration(lt.Minute())*time.Minute +
		time.Duration(lt.Second())*time.Second + time.Duration(lt.Nanosecond())
	if o.WorkStart < o.WorkEnd {
		return off < o.WorkStart || off >= o.WorkEnd
	}
	return off < o.WorkStart && off >= o.WorkEnd
}

// Flag marks a record that deserves a second look.
type Flag string

// Flags, in the order rows list them.
const (
	// NoIncident: footage was viewed, downloaded or exported without an
	// incident to justify it.
	NoIncident Flag = "no_incident"
	// OutOfHours: the access happened outside working hours or days.
	OutOfHours Flag = "out_of_hours"
	// Bulk: the person accessed more than Options.BulkClips distinct clips
	// within an hour around this access.
	Bulk Flag = "bulk"
	// Refused: Vigil refused the action (no permission, no justification):
	// repeated refusals suggest someone probing.
	Refused Flag = "refused"
)

// AllFlags returns every flag in display order.
func AllFlags() []Flag { return []Flag{NoIncident, OutOfHours, Bulk, Refused} }

// Label is how the flag reads to a person.
func (f Flag) Label() string {
	switch f {
	case NoIncident:
		return "no incident"
	case OutOfHours:
		return "out of hours"
	case Bulk:
		return "bulk access"
	case Refused:
		return "refused"
	}
	return string(f)
}

// Row is one record in a report with its flags.
type Row struct {
	audit.Record
	Flags []Flag
}

// Has reports whether the row carries flag f.
func (r Row) Has(f Flag) bool { return slices.Contains(r.Flags, f) }

// Report is an IG report over a period.
type Report struct {
	// From and To bound the period (From inclusive, To exclusive; zero is
	// open).
	From, To time.Time
	// Filter says how the records were selected, e.g. "user=alice"; Build
	// shows it, it does not apply it.
	Filter string
	// Rows are the records in the period, oldest first, with their flags.
	Rows []Row
	// Deletions are the clip deletions in the period, listed apart because
	// they are what an IG officer must account for.
	Deletions []audit.Record
	// Counts is the number of rows with each flag; every flag has an entry.
	Counts map[Flag]int
	// Location is the time zone times are shown in.
	Location *time.Location `json:"-"`
}

// isFootageAccess reports whether a record is someone seeing or taking
// footage, which needs an incident to justify it.
func isFootageAccess(action string) bool {
	switch action {
	case audit.ActionClipView, audit.ActionClipDownload, audit.ActionReleaseExport:
		return true
	}
	return false
}

// Build makes a report of the records with At in [from, to) (a zero bound is
// open), flagging each one. Records outside the period are ignored, so the
// caller may pass a wider selection; bulk access is judged on the records
// passed, so a period that cuts an hour in two can miss bulk access at its
// edges.
func Build(records []audit.Record, from, to time.Time, filter string, o Options) Report {
	o = o.withDefaults()
	rep := Report{From: from, To: to, Filter: filter, Counts: map[Flag]int{}, Location: o.Location}
	for _, f := range AllFlags() {
		rep.Counts[f] = 0
	}
	for _, r := range records {
		if (!from.IsZero() && r.At.Before(from)) || (!to.IsZero() && !r.At.Before(to)) {
			continue
		}
		rep.Rows = append(rep.Rows, Row{Record: r})
	}
	slices.SortStableFunc(rep.Rows, func(a, b Row) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Seq, b.Seq))
	})
	bulk := bulkRows(rep.Rows, o.BulkClips)
	for i := range rep.Rows {
		r := &rep.Rows[i]
		if isFootageAccess(r.Action) && r.Incident == "" {
			r.Flags = append(r.Flags, NoIncident)
		}
		if o.outOfHours(r.At) {
			r.Flags = append(r.Flags, OutOfHours)
		}
		if bulk[i] {
			r.Flags = append(r.Flags, Bulk)
		}
		if r.Outcome == audit.OutcomeRefused {
			r.Flags = append(r.Flags, Refused)
		}
		for _, f := range r.Flags {
			rep.Counts[f]++
		}
		if r.Action == audit.ActionClipDelete {
			rep.Deletions = append(rep.Deletions, r.Record)
		}
	}
	return rep
}

// bulkRows marks the rows (sorted by time) that belong to a rolling hour in
// which one person viewed or downloaded more than limit distinct clips.
// Only granted accesses count: a refused one showed nothing.
func bulkRows(rows []Row, limit int) []bool {
	marked := make([]bool, len(rows))
	byActor := map[string][]int{}
	for i, r := range rows {
		if (r.Action == audit.ActionClipView || r.Action == audit.ActionClipDownload) &&
			r.Outcome == audit.OutcomeOK && r.Clip != "" {
			byActor[r.Actor] = append(byActor[r.Actor], i)
		}
	}
	for _, idx := range byActor {
		// Sliding window [left, right] of accesses less than an hour
		// apart, with a count of each distinct clip in it.
		inWindow := map[string]int{}
		left, markedTo := 0, -1
		for right, i := range idx {
			inWindow[clipKey(rows[i].Record)]++
			for rows[i].At.Sub(rows[idx[left]].At) >= time.Hour {
				k := clipKey(rows[idx[left]].Record)
				if inWindow[k]--; inWindow[k] == 0 {
					delete(inWindow, k)
				}
				left++
			}
			if len(inWindow) > limit {
				for k := max(left, markedTo+1); k <= right; k++ {
					marked[idx[k]] = true
				}
				markedTo = right
			}
		}
	}
	return marked
}

// clipKey identifies a clip: clip ids are unique per camera only.
func clipKey(r audit.Record) string { return r.Camera + "/" + r.Clip }

// CSV writes one line per row under a header line. Times are RFC 3339 in the
// report's time zone; flags are separated by spaces. Every cell that a
// spreadsheet would read as a formula is prefixed with a quote (see
// SafeCell), because the fields come from people and clients.
func (r Report) CSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	header := []string{"seq", "time", "actor", "role", "action", "camera", "clip", "incident", "release",
		"why", "from", "outcome", "detail", "flags", "hash"}
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("report: csv: %w", err)
	}
	loc := location(r.Location)
	for _, row := range r.Rows {
		flags := make([]string, len(row.Flags))
		for i, f := range row.Flags {
			flags[i] = string(f)
		}
		rec := []string{strconv.FormatInt(row.Seq, 10), row.At.In(loc).Format(time.RFC3339), row.Actor, row.Role,
			row.Action, row.Camera, row.Clip, row.Incident, row.Release, row.Why, row.From, row.Outcome, row.Detail,
			strings.Join(flags, " "), row.Hash}
		for i := range rec {
			rec[i] = SafeCell(rec[i])
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("report: csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("report: csv: %w", err)
	}
	return nil
}

// Text writes the report as plain text for a terminal: a summary of flag
// counts, one line per record with its flags, then the deletions. Fields are
// cleaned as in SAR.Text, so a justification cannot forge lines.
func (r Report) Text(w io.Writer) error {
	loc := location(r.Location)
	ew := &errWriter{w: w}
	filter := r.Filter
	if filter == "" {
		filter = "none"
	}
	ew.printf("Audit report: %s; selection: %s; times in %s\n", period(r.From, r.To, loc), clean(filter), loc)
	ew.printf("%d records", len(r.Rows))
	for _, f := range AllFlags() {
		ew.printf(", %d %s", r.Counts[f], f.Label())
	}
	ew.printf(", %d clip deletions\n\n", len(r.Deletions))
	line := func(x audit.Record) {
		ew.printf("%6d  %s  %s (%s)  %s", x.Seq, x.At.In(loc).Format("2006-01-02 15:04:05"), clean(x.Actor), clean(x.Role), clean(x.Action))
		if x.Camera != "" || x.Clip != "" {
			ew.printf("  %s/%s", clean(x.Camera), clean(x.Clip))
		}
		if x.Incident != "" {
			ew.printf("  incident %s", clean(x.Incident))
		}
		if x.Release != "" {
			ew.printf("  release %s", clean(x.Release))
		}
		if x.From != "" {
			ew.printf("  from %s", clean(x.From))
		}
		ew.printf("  %s", clean(x.Outcome))
	}
	for _, row := range r.Rows {
		line(row.Record)
		for _, f := range row.Flags {
			ew.printf("  [%s]", f.Label())
		}
		ew.printf("\n")
		if row.Why != "" {
			ew.printf("        why: %s\n", clean(row.Why))
		}
		if row.Detail != "" {
			ew.printf("        detail: %s\n", clean(row.Detail))
		}
	}
	if len(r.Rows) == 0 {
		ew.printf("No records in this period.\n")
	}
	ew.printf("\nDeletions (%d)\n", len(r.Deletions))
	for _, d := range r.Deletions {
		line(d)
		ew.printf("\n")
		if d.Detail != "" {
			ew.printf("        detail: %s\n", clean(d.Detail))
		}
	}
	if ew.err != nil {
		return fmt.Errorf("report: text: %w", ew.err)
	}
	return nil
}

// SafeCell defuses a CSV cell that a spreadsheet would evaluate: one that
// starts with = + - @, a tab or a carriage return (OWASP's list), or their
// full-width forms, gets a leading single quote, which spreadsheets show as
// text. The value stays readable; the quote says it was altered.
func SafeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	for _, p := range []string{"＝", "＋", "－", "＠"} {
		if strings.HasPrefix(s, p) {
			return "'" + s
		}
	}
	return s
}

// location returns loc, or time.Local for nil.
func location(loc *time.Location) *time.Location {
	if loc == nil {
		return time.Local
	}
	return loc
}
