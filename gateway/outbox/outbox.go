// Package outbox is the gateway's durable, per-route delivery queue. Each
// alert message is written once per route (each ARC receiver, each webhook,
// the wearer's device) in the same transaction that creates the alert, and
// stays until that route's receiver acknowledges it or refuses it for good.
//
// Delivery is at-least-once: the order is send, then record as delivered, so
// a crash in between sends again, and receivers deduplicate on the message's
// idempotency key. A route that fails backs off (capped exponential with
// jitter) as a whole, keeping its messages in priority then arrival order. A
// message an ARC has not acknowledged within the route's escalation delay is
// also queued on the route's backup.
package outbox

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/gateway/forward"
)

var (
	bucketRoot    = []byte("outbox")
	bucketPending = []byte("pending")
	bucketDone    = []byte("done")
	bucketByAlert = []byte("outbox-by-alert")
)

// State is where an entry is in its delivery.
type State string

// Entry states.
const (
	Pending   State = "pending"
	Delivered State = "delivered"
	Failed    State = "failed" // permanently refused by the receiver
)

// Entry is one message for one route.
type Entry struct {
	ID          uint64          `json:"id"`
	Route       string          `json:"route"`
	Msg         forward.Message `json:"msg"`
	State       State           `json:"state"`
	Created     time.Time       `json:"created"`
	Attempts    int             `json:"attempts"`
	LastError   string          `json:"last_error,omitempty"`
	LastAttempt time.Time       `json:"last_attempt,omitzero"`
	DoneAt      time.Time       `json:"done_at,omitzero"`
	Escalated   bool            `json:"escalated,omitempty"`
}

// Init creates the outbox buckets.
func Init(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketRoot); err != nil {
		return err
	}
	_, err := tx.CreateBucketIfNotExists(bucketByAlert)
	return err
}

func routeBucket(tx *bolt.Tx, route string, name []byte) (*bolt.Bucket, error) {
	root := tx.Bucket(bucketRoot)
	if root == nil {
		return nil, errors.New("outbox: not initialised")
	}
	if !tx.Writable() {
		rb := root.Bucket([]byte(route))
		if rb == nil {
			return nil, nil
		}
		return rb.Bucket(name), nil
	}
	rb, err := root.CreateBucketIfNotExists([]byte(route))
	if err != nil {
		return nil, err
	}
	return rb.CreateBucketIfNotExists(name)
}

// pendingKey orders a route's queue by priority, then arrival.
func pendingKey(m forward.Message, id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{m.Priority8()}, id)
}

func alertIndexKey(alertID, route string, id uint64) []byte {
	k := append([]byte(alertID), 0)
	k = append(k, route...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, id)
}

// Enqueue adds msg to route's queue inside tx.
func Enqueue(tx *bolt.Tx, route string, msg forward.Message, now time.Time) (Entry, error) {
	b, err := routeBucket(tx, route, bucketPending)
	if err != nil {
		return Entry{}, fmt.Errorf("outbox: enqueue %s on %s: %w", msg.Key, route, err)
	}
	id, err := tx.Bucket(bucketRoot).NextSequence()
	if err != nil {
		return Entry{}, fmt.Errorf("outbox: enqueue %s on %s: %w", msg.Key, route, err)
	}
	e := Entry{ID: id, Route: route, Msg: msg, State: Pending, Created: now}
	if err := putEntry(b, pendingKey(msg, id), e); err != nil {
		return Entry{}, err
	}
	if err := tx.Bucket(bucketByAlert).Put(alertIndexKey(msg.AlertID, route, id), []byte{msg.Priority8()}); err != nil {
		return Entry{}, fmt.Errorf("outbox: index %s: %w", msg.Key, err)
	}
	return e, nil
}

func putEntry(b *bolt.Bucket, k []byte, e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("outbox: encode entry %d: %w", e.ID, err)
	}
	if err := b.Put(k, v); err != nil {
		return fmt.Errorf("outbox: put entry %d: %w", e.ID, err)
	}
	return nil
}

// ForAlert returns every entry, on every route, for one alert.
func ForAlert(tx *bolt.Tx, alertID string) ([]Entry, error) {
	var out []Entry
	prefix := append([]byte(alertID), 0)
	c := tx.Bucket(bucketByAlert).Cursor()
	for k, v := c.Seek(prefix); k != nil && len(k) > len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
		rest := k[len(prefix):]
		if len(rest) < 9 {
			continue
		}
		route := string(rest[:len(rest)-9])
		id := binary.BigEndian.Uint64(rest[len(rest)-8:])
		var prio forward.Message
		if len(v) == 1 {
			prio.Priority = int(v[0])
		}
		for _, name := range [][]byte{bucketPending, bucketDone} {
			b, err := routeBucket(tx, route, name)
			if err != nil || b == nil {
				continue
			}
			key := binary.BigEndian.AppendUint64(nil, id)
			if name[0] == 'p' {
				key = pendingKey(prio, id)
			}
			if raw := b.Get(key); raw != nil {
				var e Entry
				if err := json.Unmarshal(raw, &e); err != nil {
					return nil, fmt.Errorf("outbox: decode entry %d: %w", id, err)
				}
				out = append(out, e)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Sender delivers one message to one receiver. It returns nil only when the
// receiver has acknowledged the message, and wraps failures that retrying
// cannot fix with forward.Permanent.
type Sender interface {
	Send(ctx context.Context, m forward.Message) error
}

// Route is one destination with its sender.
type Route struct {
	Name   string
	Sender Sender
	// Backup is the route that also gets a message this route has not
	// delivered within EscalateAfter ("" for none).
	Backup        string
	EscalateAfter time.Duration
}

// Hooks let the alert engine react, inside the same transaction, when an entry
// is delivered or fails for good.
type Hooks struct {
	Delivered func(tx *bolt.Tx, e Entry) error
	Failed    func(tx *bolt.Tx, e Entry) error
}

// Options tune a Dispatcher.
type Options struct {
	BackoffBase time.Duration // default 250ms
	BackoffMax  time.Duration // default 15s
	SendTimeout time.Duration // default 10s
	Now         func() time.Time
	Logger      *slog.Logger
	// Observe is told about each attempt (for metrics), and how the entry
	// reached the route; may be nil.
	Observe func(route string, e Entry, via Via, err error)
}

// Via is how an entry reached its route for an attempt.
type Via string

const (
	// ViaBeforeCommit: handed over (Expedite) before the transaction that
	// queues it had begun: sent while the journal's fsync ran.
	ViaBeforeCommit Via = "before_commit"
	// ViaInCommit: handed over inside the transaction that queued it.
	ViaInCommit Via = "in_commit"
	// ViaQueue: read from the route's queue after the commit (a route that
	// was busy, a retry, or a message that is not an alarm).
	ViaQueue Via = "queue"
)

// Dispatcher drains every route's queue.
type Dispatcher struct {
	db *bolt.DB
	// mu guards routes: Reconfigure and Retire change the set while Run
	// drains it (a configuration reload).
	mu      sync.RWMutex
	routes  map[string]*routeState
	changed chan struct{} // tells Run that the set of routes changed
	probe   chan struct{} // answered by the escalation loop (Probe)
	hooks   Hooks
	opts    Options
	log     *slog.Logger
}

type routeState struct {
	// mu guards Route's Sender, Backup and EscalateAfter (a reload swaps
	// them), the failure state and the expedite state.
	Route
	wake     chan struct{}
	mu       sync.Mutex
	failures int       // consecutive retryable failures
	until    time.Time // no attempt before this
	lastErr  string
	// idle is set when the route last found its queue empty and cleared
	// when it takes work. expedited is the express lane: the entries
	// handed over by Expedite, oldest first, sent by the express goroutine
	// (running while express is set) and each recorded by the route's step
	// ahead of its queue, then dropped from the lane.
	idle      bool
	expedited []*expedited
	express   bool
	// recording is set while the route records a delivery its receiver has
	// acknowledged; more says the queue held another entry behind the one
	// being handled; busyKey is the key of the message being handled.
	recording bool
	more      bool
	busyKey   string
	// stepMu is held for a whole delivery attempt, so Retire can wait for
	// the one under way; retired (guarded by it) stops later attempts.
	stepMu  sync.Mutex
	retired bool
	cancel  context.CancelFunc // stops the route's goroutine; guarded by Dispatcher.mu
}

// NewDispatcher makes a dispatcher for routes over db.
func NewDispatcher(db *bolt.DB, routes []Route, hooks Hooks, opts Options) (*Dispatcher, error) {
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = 250 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 15 * time.Second
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Dispatcher{db: db, routes: map[string]*routeState{}, changed: make(chan struct{}, 1), probe: make(chan struct{}),
		hooks: hooks, opts: opts, log: opts.Logger.With("component", "outbox")}
	for _, r := range routes {
		if r.Name == "" || r.Sender == nil {
			return nil, fmt.Errorf("outbox: route %q needs a name and a sender", r.Name)
		}
		if _, dup := d.routes[r.Name]; dup {
			return nil, fmt.Errorf("outbox: route %q configured twice", r.Name)
		}
		d.routes[r.Name] = &routeState{Route: r, wake: make(chan struct{}, 1)}
	}
	for _, r := range routes {
		if r.Backup != "" && d.routes[r.Backup] == nil {
			return nil, fmt.Errorf("outbox: route %q escalates to unknown route %q", r.Name, r.Backup)
		}
	}
	if err := db.Update(Init); err != nil {
		return nil, fmt.Errorf("outbox: init: %w", err)
	}
	return d, nil
}

// Wake tells every route to look at its queue now (after a commit added work).
func (d *Dispatcher) Wake() {
	for _, r := range d.list() {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Run delivers until ctx is done. It runs one goroutine per route, started
// and stopped as Reconfigure and Retire change the routes.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	running := map[*routeState]bool{}
	start := func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range d.routes {
			if !running[r] {
				rctx, cancel := context.WithCancel(ctx)
				r.cancel, running[r] = cancel, true
				wg.Go(func() { d.runRoute(rctx, r) })
			}
		}
	}
	start()
	wg.Go(func() { d.runEscalation(ctx) })
	for {
		select {
		case <-d.changed:
			start()
		case <-ctx.Done():
			wg.Wait()
			d.mu.Lock()
			for r := range running {
				r.cancel()
			}
			d.mu.Unlock()
			return nil
		}
	}
}

func (d *Dispatcher) runRoute(ctx context.Context, r *routeState) {
	for ctx.Err() == nil {
		wait := d.step(ctx, r)
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-r.wake:
		}
		t.Stop()
	}
}

// idleWait is how long an empty route sleeps before looking again without a wake.
const idleWait = 5 * time.Second

// Idle reports whether route would take an expedited entry now.
func (d *Dispatcher) Idle(route string) bool {
	r := d.route(route)
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.takes(d.opts.Now())
}

// maxExpedited bounds a route's express lane: entries handed over and not
// yet recorded. Beyond it alarms wait in the queue, as they would for a
// route that is not idle.
const maxExpedited = 64

// takes says whether the route can take an expedited entry; r.mu is held.
// It can when it is idle, when it is recording the delivery of the only
// entry it found in its queue, or when its express lane is already in use
// and not full; never with a retry pending.
func (r *routeState) takes(now time.Time) bool {
	open := r.idle || (r.recording && !r.more) || len(r.expedited) > 0
	return open && len(r.expedited) < maxExpedited && r.failures == 0 && !now.Before(r.until)
}

// handling says whether the route has the message with key in hand: being
// sent or recorded, or waiting in its express lane. r.mu is held.
func (r *routeState) handling(key string) bool {
	return key == r.busyKey || slices.ContainsFunc(r.expedited, func(x *expedited) bool { return x.entry.Msg.Key == key })
}

// expedited is an entry handed to a route ahead of its queue.
type expedited struct {
	entry Entry
	ready <-chan struct{}
	// sent gets the result of the send, from the route's express goroutine;
	// started (guarded by the route's mu) says that goroutine has taken it.
	sent    chan error
	started bool
}

// errNotSent is the result of an expedited entry the express lane did not
// send because the send before it failed. The entry waits in the queue for
// the route's retry instead.
var errNotSent = errors.New("outbox: not sent: the expedited send before it failed")

// Expedite hands e to its route for sending now, before the write
// transaction that queues it has committed, instead of after the commit
// wakes the route. Only a route that is free takes it: its queue was empty
// when it last looked, or it is recording the delivery of the only entry
// it found there, or it is already handling expedited entries (up to
// maxExpedited); no retry pending; not handling this very message. The
// most it can overtake is a message committed since that look and not yet
// picked up; that one is sent once the lane is empty. A route with a backlog or in backoff refuses, and the message
// is sent from the queue in its turn. It never blocks; it reports whether
// the route took the entry.
//
// What a route takes goes into its express lane: a goroutine sends the
// lane's entries at once, oldest first and one at a time, while the route
// records each result in turn. So an alarm's send never waits for the
// database: not for the commit that queues it, not for the recording of
// the alarms before it, however long the disk takes to sync. Expedite
// yields the CPU to that send before it returns.
//
// The route records the attempt's result in a write transaction of its own
// once the queueing one has ended. There are two ways to call it:
//   - inside the transaction that queued e (e.ID set, ready nil): bbolt runs
//     the route's transaction only after that one ends;
//   - before that transaction has begun (e.ID 0: a preview of the entry),
//     with ready closed once it has ended, committed or not. The route finds
//     the entry by its alert, route and key.
//
// If the queueing transaction rolled back or queued something else, the
// entry is not found and the result is dropped. The message's source was
// not acknowledged, so it comes again: delivery stays at-least-once, with
// the same idempotency key.
func (d *Dispatcher) Expedite(e Entry, ready <-chan struct{}) bool {
	r := d.route(e.Route)
	if r == nil {
		return false
	}
	r.mu.Lock()
	ok := r.takes(d.opts.Now()) && !r.handling(e.Msg.Key)
	start := false
	if ok {
		r.expedited = append(r.expedited, &expedited{entry: e, ready: ready, sent: make(chan error, 1)})
		r.idle = false
		start, r.express = !r.express, true
	}
	r.mu.Unlock()
	if !ok {
		return false
	}
	select { // the route waits for the result, to record it
	case r.wake <- struct{}{}:
	default:
	}
	if start {
		go d.express(r) // after the wake, so the scheduler runs it next
	}
	// Let the send have this CPU now. Left to the scheduler, it waits for
	// this goroutine to block, and the caller goes on to hand the event to
	// the journal, whose goroutine then runs first and can hold the CPU
	// through an fsync; on a busy machine that put milliseconds between
	// Expedite and the send.
	runtime.Gosched()
	return true
}

// express sends the route's expedited entries, oldest first, one at a time,
// and hands each result to the route, which records them in the same
// order. It ends when it finds none left to send. After a failed send it
// sends no more (errNotSent): those entries wait for the route's retry.
func (d *Dispatcher) express(r *routeState) {
	failed := false
	for {
		r.mu.Lock()
		i := slices.IndexFunc(r.expedited, func(x *expedited) bool { return !x.started })
		if i < 0 {
			r.express = false
			r.mu.Unlock()
			return
		}
		x, sender := r.expedited[i], r.Sender
		x.started = true
		r.mu.Unlock()
		if failed {
			x.sent <- errNotSent
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.opts.SendTimeout)
		err := sender.Send(ctx, x.entry.Msg)
		cancel()
		failed = err != nil && !forward.IsPermanent(err) // a refusal is about the message, not the link
		x.sent <- err
	}
}

// Step makes at most one delivery attempt on route and returns how long to
// wait before the next (0: go again now). Run calls it in a loop; tests call
// it directly with an injected clock.
func (d *Dispatcher) Step(ctx context.Context, route string) time.Duration {
	r := d.route(route)
	if r == nil {
		return idleWait
	}
	return d.step(ctx, r)
}

func (d *Dispatcher) step(ctx context.Context, r *routeState) time.Duration {
	r.stepMu.Lock()
	defer r.stepMu.Unlock()
	if r.retired {
		return idleWait
	}
	route := r.Name
	now := d.opts.Now()
	r.mu.Lock()
	until, sender := r.until, r.Sender
	r.mu.Unlock()
	if now.Before(until) {
		return until.Sub(now)
	}
	// Busy from here until the queue is found empty: an entry expedited
	// while the queue is being read could otherwise be sent twice, once
	// handed over and once read from the queue. The oldest entry of the
	// express lane comes first, and stays in the lane until it is recorded.
	r.mu.Lock()
	var x *expedited
	if len(r.expedited) > 0 {
		x = r.expedited[0]
	}
	r.idle = false
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if x != nil {
			r.expedited = slices.Delete(r.expedited, 0, 1)
		}
		r.recording, r.busyKey = false, ""
		r.mu.Unlock()
	}()
	var e Entry
	via := ViaQueue
	if x != nil {
		e, via = x.entry, ViaInCommit
		if x.ready != nil {
			via = ViaBeforeCommit
		}
	} else {
		var ok, more bool
		var err error
		e, ok, more, err = d.head(route)
		if err != nil {
			d.log.Error("read queue", "route", route, "err", err)
			return idleWait
		}
		r.mu.Lock()
		r.idle, r.more = !ok, more
		r.mu.Unlock()
		if !ok {
			return idleWait
		}
	}
	r.mu.Lock()
	r.busyKey = e.Msg.Key
	r.mu.Unlock()
	var err error
	if x != nil {
		select {
		case err = <-x.sent:
		case <-ctx.Done():
			return 0 // shutting down; the entry stays pending
		}
		if errors.Is(err, errNotSent) {
			return 0 // it waits in the queue (if it was committed) for the retry
		}
	} else {
		sctx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
		err = sender.Send(sctx, e.Msg)
		cancel()
	}
	if ctx.Err() != nil && err != nil {
		return 0 // shutting down; the entry stays pending
	}
	if err != nil && r.sender() != sender {
		return 0 // a reload replaced the receiver during the send: try the new one now
	}
	if err == nil {
		r.mu.Lock()
		r.recording = true // the next alarm may be handed over while this is recorded
		r.mu.Unlock()
	}
	if x != nil && x.ready != nil {
		var found bool
		if e, found = d.settle(ctx, x); !found {
			return 0 // look at the queue: whatever was committed is there
		}
	}
	now = d.opts.Now()
	e.Attempts++
	e.LastAttempt = now
	if d.opts.Observe != nil {
		d.opts.Observe(route, e, via, err)
	}
	switch {
	case err == nil:
		e.State, e.DoneAt, e.LastError = Delivered, now, ""
		if err := d.finish(e, d.hooks.Delivered); err != nil {
			d.log.Error("record delivery", "route", route, "key", e.Msg.Key, "err", err)
			return d.opts.BackoffBase
		}
		// The hook may have queued work on other routes (the wearer's
		// confirmation after an ARC ACK): wake them rather than leave it to
		// their idle poll.
		d.Wake()
		r.mu.Lock()
		if r.failures > 0 {
			d.log.Info("route recovered", "route", route, "after_failures", r.failures)
		}
		r.failures, r.lastErr = 0, ""
		r.mu.Unlock()
		return 0
	case forward.IsPermanent(err):
		e.State, e.DoneAt, e.LastError = Failed, now, err.Error()
		d.log.Error("receiver refused message permanently", "route", route, "key", e.Msg.Key, "alert", e.Msg.AlertID, "err", err)
		if err := d.finish(e, d.hooks.Failed); err != nil {
			d.log.Error("record failure", "route", route, "key", e.Msg.Key, "err", err)
			return d.opts.BackoffBase
		}
		d.Wake()
		return 0
	default:
		e.LastError = err.Error()
		if err := d.update(e); err != nil {
			d.log.Error("record attempt", "route", route, "key", e.Msg.Key, "err", err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.failures++
		wait := Backoff(d.opts.BackoffBase, d.opts.BackoffMax, r.failures, rand.Float64())
		if asked, ok := forward.RetryDelay(err); ok {
			wait = max(wait, min(asked, time.Hour))
		}
		r.until = now.Add(wait)
		if e.LastError != r.lastErr { // log when the error changes, not every attempt
			d.log.Warn("delivery failed; retrying", "route", route, "key", e.Msg.Key, "attempt", e.Attempts, "retry_in", wait, "err", err)
			r.lastErr = e.LastError
		}
		return wait
	}
}

// settle waits, after the send of an entry expedited before its queueing
// transaction began, for that transaction to end, and returns the entry as
// stored: found is false when it was not committed (rolled back, or the
// event was a duplicate of one already handled). An entry expedited inside
// its transaction needs no settling: the route's next write transaction
// runs after it, and checks that the entry is there.
func (d *Dispatcher) settle(ctx context.Context, x *expedited) (Entry, bool) {
	select {
	case <-x.ready:
	case <-ctx.Done():
		return x.entry, false
	}
	var e Entry
	var found bool
	err := d.db.View(func(tx *bolt.Tx) error {
		var err error
		e, found, err = locate(tx, x.entry)
		return err
	})
	if err != nil || !found {
		d.log.Info("expedited message was sent, but no entry for it was committed; the delivery is not recorded",
			"route", x.entry.Route, "key", x.entry.Msg.Key, "err", err)
		return x.entry, false
	}
	return e, true
}

// locate finds the pending entry a preview (id 0) stands for, by its
// alert, route and key.
func locate(tx *bolt.Tx, e Entry) (Entry, bool, error) {
	b, err := routeBucket(tx, e.Route, bucketPending)
	if err != nil || b == nil {
		return e, false, err
	}
	k := alertIndexKey(e.Msg.AlertID, e.Route, 0)
	prefix := k[:len(k)-8]
	var ids []uint64
	c := tx.Bucket(bucketByAlert).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) == len(prefix)+8 {
			ids = append(ids, binary.BigEndian.Uint64(k[len(prefix):]))
		}
	}
	for _, id := range ids {
		raw := b.Get(pendingKey(e.Msg, id))
		if raw == nil {
			continue
		}
		var cur Entry
		if err := json.Unmarshal(raw, &cur); err != nil {
			return e, false, fmt.Errorf("outbox: decode entry %d: %w", id, err)
		}
		if cur.Msg.Key == e.Msg.Key && cur.Msg.AlertID == e.Msg.AlertID {
			return cur, true, nil
		}
	}
	return e, false, nil
}

// Backoff is the capped exponential delay before retry number n (1-based),
// with jitter u in [0,1): a uniform draw from the upper half of the step, so
// retries from many gateways spread out but never come sooner than half.
func Backoff(base, maxWait time.Duration, n int, u float64) time.Duration {
	step := base
	for i := 1; i < n && step < maxWait; i++ {
		step *= 2
	}
	step = min(step, maxWait)
	return step/2 + time.Duration(u*float64(step/2))
}

// head returns the first pending entry of route, and whether another
// follows it.
func (d *Dispatcher) head(route string) (e Entry, ok, more bool, err error) {
	err = d.db.View(func(tx *bolt.Tx) error {
		b, err := routeBucket(tx, route, bucketPending)
		if err != nil || b == nil {
			return err
		}
		c := b.Cursor()
		_, v := c.First()
		if v == nil {
			return nil
		}
		ok = true
		next, _ := c.Next()
		more = next != nil
		return json.Unmarshal(v, &e)
	})
	return e, ok, more, err
}

// update records an attempt's result on the stored entry. It re-reads the
// entry inside the transaction and copies only the attempt fields, because
// escalation may have changed the stored copy while the send was under way.
func (d *Dispatcher) update(e Entry) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b, err := routeBucket(tx, e.Route, bucketPending)
		if err != nil {
			return err
		}
		cur, err := current(b, e)
		if err != nil {
			return err
		}
		return putEntry(b, pendingKey(e.Msg, e.ID), cur)
	})
}

// current returns the stored pending entry with e's attempt fields applied.
func current(b *bolt.Bucket, e Entry) (Entry, error) {
	var cur Entry
	raw := b.Get(pendingKey(e.Msg, e.ID))
	if raw == nil {
		return cur, fmt.Errorf("outbox: entry %d on %s is no longer pending", e.ID, e.Route)
	}
	if err := json.Unmarshal(raw, &cur); err != nil {
		return cur, fmt.Errorf("outbox: decode entry %d: %w", e.ID, err)
	}
	if cur.Msg.Key != e.Msg.Key || cur.Msg.AlertID != e.Msg.AlertID {
		// An expedited entry whose transaction rolled back, its id since
		// taken by another message.
		return cur, fmt.Errorf("outbox: entry %d on %s is now %s, not %s", e.ID, e.Route, cur.Msg.Key, e.Msg.Key)
	}
	cur.State, cur.Attempts, cur.LastAttempt, cur.LastError, cur.DoneAt = e.State, e.Attempts, e.LastAttempt, e.LastError, e.DoneAt
	return cur, nil
}

// finish moves e from pending to done and runs hook in the same transaction,
// so the alert's state and the entry's never disagree after a crash.
func (d *Dispatcher) finish(e Entry, hook func(*bolt.Tx, Entry) error) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		p, err := routeBucket(tx, e.Route, bucketPending)
		if err != nil {
			return err
		}
		cur, err := current(p, e)
		if err != nil {
			return err
		}
		if err := p.Delete(pendingKey(e.Msg, e.ID)); err != nil {
			return err
		}
		done, err := routeBucket(tx, e.Route, bucketDone)
		if err != nil {
			return err
		}
		if err := putEntry(done, binary.BigEndian.AppendUint64(nil, e.ID), cur); err != nil {
			return err
		}
		if hook != nil {
			return hook(tx, cur)
		}
		return nil
	})
}

func (d *Dispatcher) runEscalation(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.probe:
			// Probe: the loop is between rounds, not stuck in one. A write
			// transaction now makes a writer stuck in fsync, or a deadlock on
			// the database, stop the answer to the next probe.
			if err := d.db.Update(func(*bolt.Tx) error { return nil }); err != nil {
				d.log.Error("probe write", "err", err)
			}
		case <-t.C:
			if n, err := d.Escalate(); err != nil {
				d.log.Error("escalation", "err", err)
			} else if n > 0 {
				d.Wake()
			}
		}
	}
}

// Escalate queues on each route's backup every pending message older than the
// route's escalation delay that has not been escalated yet, and returns how
// many it queued.
func (d *Dispatcher) Escalate() (int, error) {
	now := d.opts.Now()
	n := 0
	for _, r := range d.list() {
		r.mu.Lock()
		backup, after := r.Backup, r.EscalateAfter
		r.mu.Unlock()
		if backup == "" || after <= 0 {
			continue
		}
		// Look first in a read transaction: a write transaction costs two
		// fsyncs even when it changes nothing, four times a second, on the
		// writer the alert path needs.
		var anyDue bool
		err := d.db.View(func(tx *bolt.Tx) error {
			due, _, err := dueForEscalation(tx, r.Name, after, now)
			anyDue = len(due) > 0
			return err
		})
		if err == nil && anyDue {
			err = d.db.Update(func(tx *bolt.Tx) error {
				due, b, err := dueForEscalation(tx, r.Name, after, now)
				if err != nil {
					return err
				}
				for _, e := range due {
					if _, err := Enqueue(tx, backup, e.Msg, now); err != nil {
						return err
					}
					e.Escalated = true
					if err := putEntry(b, pendingKey(e.Msg, e.ID), e); err != nil {
						return err
					}
					d.log.Warn("not acknowledged in time; escalating to backup", "route", r.Name, "backup", backup, "key", e.Msg.Key, "alert", e.Msg.AlertID)
					n++
				}
				return nil
			})
		}
		if err != nil {
			return n, fmt.Errorf("outbox: escalate %s: %w", r.Name, err)
		}
	}
	return n, nil
}

// dueForEscalation returns route's pending entries that are not escalated
// yet and at least after old, with the pending bucket (nil in a read
// transaction when the route has never had one).
func dueForEscalation(tx *bolt.Tx, route string, after time.Duration, now time.Time) ([]Entry, *bolt.Bucket, error) {
	b, err := routeBucket(tx, route, bucketPending)
	if err != nil || b == nil {
		return nil, b, err
	}
	var due []Entry
	err = b.ForEach(func(_, v []byte) error {
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		if !e.Escalated && now.Sub(e.Created) >= after {
			due = append(due, e)
		}
		return nil
	})
	return due, b, err
}

// RouteStats describes one route's queue.
type RouteStats struct {
	Route     string    `json:"route"`
	Depth     int       `json:"depth"`
	Oldest    time.Time `json:"oldest,omitzero"`
	Failures  int       `json:"consecutive_failures"`
	LastError string    `json:"last_error,omitempty"`
}

// Stats reports every route's queue depth and oldest pending message.
func (d *Dispatcher) Stats() ([]RouteStats, error) {
	var out []RouteStats
	err := d.db.View(func(tx *bolt.Tx) error {
		for _, r := range d.list() {
			name := r.Name
			s := RouteStats{Route: name}
			r.mu.Lock()
			s.Failures, s.LastError = r.failures, r.lastErr
			r.mu.Unlock()
			b, err := routeBucket(tx, name, bucketPending)
			if err != nil {
				return err
			}
			if b != nil {
				if err := b.ForEach(func(_, v []byte) error {
					var e Entry
					if err := json.Unmarshal(v, &e); err != nil {
						return err
					}
					s.Depth++
					if s.Oldest.IsZero() || e.Created.Before(s.Oldest) {
						s.Oldest = e.Created
					}
					return nil
				}); err != nil {
					return err
				}
			}
			out = append(out, s)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b RouteStats) int { return cmp.Compare(a.Route, b.Route) })
	return out, err
}
