package console

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func received(s *Subscription) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

func TestBroadcasterCoalesces(t *testing.T) {
	b := NewBroadcaster()
	s := b.Subscribe()
	defer s.Close()
	for range 100 {
		b.Notify()
	}
	assert.True(t, received(s), "a change wakes the client")
	assert.False(t, received(s), "a hundred changes before it looked are one re-read")
	b.Notify()
	assert.True(t, received(s), "a later change wakes it again")
}

// TestSlowClientNeverBlocksNotify: a client that never reads does not hold
// up the notifier (the alert path), nor the clients that do read.
func TestSlowClientNeverBlocksNotify(t *testing.T) {
	b := NewBroadcaster()
	stuck := b.Subscribe() // never reads
	defer stuck.Close()
	live := b.Subscribe()
	defer live.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			b.Notify()
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify blocked on a client that does not read")
	}
	assert.True(t, received(live))
	assert.True(t, received(stuck), "the stuck client still has its one signal")
}

func TestUnsubscribeAndClose(t *testing.T) {
	b := NewBroadcaster()
	s1, s2 := b.Subscribe(), b.Subscribe()
	require.Equal(t, 2, b.Len())
	s1.Close()
	s1.Close() // twice is harmless
	assert.Equal(t, 1, b.Len())
	b.Notify()
	assert.False(t, received(s1), "a client that left hears nothing")
	assert.True(t, received(s2))

	b.Close()
	b.Close()
	assert.Equal(t, 0, b.Len())
	select {
	case <-s2.Done():
	default:
		t.Fatal("closing the broadcaster ends every subscription")
	}
	s3 := b.Subscribe()
	select {
	case <-s3.Done():
	default:
		t.Fatal("a subscription after Close is already over")
	}
	assert.Equal(t, 0, b.Len())
	b.Notify() // no subscribers, no panic
}
