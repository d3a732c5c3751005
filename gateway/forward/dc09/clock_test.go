package dc09

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientUnsynchronisedClock checks which frames carry a timestamp while
// the gateway's clock is known to be unsynchronised.
func TestClientUnsynchronisedClock(t *testing.T) {
	var unsync atomic.Bool
	unsync.Store(true)
	// Our clock is a day behind, as a Pi that booted on a stale saved time.
	behind := func() time.Time { return time.Now().Add(-24 * time.Hour) }

	t.Run("unencrypted: no timestamp, so no NAK and no wrong time", func(t *testing.T) {
		r := &Receiver{}
		c := newTestClient(t, Config{Addr: startReceiver(t, r), Now: behind, ClockUnsynchronised: unsync.Load})
		m := duress()
		require.NoError(t, c.Send(context.Background(), m))
		frames := r.Frames()
		require.Len(t, frames, 1)
		assert.False(t, frames[0].Frame.HasTimestamp)
		assert.Equal(t, RespondACK, frames[0].Response, "accepted at once")
		assert.Contains(t, frames[0].Frame.XData, "H"+formatTimestamp(m.Time), "the device's event time still goes")
	})

	t.Run("encrypted: the timestamp is mandatory, corrected by the NAK", func(t *testing.T) {
		key := testKeys["AES-128"]
		var responses []Response
		var mu sync.Mutex
		r := &Receiver{Key: key, OnFrame: func(rec Received) { mu.Lock(); responses = append(responses, rec.Response); mu.Unlock() }}
		c := newTestClient(t, Config{Addr: startReceiver(t, r), Key: key, Now: behind, ClockUnsynchronised: unsync.Load})
		require.NoError(t, c.Send(context.Background(), duress()))
		mu.Lock()
		assert.Equal(t, []Response{RespondNAK, RespondACK}, responses)
		mu.Unlock()
		f := r.Frames()[0].Frame
		require.True(t, f.HasTimestamp)
		assert.WithinDuration(t, time.Now(), f.Timestamp, DefaultWindow, "the receiver's time, learnt from its NAK")
	})

	t.Run("unencrypted, once a receiver has told us its time", func(t *testing.T) {
		var calls atomic.Int32
		// A receiver that NAKs the first frame whatever it holds, sending
		// its time as NAKs do.
		r := &Receiver{Mode: func(Frame) Response {
			if calls.Add(1) == 1 {
				return RespondNAK
			}
			return RespondACK
		}}
		c := newTestClient(t, Config{Addr: startReceiver(t, r), Now: behind, ClockUnsynchronised: unsync.Load})
		require.NoError(t, c.Send(context.Background(), duress()))
		f := r.Frames()[0].Frame
		require.True(t, f.HasTimestamp, "the resend carries the receiver's own time")
		assert.WithinDuration(t, time.Now(), f.Timestamp, DefaultWindow)
	})

	t.Run("synchronised again: timestamps come back", func(t *testing.T) {
		r := &Receiver{}
		var local atomic.Bool
		local.Store(true)
		c := newTestClient(t, Config{Addr: startReceiver(t, r), ClockUnsynchronised: local.Load})
		require.NoError(t, c.Send(context.Background(), duress()))
		local.Store(false)
		require.NoError(t, c.Send(context.Background(), duress()))
		frames := r.Frames()
		require.Len(t, frames, 2)
		assert.False(t, frames[0].Frame.HasTimestamp)
		assert.True(t, frames[1].Frame.HasTimestamp)
	})
}
