// Package footage forwards an alert's claim on a camera's footage to the
// evidence service through the durable outbox: a P1 alert for a wearer with
// a paired camera makes that camera's clips from two minutes before the
// press to ten minutes after the resolution evidential, with a legal hold.
// Going through the outbox means the claim survives a crash between the
// alert and the evidence database, and is retried if that database is busy.
package footage

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-gw/vigil/gateway/forward"
)

// marker is the evidence service as this forwarder uses it.
type marker interface {
	MarkEvidential(ctx context.Context, incident, camera string, from, to time.Time) error
	CloseWindow(ctx context.Context, incident, camera string, resolved time.Time) error
	PreEvent() time.Duration
}

// Sender applies evidence messages to the evidence service.
type Sender struct{ m marker }

// New returns a Sender for m.
func New(m marker) *Sender { return &Sender{m: m} }

// Send opens or closes the alert's evidence window on the camera.
func (s *Sender) Send(ctx context.Context, m forward.Message) error {
	if m.Kind != forward.KindEvidence || m.AlertID == "" || m.Device == "" {
		return forward.Permanent(fmt.Errorf("footage: %s: not an evidence message", m.Key))
	}
	switch m.Event {
	case forward.EventEvidenceOpen:
		return s.m.MarkEvidential(ctx, m.AlertID, m.Device, m.Time.Add(-s.m.PreEvent()), time.Time{})
	case forward.EventEvidenceClose:
		return s.m.CloseWindow(ctx, m.AlertID, m.Device, m.Time)
	}
	return forward.Permanent(fmt.Errorf("footage: %s: unknown evidence event %q", m.Key, m.Event))
}
