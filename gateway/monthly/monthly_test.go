package monthly

import (
	"bytes"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func london(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/London")
	require.NoError(t, err)
	return loc
}

func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	require.NoError(t, err)
	return v
}

const (
	ward      = "Ward 7"
	community = "Community East"
)

// novemberInput is the hand-computed fixture: November 2026 in
// Europe/London, which is GMT (UTC+0) all month (BST ended on 25 October),
// so the UTC times below are also the local times. The report is generated
// at 12:00 on 28 November, so 29 and 30 November are future days.
//
// In order of occurrence (the anonymised sequence numbers):
//
//	#1  B1 Community East 1 Nov 00:30 verbal_abuse      behavioural
//	#2  A1 Ward 7         2 Nov 09:15 verbal_abuse      behavioural
//	#3  A2 Ward 7         2 Nov 14:00 physical_assault  behavioural       police, CR, charged
//	#4  B2 Community East 3 Nov 12:00 hate_incident     behavioural       police, no outcome
//	#5  B3 Community East 3 Nov 18:00 physical_assault  medically_related police, CR, no_further_action
//	#6  A3 Ward 7         5 Nov 22:00 threat            medically_related confidential, no alarm
//	#7  A4 Ward 7        10 Nov 03:00 sexual_assault    unknown           police, CR, pending
//	#8  A5 Ward 7        18 Nov 10:00 (unclassified)    (unclassified)
//	#9  B4 Community East 25 Nov 08:00 online_abuse     unknown
//	#10 B5 Community East 27 Nov 23:30 sexual_harassment behavioural
//
// plus one incident on 31 October and one on 1 December, both excluded.
func novemberInput(t testing.TB) Input {
	t.Helper()
	ts := func(s string) time.Time { return at(t, s) }
	incidents := []Incident{
		{ID: "dev-W7A1-0001", Site: ward, Team: "Triage", Occurred: ts("2026-11-02T09:15:00Z"),
			Type: "verbal_abuse", Cause: "behavioural", Wearer: "Alice Ambler",
			Resolved: ts("2026-11-02T09:20:00Z"), WelfareContact: ts("2026-11-02T15:00:00Z"),
			Defused: ts("2026-11-06T10:00:00Z"), Debriefed: ts("2026-11-12T10:00:00Z")},
		{ID: "dev-W7A2-0002", Site: ward, Team: "Triage", Occurred: ts("2026-11-02T14:00:00Z"),
			Type: "physical_assault", Cause: "behavioural", Physical: true, Wearer: "Bob Baker",
			Police: true, CrimeRef: "CR/123/26", ProsecutionOutcome: "charged",
			Resolved:       ts("2026-11-02T14:10:00Z"),
			WelfareContact: ts("2026-11-03T16:10:00Z"), // 26 h after resolution: late
			Defused:        ts("2026-11-10T10:00:00Z"), // 7 d 20 h: in time
			Debriefed:      ts("2026-11-20T10:00:00Z"), // 17 d 20 h: late
			Overdue:        1},
		{ID: "dev-W7A3-0003", Site: ward, Team: "Night", Occurred: ts("2026-11-05T22:00:00Z"),
			Type: "threat", Cause: "medically_related", Wearer: "Carol Cole", Confidential: true,
			WelfareContact: ts("2026-11-06T21:00:00Z"), // no alarm: 23 h after the incident
			Overdue:        2},
		{ID: "dev-W7A4-0004", Site: ward, Team: "Night", Occurred: ts("2026-11-10T03:00:00Z"),
			Type: "sexual_assault", Cause: "unknown", Physical: true, Wearer: "Dan Dyer",
			Police: true, CrimeRef: "CR/456/26", ProsecutionOutcome: "pending",
			Resolved: ts("2026-11-10T03:30:00Z"), WelfareContact: ts("2026-11-10T12:00:00Z"),
			Defused:   ts("2026-11-20T03:00:00Z"),  // exactly 240 h: in time (inclusive)
			Debriefed: ts("2026-11-24T02:00:00Z")}, // 13 d 23 h
		{ID: "dev-W7A5-0005", Site: ward, Team: "Triage", Occurred: ts("2026-11-18T10:00:00Z"),
			Wearer: "Eve Evans", Resolved: ts("2026-11-18T10:05:00Z"), Overdue: 1},
		{ID: "dev-CE01-0006", Site: community, Team: "District nursing", Occurred: ts("2026-11-01T00:30:00Z"),
			Type: "verbal_abuse", Cause: "behavioural", Wearer: "Femi Fox",
			Resolved: ts("2026-11-01T00:40:00Z"), WelfareContact: ts("2026-11-01T20:00:00Z"),
			Defused: ts("2026-11-04T09:00:00Z"), Debriefed: ts("2026-11-14T00:30:00Z")},
		{ID: "dev-CE02-0007", Site: community, Team: "District nursing", Occurred: ts("2026-11-03T12:00:00Z"),
			Type: "hate_incident", Cause: "behavioural", Wearer: "Gita Gill", Police: true,
			Resolved:       ts("2026-11-03T12:30:00Z"),
			WelfareContact: ts("2026-11-04T12:30:00Z"), // exactly 24 h: in time
			Defused:        ts("2026-11-14T12:00:00Z"), // 11 d: late
			Debriefed:      ts("2026-11-16T12:00:00Z")},
		{ID: "dev-CE03-0008", Site: community, Team: "Health visiting", Occurred: ts("2026-11-03T18:00:00Z"),
			Type: "physical_assault", Cause: "medically_related", Physical: true, Wearer: "Hana Hart",
			Police: true, CrimeRef: "CR/789/26", ProsecutionOutcome: "no_further_action",
			Resolved: ts("2026-11-03T18:20:00Z"), WelfareContact: ts("2026-11-03T20:00:00Z"),
			Defused: ts("2026-11-08T10:00:00Z"), Debriefed: ts("2026-11-17T17:00:00Z")},
		{ID: "dev-CE04-0009", Site: community, Team: "Health visiting", Occurred: ts("2026-11-25T08:00:00Z"),
			Type: "online_abuse", Cause: "unknown", Wearer: "Ian Irwin",
			Resolved:       ts("2026-11-25T08:10:00Z"),
			WelfareContact: ts("2026-11-27T08:10:00Z"), // 48 h: late
			Overdue:        1},
		{ID: "dev-CE05-0010", Site: community, Team: "District nursing", Occurred: ts("2026-11-27T23:30:00Z"),
			Type: "sexual_harassment", Cause: "behavioural", Wearer: "Jo Jones",
			Resolved: ts("2026-11-27T23:45:00Z"), WelfareContact: ts("2026-11-28T09:00:00Z")},
		// Outside the month in Europe/London:
		{ID: "dev-X-0011", Site: community, Occurred: ts("2026-10-31T23:30:00Z"),
			Type: "physical_assault", Physical: true, Wearer: "Oscar October"},
		{ID: "dev-X-0012", Site: ward, Occurred: ts("2026-12-01T00:00:00Z"),
			Type: "physical_assault", Physical: true, Wearer: "Dee December"},
	}
	p1 := func(site, raised string, del, ack, res time.Duration) Alert {
		r := ts(raised)
		a := Alert{Site: site, Priority: 1, Event: "duress", Raised: r, Delivered: r.Add(del)}
		if ack > 0 {
			a.Acknowledged = r.Add(ack)
		}
		if res > 0 {
			a.Resolved = r.Add(res)
		}
		return a
	}
	const ms, s = time.Millisecond, time.Second
	alerts := []Alert{
		p1(ward, "2026-11-02T09:15:00Z", 200*ms, 4*s, 300*s),
		p1(ward, "2026-11-02T14:00:00Z", 300*ms, 8*s, 600*s),
		p1(ward, "2026-11-10T03:00:00Z", 500*ms, 12*s, 1800*s),
		p1(ward, "2026-11-12T08:00:00Z", 100*ms, 6*s, 120*s),
		p1(ward, "2026-11-18T10:00:00Z", 1000*ms, 45*s, 900*s),
		p1(ward, "2026-11-20T15:00:00Z", 400*ms, 0, 0), // never acknowledged
		p1(community, "2026-11-01T00:30:00Z", 200*ms, 9*s, 240*s),
		p1(community, "2026-11-03T12:00:00Z", 600*ms, 10*s, 400*s), // exactly 10 s: within
		p1(community, "2026-11-03T18:00:00Z", 2000*ms, 30*s, 3600*s),
		p1(community, "2026-11-25T08:00:00Z", 300*ms, 5*s, 200*s),
		// Not measured: a P2, and P1s just outside the month.
		{Site: ward, Priority: 2, Event: "low_battery", Raised: ts("2026-11-15T10:00:00Z"),
			Delivered: ts("2026-11-15T10:00:01Z"), Acknowledged: ts("2026-11-15T10:01:40Z")},
		p1(community, "2026-10-31T23:59:50Z", 100*ms, 1*s, 60*s),
		p1(community, "2026-12-01T00:00:05Z", 100*ms, 1*s, 60*s),
	}
	return Input{
		Month:     ts("2026-11-15T12:00:00Z"),
		Location:  london(t),
		Incidents: incidents,
		Alerts:    alerts,
		Generated: ts("2026-11-28T12:00:00Z"),
	}
}

var wearers = []string{"Alice Ambler", "Bob Baker", "Carol Cole", "Dan Dyer", "Eve Evans",
	"Femi Fox", "Gita Gill", "Hana Hart", "Ian Irwin", "Jo Jones"}

// sections returns the summary, Community East and Ward 7 sections.
func sections(t *testing.T, r Report) (all, ce, w7 Section) {
	t.Helper()
	require.NotNil(t, r.Summary)
	require.Len(t, r.Sites, 2)
	require.Equal(t, community, r.Sites[0].Site, "sites are sorted by name")
	require.Equal(t, ward, r.Sites[1].Site)
	return *r.Summary, r.Sites[0], r.Sites[1]
}

func TestBuildMonthWindow(t *testing.T) {
	r := Build(novemberInput(t))
	assert.Equal(t, "2026-11-01T00:00:00Z", r.Start.UTC().Format(time.RFC3339))
	assert.Equal(t, "2026-12-01T00:00:00Z", r.End.UTC().Format(time.RFC3339))
	assert.Equal(t, "Europe/London", r.Location)
	all, ce, w7 := sections(t, r)
	assert.Len(t, all.Incidents, 10, "31 Oct and 1 Dec are excluded")
	assert.Len(t, ce.Incidents, 5)
	assert.Len(t, w7.Incidents, 5)
	assert.Len(t, all.Cross, 30)
}

func TestBuildSafetyCross(t *testing.T) {
	all, ce, w7 := sections(t, Build(novemberInput(t)))
	tests := []struct {
		name string
		s    Section
		day  int
		want Mark
	}{
		{"all: 1st verbal at Community East", all, 1, Yellow},
		{"all: 2nd verbal and physical is red", all, 2, Red},
		{"all: 3rd hate incident and physical", all, 3, Red},
		{"all: 4th quiet", all, 4, Green},
		{"all: 5th threat only", all, 5, Yellow},
		{"all: 10th sexual assault", all, 10, Red},
		{"all: 18th unclassified counts as non-physical", all, 18, Yellow},
		{"all: 27th 23:30 GMT stays on the 27th", all, 27, Yellow},
		{"all: 28th, report day, no incident yet", all, 28, Green},
		{"all: 29th after Generated", all, 29, Future},
		{"all: 30th after Generated", all, 30, Future},
		{"Ward 7: 1st incident was elsewhere", w7, 1, Green},
		{"Ward 7: 2nd", w7, 2, Red},
		{"Ward 7: 3rd", w7, 3, Green},
		{"Ward 7: 5th", w7, 5, Yellow},
		{"Ward 7: 18th", w7, 18, Yellow},
		{"Community East: 1st", ce, 1, Yellow},
		{"Community East: 2nd", ce, 2, Green},
		{"Community East: 3rd", ce, 3, Red},
		{"Community East: 10th", ce, 10, Green},
		{"Community East: 30th", ce, 30, Future},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.s.Cross[tc.day-1]
			require.Equal(t, tc.day, d.Date.Day())
			assert.Equal(t, tc.want, d.Mark, "got %s", d.Mark)
		})
	}
	assert.Equal(t, 2, all.Cross[2].Incidents)
	assert.Equal(t, 1, all.Cross[2].Physical)
}

func TestBuildSafetyCrossWithoutGeneratedHasNoFuture(t *testing.T) {
	in := novemberInput(t)
	in.Generated = time.Time{}
	r := Build(in)
	for _, d := range r.Summary.Cross {
		assert.NotEqual(t, Future, d.Mark, "day %d", d.Date.Day())
	}
}

func counts(cs []Count) map[string]int {
	m := map[string]int{}
	for _, c := range cs {
		m[c.Key] = c.N
	}
	return m
}

func TestBuildByTypeAndCause(t *testing.T) {
	all, ce, w7 := sections(t, Build(novemberInput(t)))
	assert.Equal(t, map[string]int{
		"physical_assault": 2, "sexual_assault": 1, "verbal_abuse": 2, "threat": 1,
		"sexual_harassment": 1, "hate_incident": 1, "online_abuse": 1, "unclassified": 1,
	}, counts(all.ByType))
	assert.Equal(t, map[string]int{
		"behavioural": 5, "medically_related": 2, "unknown": 2, "unclassified": 1,
	}, counts(all.ByCause))
	assert.Equal(t, map[string]int{
		"physical_assault": 1, "sexual_assault": 1, "verbal_abuse": 1, "threat": 1,
		"sexual_harassment": 0, "hate_incident": 0, "online_abuse": 0, "unclassified": 1,
	}, counts(w7.ByType), "known types are listed even at zero")
	assert.Equal(t, map[string]int{
		"behavioural": 3, "medically_related": 1, "unknown": 1, "unclassified": 0,
	}, counts(ce.ByCause))
	assert.Equal(t, "unclassified", all.ByType[len(all.ByType)-1].Key, "unclassified is the last bar")
}

func TestBuildUnknownCategoryKeepsItsOwnBar(t *testing.T) {
	in := novemberInput(t)
	in.Incidents = append(in.Incidents, Incident{Site: ward, Occurred: at(t, "2026-11-04T10:00:00Z"),
		Type: "spitting", Cause: "alcohol"})
	all := *Build(in).Summary
	assert.Equal(t, 1, counts(all.ByType)["spitting"])
	assert.Equal(t, 1, counts(all.ByCause)["alcohol"])
	assert.Equal(t, Yellow, all.Cross[3].Mark)
}

func TestBuildResponse(t *testing.T) {
	all, ce, w7 := sections(t, Build(novemberInput(t)))
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		name string
		got  Response
		want Response
	}{
		{
			// Ward 7, 6 P1 alarms.
			// Delivered (6): 0.1 0.2 0.3 0.4 0.5 1.0; p50 rank ceil(3)=3 → 0.3 s; p90 rank ceil(5.4)=6 → 1.0 s.
			// Acknowledged (5; one never): 4 6 8 12 45; p50 rank ceil(2.5)=3 → 8 s; p90 rank ceil(4.5)=5 → 45 s.
			// Resolved (5): 120 300 600 900 1800; p50 → 600 s; p90 → 1800 s.
			// ≤10 s: 4 6 8 = 3/6 = 50% < 80% fail; ≤40 s: 4 6 8 12 = 4/6 = 66.7% < 98.5% fail.
			name: "Ward 7", got: w7.Response,
			want: Response{P1: 6,
				Delivered:    Latency{N: 6, P50: ms(300), P90: ms(1000)},
				Acknowledged: Latency{N: 5, P50: s(8), P90: s(45)},
				Resolved:     Latency{N: 5, P50: s(600), P90: s(1800)},
				Within10s:    Share{Limit: s(10), Met: 3, Of: 6, TargetPermille: 800},
				Within40s:    Share{Limit: s(40), Met: 4, Of: 6, TargetPermille: 985},
			},
		},
		{
			// Community East, 4 P1 alarms.
			// Delivered: 0.2 0.3 0.6 2.0; p50 rank ceil(2)=2 → 0.3 s; p90 rank ceil(3.6)=4 → 2.0 s.
			// Acknowledged: 5 9 10 30; p50 rank 2 → 9 s; p90 rank 4 → 30 s.
			// Resolved: 200 240 400 3600; p50 → 240 s; p90 → 3600 s.
			// ≤10 s: 5 9 10 = 3/4 = 75% < 80% fail; ≤40 s: 4/4 = 100% pass.
			name: "Community East", got: ce.Response,
			want: Response{P1: 4,
				Delivered:    Latency{N: 4, P50: ms(300), P90: ms(2000)},
				Acknowledged: Latency{N: 4, P50: s(9), P90: s(30)},
				Resolved:     Latency{N: 4, P50: s(240), P90: s(3600)},
				Within10s:    Share{Limit: s(10), Met: 3, Of: 4, TargetPermille: 800},
				Within40s:    Share{Limit: s(40), Met: 4, Of: 4, TargetPermille: 985},
			},
		},
		{
			// All sites, 10 P1 alarms (the P2 and the 31 Oct / 1 Dec P1s excluded).
			// Delivered (10): 0.1 0.2 0.2 0.3 0.3 0.4 0.5 0.6 1.0 2.0; p50 rank 5 → 0.3 s; p90 rank 9 → 1.0 s.
			// Acknowledged (9): 4 5 6 8 9 10 12 30 45; p50 rank ceil(4.5)=5 → 9 s; p90 rank ceil(8.1)=9 → 45 s.
			// Resolved (9): 120 200 240 300 400 600 900 1800 3600; p50 rank 5 → 400 s; p90 rank 9 → 3600 s.
			// ≤10 s: 4 5 6 8 9 10 = 6/10 = 60% fail; ≤40 s: + 12 30 = 8/10 = 80% fail.
			name: "all sites", got: all.Response,
			want: Response{P1: 10,
				Delivered:    Latency{N: 10, P50: ms(300), P90: ms(1000)},
				Acknowledged: Latency{N: 9, P50: s(9), P90: s(45)},
				Resolved:     Latency{N: 9, P50: s(400), P90: s(3600)},
				Within10s:    Share{Limit: s(10), Met: 6, Of: 10, TargetPermille: 800},
				Within40s:    Share{Limit: s(40), Met: 8, Of: 10, TargetPermille: 985},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.got)
		})
	}
	assert.InDelta(t, 50.0, w7.Response.Within10s.Percent(), 1e-9)
	assert.InDelta(t, 66.667, w7.Response.Within40s.Percent(), 1e-3)
	assert.Equal(t, "fail", ce.Response.Within10s.Verdict())
	assert.Equal(t, "pass", ce.Response.Within40s.Verdict())
	assert.Equal(t, "fail", all.Response.Within40s.Verdict())
}

func TestSharePass(t *testing.T) {
	tests := []struct {
		met, of, permille int
		want              string
	}{
		{8, 10, 800, "pass"}, // exactly 80%
		{7, 10, 800, "fail"},
		{985, 1000, 985, "pass"}, // exactly 98.5%: no float rounding
		{984, 1000, 985, "fail"},
		{197, 200, 985, "pass"}, // 98.5%
		{196, 200, 985, "fail"}, // 98.0%
		{0, 0, 800, "no alarms"},
	}
	for _, tc := range tests {
		s := Share{Met: tc.met, Of: tc.of, TargetPermille: tc.permille}
		assert.Equal(t, tc.want, s.Verdict(), "%d/%d vs %d‰", tc.met, tc.of, tc.permille)
	}
}

func TestNearestRank(t *testing.T) {
	seq := func(n int) []time.Duration {
		var ds []time.Duration
		for i := 1; i <= n; i++ {
			ds = append(ds, time.Duration(i))
		}
		return ds
	}
	tests := []struct {
		n, p int
		want time.Duration
	}{
		{1, 50, 1}, {1, 90, 1},
		{2, 50, 1}, {2, 90, 2},
		{10, 50, 5}, {10, 90, 9},
		{11, 50, 6}, {11, 90, 10}, // ceil(5.5)=6, ceil(9.9)=10
		{20, 90, 18},
		{100, 90, 90},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, nearestRank(seq(tc.n), tc.p), "n=%d p=%d", tc.n, tc.p)
	}
}

func TestBuildClockSkewMeasuredAsZero(t *testing.T) {
	r := at(t, "2026-11-02T09:00:00Z")
	rep := Build(Input{Month: r, Location: time.UTC, Alerts: []Alert{
		{Site: ward, Priority: 1, Raised: r, Delivered: r.Add(-time.Second), Acknowledged: r.Add(3 * time.Second)},
	}})
	resp := rep.Summary.Response
	assert.Equal(t, 1, resp.ClockSkew)
	assert.Equal(t, time.Duration(0), resp.Delivered.P50)
	assert.Equal(t, 1, resp.Within10s.Met)
}

func TestBuildSupport(t *testing.T) {
	all, ce, w7 := sections(t, Build(novemberInput(t)))
	day := 24 * time.Hour
	// Generated 28 Nov 12:00. Welfare (24 h from resolution, or occurrence):
	//   in time A1 A3(23 h, no alarm) A4 B1 B2(exactly 24 h) B3 B5 = 7/10;
	//   late A2(26 h) B4(48 h); missing A5 (due 19 Nov, past).
	// Defusing (10 d): in time A1 A2 A4(exactly 240 h) B1 B3 = 5/10;
	//   late B2(11 d); missing and past due A3(15 Nov) A5(28 Nov 10:00);
	//   missing, not yet due B4(5 Dec) B5(7 Dec) = 2.
	// Debrief (14 d): in time A1(10 d) A4 B1 B2 B3 = 5/10; late A2(18 d);
	//   missing, past due A3(19 Nov); not yet due A5(2 Dec) B4 B5 = 3.
	// Overdue: A2 1 + A3 2 + A5 1 + B4 1 = 5.
	assert.Equal(t, Support{
		Welfare:  Compliance{Within: day, Met: 7, Of: 10},
		Defusing: Compliance{Within: 10 * day, Met: 5, Of: 10, NotDue: 2},
		Debrief:  Compliance{Within: 14 * day, Met: 5, Of: 10, NotDue: 3},
		Overdue:  5,
	}, all.Support)
	assert.Equal(t, Support{
		Welfare:  Compliance{Within: day, Met: 3, Of: 5},
		Defusing: Compliance{Within: 10 * day, Met: 3, Of: 5},
		Debrief:  Compliance{Within: 14 * day, Met: 2, Of: 5, NotDue: 1},
		Overdue:  4,
	}, w7.Support)
	assert.Equal(t, Support{
		Welfare:  Compliance{Within: day, Met: 4, Of: 5},
		Defusing: Compliance{Within: 10 * day, Met: 2, Of: 5, NotDue: 2},
		Debrief:  Compliance{Within: 14 * day, Met: 3, Of: 5, NotDue: 2},
		Overdue:  1,
	}, ce.Support)
	assert.InDelta(t, 70.0, all.Support.Welfare.Percent(), 1e-9)
}

func TestBuildOutcomes(t *testing.T) {
	all, ce, w7 := sections(t, Build(novemberInput(t)))
	keys := func(o Outcomes) []string {
		var ks []string
		for _, c := range o.ByOutcome {
			ks = append(ks, c.Key+"="+string(rune('0'+c.N)))
		}
		return ks
	}
	// Police: A2 A4 B2 B3 = 4; crime refs A2 A4 B3 = 3; B2 has police but
	// no outcome yet.
	assert.Equal(t, 4, all.Outcomes.Police)
	assert.Equal(t, 3, all.Outcomes.CrimeRefs)
	assert.Equal(t, []string{"charged=1", "pending=1", "no_further_action=1", "not_recorded=1"}, keys(all.Outcomes))
	assert.Equal(t, Outcomes{Police: 2, CrimeRefs: 2, ByOutcome: []Count{
		{Key: "charged", Label: "Charged", N: 1}, {Key: "pending", Label: "Pending", N: 1},
	}}, w7.Outcomes)
	assert.Equal(t, []string{"no_further_action=1", "not_recorded=1"}, keys(ce.Outcomes))
	assert.Equal(t, 1, ce.Outcomes.CrimeRefs)
}

func TestBuildAnonymisedRows(t *testing.T) {
	all, ce, _ := sections(t, Build(novemberInput(t)))
	var refs []string
	for _, row := range all.Incidents {
		refs = append(refs, row.Ref)
		assert.Empty(t, row.Wearer)
		assert.Empty(t, row.CrimeRef)
		assert.False(t, row.Named)
		assert.Zero(t, row.Occurred.Hour()+row.Occurred.Minute(), "time of day is dropped")
	}
	assert.Equal(t, []string{"#1", "#2", "#3", "#4", "#5", "#6", "#7", "#8", "#9", "#10"}, refs)
	// Numbers agree between the summary and the site sections.
	assert.Equal(t, "#4", ce.Incidents[1].Ref)
	assert.Equal(t, "hate_incident", ce.Incidents[1].Type)
	assert.True(t, all.Incidents[2].HasCrimeRef)
	assert.Equal(t, "unclassified", all.Incidents[7].Type)
}

func TestBuildNamedRows(t *testing.T) {
	in := novemberInput(t)
	in.Named = true
	all := *Build(in).Summary
	a2 := all.Incidents[2]
	assert.Equal(t, "dev-W7A2-0002", a2.Ref)
	assert.Equal(t, "Bob Baker", a2.Wearer)
	assert.Equal(t, "CR/123/26", a2.CrimeRef)
	assert.Equal(t, 14, a2.Occurred.Hour())
	a3 := all.Incidents[5]
	require.True(t, a3.Confidential)
	assert.Equal(t, "#6", a3.Ref, "confidential incidents are never named")
	assert.Empty(t, a3.Wearer)
	assert.False(t, a3.Named)
}

func TestBuildSiteFilter(t *testing.T) {
	in := novemberInput(t)
	in.Site = ward
	r := Build(in)
	assert.Nil(t, r.Summary)
	require.Len(t, r.Sites, 1)
	w7 := r.Sites[0]
	_, _, full := sections(t, Build(novemberInput(t)))
	assert.Equal(t, full.Cross, w7.Cross)
	assert.Equal(t, full.ByType, w7.ByType)
	assert.Equal(t, full.Response, w7.Response)
	assert.Equal(t, full.Support, w7.Support)
	assert.Equal(t, full.Outcomes, w7.Outcomes)
	assert.Equal(t, "#1", w7.Incidents[0].Ref, "numbering restarts in a one-site report")

	in.Site = "Nowhere"
	r = Build(in)
	require.Len(t, r.Sites, 1, "a named site gets a section even without data")
	assert.Equal(t, Green, r.Sites[0].Cross[0].Mark)
	assert.Equal(t, "no alarms", r.Sites[0].Response.Within10s.Verdict())
}

// TestBuildDSTBoundary uses March 2026 in Europe/London: BST starts at
// 01:00 UTC on Sunday 29 March, so the month ends at 23:00 UTC on 31 March
// and UTC times late on the 29th–31st fall on the next local day.
func TestBuildDSTBoundary(t *testing.T) {
	loc := london(t)
	inc := func(id, ts string, phys bool) Incident {
		typ := "verbal_abuse"
		if phys {
			typ = "physical_assault"
		}
		return Incident{ID: id, Site: ward, Occurred: at(t, ts), Type: typ, Physical: phys}
	}
	incidents := []Incident{
		inc("feb28", "2026-02-28T23:30:00Z", true),  // 23:30 GMT 28 Feb: February
		inc("mar1", "2026-03-01T00:00:00Z", false),  // 00:00 GMT 1 Mar: first instant of March
		inc("mar29", "2026-03-29T00:30:00Z", false), // 00:30 GMT 29 Mar, before the change
		inc("mar30", "2026-03-29T23:30:00Z", true),  // 00:30 BST 30 Mar
		inc("mar31", "2026-03-31T22:59:00Z", false), // 23:59 BST 31 Mar
		inc("apr1", "2026-03-31T23:30:00Z", true),   // 00:30 BST 1 Apr
	}
	alerts := []Alert{
		{Site: ward, Priority: 1, Raised: at(t, "2026-03-31T22:30:00Z")}, // 23:30 BST 31 Mar
		{Site: ward, Priority: 1, Raised: at(t, "2026-03-31T23:00:00Z")}, // 00:00 BST 1 Apr
	}
	march := Build(Input{Month: at(t, "2026-03-10T12:00:00Z"), Location: loc, Incidents: incidents, Alerts: alerts})
	assert.Equal(t, "2026-03-31T23:00:00Z", march.End.UTC().Format(time.RFC3339))
	cross := march.Summary.Cross
	require.Len(t, cross, 31)
	assert.Equal(t, Yellow, cross[0].Mark)
	assert.Equal(t, Yellow, cross[28].Mark, "29 Mar: only the verbal incident")
	assert.Equal(t, Red, cross[29].Mark, "23:30 UTC on the 29th is the 30th in BST")
	assert.Equal(t, Yellow, cross[30].Mark, "31 Mar: the 00:30 BST 1 Apr assault is not here")
	assert.Equal(t, "2026-03-29T23:00:00Z", cross[29].Date.UTC().Format(time.RFC3339), "30 Mar starts at 23:00 UTC")
	assert.Len(t, march.Summary.Incidents, 4)
	assert.Equal(t, 1, march.Summary.Response.P1)

	april := Build(Input{Month: at(t, "2026-04-15T00:00:00Z"), Location: loc, Incidents: incidents, Alerts: alerts})
	assert.Equal(t, Red, april.Summary.Cross[0].Mark, "the 1 Apr 00:30 BST assault")
	assert.Equal(t, 1, april.Summary.Response.P1)

	// The same instants read in UTC put the late-29th assault on the 29th
	// and the 31 Mar 23:30 UTC assault in March.
	utc := Build(Input{Month: at(t, "2026-03-10T12:00:00Z"), Location: time.UTC, Incidents: incidents})
	assert.Equal(t, Red, utc.Summary.Cross[28].Mark)
	assert.Equal(t, Red, utc.Summary.Cross[30].Mark)
}

func TestBuildEmpty(t *testing.T) {
	r := Build(Input{Month: at(t, "2026-02-10T00:00:00Z"), Location: time.UTC})
	require.NotNil(t, r.Summary)
	assert.Empty(t, r.Sites)
	assert.Len(t, r.Summary.Cross, 28)
	assert.Equal(t, 0, r.Summary.Support.Welfare.Of)
	require.NoError(t, r.HTML(io.Discard))
	require.NoError(t, r.CSV(io.Discard))
}

func renderHTML(t *testing.T, r Report) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, r.HTML(&b))
	return b.String()
}

func TestHTMLAnonymised(t *testing.T) {
	page := renderHTML(t, Build(novemberInput(t)))
	assert.Contains(t, page, "<svg")
	assert.Contains(t, page, "Safety cross for All sites, November 2026")
	assert.Contains(t, page, "<title>Mon 2 November 2026: red (physical incident), 2 incidents, 1 physical</title>")
	assert.Contains(t, page, "<title>Sun 29 November 2026: future (future, not yet reported)</title>")
	assert.Contains(t, page, ">R</text>")
	assert.Contains(t, page, ">Y</text>")
	assert.Contains(t, page, ">G</text>")
	assert.Contains(t, page, "Anonymised")
	assert.Contains(t, page, "nearest-rank")
	assert.Contains(t, page, "<td>#10</td>")
	for _, name := range wearers {
		assert.NotContains(t, page, name)
	}
	for _, id := range []string{"dev-", "CR/123/26", "CR/789/26"} {
		assert.NotContains(t, page, id)
	}
	for _, external := range []string{"<script", "<link", "src=", "http://", "https://"} {
		if external == "http://" {
			// The SVG namespace is an identifier, not a fetch.
			page = strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		}
		assert.NotContains(t, page, external)
	}
}

func TestHTMLNamed(t *testing.T) {
	in := novemberInput(t)
	in.Named = true
	page := renderHTML(t, Build(in))
	for _, name := range wearers {
		if name == "Carol Cole" {
			assert.NotContains(t, page, name, "confidential incident")
			continue
		}
		assert.Contains(t, page, name)
	}
	assert.Contains(t, page, "dev-W7A2-0002")
	assert.NotContains(t, page, "dev-W7A3-0003", "confidential incident id")
	assert.Contains(t, page, "CR/123/26")
	assert.Contains(t, page, "Named report")
}

func TestHTMLEscapesHostileNames(t *testing.T) {
	const hostile = `<script>alert("x")</script>`
	in := novemberInput(t)
	in.Named = true
	for i := range in.Incidents {
		if in.Incidents[i].Site == ward {
			in.Incidents[i].Site = hostile
			in.Incidents[i].Team = `"><img src=x onerror=alert(1)>`
			in.Incidents[i].Wearer = `</title><script>bad()</script>`
		}
	}
	for i := range in.Alerts {
		if in.Alerts[i].Site == ward {
			in.Alerts[i].Site = hostile
		}
	}
	page := renderHTML(t, Build(in))
	assert.NotContains(t, page, "<script")
	assert.NotContains(t, page, "<img")
	assert.NotContains(t, page, "</title><script")
	assert.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
}

func readCSV(t *testing.T, r Report) [][]string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, r.CSV(&b))
	cr := csv.NewReader(&b)
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	require.NoError(t, err)
	return recs
}

// csvTable finds the rows of a table (after its header) for a site label.
func csvTable(t *testing.T, recs [][]string, name, site string) (header []string, rows [][]string) {
	t.Helper()
	for i, r := range recs {
		if len(r) == 4 && r[0] == "table" && r[1] == name && r[3] == site {
			header = recs[i+1]
			for _, row := range recs[i+2:] {
				if row[0] == "table" {
					break
				}
				rows = append(rows, row)
			}
			return header, rows
		}
	}
	t.Fatalf("no table %s for %s", name, site)
	return nil, nil
}

func TestCSV(t *testing.T) {
	recs := readCSV(t, Build(novemberInput(t)))
	_, cross := csvTable(t, recs, "safety_cross", "All sites")
	require.Len(t, cross, 30)
	assert.Equal(t, []string{"2026-11-02", "2", "R", "red", "2", "1"}, cross[1])
	assert.Equal(t, []string{"2026-11-30", "30", "", "future", "0", "0"}, cross[29])

	_, resp := csvTable(t, recs, "p1_alarm_response", "Ward 7")
	assert.Equal(t, []string{"raised_to_acknowledged", "5", "8.000", "45.000"}, resp[1])
	_, bs := csvTable(t, recs, "bs8484_answer_targets", "Community East")
	assert.Equal(t, [][]string{
		{"10.000", "3", "4", "75.0", "80.0", "fail"},
		{"40.000", "4", "4", "100.0", "98.5", "pass"},
	}, bs)
	_, sup := csvTable(t, recs, "support_plan_compliance", "All sites")
	assert.Equal(t, []string{"defusing_10d", "5", "10", "50.0", "2"}, sup[1])
	_, out := csvTable(t, recs, "outcomes", "All sites")
	assert.Contains(t, out, []string{"prosecution_outcome", "not_recorded", "1"})

	header, incs := csvTable(t, recs, "incidents", "All sites")
	assert.NotContains(t, header, "staff_member")
	require.Len(t, incs, 10)
	assert.Equal(t, []string{"#3", "2026-11-02", ward, "Triage", "physical_assault", "behavioural",
		"true", "true", "recorded", "charged"}, incs[2])
	for _, r := range recs {
		for _, cell := range r {
			for _, name := range wearers {
				assert.NotContains(t, cell, name)
			}
			assert.NotContains(t, cell, "dev-")
		}
	}
}

func TestCSVNamed(t *testing.T) {
	in := novemberInput(t)
	in.Named = true
	recs := readCSV(t, Build(in))
	header, incs := csvTable(t, recs, "incidents", "Ward 7")
	require.Equal(t, "staff_member", header[10])
	var names []string
	for _, r := range incs {
		names = append(names, r[10])
	}
	assert.Equal(t, []string{"Alice Ambler", "Bob Baker", "", "Dan Dyer", "Eve Evans"}, names)
	assert.Equal(t, "#6", incs[2][0])
	assert.Equal(t, "true", incs[2][11])
}

func TestCSVFormulaInjection(t *testing.T) {
	in := novemberInput(t)
	in.Named = true
	evil := []string{`=HYPERLINK("http://x","y")`, "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"}
	for i := range in.Incidents {
		in.Incidents[i].Team = evil[i%len(evil)]
		in.Incidents[i].Wearer = evil[(i+1)%len(evil)]
		in.Incidents[i].Site = "=cmd|' /C calc'!A0"
	}
	recs := readCSV(t, Build(in))
	seen := 0
	for _, r := range recs {
		for _, cell := range r {
			if cell == "" {
				continue
			}
			assert.NotContains(t, "=+-@\t\r", cell[:1], "cell %q", cell)
			if strings.HasPrefix(cell, "'") && slices.Contains(evil, cell[1:]) {
				seen++
			}
		}
	}
	assert.Positive(t, seen, "the guarded values are kept, behind a quote")
	_, incs := csvTable(t, recs, "incidents", "'=cmd|' /C calc'!A0")
	assert.Len(t, incs, 10)
}

func TestDefuse(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "Ward 7": "Ward 7", "=1": "'=1", "+1": "'+1", "-1": "'-1", "@a": "'@a",
		"\t=1": "'\t=1", "\r": "'\r", "a=1": "a=1", "'=1": "'=1",
	} {
		assert.Equal(t, want, defuse(in), "%q", in)
	}
}

// FuzzRender checks that any site, team, type and wearer string renders:
// the CSV parses back with no cell a spreadsheet would run, and the HTML
// carries no markup from the input.
func FuzzRender(f *testing.F) {
	f.Add("Ward 7", "Triage", "verbal_abuse", "Alice", true)
	f.Add(`<script>x</script>`, `"><b>`, "=1+1", "@x", false)
	f.Add("-5", "\t", "\r\n", "\"quoted, comma\"", true)
	f.Fuzz(func(t *testing.T, site, team, typ, wearer string, named bool) {
		occ := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
		r := Build(Input{Month: occ, Location: time.UTC, Named: named,
			Incidents: []Incident{{ID: "i1", Site: site, Team: team, Type: typ, Cause: typ,
				Wearer: wearer, ProsecutionOutcome: typ, Police: true, Occurred: occ}},
			Alerts: []Alert{{Site: site, Priority: 1, Raised: occ, Acknowledged: occ.Add(time.Second)}},
		})
		var page bytes.Buffer
		require.NoError(t, r.HTML(&page))
		if strings.Contains(site+team+typ+wearer, "<") {
			assert.NotContains(t, page.String(), "<script>x")
		}
		var out bytes.Buffer
		require.NoError(t, r.CSV(&out))
		cr := csv.NewReader(&out)
		cr.FieldsPerRecord = -1
		recs, err := cr.ReadAll()
		require.NoError(t, err)
		for _, rec := range recs {
			for _, cell := range rec {
				if cell != "" {
					assert.NotContains(t, "=+-@\t\r", cell[:1], "cell %q", cell)
				}
			}
		}
	})
}

// TestSampleReport keeps docs/sample-monthly-report.{html,csv} what the
// hand-computed fixture month renders to, so the README's sample is real.
// Regenerate with VIGIL_UPDATE_SAMPLE=1 go test ./gateway/monthly/ -run TestSampleReport.
func TestSampleReport(t *testing.T) {
	r := Build(novemberInput(t))
	var html, csv bytes.Buffer
	require.NoError(t, r.HTML(&html))
	require.NoError(t, r.CSV(&csv))
	for name, got := range map[string][]byte{"sample-monthly-report.html": html.Bytes(), "sample-monthly-report.csv": csv.Bytes()} {
		path := filepath.Join("..", "..", "docs", name)
		if os.Getenv("VIGIL_UPDATE_SAMPLE") != "" {
			require.NoError(t, os.WriteFile(path, got, 0o644))
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "regenerate with VIGIL_UPDATE_SAMPLE=1")
		assert.Equal(t, string(want), string(got), "%s is stale: regenerate with VIGIL_UPDATE_SAMPLE=1", name)
	}
}
