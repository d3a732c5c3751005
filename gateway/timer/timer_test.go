package timer

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func TestFireInOrderOnceAndReplace(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	now := t0
	var fired []string
	w, err := NewWheel(db, func(_ *bolt.Tx, tm Timer) error { fired = append(fired, tm.ID); return nil }, func() time.Time { return now }, nil)
	require.NoError(t, err)
	set := func(id string, due time.Duration) {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Set(tx, Timer{ID: id, Kind: "k", Due: t0.Add(due)}) }))
	}
	set("b", 2*time.Minute)
	set("a", time.Minute)
	set("c", 3*time.Minute)
	set("c", 10*time.Minute) // replaced, not duplicated
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Cancel(tx, "nope") }))

	n, next, err := w.FireDue()
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, t0.Add(time.Minute), next)

	now = t0.Add(5 * time.Minute)
	n, next, err = w.FireDue()
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, []string{"a", "b"}, fired, "in due order")
	assert.Equal(t, t0.Add(10*time.Minute), next, "the replaced timer keeps its new time")

	n, _, err = w.FireDue()
	require.NoError(t, err)
	assert.Zero(t, n, "fired once only")
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		_, ok, err := Get(tx, "a")
		assert.False(t, ok)
		got, ok, err2 := Get(tx, "c")
		assert.True(t, ok)
		assert.Equal(t, t0.Add(10*time.Minute), got.Due.UTC())
		return errors.Join(err, err2)
	}))
}

// A firing whose consequences fail leaves the timer in place, to fire again.
func TestFailedFireKeepsTheTimer(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	now := time.Now()
	fail := true
	w, err := NewWheel(db, func(*bolt.Tx, Timer) error {
		if fail {
			return errors.New("disk full")
		}
		return nil
	}, func() time.Time { return now }, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Set(tx, Timer{ID: "x", Due: now.Add(-time.Second)}) }))
	_, _, err = w.FireDue()
	require.ErrorContains(t, err, "disk full")
	fail = false
	n, _, err := w.FireDue()
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}
