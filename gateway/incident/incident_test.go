package incident

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// t0 is a fixed instant: every test's clock is derived from it.
var t0 = time.Date(2025, 3, 10, 14, 0, 0, 0, time.UTC)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	return db
}

func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"))
	t.Cleanup(func() { db.Close() })
	s, err := New(db, opts)
	require.NoError(t, err)
	return s
}

func alertInfo(id string) AlertInfo {
	return AlertInfo{ID: id, Event: "duress", Site: "north", Device: "btn-1", Wearer: "Asha Patel", Team: "district-nursing",
		Raised: t0, Delivered: t0.Add(2 * time.Second), Acknowledged: t0.Add(9 * time.Second),
		Resolved: t0.Add(20 * time.Minute), Outcome: "genuine_police_attended"}
}

func taskByID(t *testing.T, inc Incident, id string) Task {
	t.Helper()
	for _, tk := range inc.Plan {
		if tk.ID == id {
			return tk
		}
	}
	t.Fatalf("no task %s in %s", id, inc.ID)
	return Task{}
}

func TestFromAlertPlanAndIdempotence(t *testing.T) {
	resolved := t0.Add(20 * time.Minute)
	h, d := time.Hour, 24*time.Hour
	type want struct{ notBefore, due time.Time }
	tests := []struct {
		name string
		cfg  PlanConfig
		want map[string]want
	}{
		{
			name: "defaults",
			want: map[string]want{
				"made_safe":               {resolved, resolved.Add(h)},
				"first_aid":               {resolved, resolved.Add(h)},
				"psychological_first_aid": {resolved, resolved.Add(h)},
				"continue_or_home":        {resolved, resolved.Add(h)},
				"demobilisation":          {resolved, resolved.Add(12 * h)},
				"welfare_contact":         {resolved, resolved.Add(24 * h)},
				"defusing":                {resolved.Add(3 * d), resolved.Add(10 * d)},
				"debriefing":              {resolved.Add(7 * d), resolved.Add(14 * d)},
				"after_action_review":     {resolved, resolved.Add(28 * d)},
				"checkin_day7":            {resolved.Add(7 * d), resolved.Add(9 * d)},
				"checkin_day28":           {resolved.Add(28 * d), resolved.Add(30 * d)},
			},
		},
		{
			name: "configured",
			cfg: PlanConfig{
				Immediate:      Window{0, 30 * time.Minute},
				Demobilisation: Window{0, 8 * h},
				Defusing:       Window{2 * d, 5 * d},
				CheckIns:       []time.Duration{3 * d},
				CheckInWindow:  12 * h,
			},
			want: map[string]want{
				"made_safe":           {resolved, resolved.Add(30 * time.Minute)},
				"continue_or_home":    {resolved, resolved.Add(30 * time.Minute)},
				"demobilisation":      {resolved, resolved.Add(8 * h)},
				"welfare_contact":     {resolved, resolved.Add(24 * h)}, // unset: default
				"defusing":            {resolved.Add(2 * d), resolved.Add(5 * d)},
				"debriefing":          {resolved.Add(7 * d), resolved.Add(14 * d)},
				"after_action_review": {resolved, resolved.Add(28 * d)},
				"checkin_day3":        {resolved.Add(3 * d), resolved.Add(3*d + 12*h)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, Options{Plan: tt.cfg, Owner: func(site, device string) string {
				if device == "btn-1" {
					return "Manager Mo"
				}
				return ""
			}})
			now := t0.Add(25 * time.Minute)
			inc, err := s.FromAlert(alertInfo("btn-1.42"), now)
			require.NoError(t, err)

			assert.Equal(t, "inc-000001", inc.ID)
			assert.Equal(t, SourceAlarm, inc.Source)
			assert.Equal(t, "btn-1.42", inc.AlertID)
			assert.True(t, inc.OccurredAt.Equal(t0))
			assert.True(t, inc.RecordedAt.Equal(now))
			assert.True(t, inc.Delivered.Equal(t0.Add(2*time.Second)))
			assert.True(t, inc.Acknowledged.Equal(t0.Add(9*time.Second)))
			assert.True(t, inc.Resolved.Equal(resolved))
			assert.Equal(t, "genuine_police_attended", inc.Outcome)
			for id, w := range tt.want {
				tk := taskByID(t, inc, id)
				assert.True(t, tk.NotBefore.Equal(w.notBefore), "%s not before %s, want %s", id, tk.NotBefore, w.notBefore)
				assert.True(t, tk.Due.Equal(w.due), "%s due %s, want %s", id, tk.Due, w.due)
				assert.Equal(t, StatusOpen, tk.Status)
				assert.Equal(t, "Manager Mo", tk.Owner)
			}
			require.Len(t, inc.History, 1)
			assert.Equal(t, "created", inc.History[0].What)

			again, err := s.FromAlert(alertInfo("btn-1.42"), now.Add(time.Hour))
			require.NoError(t, err)
			assert.Equal(t, inc.ID, again.ID)
			assert.True(t, again.RecordedAt.Equal(now), "the second call must not re-record")
			all, err := s.List(Filter{})
			require.NoError(t, err)
			assert.Len(t, all, 1)

			other, err := s.FromAlert(alertInfo("btn-1.43"), now)
			require.NoError(t, err)
			assert.Equal(t, "inc-000002", other.ID)
		})
	}
}

func TestFromAlertCheckInsExact(t *testing.T) {
	s := newStore(t, Options{Plan: PlanConfig{CheckIns: []time.Duration{3 * day}}})
	inc, err := s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	var ids []string
	for _, tk := range inc.Plan {
		ids = append(ids, tk.ID)
	}
	assert.Equal(t, []string{"made_safe", "first_aid", "psychological_first_aid", "continue_or_home",
		"demobilisation", "welfare_contact", "defusing", "debriefing", "after_action_review", "checkin_day3"}, ids)

	s = newStore(t, Options{})
	inc, err = s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	assert.Len(t, inc.Plan, 11, "the default plan: four immediate checks, five stages, two check-ins")
}

func TestFromAlertInvalid(t *testing.T) {
	s := newStore(t, Options{})
	tests := []struct {
		name  string
		edit  func(*AlertInfo)
		field string
	}{
		{"no id", func(a *AlertInfo) { a.ID = "" }, "alert id"},
		{"no site", func(a *AlertInfo) { a.Site = "" }, "site"},
		{"not resolved", func(a *AlertInfo) { a.Resolved = time.Time{} }, "resolved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := alertInfo("x.1")
			tt.edit(&a)
			_, err := s.FromAlert(a, t0)
			require.ErrorIs(t, err, ErrInvalid)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.field, fe.Field)
		})
	}
}

func TestGenuine(t *testing.T) {
	tests := []struct {
		outcome string
		want    bool
	}{
		{"false_alarm", false}, {"FALSE_ALARM", false}, {"Test", false}, {"accidental", false},
		{" cancelled ", false}, {"genuine_injury", true}, {"genuine_no_harm", true}, {"", true}, {"something_new", true},
	}
	for _, tt := range tests {
		t.Run(tt.outcome, func(t *testing.T) { assert.Equal(t, tt.want, Genuine(tt.outcome)) })
	}
}

func TestReport(t *testing.T) {
	s := newStore(t, Options{Owner: func(site, _ string) string { return "lead-" + site }})
	now := t0.Add(3 * time.Hour)

	t.Run("device report", func(t *testing.T) {
		inc, err := s.Report(ReportInput{Source: SourceDeviceReport, Key: "btn-7:91", Site: "south", Device: "btn-7",
			Wearer: "Ben", Type: KindPhysical}, now)
		require.NoError(t, err)
		assert.Equal(t, SourceDeviceReport, inc.Source)
		assert.Empty(t, inc.AlertID)
		assert.Equal(t, KindPhysical, inc.Kind())
		assert.Empty(t, inc.Type(), "two presses say physical, not which type")
		assert.True(t, inc.OccurredAt.Equal(now), "no time given: now")
		assert.True(t, taskByID(t, inc, "made_safe").NotBefore.Equal(now), "a report's plan is anchored when recorded")
		assert.Equal(t, "lead-south", taskByID(t, inc, "defusing").Owner)

		again, err := s.Report(ReportInput{Source: SourceDeviceReport, Key: "btn-7:91", Site: "south", Device: "btn-7",
			Type: KindPhysical}, now.Add(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, inc.ID, again.ID, "a replayed device report is the same incident")
	})

	t.Run("form", func(t *testing.T) {
		when := t0.Add(-2 * 24 * time.Hour)
		inc, err := s.Report(ReportInput{Source: SourceForm, Site: "south", Reporter: "Cara", Wearer: "Dev",
			Type: TypeVerbalAbuse, OccurredAt: when, Text: "shouted at on the doorstep"}, now)
		require.NoError(t, err)
		assert.True(t, inc.OccurredAt.Equal(when))
		assert.True(t, inc.RecordedAt.Equal(now))
		assert.Equal(t, TypeVerbalAbuse, inc.Type())
		assert.Equal(t, KindVerbal, inc.Kind())
		assert.Equal(t, "shouted at on the doorstep", inc.Text)
		assert.Equal(t, "Cara", inc.History[0].By)

		second, err := s.Report(ReportInput{Source: SourceForm, Site: "south", Reporter: "Cara", Type: TypeThreat}, now)
		require.NoError(t, err)
		assert.NotEqual(t, inc.ID, second.ID, "without a key, each form is its own incident")
	})

	bad := []struct {
		name  string
		in    ReportInput
		field string
	}{
		{"device without key", ReportInput{Source: SourceDeviceReport, Site: "s", Device: "b", Type: KindVerbal}, "key"},
		{"device without device", ReportInput{Source: SourceDeviceReport, Key: "b:1", Site: "s", Type: KindVerbal}, "device"},
		{"device with full type", ReportInput{Source: SourceDeviceReport, Key: "b:1", Site: "s", Device: "b", Type: TypeThreat}, "type"},
		{"form bad type", ReportInput{Source: SourceForm, Site: "s", Wearer: "w", Type: "shouting"}, "type"},
		{"form nobody", ReportInput{Source: SourceForm, Site: "s", Type: TypeThreat}, "wearer"},
		{"no site", ReportInput{Source: SourceForm, Wearer: "w", Type: TypeThreat}, "site"},
		{"bad source", ReportInput{Source: "email", Site: "s", Wearer: "w", Type: TypeThreat}, "source"},
		{"future", ReportInput{Source: SourceForm, Site: "s", Wearer: "w", Type: TypeThreat, OccurredAt: now.Add(time.Hour)}, "occurred_at"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Report(tt.in, now)
			require.ErrorIs(t, err, ErrInvalid)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.field, fe.Field)
		})
	}
}

func TestClassify(t *testing.T) {
	s := newStore(t, Options{})
	inc, err := s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	good := Classification{Type: TypePhysicalAssault, Cause: "behavioural", Setting: "patients_home", Injury: "minor",
		Police: true, CrimeRef: "CR/123/25", StaffGroup: "nursing"}

	tests := []struct {
		name   string
		edit   func(*Classification)
		fields []string // every field the error must name, with its value
		values []string
	}{
		{"type", func(c *Classification) { c.Type = "punch" }, []string{"type"}, []string{"punch"}},
		{"cause", func(c *Classification) { c.Cause = "drunk" }, []string{"cause"}, []string{"drunk"}},
		{"setting", func(c *Classification) { c.Setting = "car_park" }, []string{"setting"}, []string{"car_park"}},
		{"injury", func(c *Classification) { c.Injury = "severe" }, []string{"injury"}, []string{"severe"}},
		{"empty type", func(c *Classification) { c.Type = "" }, []string{"type"}, []string{`""`}},
		{"crime ref without police", func(c *Classification) { c.Police = false }, []string{"crime_ref"}, []string{"CR/123/25"}},
		{"several at once", func(c *Classification) { c.Cause, c.Setting = "x", "y" }, []string{"cause", "setting"}, []string{`"x"`, `"y"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			_, err := s.Classify(inc.ID, c, "Manager Mo", t0)
			require.ErrorIs(t, err, ErrInvalid)
			for i, f := range tt.fields {
				assert.Contains(t, err.Error(), "incident: "+f+" ")
				assert.Contains(t, err.Error(), tt.values[i])
			}
			got, err := s.Get(inc.ID)
			require.NoError(t, err)
			assert.Nil(t, got.Classification, "a refused classification changes nothing")
		})
	}

	at := t0.Add(24 * time.Hour)
	got, err := s.Classify(inc.ID, good, "Manager Mo", at)
	require.NoError(t, err)
	require.NotNil(t, got.Classification)
	assert.Equal(t, "Manager Mo", got.Classification.By)
	assert.True(t, got.Classification.At.Equal(at))
	assert.Equal(t, KindPhysical, got.Kind())
	last := got.History[len(got.History)-1]
	assert.Equal(t, Change{At: at, By: "Manager Mo", What: "classified", Note: TypePhysicalAssault}, last)

	_, err = s.Classify("inc-999999", good, "Mo", at)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestKindOf(t *testing.T) {
	want := map[string]string{
		TypePhysicalAssault: KindPhysical, TypeSexualAssault: KindPhysical,
		TypeVerbalAbuse: KindVerbal, TypeThreat: KindVerbal, TypeSexualHarassment: KindVerbal,
		TypeHateIncident: KindVerbal, TypeOnlineAbuse: KindVerbal, "": "", "nonsense": "",
	}
	for typ, k := range want {
		assert.Equal(t, k, KindOf(typ), typ)
	}
	assert.Len(t, Types(), 7)
	assert.Len(t, Settings(), 8)
	assert.Equal(t, []string{"behavioural", "medically_related", "unknown"}, Causes())
}

func TestConfidentialOnlyForSexualIncidents(t *testing.T) {
	s := newStore(t, Options{Owner: func(string, string) string { return "Manager Mo" }})
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			inc, err := s.Report(ReportInput{Source: SourceForm, Site: "north", Wearer: "Asha", Type: typ, Confidential: true}, t0)
			if typ == TypeSexualHarassment || typ == TypeSexualAssault {
				require.NoError(t, err)
				assert.True(t, inc.Confidential)
				assert.Equal(t, RoleIGOfficer, inc.Plan[0].Owner, "the line manager is not told")
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), "confidential")
			assert.Contains(t, err.Error(), typ)
		})
	}

	t.Run("set later, by classification", func(t *testing.T) {
		inc, err := s.FromAlert(alertInfo("a.9"), t0)
		require.NoError(t, err)
		_, err = s.SetConfidential(inc.ID, true, "Mo", t0)
		require.ErrorIs(t, err, ErrInvalid, "an unclassified alarm cannot be confidential")

		c := Classification{Type: TypeSexualAssault, Cause: "behavioural", Setting: "patients_home", Injury: "none"}
		_, err = s.Classify(inc.ID, c, "Mo", t0)
		require.NoError(t, err)
		_, err = s.CompleteTask(inc.ID, "made_safe", "Mo", "", StatusDone, t0)
		require.NoError(t, err)
		got, err := s.SetConfidential(inc.ID, true, "Iggy", t0.Add(time.Hour))
		require.NoError(t, err)
		assert.True(t, got.Confidential)
		assert.Equal(t, "Manager Mo", taskByID(t, got, "made_safe").Owner, "closed steps keep who owned them")
		assert.Equal(t, RoleIGOfficer, taskByID(t, got, "defusing").Owner)

		c.Type = TypePhysicalAssault
		_, err = s.Classify(inc.ID, c, "Mo", t0)
		require.ErrorIs(t, err, ErrInvalid, "a confidential incident keeps a type that may be confidential")
		assert.Contains(t, err.Error(), "physical_assault")
	})
}

func TestViewRedaction(t *testing.T) {
	s := newStore(t, Options{})
	inc, err := s.Report(ReportInput{Source: SourceForm, Key: "form-1", Site: "north", Device: "btn-3", Wearer: "Asha",
		Reporter: "Asha", Type: TypeSexualHarassment, Text: "comments during the visit", Confidential: true}, t0)
	require.NoError(t, err)
	inc, err = s.CompleteTask(inc.ID, "welfare_contact", "Asha", "spoke to the guardian", StatusDone, t0)
	require.NoError(t, err)
	open, err := s.Report(ReportInput{Source: SourceForm, Site: "north", Wearer: "Ben", Type: TypeSexualHarassment,
		Text: "not confidential"}, t0)
	require.NoError(t, err)

	tests := []struct {
		name     string
		inc      Incident
		viewer   Viewer
		redacted bool
	}{
		{"manager", inc, Viewer{Name: "Mo", Role: "manager"}, true},
		{"operator", inc, Viewer{Name: "Op", Role: "operator"}, true},
		{"no role", inc, Viewer{}, true},
		{"ig officer", inc, Viewer{Name: "Iggy", Role: RoleIGOfficer}, false},
		{"not confidential", open, Viewer{Role: "manager"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := View(tt.inc, tt.viewer)
			if !tt.redacted {
				assert.Equal(t, tt.inc, v)
				return
			}
			assert.Equal(t, Redacted, v.Wearer)
			assert.Equal(t, Redacted, v.Reporter)
			assert.Equal(t, Redacted, v.Device)
			assert.Equal(t, Redacted, v.Text)
			wc := taskByID(t, v, "welfare_contact")
			assert.Equal(t, Redacted, wc.Note)
			assert.Equal(t, Redacted, wc.DoneBy)
			for _, c := range v.History {
				assert.NotEqual(t, "Asha", c.By)
			}
			// What still counts for reports is kept.
			assert.Equal(t, tt.inc.ID, v.ID)
			assert.Equal(t, "north", v.Site)
			assert.Equal(t, TypeSexualHarassment, v.ReportedType)
			// The stored record and the caller's copy are untouched.
			assert.Equal(t, "Asha", tt.inc.Wearer)
			assert.Equal(t, "spoke to the guardian", taskByID(t, tt.inc, "welfare_contact").Note)
		})
	}

	t.Run("alert id names the device", func(t *testing.T) {
		a, err := s.FromAlert(alertInfo("btn-1.42"), t0)
		require.NoError(t, err)
		a, err = s.Classify(a.ID, Classification{Type: TypeSexualAssault, Cause: "unknown", Setting: "community", Injury: "none"}, "Mo", t0)
		require.NoError(t, err)
		a, err = s.SetConfidential(a.ID, true, "Iggy", t0)
		require.NoError(t, err)
		v := View(a, Viewer{Role: "manager"})
		assert.Equal(t, Redacted, v.AlertID)
		assert.NotContains(t, v.ID, "btn-1")
	})
}

func TestCompleteTask(t *testing.T) {
	s := newStore(t, Options{})
	inc, err := s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	resolved := inc.Resolved

	tests := []struct {
		name, task, by, status string
		at                     time.Time
		wantErr                error
		wantEarly              bool
	}{
		{"done", "made_safe", "Mo", StatusDone, resolved.Add(time.Minute), nil, false},
		{"not needed", "first_aid", "Mo", StatusNotNeeded, resolved.Add(time.Minute), nil, false},
		{"again", "made_safe", "Mo", StatusDone, resolved.Add(time.Hour), ErrTransition, false},
		{"bad status", "defusing", "Mo", "finished", resolved, ErrInvalid, false},
		{"reopen refused", "defusing", "Mo", StatusOpen, resolved, ErrInvalid, false},
		{"nobody", "defusing", "", StatusDone, resolved, ErrInvalid, false},
		{"unknown task", "yoga", "Mo", StatusDone, resolved, ErrNotFound, false},
		{"early defusing", "defusing", "Mo", StatusDone, resolved.Add(24 * time.Hour), nil, true},
		{"debrief in window", "debriefing", "Facilitator Fay", StatusDone, resolved.Add(8 * day), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CompleteTask(inc.ID, tt.task, tt.by, "note "+tt.name, tt.status, tt.at)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tk := taskByID(t, got, tt.task)
			assert.Equal(t, tt.status, tk.Status)
			assert.Equal(t, tt.by, tk.DoneBy)
			assert.True(t, tk.DoneAt.Equal(tt.at))
			assert.Equal(t, "note "+tt.name, tk.Note)
			assert.Equal(t, tt.wantEarly, tk.Early)
			last := got.History[len(got.History)-1]
			assert.Equal(t, "task_completed", last.What)
			assert.Equal(t, tt.task, last.Task)
			assert.Equal(t, tt.by, last.By)
			assert.Equal(t, tt.wantEarly, strings.Contains(last.Note, "before its window"))
		})
	}

	got, err := s.Get(inc.ID)
	require.NoError(t, err)
	assert.Equal(t, "note done", taskByID(t, got, "made_safe").Note, "a refused second completion changes nothing")
	assert.True(t, got.Open())
	for _, tk := range got.Plan {
		if tk.Status == StatusOpen {
			_, err := s.CompleteTask(inc.ID, tk.ID, "Mo", "", StatusDone, resolved.Add(40*day))
			require.NoError(t, err)
		}
	}
	got, err = s.Get(inc.ID)
	require.NoError(t, err)
	assert.False(t, got.Open(), "every step closed: the incident is closed")
	open, err := s.List(Filter{Open: true})
	require.NoError(t, err)
	assert.Empty(t, open)
}

func TestOverdueAndReminders(t *testing.T) {
	// The default plan: the immediate checks fall due at +1h (one is done
	// already), demobilisation at +12h, welfare contact at +24h.
	s := newStore(t, Options{Owner: func(string, string) string { return "Manager Mo" }})
	inc, err := s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	resolved := inc.Resolved
	due := resolved.Add(time.Hour)
	_, err = s.CompleteTask(inc.ID, "made_safe", "Mo", "", StatusDone, resolved)
	require.NoError(t, err)

	immediate := []string{"continue_or_home", "first_aid", "psychological_first_aid"}
	steps := []struct {
		name      string
		at        time.Time
		want      []string // task ids reminded, in order
		count     int      // OverdueCount
		markAfter bool
	}{
		{"before due", due.Add(-time.Minute), nil, 0, false},
		{"exactly at due", due, nil, 0, false},
		{"just after due", due.Add(time.Second), immediate, 3, true},
		{"reminded, an hour later", due.Add(time.Hour), nil, 3, false},
		{"demobilisation falls due", resolved.Add(12*time.Hour + time.Second), []string{"demobilisation"}, 4, true},
		{"welfare contact falls due", resolved.Add(24*time.Hour + time.Second), []string{"welfare_contact"}, 5, true},
		{"just under a day since the first reminder", due.Add(time.Second + 24*time.Hour - time.Nanosecond), nil, 5, false},
		{"a day since the first reminder", due.Add(time.Second + 24*time.Hour), immediate, 5, true},
		{"straight after", due.Add(time.Minute + 24*time.Hour), nil, 5, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			rs, err := s.Overdue(st.at)
			require.NoError(t, err)
			var ids []string
			for _, r := range rs {
				ids = append(ids, r.Task)
				assert.Equal(t, inc.ID, r.Incident)
				assert.Equal(t, "north", r.Site)
				assert.Equal(t, "Manager Mo", r.Owner)
				assert.Equal(t, "Asha Patel", r.Wearer)
				assert.Equal(t, st.at.Sub(r.Due), r.Overdue)
			}
			assert.ElementsMatch(t, st.want, ids)
			n, err := s.OverdueCount(st.at)
			require.NoError(t, err)
			assert.Equal(t, st.count, n)
			if st.markAfter {
				for _, r := range rs {
					require.NoError(t, s.MarkReminded(r.Incident, r.Task, st.at))
				}
			}
		})
	}

	got, err := s.Get(inc.ID)
	require.NoError(t, err)
	reminded := 0
	for _, c := range got.History {
		if c.What == "reminded" {
			reminded++
			assert.Equal(t, "Manager Mo", c.Note)
		}
	}
	assert.Equal(t, 3+1+1+3, reminded)
	assert.ErrorIs(t, s.MarkReminded(inc.ID, "nope", t0), ErrNotFound)
	assert.ErrorIs(t, s.MarkReminded("inc-404", "made_safe", t0), ErrNotFound)
}

func TestRemindEveryConfigured(t *testing.T) {
	s := newStore(t, Options{Plan: PlanConfig{RemindEvery: 2 * time.Hour}})
	inc, err := s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	late := inc.Resolved.Add(2 * time.Hour)
	rs, err := s.Overdue(late)
	require.NoError(t, err)
	require.Len(t, rs, 4)
	for _, r := range rs {
		require.NoError(t, s.MarkReminded(r.Incident, r.Task, late))
	}
	rs, err = s.Overdue(late.Add(2*time.Hour - time.Second))
	require.NoError(t, err)
	assert.Empty(t, rs)
	rs, err = s.Overdue(late.Add(2 * time.Hour))
	require.NoError(t, err)
	assert.Len(t, rs, 4)
}

func TestConfidentialReminderHasNoNames(t *testing.T) {
	s := newStore(t, Options{Owner: func(string, string) string { return "Manager Mo" }})
	_, err := s.Report(ReportInput{Source: SourceForm, Site: "north", Device: "btn-3", Wearer: "Asha",
		Type: TypeSexualAssault, Confidential: true}, t0)
	require.NoError(t, err)
	rs, err := s.Overdue(t0.Add(2 * time.Hour))
	require.NoError(t, err)
	require.NotEmpty(t, rs)
	for _, r := range rs {
		assert.True(t, r.Confidential)
		assert.Empty(t, r.Wearer)
		assert.Equal(t, RoleIGOfficer, r.Owner)
		assert.NotContains(t, r.Incident, "btn-3")
	}
}

func TestRemindOnceAndRun(t *testing.T) {
	s := newStore(t, Options{})
	inc, err := s.FromAlert(alertInfo("a.1"), t0)
	require.NoError(t, err)
	late := inc.Resolved.Add(2 * time.Hour)

	fail := errors.New("smtp down")
	n, err := s.RemindOnce(context.Background(), func(Reminder) error { return fail }, late)
	assert.ErrorIs(t, err, fail)
	assert.Equal(t, 0, n)
	rs, err := s.Overdue(late)
	require.NoError(t, err)
	assert.Len(t, rs, 4, "a failed send is not marked, so it is tried again")

	var mu sync.Mutex
	var got []Reminder
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- s.Run(ctx, func(r Reminder) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, r)
			if len(got) == 4 {
				close(done)
			}
			return nil
		}, time.Millisecond, func() time.Time { return late })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run sent no reminders")
	}
	// Let a few more rounds run at the same instant: nothing is re-sent.
	require.Eventually(t, func() bool {
		c, err := s.OverdueCount(late)
		return err == nil && c == 4
	}, 5*time.Second, time.Millisecond)
	cancel()
	require.NoError(t, <-errc)
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, got, 4, "each overdue step reminded once")
}

func TestListFilters(t *testing.T) {
	s := newStore(t, Options{})
	mk := func(site string, at time.Time) Incident {
		inc, err := s.Report(ReportInput{Source: SourceForm, Site: site, Wearer: "w", Type: TypeThreat, OccurredAt: at}, t0.Add(40*day))
		require.NoError(t, err)
		return inc
	}
	a := mk("north", t0)
	b := mk("south", t0.Add(day))
	c := mk("north", t0.Add(2*day))
	for _, tk := range c.Plan {
		_, err := s.CompleteTask(c.ID, tk.ID, "Mo", "", StatusDone, t0.Add(40*day))
		require.NoError(t, err)
	}
	tests := []struct {
		name string
		f    Filter
		want []string
	}{
		{"all, newest first", Filter{}, []string{c.ID, b.ID, a.ID}},
		{"site", Filter{Site: "north"}, []string{c.ID, a.ID}},
		{"from inclusive", Filter{From: t0.Add(day)}, []string{c.ID, b.ID}},
		{"to exclusive", Filter{To: t0.Add(day)}, []string{a.ID}},
		{"open", Filter{Open: true}, []string{b.ID, a.ID}},
		{"none", Filter{Site: "east"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.List(tt.f)
			require.NoError(t, err)
			ids := []string{}
			for _, inc := range got {
				ids = append(ids, inc.ID)
			}
			assert.Equal(t, tt.want, ids)
		})
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	s, err := New(db, Options{})
	require.NoError(t, err)
	inc, err := s.FromAlert(alertInfo("btn-1.42"), t0)
	require.NoError(t, err)
	inc, err = s.Classify(inc.ID, Classification{Type: TypeVerbalAbuse, Cause: "behavioural", Setting: "patients_home", Injury: "none"}, "Mo", t0.Add(time.Hour))
	require.NoError(t, err)
	inc, err = s.CompleteTask(inc.ID, "made_safe", "Mo", "safe in the car", StatusDone, t0.Add(time.Hour))
	require.NoError(t, err)
	require.NoError(t, s.MarkReminded(inc.ID, "first_aid", t0.Add(2*time.Hour)))
	inc, err = s.Get(inc.ID)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	db = openDB(t, path)
	defer db.Close()
	s, err = New(db, Options{})
	require.NoError(t, err)
	got, err := s.Get(inc.ID)
	require.NoError(t, err)
	assert.Equal(t, jsonRoundTrip(t, inc), jsonRoundTrip(t, got))
	assert.Len(t, got.History, 4) // created, classified, task_completed, reminded

	again, err := s.FromAlert(alertInfo("btn-1.42"), t0.Add(day))
	require.NoError(t, err)
	assert.Equal(t, inc.ID, again.ID, "idempotence survives a restart")
	next, err := s.Report(ReportInput{Source: SourceForm, Site: "north", Wearer: "w", Type: TypeThreat}, t0.Add(day))
	require.NoError(t, err)
	assert.Equal(t, "inc-000002", next.ID, "ids keep counting after a restart")
}

func TestSafetyCross(t *testing.T) {
	loc := time.FixedZone("BST", 3600)
	from := time.Date(2025, 6, 2, 9, 0, 0, 0, loc)
	inc := func(at time.Time, reported string, c *Classification) Incident {
		return Incident{OccurredAt: at, ReportedType: reported, Classification: c}
	}
	incs := []Incident{
		inc(from.Add(time.Hour), KindVerbal, nil), // day 0: yellow
		inc(from.Add(day), TypeThreat, nil),       // day 1: yellow then red
		inc(from.Add(day+time.Hour), "", &Classification{Type: TypeSexualAssault}),
		inc(time.Date(2025, 6, 4, 23, 30, 0, 0, time.UTC), "", nil), // 00:30 BST on day 3: unclassified alarm counts
		inc(from.Add(-day), KindPhysical, nil),                      // before the range
	}
	got := SafetyCross(incs, from, 5)
	var colours []string
	var counts []int
	for _, d := range got {
		colours = append(colours, d.Colour)
		counts = append(counts, d.Count)
	}
	assert.Equal(t, []string{Yellow, Red, Green, Yellow, Green}, colours)
	assert.Equal(t, []int{1, 2, 0, 1, 0}, counts)
	assert.True(t, got[0].Date.Equal(time.Date(2025, 6, 2, 0, 0, 0, 0, loc)))
}

func jsonRoundTrip(t *testing.T, inc Incident) string {
	t.Helper()
	raw, err := json.Marshal(inc)
	require.NoError(t, err)
	return string(raw)
}

func TestReportRefusesOverlongText(t *testing.T) {
	s := newStore(t, Options{})
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	_, err := s.Report(ReportInput{Source: SourceForm, Site: "leeds", Wearer: "Nurse A", Type: TypeThreat,
		Text: strings.Repeat("x", MaxText+1), Place: strings.Repeat("y", MaxPlace+1)}, now)
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "text")
	assert.Contains(t, err.Error(), "place")
	inc, err := s.Report(ReportInput{Source: SourceForm, Site: "leeds", Wearer: "Nurse A", Type: TypeThreat, Place: "Ward 7"}, now)
	require.NoError(t, err)
	assert.Equal(t, "Ward 7", inc.Place)
}

func TestClassificationFreeTextBounded(t *testing.T) {
	c := Classification{Type: TypeThreat, Cause: "unknown", Setting: "ward", Injury: "none", Police: true,
		CrimeRef: strings.Repeat("9", MaxField+1), StaffGroup: "nurse\x00"}
	err := c.Validate()
	require.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "crime_ref")
	assert.Contains(t, err.Error(), "staff_group")
	c.CrimeRef, c.StaffGroup = "WY-2026-123", "nursing"
	require.NoError(t, c.Validate())
}
