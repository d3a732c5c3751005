package outbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func pendingOn(t *testing.T, d *Dispatcher, route string) int {
	t.Helper()
	st, err := d.Stats()
	require.NoError(t, err)
	for _, s := range st {
		if s.Route == route {
			return s.Depth
		}
	}
	return -1
}

// A route whose receiver changes keeps its queue and sends it to the new
// receiver at once, without the old receiver's backoff.
func TestReconfigureNewSenderDeliversQueue(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	old := &fakeSender{errs: []error{errors.New("dial: refused")}}
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: old}}, Hooks{}, Options{Now: clk.now, BackoffBase: time.Minute})
	require.NoError(t, err)
	enqueue(t, db, "arc0", msg("btn-1:1", 1), clk.t)
	require.Greater(t, d.Step(context.Background(), "arc0"), time.Duration(0), "the old receiver fails: backoff")

	replacement := &fakeSender{}
	require.NoError(t, d.Reconfigure([]Route{{Name: "arc0", Sender: replacement}}))
	assert.Equal(t, time.Duration(0), d.Step(context.Background(), "arc0"), "no backoff left from the old receiver")
	assert.Equal(t, []string{"btn-1:1"}, replacement.sent)
	assert.Equal(t, 0, pendingOn(t, d, "arc0"))

	require.ErrorContains(t, d.Reconfigure([]Route{{Name: "arc0", Sender: replacement, Backup: "gone"}}), `unknown route "gone"`)
}

// Retiring a route moves its pending messages to the successor (once: a
// message already there is only marked), keeping when they were queued; a
// route without a successor keeps its queue, which a route of the same
// name configured later delivers.
func TestRetireMovesOrKeepsNeverDrops(t *testing.T) {
	db := openDB(t)
	clk := &clock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	arc0, arc1, wh1 := &fakeSender{}, &fakeSender{errs: []error{errors.New("timeout")}}, &fakeSender{errs: []error{errors.New("503")}}
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: arc0, Backup: "arc1", EscalateAfter: time.Second},
		{Name: "arc1", Sender: arc1}, {Name: "webhook1", Sender: wh1}}, Hooks{}, Options{Now: clk.now})
	require.NoError(t, err)
	created := clk.t
	enqueue(t, db, "arc1", msg("only-on-arc1", 1), created)
	enqueue(t, db, "arc1", msg("on-both", 1), created)
	enqueue(t, db, "arc0", msg("on-both", 1), created)
	enqueue(t, db, "webhook1", msg("hook", 2), created)
	d.Step(context.Background(), "arc1")     // fails: stays pending
	d.Step(context.Background(), "webhook1") // fails: stays pending
	clk.advance(time.Minute)

	require.NoError(t, d.Reconfigure([]Route{{Name: "arc0", Sender: arc0}})) // no backup any more
	res, err := d.Retire([]string{"arc1", "webhook1"}, func(r string) string {
		if r == "arc1" {
			return "arc0"
		}
		return ""
	})
	require.NoError(t, err)
	assert.Equal(t, []Retired{{Route: "arc1", To: "arc0", Moved: 1, Already: 1}, {Route: "webhook1", Kept: 1}}, res)
	assert.Equal(t, []string{"arc0"}, d.Routes())
	assert.Equal(t, idleWait, d.Step(context.Background(), "arc1"), "a retired route sends nothing")

	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		es, err := ForAlert(tx, "a-only-on-arc1")
		require.NoError(t, err)
		require.Len(t, es, 2)
		assert.Equal(t, "arc1", es[0].Route)
		assert.Equal(t, Moved, es[0].State)
		assert.Contains(t, es[0].LastError, "moved to arc0")
		assert.Equal(t, "arc0", es[1].Route)
		assert.Equal(t, Pending, es[1].State)
		assert.True(t, es[1].Created.Equal(created), "escalation still counts from the alarm")
		return nil
	}))
	orphans, err := d.Orphans()
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"webhook1": 1}, orphans, "the kept queue is reported")

	for d.Step(context.Background(), "arc0") == 0 {
	}
	assert.ElementsMatch(t, []string{"on-both", "only-on-arc1"}, arc0.sent, "each message once")

	// The webhook comes back: its kept queue goes out.
	back := &fakeSender{}
	require.NoError(t, d.Reconfigure([]Route{{Name: "webhook1", Sender: back}}))
	d.Step(context.Background(), "webhook1")
	assert.Equal(t, []string{"hook"}, back.sent)
	orphans, err = d.Orphans()
	require.NoError(t, err)
	assert.Empty(t, orphans)
}

// Run starts routes added while it runs and stops those retired.
func TestRunFollowsReconfiguration(t *testing.T) {
	db := openDB(t)
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: &fakeSender{}}}, Hooks{}, Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()

	added := &fakeSender{}
	require.NoError(t, d.Reconfigure([]Route{{Name: "webhook0", Sender: added}}))
	enqueue(t, db, "webhook0", msg("k", 2), time.Now())
	d.Wake()
	deadline := time.Now().Add(5 * time.Second)
	for pendingOn(t, d, "webhook0") != 0 {
		require.True(t, time.Now().Before(deadline), "the added route delivered")
		time.Sleep(5 * time.Millisecond)
	}
	added.mu.Lock()
	assert.Equal(t, []string{"k"}, added.sent)
	added.mu.Unlock()
	_, err = d.Retire([]string{"webhook0"}, nil)
	require.NoError(t, err)
}

// The escalation loop answers probes, and stops answering while the state
// database is locked by a stuck writer.
func TestProbeStopsWhileDatabaseIsStuck(t *testing.T) {
	db := openDB(t)
	d, err := NewDispatcher(db, []Route{{Name: "arc0", Sender: &fakeSender{}, Backup: "arc1", EscalateAfter: time.Second},
		{Name: "arc1", Sender: &fakeSender{}}}, Hooks{}, Options{})
	require.NoError(t, err)
	probe := func(wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return d.Probe(ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.NoError(t, probe(5*time.Second))

	locked, release := make(chan struct{}), make(chan struct{})
	go db.Update(func(*bolt.Tx) error { close(locked); <-release; return nil })
	<-locked
	// The loop's next escalation round blocks on the lock; the probe after
	// that one cannot be answered.
	deadline := time.Now().Add(5 * time.Second)
	for probe(300*time.Millisecond) == nil {
		require.True(t, time.Now().Before(deadline), "the probe stops being answered")
	}
	close(release)
	assert.NoError(t, probe(5*time.Second))
}
