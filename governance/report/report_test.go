package report

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/governance/audit"
)

// zone is a fixed UTC+1 zone, so working hours are tested away from UTC.
var zone = time.FixedZone("CET", 3600)

// monday is a Monday at local midnight in zone.
var monday = time.Date(2026, 3, 2, 0, 0, 0, 0, zone)

func view(at time.Time, incident string) audit.Record {
	return audit.Record{At: at.UTC(), Actor: "alice", Role: audit.RoleSupervisor, Action: audit.ActionClipView,
		Camera: "cam-1", Clip: "c1", Incident: incident, Why: "review", Outcome: audit.OutcomeOK}
}

func TestFlags(t *testing.T) {
	at := func(d time.Duration) time.Time { return monday.Add(d) }
	noon := at(12 * time.Hour)
	with := func(r audit.Record, edit func(*audit.Record)) audit.Record { edit(&r); return r }
	tests := []struct {
		name string
		rec  audit.Record
		opts Options
		want []Flag
	}{
		{"view with incident in hours", view(noon, "INC-1"), Options{}, nil},
		{"view without incident", view(noon, ""), Options{}, []Flag{NoIncident}},
		{"download without incident", with(view(noon, ""), func(r *audit.Record) { r.Action = audit.ActionClipDownload }), Options{}, []Flag{NoIncident}},
		{"export without incident", with(view(noon, ""), func(r *audit.Record) { r.Action = audit.ActionReleaseExport }), Options{}, []Flag{NoIncident}},
		{"search needs no incident", with(view(noon, ""), func(r *audit.Record) { r.Action = audit.ActionClipSearch }), Options{}, nil},
		{"hold change needs no incident flag", with(view(noon, ""), func(r *audit.Record) { r.Action = audit.ActionHoldSet }), Options{}, nil},
		{"just before start", view(at(7*time.Hour-time.Millisecond), "INC-1"), Options{}, []Flag{OutOfHours}},
		{"at start", view(at(7*time.Hour), "INC-1"), Options{}, nil},
		{"just before end", view(at(19*time.Hour-time.Millisecond), "INC-1"), Options{}, nil},
		{"at end", view(at(19*time.Hour), "INC-1"), Options{}, []Flag{OutOfHours}},
		{"midnight", view(at(0), "INC-1"), Options{}, []Flag{OutOfHours}},
		{"saturday noon", view(noon.AddDate(0, 0, 5), "INC-1"), Options{}, []Flag{OutOfHours}},
		{"saturday is a working day here", view(noon.AddDate(0, 0, 5), "INC-1"),
			Options{WorkDays: []time.Weekday{time.Saturday}}, nil},
		{"custom hours", view(at(8*time.Hour), "INC-1"), Options{WorkStart: 9 * time.Hour, WorkEnd: 17 * time.Hour}, []Flag{OutOfHours}},
		{"night shift inside", view(at(23*time.Hour), "INC-1"), Options{WorkStart: 19 * time.Hour, WorkEnd: 7 * time.Hour}, nil},
		{"night shift early morning", view(at(6*time.Hour), "INC-1"), Options{WorkStart: 19 * time.Hour, WorkEnd: 7 * time.Hour}, nil},
		{"night shift outside", view(noon, "INC-1"), Options{WorkStart: 19 * time.Hour, WorkEnd: 7 * time.Hour}, []Flag{OutOfHours}},
		{"refused", with(view(noon, "INC-1"), func(r *audit.Record) { r.Outcome = audit.OutcomeRefused }), Options{}, []Flag{Refused}},
		{"everything at once", with(view(at(22*time.Hour), ""), func(r *audit.Record) { r.Outcome = audit.OutcomeRefused }), Options{},
			[]Flag{NoIncident, OutOfHours, Refused}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Location == nil {
				tc.opts.Location = zone
			}
			rep := Build([]audit.Record{tc.rec}, time.Time{}, time.Time{}, "", tc.opts)
			require.Len(t, rep.Rows, 1)
			assert.Equal(t, tc.want, rep.Rows[0].Flags)
			for _, f := range AllFlags() {
				want := 0
				if rep.Rows[0].Has(f) {
					want = 1
				}
				assert.Equal(t, want, rep.Counts[f], "count of %s", f)
			}
		})
	}
}

func TestWorkingHoursUseLocalWallClock(t *testing.T) {
	// 06:30 UTC is 07:30 in UTC+1: inside working hours there, outside in UTC.
	r := view(time.Date(2026, 3, 2, 6, 30, 0, 0, time.UTC), "INC-1")
	assert.Empty(t, Build([]audit.Record{r}, time.Time{}, time.Time{}, "", Options{Location: zone}).Rows[0].Flags)
	assert.Equal(t, []Flag{OutOfHours}, Build([]audit.Record{r}, time.Time{}, time.Time{}, "", Options{Location: time.UTC}).Rows[0].Flags)
}

// accesses returns n views by actor of distinct clips (first clip index
// first), every step apart from start.
func accesses(actor string, first, n int, start time.Time, step time.Duration) []audit.Record {
	var out []audit.Record
	for i := range n {
		r := view(start.Add(time.Duration(i)*step), "INC-1")
		r.Actor, r.Clip, r.Seq = actor, fmt.Sprintf("c%d", first+i), int64(first+i)
		out = append(out, r)
	}
	return out
}

func TestBulk(t *testing.T) {
	start := monday.Add(9 * time.Hour)
	bulkCount := func(recs []audit.Record, o Options) (n int, flagged []string) {
		o.Location = zone
		for _, r := range Build(recs, time.Time{}, time.Time{}, "", o).Rows {
			if r.Has(Bulk) {
				n++
				flagged = append(flagged, r.Actor+"/"+r.Clip)
			}
		}
		return n, flagged
	}
	tests := []struct {
		name string
		recs func() []audit.Record
		opts Options
		want int
	}{
		{"20 distinct clips in an hour is not bulk", func() []audit.Record {
			return accesses("alice", 0, 20, start, time.Minute)
		}, Options{}, 0},
		{"21 distinct clips within an hour is bulk", func() []audit.Record {
			return accesses("alice", 0, 21, start, 2*time.Minute+50*time.Second) // last at 56m40s
		}, Options{}, 21},
		{"21 distinct clips over just an hour is not", func() []audit.Record {
			return accesses("alice", 0, 21, start, 3*time.Minute) // first and last exactly 60m apart
		}, Options{}, 0},
		{"the same clip 30 times is not bulk", func() []audit.Record {
			recs := accesses("alice", 0, 30, start, time.Minute)
			for i := range recs {
				recs[i].Clip = "c1"
			}
			return recs
		}, Options{}, 0},
		{"two people under the limit each", func() []audit.Record {
			return append(accesses("alice", 0, 15, start, time.Minute), accesses("bob", 100, 15, start, time.Minute)...)
		}, Options{}, 0},
		{"rolling: a burst late in one hour and early in the next", func() []audit.Record {
			recs := accesses("alice", 0, 11, start.Add(40*time.Minute), time.Minute) // 09:40–09:50
			return append(recs, accesses("alice", 50, 10, start.Add(65*time.Minute), time.Minute)...)
		}, Options{}, 21},
		{"rolling: the early ones leave the window", func() []audit.Record {
			recs := accesses("alice", 0, 11, start, time.Minute) // 09:00–09:10
			recs = append(recs, accesses("alice", 50, 10, start.Add(70*time.Minute), time.Minute)...)
			return recs
		}, Options{}, 0},
		{"refused views do not count", func() []audit.Record {
			recs := accesses("alice", 0, 25, start, time.Minute)
			for i := range 5 {
				recs[i].Outcome = audit.OutcomeRefused
			}
			return recs
		}, Options{}, 0},
		{"searches do not count", func() []audit.Record {
			recs := accesses("alice", 0, 25, start, time.Minute)
			for i := range 5 {
				recs[i].Action = audit.ActionClipSearch
			}
			return recs
		}, Options{}, 0},
		{"downloads count", func() []audit.Record {
			recs := accesses("alice", 0, 6, start, time.Minute)
			recs[0].Action = audit.ActionClipDownload
			return recs
		}, Options{BulkClips: 5}, 6},
		{"clips are per camera", func() []audit.Record {
			recs := accesses("alice", 0, 6, start, time.Minute)
			for i := range recs {
				recs[i].Clip, recs[i].Camera = "c1", fmt.Sprintf("cam-%d", i)
			}
			return recs
		}, Options{BulkClips: 5}, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, flagged := bulkCount(tc.recs(), tc.opts)
			assert.Equal(t, tc.want, n, "flagged: %v", flagged)
		})
	}

	// Only the accesses inside a bulk hour are flagged, not the person's
	// whole day.
	recs := accesses("alice", 0, 21, start, time.Minute)
	recs = append(recs, accesses("alice", 100, 3, start.Add(5*time.Hour), time.Minute)...)
	n, _ := bulkCount(recs, Options{})
	assert.Equal(t, 21, n)
}

func TestBuildPeriodDeletionsAndOrder(t *testing.T) {
	base := monday.Add(10 * time.Hour)
	del := view(base.Add(2*time.Hour), "")
	del.Seq, del.Actor, del.Action, del.Why, del.Detail = 3, audit.SystemActor, audit.ActionClipDelete, "retention policy", "non-evidential 31 days"
	recs := []audit.Record{
		{Seq: 4, At: base.Add(3 * time.Hour), Actor: "bob", Action: audit.ActionLogin, Outcome: audit.OutcomeOK},
		del,
		{Seq: 1, At: base.Add(-time.Hour), Actor: "early", Action: audit.ActionLogin, Outcome: audit.OutcomeOK},
		{Seq: 2, At: base, Actor: "carol", Action: audit.ActionClipView, Incident: "INC-9", Outcome: audit.OutcomeOK},
		{Seq: 5, At: base.Add(4 * time.Hour), Actor: "late", Action: audit.ActionLogin, Outcome: audit.OutcomeOK},
	}
	rep := Build(recs, base, base.Add(4*time.Hour), "user=any", Options{Location: zone})
	var seqs []int64
	for _, r := range rep.Rows {
		seqs = append(seqs, r.Seq)
	}
	assert.Equal(t, []int64{2, 3, 4}, seqs, "in [from, to), oldest first")
	require.Len(t, rep.Deletions, 1)
	assert.Equal(t, int64(3), rep.Deletions[0].Seq)
	assert.Equal(t, "user=any", rep.Filter)
	assert.Equal(t, map[Flag]int{NoIncident: 0, OutOfHours: 0, Bulk: 0, Refused: 0}, rep.Counts)
}

func TestSafeCell(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"},
		{"+1+1", "'+1+1"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\t=1", "'\t=1"},
		{"\r=1", "'\r=1"},
		{"＝1+1", "'＝1+1"},
		{"a=1", "a=1"},
		{"10.0.0.5", "10.0.0.5"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, SafeCell(tc.in), "%q", tc.in)
	}
}

func TestCSV(t *testing.T) {
	r := view(monday.Add(22*time.Hour), "")
	r.Seq, r.Hash = 7, "abc"
	r.Why = "=cmd|' /C calc'!A0"
	r.Detail = "line one\nline \"two\", with comma"
	r.Actor = "@alice"
	r.From = "-10.0.0.1"
	rep := Build([]audit.Record{r}, time.Time{}, time.Time{}, "", Options{Location: zone})
	var buf bytes.Buffer
	require.NoError(t, rep.CSV(&buf))

	rows, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err, "the output is valid CSV")
	require.Len(t, rows, 2)
	assert.Equal(t, []string{"seq", "time", "actor", "role", "action", "camera", "clip", "incident", "release",
		"why", "from", "outcome", "detail", "flags", "hash"}, rows[0])
	got := map[string]string{}
	for i, h := range rows[0] {
		got[h] = rows[1][i]
	}
	assert.Equal(t, "7", got["seq"])
	assert.Equal(t, "2026-03-02T22:00:00+01:00", got["time"], "times in the report's zone")
	assert.Equal(t, "'=cmd|' /C calc'!A0", got["why"], "a formula is defused")
	assert.Equal(t, "'@alice", got["actor"])
	assert.Equal(t, "'-10.0.0.1", got["from"])
	assert.Equal(t, r.Detail, got["detail"], "quotes, commas and newlines survive")
	assert.Equal(t, "no_incident out_of_hours", got["flags"])
	for _, row := range rows[1:] {
		for _, cell := range row {
			if cell != "" {
				assert.NotContains(t, "=+-@\t\r", cell[:1], "no cell starts a formula: %q", cell)
			}
		}
	}
}

func TestHTMLEscapesAndHighlights(t *testing.T) {
	bad := view(monday.Add(12*time.Hour), "")
	bad.Seq = 1
	bad.Why = `<script>alert("x")</script>`
	bad.Actor = `"><img src=x onerror=alert(1)>`
	del := view(monday.Add(13*time.Hour), "")
	del.Seq, del.Action, del.Actor, del.Clip, del.Detail = 2, audit.ActionClipDelete, audit.SystemActor, "gone-clip", "policy <b>31 days</b>"
	ok := view(monday.Add(14*time.Hour), "INC-1")
	ok.Seq = 3
	rep := Build([]audit.Record{bad, del, ok}, monday, monday.AddDate(0, 0, 1), "camera=<cam>", Options{Location: zone})
	var buf bytes.Buffer
	require.NoError(t, rep.HTML(&buf))
	page := buf.String()

	assert.NotContains(t, page, "<script>")
	assert.NotContains(t, page, "<img")
	assert.NotContains(t, page, "<b>31")
	assert.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	assert.Contains(t, page, "camera=&lt;cam&gt;")
	assert.Contains(t, page, `<tr class="flagged"><td>1</td>`, "a flagged row is highlighted")
	assert.Contains(t, page, `<span class="flag flag-no_incident">no incident</span>`)
	assert.Contains(t, page, `<tr><td>3</td>`, "an unflagged row is not")
	assert.Contains(t, page, "<h2>Deletions</h2>")
	assert.Contains(t, page, "gone-clip")
	assert.Regexp(t, `flag-no_incident">no incident</span></th><td>1</td>`, page, "the summary counts the flag")
	assert.Contains(t, page, "<tr><th>Clip deletions</th><td>1</td></tr>")
	assert.NotContains(t, page, "http", "self-contained: nothing is loaded from elsewhere")
}

func testSAR() SAR {
	start := monday.Add(9 * time.Hour)
	return SAR{
		Wearer:    "w-17",
		Generated: monday.AddDate(0, 0, 3),
		Location:  zone,
		Clips: []SARClip{
			{Camera: "cam-1", Clip: "c2", Site: "ward 4", Start: start.Add(time.Hour), End: start.Add(time.Hour + 5*time.Minute),
				Category: "non-evidential", Deleted: true},
			{Camera: "cam-1", Clip: "c1", Site: "ward 4", Start: start, End: start.Add(5 * time.Minute),
				Category: "evidential", Incidents: []string{"INC-1", "INC-2"}},
		},
		Accesses: []audit.Record{
			{Seq: 9, At: start.Add(3 * time.Hour), Actor: "bob", Role: "investigator", Action: audit.ActionClipDownload,
				Camera: "cam-1", Clip: "c1", Incident: "INC-1", Why: "police request\n  forged line", Outcome: audit.OutcomeOK},
			{Seq: 8, At: start.Add(2 * time.Hour), Actor: "alice", Role: "supervisor", Action: audit.ActionClipView,
				Camera: "cam-1", Clip: "c1", Incident: "INC-1", Why: "<script>x</script> review \u202egnp.exe", Outcome: audit.OutcomeOK},
		},
	}
}

func TestSARText(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, testSAR().Text(&buf))
	out := buf.String()
	t.Log(out)
	assert.Contains(t, out, "Wearer: w-17")
	assert.Contains(t, out, "Footage (2 clips)")
	assert.Regexp(t, `cam-1\s+c1\s+ward 4\s+2026-03-02 09:00:00\s+2026-03-02 09:05:00\s+evidential\s+INC-1, INC-2\s+2\s+kept`, out)
	assert.Regexp(t, `cam-1\s+c2\s+ward 4\s+.*non-evidential\s+-\s+0\s+deleted`, out)
	assert.Contains(t, out, "Who accessed it (2 records)")
	alice := strings.Index(out, "alice (supervisor)  clip.view  cam-1/c1  incident INC-1  ok")
	bob := strings.Index(out, "bob (investigator)  clip.download  cam-1/c1  incident INC-1  ok")
	require.True(t, alice > 0 && bob > 0, out)
	assert.Less(t, alice, bob, "accesses in time order")
	assert.Contains(t, out, `why: police request\n  forged line`, "a newline in a field cannot forge a line")
	assert.Contains(t, out, `\u202egnp.exe`, "a bidi override is shown, not obeyed")
	assert.Contains(t, out, "2026-03-02 11:00:00", "times in the report's zone")

	var empty bytes.Buffer
	require.NoError(t, SAR{Wearer: "w-1"}.Text(&empty))
	assert.Contains(t, empty.String(), "Vigil holds no footage of this wearer.")
	assert.Contains(t, empty.String(), "Nobody has accessed this footage.")
}

func TestSARHTML(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, testSAR().HTML(&buf))
	page := buf.String()
	assert.Contains(t, page, "Wearer: w-17")
	assert.NotContains(t, page, "<script>x")
	assert.Contains(t, page, "&lt;script&gt;x&lt;/script&gt;")
	assert.Contains(t, page, `<tr class="deleted"><td>cam-1</td><td>c2</td>`)
	assert.Contains(t, page, "<td>INC-1, INC-2</td><td>2</td><td>kept</td>")
	assert.Contains(t, page, "<td>bob</td><td>investigator</td><td>clip.download</td>")
	assert.Less(t, strings.Index(page, "<td>alice</td>"), strings.Index(page, "<td>bob</td>"))
}

func TestReportText(t *testing.T) {
	bad := view(monday.Add(22*time.Hour), "")
	bad.Seq, bad.Why = 1, "review\nPROBLEM: forged line"
	del := view(monday.Add(13*time.Hour), "")
	del.Seq, del.Action, del.Actor, del.Clip, del.Detail = 2, audit.ActionClipDelete, audit.SystemActor, "gone-clip", "non-evidential 31 days"
	rep := Build([]audit.Record{bad, del}, monday, monday.AddDate(0, 0, 1), "user=alice", Options{Location: zone})
	var buf bytes.Buffer
	require.NoError(t, rep.Text(&buf))
	out := buf.String()
	t.Log(out)
	assert.Contains(t, out, "selection: user=alice")
	assert.Contains(t, out, "2 records, 1 no incident, 1 out of hours, 0 bulk access, 0 refused, 1 clip deletions")
	assert.Contains(t, out, "     1  2026-03-02 22:00:00  alice (supervisor)  clip.view  cam-1/c1  ok  [no incident]  [out of hours]")
	assert.Contains(t, out, `why: review\nPROBLEM: forged line`, "a newline in a field cannot forge a line")
	assert.Contains(t, out, "Deletions (1)\n     2  2026-03-02 13:00:00  vigil (supervisor)  clip.delete  cam-1/gone-clip")
}
