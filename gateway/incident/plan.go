package incident

import (
	"fmt"
	"time"
)

// Stages of the post-incident support framework, in the order they fall.
const (
	StageImmediate      = "immediate"
	StageDemobilisation = "demobilisation"
	StageWelfareContact = "welfare_contact"
	StageDefusing       = "defusing"
	StageDebriefing     = "debriefing"
	StageReview         = "after_action_review"
	StageCheckIn        = "welfare_checkin"
)

// Ids of the plan's steps that reports measure: the framework audits
// whether welfare contact was made, and defusing and debriefing held, in time.
const (
	TaskWelfareContact = "welfare_contact"
	TaskDefusing       = "defusing"
	TaskDebriefing     = "debriefing"
)

// Task statuses.
const (
	StatusOpen      = "open"
	StatusDone      = "done"
	StatusNotNeeded = "not_needed" // e.g. no first aid was needed; still an answer an audit can read
)

// Task is one step of an incident's support plan. NotBefore and Due bound
// the window the framework gives it: defusing too early is as unhelpful as
// too late, so early completion is allowed but recorded.
type Task struct {
	ID        string    `json:"id"`
	Stage     string    `json:"stage"`
	Title     string    `json:"title"`
	Owner     string    `json:"owner"` // "" is the supervisor on duty
	NotBefore time.Time `json:"not_before"`
	Due       time.Time `json:"due"`
	Status    string    `json:"status"`
	DoneBy    string    `json:"done_by,omitempty"`
	DoneAt    time.Time `json:"done_at,omitzero"`
	Note      string    `json:"note,omitempty"`
	// Early says it was completed before NotBefore.
	Early bool `json:"early,omitempty"`
	// Reminded is when its owner was last reminded that it is overdue.
	Reminded time.Time `json:"reminded,omitzero"`
}

// Window is when a stage may start and when it is due, as offsets from the
// plan's anchor (the alert's resolution, or when a report was recorded).
type Window struct {
	NotBefore time.Duration
	Due       time.Duration
}

// PlanConfig sets the support plan's windows. Zero fields take the
// framework's defaults, so a Trust only configures where its policy
// differs.
type PlanConfig struct {
	// Immediate: made safe, first aid, psychological first aid, able to
	// continue or got home safely (default 0 to 1h).
	Immediate Window
	// Demobilisation: before the end of the shift (default 0 to 12h).
	Demobilisation Window
	// WelfareContact: someone gets in touch (default 0 to 24h).
	WelfareContact Window
	// Defusing: default day 3 to day 10.
	Defusing Window
	// Debriefing by a trained facilitator: default day 7 to day 14.
	Debriefing Window
	// Review, the after-action review: default 0 to day 28.
	Review Window
	// CheckIns are the welfare check-ins (default day 7 and day 28); each
	// opens at its offset and is due CheckInWindow later.
	CheckIns      []time.Duration
	CheckInWindow time.Duration // default 48h
	// RemindEvery is how often an overdue step is reminded again (default 24h).
	RemindEvery time.Duration
}

const day = 24 * time.Hour

func (w *Window) orDefault(d Window) {
	if *w == (Window{}) {
		*w = d
	}
}

func (p *PlanConfig) defaults() {
	p.Immediate.orDefault(Window{0, time.Hour})
	p.Demobilisation.orDefault(Window{0, 12 * time.Hour})
	p.WelfareContact.orDefault(Window{0, day})
	p.Defusing.orDefault(Window{3 * day, 10 * day})
	p.Debriefing.orDefault(Window{7 * day, 14 * day})
	p.Review.orDefault(Window{0, 28 * day})
	if p.CheckIns == nil {
		p.CheckIns = []time.Duration{7 * day, 28 * day}
	}
	if p.CheckInWindow <= 0 {
		p.CheckInWindow = 2 * day
	}
	if p.RemindEvery <= 0 {
		p.RemindEvery = day
	}
}

// tasks lays out the plan from anchor.
func (p PlanConfig) tasks(anchor time.Time, owner string) []Task {
	mk := func(id, stage, title string, w Window) Task {
		return Task{ID: id, Stage: stage, Title: title, Owner: owner, Status: StatusOpen,
			NotBefore: anchor.Add(w.NotBefore), Due: anchor.Add(w.Due)}
	}
	out := []Task{
		mk("made_safe", StageImmediate, "Made safe", p.Immediate),
		mk("first_aid", StageImmediate, "First aid given if needed", p.Immediate),
		mk("psychological_first_aid", StageImmediate, "Psychological first aid", p.Immediate),
		mk("continue_or_home", StageImmediate, "Able to continue the shift, or got home safely", p.Immediate),
		mk("demobilisation", StageDemobilisation, "Demobilisation before the end of the shift", p.Demobilisation),
		mk(TaskWelfareContact, StageWelfareContact, "Welfare contact", p.WelfareContact),
		mk(TaskDefusing, StageDefusing, "Defusing", p.Defusing),
		mk(TaskDebriefing, StageDebriefing, "Debriefing by a trained facilitator", p.Debriefing),
		mk("after_action_review", StageReview, "After-action review", p.Review),
	}
	for _, at := range p.CheckIns {
		days := int(at / day)
		out = append(out, mk(fmt.Sprintf("checkin_day%d", days), StageCheckIn,
			fmt.Sprintf("Welfare check-in, day %d", days), Window{at, at + p.CheckInWindow}))
	}
	return out
}

// CompleteTask closes step taskID of incident id as done or not_needed,
// with who and an optional note. Completing a step before its window opens
// is allowed (people act when they can) but marked Early and noted in the
// history, so an audit sees it. A closed step cannot be completed again.
func (s *Store) CompleteTask(id, taskID, by, note, status string, now time.Time) (Incident, error) {
	if err := oneOf("status", status, []string{StatusDone, StatusNotNeeded}); err != nil {
		return Incident{}, err
	}
	if by == "" {
		return Incident{}, &FieldError{Field: "by", Value: by, Problem: "is required: audits ask who gave the support"}
	}
	return s.update(id, func(inc *Incident) error {
		t, err := task(inc, taskID)
		if err != nil {
			return err
		}
		if t.Status != StatusOpen {
			return fmt.Errorf("%w: %s %s is %s", ErrTransition, id, taskID, t.Status)
		}
		t.Status, t.DoneBy, t.DoneAt, t.Note = status, by, now, note
		c := Change{At: now, By: by, What: "task_completed", Task: taskID, Note: status}
		if now.Before(t.NotBefore) {
			t.Early = true
			c.Note += ", before its window opened"
		}
		inc.History = append(inc.History, c)
		return nil
	})
}

func task(inc *Incident, taskID string) (*Task, error) {
	for i := range inc.Plan {
		if inc.Plan[i].ID == taskID {
			return &inc.Plan[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %s task %s", ErrNotFound, inc.ID, taskID)
}
