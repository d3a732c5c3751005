package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const benchEntries = 100_000

// benchLedger is a ledger of benchEntries entries over 50 cameras, loaded
// in one transaction, with one checkpoint at its full size.
func benchLedger(b *testing.B) *fixture {
	b.Helper()
	f := newFixture(b)
	bulkLoad(b, f.db, benchEntries, 50)
	_, ok, err := f.l.Checkpoint(context.Background(), t0)
	require.NoError(b, err)
	require.True(b, ok)
	return f
}

// BenchmarkAppend measures one durable append (one transaction with
// synchronous=FULL) on a ledger that already holds benchEntries entries:
// the cost must not grow with the ledger.
func BenchmarkAppend(b *testing.B) {
	f := benchLedger(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if _, err := f.l.Append(ctx, clipN(fmt.Sprintf("bench-%d", i%50), i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkProve measures an inclusion proof of a random entry in the tree
// of benchEntries entries: with the subtree cache the checkpoint filled, and
// without it (every leaf hash read once), the fallback's cost.
func BenchmarkProve(b *testing.B) {
	f := benchLedger(b)
	ctx := context.Background()
	run := func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			if _, err := f.l.Prove(ctx, rng.Uint64N(benchEntries), benchEntries); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("cached", run)
	if _, err := f.db.Exec(`DELETE FROM ledger_subtrees`); err != nil {
		b.Fatal(err)
	}
	b.Run("uncached", run)
}

// BenchmarkCheckpoint measures a checkpoint after 100 more appends on a
// ledger of benchEntries entries: it extends the stored range, so it costs
// the 100 new leaves, not the whole tree.
func BenchmarkCheckpoint(b *testing.B) {
	f := benchLedger(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		b.StopTimer()
		for range 100 {
			if _, err := f.l.Append(ctx, clipN("bench", i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StartTimer()
		if _, ok, err := f.l.Checkpoint(ctx, t0.Add(time.Duration(i)*time.Second)); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkVerify measures a full verification of benchEntries entries.
func BenchmarkVerify(b *testing.B) {
	f := benchLedger(b)
	ctx := context.Background()
	for b.Loop() {
		rep, err := f.l.Verify(ctx, f.v)
		if err != nil || !rep.OK() {
			b.Fatal(err, problemsText(rep))
		}
	}
}
