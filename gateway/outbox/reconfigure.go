package outbox

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Moved is the state of an entry whose route was removed from the
// configuration and whose message was queued on another route instead (or
// was already there). It is final, like Delivered, but says nothing about
// whether any receiver has the message: the entry it was moved to does.
const Moved State = "moved"

// route returns the named route's state, nil if it is not configured.
func (d *Dispatcher) route(name string) *routeState {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.routes[name]
}

// list returns the configured routes in name order.
func (d *Dispatcher) list() []*routeState {
	d.mu.RLock()
	out := make([]*routeState, 0, len(d.routes))
	for _, r := range d.routes {
		out = append(out, r)
	}
	d.mu.RUnlock()
	slices.SortFunc(out, func(a, b *routeState) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (r *routeState) sender() Sender {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Sender
}

// Routes names the configured routes, sorted.
func (d *Dispatcher) Routes() []string {
	var out []string
	for _, r := range d.list() {
		out = append(out, r.Name)
	}
	return out
}

// Probe returns nil once the dispatcher's escalation loop has come round to
// answer it, or an error when ctx ends first. That loop runs an empty write
// transaction after each answer (its rounds only read, unless a message is
// due for its backup), so a writer stuck in fsync, or a deadlock on the
// database, stops the next answer. The per-route loops are
// not probed: they legitimately wait on receivers for up to the send timeout,
// and a receiver that does not answer is not a fault restarting would fix.
func (d *Dispatcher) Probe(ctx context.Context) error {
	select {
	case d.probe <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outbox: escalation loop did not answer: %w", ctx.Err())
	}
}

// Reconfigure adds routes and updates existing ones with the same name (a
// new sender, backup or escalation delay) while the dispatcher runs; routes
// not named are left alone (Retire removes them). Queued messages are never
// touched: a route whose receiver changed delivers its queue to the new
// receiver. Every backup must name a route configured after the change.
func (d *Dispatcher) Reconfigure(routes []Route) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[string]bool{}
	for _, r := range routes {
		if r.Name == "" || r.Sender == nil {
			return fmt.Errorf("outbox: route %q needs a name and a sender", r.Name)
		}
		if seen[r.Name] {
			return fmt.Errorf("outbox: route %q configured twice", r.Name)
		}
		seen[r.Name] = true
	}
	for _, r := range routes {
		if r.Backup != "" && !seen[r.Backup] && d.routes[r.Backup] == nil {
			return fmt.Errorf("outbox: route %q escalates to unknown route %q", r.Name, r.Backup)
		}
	}
	for _, r := range routes {
		cur := d.routes[r.Name]
		if cur == nil {
			d.routes[r.Name] = &routeState{Route: r, wake: make(chan struct{}, 1)}
			continue
		}
		cur.mu.Lock()
		if cur.Sender != r.Sender {
			// A new receiver starts without the old one's backoff.
			cur.Sender, cur.failures, cur.until, cur.lastErr = r.Sender, 0, time.Time{}, ""
		}
		cur.Backup, cur.EscalateAfter = r.Backup, r.EscalateAfter
		cur.mu.Unlock()
	}
	select {
	case d.changed <- struct{}{}:
	default:
	}
	for _, r := range d.routes {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Retired says what became of one removed route's queue.
type Retired struct {
	Route string `json:"route"`
	// To is the route its pending messages were moved to ("" for none).
	To string `json:"to,omitempty"`
	// Moved messages were queued on To; Already were on To before (pending
	// or delivered) and were only marked Moved; Kept stay pending on the
	// removed route, delivered if a route of that name is configured again.
	Moved, Already, Kept int
}

// Retire removes routes while the dispatcher runs. It first waits for a
// delivery attempt under way on each to finish (it is cancelled), so no
// message is sent on a retired route afterwards. Then each route's pending
// messages go to successor(route) when that names a configured route:
// queued there (keeping their creation time, so escalation still counts
// from the alarm) unless the same message is already there, and recorded as
// Moved on the retired route. Without a successor they stay pending where
// they are. Nothing is ever deleted.
func (d *Dispatcher) Retire(names []string, successor func(route string) string) ([]Retired, error) {
	d.mu.Lock()
	var gone []*routeState
	for _, n := range names {
		if r := d.routes[n]; r != nil {
			delete(d.routes, n)
			if r.cancel != nil {
				r.cancel()
			}
			gone = append(gone, r)
		}
	}
	d.mu.Unlock()
	for _, r := range gone {
		r.stepMu.Lock()
		r.retired = true
		r.stepMu.Unlock()
	}
	var out []Retired
	for _, n := range names {
		to := ""
		if successor != nil {
			to = successor(n)
		}
		if to != "" && d.route(to) == nil {
			to = ""
		}
		res, err := d.Adopt(n, to)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	if slices.ContainsFunc(out, func(r Retired) bool { return r.Moved > 0 }) {
		d.Wake()
	}
	return out, nil
}

// Orphans returns, for each route that has pending messages in the database
// but is not configured (removed from the configuration while the gateway
// was stopped), how many are pending.
func (d *Dispatcher) Orphans() (map[string]int, error) {
	out := map[string]int{}
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRoot).ForEachBucket(func(k []byte) error {
			name := string(k)
			if d.route(name) != nil {
				return nil
			}
			if p := tx.Bucket(bucketRoot).Bucket(k).Bucket(bucketPending); p != nil {
				if n := p.Stats().KeyN; n > 0 {
					out[name] = n
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: orphans: %w", err)
	}
	return out, nil
}

// Adopt moves the pending messages of route from, which must not be
// configured, to route to, as Retire describes; with to "" it only counts
// them as kept.
func (d *Dispatcher) Adopt(from, to string) (Retired, error) {
	res := Retired{Route: from, To: to}
	if d.route(from) != nil {
		return res, fmt.Errorf("outbox: adopt: route %q is still configured", from)
	}
	now := d.opts.Now()
	err := d.db.Update(func(tx *bolt.Tx) error {
		res.Moved, res.Already, res.Kept = 0, 0, 0
		p, err := routeBucket(tx, from, bucketPending)
		if err != nil {
			return err
		}
		var pending []Entry
		if err := p.ForEach(func(_, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("outbox: decode entry on %s: %w", from, err)
			}
			pending = append(pending, e)
			return nil
		}); err != nil {
			return err
		}
		if to == "" {
			res.Kept = len(pending)
			return nil
		}
		for _, e := range pending {
			there, err := ForAlert(tx, e.Msg.AlertID)
			if err != nil {
				return err
			}
			already := slices.ContainsFunc(there, func(x Entry) bool { return x.Route == to && x.Msg.Key == e.Msg.Key })
			note := fmt.Sprintf("route %s removed from the configuration; already queued on %s", from, to)
			if !already {
				moved, err := Enqueue(tx, to, e.Msg, now)
				if err != nil {
					return err
				}
				moved.Created = e.Created
				b, err := routeBucket(tx, to, bucketPending)
				if err != nil {
					return err
				}
				if err := putEntry(b, pendingKey(moved.Msg, moved.ID), moved); err != nil {
					return err
				}
				note = fmt.Sprintf("route %s removed from the configuration; moved to %s as entry %d", from, to, moved.ID)
				res.Moved++
			} else {
				res.Already++
			}
			if err := p.Delete(pendingKey(e.Msg, e.ID)); err != nil {
				return err
			}
			done, err := routeBucket(tx, from, bucketDone)
			if err != nil {
				return err
			}
			e.State, e.DoneAt, e.LastError = Moved, now, note
			if err := putEntry(done, binary.BigEndian.AppendUint64(nil, e.ID), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("outbox: move %s to %s: %w", from, to, err)
	}
	return res, nil
}
