// Package journal is the gateway's durable event journal. Every device event
// and every rejected message is written here, fsynced, and only then
// acknowledged to its sender. Writes from many devices share one fsync (group
// commit) without waiting for a batch to fill: the writer takes whatever is
// queued when the previous commit finishes, so an event alone on the line is
// committed at once and a duress is never held back for others.
//
// Each new event is applied (turned into alerts and outbox entries by the
// caller's Apply function) inside the same transaction that journals it, so a
// crash leaves either the event with all of its consequences, or nothing and
// an unacknowledged message that the broker will deliver again.
package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/devices/registry"
)

var (
	bucketEvents     = []byte("events")
	bucketQuarantine = []byte("quarantine")
	bucketLatest     = []byte("latest-ephemeral") // device → seq (8 bytes) + id
)

// ErrClosed is returned for work submitted after the journal stopped.
var ErrClosed = errors.New("journal: closed")

// Record is one event as journaled.
type Record struct {
	Site     string        `json:"site"`
	Event    devices.Event `json:"event"`
	Received time.Time     `json:"received"`
	Source   string        `json:"source"` // "mqtt", "serial"
	Warnings []string      `json:"warnings,omitempty"`
	// Registered is the registry entry for the device when the event arrived,
	// nil if the device was unknown. Journaling it records what the gateway
	// knew at the time, so a replay decides the same way.
	Registered *registry.Device `json:"registered,omitempty"`
	// Monotonic says the transport guarantees seqs only grow (a serial
	// counter under a MAC): a seq not newer than the device's last accepted
	// one, other than an exact retransmission of it, is then a replay.
	Monotonic bool `json:"monotonic,omitempty"`
}

// Key is the record's idempotency key: device id and device sequence number.
func (r Record) Key() string { return fmt.Sprintf("%s:%d", r.Event.Device, r.Event.Seq) }

// Rejected is a message that failed validation, kept for inspection.
type Rejected struct {
	ID       uint64    `json:"id"`
	Received time.Time `json:"received"`
	Source   string    `json:"source"`
	Topic    string    `json:"topic"`
	Device   string    `json:"device,omitempty"`
	Reason   string    `json:"reason"` // bounded label, e.g. the failing field
	Error    string    `json:"error"`
	Payload  []byte    `json:"payload,omitempty"` // at most MaxQuarantinePayload bytes
}

// MaxQuarantinePayload caps how much of a rejected payload is kept.
const MaxQuarantinePayload = 4096

// Outcome says what happened to a submitted record.
type Outcome int

// Outcomes.
const (
	// Appended: journaled for the first time and applied.
	Appended Outcome = iota
	// Duplicate: the same device, seq and id were journaled before (a
	// redelivery); nothing was written.
	Duplicate
	// Conflict: the device reused a seq with a different event id. The event
	// was quarantined, or for an urgent event journaled under a distinct key and
	// applied, so that a device that lost its counter still gets help.
	Conflict
	// Quarantined: a rejected message was stored in quarantine.
	Quarantined
	// Replayed: a monotonic transport delivered a seq not newer than the
	// device's last accepted one; it was quarantined with reason "replay".
	Replayed
)

// ApplyFunc turns a newly journaled record into its consequences inside the
// journal's transaction. key is the idempotency key under which it was
// journaled (Record.Key, or a distinct key after a seq conflict).
type ApplyFunc func(tx *bolt.Tx, rec Record, key string) error

// Options configure a Journal.
type Options struct {
	Apply     ApplyFunc // required
	Committed func()    // called after each commit that applied something
	MaxBatch  int       // default 1024
	// Ephemeral marks records that are applied but not kept as rows
	// (heartbeats): their consequences (last seen, the offline deadline) are
	// all that matters, and a row each would grow the database without bound.
	// They are deduplicated against the device's latest ephemeral seq.
	Ephemeral func(Record) bool
	Logger    *slog.Logger
}

type item struct {
	rec  *Record
	rej  *Rejected
	done func(Outcome, error)
}

// Journal owns the events and quarantine buckets of a bbolt database.
type Journal struct {
	db    *bolt.DB
	opts  Options
	log   *slog.Logger
	in    chan item
	stop  chan struct{}
	probe chan struct{} // answered by Run between commits (Probe)

	mu      sync.RWMutex
	closed  bool
	sending sync.WaitGroup // submitters between the closed check and their send
}

// New prepares the journal's buckets in db.
func New(db *bolt.DB, opts Options) (*Journal, error) {
	if opts.Apply == nil {
		return nil, errors.New("journal: Apply is required")
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketQuarantine, bucketLatest} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: create buckets: %w", err)
	}
	return &Journal{db: db, opts: opts, log: opts.Logger.With("component", "journal"),
		in: make(chan item, opts.MaxBatch), stop: make(chan struct{}), probe: make(chan struct{})}, nil
}

// Submit queues rec for the next commit and calls done once it is durable (or
// failed). done runs on the journal's goroutine and must not block for long:
// acknowledging to a broker or serial peer is its purpose.
func (j *Journal) Submit(ctx context.Context, rec Record, done func(Outcome, error)) {
	j.submit(ctx, item{rec: &rec, done: done})
}

// Quarantine queues a rejected message for the next commit.
func (j *Journal) Quarantine(ctx context.Context, r Rejected, done func(Outcome, error)) {
	if len(r.Payload) > MaxQuarantinePayload {
		r.Payload = r.Payload[:MaxQuarantinePayload]
	}
	j.submit(ctx, item{rej: &r, done: done})
}

func (j *Journal) submit(ctx context.Context, it item) {
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		it.done(0, ErrClosed)
		return
	}
	j.sending.Add(1)
	j.mu.RUnlock()
	defer j.sending.Done()
	select {
	case j.in <- it:
	case <-j.stop:
		it.done(0, ErrClosed)
	case <-ctx.Done():
		it.done(0, fmt.Errorf("journal: submit: %w", ctx.Err()))
	}
}

// Run commits queued work until ctx is done, then commits what is already
// queued and returns.
func (j *Journal) Run(ctx context.Context) error {
	batch := make([]item, 0, j.opts.MaxBatch)
	for {
		select {
		case it := <-j.in:
			batch = append(batch[:0], it)
		case <-j.probe: // Probe: between commits, not stuck in one
			continue
		case <-ctx.Done():
			j.shutdown()
			return nil
		}
	drain:
		for len(batch) < j.opts.MaxBatch {
			select {
			case it := <-j.in:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		j.commit(batch)
	}
}

// Probe returns nil once Run has come round to answer it between commits,
// or an error when ctx ends first: a commit stuck in fsync, or an Apply that
// never returns, stops the answer.
func (j *Journal) Probe(ctx context.Context) error {
	select {
	case j.probe <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("journal: commit loop did not answer: %w", ctx.Err())
	}
}

// shutdown refuses new work, then commits everything already submitted, so
// every submitter hears back exactly once.
func (j *Journal) shutdown() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	allIn := make(chan struct{})
	go func() { j.sending.Wait(); close(allIn) }()
	for {
		select {
		case it := <-j.in:
			j.commit([]item{it})
		case <-allIn:
			for {
				select {
				case it := <-j.in:
					j.commit([]item{it})
				default:
					return
				}
			}
		}
	}
}

func (j *Journal) commit(batch []item) {
	outcomes := make([]Outcome, len(batch))
	applied := false
	err := j.db.Update(func(tx *bolt.Tx) error {
		applied = false
		for i, it := range batch {
			var err error
			if it.rej != nil {
				outcomes[i], err = j.quarantine(tx, *it.rej)
			} else {
				outcomes[i], err = j.append(tx, *it.rec)
				applied = applied || outcomes[i] == Appended || outcomes[i] == Conflict
			}
			if err != nil {
				return err
			}
		}
		return nil
	}) // bbolt's Update fsyncs before it returns: after this line the batch is durable.
	if err != nil {
		j.log.Error("journal commit failed; messages stay unacknowledged", "batch", len(batch), "err", err)
		err = fmt.Errorf("journal: commit: %w", err)
	}
	for i, it := range batch {
		it.done(outcomes[i], err)
	}
	if err == nil && applied && j.opts.Committed != nil {
		j.opts.Committed()
	}
}

func eventKey(device string, seq uint64) []byte {
	k := make([]byte, 0, len(device)+9)
	k = append(k, device...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, seq)
}

func (j *Journal) append(tx *bolt.Tx, rec Record) (Outcome, error) {
	if rec.Monotonic {
		if o, decided, err := j.checkMonotonic(tx, rec); decided {
			return o, err
		}
	}
	if j.opts.Ephemeral != nil && j.opts.Ephemeral(rec) {
		return j.appendEphemeral(tx, rec)
	}
	b := tx.Bucket(bucketEvents)
	k := eventKey(rec.Event.Device, rec.Event.Seq)
	key := rec.Key()
	if old := b.Get(k); old != nil {
		var prev Record
		if err := json.Unmarshal(old, &prev); err != nil {
			return 0, fmt.Errorf("journal: decode %s: %w", key, err)
		}
		if prev.Event.ID == rec.Event.ID {
			return Duplicate, nil
		}
		if !rec.Event.Type.Urgent() {
			_, err := j.quarantine(tx, Rejected{Received: rec.Received, Source: rec.Source, Device: rec.Event.Device,
				Topic: devices.EventTopic(rec.Site, rec.Event.Device), Reason: "seq",
				Error: fmt.Sprintf("devices: seq: %d was already used by event %q; this one is %q", rec.Event.Seq, prev.Event.ID, rec.Event.ID)})
			return Conflict, err
		}
		// An urgent event that reuses a seq (a device that lost its counter)
		// is journaled under a key that includes its id, and raised.
		sum := sha256.Sum256([]byte(rec.Event.ID))
		suffix := hex.EncodeToString(sum[:4])
		key = key + ":" + suffix
		k = append(k, suffix...)
		if b.Get(k) != nil {
			return Duplicate, nil
		}
		rec.Warnings = append(rec.Warnings, fmt.Sprintf("seq: %d reused with a new event id", rec.Event.Seq))
		if err := j.put(tx, b, k, rec, key); err != nil {
			return 0, err
		}
		return Conflict, nil
	}
	return Appended, j.put(tx, b, k, rec, key)
}

// appendEphemeral applies a record kept only as its device's latest: the same
// or an older seq is a redelivery.
func (j *Journal) appendEphemeral(tx *bolt.Tx, rec Record) (Outcome, error) {
	if seq, _, ok := latestEphemeral(tx, rec.Event.Device); ok && rec.Event.Seq <= seq {
		return Duplicate, nil
	}
	v := append(binary.BigEndian.AppendUint64(nil, rec.Event.Seq), rec.Event.ID...)
	if err := tx.Bucket(bucketLatest).Put([]byte(rec.Event.Device), v); err != nil {
		return 0, fmt.Errorf("journal: latest %s: %w", rec.Key(), err)
	}
	if err := j.opts.Apply(tx, rec, rec.Key()); err != nil {
		return 0, fmt.Errorf("journal: apply %s: %w", rec.Key(), err)
	}
	return Appended, nil
}

// checkMonotonic decides a record from a transport whose seqs only grow: a
// seq not newer than the device's last accepted one is a replay, unless it is
// an exact retransmission of that last one, which is a duplicate to re-ack.
func (j *Journal) checkMonotonic(tx *bolt.Tx, rec Record) (Outcome, bool, error) {
	last, lastID, ok, err := lastAccepted(tx, rec.Event.Device)
	if err != nil || !ok || rec.Event.Seq > last {
		return 0, err != nil, err
	}
	if rec.Event.Seq == last && rec.Event.ID == lastID {
		return Duplicate, true, nil // the device did not hear our ack and sent it again
	}
	_, err = j.quarantine(tx, Rejected{Received: rec.Received, Source: rec.Source, Device: rec.Event.Device,
		Topic: rec.Source, Reason: "replay",
		Error: fmt.Sprintf("devices: seq: counter %d is not newer than the last accepted %d (replay)", rec.Event.Seq, last)})
	return Replayed, true, err
}

// lastAccepted returns the highest seq accepted from device, kept as a row or
// as its latest ephemeral record, and that event's id.
func lastAccepted(tx *bolt.Tx, device string) (seq uint64, id string, ok bool, err error) {
	if s, found := lastSeq(tx.Bucket(bucketEvents), device); found {
		var prev Record
		if err := json.Unmarshal(tx.Bucket(bucketEvents).Get(eventKey(device, s)), &prev); err != nil {
			return 0, "", false, fmt.Errorf("journal: decode %s:%d: %w", device, s, err)
		}
		seq, id, ok = s, prev.Event.ID, true
	}
	if s, sid, found := latestEphemeral(tx, device); found && (!ok || s > seq) {
		seq, id, ok = s, sid, true
	}
	return seq, id, ok, nil
}

// latestEphemeral returns the seq and event id of device's latest
// ephemeral record, ok false when it has none.
func latestEphemeral(tx *bolt.Tx, device string) (seq uint64, id string, ok bool) {
	v := tx.Bucket(bucketLatest).Get([]byte(device))
	if len(v) < 8 {
		return 0, "", false
	}
	return binary.BigEndian.Uint64(v), string(v[8:]), true
}

// lastSeq returns the highest seq journaled for device.
func lastSeq(b *bolt.Bucket, device string) (uint64, bool) {
	prefix := append([]byte(device), 0)
	c := b.Cursor()
	k, _ := c.Seek(append(bytes.Clone(prefix), 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) < len(prefix)+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), true
}

func (j *Journal) put(tx *bolt.Tx, b *bolt.Bucket, k []byte, rec Record, key string) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal: encode %s: %w", key, err)
	}
	if err := b.Put(k, v); err != nil {
		return fmt.Errorf("journal: put %s: %w", key, err)
	}
	if err := j.opts.Apply(tx, rec, key); err != nil {
		return fmt.Errorf("journal: apply %s: %w", key, err)
	}
	return nil
}

// Fresh reports whether rec would be journaled as new if it were committed
// now: no event under its key yet and, from a monotonic transport, a seq
// newer than the device's last accepted one. It only reads, so it never
// waits for a commit; two copies of a record submitted at once can both be
// fresh, and the journal then takes one of them.
func (j *Journal) Fresh(rec Record) (bool, error) {
	var fresh bool
	err := j.db.View(func(tx *bolt.Tx) error {
		if rec.Monotonic {
			last, _, ok, err := lastAccepted(tx, rec.Event.Device)
			if err != nil || (ok && rec.Event.Seq <= last) {
				return err
			}
		}
		if j.opts.Ephemeral != nil && j.opts.Ephemeral(rec) {
			seq, _, ok := latestEphemeral(tx, rec.Event.Device)
			fresh = !ok || rec.Event.Seq > seq
			return nil
		}
		fresh = tx.Bucket(bucketEvents).Get(eventKey(rec.Event.Device, rec.Event.Seq)) == nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("journal: fresh %s: %w", rec.Key(), err)
	}
	return fresh, nil
}

func (j *Journal) quarantine(tx *bolt.Tx, r Rejected) (Outcome, error) {
	b := tx.Bucket(bucketQuarantine)
	id, err := b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("journal: quarantine: %w", err)
	}
	r.ID = id
	v, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("journal: quarantine encode: %w", err)
	}
	return Quarantined, b.Put(binary.BigEndian.AppendUint64(nil, id), v)
}

// Quarantined lists the most recent rejected messages, newest first.
func (j *Journal) Quarantined(limit int) ([]Rejected, error) {
	var out []Rejected
	err := j.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQuarantine).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var r Rejected
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: list quarantine: %w", err)
	}
	return out, nil
}

// Count returns how many events are journaled.
func (j *Journal) Count() (int, error) {
	var n int
	err := j.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketEvents).Stats().KeyN
		return nil
	})
	return n, err
}
