package footage

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vigil-gw/vigil/gateway/forward"
)

type call struct {
	op, incident, camera string
	from, to             time.Time
}

type fakeMarker struct{ calls []call }

func (f *fakeMarker) MarkEvidential(_ context.Context, incident, camera string, from, to time.Time) error {
	f.calls = append(f.calls, call{"mark", incident, camera, from, to})
	return nil
}

func (f *fakeMarker) CloseWindow(_ context.Context, incident, camera string, resolved time.Time) error {
	f.calls = append(f.calls, call{"close", incident, camera, resolved, time.Time{}})
	return nil
}

func (f *fakeMarker) PreEvent() time.Duration { return 2 * time.Minute }

func TestSend(t *testing.T) {
	f := &fakeMarker{}
	s := New(f)
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	require.NoError(t, s.Send(context.Background(), forward.Message{Key: "k", Kind: forward.KindEvidence, Event: forward.EventEvidenceOpen, AlertID: "btn-1.5", Device: "cam-1", Time: at}))
	require.NoError(t, s.Send(context.Background(), forward.Message{Key: "k", Kind: forward.KindEvidence, Event: forward.EventEvidenceClose, AlertID: "btn-1.5", Device: "cam-1", Time: at.Add(time.Hour)}))
	assert.Equal(t, []call{{"mark", "btn-1.5", "cam-1", at.Add(-2 * time.Minute), time.Time{}}, {"close", "btn-1.5", "cam-1", at.Add(time.Hour), time.Time{}}}, f.calls)

	err := s.Send(context.Background(), forward.Message{Key: "k", Kind: forward.KindAlarm, AlertID: "a", Device: "cam-1"})
	assert.True(t, forward.IsPermanent(err), "an alarm is not for this route")
	err = s.Send(context.Background(), forward.Message{Key: "k", Kind: forward.KindEvidence, Event: "nonsense", AlertID: "a", Device: "cam-1"})
	assert.True(t, forward.IsPermanent(err))
}
