// Package timer keeps durable timers in the gateway database: amber visit
// deadlines, their grace periods, device-offline deadlines. A timer is set
// inside the transaction that decided it, and fires inside a transaction that
// also deletes it, so a restart in between neither forgets a timer nor fires
// it twice.
package timer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketDue = []byte("timers-due") // due (unix ns, 8 bytes BE) + id → Timer
	bucketIDs = []byte("timers-id")  // id → due key
)

// Timer is one pending deadline.
type Timer struct {
	ID   string          `json:"id"`   // unique; setting the same id again replaces it
	Kind string          `json:"kind"` // what firing means, for the owner
	Due  time.Time       `json:"due"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Init creates the timer buckets.
func Init(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketDue, bucketIDs} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

func dueKey(t Timer) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(t.Due.UnixNano())), t.ID...)
}

// Set schedules t, replacing any timer with the same id.
func Set(tx *bolt.Tx, t Timer) error {
	if err := Cancel(tx, t.ID); err != nil {
		return err
	}
	v, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("timer: encode %s: %w", t.ID, err)
	}
	k := dueKey(t)
	if err := tx.Bucket(bucketDue).Put(k, v); err != nil {
		return fmt.Errorf("timer: set %s: %w", t.ID, err)
	}
	return tx.Bucket(bucketIDs).Put([]byte(t.ID), k)
}

// Cancel removes the timer with id, if any.
func Cancel(tx *bolt.Tx, id string) error {
	ids := tx.Bucket(bucketIDs)
	k := ids.Get([]byte(id))
	if k == nil {
		return nil
	}
	if err := tx.Bucket(bucketDue).Delete(k); err != nil {
		return fmt.Errorf("timer: cancel %s: %w", id, err)
	}
	return ids.Delete([]byte(id))
}

// Get returns the timer with id, if one is set.
func Get(tx *bolt.Tx, id string) (Timer, bool, error) {
	var t Timer
	k := tx.Bucket(bucketIDs).Get([]byte(id))
	if k == nil {
		return t, false, nil
	}
	if err := json.Unmarshal(tx.Bucket(bucketDue).Get(k), &t); err != nil {
		return t, false, fmt.Errorf("timer: decode %s: %w", id, err)
	}
	return t, true, nil
}

// FireFunc makes a due timer's consequences inside tx. The timer has already
// been removed in tx; FireFunc may set it (or others) again.
type FireFunc func(tx *bolt.Tx, t Timer) error

// Wheel fires due timers.
type Wheel struct {
	db    *bolt.DB
	fire  FireFunc
	now   func() time.Time
	log   *slog.Logger
	wake  chan struct{}
	probe chan struct{} // answered by Run between rounds (Probe)
	// Fired, if set, is called after each commit that fired timers.
	Fired func()
}

// NewWheel makes a Wheel over db's timers.
func NewWheel(db *bolt.DB, fire FireFunc, now func() time.Time, log *slog.Logger) (*Wheel, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := db.Update(Init); err != nil {
		return nil, fmt.Errorf("timer: init: %w", err)
	}
	return &Wheel{db: db, fire: fire, now: now, log: log.With("component", "timer"), wake: make(chan struct{}, 1), probe: make(chan struct{})}, nil
}

// Wake makes Run look at the earliest timer again (after one was set).
func (w *Wheel) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// maxSleep bounds how long Run sleeps, so a clock that jumps is noticed.
const maxSleep = time.Second

// Run fires timers as they fall due until ctx is done.
func (w *Wheel) Run(ctx context.Context) error {
	for {
		n, next, err := w.FireDue()
		if err != nil {
			w.log.Error("firing timers", "err", err)
		} else if n > 0 && w.Fired != nil {
			w.Fired()
		}
		sleep := maxSleep
		if !next.IsZero() {
			sleep = min(max(next.Sub(w.now()), 0), maxSleep)
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-w.wake:
		case <-w.probe: // Probe: between rounds, not stuck in one
		case <-t.C:
		}
		t.Stop()
	}
}

// Probe returns nil once Run has come round to answer it, or an error when
// ctx ends first. Each round fires due timers in a write transaction, so a
// stuck fsync or a deadlock on the database stops the answer.
func (w *Wheel) Probe(ctx context.Context) error {
	select {
	case w.probe <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("timer: loop did not answer: %w", ctx.Err())
	}
}

// FireDue fires every timer due at the wheel's now, each in its own
// transaction, and returns how many fired and when the next one is due.
func (w *Wheel) FireDue() (fired int, next time.Time, err error) {
	for {
		var t Timer
		var due bool
		err := w.db.Update(func(tx *bolt.Tx) error {
			k, v := tx.Bucket(bucketDue).Cursor().First()
			if k == nil {
				return nil
			}
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("timer: decode %q: %w", k, err)
			}
			if t.Due.After(w.now()) {
				next = t.Due
				return nil
			}
			due = true
			if err := Cancel(tx, t.ID); err != nil {
				return err
			}
			return w.fire(tx, t)
		})
		if err != nil {
			return fired, next, err
		}
		if !due {
			return fired, next, nil
		}
		fired++
		w.log.Debug("timer fired", "id", t.ID, "kind", t.Kind)
	}
}
