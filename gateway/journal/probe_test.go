package journal

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Probe answers while the loop runs and stops answering while a commit is
// stuck (here an Apply that does not return, as a hung fsync would hold it).
func TestProbeStopsWhileCommitIsStuck(t *testing.T) {
	db := openDB(t)
	entered, release := make(chan struct{}), make(chan struct{})
	j, err := New(db, Options{Apply: func(*bolt.Tx, Record, string) error {
		close(entered)
		<-release
		return nil
	}})
	require.NoError(t, err)
	probe := func(wait time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return j.Probe(ctx)
	}
	require.Error(t, probe(10*time.Millisecond), "no answer before Run")
	start(t, j)
	require.NoError(t, probe(5*time.Second), "a running loop answers")

	done := make(chan result, 1)
	j.Submit(context.Background(), rec("d", 1, "a"), func(o Outcome, err error) { done <- result{o, err} })
	<-entered
	assert.ErrorContains(t, probe(100*time.Millisecond), "journal: commit loop did not answer")
	close(release)
	require.NoError(t, (<-done).err)
	assert.NoError(t, probe(5*time.Second), "answers again once the commit finished")
}
