package monthly

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// CSV writes the report as a sequence of tables for a spreadsheet. Each
// table starts with a title row ("table", name, "site", site label), then a
// header row and its data rows, and ends with a blank line; tables differ
// in width, so a reader needs csv.Reader.FieldsPerRecord = -1. The summary
// comes first, then each site. Durations are in seconds and percentages
// to one decimal place.
//
// Every cell that a spreadsheet would read as a formula (starting with =,
// +, -, @, tab or carriage return) is prefixed with a single quote, so a
// site or team name cannot run in the reader's spreadsheet.
func (r Report) CSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	t := csvTables{w: cw}
	t.table("report", "", []string{"field", "value"},
		[]string{"month", r.Start.Format("2006-01")},
		[]string{"location", r.Location},
		[]string{"site", csvScope(r.Site)},
		[]string{"generated", csvTime(r.Generated)},
		[]string{"anonymised", strconv.FormatBool(!r.Named)},
		[]string{"percentile_method", "nearest-rank: value at rank ceil(p*n/100) of n sorted values"},
	)
	if r.Summary != nil {
		t.section(*r.Summary, r.Named)
	}
	for _, s := range r.Sites {
		t.section(s, r.Named)
	}
	cw.Flush()
	if t.err != nil {
		return t.err
	}
	if err := cw.Error(); err != nil {
		return fmt.Errorf("monthly: write csv: %w", err)
	}
	return nil
}

type csvTables struct {
	w   *csv.Writer
	err error
}

func (t *csvTables) table(name, site string, header []string, rows ...[]string) {
	t.write([]string{"table", name, "site", site})
	t.write(header)
	for _, r := range rows {
		t.write(r)
	}
	t.write(nil) // a blank line between tables; csv.Reader skips it
}

func (t *csvTables) write(rec []string) {
	if t.err != nil {
		return
	}
	safe := make([]string, len(rec))
	for i, c := range rec {
		safe[i] = defuse(c)
	}
	if err := t.w.Write(safe); err != nil {
		t.err = fmt.Errorf("monthly: write csv: %w", err)
	}
}

// defuse stops spreadsheet formula injection (OWASP "CSV injection"): a
// cell starting with a formula trigger is prefixed with a single quote,
// which spreadsheets show as text and do not display.
func defuse(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (t *csvTables) section(s Section, named bool) {
	site := s.Label()

	var rows [][]string
	for _, d := range s.Cross {
		rows = append(rows, []string{d.Date.Format("2006-01-02"), strconv.Itoa(d.Date.Day()),
			d.Mark.Letter(), d.Mark.String(), strconv.Itoa(d.Incidents), strconv.Itoa(d.Physical)})
	}
	t.table("safety_cross", site, []string{"date", "day", "letter", "mark", "incidents", "physical"}, rows...)

	t.table("incidents_by_type", site, []string{"type", "label", "count"}, countRows(s.ByType)...)
	t.table("incidents_by_cause", site, []string{"cause", "label", "count"}, countRows(s.ByCause)...)

	rp := s.Response
	lat := func(name string, l Latency) []string {
		if l.N == 0 {
			return []string{name, "0", "", ""}
		}
		return []string{name, strconv.Itoa(l.N), secs(l.P50), secs(l.P90)}
	}
	t.table("p1_alarm_response", site, []string{"interval", "alarms", "p50_seconds", "p90_seconds"},
		lat("raised_to_delivered", rp.Delivered),
		lat("raised_to_acknowledged", rp.Acknowledged),
		lat("raised_to_resolved", rp.Resolved),
	)
	share := func(sh Share) []string {
		return []string{secs(sh.Limit), strconv.Itoa(sh.Met), strconv.Itoa(sh.Of), pct(sh.Percent(), sh.Of),
			strconv.FormatFloat(sh.Target(), 'f', 1, 64), sh.Verdict()}
	}
	t.table("bs8484_answer_targets", site,
		[]string{"acknowledged_within_seconds", "met", "p1_alarms", "percent", "target_percent", "result"},
		share(rp.Within10s), share(rp.Within40s))

	sp := s.Support
	comp := func(name string, c Compliance) []string {
		return []string{name, strconv.Itoa(c.Met), strconv.Itoa(c.Of), pct(c.Percent(), c.Of), strconv.Itoa(c.NotDue)}
	}
	t.table("support_plan_compliance", site, []string{"milestone", "met", "of", "percent", "not_yet_due"},
		comp("welfare_contact_24h", sp.Welfare),
		comp("defusing_10d", sp.Defusing),
		comp("debrief_14d", sp.Debrief),
	)
	t.table("support_overdue", site, []string{"measure", "count"},
		[]string{"overdue_open_tasks", strconv.Itoa(sp.Overdue)})

	out := [][]string{
		{"police", "police_involved", strconv.Itoa(s.Outcomes.Police)},
		{"police", "crime_references", strconv.Itoa(s.Outcomes.CrimeRefs)},
	}
	for _, c := range s.Outcomes.ByOutcome {
		out = append(out, []string{"prosecution_outcome", c.Key, strconv.Itoa(c.N)})
	}
	t.table("outcomes", site, []string{"group", "key", "count"}, out...)

	header := []string{"ref", "date", "site", "team", "type", "cause", "physical", "police", "crime_ref", "outcome"}
	if named {
		header = append(header, "staff_member", "confidential")
	}
	var inc [][]string
	for _, r := range s.Incidents {
		when := r.Occurred.Format("2006-01-02")
		if r.Named {
			when = r.Occurred.Format(time.RFC3339)
		}
		crime := r.CrimeRef
		if crime == "" && r.HasCrimeRef {
			crime = "recorded"
		}
		row := []string{r.Ref, when, r.Site, r.Team, r.Type, r.Cause,
			strconv.FormatBool(r.Physical), strconv.FormatBool(r.Police), crime, r.Outcome}
		if named {
			row = append(row, r.Wearer, strconv.FormatBool(r.Confidential))
		}
		inc = append(inc, row)
	}
	t.table("incidents", site, header, inc...)
}

func countRows(cs []Count) [][]string {
	var rows [][]string
	for _, c := range cs {
		rows = append(rows, []string{c.Key, c.Label, strconv.Itoa(c.N)})
	}
	return rows
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

func pct(f float64, of int) string {
	if of == 0 {
		return ""
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

func csvScope(site string) string {
	if site == "" {
		return "all sites"
	}
	return site
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339)
}
