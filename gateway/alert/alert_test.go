package alert

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
	"github.com/vigil-gw/vigil/gateway/forward"
	"github.com/vigil-gw/vigil/gateway/journal"
	"github.com/vigil-gw/vigil/gateway/outbox"
)

type recorder struct {
	mu   sync.Mutex
	msgs []forward.Message
}

func (r *recorder) Send(_ context.Context, m forward.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	return nil
}

type rig struct {
	db      *bolt.DB
	eng     *Engine
	j       *journal.Journal
	d       *outbox.Dispatcher
	arc     *recorder
	hook    *recorder
	wearer  *recorder
	footage *recorder
	now     time.Time
	nurse   *registry.Device
	pending []journal.Record
}

func newRig(t *testing.T) *rig {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	r := &rig{db: db, arc: &recorder{}, hook: &recorder{}, wearer: &recorder{}, footage: &recorder{}, now: time.Date(2026, 11, 21, 10, 15, 31, 0, time.UTC),
		nurse: &registry.Device{ID: "btn-1", Kind: registry.KindButton, Site: "leeds", Wearer: "Nurse A", Zone: 7, Camera: "cam-1"}}
	clock := func() time.Time { return r.now }
	r.eng, err = New(db, Routes{ARC: []string{"arc0"}, Webhooks: []string{"webhook0"}, Wearer: "wearer", Evidence: "evidence"}, Options{Now: clock})
	require.NoError(t, err)
	r.j, err = journal.New(db, journal.Options{Apply: r.eng.Apply})
	require.NoError(t, err)
	r.d, err = outbox.NewDispatcher(db, []outbox.Route{
		{Name: "arc0", Sender: r.arc}, {Name: "webhook0", Sender: r.hook}, {Name: "wearer", Sender: r.wearer}, {Name: "evidence", Sender: r.footage},
	}, outbox.Hooks{Delivered: r.eng.Delivered}, outbox.Options{Now: clock})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.j.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *rig) submit(t *testing.T, rec journal.Record) journal.Outcome {
	t.Helper()
	type res struct {
		o   journal.Outcome
		err error
	}
	ch := make(chan res, 1)
	r.j.Submit(context.Background(), rec, func(o journal.Outcome, err error) { ch <- res{o, err} })
	got := <-ch
	require.NoError(t, got.err)
	return got.o
}

func (r *rig) event(typ devices.Type, seq uint64, registered bool) journal.Record {
	rec := journal.Record{Site: "leeds", Received: r.now, Source: "mqtt", Event: devices.Event{V: 1, ID: "ev-" + string(typ) + "-" + time.Duration(seq).String(),
		Device: "btn-1", Seq: seq, Type: typ, TS: r.now.Add(-time.Second), Loc: &devices.Location{Lat: 53.8, Lon: -1.55, AccM: 8}}}
	if registered {
		rec.Registered = r.nurse
	}
	return rec
}

// commands returns the device commands of one kind that were sent.
func (r *rig) commands(cmd string) []forward.Message {
	r.wearer.mu.Lock()
	defer r.wearer.mu.Unlock()
	var out []forward.Message
	for _, m := range r.wearer.msgs {
		if m.Event == cmd {
			out = append(out, m)
		}
	}
	return out
}

func (r *rig) drain(t *testing.T) {
	t.Helper()
	for range 10 {
		for _, route := range []string{"arc0", "webhook0", "wearer", "evidence"} {
			r.d.Step(context.Background(), route)
		}
	}
}

func TestVerifiedDuressGoesToARCAndWebhookThenWearerHearsBack(t *testing.T) {
	r := newRig(t)
	assert.Equal(t, journal.Appended, r.submit(t, r.event(devices.TypeDuress, 42, true)))

	v, err := r.eng.Get("btn-1.42")
	require.NoError(t, err)
	assert.Equal(t, Raised, v.State)
	assert.True(t, v.Verified)
	assert.Equal(t, "Nurse A", v.Wearer)
	assert.Equal(t, 7, v.Zone)
	assert.Equal(t, P1, v.Priority)
	assert.Equal(t, []string{"arc0", "webhook0"}, v.Routes)
	assert.Equal(t, r.now, v.RaisedAt)
	assert.Equal(t, r.now, v.ReceivedAt, "when the gateway took the event off its transport")
	assert.Equal(t, r.now.Add(-time.Second), v.EventTime)
	require.Len(t, v.Deliveries, 4)
	assert.Equal(t, "cam-1", v.CameraCommanded, "the paired camera is told at once")
	assert.Equal(t, "evidence", v.Deliveries[3].Route, "the camera's footage is claimed as evidence at once")
	assert.Equal(t, "wearer", v.Deliveries[2].Route)
	assert.Equal(t, devices.CmdStartRecording, v.Deliveries[2].Msg.Event)
	assert.Equal(t, "cam-1", v.Deliveries[2].Msg.Device)

	r.now = r.now.Add(20 * time.Millisecond)
	r.drain(t)
	require.Len(t, r.arc.msgs, 1)
	m := r.arc.msgs[0]
	assert.Equal(t, "btn-1:42", m.Key)
	assert.Equal(t, forward.KindAlarm, m.Kind)
	assert.Equal(t, 7, m.Zone)
	require.NotNil(t, m.Location)
	require.Len(t, r.hook.msgs, 1)
	told := r.commands(devices.CmdAlertReceived)
	require.Len(t, told, 1, "the wearer is told once")
	assert.Equal(t, "btn-1.42", told[0].AlertID)
	assert.Equal(t, "btn-1", told[0].Device)

	v, err = r.eng.Get("btn-1.42")
	require.NoError(t, err)
	assert.Equal(t, Delivered, v.State)
	assert.Equal(t, r.now, v.DeliveredAt)
	assert.Equal(t, "arc0", v.DeliveredVia)
	assert.True(t, v.Feedback)
}

func TestUnverifiedDuressNeverReachesARC(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 5, false))
	r.drain(t)
	assert.Empty(t, r.arc.msgs)
	require.Len(t, r.hook.msgs, 1)
	assert.False(t, r.hook.msgs[0].Verified)
	assert.Contains(t, r.hook.msgs[0].Text, "UNVERIFIED")
	v, err := r.eng.Get("btn-1.5")
	require.NoError(t, err)
	assert.False(t, v.Verified)
	assert.Contains(t, v.Warnings, "device is not registered")
	assert.Len(t, r.commands(devices.CmdAlertReceived), 1, "with no ARC route, the first delivery confirms to the wearer")
	assert.Empty(t, r.commands(devices.CmdStartRecording), "an unknown device has no paired camera")
}

func TestDuplicateAndSeqConflict(t *testing.T) {
	r := newRig(t)
	ev := r.event(devices.TypeDuress, 9, true)
	assert.Equal(t, journal.Appended, r.submit(t, ev))
	assert.Equal(t, journal.Duplicate, r.submit(t, ev), "a redelivery is dropped")
	reused := ev
	reused.Event.ID = "other-id"
	assert.Equal(t, journal.Conflict, r.submit(t, reused), "a reused seq with a new id is still raised")
	list, err := r.eng.List(0)
	require.NoError(t, err)
	require.Len(t, list, 2)
	hb := r.event(devices.TypeHeartbeat, 9, true)
	hb.Event.ID = "hb"
	assert.Equal(t, journal.Conflict, r.submit(t, hb))
	q, err := r.j.Quarantined(10)
	require.NoError(t, err)
	require.Len(t, q, 1, "a non-urgent seq conflict is quarantined")
	assert.Equal(t, "seq", q[0].Reason)
}

func TestCancelSendsRestoreButLeavesAlertOpen(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	r.drain(t)
	r.submit(t, r.event(devices.TypeDuressCancel, 2, true))
	r.drain(t)
	require.Len(t, r.arc.msgs, 2)
	assert.Equal(t, forward.KindRestore, r.arc.msgs[1].Kind)
	assert.Equal(t, "btn-1:2", r.arc.msgs[1].Key)
	assert.Equal(t, "btn-1.1", r.arc.msgs[1].AlertID)
	v, err := r.eng.Get("btn-1.1")
	require.NoError(t, err)
	assert.False(t, v.CancelledAt.IsZero())
	assert.True(t, v.Open(), "a cancel may be coerced: a person resolves the alert")
}

func TestAcknowledgeAndResolve(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	_, err := r.eng.Acknowledge("btn-1.1", "", "")
	require.ErrorIs(t, err, ErrTransition)
	_, err = r.eng.Acknowledge("nope", "op", "")
	require.ErrorIs(t, err, ErrNotFound)

	r.now = r.now.Add(3 * time.Second)
	a, err := r.eng.Acknowledge("btn-1.1", "Operator 7", "calling the wearer")
	require.NoError(t, err)
	assert.Equal(t, Acknowledged, a.State)
	assert.Equal(t, r.now, a.AcknowledgedAt)
	_, err = r.eng.Acknowledge("btn-1.1", "Operator 7", "")
	require.ErrorIs(t, err, ErrTransition)

	_, err = r.eng.Resolve("btn-1.1", "Operator 7", "", "")
	require.ErrorIs(t, err, ErrInvalid, "an outcome is required")
	_, err = r.eng.Resolve("btn-1.1", "Operator 7", "all good", "")
	require.ErrorIs(t, err, ErrInvalid, "only the defined outcomes")
	r.now = r.now.Add(time.Minute)
	a, err = r.eng.Resolve("btn-1.1", "Operator 7", "genuine_police_attended", "wearer safe")
	require.NoError(t, err)
	assert.Equal(t, Resolved, a.State)
	assert.Equal(t, r.now, a.ResolvedAt)
	_, err = r.eng.Resolve("btn-1.1", "Operator 7", "test", "")
	require.ErrorIs(t, err, ErrTransition)
	// A late delivery after resolution records the time but keeps the state.
	r.drain(t)
	v, err := r.eng.Get("btn-1.1")
	require.NoError(t, err)
	assert.Equal(t, Resolved, v.State)
	assert.False(t, v.DeliveredAt.IsZero())
}

func TestListPutsUndeliveredFirst(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	r.drain(t) // delivered
	r.now = r.now.Add(time.Second)
	r.submit(t, r.event(devices.TypeDuress, 2, true)) // newer, undelivered
	r.now = r.now.Add(time.Second)
	_, err := r.eng.RaiseSystem("arc_link_down", "leeds", "ARC arc0 stopped answering")
	require.NoError(t, err)
	list, err := r.eng.List(0)
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, "btn-1.2", list[0].ID, "undelivered P1 first")
	assert.Equal(t, "arc_link_down", list[1].Event, "undelivered P2 next")
	assert.Equal(t, "btn-1.1", list[2].ID)
	c, err := r.eng.Count()
	require.NoError(t, err)
	assert.Equal(t, Counts{Open: 3, Undelivered: 2}, c)
}

func TestDeviceStatusTracksLatest(t *testing.T) {
	r := newRig(t)
	bat := 40
	ev := r.event(devices.TypeBattery, 3, true)
	ev.Event.Battery = &bat
	r.submit(t, ev)
	old := r.event(devices.TypeHeartbeat, 2, true)
	old.Event.TS = old.Event.TS.Add(-time.Hour)
	r.submit(t, old)
	st, err := r.eng.Status()
	require.NoError(t, err)
	require.Len(t, st, 1)
	assert.Equal(t, "battery", st[0].LastType, "an older event redelivered late does not roll status back")
	require.NotNil(t, st[0].Battery)
	assert.Equal(t, 40, *st[0].Battery)
}

// With no receiver at all, a person acknowledging the alert is what tells the
// wearer that help is coming.
func TestAcknowledgeConfirmsToWearerWhenNoReceiverDid(t *testing.T) {
	r := newRig(t)
	r.eng.SetRoutes(Routes{Wearer: "wearer"}) // no ARC, no webhook
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	r.drain(t)
	assert.Empty(t, r.commands(devices.CmdAlertReceived), "nobody has taken it yet")
	_, err := r.eng.Acknowledge("btn-1.1", "Operator 7", "")
	require.NoError(t, err)
	r.drain(t)
	require.Len(t, r.commands(devices.CmdAlertReceived), 1)
}

func TestP1WithPairedCameraOpensAndClosesAnEvidenceWindow(t *testing.T) {
	r := newRig(t)
	r.submit(t, r.event(devices.TypeDuress, 5, true))
	r.drain(t)
	r.footage.mu.Lock()
	require.Len(t, r.footage.msgs, 1)
	open := r.footage.msgs[0]
	r.footage.mu.Unlock()
	assert.Equal(t, forward.KindEvidence, open.Kind)
	assert.Equal(t, forward.EventEvidenceOpen, open.Event)
	assert.Equal(t, "cam-1", open.Device)
	assert.Equal(t, "btn-1.5", open.AlertID)
	assert.Equal(t, r.now.Add(-time.Second), open.Time, "the window is anchored at the press")
	v, err := r.eng.Get("btn-1.5")
	require.NoError(t, err)
	assert.False(t, v.DeliveredAt.IsZero())
	assert.Equal(t, "arc0", v.DeliveredVia, "the footage route never counts as delivering the alarm")

	r.now = r.now.Add(30 * time.Minute)
	_, err = r.eng.Resolve("btn-1.5", "op", "genuine_police_attended", "")
	require.NoError(t, err)
	r.drain(t)
	r.footage.mu.Lock()
	defer r.footage.mu.Unlock()
	require.Len(t, r.footage.msgs, 2)
	assert.Equal(t, forward.EventEvidenceClose, r.footage.msgs[1].Event)
	assert.Equal(t, r.now, r.footage.msgs[1].Time)

	// An unregistered device has no paired camera: no footage is claimed.
	r.submit(t, r.event(devices.TypeDuress, 6, false))
	r.drain(t)
	assert.Len(t, r.footage.msgs, 2)
}

func TestOnResolvedRunsInTheResolvingTransaction(t *testing.T) {
	r := newRig(t)
	rec := r.event(devices.TypeDuress, 1, true)
	rec.Event.Place = "Ward 7, bay 3"
	r.submit(t, rec)
	v, err := r.eng.Get("btn-1.1")
	require.NoError(t, err)
	assert.Equal(t, "Ward 7, bay 3", v.Place, "the on-site place travels with the alert")

	// A failing hook rolls the resolution back: the incident and the
	// resolution commit together or not at all.
	r.eng.opts.OnResolved = func(*bolt.Tx, Alert) error { return errors.New("disk full") }
	_, err = r.eng.Resolve("btn-1.1", "Operator 7", "genuine_injury", "")
	require.ErrorContains(t, err, "disk full")
	v, err = r.eng.Get("btn-1.1")
	require.NoError(t, err)
	assert.NotEqual(t, Resolved, v.State)

	var seen []Alert
	r.eng.opts.OnResolved = func(tx *bolt.Tx, a Alert) error {
		require.True(t, tx.Writable())
		seen = append(seen, a)
		return nil
	}
	_, err = r.eng.Resolve("btn-1.1", "Operator 7", "genuine_injury", "")
	require.NoError(t, err)
	require.Len(t, seen, 1)
	assert.Equal(t, Resolved, seen[0].State)
	assert.Equal(t, "genuine_injury", seen[0].Outcome)
	assert.Equal(t, "Nurse A", seen[0].Wearer)
}

func TestRaisedSelectsByRaisedTime(t *testing.T) {
	r := newRig(t)
	start := r.now
	r.submit(t, r.event(devices.TypeDuress, 1, true))
	r.now = r.now.Add(time.Hour)
	r.submit(t, r.event(devices.TypeManDown, 2, true))
	all, err := r.eng.Raised(time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, "btn-1.1", all[0].ID, "oldest first")
	first, err := r.eng.Raised(start, start.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, first, 1, "the upper bound is exclusive")
	assert.Equal(t, "btn-1.1", first[0].ID)
	later, err := r.eng.Raised(start.Add(time.Minute), time.Time{})
	require.NoError(t, err)
	require.Len(t, later, 1)
	assert.Equal(t, "btn-1.2", later[0].ID)
}

// Preview gives, before any transaction, exactly the messages raising the
// alert then queues at once (the ARC, webhook and camera command; not the
// evidence claim, which is not urgent), so an early send is recorded
// against them; an unverified duress previews no ARC message, and events
// that raise no P1 alert preview nothing.
func TestPreviewIsWhatRaisingQueues(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		rec   journal.Record
		want  []string
		alert string
	}{
		{r.event(devices.TypeDuress, 1, true), []string{"arc0", "webhook0", "wearer"}, "btn-1.1"},
		{r.event(devices.TypeManDown, 2, true), []string{"arc0", "webhook0", "wearer"}, "btn-1.2"},
		{r.event(devices.TypeDuress, 3, false), []string{"webhook0"}, "btn-1.3"},
	} {
		preview := r.eng.Preview(tc.rec)
		var routes []string
		for _, p := range preview {
			routes = append(routes, p.Route)
			assert.Zero(t, p.ID, "a preview has no id yet")
		}
		require.Equal(t, tc.want, routes)
		require.Equal(t, journal.Appended, r.submit(t, tc.rec))
		var queued []outbox.Entry
		require.NoError(t, r.db.View(func(tx *bolt.Tx) error {
			var err error
			queued, err = outbox.ForAlert(tx, tc.alert)
			return err
		}))
		for i, p := range preview {
			require.Greater(t, len(queued), i)
			assert.Equal(t, queued[i].Route, p.Route)
			assert.Equal(t, queued[i].Msg, p.Msg, "the same message on %s", p.Route)
		}
	}
	covert := r.event(devices.TypeDuressCancel, 4, true)
	covert.Event.Covert = true
	require.Len(t, r.eng.Preview(covert), 3, "a covert duress is a duress")
	assert.Empty(t, r.eng.Preview(r.event(devices.TypeDuressCancel, 5, true)))
	assert.Empty(t, r.eng.Preview(r.event(devices.TypeHeartbeat, 6, true)))
}
