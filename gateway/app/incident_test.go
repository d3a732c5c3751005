package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/incident"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/governance/access"
)

// journalEvent journals one device event as the transports would and waits
// for it to commit.
func journalEvent(t *testing.T, a *App, dev *registry.Device, ev devices.Event) journal.Outcome {
	t.Helper()
	ev.V, ev.Device = devices.Version, dev.ID
	if ev.ID == "" {
		ev.ID = fmt.Sprintf("ev-%d", ev.Seq)
	}
	if ev.TS.IsZero() {
		ev.TS = time.Now().Add(-time.Second)
	}
	rec := journal.Record{Site: dev.Site, Event: ev, Received: time.Now(), Source: "mqtt", Registered: dev}
	type res struct {
		o   journal.Outcome
		err error
	}
	ch := make(chan res, 1)
	a.journal.Submit(context.Background(), rec, func(o journal.Outcome, err error) { ch <- res{o, err} })
	got := <-ch
	require.NoError(t, got.err)
	return got.o
}

func decodeAs[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	return v
}

func TestIncidentFromGenuineAlarmAndDeviceReport(t *testing.T) {
	cfg := DefaultConfig()
	cfg.State, cfg.HTTP, cfg.Broker.Listen = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Site = "leeds"
	cfg.Incidents.LineManagers = map[string]string{"btn-1": "Sam Lead", "leeds": "Ward Manager"}
	a, err := New(cfg, nil)
	require.NoError(t, err)
	runApp(t, a)

	sup := addUser(t, a.accounts, "Sam Lead", access.Supervisor, "", "")
	op := addUser(t, a.accounts, "Operator 7", access.Operator, "", "")
	ig := addUser(t, a.accounts, "IG", access.IGOfficer, "", "")
	nurse := addUser(t, a.accounts, "Nurse A", access.Wearer, "Nurse A", "")
	other := addUser(t, a.accounts, "Nurse B", access.Wearer, "Nurse B", "")
	btn1 := &registry.Device{ID: "btn-1", Kind: registry.KindButton, Site: "leeds", Wearer: "Nurse A"}
	btn2 := &registry.Device{ID: "btn-2", Kind: registry.KindButton, Site: "leeds", Wearer: "Nurse C"}

	// A false alarm makes no incident; a genuine one does, with its plan
	// owned by the device's line manager and anchored at the resolution.
	journalEvent(t, a, btn2, devices.Event{Seq: 1, Type: devices.TypeDuress})
	code, body := call(t, a, "POST", "/api/alerts/btn-2.1/resolve", op, `{"outcome":"false_alarm"}`)
	require.Equal(t, http.StatusOK, code, body)
	journalEvent(t, a, btn1, devices.Event{Seq: 1, Type: devices.TypeDuress, Place: "Flat 3, stairwell"})
	code, body = call(t, a, "POST", "/api/alerts/btn-1.1/resolve", op, `{"outcome":"genuine_injury","note":"ambulance called"}`)
	require.Equal(t, http.StatusOK, code, body)

	code, body = call(t, a, "GET", "/api/incidents", sup, "")
	require.Equal(t, http.StatusOK, code, body)
	list := decodeAs[struct{ Incidents []incident.Incident }](t, body).Incidents
	require.Len(t, list, 1, "only the genuine alarm became an incident")
	inc := list[0]
	assert.Equal(t, "btn-1.1", inc.AlertID)
	assert.Equal(t, incident.SourceAlarm, inc.Source)
	assert.Equal(t, "Nurse A", inc.Wearer)
	assert.Equal(t, "Flat 3, stairwell", inc.Place)
	assert.Equal(t, "genuine_injury", inc.Outcome)
	require.NotEmpty(t, inc.Plan)
	for _, task := range inc.Plan {
		assert.Equal(t, "Sam Lead", task.Owner, "the device's line manager wins over the site's")
	}
	defusing := planTask(t, inc, incident.TaskDefusing)
	assert.Equal(t, inc.Resolved.Add(3*24*time.Hour), defusing.NotBefore)
	assert.Equal(t, inc.Resolved.Add(10*24*time.Hour), defusing.Due)

	// The incident view carries the alert's timeline.
	code, body = call(t, a, "GET", "/api/incidents/"+inc.ID, sup, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"ambulance called"`)
	assert.Contains(t, body, `"acknowledged_by": "Operator 7"`)

	// Operators report and act on alerts but do not run support plans.
	code, _ = call(t, a, "GET", "/api/incidents", op, "")
	assert.Equal(t, http.StatusForbidden, code)
	code, _ = call(t, a, "POST", "/api/incidents/"+inc.ID+"/classification", op, `{}`)
	assert.Equal(t, http.StatusForbidden, code)

	// Classification: every bad field named at once, then a good one.
	code, body = call(t, a, "POST", "/api/incidents/"+inc.ID+"/classification", sup, `{"type":"punch","cause":"x","setting":"ward","injury":"minor"}`)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, `type \"punch\"`)
	assert.Contains(t, body, `cause \"x\"`)
	code, body = call(t, a, "POST", "/api/incidents/"+inc.ID+"/classification", sup,
		`{"type":"physical_assault","cause":"behavioural","setting":"patients_home","injury":"minor","police":true,"crime_ref":"WY-123"}`)
	require.Equal(t, http.StatusOK, code, body)
	code, body = call(t, a, "POST", "/api/incidents/"+inc.ID+"/tasks/welfare_contact", sup, `{"status":"done","note":"phoned"}`)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "Sam Lead", planTask(t, decodeAs[incident.Incident](t, body), incident.TaskWelfareContact).DoneBy)
	code, _ = call(t, a, "POST", "/api/incidents/"+inc.ID+"/tasks/welfare_contact", sup, `{"status":"done"}`)
	assert.Equal(t, http.StatusConflict, code, "a completed step is not completed again")
	code, _ = call(t, a, "POST", "/api/incidents/"+inc.ID+"/tasks/nope", sup, `{"status":"done"}`)
	assert.Equal(t, http.StatusNotFound, code)

	// The wearer's two presses: an incident with no alarm, once per seq.
	require.Equal(t, journal.Appended, journalEvent(t, a, btn1, devices.Event{ID: "r1", Seq: 2, Type: devices.TypeReport, Kind: devices.ReportVerbal}))
	require.Equal(t, journal.Duplicate, journalEvent(t, a, btn1, devices.Event{ID: "r1", Seq: 2, Type: devices.TypeReport, Kind: devices.ReportVerbal}))
	code, body = call(t, a, "GET", "/api/incidents", sup, "")
	require.Equal(t, http.StatusOK, code, body)
	list = decodeAs[struct{ Incidents []incident.Incident }](t, body).Incidents
	require.Len(t, list, 2)
	var reported incident.Incident
	for _, i := range list {
		if i.Source == incident.SourceDeviceReport {
			reported = i
		}
	}
	assert.Equal(t, "verbal", reported.ReportedType)
	assert.Equal(t, "Nurse A", reported.Wearer)
	code, body = call(t, a, "GET", "/api/alerts", sup, "")
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, body, `"btn-1.2"`, "a report raises no alert")

	// The quick form: a wearer reports for themselves, confidentially; only
	// the IG officer sees who.
	code, body = call(t, a, "POST", "/api/incidents", nurse,
		`{"type":"sexual_harassment","site":"leeds","wearer":"Somebody Else","text":"comments during the visit","confidential":true,"key":"k1"}`)
	require.Equal(t, http.StatusCreated, code, body)
	conf := decodeAs[incident.Incident](t, body)
	code, body = call(t, a, "POST", "/api/incidents", nurse,
		`{"type":"sexual_harassment","site":"leeds","text":"comments during the visit","confidential":true,"key":"k1"}`)
	require.Equal(t, http.StatusCreated, code, body)
	assert.Equal(t, conf.ID, decodeAs[incident.Incident](t, body).ID, "a double submit records one incident")
	code, body = call(t, a, "GET", "/api/incidents/"+conf.ID, sup, "")
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, body, "Nurse A")
	assert.NotContains(t, body, "comments during the visit")
	assert.Contains(t, body, incident.Redacted)
	for _, task := range decodeAs[incident.Incident](t, body).Plan {
		assert.Equal(t, incident.RoleIGOfficer, task.Owner, "the line manager does not own a confidential plan")
	}
	code, body = call(t, a, "GET", "/api/incidents/"+conf.ID, ig, "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"wearer": "Nurse A"`, "the form's wearer is the wearer user's own")
	code, _ = call(t, a, "POST", "/api/incidents", op, `{"type":"threat","site":"leeds","wearer":"Nurse A","confidential":true}`)
	assert.Equal(t, http.StatusBadRequest, code, "only sexual harassment or assault may be confidential")

	// Wearers see only their own incidents; another's is not found.
	code, body = call(t, a, "GET", "/api/incidents", other, "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, decodeAs[struct{ Incidents []incident.Incident }](t, body).Incidents)
	code, _ = call(t, a, "GET", "/api/incidents/"+inc.ID, other, "")
	assert.Equal(t, http.StatusNotFound, code)
	code, body = call(t, a, "GET", "/api/incidents", nurse, "")
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, decodeAs[struct{ Incidents []incident.Incident }](t, body).Incidents, 3)

	// The monthly report: anonymised by default, the incidents in it.
	month := time.Now().In(a.reportOptions.Location).Format("2006-01")
	code, body = call(t, a, "GET", "/api/reports/monthly?month="+month+"&format=html", sup, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "<svg")
	assert.NotContains(t, body, "Nurse A")
	code, body = call(t, a, "GET", "/api/reports/monthly?month="+month+"&format=csv&named=1", sup, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "Nurse A", "a named report names the wearer of a non-confidential incident")
	code, _ = call(t, a, "GET", "/api/reports/monthly?month=2026-13", sup, "")
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = call(t, a, "GET", "/api/reports/monthly", op, "")
	assert.Equal(t, http.StatusForbidden, code)

	// Overdue steps: one P2 system alert per step, naming nobody for a
	// confidential incident; reminded once per period.
	later := time.Now().Add(30 * 24 * time.Hour)
	sent, err := a.incidents.RemindOnce(context.Background(), a.remind, later)
	require.NoError(t, err)
	assert.Positive(t, sent)
	again, err := a.incidents.RemindOnce(context.Background(), a.remind, later.Add(time.Hour))
	require.NoError(t, err)
	assert.Zero(t, again, "not reminded again within remind_every")
	code, body = call(t, a, "GET", "/api/alerts?limit=1000", sup, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, sent, strings.Count(body, `"event": "support_overdue"`))
	for l := range strings.Lines(body) {
		if strings.Contains(l, `"text": "Support overdue: `+conf.ID) {
			assert.NotContains(t, l, "Nurse A", "a confidential incident's reminder names nobody")
		}
	}
}

func planTask(t *testing.T, inc incident.Incident, id string) incident.Task {
	t.Helper()
	for _, task := range inc.Plan {
		if task.ID == id {
			return task
		}
	}
	t.Fatalf("%s has no task %s", inc.ID, id)
	return incident.Task{}
}

func TestIncidentsConfigValidation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Incidents.Plan.Defusing = []time.Duration{240 * time.Hour, 72 * time.Hour}
	cfg.Incidents.LineManagers = map[string]string{"bad key!": "x"}
	err := cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "plan.defusing")
	assert.Contains(t, err.Error(), "line_managers")
}
