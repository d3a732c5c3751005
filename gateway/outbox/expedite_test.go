package outbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/gateway/forward"
)

// gateSender tells got about each message, then waits for release: the
// receiver's answer, nil for an ACK.
type gateSender struct {
	got     chan string
	release chan error
}

func (g *gateSender) Send(ctx context.Context, m forward.Message) error {
	g.got <- m.Key
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newGate() *gateSender {
	return &gateSender{got: make(chan string, 16), release: make(chan error, 16)}
}

func (g *gateSender) next(t *testing.T) string {
	t.Helper()
	select {
	case k := <-g.got:
		return k
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was sent")
		return ""
	}
}

// runDispatcher runs d until the test ends and waits for route to have
// looked at its (empty) queue once, which makes it idle.
func runDispatcher(t *testing.T, d *Dispatcher, route string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool {
		r := d.route(route)
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.idle
	}, 10*time.Second, time.Millisecond)
}

// hookLog records the keys the Delivered hook was called with.
type hookLog struct {
	mu   sync.Mutex
	seen []string
}

func (h *hookLog) delivered(_ *bolt.Tx, e Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = append(h.seen, e.Msg.Key)
	return nil
}

func (h *hookLog) keys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen)
}

// gateRoute runs a dispatcher with one route, arc0, whose receiver is a
// gateSender, and waits until the route is idle.
func gateRoute(t *testing.T) (*bolt.DB, *gateSender, *Dispatcher, *hookLog) {
	t.Helper()
	db := openDB(t)
	g := newGate()
	h := &hookLog{}
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: g}}, Hooks{Delivered: h.delivered}, Options{})
	require.NoError(t, err)
	runDispatcher(t, d, "arc0")
	return db, g, d, h
}

func delivered(t *testing.T, db *bolt.DB, alertID string) []Entry {
	t.Helper()
	var es []Entry
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		var err error
		es, err = ForAlert(tx, alertID)
		return err
	}))
	return es
}

// The point of Expedite: the receiver has the message while the transaction
// that queued it is still open, and its delivery is recorded once that
// transaction commits, exactly once.
func TestExpeditedMessageIsSentBeforeItsTransactionCommits(t *testing.T) {
	db, g, d, hooked := gateRoute(t)

	m := msg("btn-1:1", 1)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		e, err := Enqueue(tx, "arc0", m, time.Now())
		require.NoError(t, err)
		require.True(t, d.Expedite(e, nil), "an idle route takes the entry")
		assert.Equal(t, m.Key, g.next(t), "sent while the transaction is open")
		g.release <- nil // the receiver acknowledges before the commit
		return nil
	}))

	require.Eventually(t, func() bool {
		es := delivered(t, db, m.AlertID)
		return len(es) == 1 && es[0].State == Delivered
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, idleWait, d.Step(context.Background(), "arc0"), "nothing left pending")
	assert.Equal(t, []string{m.Key}, hooked.keys(), "the delivery hook ran once")
	select {
	case k := <-g.got:
		t.Fatalf("%s was sent a second time", k)
	default:
	}
}

// When the transaction rolls back, the message went out but its entry never
// existed: nothing is recorded for it, and a different message that takes
// the same entry id before the send returns is neither marked delivered by
// the earlier send nor skipped.
func TestExpeditedSendOfARolledBackTransactionRecordsNothing(t *testing.T) {
	db, g, d, hooked := gateRoute(t)

	a, b := msg("btn-1:1", 1), msg("btn-2:1", 1)
	var idA uint64
	rollback := errors.New("a later apply failed")
	err := db.Update(func(tx *bolt.Tx) error {
		e, err := Enqueue(tx, "arc0", a, time.Now())
		require.NoError(t, err)
		idA = e.ID
		require.True(t, d.Expedite(e, nil))
		assert.Equal(t, a.Key, g.next(t))
		return rollback
	})
	require.ErrorIs(t, err, rollback)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		e, err := Enqueue(tx, "arc0", b, time.Now())
		require.Equal(t, idA, e.ID, "the rolled-back id is taken again")
		return err
	}))
	d.Wake()
	g.release <- nil // a's send returns: its result must not land on b
	assert.Equal(t, b.Key, g.next(t), "b is sent from the queue")
	g.release <- nil
	require.Eventually(t, func() bool {
		es := delivered(t, db, b.AlertID)
		return len(es) == 1 && es[0].State == Delivered
	}, 10*time.Second, time.Millisecond)
	assert.Empty(t, delivered(t, db, a.AlertID), "no entry for the rolled-back message")
	assert.Equal(t, []string{b.Key}, hooked.keys())
}

// A route takes an expedited entry only when it is free: never before it
// has looked at its queue, not with a backlog, not in backoff, and no more
// than maxExpedited at a time.
func TestExpediteOnlyOnAnIdleRoute(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	s := &fakeSender{}
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: s}}, Hooks{}, Options{Now: clk.now, BackoffBase: time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	expedite := func(m forward.Message) (took bool) {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			e, err := Enqueue(tx, "arc0", m, clk.t)
			took = d.Expedite(e, nil)
			return err
		}))
		return took
	}

	assert.False(t, expedite(msg("k:1", 1)), "the route has not looked at its queue yet")
	assert.Equal(t, time.Duration(0), d.Step(ctx, "arc0"), "k:1 sent from the queue")
	assert.Equal(t, idleWait, d.Step(ctx, "arc0"), "queue empty: idle")
	assert.False(t, d.Expedite(Entry{Route: "nowhere", Msg: msg("k:x", 1)}, nil), "unknown route")

	assert.True(t, expedite(msg("k:2", 1)))
	assert.True(t, expedite(msg("k:3", 1)), "taken into the express lane behind k:2")
	assert.Equal(t, time.Duration(0), d.Step(ctx, "arc0"), "k:2 recorded")
	assert.Equal(t, time.Duration(0), d.Step(ctx, "arc0"), "k:3 recorded")
	assert.Equal(t, []string{"k:1", "k:2", "k:3"}, s.sent, "each sent once, in order")
	assert.Equal(t, idleWait, d.Step(ctx, "arc0"), "nothing left in the queue")

	var lane []string
	for i := range maxExpedited {
		m := msg(fmt.Sprintf("lane:%d", i), 1)
		require.True(t, expedite(m), "%s fits in the lane", m.Key)
		lane = append(lane, m.Key)
	}
	assert.False(t, expedite(msg("k:full", 1)), "the lane is full")
	for range maxExpedited + 1 {
		d.Step(ctx, "arc0")
	}
	assert.Equal(t, idleWait, d.Step(ctx, "arc0"))
	sent := append(append([]string{"k:1", "k:2", "k:3"}, lane...), "k:full")
	assert.Equal(t, sent, s.sent, "the lane in order, then the one it refused")

	enqueue(t, db, "arc0", msg("k:4", 1), clk.t)
	enqueue(t, db, "arc0", msg("k:5", 1), clk.t)
	assert.Equal(t, time.Duration(0), d.Step(ctx, "arc0"), "k:4 sent, k:5 still queued")
	assert.False(t, expedite(msg("k:6", 1)), "a backlog is not overtaken")
	d.Step(ctx, "arc0")
	d.Step(ctx, "arc0")
	assert.Equal(t, idleWait, d.Step(ctx, "arc0"))

	s.mu.Lock()
	s.errs = []error{errors.New("dial: refused")}
	s.mu.Unlock()
	enqueue(t, db, "arc0", msg("k:7", 1), clk.t)
	assert.Positive(t, d.Step(ctx, "arc0"), "k:7 failed: backoff")
	assert.False(t, expedite(msg("k:8", 1)), "a route in backoff does not take it")
	assert.Equal(t, append(sent, "k:4", "k:5", "k:6", "k:7"), s.sent)
}

// A preview of an entry (no id yet) is sent before the transaction that
// queues it has begun; the route waits for ready, then records the delivery
// on the entry that transaction committed, found by alert, route and key.
// A preview whose transaction queued nothing records nothing.
func TestExpeditedPreviewIsSettledAgainstTheCommittedEntry(t *testing.T) {
	db, g, d, hooked := gateRoute(t)
	idle := func() bool {
		r := d.route("arc0")
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.idle
	}

	m := msg("btn-1:1", 1)
	ready := make(chan struct{})
	require.True(t, d.Expedite(Entry{Route: "arc0", Msg: m}, ready))
	assert.Equal(t, m.Key, g.next(t), "sent before any transaction")
	g.release <- nil
	enqueue(t, db, "arc0", msg("other:1", 1), time.Now()) // another alert's entry on the route: not this one's
	enqueue(t, db, "arc0", m, time.Now())
	close(ready)
	require.Eventually(t, func() bool {
		es := delivered(t, db, m.AlertID)
		return len(es) == 1 && es[0].State == Delivered && es[0].Attempts == 1
	}, 10*time.Second, time.Millisecond)
	assert.Equal(t, "other:1", g.next(t), "the other entry is sent from the queue")
	g.release <- nil
	require.Eventually(t, idle, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{m.Key, "other:1"}, hooked.keys(), "each delivery recorded once")

	lost := msg("btn-2:1", 1)
	ready = make(chan struct{})
	require.True(t, d.Expedite(Entry{Route: "arc0", Msg: lost}, ready))
	assert.Equal(t, lost.Key, g.next(t))
	g.release <- nil
	close(ready) // the journal decided without queueing it (rolled back, or a duplicate)
	require.Eventually(t, idle, 10*time.Second, time.Millisecond)
	assert.Empty(t, delivered(t, db, lost.AlertID))
	assert.Equal(t, []string{m.Key, "other:1"}, hooked.keys())
}

// While a route records the delivery of the only entry it found, it takes
// the next alarms and sends them at once, without waiting for that record
// or for one another's; with a backlog behind the entry it refuses, so no
// waiting alarm is overtaken.
func TestExpediteWhileRecordingOnlyWithoutABacklog(t *testing.T) {
	db := openDB(t)
	g := newGate()
	inHook, hookRelease := make(chan string, 8), make(chan struct{}, 8)
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: g}},
		Hooks{Delivered: func(_ *bolt.Tx, e Entry) error { inHook <- e.Msg.Key; <-hookRelease; return nil }}, Options{})
	require.NoError(t, err)
	runDispatcher(t, d, "arc0")
	recorded := func(want string) {
		t.Helper()
		select {
		case k := <-inHook:
			require.Equal(t, want, k)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not recorded", want)
		}
	}

	enqueue(t, db, "arc0", msg("a:1", 1), time.Now())
	d.Wake()
	assert.Equal(t, "a:1", g.next(t))
	g.release <- nil
	recorded("a:1") // the route is now recording a:1, the only entry it found
	// a:1's record holds the database's one writer (its hook waits), as a
	// slow disk would: b:1 and x:1 go to the receiver all the same.
	b, x := msg("b:1", 1), msg("x:1", 1)
	ready := make(chan struct{})
	assert.True(t, d.Expedite(Entry{Route: "arc0", Msg: b}, ready), "taken while a:1 is recorded")
	assert.True(t, d.Expedite(Entry{Route: "arc0", Msg: x}, ready), "and the next, behind it")
	assert.False(t, d.Expedite(Entry{Route: "arc0", Msg: x}, ready), "not the same message twice")
	assert.Equal(t, "b:1", g.next(t), "sent at once, while a:1's record waits for the database")
	g.release <- nil // the receiver ACKs b:1
	assert.Equal(t, "x:1", g.next(t), "sent after b:1, still before a:1 is recorded")
	g.release <- nil
	hookRelease <- struct{}{} // a:1 recorded
	enqueue(t, db, "arc0", b, time.Now())
	enqueue(t, db, "arc0", x, time.Now())
	close(ready)
	recorded("b:1")
	hookRelease <- struct{}{}
	recorded("x:1")
	hookRelease <- struct{}{}
	for _, m := range []forward.Message{b, x} {
		require.Eventually(t, func() bool {
			es := delivered(t, db, m.AlertID)
			return len(es) == 1 && es[0].State == Delivered && es[0].Attempts == 1
		}, 10*time.Second, time.Millisecond, "%s delivered once", m.Key)
	}

	require.NoError(t, db.Update(func(tx *bolt.Tx) error { // c:1 and d:1 at once: the route sees both
		for _, m := range []forward.Message{msg("c:1", 1), msg("d:1", 1)} {
			if _, err := Enqueue(tx, "arc0", m, time.Now()); err != nil {
				return err
			}
		}
		return nil
	}))
	d.Wake()
	assert.Equal(t, "c:1", g.next(t))
	g.release <- nil
	recorded("c:1")
	assert.False(t, d.Expedite(Entry{Route: "arc0", Msg: msg("e:1", 1)}, make(chan struct{})), "d:1 waits behind c:1")
	hookRelease <- struct{}{}
	assert.Equal(t, "d:1", g.next(t))
	g.release <- nil
	recorded("d:1")
	hookRelease <- struct{}{}
}

// Expedite yields to the send it hands over: on one CPU, the receiver has
// the message by the time Expedite returns, not only once the caller
// blocks (after it has handed the event to the journal, say). The Go
// scheduler is free to run something else first now and then (it looks at
// its global queue every 61st turn; -race shuffles its order), so the test
// asks for most of the presses, not all; without the yield none would be
// sent before Expedite returned.
func TestExpediteYieldsToTheSend(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, g, d, _ := gateRoute(t)
	const presses = 20
	before := 0
	for i := range presses {
		m := msg(fmt.Sprintf("btn-%d:1", i), 1)
		ready := make(chan struct{})
		require.True(t, d.Expedite(Entry{Route: "arc0", Msg: m, State: Pending}, ready), "press %d: the route is idle", i)
		select {
		case k := <-g.got:
			assert.Equal(t, m.Key, k)
			before++
		default:
			assert.Equal(t, m.Key, g.next(t), "sent after Expedite returned")
		}
		close(ready) // nothing was committed: the route records nothing and looks at its queue
		g.release <- nil
		require.Eventually(t, func() bool { return d.Idle("arc0") }, 10*time.Second, time.Millisecond, "press %d: idle again", i)
	}
	assert.GreaterOrEqual(t, before, presses*3/4, "presses whose message the receiver had when Expedite returned")
}

// After a failed send the express lane sends nothing more: the alarms
// behind it wait in the queue for the route's retry, each still sent once
// per attempt, instead of each waiting out the same failure in turn. A
// refusal of one message is not a link failure: the lane goes on.
func TestExpressLaneStopsAfterAFailedSend(t *testing.T) {
	db := openDB(t)
	g := newGate()
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: g}}, Hooks{}, Options{BackoffBase: 50 * time.Millisecond})
	require.NoError(t, err)
	runDispatcher(t, d, "arc0")
	expedite := func(ms ...forward.Message) {
		t.Helper()
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			for _, m := range ms {
				e, err := Enqueue(tx, "arc0", m, time.Now())
				require.NoError(t, err)
				require.True(t, d.Expedite(e, nil), "%s taken", m.Key)
			}
			return nil
		}))
	}

	a, b, c := msg("a:1", 1), msg("b:1", 1), msg("c:1", 1)
	expedite(a, b, c)
	assert.Equal(t, "a:1", g.next(t))
	g.release <- errors.New("dial: connection refused")
	// The route retries from its queue, in order: a:1 again, then b:1 and
	// c:1 for the first time.
	for _, m := range []forward.Message{a, b, c} {
		assert.Equal(t, m.Key, g.next(t))
		g.release <- nil
	}
	for m, attempts := range map[forward.Message]int{a: 2, b: 1, c: 1} {
		require.Eventually(t, func() bool {
			es := delivered(t, db, m.AlertID)
			return len(es) == 1 && es[0].State == Delivered && es[0].Attempts == attempts
		}, 10*time.Second, time.Millisecond, "%s delivered after %d attempts", m.Key, attempts)
	}
	require.Eventually(t, func() bool { return d.Idle("arc0") }, 10*time.Second, time.Millisecond)

	r, q := msg("r:1", 1), msg("q:1", 1)
	expedite(r, q)
	assert.Equal(t, "r:1", g.next(t))
	g.release <- forward.Permanent(errors.New("DUH"))
	assert.Equal(t, "q:1", g.next(t), "the lane goes on after a refusal")
	g.release <- nil
	require.Eventually(t, func() bool {
		es := delivered(t, db, q.AlertID)
		return len(es) == 1 && es[0].State == Delivered && es[0].Attempts == 1
	}, 10*time.Second, time.Millisecond)
	select {
	case k := <-g.got:
		t.Fatalf("%s was sent again", k)
	default:
	}
}
