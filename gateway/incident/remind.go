package incident

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Reminder tells a step's owner that it is overdue. For a confidential
// incident it carries no names: Wearer is empty, the incident id is a plain
// counter, and Owner is the confidential owner (a role), so a reminder
// passing through a shared inbox or chat channel discloses nothing.
type Reminder struct {
	Incident     string        `json:"incident"`
	Site         string        `json:"site"`
	Task         string        `json:"task"`
	Stage        string        `json:"stage"`
	Title        string        `json:"title"`
	Owner        string        `json:"owner"` // "" is the supervisor on duty
	Wearer       string        `json:"wearer,omitempty"`
	Due          time.Time     `json:"due"`
	Overdue      time.Duration `json:"overdue"` // how long past Due at the time asked
	Confidential bool          `json:"confidential"`
}

// needsReminder reports whether t is overdue at now and its owner has not
// been told since it fell due, or was told at least every ago.
func needsReminder(t Task, now time.Time, every time.Duration) bool {
	if t.Status != StatusOpen || !now.After(t.Due) {
		return false
	}
	return t.Reminded.IsZero() || t.Reminded.Before(t.Due) || now.Sub(t.Reminded) >= every
}

// Overdue returns a reminder for each open step past its due time whose
// owner has not been reminded since it fell due, or not for
// PlanConfig.RemindEvery: often enough that nobody's care is forgotten,
// rarely enough that the reminders are not ignored. Most overdue first.
func (s *Store) Overdue(now time.Time) ([]Reminder, error) {
	out := []Reminder{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(inc Incident) error {
			for _, t := range inc.Plan {
				if !needsReminder(t, now, s.opts.Plan.RemindEvery) {
					continue
				}
				r := Reminder{Incident: inc.ID, Site: inc.Site, Task: t.ID, Stage: t.Stage, Title: t.Title,
					Owner: t.Owner, Due: t.Due, Overdue: now.Sub(t.Due), Confidential: inc.Confidential}
				if !inc.Confidential {
					r.Wearer = inc.Wearer
				}
				out = append(out, r)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("incident: overdue: %w", err)
	}
	slices.SortFunc(out, func(a, b Reminder) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.Incident, b.Incident), cmp.Compare(a.Task, b.Task))
	})
	return out, nil
}

// OverdueCount returns how many open steps are past due at now, reminded or
// not, for the console's badge.
func (s *Store) OverdueCount(now time.Time) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEach(tx, func(inc Incident) error {
			n += inc.Overdue(now)
			return nil
		})
	})
	return n, err
}

// MarkReminded records that the owner of step taskID was reminded at now,
// so Overdue leaves it alone for PlanConfig.RemindEvery.
func (s *Store) MarkReminded(id, taskID string, now time.Time) error {
	_, err := s.update(id, func(inc *Incident) error {
		t, err := task(inc, taskID)
		if err != nil {
			return err
		}
		t.Reminded = now
		inc.History = append(inc.History, Change{At: now, By: "vigil", What: "reminded", Task: taskID, Note: t.Owner})
		return nil
	})
	return err
}

// RemindOnce sends every reminder due at now and marks each one sent. A
// reminder is marked only after send succeeds, so one that fails is sent
// again on the next round; a crash between the two re-sends one reminder,
// which is better than losing it. It returns how many were sent and the
// first error.
func (s *Store) RemindOnce(ctx context.Context, send func(Reminder) error, now time.Time) (int, error) {
	rs, err := s.Overdue(now)
	if err != nil {
		return 0, err
	}
	sent := 0
	var first error
	for _, r := range rs {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		if err := send(r); err != nil {
			first = cmp.Or(first, fmt.Errorf("incident: remind %s %s: %w", r.Incident, r.Task, err))
			continue
		}
		if err := s.MarkReminded(r.Incident, r.Task, now); err != nil {
			first = cmp.Or(first, err)
			continue
		}
		sent++
	}
	return sent, first
}

// Run sends reminders at once and then every interval until ctx is done,
// reading the time from now (Options.Now if nil). Failures are logged and
// retried on the next round rather than stopping the loop: a mail server
// being down must not end reminders for good.
func (s *Store) Run(ctx context.Context, send func(Reminder) error, every time.Duration, now func() time.Time) error {
	if now == nil {
		now = s.opts.Now
	}
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr string
	for {
		_, err := s.RemindOnce(ctx, send, now())
		// Log when the error changes, not every round, so an outage is
		// one line rather than thousands.
		if msg := fmt.Sprint(err); err != nil && msg != lastErr && ctx.Err() == nil {
			s.log.Error("sending reminders", "err", err)
			lastErr = msg
		} else if err == nil {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
