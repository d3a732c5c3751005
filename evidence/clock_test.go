package evidence

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAcceptMarksUnsynchronisedClock checks that a clip accepted while the
// gateway's clock is unsynchronised carries the mark in its ledger entry
// (and its custody record), that one accepted after the clock is fixed
// does not, and that the ledger still verifies with both kinds of entry.
func TestAcceptMarksUnsynchronisedClock(t *testing.T) {
	var unsync atomic.Bool
	unsync.Store(true)
	r := newRig(t, func(c *Config) { c.ClockUnsynchronised = unsync.Load })
	ctx := context.Background()

	require.NoError(t, r.svc.Accept(ctx, r.spool(t, "cam-1", "c1", []byte("footage one"), base)))
	unsync.Store(false)
	require.NoError(t, r.svc.Accept(ctx, r.spool(t, "cam-1", "c2", []byte("footage two"), base)))

	e1, err := r.svc.Ledger().Get(ctx, "cam-1", "c1")
	require.NoError(t, err)
	assert.True(t, e1.ClockUnsynchronised)
	assert.Contains(t, string(e1.Body), `"clock_unsynchronised":true}`)
	e2, err := r.svc.Ledger().Get(ctx, "cam-1", "c2")
	require.NoError(t, err)
	assert.False(t, e2.ClockUnsynchronised)
	assert.NotContains(t, string(e2.Body), "clock_unsynchronised")
	assert.Equal(t, e1.Hash, e2.Prev, "the marked entry is chained like any other")

	ev, err := r.svc.Custody(ctx, "cam-1", "c1")
	require.NoError(t, err)
	require.NotEmpty(t, ev)
	assert.Equal(t, "received", ev[0].What)
	assert.Contains(t, ev[0].Detail, "clock was not synchronised")
	ev, err = r.svc.Custody(ctx, "cam-1", "c2")
	require.NoError(t, err)
	assert.NotContains(t, ev[0].Detail, "clock")

	rep, err := r.svc.Verify(ctx, false)
	require.NoError(t, err)
	assert.True(t, rep.OK(), "%v", rep.Problems)
}
