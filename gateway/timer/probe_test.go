package timer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Probe answers between rounds and not while a round is stuck in a firing.
func TestProbeStopsWhileFiringIsStuck(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	w, err := NewWheel(db, func(*bolt.Tx, Timer) error {
		close(entered)
		<-release
		return nil
	}, nil, nil)
	require.NoError(t, err)
	probe := func(wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return w.Probe(ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.NoError(t, probe(5*time.Second), "a running wheel answers")

	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return Set(tx, Timer{ID: "x", Kind: "k", Due: time.Now()}) }))
	w.Wake()
	<-entered
	assert.ErrorContains(t, probe(100*time.Millisecond), "timer: loop did not answer")
	close(release)
	assert.NoError(t, probe(5*time.Second), "answers again once the round finished")
}
