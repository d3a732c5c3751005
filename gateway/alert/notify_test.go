package alert

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/vigil-gw/vigil/devices"
	"github.com/vigil-gw/vigil/gateway/timer"
)

// TestOnChangeHearsOnlyCommittedChanges: every path that changes an alert
// (a journaled event, a receiver's ACK, an operator's ack, note and
// resolution, a system alert) tells the listener once it has committed,
// and a transaction that rolls back or a refused transition tells nothing.
func TestOnChangeHearsOnlyCommittedChanges(t *testing.T) {
	r := newRig(t)
	var n atomic.Int64
	r.eng.SetOnChange(func() { n.Add(1) })
	step := func(what string, f func()) {
		t.Helper()
		before := n.Load()
		f()
		assert.Greater(t, n.Load(), before, what)
	}
	step("duress journaled", func() { r.submit(t, r.event(devices.TypeDuress, 1, true)) })
	step("delivered to the ARC", func() { r.drain(t) })
	step("acknowledged", func() {
		_, err := r.eng.Acknowledge("btn-1.1", "olive", "on it")
		require.NoError(t, err)
	})
	step("note", func() {
		_, err := r.eng.AddNote("btn-1.1", "olive", "police called")
		require.NoError(t, err)
	})
	step("resolved", func() {
		_, err := r.eng.Resolve("btn-1.1", "olive", "genuine_no_harm", "")
		require.NoError(t, err)
	})
	step("system alert", func() {
		_, err := r.eng.RaiseSystem("arc_link_down", "leeds", "receiver gone")
		require.NoError(t, err)
	})

	before := n.Load()
	_, err := r.eng.Resolve("btn-1.1", "olive", "genuine_no_harm", "")
	require.ErrorIs(t, err, ErrTransition)
	assert.Equal(t, before, n.Load(), "a refused transition changes nothing")

	boom := errors.New("boom")
	err = r.db.Update(func(tx *bolt.Tx) error {
		require.NoError(t, r.eng.Fire(tx, timer.Timer{ID: "amber:btn-1", Kind: "amber_due"}))
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, before, n.Load(), "a rolled-back transaction is never announced")

	r.eng.SetOnChange(nil)
	_, err = r.eng.AddNote("btn-1.1", "olive", "after the listener left")
	require.NoError(t, err)
	assert.Equal(t, before, n.Load())
}
