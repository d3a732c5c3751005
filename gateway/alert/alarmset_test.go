package alert

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/timer"
)

// tick advances the clock and fires the timers that fall due.
func (r *rig) tick(t *testing.T, d time.Duration) {
	t.Helper()
	r.now = r.now.Add(d)
	w, err := timer.NewWheel(r.db, r.eng.Fire, func() time.Time { return r.now }, nil)
	require.NoError(t, err)
	_, _, err = w.FireDue()
	require.NoError(t, err)
	r.drain(t)
}

func (r *rig) byEvent(t *testing.T, event string) []View {
	t.Helper()
	list, err := r.eng.List(0)
	require.NoError(t, err)
	var out []View
	for _, v := range list {
		if v.Event == event {
			out = append(out, v)
		}
	}
	return out
}

func (r *rig) amber(typ devices.Type, seq uint64, dur time.Duration, note string) {
	ev := r.event(typ, seq, true)
	ev.Event.DurationS, ev.Event.Note = int(dur/time.Second), note
	r.pending = append(r.pending, ev)
}

func (r *rig) flush(t *testing.T) {
	for _, ev := range r.pending {
		r.submit(t, ev)
	}
	r.pending = nil
	r.drain(t)
}

func TestAmberRunsOutPrealertsThenRaisesFailedToCheckIn(t *testing.T) {
	r := newRig(t)
	r.amber(devices.TypeAmberStart, 1, 30*time.Minute, "visit at 12 Park Rd, known aggressive dog")
	r.flush(t)

	r.tick(t, 29*time.Minute)
	assert.Empty(t, r.commands(devices.CmdAmberPrealert), "not yet")
	r.tick(t, time.Minute)
	require.Len(t, r.commands(devices.CmdAmberPrealert), 1, "the wearer is asked to check in first")
	assert.Empty(t, r.byEvent(t, EventAmberOverrun), "no alarm during the grace period")

	r.tick(t, 119*time.Second)
	assert.Empty(t, r.byEvent(t, EventAmberOverrun))
	r.tick(t, time.Second)
	al := r.byEvent(t, EventAmberOverrun)
	require.Len(t, al, 1)
	a := al[0]
	assert.Equal(t, P1, a.Priority)
	assert.Equal(t, "visit at 12 Park Rd, known aggressive dog", a.Note)
	assert.Contains(t, a.Text, "FAILED TO CHECK IN Nurse A")
	require.NotNil(t, a.Location, "the last known location goes with it")
	assert.InDelta(t, 53.8, a.Location.Lat, 1e-9)
	var arcMsg *forward.Message
	for _, m := range r.arc.msgs {
		if m.Event == EventAmberOverrun {
			arcMsg = &m
		}
	}
	require.NotNil(t, arcMsg, "a failed check-in goes to the ARC (ADM-CID 102)")

	r.tick(t, time.Hour)
	assert.Len(t, r.byEvent(t, EventAmberOverrun), 1, "fired once")

	// The wearer checks in late: the alert stays open with a note.
	r.submit(t, r.event(devices.TypeAmberCheckin, 2, true))
	v, err := r.eng.Get(a.ID)
	require.NoError(t, err)
	assert.True(t, v.Open())
	assert.Contains(t, v.Notes[len(v.Notes)-1].Text, "wearer checked in")
	s, err := r.eng.AmberSessions()
	require.NoError(t, err)
	assert.Empty(t, s)
}

func TestAmberCheckinAndExtend(t *testing.T) {
	r := newRig(t)
	r.amber(devices.TypeAmberStart, 1, 10*time.Minute, "visit")
	r.flush(t)
	r.tick(t, 9*time.Minute)
	r.amber(devices.TypeAmberExtend, 2, 20*time.Minute, "")
	r.flush(t)
	r.tick(t, 19*time.Minute)
	assert.Empty(t, r.commands(devices.CmdAmberPrealert), "extended from now")
	s, err := r.eng.AmberSessions()
	require.NoError(t, err)
	require.Len(t, s, 1)
	assert.Equal(t, "visit", s[0].Note, "the note survives an extension")
	r.submit(t, r.event(devices.TypeAmberCheckin, 3, true))
	r.tick(t, 24*time.Hour)
	assert.Empty(t, r.commands(devices.CmdAmberPrealert))
	assert.Empty(t, r.byEvent(t, EventAmberOverrun))
}

func TestManDownIsP1ToTheARC(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeManDown, 5, true))
	r.drain(t)
	al := r.byEvent(t, string(devices.TypeManDown))
	require.Len(t, al, 1)
	assert.Equal(t, P1, al[0].Priority)
	require.Len(t, r.arc.msgs, 1)
	assert.Equal(t, "man_down", r.arc.msgs[0].Event)
	assert.Len(t, r.commands(devices.CmdAlertReceived), 1)
}

func TestCovertDuressIsSilentAndNeverACancel(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	r.drain(t)
	before := len(r.commands(devices.CmdAlertReceived))
	cancel := r.event(devices.TypeDuressCancel, 2, true)
	cancel.Event.Covert = true
	r.submit(t, cancel)
	r.drain(t)

	d, err := r.eng.Get("btn-1.1")
	require.NoError(t, err)
	assert.True(t, d.CancelledAt.IsZero(), "the duress never shows as cancelled")
	for _, m := range r.arc.msgs {
		assert.NotEqual(t, forward.KindRestore, m.Kind, "no restore reaches the ARC")
	}
	cov := r.byEvent(t, EventCovertDuress)
	require.Len(t, cov, 1)
	assert.Equal(t, P1, cov[0].Priority)
	assert.Equal(t, "duress_covert", r.arc.msgs[len(r.arc.msgs)-1].Event, "ADM-CID 122 to the ARC")
	assert.Len(t, r.commands(devices.CmdAlertReceived), before, "nothing the attacker could notice")
}

func TestOfflineRaisesP3ToSupervisorsAndClearsOnReturn(t *testing.T) {
	r := newRig(t)
	hb := r.event(devices.TypeHeartbeat, 1, true)
	hb.Event.IntervalS = 30
	r.submit(t, hb)
	r.tick(t, 89*time.Second)
	assert.Empty(t, r.byEvent(t, EventOffline))
	r.tick(t, time.Second)
	off := r.byEvent(t, EventOffline)
	require.Len(t, off, 1)
	assert.Equal(t, P3, off[0].Priority)
	assert.Equal(t, []string{"webhook0"}, off[0].Routes, "supervisors, not the ARC")
	assert.Empty(t, r.arc.msgs)
	r.tick(t, time.Hour)
	assert.Len(t, r.byEvent(t, EventOffline), 1, "one alert per silence")

	r.submit(t, r.event(devices.TypeHeartbeat, 2, true))
	r.drain(t)
	v, err := r.eng.Get(off[0].ID)
	require.NoError(t, err)
	assert.Equal(t, Resolved, v.State, "cleared automatically")
	assert.Equal(t, OutcomeBackOnline, v.Outcome)
	last := r.hook.msgs[len(r.hook.msgs)-1]
	assert.Equal(t, forward.KindRestore, last.Kind)
	assert.Equal(t, off[0].ID, last.AlertID)
}

func TestLowBatteryGroupedPerSite(t *testing.T) {
	r := newRig(t)
	low := func(device string, seq uint64, pct int) {
		ev := r.event(devices.TypeBattery, seq, true)
		ev.Event.Device, ev.Event.Battery = device, &pct
		reg := *r.nurse
		reg.ID = device
		ev.Registered = &reg
		r.submit(t, ev)
		r.drain(t)
	}
	low("btn-1", 1, 15)
	low("btn-1", 2, 14) // already reported
	low("btn-2", 1, 10) // same site within the window: grouped
	al := r.byEvent(t, EventLowBattery)
	require.Len(t, al, 1)
	assert.Equal(t, P4, al[0].Priority)
	assert.Equal(t, []string{"btn-1", "btn-2"}, al[0].Devices)
	assert.Len(t, r.hook.msgs, 1, "one notification")

	r.now = r.now.Add(16 * time.Minute)
	low("btn-3", 1, 5)
	assert.Len(t, r.byEvent(t, EventLowBattery), 2, "a new notification after the window")
	assert.Len(t, r.hook.msgs, 2)

	low("btn-1", 3, 90) // charged
	r.now = r.now.Add(16 * time.Minute)
	low("btn-1", 4, 12) // low again: reported again
	assert.Len(t, r.byEvent(t, EventLowBattery), 3)
}

func TestRoutingByPriority(t *testing.T) {
	routes := Routes{ARC: []string{"arc0", "arc1"}, Webhooks: []string{"webhook0", "webhook1"}}
	assert.Equal(t, []string{"arc0", "webhook0", "webhook1"}, routes.forPriority(P1, true))
	assert.Equal(t, []string{"webhook0", "webhook1"}, routes.forPriority(P1, false), "unverified: never the ARC")
	assert.Equal(t, []string{"webhook0", "webhook1"}, routes.forPriority(P3, true))
	routes.ByPriority = map[int][]string{P3: {"arc0", "webhook1"}, P4: {}}
	assert.Equal(t, []string{"arc0", "webhook1"}, routes.forPriority(P3, true), "configured: offline to the ARC too")
	assert.Empty(t, routes.forPriority(P4, true), "configured: nowhere but the console")
}
