package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-gw/vigil/evidence/ledger/ledgertest"
	"github.com/vigil-gw/vigil/evidence/objstore"
)

func TestSealStoredUnderCompliance(t *testing.T) {
	f := newFixture(t)
	recs := f.appendN(0, 10)
	sealTime := f.clock.Now()
	require.NoError(t, f.l.Seal(f.ctx))

	key := SealKey(10)
	assert.Equal(t, "audit/seals/00000000000000000010", key)
	obj, err := f.store.Stat(f.ctx, key)
	require.NoError(t, err, "the seal is in the store")
	assert.Equal(t, objstore.Compliance, obj.Mode)
	assert.False(t, obj.RetainUntil.Before(sealTime.Add(DefaultRetention)), "retained for the full period from the seal time")
	assert.True(t, obj.RetainUntil.Before(sealTime.Add(DefaultRetention).Add(2*time.Second)))

	err = f.store.Delete(f.ctx, key, true)
	require.Error(t, err, "nobody can delete a COMPLIANCE seal, not even with the governance bypass")
	assert.ErrorIs(t, err, objstore.ErrLocked)
	assert.ErrorIs(t, f.store.PutSmall(f.ctx, key, []byte("forged\n"), objstore.PutOptions{}), objstore.ErrLocked,
		"nor overwrite it")

	rc, err := f.store.Open(f.ctx, key)
	require.NoError(t, err)
	data, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	s, err := ParseSeal(data, f.verifier)
	require.NoError(t, err)
	assert.Equal(t, testOrigin, s.Origin)
	assert.Equal(t, int64(10), s.Count)
	assert.Equal(t, int64(1), s.First)
	assert.Equal(t, int64(10), s.Last)
	assert.Equal(t, "", s.Prev)
	assert.Equal(t, recs[9].Hash, s.Head)
	assert.Equal(t, sealTime, s.Time)
	require.Len(t, s.Entries, 10)
	for i, e := range s.Entries {
		assert.Equal(t, SealEntry{Seq: recs[i].Seq, Hash: recs[i].Hash, Content: ContentHash(recs[i])}, e)
	}

	var stored *int64
	require.NoError(t, f.db.QueryRow(`SELECT stored_ms FROM audit_seals WHERE last = 10`).Scan(&stored))
	require.NotNil(t, stored, "the local row remembers the upload")

	// The next seal continues the first.
	f.appendN(10, 10)
	require.NoError(t, f.l.Seal(f.ctx))
	rc, err = f.store.Open(f.ctx, SealKey(20))
	require.NoError(t, err)
	data, _ = io.ReadAll(rc)
	rc.Close()
	s2, err := ParseSeal(data, f.verifier)
	require.NoError(t, err)
	assert.Equal(t, int64(11), s2.First)
	assert.Equal(t, int64(20), s2.Count)
	assert.Equal(t, s.Head, s2.Prev)
}

func TestVerifyReportsForgedSeal(t *testing.T) {
	f := newFixture(t)
	f.appendN(0, 20)
	require.NoError(t, f.l.Seal(f.ctx))
	f.appendN(20, 5)

	// Someone with store access but not the gateway's key writes a seal
	// of their own for the unsealed records, under the next free key.
	_, forger, _ := ledgertest.SeededKey(t, "vigil-gw-1", 8)
	fake := Seal{Origin: testOrigin, Count: 25, Time: f.clock.Now(), First: 21, Last: 25, Prev: f.all()[19].Hash}
	for _, r := range f.all()[20:] {
		fake.Entries = append(fake.Entries, SealEntry{Seq: r.Seq, Hash: r.Hash, Content: ContentHash(r)})
	}
	fake.Head = fake.Entries[4].Hash
	signed, err := note.Sign(&note.Note{Text: fake.text()}, forger)
	require.NoError(t, err)
	require.NoError(t, f.store.PutSmall(f.ctx, SealKey(25), signed, objstore.PutOptions{}))
	// And an object that is no seal at all in the seal area.
	require.NoError(t, f.store.PutSmall(f.ctx, "audit/seals/junk", []byte("x"), objstore.PutOptions{}))

	rep := f.verify()
	assertNames(t, rep,
		"stored seal audit/seals/00000000000000000025 (up to record 25) is not valid: not signed by the gateway's key",
		`object "audit/seals/junk"`)
	assert.Equal(t, 2, rep.Seals, "the forged seal is not believed")
	assert.Equal(t, 5, rep.Unsealed, "its records count as unsealed")
}

func TestVerifyReportsAlteredLocalSealWithoutStore(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Store = nil })
	f.appendN(0, 20)
	f.exec(`UPDATE audit_seals SET note = replace(note, 'count 10', 'count 11') WHERE last = 10`)
	rep := f.verify()
	assertNames(t, rep,
		"local seal up to record 10 is not valid: its signature by vigil-gw-1 does not match its text",
		"no valid seal covers records 1–10")
}

func TestVerifySealMarkedStoredButMissing(t *testing.T) {
	f := newFixture(t)
	f.appendN(0, 10) // sealed locally by Append, never uploaded
	rep := f.verify()
	require.True(t, rep.OK(), rep.String())
	assert.Equal(t, 1, rep.Unstored)
	assert.True(t, slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "1 seals (records 1–10) are not yet in the store") }),
		"a seal waiting for upload is a warning: %v", rep.Warnings)

	f.exec(`UPDATE audit_seals SET stored_ms = ? WHERE last = 10`, t0.UnixMilli())
	rep = f.verify()
	assertNames(t, rep, "the seal of records 1–10 is recorded as stored on 2026-03-02T09:00:00.000Z, but the store does not have it")
}

func TestVerifyWithoutStoreWarns(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Store = nil })
	f.appendN(0, 20)
	require.NoError(t, f.l.Seal(f.ctx), "sealing works without a store")
	rep := f.verify()
	assert.True(t, rep.OK(), rep.String())
	assert.Equal(t, 2, rep.Seals)
	assert.Equal(t, 2, rep.Unstored)
	assert.True(t, slices.ContainsFunc(rep.Warnings, func(w string) bool {
		return strings.Contains(w, "no seal store is configured: the 2 seals are kept only in this database")
	}), "Verify says the seals are not stored: %v", rep.Warnings)
}

func TestVerifySealOverBrokenChain(t *testing.T) {
	f := newFixture(t)
	f.appendN(0, 5)
	// Tampering before the seal is made stays visible in the seal.
	f.exec(`UPDATE audit_records SET why = 'changed before sealing' WHERE seq = 3`)
	f.appendN(5, 5) // the tenth append seals
	require.Equal(t, 1, f.sealCount())
	rep := f.verify()
	assertNames(t, rep, "the seal of records 1–10 was made over a broken chain at record 3")
}

func TestSealByIntervalStep(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SealEvery = 100 })
	recs := f.appendN(0, 3)
	due := recs[0].At.Add(15 * time.Minute)

	require.NoError(t, f.l.step(f.ctx, f.clock.Now()))
	assert.Equal(t, 0, f.sealCount(), "not due yet")

	f.clock.Advance(due.Sub(f.clock.Now()) - time.Millisecond)
	require.NoError(t, f.l.step(f.ctx, f.clock.Now()))
	assert.Equal(t, 0, f.sealCount(), "a millisecond before the interval is up")

	f.clock.Advance(time.Millisecond)
	require.NoError(t, f.l.step(f.ctx, f.clock.Now()))
	assert.Equal(t, 1, f.sealCount(), "sealed once the oldest unsealed record is SealInterval old")
	_, err := f.store.Stat(f.ctx, SealKey(3))
	assert.NoError(t, err, "and uploaded in the same step")
}

// runLog starts Run and returns a function that stops it and returns its
// error.
func runLog(t *testing.T, f *fixture) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.l.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
			return nil
		}
	}
}

func TestRunSealsByIntervalAndOnShutdown(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SealEvery = 100 })
	stop := runLog(t, f)
	f.appendN(0, 2)
	require.Eventually(t, func() bool {
		f.clock.Advance(time.Minute)
		_, err := f.store.Stat(f.ctx, SealKey(2))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "Run seals and uploads after the interval")
	require.Equal(t, 1, f.sealCount())

	f.appendN(2, 2)
	require.NoError(t, stop())
	assert.Equal(t, 2, f.sealCount(), "shutdown seals what is left")
	rep := f.verify()
	assert.True(t, rep.OK(), rep.String())
	assert.Equal(t, 0, rep.Unsealed)
}

// flakyStore fails the first failures puts as unavailable, noting when
// each attempt came by the fake clock.
type flakyStore struct {
	*objstore.Dir
	now      func() time.Time
	failures int

	mu       sync.Mutex
	attempts []time.Time
}

func (s *flakyStore) PutSmall(ctx context.Context, key string, data []byte, opts objstore.PutOptions) error {
	s.mu.Lock()
	s.attempts = append(s.attempts, s.now())
	n := len(s.attempts)
	s.mu.Unlock()
	if n <= s.failures {
		return fmt.Errorf("put %s: %w", key, objstore.ErrUnavailable)
	}
	return s.Dir.PutSmall(ctx, key, data, opts)
}

func TestRunRetriesUploadWithBackoff(t *testing.T) {
	flaky := &flakyStore{failures: 3}
	f := newFixture(t, func(c *Config) { c.Store = flaky })
	flaky.Dir, flaky.now = f.store, f.clock.Now

	f.appendN(0, 10) // sealed locally by the tenth append
	stop := runLog(t, f)
	require.Eventually(t, func() bool {
		f.clock.Advance(100 * time.Millisecond)
		_, err := f.store.Stat(f.ctx, SealKey(10))
		return err == nil
	}, 10*time.Second, time.Millisecond, "the seal is uploaded once the store recovers")
	require.NoError(t, stop())

	// The gaps between attempts grow: at least 1s, 2s, 4s less the 20%
	// jitter.
	flaky.mu.Lock()
	defer flaky.mu.Unlock()
	// A fifth attempt may come from the shutdown, re-sending the same bytes
	// if the stop raced the row update: harmless, the store takes it.
	require.GreaterOrEqual(t, len(flaky.attempts), 4)
	for i, base := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		gap := flaky.attempts[i+1].Sub(flaky.attempts[i])
		assert.GreaterOrEqual(t, gap, base*8/10, "gap %d of %v", i, flaky.attempts)
	}
}

func TestParseSealRejects(t *testing.T) {
	f := newFixture(t)
	f.appendN(0, 10)
	var good []byte
	require.NoError(t, f.db.QueryRow(`SELECT note FROM audit_seals WHERE last = 10`).Scan(&good))
	_, err := ParseSeal(good, f.verifier)
	require.NoError(t, err)

	_, _, other := ledgertest.SeededKey(t, "someone-else", 9)
	_, err = ParseSeal(good, other)
	assert.ErrorContains(t, err, "not signed by the gateway's key")
	_, err = ParseSeal(good, nil)
	assert.Error(t, err)

	text := string(good[:strings.Index(string(good), "\n\n")+1])
	tests := []struct{ name, from, to, want string }{
		{"leading zero", "count 10\n", "count 010\n", "leading zeros"},
		{"bad head", "head ", "head x", "not a hash"},
		{"local time", "Z\nrange", "+01:00\nrange", "UTC time"},
		{"reversed range", "range 1 10", "range 10 1", "ends before it starts"},
		{"entry out of order", "\n2 ", "\n1 ", "out of order"},
		{"head not last", "head ", "head 0000000000000000000000000000000000000000000000000000000000000000\nhead ", "want \"time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(text, tc.from, tc.to, 1)
			require.NotEqual(t, text, bad)
			_, err := parseSealText(bad)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// FuzzParseSealText checks that the seal parser never panics and that what
// it accepts it would write back byte for byte: one seal, one spelling.
func FuzzParseSealText(f *testing.F) {
	r := rec(1)
	r.Seq, r.At = 1, t0
	r.Hash = r.ComputeHash()
	s := Seal{Origin: testOrigin, Count: 1, Head: r.Hash, Time: t0, First: 1, Last: 1,
		Entries: []SealEntry{{Seq: 1, Hash: r.Hash, Content: ContentHash(r)}}}
	f.Add(s.text())
	s.Prev, s.First, s.Last, s.Count = r.Hash, 2, 3, 3
	s.Entries = []SealEntry{{Seq: 2, Hash: "-", Content: ContentHash(r)}, {Seq: 3, Hash: r.Hash, Content: ContentHash(r)}}
	f.Add(s.text())
	f.Add("")
	f.Add("origin\ncount 1\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := parseSealText(text)
		if err != nil {
			return
		}
		if got := s.text(); got != text {
			t.Fatalf("accepted a non-canonical seal:\n%q\nwrites back as\n%q", text, got)
		}
	})
}

// errStore is a store whose listing fails.
type errStore struct{ *objstore.Dir }

func (errStore) List(context.Context, string) ([]objstore.Object, error) {
	return nil, fmt.Errorf("list: %w", objstore.ErrUnavailable)
}

func TestVerifyFailsWhenStoreUnreachable(t *testing.T) {
	f := newFixture(t)
	f.appendN(0, 10)
	f.l.cfg.Store = errStore{f.store}
	_, err := f.l.Verify(f.ctx)
	require.Error(t, err, "a verification that could not read the authority is not a pass")
	assert.True(t, errors.Is(err, objstore.ErrUnavailable))
}
