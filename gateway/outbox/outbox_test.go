package outbox

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

	"github.com/vigil-gw/vigil/gateway/forward"
)

// fakeSender fails with the queued errors, then succeeds; it records what it was sent.
type fakeSender struct {
	mu   sync.Mutex
	errs []error
	sent []string
}

func (f *fakeSender) Send(_ context.Context, m forward.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, m.Key)
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return err
	}
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func openDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), 0o600, nil)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func enqueue(t *testing.T, db *bolt.DB, route string, m forward.Message, now time.Time) {
	t.Helper()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		_, err := Enqueue(tx, route, m, now)
		return err
	}))
}

func msg(key string, prio int) forward.Message {
	return forward.Message{Key: key, AlertID: "a-" + key, Kind: forward.KindAlarm, Event: "duress", Priority: prio}
}

func TestRetryThenDeliverWithBackoff(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s := &fakeSender{errs: []error{errors.New("dial: refused"), errors.New("dial: refused")}}
	var delivered []Entry
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: s}},
		Hooks{Delivered: func(_ *bolt.Tx, e Entry) error { delivered = append(delivered, e); return nil }},
		Options{Now: clk.now, BackoffBase: time.Second, BackoffMax: 8 * time.Second})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), clk.t)
	ctx := context.Background()

	w1 := d.Step(ctx, "arc0")
	assert.GreaterOrEqual(t, w1, 500*time.Millisecond)
	assert.Less(t, w1, time.Second)
	assert.Equal(t, w1, d.Step(ctx, "arc0"), "no attempt during backoff")
	require.Len(t, s.sent, 1)

	clk.advance(w1)
	w2 := d.Step(ctx, "arc0")
	assert.GreaterOrEqual(t, w2, time.Second, "backoff doubles")
	assert.Less(t, w2, 2*time.Second)
	clk.advance(w2)
	assert.Equal(t, time.Duration(0), d.Step(ctx, "arc0"), "delivered: go again at once")
	require.Len(t, delivered, 1)
	assert.Equal(t, 3, delivered[0].Attempts)
	assert.Equal(t, Delivered, delivered[0].State)
	assert.Equal(t, idleWait, d.Step(ctx, "arc0"), "queue empty")

	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		es, err := ForAlert(tx, "a-btn-1:1")
		require.NoError(t, err)
		require.Len(t, es, 1)
		assert.Equal(t, Delivered, es[0].State)
		return nil
	}))
	st, err := d.Stats()
	require.NoError(t, err)
	assert.Equal(t, 0, st[0].Depth)
}

func TestPermanentFailureIsRecordedAndQueueMovesOn(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s := &fakeSender{errs: []error{forward.Permanent(errors.New("DUH"))}}
	var failed []Entry
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: s}},
		Hooks{Failed: func(_ *bolt.Tx, e Entry) error { failed = append(failed, e); return nil }}, Options{Now: clk.now})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), clk.t)
	enqueue(t, db, "arc0", msg("btn-1:2", 1), clk.t)
	assert.Equal(t, time.Duration(0), d.Step(context.Background(), "arc0"))
	assert.Equal(t, time.Duration(0), d.Step(context.Background(), "arc0"))
	require.Len(t, failed, 1)
	assert.Equal(t, Failed, failed[0].State)
	assert.Contains(t, failed[0].LastError, "DUH")
	assert.Equal(t, []string{"btn-1:1", "btn-1:2"}, s.sent)
}

func TestPriorityThenArrivalOrder(t *testing.T) {
	db := openDB(t)
	s := &fakeSender{}
	d, err := NewDispatcher(db, []Route{{Name: "wh", Sender: s}}, Hooks{}, Options{})
	require.NoError(t, err)
	enqueue(t, db, "wh", msg("low-1", 3), time.Now())
	enqueue(t, db, "wh", msg("duress-1", 1), time.Now())
	enqueue(t, db, "wh", msg("low-2", 3), time.Now())
	enqueue(t, db, "wh", msg("duress-2", 1), time.Now())
	for range 4 {
		d.Step(context.Background(), "wh")
	}
	assert.Equal(t, []string{"duress-1", "duress-2", "low-1", "low-2"}, s.sent)
}

func TestEscalationToBackupAfterDelay(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	primary := &fakeSender{errs: []error{errors.New("timeout"), errors.New("timeout"), errors.New("timeout")}}
	backup := &fakeSender{}
	d, err := NewDispatcher(db, []Route{
		{Name: "arc0", Sender: primary, Backup: "arc1", EscalateAfter: 5 * time.Second},
		{Name: "arc1", Sender: backup},
	}, Hooks{}, Options{Now: clk.now})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), clk.t)
	d.Step(context.Background(), "arc0")

	clk.advance(4900 * time.Millisecond)
	n, err := d.Escalate()
	require.NoError(t, err)
	assert.Equal(t, 0, n, "not yet due")
	assert.Equal(t, idleWait, d.Step(context.Background(), "arc1"))

	clk.advance(100 * time.Millisecond)
	n, err = d.Escalate()
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = d.Escalate()
	require.NoError(t, err)
	assert.Equal(t, 0, n, "escalated once only")

	d.Step(context.Background(), "arc1")
	assert.Equal(t, []string{"btn-1:1"}, backup.sent)
	st, err := d.Stats()
	require.NoError(t, err)
	assert.Equal(t, "arc0", st[0].Route)
	assert.Equal(t, 1, st[0].Depth, "the primary still owes its delivery")
	assert.Equal(t, 1, st[0].Failures)
}

func TestDeliveredBeforeDelayIsNotEscalated(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	d, err := NewDispatcher(db, []Route{
		{Name: "arc0", Sender: &fakeSender{}, Backup: "arc1", EscalateAfter: 5 * time.Second},
		{Name: "arc1", Sender: &fakeSender{}},
	}, Hooks{}, Options{Now: clk.now})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), clk.t)
	d.Step(context.Background(), "arc0")
	clk.advance(time.Minute)
	n, err := d.Escalate()
	require.NoError(t, err)
	assert.Equal(t, 0, n)
}

func TestBackoffBounds(t *testing.T) {
	base, maxWait := 250*time.Millisecond, 15*time.Second
	for n := 1; n < 30; n++ {
		lo := Backoff(base, maxWait, n, 0)
		hi := Backoff(base, maxWait, n, 0.999999)
		assert.LessOrEqual(t, lo, hi)
		assert.LessOrEqual(t, hi, maxWait, "capped at retry %d", n)
		assert.GreaterOrEqual(t, lo, base/2)
	}
	assert.Equal(t, maxWait/2, Backoff(base, maxWait, 30, 0))
}

func TestConfigErrors(t *testing.T) {
	db := openDB(t)
	_, err := NewDispatcher(db, []Route{{Name: "a", Sender: &fakeSender{}, Backup: "nope"}}, Hooks{}, Options{})
	require.ErrorContains(t, err, `unknown route "nope"`)
	_, err = NewDispatcher(db, []Route{{Name: "a", Sender: &fakeSender{}}, {Name: "a", Sender: &fakeSender{}}}, Hooks{}, Options{})
	require.ErrorContains(t, err, "configured twice")
}

// A failed attempt that was under way while escalation ran must not undo the
// escalation mark, or the backup would get the message again and again.
func TestAttemptDuringEscalationKeepsMark(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	var d *Dispatcher
	primary := &escalatingSender{escalate: func() {
		clk.advance(10 * time.Second)
		n, err := d.Escalate()
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}}
	var err error
	d, err = NewDispatcher(db, []Route{
		{Name: "arc0", Sender: primary, Backup: "arc1", EscalateAfter: 5 * time.Second},
		{Name: "arc1", Sender: &fakeSender{}},
	}, Hooks{}, Options{Now: clk.now})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), clk.t)
	d.Step(context.Background(), "arc0") // fails; escalation ran during the send
	n, err := d.Escalate()
	require.NoError(t, err)
	assert.Equal(t, 0, n, "already escalated")
	st, err := d.Stats()
	require.NoError(t, err)
	assert.Equal(t, 1, st[1].Depth, "the backup has it exactly once")
}

type escalatingSender struct{ escalate func() }

func (s *escalatingSender) Send(context.Context, forward.Message) error {
	s.escalate()
	return errors.New("timeout")
}

// Work a delivery hook queues on another route must not wait for that route's
// idle poll: the route is woken at once.
func TestDeliveryHookWakesOtherRoutes(t *testing.T) {
	db := openDB(t)
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: &fakeSender{}}, {Name: "wearer", Sender: &fakeSender{}}},
		Hooks{Delivered: func(tx *bolt.Tx, e Entry) error {
			_, err := Enqueue(tx, "wearer", msg(e.Msg.Key+":received", 1), time.Now())
			return err
		}}, Options{})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), time.Now())
	w := d.routes["wearer"].wake
	for len(w) > 0 { // drain any earlier signal
		<-w
	}
	d.Step(context.Background(), "arc0")
	assert.Len(t, w, 1, "the wearer route was woken")
}
